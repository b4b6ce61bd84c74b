"""Generate the classroom assignments from their masters with nbgrader (`make assignments`).

    python tools/make_assignments.py                 # student/ and grading/ from master/ (what make runs)
    python tools/make_assignments.py --check         # exit 1 when the committed copies are out of sync
    python tools/make_assignments.py --course DIR    # a ready nbgrader course (source/, release/, gradebook)
    python tools/make_assignments.py --course DIR --only 01_gradcam_from_hooks   # some assignments only
    python tools/make_assignments.py margins         # how far each wrong answer lands from the tolerance
    python tools/make_assignments.py author draft.py notebooks/assignments/master/06_x.ipynb --execute

The masters (``notebooks/assignments/master/NN_slug.ipynb``) hold the solutions between
``### BEGIN SOLUTION`` / ``### END SOLUTION`` and the hidden tests between ``### BEGIN HIDDEN TESTS``
/ ``### END HIDDEN TESTS``, with nbgrader cell metadata (solution, graded test, manually graded
answer). nbgrader's own ``generate_assignment`` (run offline, without a database) writes

* ``notebooks/assignments/student/``: what students get: solutions replaced by
  ``raise NotImplementedError()``, hidden tests removed, outputs cleared, test cells locked;
* ``notebooks/assignments/grading/``: the same with the hidden tests kept: exactly what
  ``nbgrader autograde`` runs on a submission (CI runs it on the blank copies to prove that they
  fail every graded cell with a CheckFailed report, not a crash).

A course (``--course``) gets, next to nbgrader's folders, an ``nbgrader_config.py`` that grades outside the
kernel (``checks.GradedExecute`` from ``grader/checks.py``, see notebooks/assignments/README.md), an exchange
folder inside the course (no root needed), and the chapters each assignment links to as standalone HTML
in ``source/<assignment>/chapters/`` (the links ``../../NN_slug.ipynb`` of the masters are rewritten to them).

``author`` turns a percent-format draft (see tools/py2nb.py) into a master. Cell headers carry
the nbgrader role as tags: ``tags=["solution"]``, ``tags=["test", "points=3"]`` (autograded),
``tags=["answer", "points=2"]`` on a Markdown cell (a free answer graded by hand); other tags
(``parameters``) are kept. ``--execute`` runs the master so it is committed with its outputs.
"""
from __future__ import annotations

import argparse
import filecmp
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENTS = ROOT / "notebooks" / "assignments"
MASTER = ASSIGNMENTS / "master"
OUTPUTS = {"student": ASSIGNMENTS / "student", "grading": ASSIGNMENTS / "grading"}
SUPPORT = ["checks.py"]  # files every assignment folder of an nbgrader course needs
COURSE_ID = "camkit"
NOTEBOOKS = ROOT / "notebooks"
CHAPTER_LINK = re.compile(r"\]\(\.\./\.\./((\d\d_\w+)\.ipynb|glossary\.md)\)")
#: nbgrader's default autograde preprocessors with Execute replaced by the one that grades outside the kernel
AUTOGRADE_PREPROCESSORS = ["checks.GradedExecute", "nbgrader.preprocessors.IgnorePattern",
                           "nbconvert.preprocessors.ClearMetadataPreprocessor", "nbgrader.preprocessors.LimitOutput",
                           "nbgrader.preprocessors.SaveAutoGrades", "nbgrader.preprocessors.AssignLatePenalties",
                           "nbgrader.preprocessors.CheckCellMetadata"]


# --------------------------------------------------------------------------- generation

