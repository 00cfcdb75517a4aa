"""The docs site works in a browser opened on the files, as a user of a clone opens it.

A headless Chromium (Debian's, driven through Playwright's Python client; ``make setup``
installs both) opens ``site/index.html`` from disk, follows every link of the navigation and
finds a page there each time (not a folder listing, not an error page), and reads the API
reference: the docstrings' Sphinx roles must have become links (``tools/griffe_roles.py``), with
no ``:func:`...```-style text left, and no table cell may show an escaped ``\\|``. Search works
there too: a query typed into the search box lists matching pages (``docs/js/iframe-worker.js``
runs the theme's search worker on file:// pages), and a result opens its page.

The same site served over HTTP (as ``python -m http.server -d site`` serves it) answers every
navigation link and searches too. The site is the ``make docs`` output in ``site/`` when that is
newer than every source of the site, else it is built into a temporary folder first. Without
Chromium the test is skipped with the reason, except under CI, where a missing browser is a
failure of the set-up.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support import REPO_ROOT

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"]
ROLE_TEXT = re.compile(r":(?:py:)?(?:func|meth|class|mod|attr|data|exc|obj|const|ref):\s*`?\w")
OUTSIDE = re.compile(r"\.\./shared/\S*|/work/\S*")  # a development folder, not in a clone
SOURCE_SUFFIXES = {".md", ".py", ".ipynb", ".png", ".js"}
SITE_SOURCES = ("docs", "tools", "notebooks", "gee_export", "engine", "training", "inference")
# the site and the browser (module fixtures) are made once, on the worker that runs all three
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("docs_site_browser")]


def _chromium() -> str | None:
    for candidate in (os.environ.get("ISAMAP_CHROMIUM"), shutil.which("chromium"),
                      "/usr/bin/chromium", shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; make setup installs it (CI must not skip the docs site test)")
    pytest.skip(reason)


def _newest_source() -> float:
    newest = (REPO_ROOT / "mkdocs.yml").stat().st_mtime
    for folder in SITE_SOURCES:
        for path in (REPO_ROOT / folder).rglob("*"):
            if path.suffix in SOURCE_SUFFIXES and "__pycache__" not in path.parts:
                newest = max(newest, path.stat().st_mtime)
    return newest


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    made = REPO_ROOT / "site" / "index.html"
    if made.is_file() and made.stat().st_mtime >= _newest_source():
        return made.parent
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stderr[-4000:]}"
    return out


@pytest.fixture(scope="module")
def browser():
    executable = _chromium()
    if executable is None:
        _unavailable("no Chromium at /usr/bin/chromium (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install -e '.[dev]')")
    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            yield launched
        finally:
            launched.close()


def _page_facts(page) -> dict:
    return page.evaluate("""() => ({
        title: document.title,
        h1: (document.querySelector('article h1') || {}).textContent || '',
        listing: !!document.querySelector('#listing, table#parentDirLinkBox')
                 || document.title.startsWith('Index of'),
        text: (document.querySelector('article') || document.body).textContent,
        cells: [...document.querySelectorAll('td, th')].map(c => c.textContent)
                 .filter(t => t.includes('\\\\|')),
        internal: document.querySelectorAll('article a.autorefs-internal').length,
    })""")


def test_site_opens_from_disk_every_navigation_link_finds_a_page_and_roles_are_links(site, browser):
    page = browser.new_page()
    page.goto((site / "index.html").as_uri())
    links = page.eval_on_selector_all(
        "nav.md-nav--primary a.md-nav__link[href]", "els => els.map(e => e.href)")
    targets = sorted({link.split("#", 1)[0] for link in links if link.startswith("file:")})
    assert len(targets) >= 20, f"the navigation has only {len(targets)} pages: {targets}"
    reference = []
    for target in targets:
        page.goto(target, wait_until="domcontentloaded")
        facts = _page_facts(page)
        assert target.endswith(".html"), f"navigation link {target} is not a page file"
        assert not facts["listing"], f"{target} opens a folder listing"
        assert facts["h1"].strip() and "404" not in facts["title"], f"no page at {target}"
        assert not facts["cells"], f"{target}: table cells show a backslash: {facts['cells'][:3]}"
        outside = OUTSIDE.search(facts["text"])
        assert not outside, f"{target} points outside the repository: {outside.group(0)}"
        if "/reference/" in target:
            reference.append((target, facts))
    assert len(reference) == 6, [t for t, _ in reference]  # one page per package
    for target, facts in reference:
        roles = sorted({m.group(0) for m in ROLE_TEXT.finditer(facts["text"])})
        assert not roles, f"{target} shows Sphinx roles as text: {roles[:10]}"
        assert facts["internal"] > 50, \
            f"{target} has only {facts['internal']} cross-reference links"
    # and a cross-reference leads to its object
    page.goto(reference[0][0], wait_until="domcontentloaded")
    href = page.eval_on_selector("article a.autorefs-internal[href*='#']", "a => a.href")
    page.goto(href, wait_until="domcontentloaded")
    anchor = href.split("#", 1)[1]
    assert page.evaluate("id => !!document.getElementById(id)", anchor), \
        f"{href}: no element with the id {anchor}"
    page.close()


def _search(page, root: str, query: str) -> list[str]:
    """Type ``query`` into the search box of ``root``'s home page; the result links."""
    page.goto(root, wait_until="load")
    page.click("input.md-search__input")
    page.keyboard.type(query)
    page.wait_for_selector(".md-search-result__link", timeout=30_000)
    meta = page.inner_text(".md-search-result__meta")
    assert "matching document" in meta, f"search says {meta!r}"
    return page.eval_on_selector_all(".md-search-result__link", "els => els.map(e => e.href)")


def test_search_works_from_disk_and_a_result_opens_its_page(site, browser):
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    results = _search(page, (site / "index.html").as_uri(), "Colab")
    assert any(link.split("#")[0].endswith("/notebooks.html") for link in results), results
    assert all(link.startswith("file:") for link in results), results
    page.goto(results[0], wait_until="domcontentloaded")
    assert _page_facts(page)["h1"].strip(), f"no page at {results[0]}"
    assert not errors, errors
    page.close()


def test_the_served_site_finds_every_navigation_page(site, browser):
    handler = functools.partial(_QuietHandler, directory=str(site))
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            page = browser.new_page()
            root = f"http://127.0.0.1:{server.server_address[1]}/"
            response = page.goto(root, wait_until="domcontentloaded")
            assert response is not None and response.ok
            links = page.eval_on_selector_all(
                "nav.md-nav--primary a.md-nav__link[href]", "els => els.map(e => e.href)")
            targets = sorted({link.split("#", 1)[0] for link in links if link.startswith(root)})
            assert len(targets) >= 20, targets
            for target in targets:
                response = page.request.get(target)
                assert response.ok, f"{target}: HTTP {response.status}"
            results = _search(page, root, "Colab")
            assert any(link.split("#")[0].endswith("/notebooks.html") for link in results)
            page.close()
        finally:
            server.shutdown()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass
