"""The documentation site (``make docs``): it builds strictly, loads nothing from the
network, its generated reference pages cover the code, and a real browser (Debian's
chromium through Playwright) shows the home page, a guide, the CLI and the API reference
with their content and navigation (screenshots under pytest's temporary folder)."""

from __future__ import annotations

import ast
import functools
import http.server
import importlib.util
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HOOKS = ROOT / "docs" / "hooks"
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]

pytestmark = [
    pytest.mark.docs,
    pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None,
                       reason="the docs extra is not installed (pip install -e '.[docs]'; "
                              "make test installs it)"),
]


def _hook(name: str):
    """A module of docs/hooks/, imported by path."""
    spec = importlib.util.spec_from_file_location(f"docs_hook_{name}", HOOKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site built as ``make docs`` builds it (strict), into a temporary folder."""
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict",
                           "--site-dir", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stderr[-6000:]}"
    warnings = [line for line in done.stderr.splitlines() if line.startswith("WARNING")]
    assert not warnings, "\n".join(warnings)
    return out


def _text(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def test_every_page_of_the_docs_folder_is_built_and_in_the_nav(site):
    pages = {p.relative_to(ROOT / "docs").with_suffix(".html").as_posix()
             for p in (ROOT / "docs").rglob("*.md")}
    built = {p.relative_to(site).as_posix() for p in site.rglob("*.html")}
    assert pages <= built, f"pages not built: {sorted(pages - built)}"
    nav = _text(site / "index.html")
    missing = [p for p in sorted(pages) if f'href="{p}"' not in nav and p != "index.html"]
    assert not missing, f"pages missing from the navigation: {missing}"


# A load from another host: a script, stylesheet, font, image or frame whose address
# is absolute (http:, https: or protocol-relative), or a CSS @import / url() of one.
_REMOTE_TAG = re.compile(r"<(script|link|img|iframe|source)\b[^>]*\b(src|href)=\"(https?:)?//",
                         re.I)
_REMOTE_CSS = re.compile(r"(@import|url\()\s*['\"]?(https?:)?//", re.I)


def test_the_built_site_loads_nothing_from_the_network(site):
    found = []
    for page in site.rglob("*.html"):
        for match in _REMOTE_TAG.finditer(_text(page)):
            tag = _text(page)[match.start():match.start() + 160]
            if match.group(1).lower() == "link" and "stylesheet" not in tag \
                    and "preload" not in tag and "icon" not in tag:
                continue  # a plain link to a page, not a load
            found.append(f"{page.relative_to(site)}: {tag[:120]}")
    for sheet in site.rglob("*.css"):
        found += [f"{sheet.relative_to(site)}: {m.group(0)}"
                  for m in _REMOTE_CSS.finditer(_text(sheet))]
    assert not found, "\n".join(found)


def test_the_cli_reference_has_every_command(site):
    from histotile.workflows.cli.main import cli

    page = _text(site / "reference" / "cli.html")
    missing = [name for name in cli.commands if f'id="histotile-{name}"' not in page]
    assert not missing, f"commands missing from the CLI reference: {missing}"
    assert "--operating-point" in page  # options, not only headings
    assert "Sentinel" not in page  # click's unset default, tidied by the hook


def test_the_api_reference_has_every_public_name(site):
    import histotile

    page = _text(site / "reference" / "api.html")
    missing = []
    for name, target in histotile._EXPORTS.items():
        module, attribute = target if isinstance(target, tuple) else (target, name)
        if f'id="{module}.{attribute}"' not in page:
            missing.append(name)
    assert not missing, f"public names missing from the API reference: {missing}"


def test_the_rest_reference_has_every_operation(site):
    document = _hook("rest_api").openapi()
    page = _text(site / "reference" / "rest-api.html")
    missing = [f"{method.upper()} {path}" for path, ops in document["paths"].items()
               for method in ops if f"{method.upper()} {path}" not in page]
    assert not missing, f"operations missing from the REST reference: {missing}"


def test_the_errors_reference_has_every_raise(site):
    rows = _hook("errors_reference").raised()
    assert len(rows) > 100  # the source was found and read
    page = _text(site / "reference" / "errors.html")
    missing = [row.where for row in rows if row.where not in page]
    assert not missing, f"raises missing from the errors reference: {missing[:10]}"


def _environment_names() -> set[str]:
    """Every environment variable histotile's code reads or sets: string keys of
    ``os.environ``/``os.getenv`` calls and subscripts, and ``ENVIRONMENT`` constants."""
    names: set[str] = set()
    for path in (ROOT / "histotile").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            key = None
            if isinstance(node, ast.Call) and node.args:
                func = ast.unparse(node.func)
                if func in ("os.environ.get", "os.getenv", "os.environ.setdefault",
                            "os.environ.pop"):
                    key = node.args[0]
            elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
                key = node.slice
            elif isinstance(node, ast.Compare) and any(
                    ast.unparse(c) == "os.environ" for c in node.comparators):
                key = node.left  # "NAME" in os.environ
            elif isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "ENVIRONMENT" for t in node.targets):
                key = node.value
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                names.add(key.value)
    return names


def test_the_environment_page_names_every_variable_the_code_reads(site):
    names = _environment_names()
    assert {"HISTOTILE_THREADS", "HISTOTILE_MAX_IMAGE_PIXELS", "XDG_CACHE_HOME"} <= names
    page = _text(site / "reference" / "environment.html")
    missing = sorted(name for name in names if f"<code>{name}</code>" not in page)
    assert not missing, f"environment variables missing from the page: {missing}"


# -- in a browser ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def served(site):
    """The built site on a free loopback port (a thread; shut down after the module)."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no request lines in the test output
        pass


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium "
                    "(make test installs it: apt-get install -y chromium)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


# page, its title (h1), a text only that page has, and the screenshot's name
PAGES = [
    ("index.html", "histotile", "Four ways in", "home"),
    ("guides/training.html", "Training and validation", "Reading the model folder", "guide"),
    ("reference/cli.html", "Command line", "histotile train", "cli"),
    ("reference/api.html", "Python API", "a tile takes a class when the class covers", "api"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("path", "title", "text", "shot"), PAGES, ids=[p[3] for p in PAGES])
def test_a_browser_shows_the_page_with_its_content(served, browser, tmp_path_factory,
                                                   path, title, text, shot):
    remote: list[str] = []
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("request", lambda request: remote.append(request.url)
            if not request.url.startswith(served) and not request.url.startswith("data:")
            else None)
    try:
        page.goto(f"{served}/{path}", wait_until="load", timeout=300_000)  # a hang bound only
        heading = page.locator("article h1").first
        assert heading.inner_text().strip().rstrip("¶").strip() == title
        assert page.get_by_text(text, exact=False).first.is_visible() or \
            text in page.locator("article").inner_text()
        # styled: Material's stylesheet applied (its header bar is fixed at the top)
        assert page.locator("header.md-header").evaluate(
            "e => getComputedStyle(e).position") in ("sticky", "fixed")
        # navigation: the primary nav lists the sections
        nav = page.locator("nav.md-nav--primary").first.inner_text()
        for section in ("Getting started", "Guides", "Reference"):
            assert section in nav
        folder = tmp_path_factory.getbasetemp() / "docs-screenshots"
        folder.mkdir(exist_ok=True)
        page.screenshot(path=str(folder / f"{shot}.png"), full_page=False)
    finally:
        page.close()
    assert not remote, f"{path} requested addresses off this server: {remote}"
