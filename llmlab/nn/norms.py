"""Normalisation: LayerNorm (Ba et al. 2016) and RMSNorm (Zhang & Sennrich 2019).

`layer_norm` and `rms_norm` are the math written out; the modules call fused kernels, which tests prove equal.

Left out on purpose: BatchNorm (it mixes the examples of a batch), DeepNorm, QK-norm.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("layernorm", "rmsnorm")


def layer_norm(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float = 1e-5) -> torch.Tensor:
    """(x - mean) / sqrt(var + eps) * weight + bias over the last axis, biased variance (divide by C)."""
    mean = x.mean(dim=-1, keepdim=True)  # (..., 1)
    var = x.var(dim=-1, keepdim=True, unbiased=False)  # (..., 1)
    y = (x - mean) / torch.sqrt(var + eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None, eps: float = 1e-5) -> torch.Tensor:
    """x / sqrt(mean(x^2) + eps) * weight over the last axis (what Hugging Face's LlamaRMSNorm computes, in this order)."""
    y = x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)
    return y * weight if weight is not None else y


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (PyTorch's has no bias=False before 2.1). The math is
    `layer_norm` above; the module calls the fused F.layer_norm, which tests prove equal."""

    def __init__(self, ndim: int, bias: bool = True, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight: LayerNorm without centring (Zhang & Sennrich 2019), and
    without a bias. The math is `rms_norm` above; the module calls the fused F.rms_norm (one kernel
    where the written-out form runs six), which tests prove equal."""

    def __init__(self, ndim: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, self.weight.shape, self.weight, self.eps)


def make_norm(cfg) -> nn.Module:
    """The norm a config names: `cfg.norm` (default "layernorm") of width `cfg.n_embd`, with a
    bias if `cfg.bias` (default True; RMSNorm never has one, as Llama's) and epsilon `cfg.norm_eps`
    (default 1e-5). Any object with those attributes will do."""
    kind = getattr(cfg, "norm", "layernorm")
    if kind not in NORMS:
        raise ValueError(f"norm={kind!r}: expected one of {', '.join(NORMS)}")
    eps = getattr(cfg, "norm_eps", 1e-5)
    return LayerNorm(cfg.n_embd, bias=getattr(cfg, "bias", True), eps=eps) if kind == "layernorm" else RMSNorm(cfg.n_embd, eps=eps)
