"""Checks for chapter 05, the transformer block: layer_norm, RMSNorm, MLP, Block and
count_parameters.

Inputs are chosen to expose the classic bugs: eps=0.1 on inputs of scale ~0.3 (so eps
ignored, outside the root or inside it give visibly different answers), every dimension
different (B=2, T=3, C=5) so normalising over the wrong axis cannot pass, norm weights
away from 1 and biases away from 0 (so a swapped or forgotten one shows), and a block
whose two branches are switched off (c_proj = 0), which must then be the identity.
Class exercises get fixed weights loaded into the learner's module by name
(`c_fc`/`c_proj`, `ln_1`/`attn`/`ln_2`/`mlp`, as in llmlab/models/gpt.py), then outputs are compared.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from llmlab.checks.core import Exercise, Mistake, Probe, equal, randn, register
from llmlab.checks.modules import load_weights
from llmlab.models.gpt import GPTConfig, count_parameters
from llmlab.nn.attention import MultiHeadAttention
from llmlab.nn.block import Block
from llmlab.nn.mlp import MLP
from llmlab.nn.norms import LayerNorm, RMSNorm, layer_norm

# ----------------------------------------------------------------------------- loading fixed weights
NAMING = "name the submodules as in llmlab.models.gpt (ln_1, attn, ln_2, mlp; c_fc, c_proj)"


def load_named(m: nn.Module, tensors: dict[str, torch.Tensor], what: str) -> nn.Module:
    """Every parameter of `m` by name, and nothing else (llmlab.checks.modules.load_weights)."""
    return load_weights(m, tensors, what, naming=NAMING)


def _norm_weights(g, C, prefix=""):
    return {prefix + "weight": 1.0 + randn(g, C, scale=0.3), prefix + "bias": randn(g, C, scale=0.3)}


def _linear_weights(g, n_in, n_out, prefix):
    return {prefix + "weight": randn(g, n_out, n_in, scale=n_in ** -0.5), prefix + "bias": randn(g, n_out, scale=0.1)}


# ----------------------------------------------------------------------------- layer_norm
def _ln_inputs(*shape, eps=None, scale=1.0, offset=0.0):
    def make(g):
        C = shape[-1]
        x = randn(g, *shape, scale=scale) + offset
        w, b = 1.0 + randn(g, C, scale=0.5), randn(g, C, scale=0.5)
        return (x, w, b) if eps is None else (x, w, b, eps)
    return make


def _ln_wrong(var="biased", eps_mode="inside", axis=-1, affine="ok", centre=True):
    def layer_norm(x, weight, bias, eps=1e-5):
        dims = {-1: (-1,), 0: (0,), "all": tuple(range(x.dim()))}[axis]
        mean = x.mean(dim=dims, keepdim=True) if centre else torch.zeros_like(x)
        v = x.var(dim=dims, keepdim=True, unbiased=(var == "unbiased")) if centre else x.pow(2).mean(dim=dims, keepdim=True)
        if eps_mode == "inside":
            y = (x - mean) / torch.sqrt(v + eps)
        elif eps_mode == "outside":
            y = (x - mean) / (torch.sqrt(v) + eps)
        elif eps_mode == "std":  # sqrt(std + eps): the root of the standard deviation
            y = (x - mean) / torch.sqrt(torch.sqrt(v) + eps)
        else:  # ignored
            y = (x - mean) / torch.sqrt(v)
        if affine == "swapped":
            return y * bias + weight
        if affine == "no_weight":
            return y + bias
        if affine == "no_bias":
            return y * weight
        if affine == "none":
            return y
        return y * weight + bias
    return layer_norm


register(Exercise(
    id="block.layer_norm",
    signature="layer_norm(x: Tensor, weight: Tensor[C], bias: Tensor[C], eps: float = 1e-5) -> Tensor  # over the last axis",
    reference=lambda x, weight, bias, eps=1e-5: layer_norm(x, weight, bias, eps),
    points=2,
    probes=[
        Probe("x[2, 3, 5] with weight and bias (default eps)", _ln_inputs(2, 3, 5)),
        Probe("eps=0.1 on small inputs: eps goes inside the square root", _ln_inputs(2, 3, 5, eps=0.1, scale=0.3),
              hint="y = (x - mean) / sqrt(var + eps): eps is added to the variance, under the root"),
        Probe("normalises over the last axis only (x[4, 3, 6])", _ln_inputs(4, 3, 6)),
        Probe("a single vector x[7]", _ln_inputs(7)),
        Probe("large offset and scale (x * 20 + 50)", _ln_inputs(3, 8, scale=20.0, offset=50.0)),
    ],
    mistakes=[
        Mistake("use the biased variance (divide by C, not C - 1): x.var(dim=-1, keepdim=True, unbiased=False)", _ln_wrong(var="unbiased")),
        Mistake("eps belongs inside the square root: (x - mean) / torch.sqrt(var + eps), not / (std + eps)", _ln_wrong(eps_mode="outside")),
        Mistake("eps is ignored: add it to the variance before the square root, (x - mean) / torch.sqrt(var + eps)", _ln_wrong(eps_mode="ignored")),
        Mistake("add eps to the variance, not to the standard deviation: torch.sqrt(var + eps)", _ln_wrong(eps_mode="std")),
        Mistake("you normalised over the wrong axis: take mean and variance over the last axis (dim=-1, keepdim=True)", _ln_wrong(axis=0)),
        Mistake("you normalised over the whole tensor: LayerNorm takes mean and variance of each vector separately, over the last axis only (dim=-1)",
                _ln_wrong(axis="all")),
        Mistake("weight and bias are swapped: y * weight + bias (weight scales, bias shifts)", _ln_wrong(affine="swapped")),
        Mistake("multiply by weight: y * weight + bias", _ln_wrong(affine="no_weight")),
        Mistake("add the bias: y * weight + bias", _ln_wrong(affine="no_bias")),
        Mistake("apply the learned scale and shift at the end: y * weight + bias", _ln_wrong(affine="none")),
        Mistake("subtract the mean first: that is RMSNorm; LayerNorm centres each vector, (x - mean) / sqrt(var + eps)", _ln_wrong(centre=False)),
    ],
))


# ----------------------------------------------------------------------------- RMSNorm
def _rms_run(cls, C, eps, x, w):
    m = cls(C) if eps is None else cls(C, eps=eps)
    load_named(m, {"weight": w}, "RMSNorm").eval()
    with torch.no_grad():
        return m(x)


def _rms_inputs(*shape, eps=None, scale=1.0, offset=0.0):
    return lambda g: (shape[-1], eps, randn(g, *shape, scale=scale) + offset, 1.0 + randn(g, shape[-1], scale=0.5))


def _rms_variant(mode):
    class RMSNorm(nn.Module):
        def __init__(self, ndim, eps=1e-5):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(ndim))
            self.eps = eps

        def forward(self, x):
            if mode == "centred":
                x = x - x.mean(-1, keepdim=True)
            ms = x.pow(2).mean(-1, keepdim=True) if mode != "sum" else x.pow(2).sum(-1, keepdim=True)
            if mode == "outside":
                return x / (ms.sqrt() + self.eps) * self.weight
            if mode == "no_weight":
                return x * torch.rsqrt(ms + self.eps)
            if mode == "std":
                return x / torch.sqrt(x.var(-1, keepdim=True, unbiased=False) + self.eps) * self.weight
            return x * torch.rsqrt(ms + self.eps) * self.weight
    return RMSNorm


register(Exercise(
    id="block.RMSNorm",
    signature="RMSNorm(ndim, eps=1e-5); forward(x[..., C]) -> x / sqrt(mean(x**2) + eps) * weight; one parameter `weight`",
    reference=RMSNorm,
    kind="class",
    probes=[
        Probe("x[2, 3, 5], default eps", _rms_inputs(2, 3, 5), run=_rms_run),
        Probe("eps=0.1 on small inputs: eps inside the square root", _rms_inputs(2, 3, 5, eps=0.1, scale=0.3), run=_rms_run),
        Probe("inputs with a non-zero mean are not centred (x + 2)", _rms_inputs(4, 6, offset=2.0), run=_rms_run,
              hint="RMSNorm does not subtract the mean; it divides by the root mean square sqrt(mean(x**2) + eps)"),
    ],
    mistakes=[
        Mistake("RMSNorm does not subtract the mean: divide x itself by sqrt(mean(x**2) + eps)", _rms_variant("centred")),
        Mistake("eps belongs inside the square root: x / sqrt(mean(x**2) + eps)", _rms_variant("outside")),
        Mistake("multiply by the learned `weight` at the end", _rms_variant("no_weight")),
        Mistake("take the mean of x**2 over the last axis, not the sum", _rms_variant("sum")),
        Mistake("divide by the root mean square sqrt(mean(x**2)), not by the standard deviation", _rms_variant("std")),
    ],
))


# ----------------------------------------------------------------------------- MLP
def _mlp_weights(g, C):
    return {**_linear_weights(g, C, 4 * C, "c_fc."), **_linear_weights(g, 4 * C, C, "c_proj.")}


def _mlp_run(cls, C, x, w):
    m = load_named(cls(C), w, "MLP").eval()
    with torch.no_grad():
        return m(x)


def _mlp_inputs(C, *shape, scale=1.0):
    return lambda g: (C, randn(g, *shape, C, scale=scale), _mlp_weights(g, C))


def _mlp_variant(act="gelu", twice=False):
    class MLP(nn.Module):
        def __init__(self, n_embd):
            super().__init__()
            self.c_fc = nn.Linear(n_embd, 4 * n_embd)
            self.c_proj = nn.Linear(4 * n_embd, n_embd)

        def forward(self, x):
            f = {"gelu": F.gelu, "relu": F.relu, "tanh": lambda h: F.gelu(h, approximate="tanh"), "none": lambda h: h}[act]
            y = self.c_proj(f(self.c_fc(x)))
            return f(y) if twice else y
    return MLP


register(Exercise(
    id="block.MLP",
    signature="MLP(n_embd); forward(x[B, T, C]) -> [B, T, C]; c_fc = Linear(C, 4C), GELU, c_proj = Linear(4C, C)",
    reference=MLP,
    kind="class",
    points=2,
    probes=[
        Probe("C=12 on x[2, 5, 12]", _mlp_inputs(12, 2, 5), run=_mlp_run),
        Probe("C=8 on x[3, 4, 8], large pre-activations", _mlp_inputs(8, 3, 4, scale=3.0), run=_mlp_run),
    ],
    mistakes=[
        Mistake("the activation is GELU (nn.GELU() or F.gelu), not ReLU", _mlp_variant("relu")),
        Mistake("use the exact GELU, nn.GELU() (the erf form); approximate='tanh' differs by up to ~1e-3", _mlp_variant("tanh")),
        Mistake("put a GELU between c_fc and c_proj: without it two Linear layers collapse into one", _mlp_variant("none")),
        Mistake("the GELU goes between c_fc and c_proj only, not after c_proj", _mlp_variant("gelu", twice=True)),
    ],
))


# ----------------------------------------------------------------------------- Block
def block_weights(g, C, zero_branches=False):
    w = {**_norm_weights(g, C, "ln_1."), **_linear_weights(g, C, 3 * C, "attn.c_attn."), **_linear_weights(g, C, C, "attn.c_proj."),
         **_norm_weights(g, C, "ln_2."), **_linear_weights(g, C, 4 * C, "mlp.c_fc."), **_linear_weights(g, 4 * C, C, "mlp.c_proj.")}
    if zero_branches:  # both branches output exactly zero: the block must be the identity
        for k in ("attn.c_proj.weight", "attn.c_proj.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"):
            w[k] = torch.zeros_like(w[k])
    return w


def _block_cfg(C, H):
    return GPTConfig(vocab_size=17, block_size=16, n_layer=1, n_head=H, n_embd=C)


def _block_run(cls, C, H, x, w):
    m = load_named(cls(_block_cfg(C, H)), w, "Block").eval()
    with torch.no_grad():
        return m(x)


def _block_future(cls, C, H, x, w):
    m = load_named(cls(_block_cfg(C, H)), w, "Block").eval()
    x2 = x.clone()
    x2[:, 3:] = randn(torch.Generator().manual_seed(1), *x2[:, 3:].shape)
    with torch.no_grad():
        return m(x2)[:, :3] - m(x)[:, :3]


def _block_inputs(C, H, B, T, scale=1.0, offset=0.0, zero_branches=False):
    return lambda g: (C, H, randn(g, B, T, C, scale=scale) + offset, block_weights(g, C, zero_branches))


def _block_variant(kind):
    class Block(nn.Module):
        def __init__(self, cfg):
            super().__init__()
            self.ln_1 = LayerNorm(cfg.n_embd)
            self.attn = MultiHeadAttention(cfg.n_embd, cfg.n_head, causal=(kind != "not_causal"))
            self.ln_2 = LayerNorm(cfg.n_embd)
            self.mlp = MLP(cfg.n_embd)

        def forward(self, x):
            a, m, l1, l2 = self.attn, self.mlp, self.ln_1, self.ln_2
            if kind == "postln":
                x = l1(x + a(x))
                return l2(x + m(x))
            if kind == "no_attn_residual":
                x = a(l1(x))
                return x + m(l2(x))
            if kind == "no_mlp_residual":
                x = x + a(l1(x))
                return m(l2(x))
            if kind == "no_residual":
                return m(l2(a(l1(x))))
            if kind == "normed_stream":  # the residual adds the normalised x, not x
                x = l1(x)
                x = x + a(x)
                x = l2(x)
                return x + m(x)
            if kind == "swapped_norms":
                x = x + a(l2(x))
                return x + m(l1(x))
            if kind == "mlp_first":
                x = x + m(l2(x))
                return x + a(l1(x))
            if kind == "one_norm":
                x = x + a(l1(x))
                return x + m(l1(x))
            x = x + a(l1(x))  # not_causal: the right wiring, a bidirectional attention
            return x + m(l2(x))
    return Block


register(Exercise(
    id="block.Block",
    signature="Block(cfg: GPTConfig); forward(x[B, T, C]) -> [B, T, C]; submodules ln_1, attn, ln_2, mlp (pre-LN)",
    reference=Block,
    kind="class",
    points=3,
    probes=[
        Probe("C=12 with 3 heads on x[2, 5, 12]", _block_inputs(12, 3, 2, 5), run=_block_run),
        Probe("C=8 with 2 heads on an offset stream x[3, 4, 8] * 3 + 1", _block_inputs(8, 2, 3, 4, scale=3.0, offset=1.0), run=_block_run),
        Probe("branches switched off (both c_proj = 0): the block is the identity",
              _block_inputs(12, 3, 2, 5, scale=2.0, offset=0.5, zero_branches=True), run=_block_run,
              hint="in a pre-LN block the residual stream passes untouched: x = x + attn(ln_1(x)); x = x + mlp(ln_2(x)); no norm sits on the stream itself"),
        Probe("earlier outputs ignore later tokens (causality)", _block_inputs(12, 3, 2, 6), run=_block_future,
              hint="use causal attention: MultiHeadAttention(n_embd, n_head, causal=True)"),
    ],
    mistakes=[
        Mistake("that is post-LN (the 2017 Transformer): GPT-2 normalises the input of each branch and adds the branch to x: "
                "x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))", _block_variant("postln")),
        Mistake("the attention branch needs its residual connection: x = x + attn(ln_1(x))", _block_variant("no_attn_residual")),
        Mistake("the MLP branch needs its residual connection: x = x + mlp(ln_2(x))", _block_variant("no_mlp_residual")),
        Mistake("add each branch's output back to its input (residual connections): x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))",
                _block_variant("no_residual")),
        Mistake("you overwrote x with its normalised version, so the residual adds ln(x): "
                "keep x and normalise only the branch's input, x = x + attn(ln_1(x))", _block_variant("normed_stream")),
        Mistake("ln_1 feeds the attention and ln_2 the MLP; yours are swapped", _block_variant("swapped_norms")),
        Mistake("attention comes first (communicate), then the MLP (compute)", _block_variant("mlp_first")),
        Mistake("each branch has its own norm: ln_1 before attention, ln_2 before the MLP", _block_variant("one_norm")),
        Mistake("the block's attention must be causal: MultiHeadAttention(n_embd, n_head, causal=True)", _block_variant("not_causal")),
    ],
))


# ----------------------------------------------------------------------------- count_parameters
def _count_run(fn, V, T, L, C, tied, bias):
    return fn(V, T, L, C, tied=tied, bias=bias)


def _count_wrong(kind):
    def count_parameters(vocab_size, block_size, n_layer, n_embd, tied=True, bias=True):
        V, T, L, C = vocab_size, block_size, n_layer, n_embd
        b = 0 if (not bias and kind != "bias_ignored") else 1
        ln = C + b * C if kind != "ln_no_bias" else C
        hidden = {"mlp_2x": 2 * C, "mlp_1x": C}.get(kind, 4 * C)
        attn = C * 3 * C + b * 3 * C + (0 if kind == "no_attn_proj" else C * C + b * C)
        mlp = C * hidden + b * hidden + hidden * C + b * C
        per_layer = (1 if kind == "one_norm" else 2) * ln + attn + mlp
        emb = V * C + (0 if kind == "no_positions" else T * C)
        untied = {"tied_ignored": False, "always_untied": True}.get(kind, not tied)
        head = V * C if untied else 0
        final = 0 if kind == "no_final_ln" else ln
        if kind == "approx":
            return V * C + T * C + 12 * L * C * C
        return emb + L * per_layer + final + head
    return count_parameters


register(Exercise(
    id="block.count_parameters",
    signature="count_parameters(vocab_size, block_size, n_layer, n_embd, tied: bool = True, bias: bool = True) -> int",
    reference=count_parameters,
    points=2,
    probes=[
        Probe("GPT-2 small: (50257, 1024, 12, 768) is 124,439,808", lambda g: (50257, 1024, 12, 768, True, True), run=_count_run,
              compare=equal("parameter count")),
        Probe("a tiny model (11, 7, 2, 12)", lambda g: (11, 7, 2, 12, True, True), run=_count_run, compare=equal("parameter count")),
        Probe("tied=False: the output layer has its own V x C matrix", lambda g: (11, 7, 2, 12, False, True), run=_count_run, compare=equal("parameter count")),
        Probe("bias=False: no biases in Linear layers and norms", lambda g: (11, 7, 2, 12, True, False), run=_count_run, compare=equal("parameter count")),
        Probe("untied, no biases, another size (13, 9, 3, 16)", lambda g: (13, 9, 3, 16, False, False), run=_count_run, compare=equal("parameter count")),
    ],
    mistakes=[
        Mistake("with tied=False the output layer lm_head has its own vocab_size x n_embd matrix: add it", _count_wrong("tied_ignored")),
        Mistake("with tied=True (the default) lm_head reuses the token embedding: count that matrix once", _count_wrong("always_untied")),
        Mistake("with bias=False there are no biases: neither in the Linear layers nor in the LayerNorms", _count_wrong("bias_ignored")),
        Mistake("learned positions are a block_size x n_embd table: add block_size * n_embd", _count_wrong("no_positions")),
        Mistake("the MLP is 4 x wider inside: c_fc maps C -> 4C and c_proj 4C -> C", _count_wrong("mlp_2x")),
        Mistake("the MLP is 4 x wider inside: c_fc maps C -> 4C and c_proj 4C -> C", _count_wrong("mlp_1x")),
        Mistake("after the last block comes a final LayerNorm, ln_f: add its weight (and bias)", _count_wrong("no_final_ln")),
        Mistake("each LayerNorm has a bias as well as a weight when bias=True (2C per norm)", _count_wrong("ln_no_bias")),
        Mistake("each block has two LayerNorms, ln_1 and ln_2", _count_wrong("one_norm")),
        Mistake("attention has an output projection c_proj (C x C, plus bias) after c_attn (C x 3C)", _count_wrong("no_attn_proj")),
        Mistake("12 * n_layer * n_embd**2 is the usual approximation; count the biases and LayerNorms exactly", _count_wrong("approx")),
    ],
))
