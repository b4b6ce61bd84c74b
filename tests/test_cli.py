"""camkit as an installed library: the wheel outside the checkout, the command line, light imports, data paths."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

import camkit
from camkit import cli
from camkit.data import paths

ROOT = Path(__file__).resolve().parents[1]


def packaged_photo() -> Path:
    """A real photo that ships inside an installed package (scikit-image's chelsea.png)."""
    skimage = pytest.importorskip("skimage")
    return Path(skimage.__file__).parent / "data" / "chelsea.png"


def run(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600, env=env)


def test_import_camkit_loads_no_plotting_library_and_no_report_modules():
    code = ("import sys, camkit; camkit.GradCAM; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'camkit')))")
    loaded = json.loads(run([sys.executable, "-c", code], ROOT).stdout.replace("'", '"'))
    assert not any(m.startswith("matplotlib") for m in loaded), loaded
    assert not any(m.startswith(("camkit.report", "camkit.data", "camkit.metrics")) for m in loaded), loaded
    assert "camkit.methods.base" in loaded


def test_old_module_names_stay_importable():
    import camkit.shapes
    import camkit.stats
    import camkit.viz
    import camkit.zoo

    assert camkit.zoo is camkit.data.zoo and camkit.stats is camkit.report.stats and camkit.viz is camkit.report.viz
    assert camkit.shapes.build_model and camkit.shapes.shapes and camkit.zoo.load_model is camkit.load_model


def test_data_search_order_env_then_user_cache_then_checkout(tmp_path, monkeypatch):
    env, user = tmp_path / "env", tmp_path / "xdg"
    monkeypatch.setenv("CAMKIT_DATA_DIR", str(env))
    monkeypatch.setenv("XDG_CACHE_HOME", str(user))
    dirs = paths.search_dirs()
    assert dirs[:2] == [env, user / "camkit"] and paths.cache_dir() == env
    assert dirs[2:] == [ROOT / "data" / "cache"]  # this test runs in a checkout
    (user / "camkit" / "x").mkdir(parents=True)
    assert paths.find("x") == user / "camkit" / "x"
    (env / "x").mkdir(parents=True)
    assert paths.find("x") == env / "x"
    with pytest.raises(paths.DataUnavailableError, match=r"make data"):
        paths.find("nothing/here", required=True)
    monkeypatch.delenv("CAMKIT_DATA_DIR")
    assert paths.cache_dir() == user / "camkit"


def test_cli_explains_a_photo_and_writes_overlay_and_map(tmp_path, capsys):
    out = tmp_path / "cat.png"
    assert cli.main(["explain", str(packaged_photo()), "--method", "gradcam++", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "top-5 tiger cat" in printed and "explained class 282" in printed
    cam_map = np.load(tmp_path / "cat_map.npy")
    assert cam_map.shape == (224, 224) and cam_map.dtype == np.float32
    assert cam_map.min() == 0 and cam_map.max() == pytest.approx(1.0)
    from PIL import Image

    assert Image.open(out).size == (224, 224) and Image.open(tmp_path / "cat_map.png").mode == "L"


@pytest.mark.parametrize("args,message", [
    (["--method", "gradcamm"], "did you mean 'gradcam'"),
    (["--model", "resnet5"], "unknown --model"),
    (["--target", "tabbby"], "closest class names"),
    (["--target", "1000"], "out of range"),
    (["--layer", "net.blocks.9"], "closest names"),
    (["--alpha", "2"], "alpha"),
])
def test_cli_errors_are_one_clear_line(args, message, capsys, tmp_path):
    status = cli.main(["explain", str(packaged_photo()), "-o", str(tmp_path / "o.png"), *args])
    assert status in (1, 2)
    err = capsys.readouterr().err
    assert err.startswith("camkit: error:") and message in err and "Traceback" not in err


def test_cli_lists_methods_and_models(capsys):
    assert cli.main(["methods"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in camkit.METHODS) and "steps" in listed
    assert cli.main(["models"]) == 0
    assert "efficientnet_lite0" in capsys.readouterr().out


def test_wheel_installs_outside_the_checkout_and_explains_from_shell_and_python(tmp_path):
    """Build the wheel, install it with --no-deps into a fresh venv whose dependencies come from
    this environment's site-packages (no download), then run the console script and Python
    from a folder outside the repository."""
    wheels = tmp_path / "wheels"
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
                 str(ROOT)], tmp_path)
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("camkit-*.whl")
    venv = tmp_path / "venv"
    assert run([sys.executable, "-m", "venv", str(venv)], tmp_path).returncode == 0  # pip from ensurepip, offline
    python = venv / "bin" / "python"
    site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                    tmp_path).stdout.strip())
    # the dependencies (torch, timm, the weight wheels) from this environment, after the venv's own site-packages
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], tmp_path)
    assert installed.returncode == 0, installed.stderr
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CAMKIT_DATA_DIR")}
    where = run([str(python), "-c", "import camkit; print(camkit.__file__)"], work, env)
    assert where.returncode == 0 and where.stdout.startswith(str(site)), (where.stdout, where.stderr)
    # the console script pip made from the wheel's entry point, from the shell
    shell = run([str(venv / "bin" / "camkit"), "explain", str(packaged_photo()), "--method", "gradcam", "-o", "cat.png"], work, env)
    assert shell.returncode == 0, shell.stderr
    assert (work / "cat.png").is_file() and (work / "cat_map.npy").is_file()
    # Python: the zoo and the packaged assets (shapes weights, boxes) found without the checkout
    code = ("import camkit, torch; zm = camkit.zoo.load_model('efficientnet_lite0'); "
            "s = camkit.zoo.load_model('shapes_resnet'); from camkit.data import images; "
            "x = torch.rand(1, 3, 224, 224); m = camkit.GradCAM(zm.model)(x); "
            "print(tuple(m.shape), s.weights.startswith(camkit.__file__.rsplit('/', 1)[0]), images.BOXES_FILE.is_file())")
    python_run = run([str(python), "-c", code], work, env)
    assert python_run.returncode == 0, python_run.stderr
    assert python_run.stdout.strip() == "(1, 224, 224) True True"
