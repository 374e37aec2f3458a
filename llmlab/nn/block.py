"""The transformer block: attention, then an MLP, each on a residual branch, each with a norm."""

from __future__ import annotations

import torch
from torch import nn

from llmlab.nn.attention import KVCache, MultiHeadAttention
from llmlab.nn.mlp import MLP
from llmlab.nn.norms import make_norm


class Block(nn.Module):
    """Communicate (attention), then compute (MLP), each on a residual branch.

    pre-LN:  x = x + attn(ln_1(x));  x = x + mlp(ln_2(x))     (GPT-2; trains stably when deep)
    post-LN: x = ln_1(x + attn(x));  x = ln_2(x + mlp(x))     (the 2017 Transformer)
    """

    def __init__(self, cfg):
        """`cfg`: any config with n_embd, n_head, bias, dropout, fast_attention, prenorm, norm (a GPTConfig)."""
        super().__init__()
        self.ln_1 = make_norm(cfg)
        self.attn = MultiHeadAttention(cfg.n_embd, cfg.n_head, causal=True, bias=cfg.bias, dropout=cfg.dropout, fast=cfg.fast_attention)
        self.ln_2 = make_norm(cfg)
        self.mlp = MLP(cfg.n_embd, cfg.bias, cfg.dropout)
        self.prenorm = cfg.prenorm

    def forward(self, x: torch.Tensor, positions: nn.Module | None = None, cache: KVCache | None = None) -> torch.Tensor:
        if self.prenorm:
            x = x + self.attn(self.ln_1(x), positions, cache)
            return x + self.mlp(self.ln_2(x))
        x = self.ln_1(x + self.attn(x, positions, cache))
        return self.ln_2(x + self.mlp(x))
