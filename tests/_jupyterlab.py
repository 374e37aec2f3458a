"""Helpers for the browser tests: headless Chromium (the system package, driven by Playwright)
and a private JupyterLab on loopback that runs the course's notebooks like a learner would.

Nothing here downloads anything: Chromium comes from the system (`apt-get install chromium`),
never from `playwright install`; JupyterLab serves only 127.0.0.1 behind a random token.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # we run as root in CI containers, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
NOTEBOOK_DIRS = ("notebooks", "solutions", "exercises")
VIEWPORT = {"width": 1280, "height": 1000}


# --------------------------------------------------------------------------- Chromium


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def require_chromium() -> str:
    """The Chromium executable; skips (outside CI) or fails (in CI) when there is none."""
    path = chromium_path()
    if path is None:
        msg = ("no Chromium on PATH: install the system package (`apt-get install chromium`, which "
               ".ci/run does) - never `playwright install`")
        if in_ci():
            pytest.fail(f"CI={os.environ['CI']!r} but {msg}")
        pytest.skip(msg)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        if in_ci():
            pytest.fail("the playwright package is missing; `make setup-dev` installs it")
        pytest.skip("the playwright package is not installed (`make setup-dev`)")
    return path


def launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=require_chromium(), args=CHROMIUM_ARGS, headless=True)


def only_loopback(page, blocked: list[str]) -> None:
    """Abort (and record) every request that would leave the machine: the course must work offline."""
    def handle(route):
        url = route.request.url
        host = url.split("//", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0] if "//" in url else ""
        if url.startswith(("data:", "blob:", "about:")) or host in ("127.0.0.1", "localhost", "[::1]"):
            route.continue_()
        else:
            blocked.append(url)
            route.abort()

    page.route("**/*", handle)



def screenshot_dir(kind: str) -> Path:
    d = SCREENSHOTS / kind
    d.mkdir(parents=True, exist_ok=True)
    return d


# --------------------------------------------------------------------------- JupyterLab

# User settings for the private JupyterLab: every cell rendered (no virtual scrolling, so all
# plots are in the DOM), no autosave, no restart confirmation, no news toasts over the screenshots.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
}


def stage_course(root: Path, dest: Path) -> Path:
    """A scratch copy of the course for JupyterLab to open: the notebook folders are copied (a run in
    the browser must never write into the repository's notebooks, which store full-mode outputs);
    everything else (llmlab/, configs/, ...) is linked, so relative paths still resolve."""
    dest.mkdir(parents=True, exist_ok=True)
    for entry in root.iterdir():
        if entry.name in NOTEBOOK_DIRS:
            shutil.copytree(entry, dest / entry.name, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        elif entry.name not in (".git", ".venv", "artifacts", ".pytest_cache"):
            (dest / entry.name).symlink_to(entry)
    return dest


class JupyterLab:
    """`jupyter lab` on 127.0.0.1 with a random token, serving `root_dir`; stop() ends it."""

    def __init__(self, root_dir: Path, work: Path, jupyter_path: Path | None = None):
        self.root_dir, self.work = root_dir, work
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = work / "jupyterlab.log"
        settings = work / "lab-settings"
        for plugin, values in LAB_SETTINGS.items():
            f = settings / f"{plugin}.jupyterlab-settings"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(json.dumps(values))
        env = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", "DISPLAY")}
        env.update(
            LLMLAB_FAST="1",  # kernels train their tiny models in fast mode
            JUPYTERLAB_SETTINGS_DIR=str(settings),
            JUPYTERLAB_WORKSPACES_DIR=str(work / "lab-workspaces"),
            JUPYTER_CONFIG_DIR=str(work / "jupyter-config"),
            JUPYTER_RUNTIME_DIR=str(work / "jupyter-runtime"),
        )
        if jupyter_path is not None:  # extra kernel specs (the stalled-kernel test)
            env["JUPYTER_PATH"] = str(jupyter_path)
        cmd = [
            sys.executable, "-m", "jupyter", "lab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--port={self.port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.token={self.token}",
            f"--ServerApp.root_dir={root_dir}",
            "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: read kernel and cell state
            "--LabApp.news_url=",
            "--ServerApp.terminals_enabled=False",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")  # JupyterLab refuses to start as root without it (CI containers)
        self._log = open(self.log_path, "w+")
        self.proc = subprocess.Popen(cmd, cwd=root_dir, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self._wait_ready(timeout=120)

    def log_tail(self, n: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-n:]

    def api(self, path: str, method: str = "GET"):
        req = urllib.request.Request(f"{self.base}/api/{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
        return json.loads(body) if body else None

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.api("status")
                return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"jupyter lab did not answer /api/status within {timeout:.0f} s:\n{self.log_tail()}")

    def url(self, rel: str) -> str:
        # ?reset: a fresh workspace, so the previous notebook is not reopened (and its kernel restarted).
        return f"{self.base}/lab/tree/{rel}?reset&token={self.token}"

    def shutdown_kernels(self) -> None:
        for k in self.api("kernels") or []:
            try:
                self.api(f"kernels/{k['id']}", method="DELETE")
            except OSError:
                pass

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


# --------------------------------------------------------------------------- a notebook in the page

# The state of the open notebook, read from JupyterLab's own models (window.jupyterapp).
NOTEBOOK_STATE_JS = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  if (!panel || !panel.content || !panel.sessionContext) return null;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  const cells = [];
  panel.content.widgets.forEach((cell, index) => {
    if (cell.model.type !== 'code') return;
    const outputs = [];
    const area = cell.model.outputs;
    for (let i = 0; i < area.length; i++) {
      const o = area.get(i).toJSON();
      outputs.push({type: o.output_type, name: o.name || null, mimes: Object.keys(o.data || {}),
                    text: o.output_type === 'stream' ? String(o.text).slice(0, 2000)
                        : o.output_type === 'error' ? (o.ename + ': ' + o.evalue) : ''});
    }
    const prompt = cell.node.querySelector('.jp-InputPrompt');
    cells.push({index, count: cell.model.executionCount,
                running: !!(prompt && prompt.textContent.includes('*')),
                empty: !cell.model.sharedModel.getSource().trim(), outputs});
  });
  return {kernel: kernel ? kernel.status : 'none', connection: kernel ? kernel.connectionStatus : 'none', cells,
          busy: panel.sessionContext.isRestarting || !panel.sessionContext.isReady};
}"""

# Each element named: what is shown (pictures, output text) minus the controls themselves, so a
# slider's own read-out changing does not count as "the picture changed".
SHOWN_JS = ("""(cell) => {
  const parts = [];
  for (const img of cell.querySelectorAll('.jp-OutputArea img')) parts.push('img:' + img.src.length + ':' + img.src.slice(-200));
  for (const svg of cell.querySelectorAll('.jp-OutputArea svg'))"""
            """ if (!svg.closest('.widget-inline-hbox, .widget-hbox.widget-slider, .widget-dropdown')) parts.push('svg:' + svg.innerHTML.length);
  for (const o of cell.querySelectorAll('.widget-output')) parts.push('out:' + o.innerText);
  for (const h of cell.querySelectorAll('.widget-html-content')) parts.push('html:' + h.innerHTML);
  return parts.join('\\n');
}""")

CONTROLS = (
    ".widget-dropdown select",
    ".widget-slider .noUi-handle",
    ".widget-toggle-buttons button",
    ".widget-radio-box input",
    ".widget-checkbox input",
)


class KernelStalled(AssertionError):
    """The notebook's kernel never became ready, died, or stopped answering: fail now, with the
    server's log, instead of running out a long timeout."""


# How long a kernel may be anything but idle-or-busy-and-connected (starting, restarting, connecting,
# dead), or idle while cells wait, before the test gives up. A kernel starts in 1-3 s here, 5-10 s on a
# loaded 2-core machine; a cell that computes keeps the kernel busy, which never counts as a stall.
KERNEL_STALL_S = 30
APP_LOAD_S = 60  # JupyterLab's page, until the notebook panel exists (2-10 s here)


def _kernel_ok(state: dict | None) -> bool:
    return bool(state) and state["kernel"] in ("idle", "busy") and state["connection"] == "connected"


class Watchdog:
    """Raises KernelStalled when a kernel stays unready, or idle with cells queued, for `stall_s`,
    when it dies, or when the JupyterLab server exits. Fed one notebook state per poll."""

    def __init__(self, lab: "JupyterLab | None", stall_s: float = KERNEL_STALL_S, clock=time.monotonic):
        self.lab, self.stall_s, self.clock = lab, stall_s, clock
        self.unready_since: float | None = None
        self.idle_waiting_since: float | None = None
        self.seen: list[str] = []  # the kernel states passed through, for the failure message

    def fail(self, why: str, state: dict | None) -> None:
        log = self.lab.log_tail(6000) if self.lab else "(no server log)"
        raise KernelStalled(f"{why}\nkernel states seen: {' -> '.join(self.seen) or 'none'}; "
                            f"last state: {json.dumps(summarise(state))[:1500]}\n"
                            f"--- JupyterLab server log (tail) ---\n{log}")

    def feed(self, state: dict | None) -> None:
        now = self.clock()
        label = f"{state['kernel']}/{state['connection']}" if state else "no notebook"
        if not self.seen or self.seen[-1] != label:
            self.seen.append(label)
        if self.lab is not None and self.lab.proc.poll() is not None:
            self.fail(f"the JupyterLab server exited with code {self.lab.proc.returncode}", state)
        if state and state["kernel"] == "dead":
            self.fail("the kernel is dead", state)
        if _kernel_ok(state):
            self.unready_since = None
        elif self.unready_since is None:
            self.unready_since = now
        elif now - self.unready_since > self.stall_s:
            self.fail(f"the kernel was not ready (idle or busy, and connected) for {self.stall_s:.0f} s", state)
        waiting = _kernel_ok(state) and state["kernel"] == "idle" and not state["busy"] and any(c["running"] for c in state["cells"])
        if not waiting:
            self.idle_waiting_since = None
        elif self.idle_waiting_since is None:
            self.idle_waiting_since = now
        elif now - self.idle_waiting_since > self.stall_s:
            self.fail(f"the kernel sat idle for {self.stall_s:.0f} s while cells waited to run "
                      f"(their execute requests never reached it: a dead connection)", state)


def open_notebook(page, lab: JupyterLab, rel: str, stall_s: float = KERNEL_STALL_S) -> None:
    """Open `rel` and wait until its kernel is started, connected and idle (so that a restart never
    races the kernel that opening the notebook starts); KernelStalled, with the server log, if not."""
    page.goto(lab.url(rel))
    try:
        page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                               " && window.jupyterapp.shell.currentWidget.sessionContext", timeout=APP_LOAD_S * 1000)
    except Exception as e:  # playwright's TimeoutError
        Watchdog(lab).fail(f"JupyterLab did not show the notebook within {APP_LOAD_S} s ({type(e).__name__})", None)
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=30_000)
    page.evaluate("() => window.jupyterapp.shell.collapseLeft()")  # the notebook only, full width
    dog = Watchdog(lab, stall_s)
    while True:
        state = page.evaluate(NOTEBOOK_STATE_JS)
        dog.feed(state)
        if _kernel_ok(state) and state["kernel"] == "idle" and not state["busy"]:
            return
        time.sleep(0.25)


