"""The report as a book, opened offline in headless Debian chromium (tools/book.py, book/).

Builds the book from the committed notebooks (they hold the outputs of their default run; nothing
is executed) into build/book-test/, or reuses the folder named by $CAMKIT_BOOK_DIR, then drives
/usr/bin/chromium over the DevTools protocol on a pipe (no port, no browser download) and checks
that no request leaves the machine, that images and internal links resolve, that the maths of a
theory chapter is typeset, and that the offline search finds a term.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from camkit.report import stats

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LOCAL_SCHEMES = ("file:", "data:", "about:", "blob:")

pytestmark = pytest.mark.timeout(1200)   # the first test builds the book (about a minute, more on a busy machine)


def _tool():
    sys.path.insert(0, str(ROOT / "tools"))
    import book as book_tool

    return book_tool


def _chapters() -> list[str]:
    return sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.fixture(scope="module")
def book() -> Path:
    reuse = os.environ.get("CAMKIT_BOOK_DIR")
    if reuse:
        path = Path(reuse).resolve()
        assert (path / "index.html").exists(), f"$CAMKIT_BOOK_DIR={reuse} holds no index.html"
        return path
    tool = _tool()
    return tool.build(tool.default_notebooks(), ROOT / "build" / "book-test")


# --------------------------------------------------------------------------- staging (no build needed)

def test_staged_copy_hides_plumbing_links_citations_and_captions(tmp_path):
    tool = _tool()

    def cell(kind, source, tags=(), outputs=()):
        c = {"cell_type": kind, "metadata": {"tags": list(tags)} if tags else {}, "source": source}
        if kind == "code":
            c.update(outputs=list(outputs), execution_count=1)
        return c

    def display(data):
        return {"output_type": "display_data", "metadata": {}, "data": data}

    image = display({"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"})
    table = display({"text/markdown": "| a |\n|---|\n| `zhou2016cam` |"})
    cells = [cell("markdown", "# 99 · Title\n\nAs in (Zhou et al., 2016 `[zhou2016cam]`) and [selvaraju2017gradcam]; "
                              "not [a link](x.ipynb) nor `[unknown2020]`."),
             cell("code", "import torch\n\nimport camkit"),
             cell("code", "profile = 'default'", tags=["parameters"]),
             cell("code", "profile = 'cpu'", tags=["injected-parameters"]),
             cell("code", "camkit.report.check_parameters(globals(), {})"),
             cell("code", "plt.show()", outputs=[image]),
             cell("markdown", "*Figure 1: a map ($\\alpha$).*\n\n## Next section"),
             cell("code", "display(Markdown(table))", outputs=[table])]
    src, dst = tmp_path / "99_demo.ipynb", tmp_path / "out" / "99_demo.ipynb"
    nb = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    src.write_text(json.dumps(nb))
    stats = tool.prepare_notebook(src, dst, {"zhou2016cam", "selvaraju2017gradcam"})
    assert json.loads(src.read_text()) == nb, "the source notebook must not change"
    out = json.loads(dst.read_text())["cells"]
    assert stats["hidden"] == 4 and stats["captions"] == 1
    assert [("hide-cell" in c["metadata"].get("tags", [])) for c in out[1:6]] == [True, True, True, True, False]
    assert out[0]["source"] == ("# 99 · Title\n\nAs in (Zhou et al., 2016 {cite}`zhou2016cam`) and "
                                "{cite}`selvaraju2017gradcam`; not [a link](x.ipynb) nor `[unknown2020]`.")
    assert out[5]["metadata"]["mystnb"]["figure"]["caption"] == "Figure 1: a map ($\\alpha$)."
    assert out[6]["source"] == "## Next section"
    assert "{cite}`zhou2016cam`" in out[7]["outputs"][0]["data"]["text/markdown"]


def test_landing_page_reads_the_reproduction_verdicts():
    tool = _tool()
    claims = tool.reproduction_claims()
    assert claims["rows"] and claims["profile"] in ("cpu", "default")
    assert {"claim", "source", "measured", "n", "model", "verdict"} <= set(claims["rows"][0])
    assert {row["verdict"] for row in claims["rows"]} <= {*stats.VERDICTS, "not measured"}
    judged = [p for p in (tool.RESULTS / f / "29_reproduction.json" for f in ("cpu", "default")) if p.exists()
              and "summary" in json.loads(p.read_text())]
    assert not judged or claims["path"] == judged[0], "the landing page must show a table judged under the protocol"
    summary, full = tool.verdict_tables(claims)
    counted = sum(bool(r.get("counted", True)) for r in claims["rows"])
    assert f"| **{counted}** |" in summary and len(full.splitlines()) == len(claims["rows"]) + 2


# --------------------------------------------------------------------------- static checks

class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []   # (tag, attribute, value)
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("id", "name") and value:
                self.ids.add(value)
            if value and (name in ("src", "href") or (tag == "object" and name == "data")):
                self.refs.append((tag, name, value))


def _pages(book: Path) -> list[Path]:
    """The book's pages (not the theme's template fragments under _static/)."""
    return sorted(p for p in book.rglob("*.html") if "_static" not in p.relative_to(book).parts)


def _parse(page: Path) -> _Refs:
    parser = _Refs()
    parser.feed(page.read_text(errors="replace"))
    return parser


def test_no_external_scripts_styles_or_images(book):
    """Nothing the pages load (script, stylesheet, image, font, frame) comes from another host."""
    offenders = []
    for page in _pages(book):
        for tag, attr, value in _parse(page).refs:
            loads = attr == "src" or tag == "link"   # <link href>: stylesheets, preloads, icons
            if loads and re.match(r"(https?:)?//", value):
                offenders.append(f"{page.relative_to(book)}: <{tag} {attr}={value}>")
    assert not offenders, "pages load from the network:\n" + "\n".join(offenders[:20])
    cdn = [str(p.relative_to(book)) for p in sorted(book.rglob("*")) if p.suffix in (".html", ".js", ".css")
           and re.search(r"cdn\.jsdelivr|unpkg\.com|cdnjs|googleapis|mathjax\.org|require\.min\.js|requirejs",
                         p.read_text(errors="replace"))]
    assert not cdn, f"CDN references (even unused ones) in {cdn}"


def test_every_image_and_internal_link_resolves(book):
    """Every relative src/href of every page names a file of the book (and its #anchor exists)."""
    pages = _pages(book)
    ids = {page: _parse(page).ids for page in pages}
    broken = []
    for page in pages:
        for tag, attr, value in _parse(page).refs:
            parts = urlsplit(value)
            if parts.scheme or value.startswith("//") or value.startswith("#") and not value[1:]:
                continue
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{page.relative_to(book)}: {value}")
            elif parts.fragment and target.suffix == ".html" and target in ids \
                    and unquote(parts.fragment) not in ids[target]:
                broken.append(f"{page.relative_to(book)}: {value} (no such anchor)")
    assert not broken, f"{len(broken)} broken references:\n" + "\n".join(broken[:30])


def test_every_chapter_is_in_the_sidebar_in_order(book):
    index = (book / "index.html").read_text()
    chapters = _chapters()
    positions = [index.find(f'href="{stem}.html"') for stem in chapters]
    assert -1 not in positions, [c for c, p in zip(chapters, positions) if p == -1]
    assert positions == sorted(positions)
    for name in ("api.html", "bibliography.html", "assignments/master/"):
        assert name in index


# --------------------------------------------------------------------------- chromium over CDP

class Chromium:
    """Headless chromium driven over --remote-debugging-pipe (fd 3 in, fd 4 out)."""

    FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-default-apps", "--disable-extensions", "--mute-audio", "--remote-debugging-pipe")

    def __init__(self):
        self.profile = tempfile.mkdtemp(prefix="camkit-chromium-")
        to_child, self._write = os.pipe()
        self._read, from_child = os.pipe()
        # chromium reads the protocol on fd 3 and writes on fd 4: bash moves our pipe ends there (no
        # preexec_fn, which is unsafe in a process with threads); copies at fds >= 10 cannot clash.
        ends = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_child, from_child)]
        for fd in (to_child, from_child):
            os.close(fd)
        shell = f'exec "$@" 3<&{ends[0]} 4>&{ends[1]} {ends[0]}<&- {ends[1]}>&-'
        self.proc = subprocess.Popen(["/bin/bash", "-c", shell, "chromium", CHROMIUM, *self.FLAGS,
                                      f"--user-data-dir={self.profile}", "about:blank"],
                                     pass_fds=ends, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for fd in ends:
            os.close(fd)
        self._buffer = b""
        self._id = 0
        self.events: list[dict] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Network", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=True)

    def _message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            if time.time() > deadline:
                raise TimeoutError("chromium did not answer")
            chunk = os.read(self._read, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the protocol pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, session: bool = False, timeout: float = 60, **params):
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.time() + timeout
        while True:
            reply = self._message(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def evaluate(self, expression: str, timeout: float = 60):
        result = self.call("Runtime.evaluate", session=True, timeout=timeout, expression=expression,
                           awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str, ready: str = "document.readyState === 'complete'", timeout: float = 30):
        """Navigate to ``url`` and wait until the JavaScript condition ``ready`` holds."""
        self.call("Page.navigate", session=True, url=url)
        deadline = time.time() + timeout
        while not self.evaluate(f"(() => {{ try {{ return !!({ready}); }} catch (e) {{ return false; }} }})()"):
            if time.time() > deadline:
                raise TimeoutError(f"{url}: {ready} never became true")
            time.sleep(0.2)

    def requests(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]

    def failures(self) -> list[str]:
        sent = {e["params"]["requestId"]: e["params"]["request"]["url"]
                for e in self.events if e.get("method") == "Network.requestWillBeSent"}
        return [f"{sent.get(e['params']['requestId'], '?')}: {e['params'].get('errorText')}"
                for e in self.events if e.get("method") == "Network.loadingFailed"
                and not e["params"].get("canceled")]

    def close(self):
        try:
            self.call("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):   # it may close the pipe before answering
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._read)
        os.close(self._write)
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make install` installs Debian's chromium")
    chromium = Chromium()
    yield chromium
    chromium.close()


MATH_DONE = "window.MathJax && MathJax.startup && MathJax.startup.promise && document.querySelector('mjx-container')"

# Visible prose (text outside code, scripts and typeset maths) that still holds TeX.
RAW_TEX = r"""(() => {
  const skip = 'PRE, CODE, SCRIPT, STYLE, TEXTAREA, MJX-CONTAINER, MJX-ASSISTIVE-MML, svg';
  const walker = document.createTreeWalker(document.querySelector('article') || document.body, NodeFilter.SHOW_TEXT);
  const bad = [];
  for (let node; (node = walker.nextNode());) {
    if (node.parentElement.closest(skip)) continue;
    const text = node.textContent;
    if (/\$\$|\\\(|\\\[|\$\\[A-Za-z]|\\frac|\\sum|\\alpha/.test(text)) bad.push(text.trim().slice(0, 80));
  }
  return bad;
})()"""

IMAGES = """Promise.all([...document.images].map(img => img.decode().then(() => null,
  () => img.currentSrc || img.src))).then(list => list.filter(x => x))"""


def test_pages_in_chromium_offline(book, browser):
    """Landing page, a theory chapter, the verdict chapter, the API and bibliography: all local."""
    chapters = _chapters()
    theory = next(c for c in chapters if c.startswith("03_"))        # Grad-CAM++: the most maths
    previous, following = chapters[chapters.index(theory) - 1], chapters[chapters.index(theory) + 1]
    master = min((book / "assignments" / "master").glob("*.html")).relative_to(book)
    pages = ["index.html", f"{theory}.html", "29_reproduction.html", "bibliography.html", "api.html", str(master)]
    for name in pages:
        browser.open((book / name).as_uri())
        assert not browser.evaluate(IMAGES), f"{name}: images that do not load"
        assert browser.evaluate("document.querySelector('nav.bd-links a[href]') !== null"), f"{name}: no sidebar"
    chapter = (book / f"{theory}.html").as_uri()
    browser.open(chapter, MATH_DONE)
    browser.evaluate("MathJax.startup.promise.then(() => true)")
    typeset = browser.evaluate("document.querySelectorAll('mjx-container').length")
    assert typeset > 20, f"only {typeset} formulas typeset in {theory}"
    leftovers = browser.evaluate(RAW_TEX)
    assert not leftovers, f"raw TeX in the visible text of {theory}: {leftovers[:5]}"
    links = "document.querySelector('.prev-next-area a.left-prev[href=\"{}.html\"]') && " \
            "document.querySelector('.prev-next-area a.right-next[href=\"{}.html\"]') && true"
    assert browser.evaluate(links.format(previous, following)), f"{theory}: no previous/next links"
    # the plumbing is collapsed but present, the figures have captions, citations link to the bibliography
    assert browser.evaluate("[...document.querySelectorAll('details.hide')].filter(d => !d.open).length") >= 3
    assert browser.evaluate("document.querySelectorAll('figure figcaption').length") >= 2
    assert browser.evaluate("[...document.querySelectorAll('a')].some(a => a.href.includes('bibliography.html#'))")
    # after all of the above, nothing was fetched from outside the machine, and nothing failed to load
    outside = [u for u in browser.requests() if not u.startswith(LOCAL_SCHEMES)]
    assert not outside, f"requests left the machine: {outside[:10]}"
    assert not browser.failures(), f"failed loads: {browser.failures()[:10]}"


def test_search_works_from_file_urls(book, browser):
    results = "document.querySelectorAll('#search-results ul.search li a').length > 0"
    browser.open((book / "search.html").as_uri() + "?q=saturation", results)
    hits = browser.evaluate("[...document.querySelectorAll('#search-results ul.search li a')].map(a => a.href)")
    assert any("15_saturation.html" in h for h in hits), hits[:10]
    outside = [u for u in browser.requests() if not u.startswith(LOCAL_SCHEMES)]
    assert not outside, f"requests left the machine: {outside[:10]}"
