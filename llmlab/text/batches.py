"""Batches: random windows of `block_size` tokens, with the targets `y` being the inputs `x`
shifted one step to the left (next-token prediction), and the train/validation split.
"""

from __future__ import annotations

import torch


def train_val_split(data: torch.Tensor, val_fraction: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """The first (1 - val_fraction) of the tokens train, the rest validate (no shuffling:
    neighbouring windows overlap, so a random split would leak validation text)."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction}: expected a number strictly between 0 and 1")
    n = int(len(data) * (1 - val_fraction))
    return data[:n], data[n:]


def get_batch(data: torch.Tensor, block_size: int, batch_size: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample `batch_size` random windows of `block_size` tokens.

    data: LongTensor[N]  ->  x, y: LongTensor[B, T], with y[b, t] = data[start_b + t + 1].
    Every start in 0..N-T-1 is equally likely (so the last target is the last token).
    """
    if data.dim() != 1:
        raise ValueError(f"data: expected a 1-D tensor of token ids, got shape {tuple(data.shape)}")
    if len(data) <= block_size:
        raise ValueError(f"block_size={block_size}: the data has only {len(data)} tokens; need more than block_size")
    starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator)  # (B,)
    offsets = torch.arange(block_size)  # (T,)
    idx = starts[:, None] + offsets[None, :]  # (B, T)
    return data[idx], data[idx + 1]