def click_menu(page, menu: str, item: str) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=menu).first.click()
    page.locator(".lm-Menu-itemLabel", has_text=item).first.click()


def restart_and_run_all(page, timeout_s: float, lab: JupyterLab | None = None, stall_s: float = KERNEL_STALL_S) -> dict:
    """Clear the stored outputs, then Kernel > Restart Kernel and Run All Cells…, as a learner would;
    returns the notebook state once the kernel is idle and nothing is queued any more."""
    click_menu(page, "Edit", "Clear Outputs of All Cells")
    click_menu(page, "Kernel", "Restart Kernel and Run All Cells")
    dialog = page.locator(".jp-Dialog .jp-mod-accept")
    try:
        dialog.wait_for(timeout=5_000)
        dialog.click()
    except Exception:  # the restart dialog can be switched off; then there is nothing to confirm
        pass
    return wait_until_settled(page, timeout_s, need_all=True, lab=lab, stall_s=stall_s)


def wait_until_settled(page, timeout_s: float, need_all: bool = False, lab: JupyterLab | None = None,
                       stall_s: float = KERNEL_STALL_S) -> dict:
    """Poll until the kernel is idle with nothing running, twice in a row; with need_all, also until
    every non-empty code cell has run (or an error stopped the run). `timeout_s` bounds cells that
    compute; a kernel that is not ready, dead or deaf fails within `stall_s` (Watchdog)."""
    deadline = time.monotonic() + timeout_s
    calm, state = 0, None
    dog = Watchdog(lab, stall_s)
    while time.monotonic() < deadline:
        state = page.evaluate(NOTEBOOK_STATE_JS)
        dog.feed(state)
        done = state and state["kernel"] == "idle" and not state["busy"] and not any(c["running"] for c in state["cells"])
        if done and need_all:
            code = [c for c in state["cells"] if not c["empty"]]
            errored = any(o["type"] == "error" for c in code for o in c["outputs"])
            done = errored or all(c["count"] is not None for c in code)
        calm = calm + 1 if done else 0
        if calm >= 2:
            return state
        time.sleep(0.5)
    raise TimeoutError(f"notebook still running after {timeout_s:.0f} s; last state: "
                       f"{json.dumps(summarise(state))[:3000]}")


