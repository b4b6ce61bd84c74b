"""The classroom assignments: the masters' structure; their answers pass every visible and hidden check
*through the grader process*; every wrong answer of notebooks/assignments/variants.py fails the visible
checks by a margin; the check networks discriminate; the sandbox refuses what it should; the generated
copies are in sync; a course folder links its chapters. tests/test_cheats.py submits the known cheats
through whole notebooks and a real nbgrader course; nbval executes the masters in `make test`."""
from __future__ import annotations

import importlib.util
import linecache
import re
import sys
from pathlib import Path

import nbformat
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENTS = ROOT / "notebooks" / "assignments"
sys.path.insert(0, str(ASSIGNMENTS))
import checks  # noqa: E402
import variants  # noqa: E402

MASTERS = sorted((ASSIGNMENTS / "master").glob("[0-9][0-9]_*.ipynb"))


def _load_tool():
    spec = importlib.util.spec_from_file_location("make_assignments", ROOT / "tools" / "make_assignments.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TOOL = _load_tool()


def _nbgrader(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def _is_test(cell) -> bool:
    meta = _nbgrader(cell)
    return cell.cell_type == "code" and meta.get("grade") and not meta.get("solution")


# --------------------------------------------------------------------------- structure

def test_five_masters_with_points_solutions_and_hidden_tests():
    assert [p.stem[:2] for p in MASTERS] == ["01", "02", "03", "04", "05"]
    for path in MASTERS:
        notebook = nbformat.read(path, as_version=4)
        tests = [c for c in notebook.cells if _is_test(c)]
        solutions = [c for c in notebook.cells if _nbgrader(c).get("solution") and c.cell_type == "code"]
        assert tests and solutions, path.name
        assert all("### BEGIN SOLUTION" in c.source for c in solutions), path.name
        assert sum("### BEGIN HIDDEN TESTS" in c.source for c in tests) >= len(tests) - 1, path.name
        assert all(_nbgrader(c).get("points", 0) > 0 for c in tests), path.name
        text = "\n".join(c.source for c in notebook.cells if c.cell_type == "markdown")
        assert "Learning goals" in text and "## Summary" in text and "## Exercises" in text, path.name
        assert "separate\n# grader process" in path.read_text() or "grader process" in text, path.name
        links = re.findall(r"\]\(\.\./\.\./([\w.]+)\)", text)
        assert links and all((ROOT / "notebooks" / link).exists() for link in links), (path.name, links)
        for cell in tests:  # the graded cells of the committed master run printed ✔ and no error
            assert not any(o.output_type == "error" for o in cell.outputs), path.name
            assert "✔" in "".join(o.get("text", "") for o in cell.outputs), path.name
            for call in checks._expected_calls(cell.source):  # every call names a registered check
                assert call[0] in checks.CHECKS, call


def test_draft_tags_become_nbgrader_metadata():
    notebook = TOOL.parse_draft('# %% tags=["solution"]\nx = 1\n# %% tags=["test", "points=3"]\nassert x\n'
                                '# %% [markdown] tags=["answer", "points=2"]\n# Because.\n'
                                '# %% tags=["parameters"]\nseed = 0\n')
    solution, test, answer, parameters = notebook.cells
    assert _nbgrader(solution) == {"grade": False, "solution": True, "locked": False, "grade_id": "solution-00",
                                   "schema_version": 3}
    assert _nbgrader(test)["grade"] and _nbgrader(test)["locked"] and _nbgrader(test)["points"] == 3
    assert answer.cell_type == "markdown" and _nbgrader(answer)["solution"] and _nbgrader(answer)["points"] == 2
    assert parameters.metadata["tags"] == ["parameters"] and "nbgrader" not in parameters.metadata


# --------------------------------------------------------------------------- the masters through the grader

@pytest.mark.parametrize("check", sorted(variants.TASKS))
def test_master_answers_pass_the_visible_and_hidden_checks(check):
    functions = TOOL.variant_functions(check)
    for hidden in (False, True):
        result = checks.submit(check, *functions, hidden=hidden)
        assert result["passed"], result["report"]
        assert len(result["lines"]) >= (2 if hidden else 1)


WRONG = [(check, name, overrides, phrase) for check, group in variants.WRONG.items()
         for name, (overrides, phrase) in group.items()]


@pytest.mark.parametrize("check,name,overrides,phrase", WRONG, ids=[f"{c}:{n}" for c, n, _, _ in WRONG])
def test_wrong_answers_fail_the_visible_checks_by_a_margin(check, name, overrides, phrase):
    """Caught already by the visible checks (students see it), at least 10× outside the tolerance (or for a
    reason that is not a tolerance: a shape, NaN, a hook, an exception), with a report that names it."""
    cases = checks.submit(check, *TOOL.variant_functions(check, overrides), measure=True)["cases"]
    failing = [c for c in cases if c["failed"]]
    assert failing, f"{name} passes the visible checks of {check}"
    assert max(c["ratio"] for c in failing) >= 10, cases
    report = failing[0]["report"]
    assert "expected:" in report and "got:" in report and phrase in report, report


@pytest.mark.parametrize("name", sorted(variants.CHEATS))
def test_known_cheats_fail_the_hidden_checks(name):
    check, overrides, phrase = variants.CHEATS[name]
    result = checks.submit(check, *TOOL.variant_functions(check, overrides), hidden=True)
    assert not result["passed"] and phrase in result["report"], result["report"]


def test_answers_that_call_camkit_or_a_peer_pass_visible_fail_hidden():
    via_camkit = "def grad_cam(model, layer, x, classes):\n" \
                 "    import camkit\n    return camkit.GradCAM(model, layer)(x, classes, normalize=False, upsample=False)\n"
    assert checks.submit("check_grad_cam", via_camkit)["passed"]  # visible: camkit is the reference
    report = checks.submit("check_grad_cam", via_camkit, hidden=True)["report"]
    assert "switches off" in report and "camkit.methods" in report, report
    saved = "from camkit import gradcampp_alpha\ndef alpha_exp_trick(A, g):\n    return gradcampp_alpha(A, g[:, None])[:, 0]\n"
    assert "gradcampp_alpha" in checks.submit("check_alpha_exp_trick", (saved, "alpha_exp_trick"),
                                               *TOOL.variant_functions("check_alpha_exp_trick")[1:],
                                               hidden=True)["report"]
    stats = ("import camkit\ndef cluster_means(differences, clusters):\n"
             "    return torch.as_tensor(camkit.stats.unit_means(differences, clusters)[0])\nimport torch\n")
    assert "camkit.report.stats.unit_means" in checks.submit("check_cluster_means", stats, hidden=True)["report"]
    caught = ("import camkit\ndef grad_cam(model, layer, x, classes):\n    try:\n"
              "        return camkit.GradCAM(model, layer)(x, classes, normalize=False, upsample=False)\n"
              "    except RuntimeError:\n        import torch\n        return torch.zeros(len(x), 8, 8)\n")
    assert "caught the error" in checks.submit("check_grad_cam", caught, hidden=True)["report"]


# --------------------------------------------------------------------------- the sandbox and the client

@pytest.mark.parametrize("body,phrase", [
    ("open('/tmp/camkit-escape.txt', 'w').write('x')", "write"),
    ("import subprocess; subprocess.run(['true'])", "subprocess.Popen"),
    ("import os; os.kill(os.getppid(), 9)", "os.kill"),
    ("import ctypes; ctypes.CDLL(None)", "ctypes"),
    ("import gc; gc.get_objects()", "gc.get_objects"),
    ("import os; os._exit(0)", "stopped the process"),
    ("import importlib.util, camkit, os\n"
     "    spec = importlib.util.spec_from_file_location('copy', os.path.join(os.path.dirname(camkit.__file__), "
     "'methods', 'single_pass.py'))\n    spec.loader.exec_module(importlib.util.module_from_spec(spec))", "read"),
    ("import importlib, camkit.methods.single_pass as m; importlib.reload(m)", "fresh import"),
])
def test_the_sandbox_refuses(body, phrase):
    source = f"def grad_cam(model, layer, x, classes):\n    {body}\n    return None\n"
    report = checks.submit("check_grad_cam", source, hidden=True)["report"]
    assert phrase in report, report


def _notebook_function(source: str, name: str, namespace: dict):
    """Execute ``source`` the way IPython does (a cell file in linecache, module __main__)."""
    filename = f"/tmp/ipykernel_test/{abs(hash(source))}.py"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    namespace.setdefault("__name__", "__main__")
    exec(compile(source, filename, "exec"), namespace)
    return namespace[name]


def test_notebook_functions_travel_with_what_they_use():
    namespace = {"torch": torch, "F": torch.nn.functional, "EPS": 1e-12, "OFFSET": torch.zeros(1)}
    _notebook_function("def helper(a):\n    return F.relu(a) + OFFSET\n", "helper", namespace)
    _notebook_function("class Scale(torch.nn.Module):\n    def forward(self, a):\n        return a * 1.0\n",
                       "Scale", namespace)
    fn = _notebook_function("def grad_cam(model, layer, x, classes, eps=EPS):\n"
                            "    from checks import photos  # noqa\n    return helper(Scale()(x[:, 0]))\n",
                            "grad_cam", namespace)
    packed = checks.bundle(fn)
    assert "error" not in packed, packed
    assert "import torch.nn.functional as F" in packed["imports"] and packed["constants"]["EPS"] == "1e-12"
    assert {p["source"].split("(")[0] for p in packed["sources"]} == {"def helper", "class Scale", "def grad_cam"}
    assert set(packed["tensors"]) == {"OFFSET"}
    uses_model = _notebook_function("def grad_cam(model, layer, x, classes):\n    return zoo_model(x)\n",
                                    "grad_cam", {"zoo_model": torch.nn.Linear(2, 2)})
    assert "reads the notebook variable `zoo_model`" in checks.bundle(uses_model)["error"]
    report = checks.submit("check_grad_cam", uses_model)["report"]
    assert "zoo_model" in report and "arguments" in report, report


def test_the_check_networks_discriminate():
    """The visible tiny case has maps that are partly positive and partly clipped for every image and
    method (an all-zero answer or a missing ReLU fails), and Σ_ab A_ab g_ij of order 1 (α = ½ fails)."""
    label, model, layer, x, classes = next(checks._tiny_cases([checks.VISIBLE_SEED]))
    activation, grads, _ = checks._reference_layer_gradients(model, layer, x, classes)
    terms = (activation.sum(dim=(2, 3), keepdim=True) * grads)[grads != 0].abs()
    assert float(terms.quantile(0.9)) > 0.2 and 0.5 < float(terms.max()) < 10, terms.quantile(torch.tensor([0.5, 0.9, 1.0]))
    for method in (checks.camkit.GradCAM, checks.camkit.GradCAMPlusPlus):
        maps = method(model, layer)(x, classes, normalize=False, upsample=False)
        positive = (maps > 0).double().flatten(1).mean(1)
        assert ((positive > 0.2) & (positive < 0.9)).all(), (method.__name__, positive)
    right = checks.camkit.GradCAMPlusPlus(model, layer)(x, classes, normalize=False, upsample=False)
    weights = (0.5 * (grads != 0) * grads.relu()).sum(dim=(2, 3))
    half = (weights[:, :, None, None] * activation).sum(1).relu()
    assert float((half - right).abs().max() / right.abs().max()) > 0.3  # "α = ½" misses by a third of the map


def test_verdict_rule():
    results = {"a": {"average_drop": 10, "increase": 50, "deletion_auc": [0.2, 0.4], "insertion_auc": [0.5, 0.7]},
               "b": {"average_drop": 20, "increase": 40, "deletion_auc": [0.1, 0.1], "insertion_auc": [0.7, 0.7]}}
    assert checks.verdict(results)[0] == "b"  # 2 wins each; b has the larger insertion − deletion gap
    checks.check_verdict("b", results)
    with pytest.raises(checks.CheckFailed, match="'b'"):
        checks.check_verdict("a", results)
    with pytest.raises(checks.CheckFailed, match="results"):
        checks.check_verdict(None, {})


def test_a_graded_cell_passes_only_with_every_check_it_calls():
    source = "checks.check_grad_cam(grad_cam, photo=p)\n### BEGIN HIDDEN TESTS\n" \
             "checks.check_grad_cam(grad_cam, hidden=True)\n### END HIDDEN TESTS\n"
    ok = {"passed": True, "lines": ["✔"], "report": ""}
    visible, hidden = {"check": "check_grad_cam", "kwargs": {"photo": [1]}, **ok}, \
        {"check": "check_grad_cam", "kwargs": {"hidden": True}, **ok}
    assert checks._cell_verdict(source, [visible, hidden])[0]
    assert not checks._cell_verdict(source, [visible])[0]                       # the hidden check never ran
    assert not checks._cell_verdict(source, [visible, hidden, {**visible, "passed": False, "report": "✘"}])[0]
    assert "did not reach the grader" in checks._cell_verdict(source, [])[2]


# --------------------------------------------------------------------------- generated copies and the course

def test_generated_copies_are_in_sync_with_the_masters():
    problems = TOOL.out_of_sync()
    assert not problems, "run `make assignments`:\n" + "\n".join(problems)


def test_student_copies_have_no_solutions_hidden_tests_or_outputs():
    for path in MASTERS:
        student = nbformat.read(ASSIGNMENTS / "student" / path.name, as_version=4)
        grading = nbformat.read(ASSIGNMENTS / "grading" / path.name, as_version=4)
        text = "\n".join(c.source for c in student.cells)
        assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text and "raise NotImplementedError()" in text
        assert not any(c.get("outputs") for c in student.cells if c.cell_type == "code")
        assert "### BEGIN HIDDEN TESTS" in "\n".join(c.source for c in grading.cells)
        assert "BEGIN SOLUTION" not in "\n".join(c.source for c in grading.cells)


def test_a_course_folder_links_its_chapters_and_grades_outside_the_kernel(tmp_path):
    TOOL.stage_sources(tmp_path, [MASTERS[0]], support=True)
    folder = tmp_path / "source" / MASTERS[0].stem
    text = "\n".join(c.source for c in nbformat.read(folder / MASTERS[0].name, as_version=4).cells
                     if c.cell_type == "markdown")
    links = re.findall(r"\]\(([^)]+\.(?:ipynb|html|md))\)", text)
    assert links and all(link.startswith("chapters/") and (folder / link).exists() for link in links), links
    assert "../../" not in text and (folder / "checks.py").exists()
    config = TOOL.COURSE_CONFIG.format(course_id="camkit", preprocessors=TOOL.AUTOGRADE_PREPROCESSORS)
    namespace = {"get_config": lambda: __import__("traitlets.config", fromlist=["Config"]).Config(),
                 "__file__": str(tmp_path / "nbgrader_config.py")}
    exec(config, namespace)
    c = namespace["c"]
    assert c.Autograde.autograde_preprocessors[0] == "checks.GradedExecute"
    assert c.Exchange.root == str(tmp_path / "exchange")
    assert checks.GradedExecute.__mro__[1].__name__ == "_GradedMixin"
