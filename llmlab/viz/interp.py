"""Plots for lesson 19 (interpretability) and its head explorer: training curves with the phase
change, per-token loss, head-score and patching heatmaps, the logit lens per layer, and a widget that
shows a chosen head's pattern beside what zeroing it does to the loss.

Left out on purpose: interactive circuit diagrams, attribution graphs, anything needing a browser
library beyond ipywidgets.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch


def plot_phase_change(history: list[dict], ax=None):
    """Loss on the first and the repeated half, and the best previous-token and induction scores, by step."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.5))
    steps = [h["step"] for h in history]
    ax.plot(steps, [h["loss_first"] for h in history], label="loss, first copy (random)")
    ax.plot(steps, [h["loss_repeat"] for h in history], label="loss, second copy (repeated)")
    ax.set_xlabel("training step")
    ax.set_ylabel("cross-entropy (nats)")
    ax2 = ax.twinx()
    ax2.plot(steps, [h["prev"] for h in history], "--", color="tab:green", label="best previous-token score (layer 0)")
    ax2.plot(steps, [h["induction"] for h in history], "--", color="tab:red", label="best induction score (layer 1)")
    ax2.set_ylim(0, 1)
    ax2.set_ylabel("score")
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(lines, [line.get_label() for line in lines], fontsize=8, loc="center right")
    ax.set_title("the phase change: induction heads form, the repeated half becomes predictable")
    return ax


def plot_per_token_loss(losses: dict[str, torch.Tensor], seq_len: int, ax=None):
    """{label: per-position loss [T - 1]} on BOS + segment + segment; the line marks where the copy starts."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3))
    for label, loss in losses.items():
        ax.plot(range(1, len(loss) + 1), loss.tolist(), marker=".", label=label)
    ax.axvline(seq_len + 1.5, color="grey", ls=":")
    ax.set_xlabel("position of the predicted token")
    ax.set_ylabel("loss (nats)")
    ax.legend(fontsize=8)
    return ax


def plot_head_scores(scores: dict[str, torch.Tensor], vmax: float | None = 1.0):
    """One heatmap [L, H] per score."""
    fig, axes = plt.subplots(1, len(scores), figsize=(3.2 * len(scores), 2.6), squeeze=False)
    for ax, (name, s) in zip(axes[0], scores.items()):
        im = ax.imshow(s.detach().numpy(), cmap="viridis", vmin=0, vmax=vmax, aspect="auto")
        for (i, j), v in __import__("numpy").ndenumerate(s.detach().numpy()):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="w" if v < 0.6 * (vmax or s.max().item()) else "k", fontsize=7)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        fig.colorbar(im, ax=ax, fraction=0.05)
    fig.tight_layout()
    return fig


def plot_score_map(s: torch.Tensor, title: str, ax=None, cmap: str = "viridis"):
    """A big [L, H] score map without the numbers (SmolLM2's 30 x 9 heads)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 6))
    im = ax.imshow(s.numpy(), cmap=cmap, vmin=0, vmax=1, aspect="auto")
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title(title, fontsize=9)
    plt.colorbar(im, ax=ax, fraction=0.05)
    return ax


def plot_lens(reports: dict[str, dict], key: str = "loss", ax=None, ylabel: str | None = None):
    """{label: lens_report} -> one line per label of reports[label][key] by layer (0 = embeddings)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    for label, rep in reports.items():
        ax.plot(range(len(rep[key])), rep[key].tolist(), marker=".", label=label)
    ax.set_xlabel("layer (0 = the embeddings)")
    ax.set_ylabel(ylabel or key)
    ax.legend(fontsize=8)
    return ax


def plot_patching(res: torch.Tensor, positions: Sequence[str], layers: Sequence[str], title: str, ax=None):
    """The normalised patching metric [layers, positions], red = restores the clean answer."""
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 2.8))
    im = ax.imshow(res.numpy(), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    ax.set_xticks(range(len(positions)), positions, rotation=45, fontsize=8)
    ax.set_yticks(range(len(layers)), layers, fontsize=8)
    ax.set_title(title, fontsize=9)
    plt.colorbar(im, ax=ax, fraction=0.03)
    return ax


def head_explorer(model, idx: torch.Tensor, tokens: Sequence[str], losses_ablated: torch.Tensor, base_loss: float, scores: dict[str, torch.Tensor],
                  pattern: torch.Tensor):
    """Dropdowns for layer and head -> that head's attention pattern on idx, its scores, and the loss
    with it zeroed (losses_ablated[L, H]) against base_loss. Returns the widget after displaying it."""
    import ipywidgets as widgets
    from IPython.display import display

    from llmlab.viz import show_in

    L, H = pattern.shape[:2]
    layer = widgets.Dropdown(options=list(range(L)), value=0, description="layer")
    head = widgets.Dropdown(options=list(range(H)), value=0, description="head")
    out = widgets.Output()

    def draw(*_):
        li, h = layer.value, head.value
        fig, ax = plt.subplots(figsize=(5.5, 4.5))
        ax.imshow(pattern[li, h].numpy(), cmap="Blues", vmin=0, vmax=1)
        ax.set_xlabel("key position")
        ax.set_ylabel("query position")
        s = ", ".join(f"{k} {v[li, h]:.2f}" for k, v in scores.items())
        d = losses_ablated[li, h].item() - base_loss
        ax.set_title(f"layer {li}, head {h}: {s}\nzeroed: loss {base_loss:.3f} -> {losses_ablated[li, h]:.3f} ({d:+.3f})", fontsize=8)
        fig.tight_layout()
        show_in(out, fig)

    for w in (layer, head):
        w.observe(draw, names="value")
    draw()
    ui = widgets.VBox([widgets.HBox([layer, head]), out])
    display(ui)
    return ui
