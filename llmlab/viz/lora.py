"""Pictures of lesson 14: accuracy against trainable parameters (`plot_accuracy_vs_params`), how much
of a weight update its top singular values hold (`plot_update_energy`), and the final loss over
learning rates per rank under two scaling rules (`plot_alpha_rule`).

Left out on purpose: interactive widgets, and pictures of the adapters' weights themselves.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch


def plot_accuracy_vs_params(rows: Sequence[dict], baseline: float | None = None, ax=None):
    """Each method (rows from llmlab.train.lora_experiments.summarise) at its number of trainable parameters (log
    scale): one point per seed with its 95 % Wilson interval, side by side; `baseline`: a dashed line (e.g. the majority class)."""
    if not rows:
        raise ValueError("rows: expected at least one summarised method")
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 3.4))
    colours = {"head": "tab:gray", "full": "tab:red", "lora": "tab:blue"}
    for row in rows:
        for j, s in enumerate(row["seeds"]):
            x = row["trainable"] * 1.12 ** (j - (len(row["seeds"]) - 1) / 2)  # seeds side by side on the log axis
            acc, (lo, hi) = s["accuracy"], s["ci"]
            ax.errorbar(x, 100 * acc, yerr=[[100 * (acc - lo)], [100 * (hi - acc)]], fmt="o", ms=4, capsize=2,
                        color=colours.get(row["method"], "k"))
        ax.annotate(row["label"].replace("LoRA ", "").replace(" fine-tuning", ""), (row["trainable"], 100 * row["accuracy"]),
                    textcoords="offset points", xytext=(7, -10), fontsize=8)
    if baseline is not None:
        ax.axhline(100 * baseline, ls="--", color="k", lw=0.8, label="majority class")
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xscale("log")
    ax.set(xlabel="trainable parameters (log scale)", ylabel="test accuracy (%)", title="Accuracy against what trains (a point per seed, 95 % Wilson)")
    return ax


def plot_update_energy(spectra: dict[str, Sequence[float]], baseline: Sequence[float] | None = None, k_max: int = 64, ax=None):
    """The share of ||ΔW||^2 held by the top k singular values, k = 1 … k_max, one thin line per matrix, and
    (dashed) the same for `baseline`, e.g. a random Gaussian matrix of the same shape."""
    if not spectra:
        raise ValueError("spectra: expected at least one matrix's singular values")
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 3.4))

    def curve(s):
        s2 = torch.tensor(list(s), dtype=torch.float64) ** 2
        return (s2.cumsum(0) / s2.sum())[:k_max].numpy()

    ks = range(1, k_max + 1)
    for i, (name, s) in enumerate(spectra.items()):
        ax.plot(ks[: len(s)], curve(s), color="tab:red", alpha=0.35, lw=1, label="ΔW of full fine-tuning (one line per matrix)" if i == 0 else None)
    if baseline is not None:
        ax.plot(ks[: len(baseline)], curve(baseline), "k--", lw=1.2, label="a random Gaussian matrix, same shape")
    ax.set(xlabel="k (top singular values kept)", ylabel="share of the squared norm", ylim=(0, 1.02),
           title="How low-rank is a fine-tuning update?")
    ax.legend(fontsize=8, loc="lower right")
    return ax


def plot_alpha_rule(results: dict[str, dict[int, Sequence[float]]], lrs: Sequence[float], axes=None):
    """One panel per rule ({"alpha/r": {r: [loss per lr]}, "fixed": ...}): final loss against the learning rate, a line per rank."""
    if axes is None:
        _, axes = plt.subplots(1, len(results), figsize=(5.2 * len(results), 3.3), sharey=True)
    axes = list(axes) if hasattr(axes, "__len__") else [axes]
    for ax, (rule, by_rank) in zip(axes, results.items()):
        for r, losses in by_rank.items():
            ax.plot(lrs, losses, marker="o", ms=3, label=f"r = {r}")
        ax.set(xscale="log", yscale="log", xlabel="learning rate", title=f"update scaled by {'alpha / r' if rule == 'alpha/r' else 'alpha (no 1/r)'}")
    axes[0].set_ylabel("MSE after the same number of steps")
    axes[-1].legend(fontsize=8)
    return axes