def summarise(state: dict | None) -> dict | None:
    if not state:
        return state
    return {"kernel": state["kernel"], "connection": state.get("connection"),
            "not run": [c["index"] for c in state["cells"] if c["count"] is None and not c["empty"]],
            "running": [c["index"] for c in state["cells"] if c["running"]]}


def problems_in(state: dict) -> list[str]:
    """Errors a learner would see: error outputs, tracebacks printed to stderr, cells never run."""
    out = []
    for c in state["cells"]:
        for o in c["outputs"]:
            if o["type"] == "error":
                out.append(f"cell {c['index']}: {o['text']}")
            elif o["type"] == "stream" and o["name"] == "stderr" and "Traceback" in o["text"]:
                out.append(f"cell {c['index']}: traceback on stderr: {o['text'][-500:]}")
        if c["count"] is None and not c["empty"]:
            out.append(f"cell {c['index']}: never ran (Run All stopped before it)")
    return out


def rendered_outputs(page) -> dict:
    """What the page shows: every image (decoded or not; `top`: a cell output, not one nested in a
    widget) and every top-level widget view (rendered or not, with how many controls it has)."""
    return page.evaluate("""() => {
      const top = (el) => !el.parentElement.closest('.widget-output');
      const outs = [...document.querySelectorAll('.jp-Notebook .jp-OutputArea-output')];
      const imgs = [...document.querySelectorAll('.jp-Notebook .jp-OutputArea-output img')].map(i => ({
          ok: i.complete && i.naturalWidth > 0, top: top(i.closest('.jp-OutputArea-output'))}));
      // JupyterLab marks every standard output with its mime type; a widget view has none
      const widgets = outs.filter(o => top(o) && !o.hasAttribute('data-mime-type')).map(w => ({
          ok: !!w.querySelector(':scope > .jupyter-widgets') && w.getBoundingClientRect().height > 0
              && !/Error displaying widget|Loading widget|model not found/.test(w.innerText),
          controls: w.querySelectorAll('select, .noUi-handle, input, button').length,
          text: w.innerText.slice(0, 200)}));
      return {imgs, widgets};
    }""")


