"""Pictures of attention: weight matrices as heatmaps, the effect of the 1/sqrt(D) scale,
and an explorer widget (sentence, layer, head -> the attention pattern of a GPT).

Patterns are read with `MultiHeadAttention.record_weights`, which makes each attention
module keep its last weights ([B, H, T, T]); `attention_patterns` switches it on for one
forward pass and off again. Every widget also draws a static figure (`plot_heads`), which is
what nbval, a PDF export and the course website show.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch

from llmlab.nn.attention import MultiHeadAttention, softmax


def token_labels(tokens: Sequence[str]) -> list[str]:
    """Make whitespace visible in tick labels: ' ' -> '␣', '\\n' -> '⏎', '\\t' -> '⇥'."""
    table = str.maketrans({" ": "␣", "\n": "⏎", "\t": "⇥"})
    return [t.translate(table) for t in tokens]


def plot_attention(weights: torch.Tensor, tokens: Sequence[str] | None = None, keys: Sequence[str] | None = None,
                   ax=None, title: str = "attention weights", colorbar: bool = True, vmax: float | None = None):
    """Heatmap of one pattern, weights[Tq, Tk]: row i is how query i spreads its attention over keys j.

    The colour scale runs from 0 to `vmax` (default: the largest weight shown). Heatmaps meant to
    be compared need one scale: pass the same `vmax`, or draw them with `plot_attention_row`."""
    w = weights.detach().float().cpu()
    if w.dim() != 2:
        raise ValueError(f"weights: expected a [Tq, Tk] matrix, got shape {tuple(w.shape)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(4.2, 3.6))
    im = ax.imshow(w.numpy(), cmap="viridis", vmin=0.0, vmax=vmax if vmax is not None else max(float(w.max()), 1e-6))
    Tq, Tk = w.shape
    size = 8 if max(Tq, Tk) <= 16 else 7
    if tokens is not None and Tq <= 40:
        ax.set_yticks(range(Tq), token_labels(tokens), fontsize=size)
    if (keys if keys is not None else tokens) is not None and Tk <= 40:
        xlabels = token_labels(keys if keys is not None else tokens)
        upright = max(map(len, xlabels)) * Tk <= 40  # short labels fit side by side; long ones turn
        ax.set_xticks(range(Tk), xlabels, fontsize=size, rotation=0 if upright else 90)
    ax.set_xlabel("key j (attended to)")
    ax.set_ylabel("query i (attending)")
    ax.set_title(title, fontsize=9)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="weight")
    return ax


def plot_attention_row(patterns: Sequence[torch.Tensor], titles: Sequence[str], tokens: Sequence[str] | None = None,
                       keys: Sequence[str] | None = None, vmax: float | None = None, figsize: tuple[float, float] | None = None):
    """Patterns side by side on one colour scale (0 to the largest weight of them all, or `vmax`),
    with one colour bar for the row: the same colour is the same weight in every panel."""
    if len(patterns) != len(titles):
        raise ValueError(f"titles: expected one per pattern ({len(patterns)}), got {len(titles)}")
    top = vmax if vmax is not None else max(max(float(p.detach().max()) for p in patterns), 1e-6)
    n = len(patterns)
    fig, axes = plt.subplots(1, n, figsize=figsize or (2.9 * n + 0.9, 3.3), squeeze=False, layout="constrained")
    for i, (ax, w, t) in enumerate(zip(axes[0], patterns, titles)):
        plot_attention(w, tokens, keys, ax=ax, title=t, colorbar=False, vmax=top)
        if i:  # one y label for the row: the panels share their axes
            ax.set_ylabel("")
    fig.colorbar(axes[0][0].images[0], ax=list(axes[0]), fraction=0.04, pad=0.02, label="attention weight")
    return fig


def plot_score_scaling(dims: Sequence[int] = (4, 16, 64, 256), n: int = 2000, T: int = 16, seed: int = 0):
    """Why 1/sqrt(D): for random unit-variance q and k, the spread of q.k grows like sqrt(D)
    (left), and softmax of unscaled scores piles almost all weight on one key (right)."""
    g = torch.Generator().manual_seed(seed)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3.2))
    raw_std, top_raw, top_scaled = [], [], []
    for D in dims:
        q, k = torch.randn(n, 1, D, generator=g), torch.randn(n, T, D, generator=g)
        s = (q * k).sum(-1)  # (n, T): n queries, each scored against T keys
        raw_std.append(s.std().item())
        top_raw.append(softmax(s).amax(-1).mean().item())
        top_scaled.append(softmax(s / math.sqrt(D)).amax(-1).mean().item())
    a1.plot(dims, raw_std, "o-", label="std of q·k")
    a1.plot(dims, [math.sqrt(D) for D in dims], "k--", label="√D")
    a1.set_xscale("log", base=2)
    a1.set_xlabel("head width D")
    a1.set_ylabel("standard deviation")
    a1.set_title("unscaled scores grow like √D", fontsize=9)
    a1.legend(fontsize=8)
    a2.plot(dims, top_raw, "o-", label="softmax(q·k)")
    a2.plot(dims, top_scaled, "s-", label="softmax(q·k / √D)")
    a2.axhline(1 / T, color="gray", ls=":", label=f"uniform (1/{T})")
    a2.set_xscale("log", base=2)
    a2.set_ylim(0, 1.05)
    a2.set_xlabel("head width D")
    a2.set_ylabel("largest weight (mean)")
    a2.set_title(f"largest of {T} weights: saturation without the scale", fontsize=9)
    a2.legend(fontsize=8)
    fig.tight_layout()
    return fig


def attention_modules(model: torch.nn.Module) -> list[MultiHeadAttention]:
    """Every MultiHeadAttention in the model, in forward order (for a GPT: one per layer)."""
    return [m for m in model.modules() if isinstance(m, MultiHeadAttention)]


@torch.no_grad()
def attention_patterns(model: torch.nn.Module, idx: torch.Tensor) -> torch.Tensor:
    """Run `model` on one sequence of token ids and return its attention: [L, H, T, T].

    idx: LongTensor[T] or [1, T]. Uses `record_weights`, restoring each module's flag and
    the model's train/eval mode afterwards.
    """
    if idx.dim() == 1:
        idx = idx[None]
    if idx.dim() != 2 or idx.size(0) != 1:
        raise ValueError(f"idx: expected one sequence of shape (T,) or (1, T), got shape {tuple(idx.shape)}")
    mods = attention_modules(model)
    if not mods:
        raise ValueError("model: has no llmlab.nn.attention.MultiHeadAttention module to record")
    flags, was_training = [m.record_weights for m in mods], model.training
    try:
        model.eval()
        for m in mods:
            m.record_weights = True
        device = next(model.parameters()).device
        model(idx.to(device))
        return torch.stack([m.last_weights[0].float().cpu() for m in mods])  # (L, H, T, T)
    finally:
        for m, f in zip(mods, flags):
            m.record_weights, m.last_weights = f, None
        model.train(was_training)


def plot_heads(patterns: torch.Tensor, tokens: Sequence[str] | None = None, title: str = "every head"):
    """Small multiples of patterns[L, H, T, T]: one row per layer, one column per head, all on one
    colour scale (0 to 1) with one colour bar. Token labels go on the outer panels (keys along the
    bottom row, queries down the first column) when there are at most 32 tokens."""
    L, H, T = patterns.shape[0], patterns.shape[1], patterns.shape[-1]
    show_ticks = tokens is not None and T <= 32
    size = 7 if T <= 20 else 6 if T <= 24 else 5
    fig, axes = plt.subplots(L, H, figsize=(min(10, 2.2 * H + 1.2), min(6.4, 2.3 * L + 0.9)), squeeze=False,
                             layout="constrained")
    for layer in range(L):
        for head in range(H):
            ax = axes[layer][head]
            im = ax.imshow(patterns[layer, head].float().numpy(), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
            ax.set_title(f"layer {layer}, head {head}", fontsize=8)
            ax.set_xticks(range(T) if show_ticks else [])
            ax.set_yticks(range(T) if show_ticks else [])
            ax.tick_params(length=1.5, pad=1)
            if show_ticks:  # labels on the outer panels only; inner ones keep bare ticks
                ax.set_xticklabels(token_labels(tokens) if layer == L - 1 else [], fontsize=size, rotation=90)
                ax.set_yticklabels(token_labels(tokens) if head == 0 else [], fontsize=size)
            if layer == L - 1:
                ax.set_xlabel("key j", fontsize=8)
            if head == 0:
                ax.set_ylabel("query i", fontsize=8)
    fig.colorbar(im, ax=axes, fraction=0.03, pad=0.01, label="attention weight")
    fig.suptitle(title, fontsize=9)
    return fig


def attention_explorer(model: torch.nn.Module, tokenizer, sentences: Sequence[str], max_tokens: int = 40,
                       show_fallback: bool = True, static_tokens: int = 20):
    """Dropdowns for sentence, layer and head -> the heatmap of that head's attention.

    `tokenizer` needs `encode(str) -> list[int]` and `decode(list[int]) -> str`. Sentences
    are cut to `max_tokens` tokens. Displays the widget and, below it, the static fallback:
    every head on the first `static_tokens` tokens of the first sentence (few enough that
    every token's label can be read); returns the widget.
    """
    import ipywidgets as widgets
    from IPython.display import display

    from llmlab.viz import show_in

    if not sentences:
        raise ValueError("sentences: expected at least one sentence to explore, got none")
    cache: dict[str, tuple[torch.Tensor, list[str]]] = {}

    def patterns_of(s: str):
        if s not in cache:
            ids = tokenizer.encode(s)[:max_tokens]
            cache[s] = (attention_patterns(model, torch.tensor(ids)), [tokenizer.decode([i]) for i in ids])
        return cache[s]

    L, H = patterns_of(sentences[0])[0].shape[:2]
    sentence = widgets.Dropdown(options=list(sentences), value=sentences[0], description="sentence", layout=widgets.Layout(width="95%"))
    layer = widgets.Dropdown(options=list(range(L)), value=0, description="layer")
    head = widgets.Dropdown(options=list(range(H)), value=0, description="head")
    out = widgets.Output()

    def draw(*_):
        pats, toks = patterns_of(sentence.value)
        fig, ax = plt.subplots(figsize=(6, 5))
        plot_attention(pats[layer.value, head.value], toks, ax=ax, title=f"layer {layer.value}, head {head.value}")
        fig.tight_layout()
        show_in(out, fig)

    for w in (sentence, layer, head):
        w.observe(draw, names="value")
    draw()
    ui = widgets.VBox([sentence, widgets.HBox([layer, head]), out])
    display(ui)
    if show_fallback:
        # a causal model's patterns on the first n tokens are the top-left n x n of the whole sentence's
        ids = tokenizer.encode(sentences[0])[: min(max_tokens, static_tokens)]
        text = tokenizer.decode(ids)
        plot_heads(attention_patterns(model, torch.tensor(ids)), [tokenizer.decode([i]) for i in ids],
                   title=f"static view: every head on {text!r}")
        plt.show()
    return ui
