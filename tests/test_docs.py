"""The built documentation: no broken internal link, and three pages render in a headless browser.

The HTML comes from ``sphinx-build -W -b html docs docs/_build/html`` (``.ci/run`` builds it first); the directory
can be overridden with ``DPT_DOCS_HTML``. Without a build the tests skip, and the browser test skips when no
chromium is installed (CI installs Debian's ``chromium``).

Oracles: the file system and the ``id``/``name`` attributes of the target pages (every relative ``href``/``src``
must name an existing file, and every ``#fragment`` an element of it); the browser's DOM after it loaded the page.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = Path(os.environ.get("DPT_DOCS_HTML", ROOT / "docs/_build/html"))
PAGES = {  # page -> text the rendered DOM must contain
    "index.html": ["dptheory", "Getting started", "Theory"],
    "_generated/api/dptheory.solve.html": ["dptheory.solve", "Raises"],
    "auto_examples/posterior_1d.html": ["posterior_1d", "posterior_1d.png"],
}

needs_build = pytest.mark.skipif(not (HTML / "index.html").exists(),
                                 reason=f"no built documentation in {HTML} (run sphinx-build first)")


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if value is None:
                continue
            if name in ("id", "name"):
                self.ids.add(value)
            elif (name == "href" and tag in ("a", "link")) or (name == "src" and tag in ("img", "script")):
                self.links.append(value)


def _parse(path: Path, cache: dict) -> _Links:
    if path not in cache:
        parser = _Links()
        parser.feed(path.read_text(encoding="utf-8", errors="replace"))
        cache[path] = parser
    return cache[path]


def _internal_problems(html_root: Path) -> list[str]:
    cache: dict = {}
    problems = []
    for page in sorted(html_root.rglob("*.html")):
        for link in _parse(page, cache).links:
            parts = urlsplit(link)
            if parts.scheme or link.startswith("//"):
                continue  # external (http, https, mailto, data): not checked here
            target = page if not parts.path else (page.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            rel = page.relative_to(html_root)
            if not target.exists():
                problems.append(f"{rel}: {link} -> missing file")
            elif parts.fragment and target.suffix == ".html":
                if unquote(parts.fragment) not in _parse(target, cache).ids:
                    problems.append(f"{rel}: {link} -> no anchor #{parts.fragment}")
    return problems


def test_link_checker_finds_a_broken_link_and_a_broken_anchor():
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "a.html").write_text('<a href="b.html#x">ok</a><a href="c.html">no</a><a href="b.html#y">no</a>'
                                     '<a href="https://example.org/">ext</a><img src="img.png"><p id="top"></p>'
                                     '<a href="#top">self</a>')
        (root / "b.html").write_text('<h1 id="x">B</h1>')
        problems = _internal_problems(root)
    assert problems == ["a.html: c.html -> missing file", "a.html: b.html#y -> no anchor #y",
                        "a.html: img.png -> missing file"]


@needs_build
def test_no_broken_internal_link():
    problems = _internal_problems(HTML)
    assert not problems, f"{len(problems)} broken internal links, e.g.:\n" + "\n".join(problems[:20])


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


@needs_build
@pytest.mark.skipif(_chromium() is None, reason="no chromium installed (CI installs it: apt-get install chromium)")
@pytest.mark.parametrize("page", sorted(PAGES))
def test_page_renders_in_headless_chromium(page, tmp_path):
    url = (HTML / page).resolve().as_uri()
    base = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(base + ["--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    for text in PAGES[page]:
        assert text in dom.stdout, f"{text!r} not in the rendered DOM of {page}"
    assert "<body" in dom.stdout and len(dom.stdout) > 2000
    shot = tmp_path / "page.png"
    res = subprocess.run(base + [f"--screenshot={shot}", "--window-size=1000,800", url], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (800, 1000) and float(pixels[..., :3].std()) > 0.01  # not a blank page
