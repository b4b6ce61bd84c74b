"""Render executed notebooks as a book: Sphinx + myst-nb + sphinx-book-theme, offline.

    python tools/book.py                                   # the committed notebooks -> build/book/
    python tools/book.py --notebooks build/notebooks/cpu --out build/report-cpu --profile cpu

`make report` calls :func:`build` on papermill's executed copies (tools/build_report.py). Nothing
is executed here. The notebooks are staged into build/book-work/<out name>/src/ as copies, in the
repository's layout (chapters at the top, masters under assignments/master/, so the notebooks'
relative links resolve), and only the copies change:

* plumbing cells get myst-nb tags: the imports, the ``parameters`` cell (and papermill's
  ``injected-parameters``) and the ``check_parameters`` cell are collapsed (``hide-cell``);
* ``[key]`` / ```[key]``` citations of references.bib keys in Markdown (and ```key``` in
  Markdown outputs, as in chapter 29's table) become ``{cite}`key``` for sphinxcontrib-bibtex;
* a figure's caption (the ``*Figure ...*`` paragraph opening the next Markdown cell) moves into
  the figure cell's myst-nb metadata, so the image and caption render as one HTML <figure>.

The landing page (index.md) is generated: the abstract (book/abstract.md), the verdict table of
chapter 29 read by :func:`reproduction_claims`, one key figure, and the table of contents.
Maths is typeset by MathJax 3 from the ``django-static-mathjax`` wheel, copied into _static
(:func:`mathjax_static`).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
MASTERS = NOTEBOOKS / "assignments" / "master"
SOLUTIONS = NOTEBOOKS / "solutions"     # worked answers to the theory chapters' exercises (NN_solutions.ipynb)
BOOK = ROOT / "book"
BIB = ROOT / "references.bib"
RESULTS = ROOT / "results"
FIGURES = ROOT / "figures"

# The landing page's key figure: the first that exists (cpu run first, then the default one).
KEY_FIGURES = ["10_gallery_bn2_cpu.png", "10_gallery_bn2_default.png", "00_all_methods.png"]
KEY_FIGURE_CAPTION = ("Every camkit method on the same photos (pretrained EfficientNet-Lite0, top-1 class); "
                      "chapter {chapter} draws it and compares the maps.")

# Sidebar parts of the chapters, in reading order: (caption, predicate on the notebook's stem).
PARTS = [
    ("Theory", lambda stem: stem[0] == "0"),
    ("Experiments", lambda stem: stem[0] == "1"),
    ("Performance and reproduction", lambda stem: stem[0] == "2"),
]
VERDICT_ORDER = ["reproduced", "equivalent", "contradicted", "inconclusive", "not testable here", "not measured"]
AUTHORING_ONLY = {"CONVENTIONS.md"}   # notebooks/*.md that are for authors, not readers


def reader_pages(folder: Path = NOTEBOOKS) -> list[Path]:
    """notebooks/*.md for readers (glossary, protocol, ...): staged beside the chapters, under Reference."""
    return sorted(p for p in folder.glob("*.md") if p.name not in AUTHORING_ONLY)


# --------------------------------------------------------------------------- the headline results

def reproduction_claims(results: Path = RESULTS, profiles: tuple[str, ...] = ("cpu", "default")) -> dict:
    """The claims of chapter 29, from the first ``results/<profile>/29_reproduction.json`` judged under
    the registered protocol (it has a ``summary``), else the first found.

    Returns ``{"path", "profile", "written", "rows"}``; every row has the keys ``claim``,
    ``source`` (a references.bib key or ""), ``metric``, ``measured``, ``n``, ``model`` and
    ``verdict`` (plain words). This is the one place that knows the JSON's layout: today its
    ``table`` list (Markdown-decorated strings), else its ``claims`` records.
    """
    found = [results / profile / "29_reproduction.json" for profile in profiles]
    found = [path for path in found if path.exists()]
    if not found:
        raise FileNotFoundError(f"no 29_reproduction.json under {results} for profiles {profiles}")
    # a table judged under the registered protocol (it carries a "summary") before an older one
    judged = [path for path in found if "summary" in json.loads(path.read_text())]
    path = (judged or found)[0]
    data = json.loads(path.read_text())

    def plain(value) -> str:
        return str(value if value is not None else "").strip().strip("`*").strip()

    rows = []
    if data.get("table"):
        for r in data["table"]:
            rows.append({"claim": plain(r.get("claim")), "source": plain(r.get("source")),
                         "metric": plain(r.get("metric")), "measured": plain(r.get("measured (95 % interval)")),
                         "n": r.get("N", ""), "model": plain(r.get("model")), "verdict": plain(r.get("verdict")),
                         "kind": plain(r.get("kind")), "counted": r.get("counted", True)})
    else:
        for r in data.get("claims", []):
            ci = r.get("ci95")
            measured = (f"{r['difference']:+.4g} [{ci[0]:+.4g}, {ci[1]:+.4g}]" if ci
                        else f"error {r.get('difference', float('nan')):.1e}")
            rows.append({"claim": r["claim"], "source": r.get("source", ""), "metric": r.get("metric", ""),
                         "measured": measured, "n": r.get("n", ""), "model": r.get("model", ""),
                         "verdict": r["verdict"]})
    from camkit.report import claims as protocol_claims

    registered = {c.get("chapter") for c in protocol_claims.load_protocol(NOTEBOOKS / "protocol.yaml")["claims"]}
    chapters = {f.stem: "comparisons" in json.loads(f.read_text()) for f in sorted(path.parent.glob("[0-9][0-9]_*.json"))
                if f.stem != path.stem and f.stem in registered}
    return {"path": path, "profile": data.get("profile", path.parent.name), "written": data.get("written", ""),
            "rows": rows, "judged": [c for c, ok in chapters.items() if ok],
            "not_judged": [c for c, ok in chapters.items() if not ok]}


def _cell(text) -> str:
    return str(text).replace("|", "/").replace("\n", " ")


def verdict_tables(claims: dict) -> tuple[str, str]:
    """(counts per source and verdict, the full table) as MyST Markdown."""
    keys = bib_keys()

    def cite(source: str, role: str = "cite") -> str:   # a source outside references.bib stays plain text
        return f"{{{role}}}`{source}`" if source in keys else source

    counts: dict[str, Counter] = {}
    for row in claims["rows"]:
        if not row.get("counted", True):   # identities, ceilings, duplicates, descriptive rows: shown, not counted
            continue
        counts.setdefault(row["source"] or "(none)", Counter())[row["verdict"]] += 1
    verdicts = [v for v in VERDICT_ORDER if any(c[v] for c in counts.values())]
    verdicts += sorted({v for c in counts.values() for v in c} - set(verdicts))
    lines = ["| source | " + " | ".join(verdicts) + " | rows |", "|---|" + "---:|" * (len(verdicts) + 1)]
    for source, c in counts.items():
        cells = [cite(source, "cite:t"), *(str(c[v]) for v in verdicts), str(sum(c.values()))]
        lines.append("| " + " | ".join(cells) + " |")
    total = Counter(row["verdict"] for row in claims["rows"] if row.get("counted", True))
    lines.append("| **all** | " + " | ".join(f"**{total[v]}**" for v in verdicts) + f" | **{sum(total.values())}** |")
    full = ["| claim | source | model | measured (95 % interval) | N | verdict |", "|---|---|---|---|---:|---|"]
    for r in claims["rows"]:
        cells = [_cell(r["claim"]), cite(r["source"]), _cell(r["model"]), _cell(r["measured"]), str(r["n"]),
                 f"**{_cell(r['verdict'])}**" + (f" ({_cell(r['kind'])})" if r.get("kind") else "")]
        full.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines), "\n".join(full)


# --------------------------------------------------------------------------- staging the notebooks

def bib_keys(bib: Path = BIB) -> set[str]:
    return set(re.findall(r"^@\w+\{([^,\s]+),", bib.read_text(), flags=re.MULTILINE))


def cite_markdown(text: str, keys: set[str], bare_code: bool = False) -> str:
    """``[key]``, ```[key]``` (and with ``bare_code`` ```key```) -> ``{cite}`key``` outside code fences."""
    if not keys:
        return text
    alternatives = "|".join(sorted(map(re.escape, keys), key=len, reverse=True))
    group = rf"(?:{alternatives})(?:\s*[,;]\s*(?:{alternatives}))*"
    patterns = [re.compile(rf"`\[({group})\]`"), re.compile(rf"(?<![\]`\w])\[({group})\](?![(\[:])")]
    if bare_code:
        patterns.append(re.compile(rf"(?<!\}})`({group})`"))

    def cite(match: re.Match) -> str:
        return "{cite}`" + ",".join(k.strip() for k in re.split(r"[,;]", match.group(1))) + "`"

    parts = re.split(r"(^```.*?^```)", text, flags=re.MULTILINE | re.DOTALL)
    for i in range(0, len(parts), 2):        # even parts are outside fenced code
        for pattern in patterns:
            parts[i] = pattern.sub(cite, parts[i])
    return "".join(parts)


CAPTION = re.compile(r"\A\s*\*((?:Figure|Fig\.)\b[^*]*?)\*[ \t]*(?:\n\s*\n|\Z)", re.DOTALL)


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _is_imports(code: str) -> bool:
    lines = [line for line in code.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return bool(lines) and sum(line.startswith(("import ", "from ")) for line in lines) >= len(lines) / 2


def _image_outputs(cell: dict) -> int:
    return sum(1 for o in cell.get("outputs", []) if any(k.startswith("image/") for k in o.get("data", {})))


def prepare_notebook(src: Path, dst: Path, keys: set[str]) -> dict:
    """Copy ``src`` to ``dst`` with the book's tags, citations and captions; returns counts."""
    nb = json.loads(src.read_text())
    cells = nb["cells"]
    stats = Counter()
    seen_code = seen_parameters = False
    for i, cell in enumerate(cells):
        text = _source(cell)
        if cell["cell_type"] == "markdown":
            cell["source"] = cite_markdown(text, keys)
            continue
        if cell["cell_type"] != "code":
            continue
        meta = cell.setdefault("metadata", {})
        tags = meta.setdefault("tags", [])
        label = None
        if "parameters" in tags or "injected-parameters" in tags:
            label = "profile's parameters" if "injected-parameters" in tags else "parameters"
            seen_parameters = True
        elif "check_parameters(" in text:
            label = "parameter checks"
        elif not seen_code and not seen_parameters and _is_imports(text):
            label = "imports"
        seen_code = True
        if label and not {"hide-cell", "remove-cell", "hide-input", "remove-input"} & set(tags):
            tags.append("hide-cell")
            meta.setdefault("mystnb", {}).update(code_prompt_show=f"Show the {label}",
                                                 code_prompt_hide=f"Hide the {label}")
            stats["hidden"] += 1
        for output in cell.get("outputs", []):
            md = output.get("data", {}).get("text/markdown")
            if md is not None:
                md = "".join(md) if isinstance(md, list) else md
                output["data"]["text/markdown"] = cite_markdown(md, keys, bare_code=True)
        nxt = cells[i + 1] if i + 1 < len(cells) else None
        if _image_outputs(cell) == 1 and nxt is not None and nxt["cell_type"] == "markdown":
            match = CAPTION.match(_source(nxt))
            if match:
                caption = " ".join(match.group(1).split())
                meta.setdefault("mystnb", {})["figure"] = {"caption": cite_markdown(caption, keys)}
                nxt["source"] = _source(nxt)[match.end():]
                stats["captions"] += 1
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(json.dumps(nb, indent=1, ensure_ascii=False))
    return stats


def title_of(notebook: Path) -> str:
    for cell in json.loads(notebook.read_text())["cells"]:
        if cell["cell_type"] == "markdown":
            for line in _source(cell).splitlines():
                if line.startswith("#"):
                    return line.lstrip("# ").strip()
    return notebook.stem


def staged_name(notebook: Path) -> str:
    """Where a notebook sits in the book: chapters at the top, masters under assignments/master/,
    worked answers under solutions/."""
    if (MASTERS / notebook.name).exists() and not (NOTEBOOKS / notebook.name).exists():
        return f"assignments/master/{notebook.stem}"
    if notebook.name.endswith("_solutions.ipynb"):
        return f"solutions/{notebook.stem}"
    return notebook.stem


def key_figure() -> Path | None:
    for name in KEY_FIGURES:
        if (FIGURES / name).exists():
            return FIGURES / name
    return None


def landing_page(docs: list[str], profile: str, claims: dict | None) -> str:
    """index.md: title, abstract, verdict table, key figure, then the toctrees of the sidebar."""
    out = ["# Class activation maps, derived, implemented and measured", "",
           (BOOK / "abstract.md").read_text().strip(), ""]
    if claims:
        summary, full = verdict_tables(claims)
        rel = claims["path"].relative_to(ROOT) if claims["path"].is_relative_to(ROOT) else claims["path"]
        protocol = (", under the [analysis protocol](protocol.md)"
                    if "protocol" in [p.stem for p in reader_pages()] else "")
        counted = sum(bool(r.get("counted", True)) for r in claims["rows"])
        intro = (f"Verdicts of the {counted} informative rows (mechanism and control tests; identities, ceilings, "
                 f"duplicates and descriptive rows are in the full table but not counted) of the "
                 f"{len(claims['rows'])} rows with data, per source, read from `{rel}` (the "
                 f"**{claims['profile']}** profile, written {claims['written']}). "
                 f"[Chapter 29](29_reproduction.ipynb) explains every row and how its verdict is reached{protocol}.")
        if claims.get("not_judged"):
            names = ", ".join(c.split("_")[0] for c in claims["judged"]) or "none"
            later = ", ".join(c.split("_")[0] for c in claims["not_judged"])
            intro += (f" Its rows come from the chapters whose {claims['profile']} results were produced under the "
                      f"protocol ({names}); the {claims['profile']} results of chapters {later} predate it and are "
                      "not judged until they are rerun.")
        if claims["profile"] == "default":
            intro += (" This is the **test-size** run (two independent units per setup, so nearly every row is "
                      "inconclusive by design): it shows that the analysis runs end to end, not what held. "
                      "The verdicts rest on `make report PROFILE=cpu` (hundreds of objects, five seeds).")
        out += ["## What held", "", intro, "",
                summary, "", f"::::{{dropdown}} All {len(claims['rows'])} rows with data, one per line", "",
                ":::{table}", ":class: camkit-claims", ":widths: 36 9 20 19 6 10", "", full, ":::", "::::", ""]
    figure = key_figure()
    if figure is not None:
        chapter = figure.name[:2]
        out += ["## A first look", "", f"```{{figure}} {figure.name}", ":alt: camkit maps of every method",
                ":width: 100%", "", KEY_FIGURE_CAPTION.format(chapter=chapter), "```", ""]
    out += [(f"*This book is the `{profile}` run of the notebooks, built {time.strftime('%Y-%m-%d %H:%M')}. "
             "Plumbing cells (imports, parameters, their checks) are collapsed; the notebooks in "
             "`notebooks/` keep them. Search works offline.*"), ""]
    for caption, predicate in PARTS:
        members = [d for d in docs if "/" not in d and predicate(d)]
        if members:
            out += ["```{toctree}", f":caption: {caption}", ":maxdepth: 1", "", *members, "```", ""]
    solutions = [d for d in docs if d.startswith("solutions/")]
    if solutions:
        out += ["```{toctree}", ":caption: Worked answers to the exercises", ":maxdepth: 1", "", *solutions,
                "```", ""]
    masters = [d for d in docs if d.startswith("assignments/")]
    if masters:
        out += ["```{toctree}", ":caption: Assignments (masters, with solutions)", ":maxdepth: 1", "", *masters,
                "```", ""]
    out += ["```{toctree}", ":caption: Reference", ":maxdepth: 1", "", *[p.stem for p in reader_pages()], "api",
            "bibliography", "```", ""]
    return "\n".join(out)


API_PAGE = """# API reference

Generated from the docstrings of the installed `camkit` (Sphinx autodoc and autosummary). The
maths in them uses the notation of [chapter 00](00_overview.ipynb).

```{{eval-rst}}
.. autosummary::
   :toctree: generated
   :recursive:

{modules}
```
"""

BIBLIOGRAPHY_PAGE = """# Bibliography

Every paper in `references.bib`; the citations in the chapters link here.

```{bibliography}
:all:
```
"""


def api_modules() -> list[str]:
    """camkit's public top-level submodules (autosummary recurses into them)."""
    import pkgutil

    try:
        import camkit
    except Exception as error:  # noqa: BLE001 - a broken library still gets a book, with a warning
        print(f"warning: cannot import camkit for the API reference ({error})", file=sys.stderr)
        return []
    names = [m.name for m in pkgutil.iter_modules(camkit.__path__) if not m.name.startswith("_")]
    return [f"camkit.{name}" for name in sorted(names)]


# MathJax 3 as separate components, not a combined file: the combined ones bundle the speech-rule
# engine, whose source names a CDN for data it never fetches here. These have no such URL.
MATHJAX_PARTS = ["startup.js", "core.js", "input/tex-base.js", "input/tex-full.js", "input/tex/extensions",
                 "output/chtml.js", "output/chtml/fonts", "a11y/assistive-mml.js"]
MATHJAX_LOAD = ["input/tex-full", "output/chtml", "a11y/assistive-mml"]


def mathjax_static() -> str:
    """A folder holding ``mathjax/`` (the components above, from the django-static-mathjax wheel) for _static."""
    target = ROOT / "build" / "book-assets" / "mathjax-components"
    stamp = target / "parts.txt"
    if not stamp.exists() or stamp.read_text() != "\n".join(MATHJAX_PARTS):
        import mathjax  # the django-static-mathjax wheel: MathJax 3 as package data

        shutil.rmtree(target, ignore_errors=True)
        es5 = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
        for part in MATHJAX_PARTS:
            source, copy = es5 / part, target / "static" / "mathjax" / part
            copy.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, copy, dirs_exist_ok=True)
            else:
                shutil.copy(source, copy)
        stamp.write_text("\n".join(MATHJAX_PARTS))
    return str(target / "static")


def stage(notebooks: list[Path], source: Path, profile: str) -> list[str]:
    """Write the Sphinx source tree for ``notebooks`` into ``source``; returns the documents in order."""
    if source.exists():
        shutil.rmtree(source)
    source.mkdir(parents=True)
    keys = bib_keys()
    docs, totals = [], Counter()
    for notebook in notebooks:
        name = staged_name(notebook)
        totals.update(prepare_notebook(notebook, source / f"{name}.ipynb", keys))
        docs.append(name)
    try:
        claims = reproduction_claims()
    except FileNotFoundError as error:
        print(f"warning: {error}; the landing page has no verdict table", file=sys.stderr)
        claims = None
    (source / "index.md").write_text(cite_markdown(landing_page(docs, profile, claims), keys))
    for page in reader_pages():
        (source / page.name).write_text(cite_markdown(page.read_text(), keys))
    modules = api_modules()
    (source / "api.md").write_text(API_PAGE.format(modules="\n".join(f"   {m}" for m in modules))
                                   if modules else "# API reference\n\n`camkit` could not be imported.\n")
    (source / "bibliography.md").write_text(BIBLIOGRAPHY_PAGE)
    figure = key_figure()
    if figure is not None:
        shutil.copy(figure, source / figure.name)
    print(f"  staged {len(docs)} notebooks ({totals['hidden']} plumbing cells collapsed, "
          f"{totals['captions']} captions) in {source.relative_to(ROOT) if source.is_relative_to(ROOT) else source}")
    return docs


def build(notebooks: list[Path], out: Path, profile: str = "default", jobs: str = "1", timeout: float = 900) -> Path:
    """Stage ``notebooks`` and run Sphinx into ``out`` (replaced only when the build succeeds).

    One process by default: Sphinx's ``-j N`` forks its workers after autodoc has imported torch,
    and such a fork can deadlock (it did here, on a busy machine); the parallel read saves little.
    """
    work = ROOT / "build" / "book-work" / out.name    # src/, doctrees/, html/ and myst-nb's jupyter_execute/
    source, doctrees, staging = work / "src", work / "doctrees", work / "html"
    stage(notebooks, source, profile)
    if staging.exists():
        shutil.rmtree(staging)
    mathjax_static()
    env = {**os.environ, "CAMKIT_BOOK_PROFILE": profile, "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-j", jobs, "-c", str(BOOK),
               "-d", str(doctrees), str(source), str(staging)]
    start = time.time()
    try:
        result = subprocess.run(command, env=env, cwd=ROOT, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"sphinx-build ran longer than {timeout:.0f} s; the previous book is left as it was")
    if result.returncode:
        raise SystemExit(f"sphinx-build failed ({result.returncode}); the previous book is left as it was")
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(staging), str(out))
    print(f"  book built in {time.time() - start:.0f} s: {(out / 'index.html')}")
    return out


def default_notebooks(folder: Path = NOTEBOOKS) -> list[Path]:
    """Chapters in order, the worked answers, then the assignment masters, from ``folder``: the
    repository's layout (solutions/, assignments/master/) or papermill's flat build/notebooks/<profile>/."""
    masters = sorted(p.name for p in MASTERS.glob("*.ipynb"))
    chapters = sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb") if ".failed" not in p.name
                      and p.name not in masters and not p.name.endswith("_solutions.ipynb"))
    solutions = sorted(p for p in folder.glob("[0-9][0-9]_solutions.ipynb")) or sorted(
        (folder / "solutions").glob("[0-9][0-9]_solutions.ipynb"))
    flat = [folder / name for name in masters if (folder / name).exists()]
    return chapters + solutions + (flat or sorted((folder / "assignments" / "master").glob("*.ipynb")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notebooks", type=Path, default=NOTEBOOKS,
                        help="executed notebooks (default: the committed ones, which hold their default run)")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "book")
    parser.add_argument("--profile", default="default")
    parser.add_argument("--jobs", default="1", help="sphinx-build -j (forking after torch is imported can hang)")
    args = parser.parse_args()
    build(default_notebooks(args.notebooks.resolve()), args.out.resolve(), args.profile, args.jobs)


if __name__ == "__main__":
    main()
