"""Choosing where tensors live: CUDA, Apple's MPS, or the CPU.

The device is a function, never a module-level constant, so a notebook, a test and a
training run can each ask for what they need (and `LLMLAB_DEVICE` can override it).
"""

from __future__ import annotations

import functools
import os
import random
import time
import warnings
from dataclasses import dataclass

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
    """True when bf16 autocast *runs* on this device (whether it is fast: `bf16_speed`)."""
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


# bf16 counts as fast when its matmul is no more than 1.25x the float32 time. The two cases this
# separates are far apart: CPUs and GPUs with bf16 matrix units (AMX, AVX-512-BF16, tensor cores)
# run it 2-5x *faster* than float32; CPUs without them (AVX2 only) emulate it, 10-100x slower.
BF16_FAST_AT = 0.8  # minimum speed-up (fp32 time / bf16 time)
BF16_PROBE_SIZE = 256  # n of the n x n x n probe matmul: big enough for the matrix units, ~0.3 ms in fp32


@dataclass(frozen=True)
class Bf16Speed:
    """One side-by-side timing, on one device, of the same matmul in float32 and under bf16 autocast."""

    fp32_ms: float
    bf16_ms: float
    size: int = BF16_PROBE_SIZE
    source: str = "measured"  # or "LLMLAB_BF16_SPEEDUP" when set by hand

    @property
    def speedup(self) -> float:
        return self.fp32_ms / self.bf16_ms

    @property
    def fast(self) -> bool:
        return self.speedup >= BF16_FAST_AT

    def describe(self) -> str:
        """E.g. 'fast here: 3.1x float32's speed (256^3 matmul: 0.10 ms vs 0.31 ms in fp32, measured)'."""
        ratio = f"{self.speedup:.2f}x float32's speed" if self.speedup >= 1 else f"{1 / self.speedup:.1f}x slower than float32"
        how = (f"{self.size}^3 matmul: {self.bf16_ms:.3g} ms vs {self.fp32_ms:.3g} ms in fp32, {self.source}"
               if self.source == "measured" else f"set by {self.source}")
        return f"{'fast' if self.fast else 'slow'} here: {ratio} ({how})"


def measure_bf16(device: torch.device, size: int = BF16_PROBE_SIZE, reps: int = 5) -> Bf16Speed:
    """Time an n^3 matmul in float32 and under bf16 autocast (the path training takes: float32
    inputs cast on the fly), interleaved, keeping each one's fastest run (the least disturbed by
    other work on the machine). About 10 ms where bf16 is fast, up to ~0.3 s where it is emulated."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)

    def once(dtype: torch.dtype | None) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        if dtype is None:
            a @ b
        else:
            with torch.autocast(device.type, dtype=dtype):
                a @ b
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t

    once(None), once(torch.bfloat16)  # warm-up: first calls pick kernels and allocate
    fp32, bf16 = [], []
    for _ in range(reps):
        fp32.append(once(None))
        bf16.append(once(torch.bfloat16))
    return Bf16Speed(fp32_ms=1000 * min(fp32), bf16_ms=1000 * min(bf16), size=size)


@functools.lru_cache(maxsize=None)
def _bf16_speed(device: torch.device) -> Bf16Speed | None:
    if not supports_bf16(device):
        return None
    forced = os.environ.get("LLMLAB_BF16_SPEEDUP", "").strip()
    if forced:
        try:
            ratio = float(forced)
            if ratio <= 0:
                raise ValueError
        except ValueError:
            raise ValueError(f"LLMLAB_BF16_SPEEDUP={forced!r}: expected a positive number, the float32 time "
                             f"divided by the bf16 time (e.g. 3.0 for fast bf16, 0.07 for emulated bf16)") from None
        return Bf16Speed(fp32_ms=1.0, bf16_ms=1.0 / ratio, source="LLMLAB_BF16_SPEEDUP")
    return measure_bf16(device)


def bf16_speed(device: torch.device | str) -> Bf16Speed | None:
    """How bf16 autocast compares with float32 on `device` (measured once per process and device);
    None where bf16 does not run at all. `LLMLAB_BF16_SPEEDUP=0.07` sets the ratio instead."""
    return _bf16_speed(torch.device(device))


def bf16_is_fast(device: torch.device | str) -> bool:
    """True when bf16 autocast runs on `device` and is not slower than float32 there."""
    speed = bf16_speed(device)
    return speed is not None and speed.fast


_warned_slow_bf16: set[torch.device] = set()


def warn_if_bf16_slow(device: torch.device) -> None:
    """One warning per process and device, with the measurement, when bf16 was asked for where it is slow."""
    speed = bf16_speed(device)
    if speed is None or speed.fast or device in _warned_slow_bf16:
        return
    _warned_slow_bf16.add(device)
    unit = "CPU" if device.type == "cpu" else "GPU"
    warnings.warn(f"dtype='bf16' on {device}: bf16 autocast is {speed.describe()}; this {unit} has no bf16 "
                  f"matrix units, so training will be slower, not faster. Use dtype='fp32' or 'auto'.",
                  RuntimeWarning, stacklevel=3)


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
