"""The course website: `python docs/build_site.py` (= `make site`) builds it with warnings as errors;
every lesson and exercise notebook has a page, every stored plot is on it, every internal link and
image resolves, each lesson links to Colab, Binder and its exercises; in a browser, served from
loopback with no network, the chapters follow one another and the plots display."""

from __future__ import annotations

import functools
import http.server
import re
import subprocess
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import pytest
import yaml

from _jupyterlab import ROOT, VIEWPORT, launch_chromium, only_loopback, require_chromium, screenshot_dir

LESSONS = sorted((ROOT / "notebooks").glob("*.ipynb"))
EXERCISES = sorted((ROOT / "exercises").glob("*.ipynb"))
IMAGE_MIMES = ("image/png", "image/jpeg", "image/svg+xml", "image/gif")
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


class Page(HTMLParser):
    """The links, images and ids of one HTML page."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.images: list[str] = []
        self.ids: set[str] = set()
        self.scripts: list[str] = []
        self.main_images: list[str] = []
        self._main_depth = 0
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "main" or (self._main_depth and tag == "div"):
            self._main_depth += 1
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        elif tag == "link" and a.get("href"):
            self.links.append(a["href"])
        elif tag == "img" and a.get("src"):
            self.images.append(a["src"])
            if self._main_depth:
                self.main_images.append(a["src"])
        elif tag == "script" and a.get("src"):
            self.scripts.append(a["src"])

    def handle_endtag(self, tag):
        if self._main_depth and tag in ("main", "div"):
            self._main_depth -= 1


@functools.lru_cache(maxsize=None)
def parse(path: Path) -> Page:
    return Page(path.read_text(encoding="utf-8"))


def stored_images(nb_path: Path) -> int:
    """Pictures stored in a notebook's outputs (a widget's view is not one: the site shows a note)."""
    nb = nbformat.read(str(nb_path), as_version=4)
    return sum(
        1
        for cell in nb.cells if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if WIDGET_MIME not in out.get("data", {}) and any(m in out.get("data", {}) for m in IMAGE_MIMES)
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site, built once by the documented command, strict (-W), into a scratch folder."""
    out = tmp_path_factory.mktemp("site") / "_build"
    proc = subprocess.run([sys.executable, str(ROOT / "docs" / "build_site.py"), "--root", str(ROOT), "--out", str(out), "-q"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    if proc.returncode:
        pytest.fail(f"`python docs/build_site.py` failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-6000:]}")
    html = out / "html"
    assert (html / "index.html").is_file(), proc.stdout[-2000:]
    return html


def test_there_are_lessons_to_publish():
    assert LESSONS, f"no lesson notebooks in {ROOT / 'notebooks'}"


@pytest.mark.parametrize("nb", LESSONS, ids=lambda p: p.stem)
def test_lesson_is_stored_with_its_outputs(nb):
    """The site shows stored outputs (it executes nothing): a lesson saved unexecuted would be bare."""
    cells = [c for c in nbformat.read(str(nb), as_version=4).cells if c.cell_type == "code" and c.source.strip()]
    not_run = [k for k, c in enumerate(cells) if c.execution_count is None]
    assert not not_run, (f"{nb.name}: {len(not_run)} of {len(cells)} code cells have no stored output "
                         f"(run `llmlab course execute {nb.relative_to(ROOT)}`)")


def test_every_notebook_has_a_page_in_the_navigation(site):
    nav = set()
    for href in parse(site / "intro.html").links:
        nav.add(urlsplit(href).path)
    missing = []
    for folder, notebooks in (("notebooks", LESSONS), ("exercises", EXERCISES)):
        for nb in notebooks:
            page = f"{folder}/{nb.stem}.html"
            if not (site / page).is_file():
                missing.append(f"{page} was not built")
            elif page not in nav:
                missing.append(f"{page} is not in the navigation of the front page")
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("nb", LESSONS, ids=lambda p: p.stem)
def test_every_stored_plot_is_on_the_lesson_page(site, nb):
    page = parse(site / "notebooks" / f"{nb.stem}.html")
    plots = [src for src in page.main_images if "_images/" in src]
    assert len(plots) == stored_images(nb), (
        f"{nb.name} stores {stored_images(nb)} pictures but its page shows {len(plots)}: {plots}")
    for src in plots:
        f = (site / "notebooks" / unquote(src)).resolve()
        assert f.is_file() and f.stat().st_size > 100, f"{nb.stem}.html shows {src}, which is not in the build"
        head = f.read_bytes()[:8]
        assert head.startswith((b"\x89PNG", b"\xff\xd8", b"GIF8", b"<?xml", b"<svg")), f"{f.name} is not an image"


def test_pages_do_not_show_test_markers(site):
    """`# NBVAL_IGNORE_OUTPUT` speaks to the test runner, not to a reader."""
    shown = [p.relative_to(site).as_posix() for folder in ("notebooks", "exercises") for p in (site / folder).glob("*.html")
             if "NBVAL_" in p.read_text(encoding="utf-8")]
    assert not shown, f"pages showing nbval markers: {shown}"


def test_internal_links_and_images_resolve(site):
    broken = []
    pages = [p for p in site.rglob("*.html") if "_static" not in p.parts]
    assert len(pages) >= len(LESSONS) + len(EXERCISES) + 1
    for page in pages:
        parsed = parse(page)
        for target in parsed.links + parsed.images + parsed.scripts:
            parts = urlsplit(target)
            if parts.scheme or parts.netloc or target.startswith(("mailto:", "data:", "javascript:")):
                continue
            if not parts.path:  # a fragment of this page
                if parts.fragment and parts.fragment not in parsed.ids:
                    broken.append(f"{page.relative_to(site)}: #{parts.fragment} is not an id on the page")
                continue
            dest = (page.parent / unquote(parts.path)).resolve()
            if not dest.exists():
                broken.append(f"{page.relative_to(site)}: {target} does not exist")
            elif parts.fragment and dest.suffix == ".html" and parts.fragment not in parse(dest).ids:
                broken.append(f"{page.relative_to(site)}: {target}: no id {parts.fragment!r} in {dest.name}")
    assert not broken, "\n".join(broken[:50])


def _config() -> dict:
    return yaml.safe_load((ROOT / "docs" / "_config.yml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("nb", LESSONS, ids=lambda p: p.stem)
def test_lesson_page_links_to_colab_binder_and_its_exercises(site, nb):
    slug = _config()["repository"]["url"].removeprefix("https://github.com/").rstrip("/")
    links = parse(site / "notebooks" / f"{nb.stem}.html").links
    assert any(h.startswith("https://colab.research.google.com/github/") and h.endswith(f"{slug}/blob/main/notebooks/{nb.name}")
               for h in links), f"no Open-in-Colab link to notebooks/{nb.name}"
    assert any(h.startswith(f"https://mybinder.org/v2/gh/{slug}/") and f"notebooks%2F{nb.name}" in h for h in links), \
        f"no Launch-Binder link to notebooks/{nb.name}"
    if (ROOT / "exercises" / nb.name).exists():
        assert f"../exercises/{nb.stem}.html" in links, f"{nb.stem}.html does not link to its exercises"
        back = parse(site / "exercises" / f"{nb.stem}.html").links
        assert f"../notebooks/{nb.stem}.html" in back, f"exercises/{nb.stem}.html does not link back to the lesson"


@pytest.mark.parametrize("nb", LESSONS, ids=lambda p: p.stem)
def test_lesson_installs_llmlab_when_opened_in_colab(nb):
    """The Colab link opens the notebook alone: its first code cell must install the package there."""
    cells = [c for c in nbformat.read(str(nb), as_version=4).cells if c.cell_type == "code"]
    first = cells[0].source if cells else ""
    url = _config()["repository"]["url"].rstrip("/")
    assert f"git+{url}" in first, f"{nb.name}: the Colab cell should install from docs/_config.yml's repository.url ({url})"
    assert "google.colab" in first and "pip install" in first, (
        f"{nb.name}: the first code cell should install llmlab on Colab, e.g.\n"
        "import sys\nif \"google.colab\" in sys.modules:  # on Colab: install the course package first\n"
        "    %pip install -q \"llmlab @ git+<repository URL>\"")


def test_front_page_shows_the_readme_course_map(site):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    front = (site / "intro.html").read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\((notebooks/[^)#\s]+\.ipynb)", readme))
    assert linked, "the README's course map links no lesson notebook"
    for rel in sorted(linked):
        assert f'href="{rel[:-len(".ipynb")]}.html"' in front, f"the front page's course map does not link {rel}"
    assert "<table" in front


def test_binder_environment_installs_the_course():
    env = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    deps = env["dependencies"]
    assert "python=3.11" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    assert "-e .[lab]" in pip, f"environment.yml does not pip-install the course with its Jupyter stack (-e .[lab]): {pip}"


# ------------------------------------------------------------------------------ in a browser


def _serve(directory: Path):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.browser
def test_site_in_a_browser_navigates_every_chapter_and_shows_plots(site):
    require_chromium()
    from playwright.sync_api import sync_playwright

    expected = ["intro.html"] + [f"notebooks/{p.stem}.html" for p in LESSONS] + [f"exercises/{p.stem}.html" for p in EXERCISES]
    shots = screenshot_dir("site")
    for old in [*shots.glob("*.png"), *shots.glob("*.jpg")]:
        old.unlink()
    server = _serve(site)
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    blocked: list[str] = []
    problems: list[str] = []
    visited: list[str] = []
    try:
        with sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_context(viewport=VIEWPORT).new_page()
            only_loopback(page, blocked)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(base)  # index.html redirects to the front page
            page.wait_for_url(base + expected[0], timeout=20_000)
            page.wait_for_load_state("load")
            for _ in range(len(expected) + 2):
                rel = page.url.removeprefix(base).split("#")[0]
                visited.append(rel)
                sidebar = page.locator("nav.bd-docs-nav a.reference").evaluate_all("els => els.map(e => e.href)")
                missing = [e for e in expected if base + e not in sidebar and e not in ("intro.html", rel)]
                if missing:
                    problems.append(f"{rel}: the sidebar lacks {missing}")
                page.wait_for_function("() => [...document.images].every(i => i.complete)", timeout=20_000)
                bad = page.evaluate("() => [...document.querySelectorAll('main img')].filter(i => !i.naturalWidth).map(i => i.src)")
                if bad:
                    problems.append(f"{rel}: images not displayed: {bad}")
                if page.locator("main .math").count():
                    try:  # MathJax typeset every formula (from the local copy: the network is cut)
                        page.wait_for_function("() => document.querySelectorAll('main .math').length <= "
                                               "document.querySelectorAll('main .MathJax_CHTML, main mjx-container').length",
                                               timeout=20_000)
                    except Exception:
                        problems.append(f"{rel}: math was not typeset")
                stem = rel.replace("/", "__").removesuffix(".html")
                page.screenshot(path=str(shots / f"{stem}.png"))  # what a reader sees first
                page.screenshot(path=str(shots / f"{stem}-full.png"), full_page=True)
                nxt = page.locator("a.right-next")
                if not nxt.count():
                    break
                href = nxt.first.get_attribute("href")
                with page.expect_navigation():
                    nxt.first.click()
                page.wait_for_load_state("load")
                if page.url.split("#")[0].endswith(visited[-1]):
                    problems.append(f"{rel}: 'Next' ({href}) did not leave the page")
                    break
            problems += [f"JavaScript error: {e}" for e in errors]
            browser.close()
    finally:
        server.shutdown()
    assert visited == expected, f"following 'Next' visited {visited}, expected {expected}"
    assert not blocked, f"the site tried to reach the network: {sorted(set(blocked))[:10]}"
    assert not problems, "\n".join(problems)
