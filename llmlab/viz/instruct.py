"""Plots of lesson 13: scores with their intervals, against a baseline.

`plot_scores(ax, names, scores, baseline=...)` draws one point per score with its 95 % interval as an error bar
(each score a (value, low, high) triple, as llmlab.stats.bootstrap_ci returns and a Wilson interval gives), and
the baseline as a dashed line or as grey points of their own.

Left out on purpose: anything but points with error bars (bars hide the interval's asymmetry near 0 and 1).
"""

from __future__ import annotations

from collections.abc import Sequence


def plot_scores(ax, names: Sequence[str], scores: Sequence[tuple[float, float, float]], title: str = "", ylabel: str = "",
                baseline: float | Sequence[tuple[float, float, float]] | None = None, baseline_label: str = "baseline",
                label: str | None = None, color: str = "C0") -> None:
    """Points with 95 % error bars at x = 0..n-1; `baseline`: one number (a dashed line) or one triple per name."""
    if len(names) != len(scores):
        raise ValueError(f"names, scores: {len(names)} names for {len(scores)} scores; expected one score per name")
    xs = list(range(len(names)))
    v = [s[0] for s in scores]
    err = [[s[0] - s[1] for s in scores], [s[2] - s[0] for s in scores]]
    ax.errorbar(xs, v, yerr=err, fmt="o", capsize=4, color=color, label=label)
    if isinstance(baseline, (int, float)):
        ax.axhline(baseline, ls="--", color="grey", label=baseline_label)
    elif baseline is not None:
        b = [s[0] for s in baseline]
        berr = [[s[0] - s[1] for s in baseline], [s[2] - s[0] for s in baseline]]
        ax.errorbar([x + 0.15 for x in xs], b, yerr=berr, fmt="s", capsize=3, color="grey", label=baseline_label)
    ax.set_xticks(xs, names)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
