"""Pictures of lesson 16 (DPO), from the records of llmlab.train.dpo.dpo_run:

    plot_training       the loss and the held-out implicit-reward accuracy over steps (noise ceiling dashed)
    plot_logps          the mean change in log π of the chosen and of the rejected responses: both can fall
    plot_beta_sweep     win rate against the reference (Wilson 95 %), KL and response length over β
    plot_frontier       gold reward against KL to the reference: DPO's runs and, when given, PPO's
    plot_lengths        the distribution of response lengths: reference, summed and per-token-mean DPO

Left out on purpose: widgets, and per-token pictures of the log-ratios.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt


def _records(records: Sequence[dict]) -> Sequence[dict]:
    if not records:
        raise ValueError("records: expected at least one DPO run (llmlab.train.dpo.dpo_run)")
    return records


def plot_training(record: dict, noise_ceiling: float | None = None, axes=None):
    """Two panels: the training loss (ln 2 dashed: policy = reference) and the held-out implicit-reward accuracy."""
    h = record["history"]
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9.6, 3.2))
    steps = [r["step"] for r in h if "loss" in r]
    axes[0].plot(steps, [r["loss"] for r in h if "loss" in r], "o-", ms=3)
    axes[0].axhline(0.6931, ls="--", color="k", lw=0.8, label="ln 2 (policy = reference)")
    axes[0].set(xlabel="step", ylabel="DPO loss (mean over the logged steps)", title=record["label"])
    axes[0].legend(fontsize=8)
    if "heldout_acc" in h[0]:
        axes[1].plot([r["step"] for r in h], [100 * r["heldout_acc"] for r in h], "o-", ms=3, color="tab:green", label="held-out pairs")
    if noise_ceiling is not None:
        axes[1].axhline(100 * noise_ceiling, ls="--", color="k", lw=0.8, label="noise ceiling")
    axes[1].axhline(50, ls=":", color="gray", lw=0.8, label="chance")
    axes[1].set(xlabel="step", ylabel="implicit-reward accuracy (%)", title="Held-out pairs (against their labels)")
    axes[1].legend(fontsize=8)
    return axes


def plot_logps(records: Sequence[dict], ax=None):
    """Mean log π(y) − log π_ref(y) over a fixed set of train pairs, chosen (solid) and rejected (dashed), per run."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 3.4))
    for i, rec in enumerate(_records(records)):
        h, colour = rec["history"], f"C{i}"
        steps = [r["step"] for r in h]
        ax.plot(steps, [r["chosen_logp"] for r in h], "-", color=colour, label=f"{rec['label']}: chosen")
        ax.plot(steps, [r["rejected_logp"] for r in h], "--", color=colour, label="rejected")
    ax.axhline(0, color="k", lw=0.6)
    ax.set(xlabel="step", ylabel="log π(y) − log π_ref(y)  (nats, mean over pairs)", title="What DPO does to the training responses")
    ax.legend(fontsize=7, ncol=2)
    return ax


def plot_beta_sweep(records: Sequence[dict], reference: dict, axes=None):
    """Three panels over β (log scale), summed-log-prob runs only: the gold-reward win rate against the reference's
    samples (Wilson 95 %; the reference against itself dashed), KL to the reference, and response length."""
    runs = [r for r in _records(records) if r["config"]["logprob"] == "sum"]
    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    b = [r["config"]["beta"] for r in runs]

    def bars(ax, ys, los, his, scale=1.0):
        ax.errorbar(b, [scale * y for y in ys], yerr=[[scale * (y - lo) for y, lo in zip(ys, los)], [scale * (hi - y) for y, hi in zip(ys, his)]],
                    fmt="o-", capsize=3)
        ax.set_xscale("log")

    bars(axes[0], [r["win"]["rate"] for r in runs], [r["win"]["lo"] for r in runs], [r["win"]["hi"] for r in runs], 100)
    sw = reference["self_win"]
    axes[0].axhline(100 * sw["rate"], ls="--", color="k", lw=0.8, label=f"reference vs itself ({sw['rate']:.0%})")
    axes[0].set(xlabel="β", ylabel="gold win rate vs reference (%)", title="Win rate of DPO's samples")
    axes[0].legend(fontsize=8)
    bars(axes[1], [r["eval"]["kl"]["mean"] for r in runs], [r["eval"]["kl"]["lo"] for r in runs], [r["eval"]["kl"]["hi"] for r in runs])
    axes[1].set(xlabel="β", ylabel="KL(π ‖ π_ref) per response (nats)", title="Distance from the reference")
    bars(axes[2], [r["eval"]["length"]["mean"] for r in runs], [r["eval"]["length"]["lo"] for r in runs],
         [r["eval"]["length"]["hi"] for r in runs])
    axes[2].axhline(reference["length"]["mean"], ls="--", color="k", lw=0.8, label="reference")
    axes[2].set(xlabel="β", ylabel="response length (characters)", title="Length drift")
    axes[2].legend(fontsize=8)
    return axes