def masters() -> list[Path]:
    found = sorted(MASTER.glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise SystemExit(f"no master notebooks in {MASTER.relative_to(ROOT)}")
    return found


def nbgrader(args: list[str], course: Path) -> None:
    """Run the nbgrader command line in ``course`` (offline; its own venv's tools on PATH)."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    command = [sys.executable, "-m", "nbgrader", *args, f"--CourseDirectory.root={course}",
               f"--CourseDirectory.course_id={COURSE_ID}", "--log-level=WARN"]
    result = subprocess.run(command, cwd=course, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"nbgrader {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")


def stage_sources(course: Path, notebooks: list[Path], support: bool) -> None:
    """nbgrader's layout: source/<assignment>/<assignment>.ipynb (+ checks.py and the linked chapters as
    HTML for a real course, whose links are rewritten to them)."""
    for notebook in notebooks:
        folder = course / "source" / notebook.stem
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(notebook, folder / notebook.name)
        if support:
            for name in SUPPORT:
                shutil.copy(ASSIGNMENTS / name, folder / name)
            link_chapters(folder / notebook.name, folder / "chapters")


def link_chapters(path: Path, chapters: Path) -> list[str]:
    """Point the links ``../../NN_slug.ipynb`` (which work in the repository) to ``chapters/NN_slug.html``
    and export those chapters there as standalone HTML (images embedded): a course folder has no
    ``../../``. Returns the chapters written."""
    notebook = nbformat.read(path, as_version=4)
    linked = set()
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            linked |= {m.group(1) for m in CHAPTER_LINK.finditer(cell.source)}
            cell.source = CHAPTER_LINK.sub(lambda m: f"](chapters/{Path(m.group(1)).stem}.html)", cell.source)
    nbformat.write(notebook, path)
    chapters.mkdir(exist_ok=True)
    written = []
    for name in sorted(linked):
        target = chapters / f"{Path(name).stem}.html"
        if name.endswith(".md"):
            target.write_text(markdown_page(NOTEBOOKS / name))
        else:
            target.write_text(chapter_html(NOTEBOOKS / name))
        written.append(target.name)
    return written


def chapter_html(path: Path) -> str:
    from nbconvert import HTMLExporter
    exporter = HTMLExporter(embed_images=True)
    body, _ = exporter.from_notebook_node(nbformat.read(path, as_version=4))
    return body


def markdown_page(path: Path) -> str:
    """A Markdown page as a notebook of one cell, exported like a chapter (MathJax, tables)."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(path.read_text())])
    from nbconvert import HTMLExporter
    body, _ = HTMLExporter(exclude_input_prompt=True).from_notebook_node(notebook)
    return body


def normalise(path: Path) -> None:
    """Stable bytes: nbformat's JSON layout, a trailing newline (nbgrader writes its own)."""
    notebook = nbformat.read(path, as_version=4)
    nbformat.write(notebook, path)


def generate(out: dict[str, Path]) -> None:
    """Write the student and grading copies of every master into ``out["student"]`` / ``out["grading"]``."""
    notebooks = masters()
    variants = {"student": [], "grading": ["--ClearHiddenTests.enabled=False"]}
    for kind, extra in variants.items():
        with tempfile.TemporaryDirectory(prefix="nbgrader-") as tmp:
            course = Path(tmp)
            stage_sources(course, notebooks, support=False)
            nbgrader(["generate_assignment", "*", "--no-db", "--force", *extra], course)
            target = out[kind]
            target.mkdir(parents=True, exist_ok=True)
            for old in target.glob("*.ipynb"):
                old.unlink()
            for notebook in notebooks:
                produced = course / "release" / notebook.stem / notebook.name
                shutil.copy(produced, target / notebook.name)
                os.chmod(target / notebook.name, 0o644)
                normalise(target / notebook.name)


def out_of_sync() -> list[str]:
    """Names of generated files that differ from a fresh generation (or are missing / extra)."""
    with tempfile.TemporaryDirectory(prefix="assignments-") as tmp:
        fresh = {kind: Path(tmp) / kind for kind in OUTPUTS}
        generate(fresh)
        problems = []
        for kind, committed in OUTPUTS.items():
            names = {p.name for p in fresh[kind].glob("*.ipynb")} | {p.name for p in committed.glob("*.ipynb")}
            for name in sorted(names):
                a, b = fresh[kind] / name, committed / name
                if not b.exists():
                    problems.append(f"{kind}/{name} is missing")
                elif not a.exists():
                    problems.append(f"{kind}/{name} has no master")
                elif not filecmp.cmp(a, b, shallow=False):
                    problems.append(f"{kind}/{name} differs from its master")
        return problems


