"""notebooks/profiles.yaml names only parameters the notebooks declare (and papermill can parse)."""
from pathlib import Path

import papermill
import pytest
import yaml

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
PROFILES = yaml.safe_load((NOTEBOOKS / "profiles.yaml").read_text())


def test_profiles_are_the_three_documented_ones():
    assert list(PROFILES) == ["default", "cpu", "full"]
    assert PROFILES["default"] == {}, "default must be exactly the notebooks' own parameters cells"


@pytest.mark.parametrize("profile", ["cpu", "full"])
def test_profile_entries_name_declared_parameters(profile):
    for stem, params in PROFILES[profile].items():
        if stem == "all":
            continue
        notebook = NOTEBOOKS / f"{stem}.ipynb"
        assert notebook.exists(), f"profiles.yaml[{profile}] names {stem}, which has no notebook"
        declared = papermill.inspect_notebook(str(notebook))
        unknown = set(params) - set(declared)
        assert not unknown, f"{stem} does not declare (or papermill cannot parse) {sorted(unknown)}"


def test_every_chapter_has_a_parseable_parameters_cell_with_profile():
    for notebook in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        declared = papermill.inspect_notebook(str(notebook))
        assert "profile" in declared and "device" in declared, f"{notebook.name}: parameters {sorted(declared)}"
