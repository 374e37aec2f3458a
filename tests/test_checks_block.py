"""Chapter 05's checks: each passes the reference and the code of solutions/05_block.ipynb,
and rejects a bank of wrong implementations written the way learners write them (not
copies of the checks' own `Mistake`s), with the right hint where the mistake is a known one."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from _checks import assert_chapter, rejects
from llmlab.checks import REGISTRY, check, load_all
from llmlab.models import gpt as ref
from llmlab.nn.attention import MultiHeadAttention

load_all()
IDS = ["block.layer_norm", "block.RMSNorm", "block.MLP", "block.Block", "block.count_parameters"]


def test_chapter_contract():
    assert_chapter(IDS, "05_block.ipynb")


# ----------------------------------------------------------------------------- layer_norm
def ln_unbiased(x, weight, bias, eps=1e-5):
    return (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True) + eps) * weight + bias  # torch.var: C - 1


def ln_eps_outside(x, weight, bias, eps=1e-5):
    return (x - x.mean(-1, keepdim=True)) / (x.std(-1, keepdim=True, unbiased=False) + eps) * weight + bias


def ln_eps_ignored(x, weight, bias, eps=1e-5):
    return (x - x.mean(-1, keepdim=True)) / x.std(-1, keepdim=True, unbiased=False) * weight + bias


def ln_eps_hardcoded(x, weight, bias, eps=1e-5):
    return F.layer_norm(x, x.shape[-1:], weight, bias, 1e-5)  # the eps argument never used


def ln_axis0(x, weight, bias, eps=1e-5):
    return (x - x.mean(0, keepdim=True)) / torch.sqrt(x.var(0, keepdim=True, unbiased=False) + eps) * weight + bias


def ln_whole(x, weight, bias, eps=1e-5):
    return (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + eps) * weight + bias


def ln_swapped(x, weight, bias, eps=1e-5):
    return F.layer_norm(x, x.shape[-1:], bias, weight, eps)


def ln_no_weight(x, weight, bias, eps=1e-5):
    return F.layer_norm(x, x.shape[-1:], None, bias, eps)


def ln_no_bias(x, weight, bias, eps=1e-5):
    return F.layer_norm(x, x.shape[-1:], weight, None, eps)


def ln_not_centred(x, weight, bias, eps=1e-5):
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight + bias


@pytest.mark.parametrize("impl, hint", [
    (ln_unbiased, "biased variance"),
    (ln_eps_outside, "inside the square root"),
    (ln_eps_ignored, "eps is ignored"),
    (ln_eps_hardcoded, None),
    (ln_axis0, "wrong axis"),
    (ln_whole, "whole tensor"),
    (ln_swapped, "swapped"),
    (ln_no_weight, "multiply by weight"),
    (ln_no_bias, "add the bias"),
    (ln_not_centred, "subtract the mean"),
])
def test_layer_norm_rejects(impl, hint):
    rejects("block.layer_norm", impl, hint)


def test_layer_norm_accepts_other_correct_forms():
    def one_pass(x, weight, bias, eps=1e-5):  # var = E[x^2] - E[x]^2
        m = x.mean(-1, keepdim=True)
        v = (x * x).mean(-1, keepdim=True) - m * m
        return (x - m) * torch.rsqrt(v + eps) * weight + bias

    def via_torch(x, weight, bias, eps=1e-5):
        return F.layer_norm(x, (x.size(-1),), weight, bias, eps)

    assert check("block.layer_norm", one_pass, quiet=True)
    assert check("block.layer_norm", via_torch, quiet=True)


# ----------------------------------------------------------------------------- RMSNorm
def rms_class(forward, params=("weight",)):
    class R(nn.Module):
        def __init__(self, ndim, eps=1e-5):
            super().__init__()
            for p in params:
                setattr(self, p, nn.Parameter(torch.ones(ndim)))
            self.eps = eps
        def forward(self, x):
            return forward(self, x)
    return R


@pytest.mark.parametrize("impl, hint", [
    (rms_class(lambda s, x: (x - x.mean(-1, keepdim=True)) * torch.rsqrt((x - x.mean(-1, keepdim=True)).pow(2).mean(-1, keepdim=True) + s.eps) * s.weight),
     "does not subtract the mean"),
    (rms_class(lambda s, x: x / (x.pow(2).mean(-1, keepdim=True).sqrt() + s.eps) * s.weight), "inside the square root"),
    (rms_class(lambda s, x: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + s.eps)), "weight"),
    (rms_class(lambda s, x: x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) + s.eps) * s.weight), "not the sum"),
    (rms_class(lambda s, x: x / (x.norm(dim=-1, keepdim=True) / math.sqrt(x.size(-1))) * s.weight), None),  # eps ignored
    (rms_class(lambda s, x: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + s.eps) * s.weight + s.bias, ("weight", "bias")), "does not: bias"),
    (rms_class(lambda s, x: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + s.eps) * s.scale, ("scale",)), "no parameter `weight`"),
])
def test_rmsnorm_rejects(impl, hint):
    rejects("block.RMSNorm", impl, hint)


def test_rmsnorm_accepts_another_correct_form():
    ok = rms_class(lambda s, x: x / torch.sqrt(torch.mean(x * x, dim=-1, keepdim=True) + s.eps) * s.weight)
    assert check("block.RMSNorm", ok, quiet=True)


# ----------------------------------------------------------------------------- MLP
def mlp_class(act=F.gelu, hidden=4, names=("c_fc", "c_proj"), bias=True, act_after=False):
    class M(nn.Module):
        def __init__(self, n_embd):
            super().__init__()
            setattr(self, names[0], nn.Linear(n_embd, hidden * n_embd, bias=bias))
            setattr(self, names[1], nn.Linear(hidden * n_embd, n_embd, bias=bias))
        def forward(self, x):
            y = getattr(self, names[1])(act(getattr(self, names[0])(x)))
            return act(y) if act_after else y
    return M


@pytest.mark.parametrize("impl, hint", [
    (mlp_class(act=F.relu), "not ReLU"),
    (mlp_class(act=lambda h: F.gelu(h, approximate="tanh")), "approximate='tanh'"),
    (mlp_class(act=lambda h: h), "put a GELU between"),
    (mlp_class(act_after=True), "not after c_proj"),
    (mlp_class(act=torch.sigmoid), None),
    (mlp_class(hidden=2), "`c_fc.weight` has shape (24, 12), expected (48, 12)"),  # not 4x wide
    (mlp_class(names=("fc", "proj")), "no parameter `c_fc.weight`"),
    (mlp_class(bias=False), "no parameter `c_fc.bias`"),
])
def test_mlp_rejects(impl, hint):
    rejects("block.MLP", impl, hint)


def test_mlp_accepts_functional_gelu_and_extra_dropout():
    class M(nn.Module):
        def __init__(self, n_embd):
            super().__init__()
            self.c_fc, self.c_proj = nn.Linear(n_embd, 4 * n_embd), nn.Linear(4 * n_embd, n_embd)
            self.dropout = nn.Dropout(0.1)  # no parameters; the check runs in eval mode
        def forward(self, x):
            return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))
    assert check("block.MLP", M, quiet=True)


# ----------------------------------------------------------------------------- Block
def block_class(forward, causal=True):
    class B(nn.Module):
        def __init__(self, cfg):
            super().__init__()
            self.ln_1 = ref.LayerNorm(cfg.n_embd)
            self.attn = MultiHeadAttention(cfg.n_embd, cfg.n_head, causal=causal)
            self.ln_2 = ref.LayerNorm(cfg.n_embd)
            self.mlp = ref.MLP(cfg.n_embd)
        def forward(self, x):
            return forward(self, x)
    return B


def _post_ln(s, x):
    x = s.ln_1(x + s.attn(x))
    return s.ln_2(x + s.mlp(x))


def _no_attn_res(s, x):
    x = s.attn(s.ln_1(x))
    return x + s.mlp(s.ln_2(x))


def _no_mlp_res(s, x):
    x = x + s.attn(s.ln_1(x))
    return s.mlp(s.ln_2(x))


def _normed_stream(s, x):
    x = s.ln_1(x)
    x = x + s.attn(x)
    x = s.ln_2(x)
    return x + s.mlp(x)


def _mlp_first(s, x):
    x = x + s.mlp(s.ln_2(x))
    return x + s.attn(s.ln_1(x))


def _swapped_norms(s, x):
    x = x + s.attn(s.ln_2(x))
    return x + s.mlp(s.ln_1(x))


def _one_norm(s, x):
    x = x + s.attn(s.ln_1(x))
    return x + s.mlp(s.ln_1(x))


def _pre_ln(s, x):
    x = x + s.attn(s.ln_1(x))
    return x + s.mlp(s.ln_2(x))


def _halved(s, x):  # a "normalised" residual that averages instead of adding
    x = 0.5 * (x + s.attn(s.ln_1(x)))
    return 0.5 * (x + s.mlp(s.ln_2(x)))


def _extra_norm_on_output(s, x):
    return s.ln_2(_pre_ln(s, x))


def _parallel(s, x):  # GPT-J style: both branches read the same input
    return x + s.attn(s.ln_1(x)) + s.mlp(s.ln_2(x))


@pytest.mark.parametrize("impl, hint", [
    (block_class(_post_ln), "post-LN"),
    (block_class(_no_attn_res), "attention branch needs its residual"),
    (block_class(_no_mlp_res), "MLP branch needs its residual"),
    (block_class(lambda s, x: s.mlp(s.ln_2(s.attn(s.ln_1(x))))), "residual connections"),
    (block_class(_normed_stream), "overwrote x with its normalised version"),
    (block_class(_mlp_first), "attention comes first"),
    (block_class(_swapped_norms), "swapped"),
    (block_class(_one_norm), "its own norm"),
    (block_class(_pre_ln, causal=False), "causal"),
    (block_class(_halved), None),
    (block_class(_extra_norm_on_output), None),
    (block_class(_parallel), None),
])
def test_block_rejects(impl, hint):
    rejects("block.Block", impl, hint)


def test_block_with_wrong_submodule_names_is_told_the_names():
    class B(nn.Module):
        def __init__(self, cfg):
            super().__init__()
            self.norm1, self.attn = ref.LayerNorm(cfg.n_embd), MultiHeadAttention(cfg.n_embd, cfg.n_head)
            self.norm2, self.mlp = ref.LayerNorm(cfg.n_embd), ref.MLP(cfg.n_embd)
        def forward(self, x):
            x = x + self.attn(self.norm1(x))
            return x + self.mlp(self.norm2(x))
    rejects("block.Block", B, "no parameter `ln_1.weight`")


def test_block_accepts_explicit_positions_argument():
    def fwd(s, x, positions=None):
        h = s.attn(s.ln_1(x), positions)
        x = x + h
        return x + s.mlp(s.ln_2(x))
    assert check("block.Block", block_class(fwd), quiet=True)


# ----------------------------------------------------------------------------- count_parameters
def counter(**change):
    """A count_parameters written out term by term; `change` switches one term to a wrong version."""
    def count_parameters(vocab_size, block_size, n_layer, n_embd, tied=True, bias=True):
        V, T, L, C = vocab_size, block_size, n_layer, n_embd
        use_bias = bias if not change.get("bias_ignored") else True
        b = 1 if use_bias else 0
        hidden = change.get("hidden", 4) * C
        ln = C + (b * C if not change.get("ln_weight_only") else 0)
        attn = 3 * C * C + (b * 3 * C if not change.get("no_attn_bias") else 0) + C * C + b * C
        mlp = C * hidden + b * hidden + hidden * C + b * C
        emb = V * C + (0 if change.get("no_positions") else T * C)
        is_tied = change.get("force_tied", tied)
        head = 0 if is_tied else V * C + (V if change.get("head_bias") else 0)
        final = 0 if change.get("no_final_ln") else ln
        total = emb + L * (2 * ln + attn + mlp) + final + head
        return float(total) if change.get("as_float") else total
    return count_parameters


@pytest.mark.parametrize("impl, hint", [
    (counter(force_tied=True), "tied=False"),
    (counter(force_tied=False), "tied=True"),
    (counter(bias_ignored=True), "bias=False"),
    (counter(no_positions=True), "block_size"),
    (counter(hidden=2), "4 x wider"),
    (counter(hidden=1), "4 x wider"),
    (counter(no_final_ln=True), "final LayerNorm"),
    (counter(ln_weight_only=True), "bias as well as a weight"),
    (counter(no_attn_bias=True), None),
    (counter(head_bias=True), None),
    (counter(as_float=True), "expected the parameter count to be a int"),
    (lambda V, T, L, C, tied=True, bias=True: V * C + T * C + 12 * L * C * C, "approximation"),
])
def test_count_parameters_rejects(impl, hint):
    rejects("block.count_parameters", impl, hint)


def test_count_parameters_from_a_built_model_passes():
    def count_parameters(vocab_size, block_size, n_layer, n_embd, tied=True, bias=True):
        cfg = ref.GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer, n_head=1, n_embd=n_embd, tied=tied, bias=bias)
        with torch.device("meta"):  # counting by building: shapes only
            return ref.GPT(cfg).num_parameters()
    assert check("block.count_parameters", count_parameters, quiet=True)


@pytest.mark.parametrize("eid", IDS)
def test_probe_inputs_and_outputs_are_plain_data(eid):
    # the grader sends inputs to a sandboxed process and reads outputs back as JSON + tensors
    from llmlab.checks.core import make_generator
    from llmlab.grading import serialize

    ex = REGISTRY[eid]
    for i, probe in enumerate(ex.probes):
        args = probe.inputs(make_generator(i))
        serialize.encode(args)
        serialize.encode(probe.run(ex.reference, *args))
