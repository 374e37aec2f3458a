"""Pictures of positional encodings: the sinusoidal table, RoPE's rotations and its
relative-position property, ALiBi's biases, learned position vectors, and a viewer widget
(scheme, base, length -> the encoding and how similar two positions are).

Every widget also draws a static figure (`plot_overview`), which is what nbval, a PDF
export and the course website show.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from llmlab.nn.positional import alibi_slopes, apply_rope, rope_angles, sinusoidal_encoding

SCHEMES = ("sinusoidal", "rope", "alibi")


def plot_sinusoidal(T: int = 64, d: int = 64, base: float = 10000.0, ax=None):
    """The table PE[p, c]: fast waves in the first channels, slow ones in the last."""
    pe = sinusoidal_encoding(T, d, base)  # (T, d)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.6))
    im = ax.imshow(pe.numpy(), cmap="RdBu", vmin=-1, vmax=1, aspect="auto")
    ax.set_xlabel("channel c (2i: sin, 2i+1: cos)")
    ax.set_ylabel("position p")
    ax.set_title(f"sinusoidal PE[p, c], base={base:g}", fontsize=9)
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return ax


def plot_similarity(pe: torch.Tensor, ax=None, title: str = "PE[p] · PE[q]"):
    """pe[T, d] -> heatmap of dot products between every two positions."""
    sim = (pe @ pe.T).detach().float()  # (T, d) @ (d, T) -> (T, T)
    if ax is None:
        _, ax = plt.subplots(figsize=(4.2, 3.6))
    im = ax.imshow(sim.numpy(), cmap="magma")
    ax.set_xlabel("position q")
    ax.set_ylabel("position p")
    ax.set_title(title, fontsize=9)
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return ax


def rope_scores(D: int = 64, max_distance: int = 48, offsets=(0, 20, 100), base: float = 10000.0, seed: int = 0) -> dict[int, torch.Tensor]:
    """score(m - n) = rope(q at m) . rope(k at n) for one random q and k, with the key at
    position `offset` and the query `distance` = 0..max_distance after it; one curve per
    offset. The curves coincide: RoPE scores depend on m - n only."""
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(D, generator=g), torch.randn(D, generator=g)
    T = max(offsets) + max_distance + 1
    rq = apply_rope(q.expand(T, D).contiguous(), base)  # (T, D): q placed at every position
    rk = apply_rope(k.expand(T, D).contiguous(), base)  # (T, D)
    return {o: rq[o : o + max_distance + 1] @ rk[o] for o in offsets}  # {offset: (max_distance + 1,)}


def plot_rope_scores(D: int = 64, max_distance: int = 48, offsets=(0, 20, 100), base: float = 10000.0, ax=None):
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.4))
    for o, s in rope_scores(D, max_distance, offsets, base).items():
        ax.plot(range(len(s)), s.numpy(), lw=2 if o == offsets[0] else 1, ls="-" if o == offsets[0] else "--", label=f"key at position {o}")
    ax.set_xlabel("distance m - n (query after key)")
    ax.set_ylabel("rope(q)_m · rope(k)_n")
    ax.set_title(f"RoPE score depends on m - n only (D={D}, base={base:g})", fontsize=9)
    ax.legend(fontsize=8)
    return ax


def plot_rope_angles(T: int = 64, D: int = 64, base: float = 10000.0, ax=None):
    """How far each pair has turned at each position (in turns): pair 0 spins fastest."""
    turns = rope_angles(T, D, base) / (2 * torch.pi)  # (T, D/2)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.4))
    for i in sorted({0, 1, 2, D // 8, D // 4, D // 2 - 1}):
        ax.plot(range(T), (turns[:, i] % 1.0).numpy(), ".", ms=3, label=f"pair i={i}")
    ax.set_xlabel("position p")
    ax.set_ylabel("angle (fraction of a full turn)")
    ax.set_title(f"RoPE angle p·base^(-2i/D) mod 2π (D={D})", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    return ax


def alibi_bias(n_heads: int, T: int) -> torch.Tensor:
    """The causal ALiBi bias -slope_h * (i - j) for j <= i, -inf for j > i: [H, T, T]."""
    i = torch.arange(T)
    dist = (i[:, None] - i[None, :]).float()  # (T, T)
    bias = -alibi_slopes(n_heads)[:, None, None] * dist  # (H, T, T)
    return bias.masked_fill(dist < 0, float("-inf"))


def plot_alibi(n_heads: int = 8, T: int = 12, heads=(0, 3, 7)):
    """ALiBi's bias for a few heads: steep heads look near, gentle heads look far."""
    bias = alibi_bias(n_heads, T)
    slopes = alibi_slopes(n_heads)
    heads = [h for h in heads if h < n_heads]
    fig, axes = plt.subplots(1, len(heads), figsize=(2.6 * len(heads) + 0.6, 2.8), squeeze=False)
    for ax, h in zip(axes[0], heads):
        im = ax.imshow(bias[h].clamp(min=-8).numpy(), cmap="viridis", vmin=-8, vmax=0)
        ax.set_title(f"head {h}: slope {slopes[h]:.3g}", fontsize=8)
        ax.set_xlabel("key j")
        ax.set_ylabel("query i")
    fig.colorbar(im, ax=list(axes[0]), fraction=0.03, pad=0.03, label="bias (clipped at -8)")
    fig.suptitle("ALiBi: -slope · (i - j), masked above the diagonal", fontsize=9)
    return fig


