"""The documentation site as a reader sees it, offline: formulas rendered, no raw TeX left.

The site is built with ``mkdocs build --strict`` into a temporary folder (or, when
``GENVI_DOCS_SITE`` names a folder, taken from there: ``scripts/test.sh`` builds it once,
with the notebooks run), served on 127.0.0.1 by ``http.server``, and opened in headless
Chromium, which runs the pages' scripts (KaTeX, served with the site) and writes out the
resulting DOM and a screenshot.

The browser tests skip when no Chromium is installed (``apt-get install chromium``);
``scripts/test.sh`` installs it where it is missing, so CI runs them.
"""

from __future__ import annotations

import functools
import html.parser
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium is not installed (apt-get install chromium; scripts/test.sh "
    "installs it)",
)
pytestmark = pytest.mark.slow

# Pages with formulas, as the site's URLs: a guide page, an API page (a docstring's maths),
# a page with a table of formulas, and a notebook (Jupyter's $ ... $ in Markdown cells).
PAGES = ["getting-started/", "api/objectives/", "concepts/objectives/", "notebooks/01_quickstart/"]
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    given = os.environ.get("GENVI_DOCS_SITE")
    if given:
        return Path(given)
    out = tmp_path_factory.mktemp("site")
    env = dict(
        os.environ, NO_MKDOCS_2_WARNING="1", GENVI_DOCS_EXECUTE="false", GENVI_DOCS_CACHE="false"
    )
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, f"mkdocs build --strict failed:\n{build.stderr[-5000:]}"
    return out


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server(site):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=site))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _chromium(url: str, *args: str) -> str:
    """Chromium's stdout for ``url`` after 10 s of virtual time (the scripts have run), in a
    fresh profile, with nothing that talks to the network on its own."""
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory() as profile:
        run = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=10000",
                *args,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=180,
        )
    assert run.returncode == 0, f"chromium failed on {url}:\n{run.stderr[-3000:]}"
    return run.stdout


class _Text(html.parser.HTMLParser):
    """The text a reader sees: no scripts, styles, code, nor KaTeX's hidden TeX source."""

    SKIP = {"script", "style", "pre", "code", "annotation", "noscript", "textarea"}
    VOID = {"br", "img", "input", "meta", "link", "hr", "col", "source", "wbr", "area", "base"}

    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.parts: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in self.stack:
            while self.stack.pop() != tag:
                pass

    def handle_data(self, data):
        if not self.SKIP.intersection(self.stack):
            self.parts.append(data)


def _visible_text(dom: str) -> str:
    parser = _Text()
    parser.feed(dom)
    return " ".join(parser.parts)


def test_site_loads_nothing_from_the_network(site):
    """No page asks for a script, a stylesheet or a font from another host."""
    remote = re.compile(r"<(?:script|link|img)\b[^>]*\b(?:src|href)=\"(?:https?:)?//[^\"]*\"")
    offenders = {}
    for page in site.rglob("*.html"):
        tags = remote.findall(page.read_text())
        if tags:
            offenders[str(page.relative_to(site))] = tags[:3]
    assert not offenders, f"pages that load from the network: {offenders}"
    for name in ("katex.min.js", "katex.min.css", "contrib/auto-render.min.js", "LICENSE"):
        assert (site / "javascripts/vendor/katex" / name).is_file(), name
    assert list((site / "javascripts/vendor/katex/fonts").glob("*.woff2"))


@needs_chromium
@pytest.mark.parametrize("page", PAGES)
def test_formulas_render_in_a_browser(page, site, server, tmp_path):
    source = (site / page / "index.html").read_text()
    formulas = source.count('class="arithmatex"') + len(
        re.findall(r"\$[^$\n]+\$", _visible_text(source))
    )
    assert formulas > 0, f"{page} has no formula to render: choose another page for this test"

    dom = _chromium(server + page, "--dump-dom")
    rendered, expected = dom.count('class="katex"'), source.count('class="arithmatex"')
    assert rendered >= max(1, expected), (
        f"{page}: {rendered} KaTeX formulas for {expected} in the source: KaTeX did not run "
        "(is docs/javascripts/vendor/katex served?)"
    )
    assert "katex-error" not in dom, f"{page}: KaTeX could not parse a formula: " + ", ".join(
        re.findall(r'katex-error"[^>]*title="([^"]*)"', dom)[:3]
    )
    text = _visible_text(dom)
    for raw in ("\\(", "\\)", "\\[", "\\]", "$$"):
        assert raw not in text, (
            f"{page}: raw TeX {raw!r} left in the text: ...{_around(text, raw)}..."
        )
    if "notebooks/" in page:
        assert not re.search(r"\$[^$\n]+\$", text), f"{page}: $...$ left: {_around(text, '$')}"

    shot = tmp_path / (page.strip("/").replace("/", "_") + ".png")
    _chromium(server + page, f"--screenshot={shot}", "--window-size=1280,1800", "--hide-scrollbars")
    assert shot.is_file() and shot.read_bytes()[:4] == b"\x89PNG" and shot.stat().st_size > 20_000
    print(f"screenshot of {page}: {shot}")


def _around(text: str, needle: str, width: int = 60) -> str:
    i = text.find(needle)
    return text[max(0, i - width) : i + width]


@pytest.mark.skipif(
    not os.environ.get("GENVI_DOCS_SITE"),
    reason="the notebooks' outputs are only in a site built with GENVI_DOCS_EXECUTE=true, as "
    "scripts/test.sh builds it (it passes GENVI_DOCS_SITE)",
)
@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_notebook_pages_show_their_outputs(notebook, site):
    """In a site built with the notebooks run, every notebook page shows its plots."""
    page = (site / "notebooks" / notebook / "index.html").read_text()
    assert "jp-OutputArea-output" in page, f"{notebook}: no cell outputs (was it run?)"
    assert re.search(r'<img[^>]+src="data:image/png;base64,', page), f"{notebook}: no plot"
