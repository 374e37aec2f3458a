"""The benchmark scripts' arithmetic (not their timings: benchmarks are not tests)."""

from __future__ import annotations

import importlib.util

import pytest

from conftest import ROOT


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_mfu_never_exceeds_100_percent():
    tt = _load("train_throughput")
    emulated = {"fp32": 96.0, "bf16": 1.0}  # an AVX2-only CPU (issue 9): bf16 emulated
    # the old report divided a bf16 step's 4.77 GFLOP/s by the bf16 peak alone: "MFU 477 %"
    assert tt.mfu(4.77, "bf16", emulated) == pytest.approx(4.77 / 96.0)
    assert tt.mfu(48.0, "fp32", emulated) == pytest.approx(0.5)
    amx = {"fp32": 181.0, "bf16": 424.0}
    assert tt.mfu(106.0, "bf16", amx) == pytest.approx(106.0 / 424.0)
    assert tt.mfu(200.0, "fp32", amx) is None  # beat the peak: the peak was mis-measured, not shown as 110 %


def test_matmul_peak_is_a_rate_in_both_precisions():
    tt = _load("train_throughput")
    for dtype in ("fp32", "bf16"):
        assert tt.matmul_peak(dtype, sizes=(64, 128), reps=2) > 0
