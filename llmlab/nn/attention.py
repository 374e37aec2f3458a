"""Attention: every token looks at the others and takes a weighted average of them.

    Attention(Q, K, V) = softmax(Q K^T / sqrt(D) + bias, masked) V      (Vaswani et al. 2017)

Written out step by step (`softmax`, `causal_mask`, `scaled_dot_product_attention`) and
then as a module, `MultiHeadAttention`, whose fast path calls PyTorch's fused
`torch.nn.functional.scaled_dot_product_attention` (FlashAttention on GPUs). Tests prove
that the two paths agree.

Positions are not this module's business: a `positions` object (see llmlab.nn.positional)
may rotate q and k (RoPE) or add a bias to the scores (ALiBi). A `KVCache` lets
generation reuse the keys and values of earlier tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """exp(x) / sum(exp(x)) along `dim`, stable for large inputs.

    Subtracting the max changes nothing mathematically (it cancels in the ratio) but
    keeps exp() from overflowing: softmax([1000, 1000]) is [0.5, 0.5], not nan.
    """
    m = x.amax(dim=dim, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))  # a row of all -inf stays -inf, not nan - nan
    e = (x - m).exp()
    return e / e.sum(dim=dim, keepdim=True)


def causal_mask(T: int, device: torch.device | str | None = None) -> torch.Tensor:
    """BoolTensor[T, T], True where query i may attend to key j, i.e. j <= i.

    >>> causal_mask(3).int()
    tensor([[1, 0, 0],
            [1, 1, 0],
            [1, 1, 1]], dtype=torch.int32)
    """
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()


def offset_causal_mask(Tq: int, Tk: int, device: torch.device | str | None = None) -> torch.Tensor:
    """The causal mask when the Tq queries are the *last* Tq of Tk positions (KV cache):
    query i sits at position Tk - Tq + i and may see keys j <= that."""
    return torch.ones(Tq, Tk, dtype=torch.bool, device=device).tril(diagonal=Tk - Tq)


def attention_weights(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q k^T / sqrt(D) + bias) with masked entries removed: [..., Tq, Tk], rows sum to 1."""
    D = q.size(-1)
    scores = q @ k.transpose(-2, -1) / math.sqrt(D)  # (..., Tq, D) @ (..., D, Tk) -> (..., Tq, Tk)
    if bias is not None:
        scores = scores + bias
    if mask is not None:
        # mask *before* softmax: a masked key must get exactly zero weight
        scores = scores.masked_fill(~mask, float("-inf"))
    return softmax(scores, dim=-1)


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> torch.Tensor:
    """q[..., Tq, D], k[..., Tk, D], v[..., Tk, Dv] -> [..., Tq, Dv].

    `mask` (bool, broadcastable to [..., Tq, Tk]): True = may attend, PyTorch's convention.
    Why 1/sqrt(D)? With unit-variance q and k, q.k has variance D; dividing keeps the
    scores near unit scale so softmax does not saturate into a one-hot.
    """
    return attention_weights(q, k, mask, bias) @ v  # (..., Tq, Tk) @ (..., Tk, Dv) -> (..., Tq, Dv)


@dataclass
class KVCache:
    """Keys and values of the tokens seen so far, one entry per layer: [B, H, T_past, D]."""

    k: list[torch.Tensor | None] = field(default_factory=list)
    v: list[torch.Tensor | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.length = 0  # positions already processed (set by the model after each forward)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        while len(self.k) <= layer:
            self.k.append(None)
            self.v.append(None)
        if self.k[layer] is not None:
            k = torch.cat([self.k[layer], k], dim=2)  # (B, H, T_past + T, D)
            v = torch.cat([self.v[layer], v], dim=2)
        self.k[layer], self.v[layer] = k, v
        return k, v


class MultiHeadAttention(nn.Module):
    """H heads of width D = C / H attend in parallel; their outputs are concatenated and mixed.

    Names follow GPT-2's checkpoint: `c_attn` makes q, k, v in one matmul (stacked in that
    order), `c_proj` mixes the heads back together.
    """

    def __init__(self, d_model: int, n_heads: int, causal: bool = True, bias: bool = True, dropout: float = 0.0, fast: bool = True):
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}: each head needs d_model / n_heads channels")
        self.d_model, self.n_heads, self.causal = d_model, n_heads, causal
        self.c_attn = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.c_proj = nn.Linear(d_model, d_model, bias=bias)
        self.dropout = dropout
        self.resid_dropout = nn.Dropout(dropout)
        self.fast = fast  # use F.scaled_dot_product_attention (fused kernels) when True
        self.record_weights = False  # keep the last attention pattern for plots (slow path)
        self.last_weights: torch.Tensor | None = None
        self.layer_idx = 0  # which slot of a KVCache this module uses (set by the model)

    def forward(self, x: torch.Tensor, positions: nn.Module | None = None, cache: KVCache | None = None) -> torch.Tensor:
        B, T, C = x.shape
        if C != self.d_model:
            raise ValueError(f"x: expected last dimension d_model={self.d_model}, got shape {tuple(x.shape)}")
        H, D = self.n_heads, C // self.n_heads
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
        k = k.view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
        v = v.view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)

        past = cache.length if cache is not None else 0
        if positions is not None:
            q, k = positions.rotate(q, k, offset=past)  # RoPE; identity for other schemes
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v)  # (B, H, past + T, D)
        Tk = k.size(2)
        bias = positions.attn_bias(T, Tk, offset=past) if positions is not None else None  # ALiBi: (H, T, Tk)
        mask = offset_causal_mask(T, Tk, x.device) if self.causal else None  # (T, Tk)

        if self.record_weights or not self.fast:
            w = attention_weights(q, k, mask, bias)  # (B, H, T, Tk)
            if self.record_weights:
                self.last_weights = w.detach()
            if self.training and self.dropout > 0:
                w = F.dropout(w, self.dropout)
            y = w @ v  # (B, H, T, Tk) @ (B, H, Tk, D) -> (B, H, T, D)
        else:
            p = self.dropout if self.training else 0.0
            if bias is None and (mask is None or T == Tk):
                y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=self.causal and T == Tk)
            else:
                attn_mask = bias.to(q.dtype) if bias is not None else torch.zeros(T, Tk, dtype=q.dtype, device=x.device)
                if mask is not None:
                    attn_mask = attn_mask.masked_fill(~mask, float("-inf"))
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, H, D) -> (B, T, C): heads side by side
        return self.resid_dropout(self.c_proj(y))
