"""Choosing where tensors live: CUDA, Apple's MPS, or the CPU.

The device is a function, never a module-level constant, so a notebook, a test and a
training run can each ask for what they need (and `LLMLAB_DEVICE` can override it).
"""

from __future__ import annotations

import os
import random

import torch

DEVICES = ("cuda", "mps", "cpu")


def get_device(name: str | None = None) -> torch.device:
    """Return the best available device, or the one named.

    >>> get_device("cpu")
    device(type='cpu')

    `name` may be None/"auto" (cuda > mps > cpu), or "cuda", "cuda:1", "mps", "cpu".
    The environment variable LLMLAB_DEVICE is used when `name` is None.
    """
    name = name or os.environ.get("LLMLAB_DEVICE") or "auto"
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = name.split(":")[0]
    if kind not in DEVICES:
        raise ValueError(f"device={name!r}: expected 'auto' or one of {', '.join(DEVICES)} (e.g. 'cuda:0')")
    if kind == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={name!r} was asked for, but torch.cuda.is_available() is False here; use 'auto' or 'cpu'")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(f"device={name!r} was asked for, but MPS is not available here; use 'auto' or 'cpu'")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    """A human-readable name: the GPU's model, or the CPU's architecture."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple GPU (MPS)"
    import platform

    return platform.processor() or platform.machine() or "cpu"


def supports_bf16(device: torch.device) -> bool:
    """True when bf16 autocast is usable (and worthwhile) on this device."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                a = torch.randn(4, 4)
                return (a @ a).dtype == torch.bfloat16
        except Exception:  # pragma: no cover - very old CPUs / builds
            return False
    return False


def seed_everything(seed: int = 1337) -> torch.Generator:
    """Seed Python, torch (and CUDA) and return a CPU generator with the same seed."""
    random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return torch.Generator().manual_seed(seed)


def fast_mode() -> bool:
    """True when LLMLAB_FAST=1 (set by the test suite): notebooks shrink their training runs."""
    return os.environ.get("LLMLAB_FAST", "") not in ("", "0", "false", "False")
