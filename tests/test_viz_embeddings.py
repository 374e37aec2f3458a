"""llmlab.viz.embeddings: label spreading (known answers, no overlaps) and the PCA plot's labels."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from llmlab.viz import embeddings as ve  # noqa: E402


def overlapping_pairs(centres: torch.Tensor, sizes: torch.Tensor, tol: float = 1e-6) -> int:
    """How many pairs of boxes (centres[N, 2], sizes[N, 2]) overlap by more than tol on both axes."""
    d = (centres[:, None, :] - centres[None, :, :]).abs()
    reach = (sizes[:, None, :] + sizes[None, :, :]) / 2
    clash = ((reach - d) > tol).all(-1)
    clash.fill_diagonal_(False)
    return int(clash.sum()) // 2


def test_spread_labels_leaves_separate_labels_alone():
    xy = torch.tensor([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0]])  # boxes of 10 x 10: none touches another
    assert torch.equal(ve.spread_labels(xy, (10.0, 10.0)), torch.zeros(3, 2, dtype=torch.float64))


def test_spread_labels_separates_two_labels_on_one_spot_symmetrically():
    off = ve.spread_labels(torch.zeros(2, 2), (10.0, 6.0))
    # the shorter way out of a 10 x 6 box is vertical: the two move apart along y, by the same amount
    assert off[:, 0].abs().max() == 0
    torch.testing.assert_close(off[0], -off[1], atol=1e-12, rtol=0)
    assert (off[1, 1] - off[0, 1]).abs() >= 6.0


def test_spread_labels_clears_a_crowd():
    gen = torch.Generator().manual_seed(3)
    xy = torch.randn(40, 2, generator=gen) * 15  # 40 labels in a crowd of radius ~15
    sizes = torch.rand(40, 2, generator=gen) * 4 + torch.tensor([6.0, 9.0])  # (N, 2): each its own size
    assert overlapping_pairs(xy.double(), sizes.double()) > 10
    off = ve.spread_labels(xy, sizes)
    assert off.shape == (40, 2)
    assert overlapping_pairs(xy.double() + off, sizes.double()) == 0
    assert off.abs().max() < 100  # moved apart, not scattered
    assert torch.equal(ve.spread_labels(xy, sizes), off)  # deterministic


def test_spread_labels_names_bad_arguments():
    with pytest.raises(ValueError, match=r"xy: expected shape \(N, 2\)"):
        ve.spread_labels(torch.zeros(3), (1.0, 1.0))
    with pytest.raises(ValueError, match="sizes: expected positive"):
        ve.spread_labels(torch.zeros(3, 2), (0.0, 1.0))


def test_plot_projection_labels_do_not_overlap():
    gen = torch.Generator().manual_seed(0)
    labels = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789 .,;")
    points = torch.randn(len(labels), 2, generator=gen)
    points[:15] = points[:15] * 0.05  # a tight cluster, as the dense middle of a real PCA
    fig = ve.plot_projection(points, labels)
    ax = fig.axes[0]
    fig.canvas.draw()  # annotations find their place on the page when drawn
    renderer = fig.canvas.get_renderer()
    texts = list(ax.texts)
    assert sorted(t.get_text() for t in texts) == sorted(ve.char_label(c) for c in labels)
    boxes = [Text.get_window_extent(t, renderer) for t in texts]  # the text alone, not its leader line
    centres = torch.tensor([[(b.x0 + b.x1) / 2, (b.y0 + b.y1) / 2] for b in boxes], dtype=torch.float64)
    sizes = torch.tensor([[b.width, b.height] for b in boxes], dtype=torch.float64)
    assert overlapping_pairs(centres, sizes, tol=0.5) == 0  # half a pixel: rounding of the rendered boxes
    legend = ax.get_legend()
    assert legend is not None and legend.get_window_extent(renderer).x0 >= ax.get_window_extent(renderer).x1  # beside the data
    w, h = fig.get_size_inches()
    assert w <= 8 and h <= 4
    plt.close(fig)
