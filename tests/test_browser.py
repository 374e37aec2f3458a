"""What a learner sees: every lesson and solutions notebook opened in JupyterLab in headless
Chromium, restarted and run from the menu (Kernel > Restart Kernel and Run All Cells…), with
no error output, every plot drawn as an image, every widget rendered, and every widget control
changing what it shows when moved. One generated exercises notebook runs to its end unsolved,
each check saying "not implemented yet". Screenshots land in artifacts/screenshots/lab/.

nbval proves the kernel side; this proves the front end (widgets need JupyterLab's widget
manager, images need the browser to decode them). Runs with LLMLAB_FAST=1 (short training).
"""

from __future__ import annotations

import json
import re
import sys
import time

import nbformat
import pytest

from _jupyterlab import (
    KERNEL_STALL_S,
    ROOT,
    VIEWPORT,
    JupyterLab,
    KernelStalled,
    check_interactions,
    counts_in_model,
    launch_chromium,
    only_loopback,
    open_notebook,
    output_text,
    problems_in,
    rendered_outputs,
    require_chromium,
    restart_and_run_all,
    screenshot_notebook,
    stage_course,
)

pytestmark = pytest.mark.browser

NOTEBOOKS = [p.relative_to(ROOT).as_posix() for d in ("notebooks", "solutions") for p in sorted((ROOT / d).glob("*.ipynb"))]
EXERCISES = sorted((ROOT / "exercises").glob("*.ipynb"))
RUN_TIMEOUT_S = 300  # a fast-mode lesson runs in well under a minute; this is for a loaded 2-core CI machine


@pytest.fixture(scope="module")
def browser():
    require_chromium()  # skip (or fail in CI) before starting anything
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch_chromium(p)
        yield b
        b.close()


@pytest.fixture(scope="module")
def lab(browser, tmp_path_factory):
    work = tmp_path_factory.mktemp("lab")
    server = JupyterLab(stage_course(ROOT, work / "course"), work)
    yield server
    server.stop()


@pytest.fixture
def page(browser, lab):
    context = browser.new_context(viewport=VIEWPORT)
    pg = context.new_page()
    blocked: list[str] = []
    only_loopback(pg, blocked)
    pg.blocked = blocked
    yield pg
    context.close()
    lab.shutdown_kernels()  # the next notebook starts from a quiet machine


def _stem(rel: str) -> str:
    return rel.removesuffix(".ipynb").replace("/", "__")


def _run(page, lab, rel: str) -> dict:
    open_notebook(page, lab, rel)
    try:
        state = restart_and_run_all(page, RUN_TIMEOUT_S, lab=lab)
    except (TimeoutError, KernelStalled):
        screenshot_notebook(page, _stem(rel))
        raise
    screenshot_notebook(page, _stem(rel))
    return state


def test_there_are_notebooks_to_open():
    assert NOTEBOOKS, f"no notebooks in {ROOT / 'notebooks'} or {ROOT / 'solutions'}"


@pytest.mark.parametrize("rel", NOTEBOOKS)
def test_notebook_runs_in_jupyterlab_and_shows_everything(page, lab, rel):
    state = _run(page, lab, rel)
    problems = problems_in(state)
    assert not problems, f"{rel} in JupyterLab:\n" + "\n".join(problems)

    model, shown = counts_in_model(state), rendered_outputs(page)
    top_images = [i for i in shown["imgs"] if i["top"]]
    assert len(top_images) == model["images"], (
        f"{rel}: the kernel sent {model['images']} pictures, the page shows {len(top_images)}")
    undecoded = [i for i in shown["imgs"] if not i["ok"]]
    assert not undecoded, f"{rel}: {len(undecoded)} image(s) did not decode in the browser"
    assert len(shown["widgets"]) == model["widgets"], (
        f"{rel}: the kernel sent {model['widgets']} widget views, the page has {len(shown['widgets'])}")
    broken = [w["text"] for w in shown["widgets"] if not w["ok"]]
    assert not broken, f"{rel}: widgets not rendered: {broken}"

    tried, failed = check_interactions(page, lab=lab)
    if model["widgets"]:
        assert tried or not any(w["controls"] for w in shown["widgets"]), f"{rel}: found widget controls but moved none"
    assert not failed, f"{rel}: widget controls that change nothing shown:\n" + "\n".join(failed)
    assert not page.blocked, f"{rel}: the page tried to reach the network: {page.blocked[:5]}"


def _exercise_to_open():
    """One generated exercises notebook: the first that declares its exercise ids."""
    for p in EXERCISES:
        if nbformat.read(str(p), as_version=4).metadata.get("llmlab", {}).get("exercises"):
            return p
    return None


def test_unsolved_exercises_run_to_the_end_and_say_not_implemented(page, lab):
    nb_path = _exercise_to_open()
    if nb_path is None:
        pytest.fail(f"no generated exercises notebook with metadata.llmlab.exercises in {ROOT / 'exercises'}")
    rel = nb_path.relative_to(ROOT).as_posix()
    state = _run(page, lab, rel)
    problems = problems_in(state)
    assert not problems, f"{rel}, unsolved, in JupyterLab:\n" + "\n".join(problems)
    text = output_text(page)
    assert "Traceback" not in text, f"{rel}: a traceback is shown:\n{text[-3000:]}"
    ids = nbformat.read(str(nb_path), as_version=4).metadata["llmlab"]["exercises"]
    missing = [i for i in ids if not re.search(rf"{re.escape(i)}: not implemented yet", text)]
    assert not missing, f"{rel}: these checks did not say 'not implemented yet': {missing}"


def test_a_kernel_that_never_becomes_ready_fails_within_a_minute_with_the_server_log(browser, tmp_path):
    """The watchdog, proven: a kernel spec whose process only sleeps (it never answers kernel_info)
    must fail the run in about KERNEL_STALL_S seconds, with the server's log, not after RUN_TIMEOUT_S."""
    spec = tmp_path / "jupyter-data" / "kernels" / "never-ready"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-c", "import time; time.sleep(120)", "{connection_file}"],
        "display_name": "never ready", "language": "python"}))
    course = tmp_path / "course"
    course.mkdir()
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "never-ready", "display_name": "never ready", "language": "python"}})
    nb.cells.append(nbformat.v4.new_code_cell("1 + 1"))
    nbformat.write(nb, str(course / "never_ready.ipynb"))
    server = JupyterLab(course, tmp_path, jupyter_path=tmp_path / "jupyter-data")
    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        t0 = time.monotonic()
        with pytest.raises(KernelStalled) as err:
            _run(page, server, "never_ready.ipynb")
        elapsed = time.monotonic() - t0
    finally:
        context.close()
        server.stop()
    message = str(err.value)
    assert elapsed < 60, f"the stalled kernel was reported after {elapsed:.0f} s, not within a minute"
    assert elapsed >= KERNEL_STALL_S - 1, f"reported after {elapsed:.0f} s: sooner than the stall limit"
    assert "not ready" in message and "JupyterLab server log" in message, message[:2000]
    assert "Kernel started" in message, "the server's log is not in the failure message"
