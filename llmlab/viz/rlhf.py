"""Pictures of lesson 15: RLHF runs as they train (`plot_training`: proxy reward, gold reward, KL per batch),
the gold and proxy rewards against the KL to the reference (`plot_reward_vs_kl`, Gao et al. 2022's picture of
reward over-optimisation), the reward model's loss (`plot_rm_loss`) and the beta sweep's end points
(`plot_sweep`).

Left out on purpose: interactive widgets and smoothing beyond a short running mean (the raw batches are noisy,
and the lesson says so).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt


def _smooth(xs: Sequence[float], k: int = 3) -> list[float]:
    """Running mean over the last k values (k=1: unchanged)."""
    return [sum(xs[max(0, i - k + 1): i + 1]) / len(xs[max(0, i - k + 1): i + 1]) for i in range(len(xs))]


def _label(rec: dict) -> str:
    c = rec["config"]
    return f"{c['method']} β={c['beta']:g}"


def plot_training(records: Sequence[dict], smooth: int = 3, axes=None):
    """Three panels over the samples drawn: proxy (learned) reward, gold reward, KL to the reference (nats), one line per run."""
    if not records:
        raise ValueError("records: expected at least one rlhf_run record")
    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    for rec in records:
        h = rec["history"]
        x = [r["samples"] for r in h]
        for ax, key in zip(axes, ("proxy", "gold", "kl")):
            ax.plot(x, _smooth([r[key] for r in h], smooth), label=_label(rec), lw=1.4)
    for ax, title in zip(axes, ("proxy reward (the reward model)", "gold reward (never seen)", "KL to the reference (nats)")):
        ax.set(xlabel="responses sampled", title=title)
    axes[0].legend(fontsize=7)
    return axes


def plot_reward_vs_kl(records: Sequence[dict], smooth: int = 3, axes=None):
    """Proxy and gold reward of each batch against its KL to the reference: the proxy keeps climbing with KL; where
    the gold curve flattens or turns down while the proxy climbs, the policy is over-optimising the reward model."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9, 3.3), sharex=True)
    for rec in records:
        h = rec["history"]
        kl = _smooth([r["kl"] for r in h], smooth)
        axes[0].plot(kl, _smooth([r["proxy"] for r in h], smooth), ".-", ms=3, label=_label(rec))
        axes[1].plot(kl, _smooth([r["gold"] for r in h], smooth), ".-", ms=3, label=_label(rec))
    axes[0].set(xlabel="KL to the reference (nats)", ylabel="proxy reward", title="What the policy optimises")
    axes[1].set(xlabel="KL to the reference (nats)", ylabel="gold reward", title="What we wanted")
    axes[0].legend(fontsize=7)
    return axes


def plot_rm_loss(losses: Sequence[float], ax=None):
    """The Bradley-Terry loss per step (and ln 2, where a reward model that scores everything alike sits)."""
    import math

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    ax.plot(losses, lw=0.6, alpha=0.5, label="per step")
    ax.plot(_smooth(list(losses), 10), lw=1.5, label="running mean (10)")
    ax.axhline(math.log(2), ls="--", color="k", lw=0.8, label="ln 2 (no preference)")
    ax.set(xlabel="step", ylabel="-log σ(r_chosen - r_rejected)", title="Reward model training")
    ax.legend(fontsize=8)
    return ax


def plot_sweep(points: Sequence[dict], reference_gold: float | None = None, ax=None):
    """The end of each run (dicts with beta, kl, gold, gold_lo, gold_hi, as `rlhf.ppo_frontier` gives): gold reward
    with its 95 % interval against KL, labelled by beta; `reference_gold`: the SFT policy's, dashed."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.4))
    for p in points:
        ax.errorbar(p["kl"], p["gold"], yerr=[[p["gold"] - p["gold_lo"]], [p["gold_hi"] - p["gold"]]], fmt="o", capsize=3,
                    color="tab:blue" if p.get("method", "ppo") == "ppo" else "tab:orange")
        ax.annotate(f"β={p['beta']:g}", (p["kl"], p["gold"]), textcoords="offset points", xytext=(6, 4), fontsize=8)
    if reference_gold is not None:
        ax.axhline(reference_gold, ls="--", color="k", lw=0.8, label="SFT policy")
        ax.legend(fontsize=8)
    ax.set(xlabel="KL to the reference on test prompts (nats)", ylabel="gold reward (mean, 95 %)", title="The β sweep")
    return ax
