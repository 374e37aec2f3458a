"""The README's first command, `make lab`, really opens the course: start it headless on
loopback, fetch its URL, stop it."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from conftest import free_port


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_lab_serves_the_course(root, tmp_path):
    port, token = free_port(), secrets.token_hex(16)
    # no --allow-root here: as root (CI, containers) `make lab` must add it by itself
    lab_args = f"--ServerApp.token={token} --ServerApp.ip=127.0.0.1 --ServerApp.open_browser=False"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt"), "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg")}
    env.pop("DISPLAY", None)
    log = open(tmp_path / "lab.log", "w+")
    proc = subprocess.Popen(["make", "-s", "lab", f"PORT={port}", f"LAB_ARGS={lab_args}"], cwd=root, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and url is None:
            time.sleep(0.5)
            assert proc.poll() is None, f"make lab exited early:\n{(tmp_path / 'lab.log').read_text()[-3000:]}"
            m = re.search(rf"http://127\.0\.0\.1:{port}/lab\S*", (tmp_path / "lab.log").read_text())
            url = m.group(0) if m else None
        assert url, f"no URL printed within 120 s:\n{(tmp_path / 'lab.log').read_text()[-3000:]}"
        # the URL is printed a moment before the server accepts connections (seen: refused 2 ms after)
        status = None
        while status is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=10) as r:
                    status = r.status
            except urllib.error.URLError:
                assert time.monotonic() < deadline and proc.poll() is None, (
                    f"the printed URL never answered:\n{(tmp_path / 'lab.log').read_text()[-3000:]}")
                time.sleep(0.25)
        assert status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents/notebooks?token={token}", timeout=10) as r:
            assert r.status == 200 and b"notebook" in r.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/?token={token}", timeout=10) as r:
            assert r.status == 200 and b"JupyterLab" in r.read()
            assert r.geturl().split("?")[0].endswith("/lab/tree/notebooks/00_welcome.ipynb")  # opens on lesson 00
        # JupyterLab asks "get notified about official Jupyter news?" while fetchNews is "none", its
        # default; the course's overrides.d (scripts/lab-overrides.json) makes the default "false"
        settings = f"http://127.0.0.1:{port}/lab/api/settings/@jupyterlab/apputils-extension:notification?token={token}"
        with urllib.request.urlopen(settings, timeout=10) as r:
            plugin = json.loads(r.read())
        defaults = {k: v.get("default") for k, v in plugin["schema"]["properties"].items()}
        assert defaults["fetchNews"] == "false" and defaults["checkForUpdates"] is False, defaults
        assert "fetchNews" not in plugin["settings"], plugin["settings"]  # the user's own choice would still win
        log_text = (tmp_path / "lab.log").read_text()
        if os.geteuid() == 0:
            assert "running as root: JupyterLab gets --allow-root" in log_text
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def _lab_command(root, *prefix: str, args: tuple[str, ...] = ()) -> str:
    """The `jupyter lab` line `make lab` would run (make -n: printed, nothing started)."""
    r = subprocess.run([*prefix, "make", "-n", "-s", "lab", *args], cwd=root, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return next(line for line in r.stdout.replace("\\\n", " ").splitlines() if "jupyter lab" in line)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_lab_passes_allow_root_only_as_root(root):
    as_me = _lab_command(root)
    assert ("--allow-root" in as_me) == (os.geteuid() == 0), as_me
    assert "--allow-root" not in _lab_command(root, args=("ALLOW_ROOT=",))  # the README's override
    if os.geteuid() == 0:  # and as an ordinary user, where we can become one
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("setpriv (util-linux) is missing: cannot run make as another user")
        assert "--allow-root" not in _lab_command(root, setpriv, "--reuid=65534", "--regid=65534", "--clear-groups")
