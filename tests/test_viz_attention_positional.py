"""The pictures of lessons 03 and 04 say what the prose says they say: heatmaps meant to be compared
share one colour scale and a colour bar, masked cells are told apart from large penalties, labels are
where a reader looks for them, and legends stay off the data."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from llmlab.models.gpt import GPT, GPTConfig
from llmlab.viz import attention as VA
from llmlab.viz import positional as VP


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _colorbars(fig):
    return [a for a in fig.axes if a.get_label() == "<colorbar>"]


def _patterns(n: int, Tq: int, Tk: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.softmax(3 * torch.randn(Tq, Tk, generator=g), -1) for _ in range(n)]


# ----------------------------------------------------------------------------- lesson 03
def test_plot_attention_takes_a_common_vmax():
    ax = VA.plot_attention(_patterns(1, 4, 6, 0)[0] * 0.5, list("abcd"), list("uvwxyz"), vmax=1.0)
    assert ax.images[0].get_clim() == (0.0, 1.0)  # not the matrix's own max (at most 0.5)


def test_attention_row_shares_one_scale_and_one_colour_bar():
    ws = _patterns(3, 5, 7, seed=1)
    ws[1] = ws[1] * 0.3  # a weaker pattern must look weaker, not be stretched to full colour
    fig = VA.plot_attention_row(ws, ["a", "b", "c"], list("abcde"), list("uvwxyzq"))
    heat = [a for a in fig.axes if a.get_label() != "<colorbar>"]
    assert [a.get_title() for a in heat] == ["a", "b", "c"]
    top = max(float(w.max()) for w in ws)
    assert [a.images[0].get_clim() for a in heat] == [(0.0, pytest.approx(top))] * 3
    assert len(_colorbars(fig)) == 1 and _colorbars(fig)[0].get_ylabel() == "attention weight"
    assert heat[0].get_ylabel() and not heat[1].get_ylabel() and not heat[2].get_ylabel()
    assert [t.get_text() for t in heat[2].get_xticklabels()] == list("uvwxyzq")
    with pytest.raises(ValueError, match="titles"):
        VA.plot_attention_row(ws, ["only one"])


def test_short_labels_stay_upright_and_long_ones_turn():
    w = _patterns(1, 6, 6, seed=2)[0]
    ax = VA.plot_attention(w, "a cat sat on the mat".split())
    assert {t.get_rotation() for t in ax.get_xticklabels()} == {0.0}
    plt.close("all")
    ax = VA.plot_attention(w, ["attention", "is", "a", "weighted", "average", "here"])
    assert {t.get_rotation() for t in ax.get_xticklabels()} == {90.0}


def test_heads_are_labelled_on_the_outer_panels_with_one_colour_bar():
    L, H, T = 2, 3, 20
    tokens = list("The return statement")
    fig = VA.plot_heads(torch.softmax(torch.randn(L, H, T, T, generator=torch.Generator().manual_seed(3)), -1), tokens)
    heat = [a for a in fig.axes if a.get_label() != "<colorbar>"]
    assert len(heat) == L * H and len(_colorbars(fig)) == 1
    assert {a.images[0].get_clim() for a in heat} == {(0.0, 1.0)}
    labels = VA.token_labels(tokens)
    for k, ax in enumerate(heat):
        layer, head = divmod(k, H)
        x = [t.get_text() for t in ax.get_xticklabels()]
        y = [t.get_text() for t in ax.get_yticklabels()]
        assert x == (labels if layer == L - 1 else [""] * T)
        assert y == (labels if head == 0 else [""] * T)
        assert ax.title.get_fontsize() >= 8


def test_explorer_static_view_shows_labelled_tokens():
    pytest.importorskip("ipywidgets")

    class Chars:
        def encode(self, s):
            return [ord(c) % 50 for c in s]

        def decode(self, ids):
            return "".join(chr(i + 48) for i in ids)

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, block_size=64, n_layer=2, n_head=2, n_embd=16))
    VA.attention_explorer(model, Chars(), ["a sentence longer than twenty characters"], static_tokens=12)
    fig = plt.gcf()
    heat = [a for a in fig.axes if a.get_label() != "<colorbar>"]
    assert len(heat) == 4 and len(_colorbars(fig)) == 1
    assert len([t for t in heat[0].get_yticklabels() if t.get_text()]) == 12


# ----------------------------------------------------------------------------- lesson 04
def test_alibi_masked_cells_are_grey_not_the_bottom_of_the_scale():
    fig = VP.plot_alibi(n_heads=8, T=12, heads=(0, 3, 7))
    heat = [a for a in fig.axes if a.get_label() != "<colorbar>"]
    assert len(heat) == 3 and len(_colorbars(fig)) == 1
    above = np.triu(np.ones((12, 12), dtype=bool), 1)  # j > i: masked
    for ax in heat:
        im = ax.images[0]
        arr = im.get_array()
        assert np.array_equal(np.ma.getmaskarray(arr), above)
        assert im.get_clim() == heat[0].images[0].get_clim()  # one scale for all heads
        bad, low = im.get_cmap().get_bad(), im.get_cmap()(0.0)
        assert not np.allclose(bad, low)
    assert heat[0].images[0].get_clim()[0] == pytest.approx(-0.5 * 11)  # head 0, slope 1/2, distance 11
    assert heat[0].get_ylabel() and not heat[1].get_ylabel()  # no y label between panels, over the ticks
    assert [a.get_title() for a in heat] == ["head 0: m = 0.5", "head 3: m = 0.0625", "head 7: m = 0.00391"]


def test_rope_angles_are_strips_with_periods_and_no_legend():
    ax = VP.plot_rope_angles(T=64, D=64)
    assert ax.get_legend() is None
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[0] == "pair 0\nperiod 6.28" and labels[-1].startswith("pair 31\nperiod 47,")
    for line in ax.get_lines():  # each strip keeps to its own band of height 2
        y = line.get_ydata()
        assert y.max() - y.min() <= 2 + 1e-6
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()


def test_rope_scores_legend_sits_above_the_curves():
    ax = VP.plot_rope_scores(D=32, max_distance=20, offsets=(0, 7))
    top_of_data = max(line.get_ydata().max() for line in ax.get_lines())
    assert ax.get_ylim()[1] > top_of_data + 0.2 * (top_of_data - min(line.get_ydata().min() for line in ax.get_lines()))
    assert ax.get_legend() is not None


def test_overview_titles_are_readable_and_heatmaps_have_colour_bars():
    fig = VP.plot_overview()
    panels = [a for a in fig.axes if a.get_label() != "<colorbar>"]
    assert len(panels) == 3 and len(_colorbars(fig)) == 2  # sinusoidal table and ALiBi bias
    assert all(a.title.get_fontsize() >= 8 and a.get_title() for a in panels)
    assert np.ma.getmaskarray(panels[2].images[0].get_array()).sum() == 16 * 15 // 2


def test_loss_by_position_marks_the_training_context_and_keeps_the_legend_off_the_lines():
    curves = {"long": torch.linspace(3, 2, 32), "short": torch.linspace(3, 2.5, 16)}
    ax = VP.plot_loss_by_position(curves, train_context=16, bucket=4)
    lines = [ln for ln in ax.get_lines() if ln.get_label() in curves]
    assert [len(ln.get_xdata()) for ln in lines] == [8, 4]
    np.testing.assert_allclose(lines[0].get_ydata()[0], curves["long"][:4].mean().item(), rtol=1e-6)
    assert any(np.allclose(ln.get_xdata(), 15.5) for ln in ax.get_lines() if ln not in lines)
    legend = ax.get_legend()
    assert legend is not None and legend.get_bbox_to_anchor().x0 > ax.get_window_extent().x1 - 1