def plot_learned(wpe: torch.Tensor, ax=None, title: str = "learned positions: cosine similarity"):
    """Cosine similarity between the learned position vectors wpe[T, C] of a model."""
    w = torch.nn.functional.normalize(wpe.detach().float().cpu(), dim=-1)
    return plot_similarity(w, ax=ax, title=title)


def plot_overview(T: int = 64, d: int = 64, base: float = 10000.0):
    """The static fallback: sinusoidal table, RoPE's score vs distance, one ALiBi head."""
    fig, axes = plt.subplots(1, 3, figsize=(8, 2.9))
    plot_sinusoidal(T, d, base, ax=axes[0])
    plot_rope_scores(d, max_distance=min(T, 48), base=base, ax=axes[1])
    axes[1].legend(fontsize=6)
    axes[2].imshow(alibi_bias(8, 16)[2].clamp(min=-8).numpy(), cmap="viridis")
    axes[2].set_title("ALiBi bias, head 2 of 8", fontsize=9)
    axes[2].set_xlabel("key j")
    axes[2].set_ylabel("query i")
    for ax in axes:
        ax.title.set_fontsize(7)
    fig.tight_layout()
    return fig


def positional_viewer(show_fallback: bool = True):
    """Pick a scheme, base, length and width -> the encoding (left) and what it does to
    attention scores (right). Displays the widget and the static fallback; returns the widget."""
    import ipywidgets as widgets
    from IPython.display import display

    from llmlab.viz import show_in

    scheme = widgets.Dropdown(options=list(SCHEMES), value="sinusoidal", description="scheme")
    base = widgets.SelectionSlider(options=[10, 100, 1000, 10000, 100000], value=10000, description="base")
    T = widgets.IntSlider(value=64, min=8, max=256, step=8, description="length T")
    d = widgets.IntSlider(value=64, min=8, max=128, step=8, description="width d")
    heads = widgets.IntSlider(value=8, min=1, max=16, description="heads (ALiBi)")
    out = widgets.Output()

    def draw(*_):
        heads.disabled = scheme.value != "alibi"  # the head count only shapes ALiBi's slopes
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3.4))
        if scheme.value == "sinusoidal":
            plot_sinusoidal(T.value, d.value, base.value, ax=a1)
            plot_similarity(sinusoidal_encoding(T.value, d.value, base.value), ax=a2, title="PE[p] · PE[q]: depends on |p - q|")
        elif scheme.value == "rope":
            plot_rope_angles(T.value, d.value, base.value, ax=a1)
            plot_rope_scores(d.value, max_distance=T.value, offsets=(0, T.value // 2, T.value), base=base.value, ax=a2)
        else:
            b = alibi_bias(heads.value, min(T.value, 32))
            a1.imshow(b[0].clamp(min=-8).numpy(), cmap="viridis")
            a1.set_title(f"head 0 bias, slope {alibi_slopes(heads.value)[0]:.3g}", fontsize=9)
            a1.set_xlabel("key j")
            a1.set_ylabel("query i")
            for h, s in enumerate(alibi_slopes(heads.value).tolist()):
                a2.plot(range(T.value), [-s * k for k in range(T.value)], label=f"head {h}" if h < 4 else None)
            a2.set_xlabel("distance i - j")
            a2.set_ylabel("bias added to the score")
            a2.set_title("one line per head: slopes 2^(-8h/H)", fontsize=9)
            a2.legend(fontsize=7)
        fig.tight_layout()
        show_in(out, fig)

    for w in (scheme, base, T, d, heads):
        w.observe(draw, names="value")
    draw()
    ui = widgets.VBox([widgets.HBox([scheme, base]), widgets.HBox([T, d, heads]), out])
    display(ui)
    if show_fallback:
        plot_overview()
        plt.show()
    return ui
