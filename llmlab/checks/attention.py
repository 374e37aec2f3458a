"""Checks for chapter 03, attention: softmax, causal_mask, scaled_dot_product_attention,
MultiHeadAttention. Inputs have every dimension different (B=2, H=3, Tq=4, Tk=6, D=8,
Dv=5) so a swapped axis or a scale by the wrong width cannot pass by coincidence."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from llmlab.checks.core import Exercise, Mistake, Probe, equal, keeps_input, randn, register
from llmlab.checks.modules import load_weights
from llmlab.nn import attention as ref


# ----------------------------------------------------------------------------- softmax
def _stable_exp(x, dim):
    """exp(x - max) with the max taken along `dim`: the right first half of a softmax."""
    return (x - x.amax(dim=dim, keepdim=True)).exp()


def _softmax_sum(fn, x, dim):
    return fn(x, dim=dim).sum(dim=dim)


register(Exercise(
    id="attention.softmax",
    signature="softmax(x: Tensor, dim: int = -1) -> Tensor",
    reference=ref.softmax,
    points=2,
    probes=[
        Probe("matches torch.softmax along the last axis", lambda g: (randn(g, 3, 4, 5), -1)),
        Probe("respects dim=1", lambda g: (randn(g, 3, 4, 5), 1)),
        Probe("respects dim=0", lambda g: (randn(g, 3, 4, 5), 0)),
        Probe("each row sums to one", lambda g: (randn(g, 3, 4, 5), -1), run=_softmax_sum),
        Probe("stable for large logits (1000s)", lambda g: (randn(g, 2, 7, scale=300.0) + 1000.0, -1),
              hint="exp(1000) overflows to inf; subtract each row's maximum before exp(), it cancels in the ratio"),
        Probe("stable for very negative logits", lambda g: (randn(g, 2, 7, scale=10.0) - 1000.0, -1),
              hint="exp(-1000) underflows to 0 and 0/0 is nan; subtract each row's maximum first"),
        Probe("masked entries (-inf) get zero weight", lambda g: (randn(g, 4, 6).masked_fill(ref.causal_mask(6)[:4, :] == 0, float("-inf")), -1)),
        Probe("leaves its input unchanged", lambda g: (randn(g, 3, 5), -1), **keeps_input("work on a new tensor (x - m, not x -= m)")),
    ],
    mistakes=[
        Mistake("you normalised over the wrong axis: sum over `dim` (with keepdim=True), not over axis 0",
                lambda x, dim=-1: x.exp() / x.exp().sum(dim=0, keepdim=True)),
        Mistake("you normalised over the wrong axis: sum over `dim` (with keepdim=True), not over axis 0",
                lambda x, dim=-1: _stable_exp(x, dim) / _stable_exp(x, dim).sum(dim=0, keepdim=True)),
        Mistake("your function ignores `dim` and always uses the last axis",
                lambda x, dim=-1: F.softmax(x, dim=-1)),
        Mistake("exp() overflowed: subtract the maximum of each row (x - x.amax(dim, keepdim=True)) before exponentiating",
                lambda x, dim=-1: x.exp() / x.exp().sum(dim=dim, keepdim=True)),
        Mistake("you subtracted the global maximum of the whole tensor; use each row's maximum (amax over `dim`)",
                lambda x, dim=-1: (x - x.max()).exp() / (x - x.max()).exp().sum(dim=dim, keepdim=True)),
    ],
))

# ----------------------------------------------------------------------------- causal mask
def _mask_hint_inverted(T):
    return torch.ones(T, T, dtype=torch.bool).triu()


register(Exercise(
    id="attention.causal_mask",
    signature="causal_mask(T: int) -> BoolTensor[T, T]  # True where query i may attend to key j (j <= i)",
    reference=lambda T: ref.causal_mask(T),
    probes=[
        Probe("T=5", lambda g: (5,), compare=equal("mask")),
        Probe("T=1 (a single token sees itself)", lambda g: (1,), compare=equal("mask")),
        Probe("T=9", lambda g: (9,), compare=equal("mask")),
    ],
    mistakes=[
        Mistake("your mask is inverted: True must mean 'may attend', i.e. j <= i (lower triangle, torch.tril)", _mask_hint_inverted),
        Mistake("each token must be able to attend to itself: keep the diagonal (torch.tril(..., diagonal=0))",
                lambda T: torch.ones(T, T, dtype=torch.bool).tril(-1)),
        Mistake("return a BoolTensor (dtype=torch.bool), not 0/1 numbers", lambda T: torch.ones(T, T).tril()),
        Mistake("you marked the positions to *block* (j > i); here True means 'may attend' (j <= i): use torch.tril, or negate your mask",
                lambda T: torch.ones(T, T, dtype=torch.bool).triu(1)),
    ],
))

# ----------------------------------------------------------------------------- scaled dot-product attention
def _qkv(g, B=2, H=3, Tq=4, Tk=6, D=8, Dv=5, scale=1.0):
    return randn(g, B, H, Tq, D, scale=scale), randn(g, B, H, Tk, D, scale=scale), randn(g, B, H, Tk, Dv)


def _random_mask(g, Tq, Tk):
    m = torch.rand(Tq, Tk, generator=g) < 0.6
    m[:, 0] = True  # no query may be left with nothing to attend to
    return m


def _causal_change_future(fn, q, k, v, mask):
    """Outputs for the first 3 queries, before and after scrambling keys/values 3.. (the future)."""
    out1 = fn(q, k, v, mask)
    k2, v2 = k.clone(), v.clone()
    k2[..., 3:, :] = k2[..., 3:, :] * -2 + 1
    v2[..., 3:, :] = v2[..., 3:, :] * 5 - 3
    out2 = fn(q, k2, v2, mask)
    return out2[..., :3, :] - out1[..., :3, :]


def _sdpa_wrong(scale="sqrt_d", mask_mode="before", axis=-1):
    def attn(q, k, v, mask=None):
        d = {"sqrt_d": math.sqrt(q.size(-1)), "none": 1.0, "d": q.size(-1), "sqrt_dv": math.sqrt(v.size(-1))}[scale]
        s = q @ k.transpose(-2, -1) / d
        if mask is not None and mask_mode == "before":
            s = s.masked_fill(~mask, float("-inf"))
        if mask is not None and mask_mode == "inverted":
            s = s.masked_fill(mask, float("-inf"))
        if mask is not None and mask_mode == "zero":
            s = s.masked_fill(~mask, 0.0)
        w = F.softmax(s, dim=axis)
        if mask is not None and mask_mode == "after":
            w = w * mask
        return w @ v
    return attn


register(Exercise(
    id="attention.scaled_dot_product_attention",
    signature="scaled_dot_product_attention(q[..., Tq, D], k[..., Tk, D], v[..., Tk, Dv], mask=None) -> [..., Tq, Dv]",
    reference=lambda q, k, v, mask=None: ref.scaled_dot_product_attention(q, k, v, mask),
    points=3,
    probes=[
        Probe("no mask, Tq != Tk, D != Dv", lambda g: (*_qkv(g), None)),
        Probe("causal mask", lambda g: (*_qkv(g, Tq=6), ref.causal_mask(6))),
        Probe("an arbitrary boolean mask broadcast over batch and heads", lambda g: (*_qkv(g), _random_mask(g, 4, 6))),
        Probe("no dependence on masked (future) keys and values", lambda g: (*_qkv(g, Tq=6), ref.causal_mask(6)), run=_causal_change_future,
              hint="masked positions must get exactly zero weight: fill their scores with -inf *before* the softmax"),
        Probe("large scores stay finite", lambda g: (*_qkv(g, scale=40.0), ref.causal_mask(6)[-4:])),
        Probe("works without batch and head axes (q[T, D])", lambda g: (randn(g, 4, 8), randn(g, 6, 8), randn(g, 6, 5), None)),
    ],
    mistakes=[
        Mistake("scores must be divided by sqrt(D), D = q.size(-1); you did not scale them", _sdpa_wrong(scale="none")),
        Mistake("divide by sqrt(D), not by D", _sdpa_wrong(scale="d")),
        Mistake("the scale uses the query/key width D = q.size(-1), not the value width v.size(-1)", _sdpa_wrong(scale="sqrt_dv")),
        Mistake("your mask is applied the wrong way round: True means 'may attend', so fill scores where mask is False (~mask) with -inf",
                _sdpa_wrong(mask_mode="inverted")),
        Mistake("you masked after the softmax, so the remaining weights no longer sum to 1; mask the scores with -inf before softmax",
                _sdpa_wrong(mask_mode="after")),
        Mistake("filling masked scores with 0 still gives them weight (exp(0) = 1); use float('-inf')", _sdpa_wrong(mask_mode="zero")),
        Mistake("softmax must run over the keys (the last axis, dim=-1), so each query's weights sum to 1", _sdpa_wrong(axis=-2)),
        Mistake("the mask was ignored", _sdpa_wrong(mask_mode="ignored")),
    ],
))

# ----------------------------------------------------------------------------- multi-head attention
def _mha_weights(g, C):
    return (randn(g, 3 * C, C, scale=C ** -0.5), randn(g, 3 * C, scale=0.1), randn(g, C, C, scale=C ** -0.5), randn(g, C, scale=0.1))


def _load(m, w_attn, b_attn, w_proj, b_proj):
    names = ("c_attn.weight", "c_attn.bias", "c_proj.weight", "c_proj.bias")
    return load_weights(m, dict(zip(names, (w_attn, b_attn, w_proj, b_proj))), "MultiHeadAttention", strict=False,
                        naming="it needs c_attn = nn.Linear(C, 3C) and c_proj = nn.Linear(C, C), with biases")


def _mha_run(cls, C, H, causal, x, *w):
    m = _load(cls(C, H, causal=causal), *w).eval()
    with torch.no_grad():
        return m(x)


def _mha_inputs(C, H, causal, B=2, T=5):
    return lambda g: (C, H, causal, randn(g, B, T, C), *_mha_weights(g, C))


def _mha_future(cls, C, H, causal, x, *w):
    m = _load(cls(C, H, causal=causal), *w).eval()
    x2 = x.clone()
    x2[:, 3:] = randn(torch.Generator().manual_seed(1), *x2[:, 3:].shape)
    with torch.no_grad():
        return m(x2)[:, :3] - m(x)[:, :3]


def _mha_refuses(cls, C, H):
    """What building the module with a width its heads cannot split gives: the task asks for a ValueError."""
    try:
        cls(C, H, causal=True)
    except ValueError:
        return "ValueError"
    except Exception as e:  # noqa: BLE001 - named in the feedback
        return type(e).__name__
    return "no error"


def _mha_variant(order="qkv", split="bthd", proj=True, causal_ok=True, scale=True, merge="bthd", always_causal=False, scale_by="D", axis=-1):
    class WrongMHA(torch.nn.Module):
        def __init__(self, d_model, n_heads, causal=True):
            super().__init__()
            if d_model % n_heads:  # each variant is wrong in one way only
                raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
            self.H, self.causal = n_heads, causal
            self.c_attn = torch.nn.Linear(d_model, 3 * d_model)
            self.c_proj = torch.nn.Linear(d_model, d_model)

        def forward(self, x):
            B, T, C = x.shape
            H, D = self.H, C // self.H
            a, b, c = self.c_attn(x).split(C, dim=2)
            q, k, v = {"qkv": (a, b, c), "kqv": (b, a, c), "vkq": (c, b, a)}[order]
            if split == "bthd":
                q, k, v = (t.view(B, T, H, D).transpose(1, 2) for t in (q, k, v))
            else:  # reshaping straight to (B, H, T, D) scrambles tokens and heads
                q, k, v = (t.reshape(B, H, T, D) for t in (q, k, v))
            s = q @ k.transpose(-2, -1) / (math.sqrt(D if scale_by == "D" else C) if scale else 1.0)
            if (self.causal or always_causal) and causal_ok:
                s = s.masked_fill(~ref.causal_mask(T), float("-inf"))
            y = F.softmax(s, dim=axis) @ v  # (B, H, T, D)
            y = y.transpose(1, 2).reshape(B, T, C) if merge == "bthd" else y.reshape(B, T, C)
            return self.c_proj(y) if proj else y
    return WrongMHA


register(Exercise(
    id="attention.MultiHeadAttention",
    signature="MultiHeadAttention(d_model, n_heads, causal=True); forward(x[B, T, C]) -> [B, T, C]; submodules c_attn = Linear(C, 3C), c_proj = Linear(C, C)",
    reference=ref.MultiHeadAttention,
    kind="class",
    points=4,
    probes=[
        Probe("causal, C=12 with 3 heads", _mha_inputs(12, 3, True), run=_mha_run),
        Probe("not causal (causal=False)", _mha_inputs(12, 3, False), run=_mha_run),
        Probe("another head count: C=12 with 2 heads", _mha_inputs(12, 2, True, B=3, T=4), run=_mha_run),
        Probe("earlier outputs ignore later tokens (causality)", _mha_inputs(12, 3, True), run=_mha_future,
              hint="with causal=True each position may only attend to itself and earlier positions"),
        Probe("d_model=10 with n_heads=3 raises a ValueError", lambda g: (10, 3), run=_mha_refuses, compare=equal("what building it raised"),
              hint="check `d_model % n_heads` in __init__ and raise ValueError: each head needs d_model / n_heads channels"),
    ],
    mistakes=[
        Mistake("q, k and v come out of c_attn stacked in that order: q, k, v = c_attn(x).split(C, dim=2)", _mha_variant(order="kqv")),
        Mistake("q, k and v come out of c_attn stacked in that order: q, k, v = c_attn(x).split(C, dim=2)", _mha_variant(order="vkq")),
        Mistake("split heads with .view(B, T, H, D).transpose(1, 2); reshaping straight to (B, H, T, D) mixes tokens of different heads",
                _mha_variant(split="bhtd")),
        Mistake("merge heads with y.transpose(1, 2).reshape(B, T, C); reshaping (B, H, T, D) directly scrambles positions", _mha_variant(merge="bhtd")),
        Mistake("the concatenated heads must go through the output projection c_proj", _mha_variant(proj=False)),
        Mistake("apply the causal mask when causal=True", _mha_variant(causal_ok=False)),
        Mistake("scale the scores by 1/sqrt(D), with D = C / H the head width", _mha_variant(scale=False)),
        Mistake("scale by the head width D = C / H, not the model width C: each head's dot products sum over D channels", _mha_variant(scale_by="C")),
        Mistake("with causal=False every token may attend to every other; your module masks the future regardless", _mha_variant(always_causal=True)),
        Mistake("each query's weights must sum to 1 over the keys: softmax over the last axis (dim=-1)", _mha_variant(axis=-2)),
    ],
))
