"""Build the HTML report: run every notebook with papermill, then render them as a book (tools/book.py).

    python tools/build_report.py --profile default        # what `make report` runs
    python tools/build_report.py --profile cpu --only 11_faithfulness

Parameters per profile come from notebooks/profiles.yaml (`default` = the notebooks' own
parameters cells). Executed notebooks go to build/notebooks/<profile>/, the book (Sphinx + myst-nb,
readable offline from file://) to build/report/ (build/report-<profile>/ for other profiles). A
notebook whose executed copy is newer than its inputs (the notebook, profiles.yaml and lib/camkit)
is skipped; --render-only runs none and re-renders the book. A failure names the notebook and cell,
keeps the previous report and the previous executed copies, and exits 1.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
PROFILES_FILE = NOTEBOOKS / "profiles.yaml"


def notebook_list() -> list[Path]:
    """Report chapters in order: notebooks/NN_*.ipynb, the worked answers, then the assignment masters."""
    chapters = sorted(p for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    return (chapters + sorted((NOTEBOOKS / "solutions").glob("[0-9][0-9]_solutions.ipynb"))
            + sorted((NOTEBOOKS / "assignments" / "master").glob("*.ipynb")))


def load_profile(name: str) -> dict:
    """The parameter overrides of profile ``name``: {"all": {...}, "<notebook stem>": {...}}."""
    import yaml

    profiles = yaml.safe_load(PROFILES_FILE.read_text()) or {}
    if name not in profiles:
        raise SystemExit(f"unknown profile {name!r}; profiles.yaml defines {sorted(profiles)}")
    return profiles[name] or {}


def parameters_for(notebook: Path, profile: str, overrides: dict) -> dict:
    """Merge the profile's overrides for ``notebook``, refusing names its parameters cell lacks."""
    import papermill

    declared = papermill.inspect_notebook(str(notebook))
    params = {**overrides.get("all", {}), **overrides.get(notebook.stem, {})}
    if profile != "default" and "profile" in declared:
        params.setdefault("profile", profile)
    unknown = sorted(set(params) - set(declared))
    if unknown and notebook.stem in overrides:
        raise SystemExit(f"profiles.yaml[{profile}][{notebook.stem}] sets unknown parameters {unknown}; "
                         f"{notebook.name} declares {sorted(declared)}")
    return {k: v for k, v in params.items() if k in declared}


def is_fresh(output: Path, inputs: list[Path]) -> bool:
    """True when ``output`` exists and is newer than every input file."""
    if not output.exists():
        return False
    newest = max(p.stat().st_mtime for p in inputs if p.exists())
    return output.stat().st_mtime > newest


def execute(notebook: Path, output: Path, params: dict) -> float:
    """Run ``notebook`` with papermill into ``output`` (atomically); returns seconds taken."""
    import papermill

    output.parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        partial = Path(tmp) / output.name
        try:
            papermill.execute_notebook(str(notebook), str(partial), parameters=params,
                                       cwd=str(notebook.parent), progress_bar=False, kernel_name="python3")
        except papermill.PapermillExecutionError as error:
            failed = output.with_suffix(".failed.ipynb")
            shutil.copy(partial, failed)
            raise SystemExit(f"\nFAILED: {notebook.relative_to(ROOT)} at cell {error.exec_count} "
                             f"({error.ename}: {error.evalue})\nExecuted copy with the traceback: "
                             f"{failed.relative_to(ROOT)}\nThe previous report is left as it was.")
        shutil.move(str(partial), output)
    return time.time() - start


def render(executed: list[Path], report: Path, profile: str) -> None:
    """The book (tools/book.py: Sphinx + myst-nb over the executed copies, nothing re-executed)."""
    sys.path.insert(0, str(ROOT / "tools"))
    import book

    book.build(executed, report, profile)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="default")
    parser.add_argument("--only", nargs="*", help="notebook stems to run (default: all)")
    parser.add_argument("--force", action="store_true", help="rerun notebooks even when up to date")
    parser.add_argument("--render-only", action="store_true", help="run no notebook; render the executed copies")
    args = parser.parse_args()

    overrides = load_profile(args.profile)
    out_dir = ROOT / "build" / "notebooks" / args.profile
    library = list((ROOT / "lib" / "camkit").rglob("*.py"))
    executed = []
    for notebook in notebook_list():
        output = out_dir / notebook.name
        executed.append(output)
        if args.render_only or args.only and notebook.stem not in args.only:
            continue
        params = parameters_for(notebook, args.profile, overrides)
        if not args.force and is_fresh(output, [notebook, PROFILES_FILE, *library]):
            print(f"  up to date  {notebook.name}")
            continue
        print(f"  running     {notebook.name} {params or ''}", flush=True)
        print(f"  done        {notebook.name} in {execute(notebook, output, params):.0f} s", flush=True)
    missing = [p for p in executed if not p.exists()]
    if missing:
        raise SystemExit(f"cannot render: {len(missing)} notebooks have not run yet ({missing[0].name}, ...)")
    report = ROOT / "build" / ("report" if args.profile == "default" else f"report-{args.profile}")
    report.parent.mkdir(parents=True, exist_ok=True)
    render(executed, report, args.profile)
    print(f"report: {(report / 'index.html').relative_to(ROOT)}")


if __name__ == "__main__":
    sys.exit(main())
