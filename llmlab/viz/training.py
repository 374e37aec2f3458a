"""Pictures of training: the learning-rate schedule, loss curves, and the speed / activation
memory of the loop's features side by side. The live loss curve of a run is `llmlab.train.LossPlot`
(`train(..., plot=True)`); `plot_history` draws a finished run's history the same way, and
`plot_runs` several runs' on one axis (smoothed by `running_mean`, which says so in the label)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt


def plot_lr_schedule(lr_at: Callable[..., float], max_steps: int, ax=None, **schedule):
    """lr_at(step, **schedule) for step 0 .. max_steps + 10% (past the end: the floor)."""
    steps = list(range(int(max_steps * 1.1) + 1))
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3))
    ax.plot(steps, [lr_at(s, max_steps=max_steps, **schedule) for s in steps])
    if schedule.get("warmup_steps"):
        ax.axvline(schedule["warmup_steps"], color="0.6", ls=":", label="end of warmup")
    ax.axvline(max_steps, color="0.3", ls="--", label="max_steps")
    ax.set(xlabel="optimizer step", ylabel="learning rate", title="Linear warmup, then cosine decay to min_lr")
    ax.legend(fontsize=8)
    return ax


def running_mean(values: Sequence[float], window: int) -> list[float]:
    """The mean of the last `window` values at each step (fewer at the start): a smoothed curve
    that never looks ahead, so a jump shows where it happened.

    >>> running_mean([1, 2, 3, 4], 2)
    [1.0, 1.5, 2.5, 3.5]
    """
    if not isinstance(window, int) or window < 1:
        raise ValueError(f"window={window!r}: expected a positive integer")
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_runs(runs: dict[str, Sequence[dict]], ax=None, window: int = 20, title: str = "Training loss", styles: dict[str, dict] | None = None):
    """The training loss of several `train()` histories, {label: history}, each as a running
    mean over `window` steps (the y label says so); `styles` gives per-label plot keywords."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3))
    for label, history in runs.items():
        losses = [r["train_loss"] for r in history]
        ax.plot([r["step"] for r in history], running_mean(losses, window), lw=1.5, label=label, **(styles or {}).get(label, {}))
    ax.set(xlabel="step", ylabel=f"training loss, mean of {window} steps" if window > 1 else "training loss", title=title)
    ax.legend(fontsize=8)
    return ax


def plot_history(history: Sequence[dict], ax=None, title: str = "Training loss"):
    """Train loss per step and validation loss at each evaluation of a `train()` history."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3))
    ax.plot([r["step"] for r in history], [r["train_loss"] for r in history], lw=1, alpha=0.7, label="train")
    val = [r for r in history if "val_loss" in r]
    if val:
        ax.plot([r["step"] for r in val], [r["val_loss"] for r in val], "o-", ms=3, label="validation")
    ax.set(xlabel="step", ylabel="cross-entropy (nats / token)", title=title)
    ax.legend()
    return ax


def plot_features(rows: Sequence[dict], title: str = "One feature at a time"):
    """Two bar charts from rows {"feature", "tokens_per_s", "activation_mb"}: speed and memory."""
    names = [r["feature"] for r in rows]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3), sharey=True)
    a1.barh(names, [r["tokens_per_s"] for r in rows], color="tab:blue")
    a1.set(xlabel="tokens / s (higher is better)", title="speed")
    a2.barh(names, [r["activation_mb"] for r in rows], color="tab:orange")
    a2.set(xlabel="MB saved for backward (lower is better)", title="activation memory")
    a1.invert_yaxis()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
