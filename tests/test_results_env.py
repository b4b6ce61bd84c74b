"""Results record the environment that produced them, and one profile's results come from one environment."""
import json
import re
import subprocess
from pathlib import Path

import pytest
import torch

from camkit import report

ROOT = Path(__file__).resolve().parents[1]


def environments(folder: Path) -> dict[str, dict[str, list[str]]]:
    """For torch and device: which value each results file in ``folder`` was written with ({value: files})."""
    seen: dict[str, dict[str, list[str]]] = {"torch": {}, "device": {}}
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text())
        env = data.get("environment") or {}
        for key in seen:
            value = env.get(key, data.get(key))
            seen[key].setdefault(str(value), []).append(path.name)
    return seen


def mixed(folder: Path) -> dict[str, dict[str, list[str]]]:
    return {key: values for key, values in environments(folder).items() if len(values) > 1}


def test_committed_cpu_results_share_one_environment():
    folder = ROOT / "results" / "cpu"
    assert list(folder.glob("*.json")), "no committed results/cpu/*.json"
    assert not mixed(folder), f"results/cpu mixes environments (value: files): {mixed(folder)}"


def test_environment_names_versions_commit_and_device():
    env = report.environment()
    assert env["torch"] == torch.__version__ and env["camkit"] == __import__("camkit").__version__
    assert env["device_type"] == ("cuda" if torch.cuda.is_available() else "cpu") and env["device"]
    assert env["git"] is None or re.fullmatch(r"[0-9a-f]{4,40}(\+dirty)?", env["git"]), env["git"]


def git(folder, *args):
    subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True)


def test_git_commit_is_dirty_only_when_lib_changes(tmp_path):
    try:
        git(tmp_path, "init", "-q")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git is not available")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "a.py").write_text("x = 1\n")
    (tmp_path / "notes.txt").write_text("hello\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert report.environment(tmp_path)["git"] == head
    (tmp_path / "notes.txt").write_text("changed outside lib/\n")
    assert report.environment(tmp_path)["git"] == head
    (tmp_path / "lib" / "a.py").write_text("x = 2\n")
    assert report.environment(tmp_path)["git"] == head + "+dirty"
    assert report.environment(tmp_path / "nowhere")["git"] is None


def test_save_results_records_the_environment(tmp_path):
    path = report.save_results("99_env", "default", {"x": 1}, root=tmp_path)
    data = json.loads(path.read_text())
    assert data["environment"] == {**report.environment(), "git": data["environment"]["git"]}
    assert data["torch"] == torch.__version__ and data["device"] == data["environment"]["device"]


def test_mixed_environments_are_found(tmp_path):
    def write(name, **env):
        (tmp_path / name).write_text(json.dumps({"environment": env}))

    write("a.json", torch="2.15.0", device="cpu")
    write("b.json", torch="2.15.0", device="cpu")
    assert not mixed(tmp_path)
    (tmp_path / "c.json").write_text(json.dumps({"torch": "2.14.1", "device": "cpu"}))   # an older file's keys
    assert mixed(tmp_path) == {"torch": {"2.15.0": ["a.json", "b.json"], "2.14.1": ["c.json"]}}
    write("d.json", torch="2.15.0", device="NVIDIA H200")
    assert set(mixed(tmp_path)) == {"torch", "device"}
