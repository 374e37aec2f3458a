"""Pictures of lesson 10: static against dynamic masking as validation curves (`plot_masking_runs`),
and a similarity matrix of sentence vectors with the sentences as labels (`plot_similarity`).

Left out on purpose: interactive widgets (every figure here is static), attention maps of the
encoder (lesson 03's `llmlab.viz.attention` draws any model's patterns).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch


def plot_masking_runs(runs: dict[str, list[dict]], metric: str = "val_accuracy", ax=None):
    """One line per run: `metric` at every evaluation of its Trainer history (records with the metric)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.2))
    for name, history in runs.items():
        pts = [(r["step"] + 1, r[metric]) for r in history if metric in r]
        if not pts:
            raise ValueError(f"runs[{name!r}]: no record has {metric!r}; expected a Trainer history with evaluations")
        ax.plot(*zip(*pts), marker="o", ms=3, label=name)
    ax.set(xlabel="optimizer step", ylabel=metric.replace("_", " "), title="Same windows, same budget: static vs dynamic masking")
    ax.legend(fontsize=8)
    return ax


def plot_similarity(sims: torch.Tensor, labels: Sequence[str], title: str = "Cosine similarity of sentence vectors", ax=None,
                    width: int = 38):
    """A square matrix of similarities with each sentence (cut to `width` characters) as its row and column label."""
    n = len(labels)
    if tuple(sims.shape) != (n, n):
        raise ValueError(f"sims: expected shape ({n}, {n}) for {n} labels, got {tuple(sims.shape)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(1.0 + 0.62 * n, 0.6 + 0.5 * n))
    im = ax.imshow(sims.detach().cpu().numpy(), vmin=min(0.0, float(sims.min())), vmax=1.0, cmap="viridis")
    short = [s if len(s) <= width else s[: width - 1] + "…" for s in labels]
    ax.set_xticks(range(n), [str(i) for i in range(n)])
    ax.set_yticks(range(n), [f"{s}  {i}" for i, s in enumerate(short)], fontsize=8)
    for i in range(n):
        for j in range(n):
            v = float(sims[i, j])
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v < 0.6 else "black")
    ax.set_title(title, fontsize=10)
    plt.colorbar(im, ax=ax, fraction=0.04)
    return ax
