"""Pictures of embeddings (chapter 02): the bigram table, and where tokens sit.

* `plot_bigram`: the count (or probability) table as a heatmap.
* `plot_projection`: tokens placed by the 2-D PCA of their vectors, coloured by kind.
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


def plot_projection(points: torch.Tensor, labels: Sequence[str], title: str = "Character embeddings, 2-D PCA", groups: Sequence[str] | None = None):
    """Scatter of points[N, 2] with each point written as its label, coloured by its group."""
    if points.dim() != 2 or points.size(1) != 2 or len(labels) != points.size(0):
        raise ValueError(f"points, labels: expected shape (N, 2) and N labels, got {tuple(points.shape)} and {len(labels)}")
    groups = list(groups) if groups is not None else [char_group(c) for c in labels]
    p = points.detach().double()
    fig, ax = plt.subplots(figsize=(7, 4))
    for g in dict.fromkeys(groups):
        idx = [i for i, x in enumerate(groups) if x == g]
        ax.scatter(p[idx, 0], p[idx, 1], s=3, alpha=0.3, color=GROUP_COLOURS.get(g, "black"), label=g)
        for i in idx:
            ax.annotate(char_label(labels[i]), (p[i, 0].item(), p[i, 1].item()), fontsize=9, color=GROUP_COLOURS.get(g, "black"),
                        ha="center", va="center")
    ax.set_xlabel("first principal component")
    ax.set_ylabel("second principal component")
    ax.set_title(title)
    ax.legend(fontsize=7, markerscale=4, loc="best")
    fig.tight_layout()
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
