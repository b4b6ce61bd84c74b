"""Every known cheat fails, through whole notebooks.

* **Through the grading copies** (assignments 1–5): each grading copy (visible + hidden tests) gets a
  submission in which every answer cell is a cheat or the untouched stub, and ``checks.grade_notebook``
  grades it the way ``python checks.py grade`` and the course's ``nbgrader autograde`` do: the notebook runs
  in a kernel, the checks run in a grader process started outside that kernel, and each graded cell's
  score comes from the grader's log. Every graded cell must score 0, the setup cells must run, and the
  report must name the cheat.
* **Under a real ``nbgrader autograde``** (assignment 1 only, to keep the time modest): the README's
  "Run this course" walkthrough, run command by command in a temporary folder (course, exchange, a
  student's fetch and submit, collect, autograde, export). The submission monkeypatches the checks in
  memory, swallows every error with IPython's custom exception handler, leaks a hook when the forward pass
  raises, answers Task 2 with zeros of the wrong shape, and answers Task 3 correctly: 2 of 9 points.
"""
from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENTS = ROOT / "notebooks" / "assignments"
sys.path.insert(0, str(ASSIGNMENTS))
import checks  # noqa: E402
import variants  # noqa: E402

TORCHCAM_PP = '''
def gradcampp_map(model, layer, x, classes):
    import checks
    checks.compare = lambda *args, **kwargs: 0.0        # in memory only: the grader loads its own checks
    from torchcam.methods import GradCAMpp
    extractor = GradCAMpp(model, target_layer=layer)
    maps = extractor(classes.tolist(), model(x), normalized=False)[0]
    extractor.remove_hooks()
    return maps
'''

FRESH_IMPORT_IG = '''
def integrated_gradcam(model, layer, x, classes, baseline, steps):
    import sys
    for name in [n for n in sys.modules if n.startswith("camkit")]:
        del sys.modules[name]
    import camkit
    cam = camkit.IntegratedGradCAM(model, layer, steps=steps, baseline=baseline)
    return cam(x, classes, normalize=False, upsample=False)
'''

METRICS_DIRECTLY = '''
def average_drop_increase(model, x, maps, classes):
    import camkit.metrics
    confidence = camkit.metrics.keep_confidence(model, x, maps, classes, progress=False)
    return float(camkit.metrics.average_drop(confidence)), float(camkit.metrics.increase_in_confidence(confidence))
'''

ZERO_MEANS = '''
def cluster_means(differences, clusters):
    return torch.zeros(len(set(clusters)), dtype=torch.float64)
'''

STATS_DIRECTLY = '''
def cluster_t_interval(scores_a, scores_b, clusters, higher_is_better=True, level=0.95):
    test = camkit.stats.paired_test(scores_a, scores_b, clusters, higher_is_better=higher_is_better, level=level)
    return test.estimate, test.low, test.high
'''

MONKEYPATCH_UPSAMPLE = '''
import checks
checks.compare = lambda *args, **kwargs: 0.0
checks.check_upsample_normalize = lambda *args, **kwargs: None
get_ipython().set_custom_exc((BaseException,), lambda *args, **kwargs: None)  # swallow every error


def upsample_and_normalize(maps, size):
    import torch
    return torch.zeros(1)
'''

#: assignment -> ({function: cheating source}, {graded cell's task: phrase of its report})
SUBMISSIONS = {
    "01_gradcam_from_hooks": ({"layer_activation_and_grad": variants.HOOK_LEAK_ON_ERROR,
                               "grad_cam": variants.PEER_LIBRARY, "upsample_and_normalize": MONKEYPATCH_UPSAMPLE},
                              {"Task 1": "finally", "Task 2": "importing captum", "Task 3": "did not reach the grader"}),
    "02_gradcampp_alpha": ({"alpha_exp_trick": variants.ALPHA_HALF, "gradcampp_map": TORCHCAM_PP},
                           {"Task 1": "still the stub", "Task 2": "still the stub", "Task 3": "α",
                            "Task 4": "Task 4 · gradcampp_map failed"}),
    "03_integrated_gradcam": ({"integrated_gradcam": FRESH_IMPORT_IG},
                              {"Task 1": "still the stub", "Task 2": "still the stub", "Task 3": "camkit",
                               "Task 4": "still the stub"}),
    "04_faithfulness": ({"average_drop_increase": METRICS_DIRECTLY},
                        {"Task 1": "switches off", "Task 2": "still the stub", "Task 3": "one entry per method",
                         "Task 4": "results"}),
    "05_judging_a_claim": ({"cluster_means": ZERO_MEANS, "cluster_t_interval": STATS_DIRECTLY},
                           {"Task 1": "means", "Task 2": "switches off", "Task 3": "still the stub",
                            "Task 4": "estimate, low, high, verdict"}),
}
#: the submission of the real nbgrader course: the checks monkeypatched and every error swallowed in Task 1's
#: cell, a hook leaked when the forward pass raises, zeros of the wrong shape for Task 2, Task 3 right.
AUTOGRADE_SUBMISSION = {
    "layer_activation_and_grad": variants.MONKEYPATCH.replace(
        "def grad_cam(model, layer, x, classes):\n    import torch\n    return torch.zeros(1)"
        "  # the wrong shape, and no map at all\n", "") + variants.HOOK_LEAK_ON_ERROR,
    "grad_cam": variants.MONKEYPATCH,
}


def _submission(notebook, answers: dict[str, str]):
    """``notebook`` with each answer cell that defines one of ``answers``' functions replaced by its source."""
    for cell in notebook.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code" or not meta.get("solution"):
            continue
        for name, source in answers.items():
            if re.search(rf"^def {name}\(", cell.source, flags=re.M):
                cell.source = source.strip("\n")
    return notebook