COURSE_CONFIG = """\
# nbgrader configuration of the camkit course (written by tools/make_assignments.py --course).
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "grader"))   # grader/checks.py: GradedExecute

c = get_config()
c.CourseDirectory.course_id = {course_id!r}
c.CourseDirectory.root = here
# The exchange lives in the course folder, so no root rights are needed; every account that releases,
# fetches, submits or collects must name the same folder (see notebooks/assignments/README.md).
c.Exchange.root = os.path.join(here, "exchange")
# Grade outside the kernel: the checks run in a grader process started before the notebook, and each
# graded cell's outputs are rewritten from its log (nothing the student's code does in the kernel counts).
c.Autograde.autograde_preprocessors = {preprocessors!r}
c.Execute.timeout = 600
# checks.py in source/<assignment>/ replaces any copy a student submitted (nbgrader's default).
"""


def make_course(course: Path, only: list[str] | None = None) -> None:
    """An nbgrader course folder with the assignments generated and registered in its gradebook."""
    course.mkdir(parents=True, exist_ok=True)
    config = course / "nbgrader_config.py"
    if not config.exists():
        config.write_text(COURSE_CONFIG.format(course_id=COURSE_ID, preprocessors=AUTOGRADE_PREPROCESSORS))
    (course / "grader").mkdir(exist_ok=True)
    shutil.copy(ASSIGNMENTS / "checks.py", course / "grader" / "checks.py")
    exchange = course / "exchange"
    exchange.mkdir(exist_ok=True)
    os.chmod(exchange, 0o777 | 0o1000)  # nbgrader's exchange convention: world-writable, sticky
    notebooks = [n for n in masters() if not only or n.stem in only]
    if only and len(notebooks) != len(only):
        raise SystemExit(f"unknown assignments {sorted(set(only) - {n.stem for n in notebooks})}")
    stage_sources(course, notebooks, support=True)
    for notebook in notebooks:
        nbgrader(["generate_assignment", notebook.stem, "--force"], course)
    print(f"nbgrader course in {course}: {', '.join(n.stem for n in notebooks)} generated into release/")


def margins() -> str:
    """The README table: every wrong answer and known cheat of notebooks/assignments/variants.py through the
    grader, visible and hidden checks, as max |Δ| / tolerance (∞: a shape, NaN, hook, exception, a
    switched-off call)."""
    sys.path.insert(0, str(ASSIGNMENTS))
    import checks
    import variants

    def fmt(cases):
        failing = [c for c in cases if c["failed"]]
        if not failing:
            return "passes"
        ratio = max(c["ratio"] for c in failing)
        return "∞" if ratio == float("inf") else f"{ratio:,.0f}×"

    rows = ["| task | wrong answer | visible checks | hidden checks | report says |", "| --- | --- | --- | --- | --- |"]
    entries = [(check, name, overrides) for check, group in variants.WRONG.items() for name, (overrides, _) in group.items()]
    entries += [(check, f"**{name}**", overrides) for name, (check, overrides, _) in variants.CHEATS.items()]
    for check, name, overrides in entries:
        functions = variant_functions(check, overrides)
        seen = {}
        for hidden in (False, True):
            seen[hidden] = checks.submit(check, *functions, hidden=hidden, measure=True)["cases"]
        reason = next((c["reason"] for c in seen[False] + seen[True] if c["failed"]), "")
        rows.append(f"| {checks.CHECKS[check].task} | {name} | {fmt(seen[False])} | {fmt(seen[True])} | "
                    f"{short_reason(reason)} |")
    return "\n".join(rows)


def short_reason(reason: str) -> str:
    """The report's "got:" line for a table cell: the largest error for a tolerance, else the first words."""
    if "max |Δ| =" in reason:
        reason = reason[reason.index("max |Δ| ="):]
    return reason.replace("|Δ|", "Δ").replace("|", "/")[:70]


SKIPPED_IMPORTS = ("matplotlib", "sympy", "sys", "pathlib", "checks")