def counts_in_model(state: dict) -> dict:
    images = widgets = 0
    for c in state["cells"]:
        for o in c["outputs"]:
            if o["type"] in ("display_data", "execute_result"):
                if "application/vnd.jupyter.widget-view+json" in o["mimes"]:
                    widgets += 1
                elif any(m.startswith("image/") for m in o["mimes"]):
                    images += 1
    return {"images": images, "widgets": widgets}


def screenshot_notebook(page, stem: str, max_tiles: int = 40) -> list[Path]:
    """Screenshots of the whole notebook, one viewport per tile, scrolled from the top."""
    out = screenshot_dir("lab")
    for old in out.glob(f"{stem}-*.png"):
        old.unlink()
    scroller = ".jp-NotebookPanel .jp-WindowedPanel-outer"
    # up to the bottom of the last cell: JupyterLab pads the end of a notebook with blank space
    total, step = page.evaluate(f"""() => {{
      const s = document.querySelector('{scroller}');
      const cells = document.querySelectorAll('.jp-Notebook .jp-Cell');
      if (!s || !cells.length) return [0, 0];
      const last = cells[cells.length - 1].getBoundingClientRect().bottom;
      return [s.scrollTop + last - s.getBoundingClientRect().top, s.clientHeight];
    }}""")
    paths = []
    for k in range(max_tiles):
        y = k * max(step - 40, 200)  # a small overlap between tiles
        if k and y >= total:
            break
        page.evaluate(f"(y) => {{ document.querySelector('{scroller}').scrollTop = y; }}", y)
        page.wait_for_timeout(150)
        p = out / f"{stem}-{k + 1:02d}.png"
        page.screenshot(path=str(p))
        paths.append(p)
    page.evaluate(f"() => {{ document.querySelector('{scroller}').scrollTop = 0; }}")
    return paths


