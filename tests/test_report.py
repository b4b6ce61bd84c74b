"""camkit.report: parameter checks fail clearly, results round-trip with provenance."""
import json

import pytest
import torch

from camkit import report

SPEC = {"steps": {"type": int, "min": 1}, "sigma": float, "method": {"choices": ["gradcam", "cam"]},
        "profile": {"choices": list(report.PROFILES)}}


def good(**changes):
    return {"steps": 4, "sigma": 0.1, "method": "cam", "profile": "default", **changes}


def test_valid_parameters_pass_and_ints_count_as_floats():
    report.check_parameters(good(sigma=1), SPEC)


@pytest.mark.parametrize("changes, error, match", [
    ({"steps": "4"}, TypeError, "steps must be int"),
    ({"steps": 0}, ValueError, ">= 1"),
    ({"steps": True}, TypeError, "bool"),
    ({"method": "gradcam+"}, ValueError, r"choose from \['gradcam', 'cam'\]"),
    ({"profile": "huge"}, ValueError, "choose from"),
])
def test_bad_parameters_fail_with_clear_messages(changes, error, match):
    with pytest.raises(error, match=match):
        report.check_parameters(good(**changes), SPEC)


OVERRIDES = {"overrides": {"keys": {"steps": {"type": int, "min": 1}, "n_steps": {"type": int, "min": 2}}}}


def test_override_dicts_check_each_given_key():
    report.check_parameters({"overrides": {}}, OVERRIDES)
    report.check_parameters({"overrides": {"n_steps": 10}}, OVERRIDES)


@pytest.mark.parametrize("overrides, error, match", [
    ({"stepz": 4}, ValueError, r"unknown keys \['stepz'\]; allowed: \['n_steps', 'steps'\]"),
    ({"n_steps": 1}, ValueError, r"overrides\['n_steps'\]=1 must be >= 2"),
    ({"steps": 2.5}, TypeError, r"overrides\['steps'\] must be int"),
    ([("steps", 4)], TypeError, "must be a dict"),
])
def test_bad_override_dicts_fail_with_clear_messages(overrides, error, match):
    with pytest.raises(error, match=match):
        report.check_parameters({"overrides": overrides}, OVERRIDES)


def test_missing_parameter_and_full_profile_without_gpu():
    with pytest.raises(ValueError, match="missing"):
        report.check_parameters({"steps": 1}, SPEC)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
            report.check_parameters(good(profile="full"), SPEC)


def test_results_round_trip(tmp_path):
    path = report.save_results("99_test", "default", {"score": torch.tensor([0.5, 0.25])}, root=tmp_path)
    assert path == tmp_path / "results" / "default" / "99_test.json"
    loaded = report.load_results("99_test", root=tmp_path)
    assert loaded["score"] == [0.5, 0.25] and loaded["profile"] == "default" and "torch" in loaded
    with pytest.raises(FileNotFoundError, match="run that notebook"):
        report.load_results("98_missing", root=tmp_path)


def test_results_keep_seven_digits_and_one_record_per_line():
    values = torch.rand(50, generator=torch.Generator().manual_seed(0))          # float32
    records = [{"claim": "c", "values_a": values.tolist()}, {"claim": "d", "p": 1.234567891234e-120}]
    text = report.results_json({"notebook": "99", "comparisons": records, "nested": {"x": [0.1 + 0.2]}})
    loaded = json.loads(text)
    stored = torch.tensor(loaded["comparisons"][0]["values_a"], dtype=torch.float64)
    assert ((stored - values.double()).abs() <= 5e-7 * values.double().abs()).all()   # 7 significant digits
    assert not torch.equal(stored, values.double())                                  # ... and rounded to them
    assert loaded["comparisons"][1]["p"] == 1.234568e-120 and loaded["nested"]["x"] == [0.3]
    lines = text.splitlines()   # {, notebook, comparisons: [, one line per record, ], nested, }
    assert len(lines) == 8 and lines[3].startswith('  {"claim":"c"') and lines[4] == '  {"claim":"d","p":1.234568e-120}'
    with pytest.raises(TypeError, match="cannot write"):
        report.results_json({"x": object()})


def test_default_device():
    assert report.default_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert report.default_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            report.default_device("cuda")


def test_parameter_types_come_from_the_parameters_cell_annotations():
    """check_parameters reads types from the annotations (steps: int = 50), so the check cell only adds bounds."""
    values = {"__annotations__": {"steps": int, "name": str, "sigma": float}, "steps": 8, "name": "a",
              "sigma": 0.5, "profile": "default"}
    assert report.parameter_rules(values, {"steps": {"min": 1}}) == {
        "steps": {"type": int, "min": 1}, "name": str, "sigma": float}
    report.check_parameters(values)
    report.check_parameters(values, {"steps": {"min": 1}})
    with pytest.raises(TypeError, match="parameter steps must be int, got str"):
        report.check_parameters({**values, "steps": "8"})
    with pytest.raises(ValueError, match=r"steps=0 must be >= 1"):
        report.check_parameters({**values, "steps": 0}, {"steps": {"min": 1}})
    with pytest.raises(TypeError, match="got bool"):
        report.check_parameters({**values, "steps": True})
    with pytest.raises(ValueError, match="not allowed"):
        report.check_parameters(values, {"name": {"choices": ["b"]}})