def master_source(stem: str) -> str:
    """A master's answers as one module: its imports (no plotting), the given helpers and the solution cells."""
    notebook = nbformat.read(MASTER / f"{stem}.ipynb", as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    parts = []
    import ast
    for node in ast.parse(code[0].source).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            if not any(n.split(".")[0] in SKIPPED_IMPORTS or n == "camkit.zoo" for n in names):
                parts.append(ast.get_source_segment(code[0].source, node))
    for cell in code[1:]:
        meta = cell.metadata.get("nbgrader", {})
        if not meta.get("grade") and cell.source.lstrip().startswith(("def ", "class ")):
            parts.append(cell.source)
    return "\n\n".join(parts) + "\n"


def variant_functions(check: str, overrides: dict | None = None) -> list[tuple[str, str]]:
    """(source, entry) per parameter of ``check``: the master's answers with ``overrides`` appended."""
    sys.path.insert(0, str(ASSIGNMENTS))
    import variants
    stem, params = variants.TASKS[check]
    source = master_source(stem) + "".join("\n" + text for text in (overrides or {}).values())
    return [(source, name) for name in params.values()]


# --------------------------------------------------------------------------- authoring

HEADER = re.compile(r"^# %%(.*)$", flags=re.M)


def parse_draft(text: str) -> nbformat.NotebookNode:
    """Percent-format cells (as tools/py2nb.py) whose tags may name an nbgrader role."""
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata["language_info"] = {"name": "python"}
    chunks = HEADER.split(text)
    for header, body in zip(chunks[1::2], chunks[2::2]):
        body = body.strip("\n")
        found = re.search(r"tags=(\[.*?\])", header)
        tags = json.loads(found.group(1)) if found else []
        if "[markdown]" in header:
            source = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in body.splitlines())
            cell = nbformat.v4.new_markdown_cell(source)
        else:
            cell = nbformat.v4.new_code_cell(body)
        cell.id = f"cell-{len(notebook.cells):02d}"
        role = [t for t in tags if t in ("solution", "test", "answer")]
        points = [float(t.split("=", 1)[1]) for t in tags if t.startswith("points=")]
        other = [t for t in tags if t not in role and not t.startswith("points=")]
        if other:
            cell.metadata["tags"] = other
        if role:
            grade_id = f"{role[0]}-{len(notebook.cells):02d}"
            meta = {"grade": role[0] != "solution", "solution": role[0] != "test", "locked": role[0] == "test",
                    "grade_id": grade_id, "schema_version": 3}
            if role[0] != "solution":
                if not points:
                    raise SystemExit(f"cell {len(notebook.cells)} ({role[0]}) needs a points=N tag")
                meta["points"] = points[0]
            cell.metadata["nbgrader"] = meta
        notebook.cells.append(cell)
    return notebook


def author(draft: Path, target: Path, execute: bool, timeout: int) -> None:
    notebook = parse_draft(draft.read_text())
    nbformat.write(notebook, target)
    if execute:
        start = time.time()
        subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", "--inplace",
                        f"--ExecutePreprocessor.timeout={timeout}", target.name], cwd=target.parent, check=True)
        print(f"{target.name}: executed in {time.time() - start:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    draft = sub.add_parser("author", help="percent-format draft -> master notebook")
    draft.add_argument("source", type=Path)
    draft.add_argument("target", type=Path)
    draft.add_argument("--execute", action="store_true")
    draft.add_argument("--timeout", type=int, default=600)
    parser.add_argument("--check", action="store_true", help="only report whether student/ and grading/ are in sync")
    parser.add_argument("--course", type=Path, help="write a complete nbgrader course folder here instead")
    parser.add_argument("--only", nargs="+", help="with --course: only these assignments")
    sub.add_parser("margins", help="print the margins table of README.md")
    args = parser.parse_args()
    if args.command == "author":
        author(args.source, args.target, args.execute, args.timeout)
    elif args.command == "margins":
        print(margins())
    elif args.check:
        problems = out_of_sync()
        if problems:
            raise SystemExit("out of sync with the masters (run `make assignments`):\n  " + "\n  ".join(problems))
        print("student/ and grading/ are in sync with master/")
    elif args.course:
        make_course(args.course.resolve(), args.only)
    else:
        generate(OUTPUTS)
        for kind, folder in OUTPUTS.items():
            print(f"{folder.relative_to(ROOT)}/: {', '.join(p.name for p in sorted(folder.glob('*.ipynb')))}")


if __name__ == "__main__":
    main()
