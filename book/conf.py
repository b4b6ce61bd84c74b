"""Sphinx configuration of the camkit book (built by tools/book.py; README: "The report as a book").

tools/book.py stages the executed notebooks, the landing page, the API page and the bibliography
into build/book-work/<name>/src/ and runs ``sphinx-build -c book/ <stage> <out>``: this folder holds only
configuration, the abstract and static files. Nothing here loads anything from the network: MathJax
3 components are copied from the ``django-static-mathjax`` wheel into ``_static/mathjax``, and
myst-nb's widget scripts (require.js from a CDN) are switched off.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import book  # tools/book.py: the staging and the MathJax copy

project = "camkit"
author = "camkit contributors"
copyright = "camkit contributors (MIT licence)"
html_title = "camkit: class activation maps, derived and measured"
profile = os.environ.get("CAMKIT_BOOK_PROFILE", "default")

extensions = [
    "myst_nb",                    # .ipynb and .md sources (MyST markdown)
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",        # Google-style "Args:" sections
    "sphinx.ext.mathjax",
    "sphinxcontrib.bibtex",
    "sphinx_design",              # the dropdown with the full verdict table
]
exclude_patterns = ["_build", "**.ipynb_checkpoints", "jupyter_execute"]
html_static_path = ["_static", book.mathjax_static()]

# -- notebooks: already executed by papermill (build/notebooks/<profile>/); never run them here
nb_execution_mode = "off"
nb_render_markdown_format = "myst"       # markdown outputs (the verdict tables) get citations and maths
nb_ipywidgets_js = {}                    # no require.js / widget manager from a CDN
nb_merge_streams = True
nb_code_prompt_show = "Show {type}"
nb_code_prompt_hide = "Hide {type}"
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist", "html_image"]
myst_dmath_double_inline = True
myst_heading_anchors = 3
suppress_warnings = ["mystnb.unknown_mime_type", "myst.header", "misc.highlighting_failure"]

# -- maths: MathJax 3 from a package, served from _static (works from file://)
mathjax_path = "mathjax/startup.js"
mathjax3_config = {"loader": {"load": book.MATHJAX_LOAD}, "options": {"enableMenu": False}}

# -- citations: `[key]` in the notebooks becomes {cite}`key` in the staged copies (tools/book.py)
bibtex_bibfiles = [str(ROOT / "references.bib")]   # relative paths would be read from book/
bibtex_default_style = "alpha"          # labels like [SCD+17], sorted by label
bibtex_reference_style = "label"
bibtex_cite_id = "cite-{key}"
bibtex_bibliography_id = "bibliography-{bibliography_count}"
bibtex_footbibliography_id = "footbibliography-{id}"

# -- API reference: autodoc + autosummary over the installed camkit
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": True,
                           "ignore-module-all": True}   # a package page lists its own members, not re-exports
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_mock_imports: list[str] = []
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True              # "Attributes:" as fields (dataclass fields are documented by autodoc)

# -- theme
html_theme = "sphinx_book_theme"
html_logo = None
html_favicon = None
html_last_updated_fmt = "%Y-%m-%d"
html_copy_source = False
html_show_sourcelink = False
html_css_files = ["camkit-book.css"]
html_theme_options = {
    "show_toc_level": 2,
    "show_navbar_depth": 1,
    "home_page_in_toc": False,
    "use_download_button": False,
    "use_fullscreen_button": False,
    "use_repository_button": False,
    "navigation_with_keys": False,
    "extra_footer": f"<p>Built from the <code>{profile}</code> run of the notebooks.</p>",
}
html_sidebars = {"**": ["navbar-logo.html", "search-button-field.html", "sbt-sidebar-nav.html"]}


def _plain_problematic(app, doctree, docname):
    """A docstring reST slip (``|x|`` read as a substitution) becomes plain text, not a dead link to a
    hidden error message; Sphinx has already printed the warning that names it."""
    from docutils import nodes

    for node in list(doctree.findall(nodes.problematic)):
        node.replace_self(nodes.inline(node.rawsource, node.astext(), ids=node["ids"], classes=["problematic"]))


def setup(app):
    app.connect("doctree-resolved", _plain_problematic)
