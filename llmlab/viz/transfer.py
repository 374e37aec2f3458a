"""Pictures of lesson 12: accuracies with their 95 % intervals (`plot_scores`), learning curves over
label budgets with interval bands and one dot per seed (`plot_learning_curves`), and accuracy per
phenomenon of the procedural reviews (`plot_slices`).

Inputs are plain numbers (accuracy, low, high), as llmlab.train.transfer's Score and summarize_curve
give them. Left out on purpose: interactive widgets, confusion matrices.
"""

from __future__ import annotations

import matplotlib.pyplot as plt


def plot_scores(scores: dict[str, tuple[float, float, float]], baseline: float | None = None, title: str = "", ax=None):
    """Horizontal bars of {method: (accuracy, low, high)} with the interval as an error bar; `baseline`
    (e.g. the majority class) as a dashed line."""
    if not scores:
        raise ValueError("scores: expected at least one {method: (accuracy, low, high)} entry")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.42 * len(scores) + 1.2))
    names = list(scores)[::-1]  # the first on top
    acc = [100 * scores[n][0] for n in names]
    err = [[max(0.0, 100 * (scores[n][0] - scores[n][1])) for n in names], [max(0.0, 100 * (scores[n][2] - scores[n][0])) for n in names]]
    ax.barh(range(len(names)), acc, xerr=err, capsize=3, color="tab:blue", alpha=0.8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    if baseline is not None:
        ax.axvline(100 * baseline, ls="--", color="grey", lw=1, label=f"majority class {baseline:.0%}")
        ax.legend(fontsize=8, loc="lower right")
    ax.set(xlabel="test accuracy (%), 95 % Wilson interval", xlim=(40, 100), title=title)
    return ax


def plot_learning_curves(curves: dict[str, list[dict]], runs: dict[str, list[dict]] | None = None,
                         flat: dict[str, float] | None = None, title: str = "", ax=None):
    """One line per method: the mean accuracy over seeds at each label budget (summarize_curve's rows: budget,
    mean, low, high), a band for the Wilson interval, one dot per seed (learning_curve's rows, if given), and
    horizontal lines for methods that use no labels (`flat`: {name: accuracy})."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    for i, (name, rows) in enumerate(curves.items()):
        if not rows:
            raise ValueError(f"curves[{name!r}]: expected summarize_curve rows, got none")
        color = f"C{i}"
        b = [r["budget"] for r in rows]
        ax.plot(b, [100 * r["mean"] for r in rows], marker="o", ms=4, color=color, label=name)
        ax.fill_between(b, [100 * r["low"] for r in rows], [100 * r["high"] for r in rows], color=color, alpha=0.15)
        if runs and name in runs:
            ax.scatter([r["budget"] for r in runs[name]], [100 * r["accuracy"] for r in runs[name]], s=8, color=color, alpha=0.6)
    for j, (name, acc) in enumerate((flat or {}).items()):
        ax.axhline(100 * acc, ls="--", lw=1, color=f"C{len(curves) + j}", label=f"{name} (no labels)")
    ax.set_xscale("log", base=2)
    ax.set(xlabel="labelled training sentences", ylabel="test accuracy (%)", title=title)
    ax.legend(fontsize=8)
    return ax


def plot_slices(slices: dict[str, dict[str, tuple[float, float, float]]], phenomena: list[str], title: str = "", ax=None):
    """Grouped bars: for each method, its accuracy (with interval) on each phenomenon. slices: {method: {phenomenon: (acc, low, high)}}."""
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.4))
    width = 0.8 / max(len(slices), 1)
    for i, (name, by) in enumerate(slices.items()):
        missing = [p for p in phenomena if p not in by]
        if missing:
            raise ValueError(f"slices[{name!r}]: no score for {missing}; expected every phenomenon in {phenomena}")
        xs = [j + (i - (len(slices) - 1) / 2) * width for j in range(len(phenomena))]
        acc = [100 * by[p][0] for p in phenomena]
        err = [[max(0.0, 100 * (by[p][0] - by[p][1])) for p in phenomena], [max(0.0, 100 * (by[p][2] - by[p][0])) for p in phenomena]]
        # (max: at k = n the interval's top is 1 up to rounding, a hair below the point itself)
        ax.bar(xs, acc, width=width, yerr=err, capsize=2, label=name, color=f"C{i}", alpha=0.85)
    ax.axhline(50, ls="--", lw=1, color="grey")
    ax.set_xticks(range(len(phenomena)), phenomena)
    ax.set(ylabel="test accuracy (%)", ylim=(0, 105), title=title)
    ax.legend(fontsize=7, ncol=2, loc="lower left")
    return ax
