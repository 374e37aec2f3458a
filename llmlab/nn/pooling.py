"""Pooling: one vector per sequence from the vectors of its tokens, padding left out.

* `mean_pool(h, is_token)`: the mean over the real tokens (sentence-transformers' pooling; an encoder,
  whose every token has seen the whole sentence).
* `last_token_pool(h, is_token)`: the hidden state of each row's last real token (a causal decoder,
  where only the last token has read the whole sequence: GPT-style classifiers, reward models). It
  finds the last True of `is_token` per row, so right padding ([t t t p p]) and left padding
  ([p p t t t]) both work; `h[:, -1]` would read a pad under right padding.

Left out on purpose: [CLS] pooling (it is `h[:, 0]`), max pooling, attention pooling.
"""

from __future__ import annotations

import torch


def _check(h: torch.Tensor, is_token: torch.Tensor) -> None:
    if h.dim() != 3:
        raise ValueError(f"h: expected shape (B, T, C), got {tuple(h.shape)}")
    if is_token.dtype != torch.bool or is_token.shape != h.shape[:2]:
        raise ValueError(f"is_token: expected a BoolTensor of shape {tuple(h.shape[:2])} (the B, T of h), got {is_token.dtype} {tuple(is_token.shape)}")


def mean_pool(h: torch.Tensor, is_token: torch.Tensor) -> torch.Tensor:
    """h[B, T, C], is_token[B, T] -> [B, C]: the mean of each row's real tokens; a row of only padding gives 0."""
    _check(h, is_token)
    m = is_token.to(h.dtype).unsqueeze(-1)  # (B, T, 1)
    return (h * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)  # (B, C) / (B, 1)


def last_token_pool(h: torch.Tensor, is_token: torch.Tensor) -> torch.Tensor:
    """h[B, T, C], is_token[B, T] -> [B, C]: each row's vector at its last real token (right or left padding)."""
    _check(h, is_token)
    if not is_token.any(dim=1).all():
        raise ValueError("is_token: a row has no real token; expected at least one per row")
    T = h.size(1)
    pos = torch.arange(T, device=h.device).expand_as(is_token)  # (B, T)
    last = torch.where(is_token, pos, -1).amax(dim=1)  # (B,): the index of the last True
    return h[torch.arange(h.size(0), device=h.device), last]  # (B, C)