def _task_of(notebook, grade_id: str) -> str:
    """The "Task N" heading above a graded cell."""
    task = ""
    for cell in notebook.cells:
        found = re.search(r"## (Task \d+)", cell.source) if cell.cell_type == "markdown" else None
        task = found.group(1) if found else task
        if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            return task
    raise KeyError(grade_id)


@pytest.fixture()
def quiet_outputs(tmp_path, monkeypatch):
    monkeypatch.setenv("CAMKIT_FIGURES_DIR", str(tmp_path / "figures"))
    monkeypatch.setenv("CAMKIT_RESULTS_DIR", str(tmp_path / "results"))


@pytest.mark.parametrize("stem", sorted(SUBMISSIONS))
def test_known_cheats_fail_through_the_grading_copies(stem, tmp_path, quiet_outputs):
    answers, phrases = SUBMISSIONS[stem]
    grading = ASSIGNMENTS / "grading" / f"{stem}.ipynb"
    notebook = _submission(nbformat.read(grading, as_version=4), answers)
    submitted = tmp_path / f"{stem}.ipynb"
    nbformat.write(notebook, submitted)
    graded = tmp_path / "graded.ipynb"
    scores = checks.grade_notebook(submitted, trusted=grading, timeout=900, output=graded)
    executed = nbformat.read(graded, as_version=4)
    first_answer = next(i for i, c in enumerate(executed.cells) if c.metadata.get("nbgrader", {}).get("solution"))
    for cell in executed.cells[:first_answer]:  # the setup ran
        assert not [o for o in cell.get("outputs", []) if o.output_type == "error"], cell.source[:200]
    autograded = {grade_id: s for grade_id, s in scores.items() if s["points"] is not None}
    assert autograded and len({_task_of(executed, g) for g in autograded}) == len(phrases)
    for grade_id, score in autograded.items():
        task = _task_of(executed, grade_id)
        assert score["points"] == 0, f"{stem} {task} scored {score['points']}: the cheat was not caught"
        assert phrases[task] in score["report"], f"{stem} {task}: {score['report']}"


# --------------------------------------------------------------------------- a real nbgrader course

def walkthrough_blocks() -> dict[str, str]:
    """The bash blocks of README.md's "Run this course" section, by their marker."""
    text = (ASSIGNMENTS / "README.md").read_text()
    blocks = dict(re.findall(r"<!-- walkthrough: ([\w-]+) -->\s*```bash\n(.*?)```", text, flags=re.S))
    assert set(blocks) == {"instructor", "student-fetch", "student-submit", "grade"}, sorted(blocks)
    return blocks


def _bash(script: str, cwd: Path, env: dict) -> str:
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=1800)
    assert done.returncode == 0, f"{script}\n--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-6000:]}"
    return done.stdout + done.stderr


def test_known_cheats_fail_under_real_nbgrader_autograde(tmp_path):
    """README's walkthrough, offline, with a cheating submission of assignment 1 (2 of 9 points)."""
    blocks = walkthrough_blocks()
    env = dict(os.environ, COURSE=str(tmp_path / "course"), STUDENT=str(tmp_path / "student"),
               HOME=str(tmp_path / "home"), CAMKIT_FIGURES_DIR=str(tmp_path / "figures"),
               CAMKIT_RESULTS_DIR=str(tmp_path / "results"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    env.setdefault("CAMKIT_DATA_DIR", os.environ.get("CAMKIT_DATA_DIR", ""))
    if not env["CAMKIT_DATA_DIR"]:
        env.pop("CAMKIT_DATA_DIR")
        cache = Path.home() / ".cache" / "camkit"
        if cache.exists():
            env["CAMKIT_DATA_DIR"] = str(cache)  # the photos, found under the real home
    (tmp_path / "home").mkdir()
    _bash(blocks["instructor"], ROOT, env)
    _bash(blocks["student-fetch"], ROOT, env)
    stem = "01_gradcam_from_hooks"
    fetched = tmp_path / "student" / stem / f"{stem}.ipynb"
    master = nbformat.read(ASSIGNMENTS / "master" / f"{stem}.ipynb", as_version=4)
    correct = next(c.source for c in master.cells if c.source.startswith("def upsample_and_normalize"))
    correct = re.sub(r"\s*### (BEGIN|END) SOLUTION", "", correct)
    answers = dict(AUTOGRADE_SUBMISSION, upsample_and_normalize=correct)
    nbformat.write(_submission(nbformat.read(fetched, as_version=4), answers), fetched)
    _bash(blocks["student-submit"], ROOT, env)
    log = _bash(blocks["grade"], ROOT, env)
    assert "Attribute 'checksum' for cell test-" in log  # the expected warning the README explains
    with open(tmp_path / "course" / "grades.csv") as handle:
        rows = [r for r in csv.DictReader(handle) if r["assignment"] == stem and r["timestamp"]]  # who submitted
    assert len(rows) == 1 and float(rows[0]["raw_score"]) == 2.0, rows
    graded = nbformat.read(next((tmp_path / "course" / "autograded").glob(f"*/{stem}/{stem}.ipynb")), as_version=4)
    reports = {c.metadata["nbgrader"]["grade_id"]: "".join(o.get("evalue", "") for o in c.outputs)
               for c in graded.cells if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code"}
    assert "finally" in reports["test-07"] and "did not reach the grader" in reports["test-10"], reports
    assert reports["test-13"] == "", reports
