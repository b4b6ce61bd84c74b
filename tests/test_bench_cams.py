"""benchmarks/bench_cams.py --quick: runs, writes its JSON, and the Grad-CAM maps of all libraries agree.

Timings are never asserted here (they are the benchmark's report, not a unit property)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("captum")
pytest.importorskip("torchcam")
pytest.importorskip("pytorch_grad_cam")
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_cams  # noqa: E402


@pytest.mark.timeout(300)
def test_quick_single_pass_section(tmp_path):
    out = tmp_path / "bench.json"
    # a fresh process, as `make bench` runs it (its OMP_WAIT_POLICY=PASSIVE must precede torch's import)
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_cams.py"), "--quick", "--device", "cpu",
                           "--only", "single,targets", "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}, timeout=280)
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["quick"] and data["device"]["type"] == "cpu" and data["torch"]
    entry = data["single_pass"][0]
    keys = set(entry["results"])
    for key in ("floor:forward", "floor:forward+backward", "camkit:gradcam", "captum:gradcam", "torchcam:gradcam",
                "pytorch-grad-cam:gradcam", "camkit:gradcam++", "torchcam:gradcam++", "pytorch-grad-cam:gradcam++"):
        assert key in keys
        assert all(t > 0 for t in entry["results"][key]["rounds_ms"])
    gradcam_pairs = [a for a in entry["agreement"] if a["method"] == "gradcam"]
    assert len(gradcam_pairs) == 3 and all(a["same_quantity"] for a in gradcam_pairs)
    for a in gradcam_pairs:  # the same quantity: maps agree after the same upsample + normalise
        assert a["max_abs_diff"] < 1e-4 and a["cosine_min"] > 0.9999, a
    memory = data["single_pass"][1]["memory_mb"]  # batch 2 runs in fresh subprocesses
    assert memory["camkit:gradcam"] is not None and memory["camkit:gradcam"] >= 0
    targets = {t["target"]: t for t in data["targets"]}
    assert any("K = 3" in name for name in targets)


def test_ratio_and_agreement_helpers():
    import torch

    r = bench_cams.ratio([1.0, 2.0, 3.0], [2.0, 2.0, 2.0])
    assert r["median"] == 1.0 and r["min"] == 0.5 and r["max"] == 1.5
    a = torch.rand(2, 8, 8)
    same = bench_cams.agreement(a, a.clone())
    assert same["max_abs_diff"] == 0 and abs(same["cosine_min"] - 1) < 1e-6
