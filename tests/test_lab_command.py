"""The README's first command, `make lab`, really opens the course: start it headless on
loopback, fetch its URL, stop it."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.request

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_lab_serves_the_course(root, tmp_path):
    port, token = _free_port(), secrets.token_hex(16)
    lab_args = f"--ServerApp.token={token} --ServerApp.ip=127.0.0.1 --ServerApp.open_browser=False"
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        lab_args += " --allow-root"  # JupyterLab refuses to run as root without it
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
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=10) as r:
            assert r.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents/notebooks?token={token}", timeout=10) as r:
            assert r.status == 200 and b"notebook" in r.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/?token={token}", timeout=10) as r:
            assert r.status == 200 and b"JupyterLab" in r.read()
            assert r.geturl().split("?")[0].endswith("/lab/tree/notebooks/00_welcome.ipynb")  # opens on lesson 00
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
