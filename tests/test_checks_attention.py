"""Chapter 03's checks: each passes the reference and the code of solutions/03_attention.ipynb,
and rejects a bank of wrong implementations written the way learners write them (not
copies of the checks' own `Mistake`s), with the right hint where the mistake is a known one.

Bank sizes: softmax 6, causal_mask 5, scaled_dot_product_attention 8, MultiHeadAttention 8
(plus every `Mistake` of llmlab/checks/attention.py, each rejected with its own hint).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from _checks import assert_chapter, rejects
from llmlab.checks import check, load_all
from llmlab.nn import attention as ref

load_all()
IDS = ["attention.softmax", "attention.causal_mask", "attention.scaled_dot_product_attention", "attention.MultiHeadAttention"]


def test_chapter_contract():
    assert_chapter(IDS, "03_attention.ipynb")


# ----------------------------------------------------------------------------- softmax: 6 wrong versions
def sm_wrong_axis_stable(x, dim=-1):
    e = (x - x.amax(dim=dim, keepdim=True)).exp()
    return e / e.sum(dim=0, keepdim=True)


def sm_naive(x, dim=-1):
    return torch.exp(x) / torch.exp(x).sum(dim, keepdim=True)


def sm_global_max(x, dim=-1):
    e = torch.exp(x - x.max())
    return e / e.sum(dim=dim, keepdim=True)


def sm_last_axis(x, dim=-1):
    e = (x - x.max(-1, keepdim=True).values).exp()
    return e / e.sum(-1, keepdim=True)


def sm_in_place(x, dim=-1):
    x -= x.amax(dim=dim, keepdim=True)
    x.exp_()
    return x / x.sum(dim=dim, keepdim=True)


def sm_no_keepdim(x, dim=-1):
    e = (x - x.amax(dim=dim, keepdim=True)).exp()
    return e / e.sum(dim=dim)  # broadcasts wrongly (or crashes) without keepdim


@pytest.mark.parametrize("impl, hint", [
    (sm_wrong_axis_stable, "wrong axis"),
    (sm_naive, "subtract the maximum"),
    (sm_global_max, "global maximum"),
    (sm_last_axis, "ignores `dim`"),
    (sm_in_place, "in place"),
    (sm_no_keepdim, None),
])
def test_softmax_bank(impl, hint):
    rejects("attention.softmax", impl, hint)


# ----------------------------------------------------------------------------- causal mask: 5 wrong versions
@pytest.mark.parametrize("impl, hint", [
    (lambda T: torch.triu(torch.ones(T, T, dtype=torch.bool)), "inverted"),
    (lambda T: torch.triu(torch.ones(T, T), diagonal=1).bool(), "block"),
    (lambda T: torch.tril(torch.ones(T, T, dtype=torch.bool), diagonal=-1), "attend to itself"),
    (lambda T: torch.tril(torch.ones(T, T)), "BoolTensor"),
    (lambda T: torch.zeros(T, T).masked_fill(torch.ones(T, T).triu(1).bool(), float("-inf")), None),  # an additive mask
])
def test_causal_mask_bank(impl, hint):
    rejects("attention.causal_mask", impl, hint)


# ----------------------------------------------------------------------------- SDPA: 8 wrong versions
def sdpa(scale=None, fill=float("-inf"), invert=False, axis=-1, after=False, use_mask=True, kt="t"):
    def f(q, k, v, mask=None):
        d = q.size(-1) if scale is None else scale(q, v)
        kT = k.transpose(-2, -1) if kt == "t" else k.transpose(-1, -2).transpose(-2, -1).transpose(-2, -1)
        s = q @ kT / math.sqrt(d)
        if mask is not None and use_mask and not after:
            s = s.masked_fill(mask if invert else ~mask, fill)
        w = torch.softmax(s, dim=axis)
        if mask is not None and after:
            w = w.masked_fill(~mask, 0.0)
        return w @ v
    return f


@pytest.mark.parametrize("impl, hint", [
    (sdpa(scale=lambda q, v: 1.0), "sqrt(D)"),
    (sdpa(scale=lambda q, v: q.size(-1) ** 2), "not by D"),
    (sdpa(scale=lambda q, v: v.size(-1)), "value width"),
    (sdpa(invert=True), "wrong way round"),
    (sdpa(fill=0.0), "exp(0) = 1"),
    (sdpa(axis=-2), "over the keys"),
    (sdpa(after=True), "after the softmax"),
    (sdpa(use_mask=False), "mask was ignored"),
])
def test_sdpa_bank(impl, hint):
    rejects("attention.scaled_dot_product_attention", impl, hint)


def test_sdpa_accepts_a_large_negative_fill_instead_of_inf():
    """-1e9 instead of -inf is a legitimate choice (exp(-1e9) == 0 in float32): not a mistake."""
    assert check("attention.scaled_dot_product_attention", sdpa(fill=-1e9), quiet=True)


# ----------------------------------------------------------------------------- MultiHeadAttention: 8 wrong versions
class MHA(nn.Module):
    """A learner-style module; class attributes switch on one bug each."""

    order, heads_view, merge_view, scale_with, use_proj, honour_causal, softmax_dim = "qkv", "bthd", "bthd", "D", True, True, -1

    def __init__(self, d_model, n_heads, causal=True):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")  # as the task asks
        self.n_heads, self.causal = n_heads, causal
        self.c_attn = nn.Linear(d_model, 3 * d_model)
        self.c_proj = nn.Linear(d_model, d_model)

    def forward(self, x):
        B, T, C = x.shape
        H = self.n_heads
        D = C // H
        parts = dict(zip("qkv", self.c_attn(x).split(C, dim=2)))
        q, k, v = (parts[c] for c in self.order)
        if self.heads_view == "bthd":
            q, k, v = (t.view(B, T, H, D).transpose(1, 2) for t in (q, k, v))
        else:
            q, k, v = (t.reshape(B, H, T, D) for t in (q, k, v))
        s = q @ k.transpose(-2, -1) / math.sqrt(D if self.scale_with == "D" else C)
        if self.causal if self.honour_causal else True:
            s = s.masked_fill(~ref.causal_mask(T), float("-inf"))
        y = F.softmax(s, dim=self.softmax_dim) @ v  # (B, H, T, D)
        y = y.transpose(1, 2).contiguous().view(B, T, C) if self.merge_view == "bthd" else y.contiguous().view(B, T, C)
        return self.c_proj(y) if self.use_proj else y


def variant(**attrs):
    return type("WrongMHA", (MHA,), attrs)


def test_the_learner_style_module_itself_passes():
    assert check("attention.MultiHeadAttention", MHA, quiet=True)


@pytest.mark.parametrize("impl, hint", [
    (variant(order="kqv"), "stacked in that order"),
    (variant(order="qvk"), None),
    (variant(heads_view="bhtd"), "split heads"),
    (variant(merge_view="bhtd"), "merge heads"),
    (variant(scale_with="C"), "not the model width C"),
    (variant(use_proj=False), "c_proj"),
    (variant(honour_causal=False), "masks the future regardless"),
    (variant(softmax_dim=-2), "sum to 1 over the keys"),
])
def test_mha_bank(impl, hint):
    rejects("attention.MultiHeadAttention", impl, hint)


def test_mha_that_builds_with_indivisible_heads_is_rejected():
    class NoCheck(MHA):
        def __init__(self, d_model, n_heads, causal=True):
            nn.Module.__init__(self)
            self.n_heads, self.causal = n_heads, causal
            self.c_attn = nn.Linear(d_model, 3 * d_model)
            self.c_proj = nn.Linear(d_model, d_model)

    e = rejects("attention.MultiHeadAttention", NoCheck, hint="raise ValueError")
    assert "'no error', expected 'ValueError'" in e.message


def test_mha_without_the_gpt2_submodules_is_told_their_names():
    class Separate(nn.Module):
        def __init__(self, d_model, n_heads, causal=True):
            super().__init__()
            self.q, self.k, self.v = (nn.Linear(d_model, d_model) for _ in range(3))

        def forward(self, x):
            return x

    e = rejects("attention.MultiHeadAttention", Separate)
    assert "c_attn" in e.message


def test_exercise_notebook_stubs_every_solution_region():
    import nbformat

    from _checks import ROOT

    nb = nbformat.read(str(ROOT / "exercises" / "03_attention.ipynb"), as_version=4)
    src = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert src.count("raise NotImplementedError()") == 5  # MultiHeadAttention has two regions
