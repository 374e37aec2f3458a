"""The transformer block: attention, then an MLP, each on a residual branch, each with a norm.

One class makes the blocks of every model in the course:

    Block(cfg)                 GPT's block: causal self-attention, MLP
    Block(cfg, causal=False)   an encoder's: bidirectional self-attention (pass key_padding_mask), MLP
    Block(cfg, cross=True)     an encoder-decoder's decoder: causal self-attention, then
                               cross-attention to the encoder's output `memory`, then MLP

pre-LN:  x = x + attn(ln_1(x));  [x = x + cross_attn(ln_cross(x), memory)];  x = x + mlp(ln_2(x))   (GPT-2)
post-LN: x = ln_1(x + attn(x));  [x = ln_cross(x + cross_attn(x, memory))];  x = ln_2(x + mlp(x))   (Vaswani et al. 2017)

Hook points (llmlab.nn.hooks): resid_pre, attn_out, [cross_out,] resid_mid, mlp_out, resid_post.

Left out on purpose: parallel attention and MLP (GPT-J), sandwich norms, layer scale, stochastic depth.
"""

from __future__ import annotations

import torch
from torch import nn

from llmlab.nn.attention import KVCache, MultiHeadAttention
from llmlab.nn.hooks import hook
from llmlab.nn.mlp import MLP
from llmlab.nn.norms import make_norm


class Block(nn.Module):
    """Communicate (attention), then compute (MLP), each on a residual branch."""

    def __init__(self, cfg, *, causal: bool | None = None, cross: bool | None = None, prenorm: bool | None = None,
                 activation: str | None = None, mlp_hidden: int | None = None, layer_idx: int = 0):
        """`cfg`: any object with n_embd and n_head (a GPTConfig will do). bias, dropout,
        fast_attention, norm, prenorm, causal, cross, activation, mlp_hidden and n_kv_head are read
        from it where it has them (else GPT-2's choices: True, 0.0, True, "layernorm", True, True, False,
        "gelu", None = the MLP's default width, None = n_head key/value heads); a keyword argument
        that is not None overrides cfg. The norms also read norm_eps (default 1e-5).
        `layer_idx`: the slot of a KVCache the block's attention layers use."""
        super().__init__()

        def setting(name, override, default):
            return override if override is not None else getattr(cfg, name, default)

        C, H = cfg.n_embd, cfg.n_head
        bias, dropout, fast = getattr(cfg, "bias", True), getattr(cfg, "dropout", 0.0), getattr(cfg, "fast_attention", True)
        H_kv = getattr(cfg, "n_kv_head", None)  # grouped-query attention when fewer than H
        self.prenorm = setting("prenorm", prenorm, True)
        self.ln_1 = make_norm(cfg)
        self.attn = MultiHeadAttention(C, H, causal=setting("causal", causal, True), bias=bias, dropout=dropout, fast=fast, n_kv_heads=H_kv)
        self.cross_attn: MultiHeadAttention | None = None
        if setting("cross", cross, False):
            self.ln_cross = make_norm(cfg)
            self.cross_attn = MultiHeadAttention(C, H, causal=False, bias=bias, dropout=dropout, fast=fast, cross=True, n_kv_heads=H_kv)
        self.ln_2 = make_norm(cfg)
        self.mlp = MLP(C, bias, dropout, activation=setting("activation", activation, "gelu"), hidden=setting("mlp_hidden", mlp_hidden, None))
        self.attn.layer_idx = layer_idx  # self- and cross-attention keep separate slots of a KVCache
        if self.cross_attn is not None:
            self.cross_attn.layer_idx = layer_idx
        self.hooks: dict = {}  # see llmlab.nn.hooks; empty unless a run asks
        self.hook_points = ("resid_pre", "attn_out") + (("cross_out",) if self.cross_attn is not None else ()) + ("resid_mid", "mlp_out", "resid_post")

    def forward(self, x: torch.Tensor, positions: nn.Module | None = None, cache: KVCache | None = None, *, memory: torch.Tensor | None = None,
                key_padding_mask: torch.Tensor | None = None, attn_mask: torch.Tensor | None = None,
                memory_key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x[B, T, C] -> [B, T, C]. key_padding_mask[B, T] (True = padding) and attn_mask go to the
        self-attention; memory[B, Tk, C] and memory_key_padding_mask[B, Tk] to the cross-attention."""
        if self.cross_attn is None and (memory is not None or memory_key_padding_mask is not None):
            raise ValueError("memory: this block has no cross-attention; build it with Block(cfg, cross=True)")
        h = self.hooks
        x = hook(h, "resid_pre", x)
        if self.prenorm:
            x = x + hook(h, "attn_out", self.attn(self.ln_1(x), positions, cache, key_padding_mask=key_padding_mask, attn_mask=attn_mask))
            if self.cross_attn is not None:
                x = x + hook(h, "cross_out", self.cross_attn(self.ln_cross(x), cache=cache, memory=memory, key_padding_mask=memory_key_padding_mask))
            x = hook(h, "resid_mid", x)
            x = x + hook(h, "mlp_out", self.mlp(self.ln_2(x)))
        else:
            x = self.ln_1(x + hook(h, "attn_out", self.attn(x, positions, cache, key_padding_mask=key_padding_mask, attn_mask=attn_mask)))
            if self.cross_attn is not None:
                x = self.ln_cross(x + hook(h, "cross_out", self.cross_attn(x, cache=cache, memory=memory, key_padding_mask=memory_key_padding_mask)))
            x = hook(h, "resid_mid", x)
            x = self.ln_2(x + hook(h, "mlp_out", self.mlp(x)))
        return hook(h, "resid_post", x)
