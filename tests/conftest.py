"""Shared test set-up: fast mode for notebooks, a headless plot backend, repo paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"

os.environ.setdefault("LLMLAB_FAST", "1")  # notebook kernels inherit this: short training cells
os.environ.setdefault("LLMLAB_DEVICE", "cpu")
# Two pytest workers on two cores: one torch thread each (kernels inherit it), or they thrash.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config):
    import matplotlib

    matplotlib.use("Agg")  # in this process only; notebook kernels keep the inline backend


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def shakespeare_path() -> Path:
    """The development copy of Tiny Shakespeare (../shared/data), or skip where it is absent."""
    p = Path(os.environ.get("LLMLAB_DATA_DIR", SHARED_DATA)) / "tinyshakespeare.txt"
    if not p.is_file():
        pytest.skip("Tiny Shakespeare development copy not found (../shared/data)")
    return p
