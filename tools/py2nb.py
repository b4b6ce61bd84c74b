"""Author notebooks as percent-format scripts; this turns one into an .ipynb (and can execute it).

    python tools/py2nb.py draft.py notebooks/01_sensitivity_axiom.ipynb --execute

Cells start with ``# %%`` (code), ``# %% [markdown]`` (Markdown, each line prefixed ``# ``), or
``# %% tags=["parameters"]`` (a tagged code cell). ``--execute`` runs the notebook in place with
nbconvert from the notebook's folder, so the committed copy holds the outputs of its defaults.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat


def parse(text: str) -> nbformat.NotebookNode:
    """Split percent-format text into notebook cells."""
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata["language_info"] = {"name": "python"}
    chunks = re.split(r"^# %%(.*)$", text, flags=re.M)
    for header, body in zip(chunks[1::2], chunks[2::2]):
        body = body.strip("\n")
        if "[markdown]" in header:
            source = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in body.splitlines())
            notebook.cells.append(nbformat.v4.new_markdown_cell(source))
        else:
            cell = nbformat.v4.new_code_cell(body)
            tags = re.search(r"tags=(\[.*?\])", header)
            if tags:
                cell.metadata["tags"] = json.loads(tags.group(1))
            notebook.cells.append(cell)
    return notebook


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("source")
    parser.add_argument("target")
    parser.add_argument("--execute", action="store_true")
    parser.add_argument("--timeout", type=int, default=600)
    args = parser.parse_args()
    target = Path(args.target)
    nbformat.write(parse(Path(args.source).read_text()), target)
    if args.execute:
        subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", "--inplace",
                        f"--ExecutePreprocessor.timeout={args.timeout}", target.name], cwd=target.parent, check=True)


if __name__ == "__main__":
    main()
