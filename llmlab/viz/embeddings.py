"""Pictures of embeddings (chapter 02): the bigram table, and where tokens sit.

* `plot_bigram`: the count (or probability) table as a heatmap.
* `plot_projection`: tokens placed by the 2-D PCA of their vectors, coloured by kind, their labels
  nudged apart by `spread_labels` so that none hides another.
* `plot_neighbours`: the nearest neighbours of a few tokens, as bars (the static fallback
  of the explorer).
* `neighbourhood_explorer`: an ipywidgets picker: choose a token, see its neighbours.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch

from llmlab.nn.embeddings import nearest_neighbours

GROUP_COLOURS = {"vowel": "tab:red", "consonant": "tab:blue", "upper": "tab:purple", "digit": "tab:green",
                 "space": "tab:grey", "punctuation": "tab:orange", "other": "black"}


def char_label(c: str) -> str:
    """A visible label for a character: '␣' for a space, '↵' for a newline."""
    return {" ": "␣", "\n": "↵", "\t": "→"}.get(c, c)


def char_group(c: str) -> str:
    """What kind of character this is (for colouring plots)."""
    if c.isdigit():
        return "digit"
    if c.isspace():
        return "space"
    if c.isalpha():
        if c.isupper():
            return "upper"
        return "vowel" if c.lower() in "aeiou" else "consonant"
    if len(c) == 1 and not c.isalnum():
        return "punctuation"
    return "other"


def plot_bigram(table: torch.Tensor, labels: Sequence[str], title: str = "Bigram counts: row = this character, column = the next"):
    """A heatmap of a [V, V] table, rows and columns labelled. Integer counts are shown as
    log10(1 + count) (they span 0..100k); a float table (e.g. log-probabilities) as it is."""
    counts = not table.is_floating_point()
    shown = (table.detach().double() + 1).log10() if counts else table.detach().double()
    fig, ax = plt.subplots(figsize=(5, 4))
    im = ax.imshow(shown.numpy(), cmap="Blues")
    ax.set_xticks(range(len(labels)), [char_label(c) for c in labels], fontsize=7)
    ax.set_yticks(range(len(labels)), [char_label(c) for c in labels], fontsize=7)
    ax.set_xlabel("next character")
    ax.set_ylabel("current character")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.8, label="log10(1 + count)" if counts else "value")
    fig.tight_layout()
    return fig


def spread_labels(xy: torch.Tensor, sizes, iters: int = 300, pull: float = 0.02) -> torch.Tensor:
    """Offsets[N, 2] that move label boxes centred at xy[N, 2] apart so that none overlaps
    another (where that can be had). `sizes`: one (width, height) for all, or sizes[N, 2];
    same units as xy (points on the page, say).

    Some hundred rounds of pushing every overlapping pair apart, along the axis where they
    overlap less, and (in the first half) pulling each label a little back to its point: the simple,
    deterministic core of what adjustText does.

    >>> spread_labels(torch.tensor([[0.0, 0.0], [0.0, 0.0]]), (10.0, 10.0)).abs().max() > 0
    tensor(True)
    """
    if xy.dim() != 2 or xy.size(1) != 2:
        raise ValueError(f"xy: expected shape (N, 2), got {tuple(xy.shape)}")
    anchor = xy.detach().double()
    n = anchor.size(0)
    wh = torch.as_tensor(sizes, dtype=torch.float64).expand(n, 2)  # (N, 2)
    if (wh <= 0).any():
        raise ValueError("sizes: expected positive widths and heights")
    reach = (wh[:, None, :] + wh[None, :, :]) / 2  # (N, N, 2): centre distance at which boxes i, j touch
    k = torch.arange(n)
    tie = torch.where(k[:, None] > k[None, :], 1.0, -1.0).double()  # labels on one spot: the later one goes right / up
    pos = anchor.clone()
    for it in range(iters):
        d = pos[:, None, :] - pos[None, :, :]  # (N, N, 2): from label j to label i
        over = reach - d.abs()  # (N, N, 2): overlap along x and along y
        clash = (over > 0).all(-1)
        clash.fill_diagonal_(False)
        if not clash.any():
            break
        along_x = (over[..., 0] / reach[..., 0]) < (over[..., 1] / reach[..., 1])  # the shorter way out
        sign = torch.where(d == 0, tie[..., None], torch.sign(d))
        push = torch.zeros_like(d)
        push[..., 0] = torch.where(clash & along_x, over[..., 0] * sign[..., 0], 0.0)
        push[..., 1] = torch.where(clash & ~along_x, over[..., 1] * sign[..., 1], 0.0)
        # each of a pair moves half the overlap (and a little more, so that they clear); the pull
        # fades out, so that the last rounds only separate
        pos = pos + 0.55 * push.sum(1) + pull * max(0.0, 1 - 2 * it / iters) * (anchor - pos)
    return pos - anchor


def plot_projection(points: torch.Tensor, labels: Sequence[str], title: str = "Character embeddings, 2-D PCA", groups: Sequence[str] | None = None):
    """Each of points[N, 2] written as its label, coloured by its group. Labels that would
    overlap are nudged apart (`spread_labels`); a moved one gets a dot at its true place and
    a thin line to it."""
    if points.dim() != 2 or points.size(1) != 2 or len(labels) != points.size(0):
        raise ValueError(f"points, labels: expected shape (N, 2) and N labels, got {tuple(points.shape)} and {len(labels)}")
    groups = list(groups) if groups is not None else [char_group(c) for c in labels]
    p = points.detach().double()
    fig, ax = plt.subplots(figsize=(7.5, 4))
    ax.scatter(p[:, 0], p[:, 1], s=0)  # sets the limits; the labels mark the points
    ax.margins(0.06)
    ax.set_xlabel("first principal component")
    ax.set_ylabel("second principal component")
    ax.set_title(title)
    handles = [plt.Line2D([], [], ls="", marker="o", ms=5, color=GROUP_COLOURS.get(g, "black"), label=g) for g in dict.fromkeys(groups)]
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    # now that the layout (and so the scale) is fixed: write each label on its point, measure
    # the boxes, and move the ones that overlap (in points on the page)
    style = dict(textcoords="offset points", fontsize=9, ha="center", va="center")
    xy = [(p[i, 0].item(), p[i, 1].item()) for i in range(len(labels))]
    texts = [ax.annotate(char_label(c), xy[i], xytext=(0, 0), **style) for i, c in enumerate(labels)]
    renderer, to_pt = fig.canvas.get_renderer(), 72.0 / fig.dpi
    boxes = [t.get_window_extent(renderer) for t in texts]
    for t in texts:
        t.remove()
    centres = torch.tensor([[(b.x0 + b.x1) / 2, (b.y0 + b.y1) / 2] for b in boxes], dtype=torch.float64) * to_pt  # (N, 2)
    sizes = torch.tensor([[b.width, b.height] for b in boxes], dtype=torch.float64) * to_pt + 1.0  # (N, 2), 1 pt of air
    offsets = spread_labels(centres, sizes)  # (N, 2) in points
    for i, (c, g) in enumerate(zip(labels, groups)):
        dx, dy = offsets[i].tolist()
        colour = GROUP_COLOURS.get(g, "black")
        moved = abs(dx) > sizes[i, 0] / 2 or abs(dy) > sizes[i, 1] / 2  # the point is no longer under its label
        if moved:  # mark the true place, with a line from the label to it
            ax.plot(*xy[i], "o", ms=2, color=colour)
        ax.annotate(char_label(c), xy[i], xytext=(dx, dy), color=colour, **style,
                    arrowprops=dict(arrowstyle="-", color="0.6", lw=0.5, shrinkA=0, shrinkB=1) if moved else None)
    return fig


def plot_neighbours(emb: torch.Tensor, labels: Sequence[str], queries: Sequence[str], k: int = 5):
    """For each query token, its k nearest neighbours by cosine similarity, as bars."""
    index = {c: i for i, c in enumerate(labels)}
    missing = [q for q in queries if q not in index]
    if missing:
        raise ValueError(f"queries: {missing!r} not among the labels")
    fig, axes = plt.subplots(1, len(queries), figsize=(min(8, 1.6 * len(queries) + 0.5), 2.6), sharex=True)
    axes = [axes] if len(queries) == 1 else list(axes)
    for ax, q in zip(axes, queries):
        idx, sim = nearest_neighbours(emb, index[q], k=k)
        ax.barh(range(k)[::-1], sim.tolist(), color="tab:blue")
        ax.set_yticks(range(k)[::-1], [char_label(labels[i]) for i in idx.tolist()])
        ax.set_title(f"near {char_label(q)!r}", fontsize=9)
        ax.set_xlim(-0.2, 1.0)
        ax.set_xlabel("cosine")
    axes[0].set_ylabel("neighbour")
    fig.suptitle("Nearest neighbours by cosine similarity", fontsize=10)
    fig.tight_layout()
    return fig


def neighbours_html(emb: torch.Tensor, labels: Sequence[str], query: int, k: int) -> str:
    """An HTML table of the k neighbours of row `query`, each with a bar as long as its cosine."""
    idx, sim = nearest_neighbours(emb, query, k=k)
    rows = []
    for i, s in zip(idx.tolist(), sim.tolist()):
        w = max(0.0, s) * 200
        rows.append(f"<tr><td style='font-family:monospace;padding-right:8px'>{html.escape(char_label(labels[i]))}</td>"
                    f"<td><div style='background:#4c78a8;height:10px;width:{w:.0f}px'></div></td><td>{s:+.3f}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def neighbourhood_explorer(emb: torch.Tensor, labels: Sequence[str], start: str | None = None, k: int = 8):
    """Pick a token (and how many neighbours): see its nearest neighbours. Returns an ipywidgets VBox."""
    import ipywidgets as widgets

    options = [(char_label(c), i) for i, c in enumerate(labels)]
    first = labels.index(start) if start in labels else 0
    pick = widgets.Dropdown(options=options, value=first, description="token")
    kk = widgets.IntSlider(value=k, min=1, max=min(20, len(labels) - 1), description="k")
    out = widgets.HTML()

    def show(change=None):
        out.value = neighbours_html(emb, labels, pick.value, kk.value)

    pick.observe(show, names="value")
    kk.observe(show, names="value")
    show()
    return widgets.VBox([widgets.HBox([pick, kk]), out])
