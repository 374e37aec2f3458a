"""Chapter 04's checks: each passes the reference and the code of solutions/04_positional.ipynb,
and rejects a bank of wrong implementations written the way learners write them (not
copies of the checks' own `Mistake`s), with the right hint where the mistake is a known one.

Bank sizes: sinusoidal_encoding 9, apply_rope 11 (plus every `Mistake` of
llmlab/checks/positional.py, each rejected with its own hint).
"""

from __future__ import annotations

import math

import pytest
import torch

from _checks import assert_chapter, rejects
from llmlab.checks import check, load_all

load_all()
IDS = ["positional.sinusoidal_encoding", "positional.apply_rope"]


def test_chapter_contract():
    assert_chapter(IDS, "04_positional.ipynb")


# ----------------------------------------------------------------------------- pass


def test_other_correct_formulations_pass():
    """exp/log instead of pow, float64, a Python loop: the tolerance admits every right answer."""
    def sin_exp_log(T, d, base=10000.0):
        div = torch.exp(torch.arange(0, d, 2, dtype=torch.float64) * (-math.log(base) / d))
        p = torch.arange(T, dtype=torch.float64)[:, None]
        pe = torch.zeros(T, d, dtype=torch.float64)
        pe[:, 0::2], pe[:, 1::2] = torch.sin(p * div), torch.cos(p * div)
        return pe

    def sin_loop(T, d, base=10000.0):
        return torch.tensor([[math.sin(p / base ** (c / d)) if c % 2 == 0 else math.cos(p / base ** ((c - 1) / d)) for c in range(d)] for p in range(T)])

    def rope_complex(x, base=10000.0):
        T, D = x.shape[-2:]
        z = torch.view_as_complex(x.float().reshape(*x.shape[:-1], D // 2, 2).contiguous())
        theta = torch.outer(torch.arange(T).float(), 1.0 / base ** (torch.arange(0, D, 2).float() / D))
        return torch.view_as_real(z * torch.polar(torch.ones_like(theta), theta)).reshape(x.shape)

    for f in (sin_exp_log, sin_loop):
        assert check("positional.sinusoidal_encoding", f, quiet=True)
    assert check("positional.apply_rope", rope_complex, quiet=True)


# ----------------------------------------------------------------------------- sinusoidal: 9 wrong versions
def sin_impl(first="sin", layout="interleave", base_fixed=False, start=0, index="pairs", op="div", cos_own=False, dtype_int=False):
    def sinusoidal_encoding(T, d, base=10000.0):
        b = 10000.0 if base_fixed else base
        p = torch.arange(start, T + start).unsqueeze(1).float()  # (T, 1)
        i = torch.arange(0, d, 2).float() if index == "pairs" else torch.arange(d // 2).float()  # 2i, or (wrongly) i
        div = b ** (i / d)
        a = p / div if op == "div" else p * div
        f1, f2 = (torch.sin, torch.cos) if first == "sin" else (torch.cos, torch.sin)
        if layout == "concat":
            return torch.cat([f1(a), f2(a)], dim=1)
        pe = torch.zeros(T, d, dtype=torch.long if dtype_int else torch.float32)
        pe[:, 0::2] = f1(a).to(pe.dtype)
        pe[:, 1::2] = (f2(p / b ** ((i + 1) / d)) if cos_own else f2(a)).to(pe.dtype)
        return pe
    return sinusoidal_encoding


@pytest.mark.parametrize("impl, hint", [
    (sin_impl(first="cos"), "swapped"),
    (sin_impl(layout="concat"), "concatenated"),
    (sin_impl(base_fixed=True), "ignores `base`"),
    (sin_impl(start=1), "start at 0"),
    (sin_impl(index="i"), "2i/d"),
    (sin_impl(op="mul"), "you multiplied"),
    (sin_impl(cos_own=True), "same frequency as its partner"),
    (sin_impl(dtype_int=True), "floating-point"),
    (lambda T, d, base=10000.0: torch.sin(torch.arange(T)[:, None] / base ** (torch.arange(d) / d)), None),  # sines only
])
def test_sinusoidal_bank(impl, hint):
    rejects("positional.sinusoidal_encoding", impl, hint)


# ----------------------------------------------------------------------------- RoPE: 11 wrong versions
def rope_impl(pairing="adjacent", base_fixed=False, start=0, index="pairs", sign=1, partner=True, tile="interleave", inplace=False, op="neg", scale=1.0):
    def apply_rope(x, base=10000.0):
        T, D = x.shape[-2], x.shape[-1]
        b = 10000.0 if base_fixed else base
        i = torch.arange(0, D, 2).float() if index == "pairs" else torch.arange(D // 2).float()
        freqs = b ** (-i / D) if op == "neg" else b ** (i / D)
        theta = torch.outer(torch.arange(start, start + T).float(), freqs) * sign  # (T, D/2)
        cos, sin = theta.cos(), theta.sin()
        if pairing == "half":
            x1, x2 = x[..., : D // 2], x[..., D // 2:]
            return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)
        if inplace:
            x[..., 0::2] = x[..., 0::2] * cos - x[..., 1::2] * sin
            x[..., 1::2] = x[..., 0::2] * sin + x[..., 1::2] * cos  # reads the already rotated x[2i]
            return x
        if tile == "cat":
            cos_f, sin_f = torch.cat([cos, cos], -1), torch.cat([sin, sin], -1)
        else:
            cos_f, sin_f = torch.repeat_interleave(cos, 2, -1), torch.repeat_interleave(sin, 2, -1)
        rot = torch.stack([-x[..., 1::2], x[..., 0::2]], -1).reshape(x.shape) if partner else x
        return (x * cos_f + rot * sin_f) * scale
    return apply_rope


@pytest.mark.parametrize("impl, hint", [
    (rope_impl(pairing="half"), "rotate_half"),
    (rope_impl(base_fixed=True), "ignores `base`"),
    (rope_impl(start=1), "start at 0"),
    (rope_impl(index="i"), "2i/D"),
    (rope_impl(op="pos"), "negative exponent"),
    (rope_impl(sign=-1), "wrong way"),
    (rope_impl(partner=False), "changes lengths"),
    (rope_impl(tile="cat"), "share one angle"),
    (rope_impl(inplace=True), "in place"),
    (rope_impl(scale=1 / math.sqrt(2)), "keeps its length"),  # "normalised" output: not a rotation
    (lambda x, base=10000.0: x + __import__("llmlab").positional.sinusoidal_encoding(x.shape[-2], x.shape[-1], base), None),  # added, not rotated
])
def test_rope_bank(impl, hint):
    rejects("positional.apply_rope", impl, hint)


def test_rope_that_changes_norms_is_told_so_first():
    """An unknown non-rotation fails the length property first, whose hint says how to fix it."""
    e = rejects("positional.apply_rope", rope_impl(scale=0.9), "a rotation never changes lengths")
    assert e.probe == "every pair (x[2i], x[2i+1]) keeps its length"