def interactive_cells(page):
    """Code cells whose outputs hold a widget control; each with its controls."""
    cells = page.locator(".jp-Notebook .jp-CodeCell")
    found = []
    for i in range(cells.count()):
        cell = cells.nth(i)
        controls = cell.locator(".jp-OutputArea " + ", .jp-OutputArea ".join(CONTROLS))
        if controls.count():
            found.append((i, cell, controls))
    return found


def _control_label(control) -> str:
    return control.evaluate("""(el) => {
      const w = el.closest('.widget-inline-hbox, .widget-hbox, .widget-toggle-buttons, .widget-radio, .widget-checkbox');
      const label = w && w.querySelector('.widget-label');
      return ((label && label.innerText) || el.getAttribute('aria-label') || el.tagName).trim();
    }""")


def move_control(page, control) -> str:
    """Change one control the way a learner would; returns a description of what was done."""
    kind = control.evaluate("(el) => el.tagName.toLowerCase() + '.' + el.className")
    label = _control_label(control)
    if kind.startswith("select"):
        options = control.locator("option")
        n = options.count()
        if n < 2:
            return ""
        current = control.evaluate("(el) => el.selectedIndex")
        target = (current + 1) % n
        control.select_option(index=target)
        return f"dropdown {label!r}: option {current} -> {target}"
    if "noUi-handle" in kind:
        before = control.get_attribute("aria-valuenow")
        control.focus()
        control.press("ArrowRight")
        page.wait_for_timeout(100)
        if control.get_attribute("aria-valuenow") == before:  # already at its maximum
            control.press("ArrowLeft")
        return f"slider {label!r}: {before} -> {control.get_attribute('aria-valuenow')}"
    if kind.startswith("button"):
        if "mod-active" in kind:
            return ""  # the selected one; another button of the group gets clicked
        control.click()
        return f"toggle button {control.inner_text()!r}"
    if kind.startswith("input"):
        if control.is_checked() and control.get_attribute("type") == "radio":
            return ""
        control.click()
        return f"{control.get_attribute('type')} {label!r}"
    return ""


def check_interactions(page, cell_timeout_s: float = 60, lab: JupyterLab | None = None) -> tuple[list[str], list[str]]:
    """For every control of every interactive output: move it, and see that what is shown changes.
    Returns (what was tried, what failed)."""
    tried, failed = [], []
    for index, cell, controls in interactive_cells(page):
        for k in range(controls.count()):
            control = controls.nth(k)
            if not control.is_visible() or control.is_disabled() or control.evaluate(
                    "(el) => !!el.closest('[disabled], .mod-disabled, [aria-disabled=true]')"):
                continue  # a disabled control (a slider's handle inside a disabled slider) cannot move
            cell.scroll_into_view_if_needed()
            before = cell.evaluate(SHOWN_JS)
            what = move_control(page, control)
            if not what:
                continue
            tried.append(f"cell {index}: {what}")
            deadline = time.monotonic() + cell_timeout_s
            changed = False
            while time.monotonic() < deadline and not changed:
                page.wait_for_timeout(250)
                after = cell.evaluate(SHOWN_JS)
                changed = after != before and bool(after)
            if not changed:
                failed.append(f"cell {index}: {what}: nothing shown changed within {cell_timeout_s:.0f} s")
            wait_until_settled(page, cell_timeout_s, lab=lab)
            page.wait_for_timeout(200)  # let the redrawn output land before the next control
    return tried, failed


def output_text(page) -> str:
    return page.evaluate("() => [...document.querySelectorAll('.jp-Notebook .jp-OutputArea-output')].map(o => o.innerText).join('\\n')")
