"""llmlab.viz.training: the running mean (known answers) and the several-runs plot."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from llmlab.viz.training import plot_runs, running_mean  # noqa: E402


def test_running_mean_known_answers():
    assert running_mean([1, 2, 3, 4], 2) == [1.0, 1.5, 2.5, 3.5]
    assert running_mean([4.0, 0.0, 2.0], 1) == [4.0, 0.0, 2.0]  # window 1: the values themselves
    assert running_mean([3.0, 1.0, 2.0], 10) == [3.0, 2.0, 2.0]  # window longer than the data: means so far
    assert running_mean([], 5) == []


def test_running_mean_never_looks_ahead():
    values = [1.0] * 10 + [5.0] + [1.0] * 10
    smooth = running_mean(values, 4)
    assert smooth[:10] == [1.0] * 10  # nothing before the jump moves
    assert smooth[10] == pytest.approx(2.0) and smooth[14] == pytest.approx(1.0)


@pytest.mark.parametrize("window", [0, -1, 2.5])
def test_running_mean_names_a_bad_window(window):
    with pytest.raises(ValueError, match="window="):
        running_mean([1.0, 2.0], window)


def test_plot_runs_one_line_per_run_labelled_and_smoothed():
    runs = {"a": [{"step": s, "train_loss": 3.0 - 0.01 * s} for s in range(50)],
            "b": [{"step": s, "train_loss": 3.0} for s in range(30)]}
    ax = plot_runs(runs, window=10, styles={"b": {"ls": "--"}})
    lines = ax.get_lines()
    assert [ln.get_label() for ln in lines] == ["a", "b"]
    assert len(lines[0].get_xdata()) == 50 and lines[1].get_linestyle() == "--"
    assert lines[0].get_ydata()[-1] == pytest.approx(3.0 - 0.01 * 44.5)  # the mean of steps 40..49
    assert "mean of 10 steps" in ax.get_ylabel()
    plt.close(ax.figure)