def plot_frontier(records: Sequence[dict], reference: dict, ppo: Sequence[dict] | None = None, ax=None):
    """Mean gold reward of the samples (bootstrap 95 %) against their KL to the reference: each DPO run labelled by
    β, the reference at KL 0, and PPO's runs (dicts with kl, gold, gold_lo, gold_hi, beta) when given."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 3.6))
    g = reference["gold"]
    ax.errorbar([0.0], [g["mean"]], yerr=[[g["mean"] - g["lo"]], [g["hi"] - g["mean"]]], fmt="ks", capsize=3, label="SFT reference")
    for marker, kind, colour in (("o", "sum", "tab:blue"), ("D", "mean", "tab:purple")):
        runs = [r for r in _records(records) if r["config"]["logprob"] == kind]
        if not runs:
            continue
        xs, ys = [r["eval"]["kl"]["mean"] for r in runs], [r["eval"]["gold"]["mean"] for r in runs]
        ax.errorbar(xs, ys, yerr=[[y - r["eval"]["gold"]["lo"] for y, r in zip(ys, runs)], [r["eval"]["gold"]["hi"] - y for y, r in zip(ys, runs)]],
                    fmt=marker, color=colour, capsize=3, label="DPO" + (" (per-token mean)" if kind == "mean" else ""))
        for x, y, r in zip(xs, ys, runs):
            ax.annotate(f"β={r['config']['beta']:g}", (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7, color=colour)
    if ppo:
        xs, ys = [p["kl"] for p in ppo], [p["gold"] for p in ppo]
        ax.errorbar(xs, ys, yerr=[[y - p.get("gold_lo", y) for y, p in zip(ys, ppo)], [p.get("gold_hi", y) - y for y, p in zip(ys, ppo)]],
                    fmt="^", color="tab:red", capsize=3, label="PPO (lesson 15)")
        for x, y, p in zip(xs, ys, ppo):
            ax.annotate(f"β={p['beta']:g}", (x, y), textcoords="offset points", xytext=(5, -10), fontsize=7, color="tab:red")
    ax.set(xlabel="KL(π ‖ π_ref) per response (nats)", ylabel="mean gold reward of the samples",
           title="Gold reward per unit of KL" + ("" if ppo else " (DPO only: no PPO runs given)"))
    ax.legend(fontsize=8)
    return ax


def plot_lengths(records: Sequence[dict], reference: dict, ax=None, bins: int = 20):
    """Histograms of response lengths (characters): the reference's samples and each given run's."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 3.2))
    ax.hist(reference["lengths"], bins=bins, histtype="step", color="k", lw=1.5, label=f"reference (mean {reference['length']['mean']:.0f})")
    for i, rec in enumerate(_records(records)):
        ax.hist(rec["eval"]["lengths"], bins=bins, histtype="step", color=f"C{i}", label=f"{rec['label']} (mean {rec['eval']['length']['mean']:.0f})")
    ax.set(xlabel="response length (characters)", ylabel="samples", title="Response lengths")
    ax.legend(fontsize=8)
    return ax
