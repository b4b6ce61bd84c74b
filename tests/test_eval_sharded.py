"""benchmarks/eval_sharded.py: two gloo processes under torchrun give the one-process result."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "eval_sharded.py"
ARGS = ["--model", "shapes_resnet", "--data", "shapes", "--images", "5", "--steps", "8", "--threads", "1"]


def run(cmd, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done


@pytest.mark.timeout(120)
def test_two_processes_merge_to_the_single_process_result(tmp_path):
    pytest.importorskip("camkit.shapes")
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    run([sys.executable, str(SCRIPT), *ARGS, "--out-dir", str(single)], tmp_path)
    run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(SCRIPT), *ARGS,
         "--out-dir", str(sharded)], tmp_path)

    shards = [json.loads((sharded / f"shard-{r}-of-2.json").read_text()) for r in range(2)]
    # 5 images over 2 ranks: DistributedSampler pads to 6, so one image is scored on both ranks
    assert [s["indices"] for s in shards] == [[0, 2, 4], [1, 3, 0]]
    a = json.loads((single / "merged.json").read_text())
    b = json.loads((sharded / "merged.json").read_text())
    assert a["n"] == b["n"] == 5 and b["world"] == 2
    assert a["images"] == b["images"]  # exact: each image is scored alone, wherever it runs
    assert a["insertion_mean"] == b["insertion_mean"] and a["deletion_mean"] == b["deletion_mean"]


def test_merge_rejects_missing_images(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import eval_sharded

    shard = {"images": {"0": {"class": 1, "insertion": 0.5, "deletion": 0.1}}}
    (tmp_path / "shard-0-of-1.json").write_text(json.dumps(shard))
    with pytest.raises(RuntimeError, match="missing"):
        eval_sharded.merge(tmp_path, 1, 2)
    assert eval_sharded.merge(tmp_path, 1, 1)["n"] == 1
