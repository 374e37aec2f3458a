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


# --------------------------------------------------------------------------- bf16: does it run, and is it fast?

@pytest.fixture
def fresh_bf16(monkeypatch):
    """bf16_speed measures once per process: forget it (and the warn-once record) around a test."""
    import llmlab.device as device

    device._bf16_speed.cache_clear()
    device._warned_slow_bf16.clear()
    yield monkeypatch
    device._bf16_speed.cache_clear()
    device._warned_slow_bf16.clear()


def test_bf16_speed_says_fast_or_slow_with_the_ratio():
    from llmlab.device import BF16_FAST_AT, Bf16Speed

    amx = Bf16Speed(fp32_ms=0.19, bf16_ms=0.07)  # 256^3 on a CPU with AMX, measured 2026-12-01
    emulated = Bf16Speed(fp32_ms=70.0, bf16_ms=1011.0)  # an AVX2-only EPYC's training step (issue 9)
    assert amx.fast and amx.describe().startswith("fast here: 2.71x float32's speed")
    assert not emulated.fast and emulated.describe().startswith("slow here: 14.4x slower than float32")
    # the boundary: fast exactly from BF16_FAST_AT on
    assert Bf16Speed(1.0, 1.0 / BF16_FAST_AT).fast and not Bf16Speed(1.0, 1.01 / BF16_FAST_AT).fast


def test_measure_bf16_times_both_paths_on_this_cpu():
    from llmlab.device import measure_bf16

    s = measure_bf16(torch.device("cpu"), size=64, reps=2)
    assert s.fp32_ms > 0 and s.bf16_ms > 0 and s.size == 64 and s.source == "measured"


def test_doctor_reports_bf16_fast_and_slow_branches():
    from llmlab import doctor
    from llmlab.device import Bf16Speed

    def bf16_row(speed):
        rows, problems = doctor.report(check_compile=False, bf16=speed)
        return dict(rows)["bf16 autocast"]

    fast = bf16_row(Bf16Speed(0.3, 0.1))
    assert fast.startswith("yes, fast here: 3.00x float32's speed") and "warns" not in fast
    slow = bf16_row(Bf16Speed(70.0, 1011.0))
    assert slow.startswith("yes, but slow here: 14.4x slower than float32"), slow
    assert "trains in fp32 here" in slow
    assert doctor.bf16_finding(False, None).startswith("no")


def test_doctor_cli_takes_an_injected_ratio_and_rejects_a_bad_one():
    env = {**__import__("os").environ, "LLMLAB_BF16_SPEEDUP": "0.07"}
    r = _llmlab("doctor", "--no-compile", env=env)
    assert r.returncode == 0, r.stderr
    assert "yes, but slow here: 14.3x slower than float32 (set by LLMLAB_BF16_SPEEDUP)" in r.stdout
    r = _llmlab("doctor", "--no-compile", env={**env, "LLMLAB_BF16_SPEEDUP": "fast"})
    assert r.returncode != 0 and "LLMLAB_BF16_SPEEDUP='fast': expected a positive number" in r.stderr


def test_asking_for_bf16_where_it_is_slow_warns_once_with_the_measurement(fresh_bf16):
    import warnings

    from llmlab.train.optim import resolve_amp_dtype

    cpu = torch.device("cpu")
    if not supports_bf16(cpu):
        pytest.skip("bf16 autocast does not run on this CPU at all")
    fresh_bf16.setenv("LLMLAB_BF16_SPEEDUP", "0.07")
    with pytest.warns(RuntimeWarning, match=r"dtype='bf16' on cpu: bf16 autocast is slow here: 14.3x slower"):
        assert resolve_amp_dtype("bf16", cpu) == torch.bfloat16  # asked for: still given, with the warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second request in the same process says nothing
        assert resolve_amp_dtype("bf16", cpu) == torch.bfloat16
        assert resolve_amp_dtype("auto", cpu) is None  # auto never picks bf16 on a CPU


def test_asking_for_bf16_where_it_is_fast_says_nothing(fresh_bf16):
    import warnings

    from llmlab.train.optim import resolve_amp_dtype

    cpu = torch.device("cpu")
    if not supports_bf16(cpu):
        pytest.skip("bf16 autocast does not run on this CPU at all")
    fresh_bf16.setenv("LLMLAB_BF16_SPEEDUP", "3")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_amp_dtype("bf16", cpu) == torch.bfloat16
