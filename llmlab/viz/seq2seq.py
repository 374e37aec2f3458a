"""Pictures of translation: a cross-attention heatmap with the true alignment on top, and
bar charts of a measurement with its confidence interval (BLEU, exact match, alignment accuracy).

Left out on purpose: a widget (the lesson's sentences are few and short: a grid of heatmaps
shows them all), attention rollout across layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch


def plot_cross_attention(weights: torch.Tensor, src: Sequence[str], tgt: Sequence[str], align: Sequence[int] | None = None,
                         ax=None, title: str = "cross-attention (mean over heads)"):
    """weights[T, S]: row t is where the target word tgt[t] looked in the source. White squares
    mark the true alignment (the source word that tgt[t] translates)."""
    w = weights.detach().float().cpu()
    if w.dim() != 2 or w.shape != (len(tgt), len(src)):
        raise ValueError(f"weights: expected shape (len(tgt), len(src)) = ({len(tgt)}, {len(src)}), got {tuple(w.shape)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(0.45 * len(src) + 1.8, 0.4 * len(tgt) + 1.2))
    ax.imshow(w.numpy(), cmap="viridis", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(src)), list(src), rotation=90, fontsize=8)
    ax.set_yticks(range(len(tgt)), list(tgt), fontsize=8)
    if align is not None:
        for t, a in enumerate(align):
            if a >= 0:
                ax.add_patch(plt.Rectangle((a - 0.5, t - 0.5), 1, 1, fill=False, edgecolor="white", lw=1.5))
    ax.set_xlabel("source word")
    ax.set_ylabel("target word")
    ax.set_title(title, fontsize=9)
    return ax


def plot_intervals(results: dict[str, tuple[float, float, float]], ylabel: str, title: str = "", ax=None, ylim: tuple[float, float] | None = (0, 100)):
    """Bars of {label: (value, low, high)} with their 95% intervals as error bars."""
    if not results:
        raise ValueError("results: expected at least one {label: (value, low, high)} entry")
    if ax is None:
        _, ax = plt.subplots(figsize=(1.1 * len(results) + 2.0, 3.2))
    labels = list(results)
    vals = [results[k][0] for k in labels]
    err = [[results[k][0] - results[k][1] for k in labels], [results[k][2] - results[k][0] for k in labels]]
    ax.bar(range(len(labels)), vals, yerr=err, capsize=4, color="tab:blue", alpha=0.8)
    ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_title(title, fontsize=9)
    return ax
