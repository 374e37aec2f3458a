"""Device selection, `llmlab doctor` and the CLI's error handling."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from llmlab.device import fast_mode, get_device, seed_everything, supports_bf16


def test_get_device_auto_and_by_name(monkeypatch):
    monkeypatch.delenv("LLMLAB_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert get_device().type == expected
    assert get_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("LLMLAB_DEVICE", "cpu")
    assert get_device() == torch.device("cpu")


def test_get_device_errors_name_the_value():
    with pytest.raises(ValueError, match="device='tpu'"):
        get_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="device='cuda:0'.*torch.cuda.is_available"):
            get_device("cuda:0")


def test_seed_everything_is_reproducible():
    g1 = seed_everything(7)
    a = torch.randn(3), torch.randn(3, generator=g1)
    g2 = seed_everything(7)
    b = torch.randn(3), torch.randn(3, generator=g2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_bf16_probe_on_cpu_matches_autocast():
    with torch.autocast("cpu", dtype=torch.bfloat16):
        works = (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    assert supports_bf16(torch.device("cpu")) == works


def test_fast_mode(monkeypatch):
    for value, expected in [("1", True), ("0", False), ("", False), ("true", True)]:
        monkeypatch.setenv("LLMLAB_FAST", value)
        assert fast_mode() is expected


def _llmlab(*args, **kw):
    return subprocess.run([sys.executable, "-m", "llmlab", *args], capture_output=True, text=True, timeout=300, **kw)


def test_doctor_reports_and_exits_zero_here():
    r = _llmlab("doctor")
    assert r.returncode == 0, r.stderr
    for key in ("python", "torch", "device", "bf16 autocast", "torch.compile", "jupyterlab", "ipywidgets", "cache folder"):
        assert key in r.stdout


def test_doctor_exits_nonzero_naming_a_missing_package(tmp_path):
    # shadow einops with a module that fails to import, in a child process only
    (tmp_path / "einops.py").write_text("raise ImportError('simulated: not installed')\n")
    r = subprocess.run([sys.executable, "-c", "import sys; from llmlab.cli import main; sys.exit(main(['doctor', '--no-compile']))"],
                       capture_output=True, text=True, timeout=120, env={**__import__("os").environ, "PYTHONPATH": str(tmp_path)})
    assert r.returncode == 1
    assert "einops is missing" in r.stderr


def test_cli_lists_exercises_and_rejects_unknown_commands():
    r = _llmlab("exercises")
    assert r.returncode == 0 and "attention.softmax" in r.stdout
    r = _llmlab("no-such-command")
    assert r.returncode == 2 and "invalid choice" in r.stderr
