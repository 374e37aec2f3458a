"""Lesson 07 where bf16 is slow (a CPU that emulates it, issue 9): the timed bf16 row is skipped with
the reason, and the full training run uses fp32. The slow CPU is simulated with LLMLAB_BF16_SPEEDUP,
the ratio `llmlab.device.bf16_speed` would otherwise measure; the notebook runs in fast mode."""

from __future__ import annotations

import os
import re

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import ROOT

pytestmark = pytest.mark.slow


def _outputs(speedup: str) -> list[str]:
    nb = nbformat.read(str(ROOT / "notebooks" / "07_training.ipynb"), as_version=4)
    old = {k: os.environ.get(k) for k in ("LLMLAB_BF16_SPEEDUP", "LLMLAB_FAST")}
    os.environ.update(LLMLAB_BF16_SPEEDUP=speedup, LLMLAB_FAST="1")  # the kernel inherits them
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return ["".join(o.get("text", "") for o in c.get("outputs", []) if o.get("output_type") == "stream")
            for c in nb.cells if c.cell_type == "code"]


def test_slow_bf16_skips_the_row_and_trains_in_fp32():
    text = "\n".join(_outputs("0.07"))
    assert "bf16 on this CPU: slow here: 14.3x slower than float32 (set by LLMLAB_BF16_SPEEDUP)" in text
    assert "skipped the timed '+ bf16 autocast' row" in text
    assert not re.search(r"^\+ bf16 autocast\s+\d", text, re.M), text  # no timed row, in the table neither
    assert re.search(r"^\+ fused attention \(SDPA\)\s+\d", text, re.M)  # the rows before it are there
    assert "loss in float32" in text  # the precision comparison itself still runs
    assert "20 steps (fp32) in" in text  # section 11 trained in float32


def test_fast_bf16_times_the_row_and_trains_in_bf16():
    text = "\n".join(_outputs("3"))
    assert "bf16 on this CPU: fast here: 3.00x float32's speed (set by LLMLAB_BF16_SPEEDUP)" in text
    assert re.search(r"^\+ bf16 autocast\s+\d", text, re.M) and "skipped the timed" not in text
    assert "20 steps (bf16) in" in text
