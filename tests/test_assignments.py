"""The classroom assignments: masters solve every check, blank student copies fail every graded cell
with a CheckFailed report (not a crash), wrong answers and answers that call camkit are caught, and
the generated copies are in sync with the masters. nbval executes the masters themselves in `make test`."""
from __future__ import annotations

import importlib.util
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
from checks import CheckFailed  # noqa: E402

MASTERS = sorted((ASSIGNMENTS / "master").glob("[0-9][0-9]_*.ipynb"))


def _load_tool():
    spec = importlib.util.spec_from_file_location("make_assignments", ROOT / "tools" / "make_assignments.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _nbgrader(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def _is_test(cell) -> bool:
    meta = _nbgrader(cell)
    return cell.cell_type == "code" and meta.get("grade") and not meta.get("solution")


def _solutions(stem: str) -> dict:
    """The master's functions: its import cell, given helpers and solution cells executed (no model, no photos)."""
    notebook = nbformat.read(ASSIGNMENTS / "master" / f"{stem}.ipynb", as_version=4)
    namespace: dict = {}
    code = [c for c in notebook.cells if c.cell_type == "code"]
    exec(code[0].source, namespace)  # imports (checks is found on sys.path already)
    for cell in code[1:]:
        if cell.source.lstrip().startswith(("def ", "class ")) and not _is_test(cell):
            exec(cell.source, namespace)
    return namespace


# --------------------------------------------------------------------------- structure

def test_four_masters_with_points_solutions_and_hidden_tests():
    assert [p.stem[:2] for p in MASTERS] == ["01", "02", "03", "04"]
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
        assert re.search(r"\(\.\./\.\./\d\d_\w+\.ipynb\)", text), f"{path.name} links no chapter"
        for cell in tests:  # the graded cells of the committed master run printed ✔ and no error
            assert not any(o.output_type == "error" for o in cell.outputs), path.name
            assert "✔" in "".join(o.get("text", "") for o in cell.outputs), path.name


def test_draft_tags_become_nbgrader_metadata():
    tool = _load_tool()
    notebook = tool.parse_draft('# %% tags=["solution"]\nx = 1\n# %% tags=["test", "points=3"]\nassert x\n'
                                '# %% [markdown] tags=["answer", "points=2"]\n# Because.\n'
                                '# %% tags=["parameters"]\nseed = 0\n')
    solution, test, answer, parameters = notebook.cells
    assert _nbgrader(solution) == {"grade": False, "solution": True, "locked": False, "grade_id": "solution-00",
                                   "schema_version": 3}
    assert _nbgrader(test)["grade"] and _nbgrader(test)["locked"] and _nbgrader(test)["points"] == 3
    assert answer.cell_type == "markdown" and _nbgrader(answer)["solution"] and _nbgrader(answer)["points"] == 2
    assert parameters.metadata["tags"] == ["parameters"] and "nbgrader" not in parameters.metadata


# --------------------------------------------------------------------------- masters pass the hidden checks

def test_master_solutions_pass_hidden_checks_on_tiny_cnns():
    a1, a2, a3, a4 = (_solutions(p.stem) for p in MASTERS)
    checks.check_layer_gradients(a1["layer_activation_and_grad"], hidden=True)
    checks.check_grad_cam(a1["grad_cam"], hidden=True)
    checks.check_upsample_normalize(a1["upsample_and_normalize"], hidden=True)
    checks.check_diagonal_derivatives(a2["diagonal_derivatives"], hidden=True)
    checks.check_alpha_general(a2["alpha_general"], hidden=True)
    checks.check_alpha_exp_trick(a2["alpha_exp_trick"], hidden=True)
    checks.check_gradcampp_map(a2["gradcampp_map"], hidden=True)
    checks.check_ramp(a3["f"], a3["plain_gradient"], hidden=True)
    checks.check_integrated_gradients(a3["integrated_gradients"], a3["f"], hidden=True)
    checks.check_integrated_gradcam(a3["integrated_gradcam"], hidden=True)
    checks.check_layer_completeness(a3["layer_completeness"], hidden=True)
    checks.check_average_drop_increase(a4["average_drop_increase"], hidden=True)
    checks.check_pixel_path(a4["pixel_path"], a4["auc"], hidden=True)


# --------------------------------------------------------------------------- wrong answers are caught

def _fails(check, *args, contains: str, **kwargs) -> str:
    with pytest.raises(CheckFailed) as failure:
        check(*args, **kwargs)
    message = str(failure.value)
    assert "expected:" in message and "got:" in message, message
    assert contains in message, message
    return message


def test_answers_that_call_camkit_fail_the_hidden_checks_only():
    def via_camkit(model, layer, x, classes):
        return torch.as_tensor(0) + __import__("camkit").GradCAM(model, layer)(x, classes, normalize=False,
                                                                                 upsample=False)
    checks.check_grad_cam(via_camkit)  # visible: camkit is the reference, so it passes
    _fails(checks.check_grad_cam, via_camkit, hidden=True, contains="switches off")

    from camkit import gradcampp_alpha  # a name bound before the grader switches it off
    _fails(checks.check_alpha_exp_trick, lambda a, g: gradcampp_alpha(a, g[:, None])[:, 0], hidden=True,
           contains="gradcampp_alpha")
    # everything is restored afterwards
    a, g = torch.rand(1, 2, 3, 3), torch.randn(1, 1, 2, 3, 3)
    assert torch.isfinite(gradcampp_alpha(a, g)).all()
    model, layer = checks.tiny_cnn(0)
    assert checks.camkit.GradCAM(model, layer)(checks.random_images(1)).shape == (1, 16, 16)


def test_stubs_and_crashes_become_reports():
    def stub(*args):
        raise NotImplementedError()

    _fails(checks.check_grad_cam, stub, contains="still the stub")
    _fails(checks.check_grad_cam, lambda model, layer, x, classes: x[:, 0] / 0 + undefined_name,  # noqa: F821
           contains="NameError")
    _fails(checks.check_evaluation, {}, None, None, {"gradcam": None}, None, 4, contains="one entry per method")
    assert checks.CheckFailed("a\nb")._render_traceback_()[1:] == ["a", "b"]


def test_wrong_implementations_fail_with_what_was_expected():
    a1, a2, a3, a4 = (_solutions(p.stem) for p in MASTERS)

    def no_relu(model, layer, x, classes):
        activation, grads = a1["layer_activation_and_grad"](model, layer, x, classes)
        return (grads.mean(dim=(2, 3))[:, :, None, None] * activation).sum(1)
    _fails(checks.check_grad_cam, no_relu, contains="ReLU")

    def leaks_hook(model, layer, x, classes):
        layer.register_forward_hook(lambda *args: None)
        return a1["layer_activation_and_grad"](model, layer, x, classes)
    _fails(checks.check_layer_gradients, leaks_hook, contains="hooks")

    def with_backward(model, layer, x, classes):
        activation, grads = a1["layer_activation_and_grad"](model, layer, x, classes)
        model(x).sum().backward()
        return activation, grads
    _fails(checks.check_layer_gradients, with_backward, contains="autograd.grad")

    def no_clone(model, layer, x, classes):
        store = {}
        handle = layer.register_forward_hook(lambda m, i, o: store.setdefault("A", o))
        try:
            logits = model(x)
        finally:
            handle.remove()
        (grads,) = torch.autograd.grad(logits.gather(1, classes[:, None]).sum(), store["A"])
        return store["A"].detach(), grads
    _fails(checks.check_layer_gradients, no_clone, contains="clone")

    def divide_by_max(maps, size):  # no ε: an all-zero map becomes 0 / 0
        up = torch.nn.functional.interpolate(maps[:, None], size=size, mode="bilinear")[:, 0]
        low = up.amin(dim=(1, 2), keepdim=True)
        return (up - low) / (up.amax(dim=(1, 2), keepdim=True) - low)
    _fails(checks.check_upsample_normalize, divide_by_max, contains="NaN")
    _fails(checks.check_alpha_general, lambda a, d2, d3: d2 / (2 * d2 + a.sum(dim=(-2, -1), keepdim=True) * d3),
           contains="NaN")
    _fails(checks.check_alpha_exp_trick, lambda a, g: a2["alpha_exp_trick"](a, g) * 2, contains="α")
    def left_riemann(fn, x, baseline, steps):
        t = torch.arange(0, steps, dtype=x.dtype) / steps
        points = baseline + t.reshape(-1, *([1] * x.ndim)) * (x - baseline)
        return (x - baseline) * a3["plain_gradient"](fn, points).mean(0)
    _fails(checks.check_integrated_gradients, left_riemann, a3["f"], contains="IG")
    _fails(checks.check_average_drop_increase,
           lambda *args: tuple(reversed(a4["average_drop_increase"](*args))), contains="average_drop")
    _fails(checks.check_pixel_path, lambda model, x, maps, classes, canvas, n, insert:
           a4["pixel_path"](model, x, maps, classes, canvas, n, not insert), a4["auc"], contains="curve")


def test_verdict_rule():
    results = {"a": {"average_drop": 10, "increase": 50, "deletion_auc": [0.2, 0.4], "insertion_auc": [0.5, 0.7]},
               "b": {"average_drop": 20, "increase": 40, "deletion_auc": [0.1, 0.1], "insertion_auc": [0.7, 0.7]}}
    assert checks.verdict(results)[0] == "b"  # 2 wins each; b has the larger insertion − deletion gap
    checks.check_verdict("b", results)
    _fails(checks.check_verdict, "a", results, contains="'b'")
    _fails(checks.check_verdict, None, {}, contains="results")


# --------------------------------------------------------------------------- generated copies

def test_generated_copies_are_in_sync_with_the_masters():
    problems = _load_tool().out_of_sync()
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


@pytest.mark.parametrize("name", [p.name for p in MASTERS])
def test_blank_submission_fails_every_graded_cell_with_a_report(name):
    """The grading copy (student stubs + visible and hidden tests) is what nbgrader autograde runs."""
    from nbclient import NotebookClient

    path = ASSIGNMENTS / "grading" / name
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=300, allow_errors=True, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    first_solution = next(i for i, c in enumerate(notebook.cells) if _nbgrader(c).get("solution"))
    for index, cell in enumerate(notebook.cells):
        errors = [o for o in cell.get("outputs", []) if o.output_type == "error"]
        if index < first_solution:
            assert not errors, f"{name} cell {index} (setup) failed: {errors}"
        elif _is_test(cell):
            assert len(errors) == 1 and errors[0].ename == "CheckFailed", \
                f"{name} cell {index}: a graded cell must fail with CheckFailed, got {errors}"
            report = errors[0].evalue
            assert "✘ Task" in report and "expected:" in report and "got:" in report, report
