"""Which parameters train: freezing by name, and counting what trains (transfer learning, LoRA).

Fine-tuning need not move every weight. Freezing the pretrained trunk and training a new head is
the cheapest transfer; unfreezing the top blocks too is the next step; full fine-tuning moves all.
A frozen parameter has `requires_grad=False`: autograd computes no gradient for it and AdamW keeps no
moments for it, which is where the memory goes (`model.eval()` is something else: it switches
dropout off and changes nothing about what trains).

Left out on purpose: freezing by module type, discriminative (per-layer) learning rates.
"""

from __future__ import annotations

from torch import nn


def count_trainable(model: nn.Module) -> int:
    """Parameters with requires_grad; a tensor shared by two modules (tied embeddings) counts once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)  # .parameters() yields a shared tensor once


def freeze_all_but(model: nn.Module, trainable: list[str]) -> int:
    """requires_grad=False on every parameter whose qualified name starts with none of the prefixes in
    `trainable`, True on the rest -> the number of trainable parameters (shared tensors once).

    A tensor shared under two names (a tied lm_head.weight and transformer.wte.weight) is one tensor:
    it trains if either of its names matches."""
    if isinstance(trainable, str) or not all(isinstance(t, str) for t in trainable):
        raise ValueError(f"trainable={trainable!r}: expected a list of parameter-name prefixes, e.g. ['head', 'transformer.h.5']")
    names = [n for n, _ in model.named_parameters(remove_duplicate=False)]
    unmatched = [t for t in trainable if not any(n.startswith(t) for n in names)]
    if unmatched:
        raise ValueError(f"trainable: no parameter name starts with {unmatched[0]!r} (names look like {names[0]!r})")
    chosen = {id(p) for n, p in model.named_parameters(remove_duplicate=False) if n.startswith(tuple(trainable))}
    for p in model.parameters():
        p.requires_grad_(id(p) in chosen)
    return count_trainable(model)
