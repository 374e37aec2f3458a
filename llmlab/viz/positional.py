"""Pictures of positional encodings: the sinusoidal table, RoPE's rotations and its
relative-position property, ALiBi's biases, learned position vectors, and a viewer widget
(scheme, base, length -> the encoding and how similar two positions are).

Every widget also draws a static figure (`plot_overview`), which is what nbval, a PDF
export and the course website show.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import MaxNLocator

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


def plot_rope_scores(D: int = 64, max_distance: int = 48, offsets=(0, 20, 100), base: float = 10000.0, ax=None,
                     title: str | None = None):
    """One curve of rope_scores per key position; they lie on top of each other."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.4))
    for o, s in rope_scores(D, max_distance, offsets, base).items():
        ax.plot(range(len(s)), s.numpy(), lw=2 if o == offsets[0] else 1, ls="-" if o == offsets[0] else "--", label=f"{o}")
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi + 0.3 * (hi - lo))  # headroom: the legend sits above the curves, not on them
    ax.set_xlabel("distance m - n (query after key)")
    ax.set_ylabel("rope(q)_m · rope(k)_n")
    ax.set_title(title or f"RoPE score: a function of m − n (D={D})", fontsize=9)
    ax.legend(title="key at position", title_fontsize=7, fontsize=7, ncol=len(offsets), loc="upper center", frameon=False)
    return ax


def plot_rope_angles(T: int = 64, D: int = 64, base: float = 10000.0, ax=None, pairs=None):
    """How each pair turns with position: cos θ[p, i] for a few pairs, one strip per pair (dots at
    the integer positions the model uses, a thin line through them to guide the eye). Pair 0 turns
    by one radian per position (a period of 2π ≈ 6.3 positions); the last pair hardly moves."""
    if pairs is None:
        pairs = sorted({0, D // 16, D // 8, D // 4, D // 2 - 1})
    omega = rope_angles(2, D, base)[1]  # (D/2,): the angle per position of each pair
    p = torch.arange(T, dtype=torch.float32)  # (T,)
    fine = torch.linspace(0, T - 1, 8 * T)  # (8T,)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.4))
    ticks, labels = [], []
    for k, i in enumerate(pairs):
        y0 = -2.6 * k  # each strip spans y0 - 1 .. y0 + 1
        line, = ax.plot(fine.numpy(), (y0 + torch.cos(fine * omega[i])).numpy(), lw=0.7, alpha=0.6)
        ax.plot(p.numpy(), (y0 + torch.cos(p * omega[i])).numpy(), ".", ms=3, color=line.get_color())
        period = 2 * torch.pi / omega[i].item()
        ticks.append(y0)
        labels.append(f"pair {i}\nperiod {period:,.0f}" if period >= 100 else f"pair {i}\nperiod {period:.3g}")
    ax.set_yticks(ticks, labels, fontsize=7)
    ax.set_xlabel("position p")
    ax.set_ylabel("cos θ[p, i], one strip per pair")
    ax.set_title(f"RoPE: cos of pair i's angle p·base^(-2i/D) (D={D})", fontsize=9)
    return ax


def alibi_bias(n_heads: int, T: int) -> torch.Tensor:
    """The causal ALiBi bias -slope_h * (i - j) for j <= i, -inf for j > i: [H, T, T]."""
    i = torch.arange(T)
    dist = (i[:, None] - i[None, :]).float()  # (T, T)
    bias = -alibi_slopes(n_heads)[:, None, None] * dist  # (H, T, T)
    return bias.masked_fill(dist < 0, float("-inf"))


def show_alibi(ax, bias: torch.Tensor, vmin: float | None = None):
    """Draw one head's causal bias[T, T] (from `alibi_bias`): the allowed cells (j <= i) in colour,
    the masked ones (j > i, -inf) in grey, so that they cannot be mistaken for a large penalty.
    vmin: the bottom of the colour scale (default: the most negative allowed value). Returns the image."""
    masked = torch.isinf(bias)
    allowed = bias.masked_fill(masked, 0.0)
    if vmin is None:
        vmin = min(float(allowed.min()), -1e-6)
    cmap = plt.get_cmap("viridis").with_extremes(bad="0.8")  # light grey: masked, not "very negative"
    im = ax.imshow(np.ma.array(allowed.clamp(min=vmin).numpy(), mask=masked.numpy()), cmap=cmap, vmin=vmin, vmax=0.0)
    ax.set_xlabel("key j")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    return im


def plot_alibi(n_heads: int = 8, T: int = 12, heads=(0, 3, 7)):
    """ALiBi's causal bias for a few heads, on one colour scale: steep heads look near, gentle heads look far."""
    bias = alibi_bias(n_heads, T)
    slopes = alibi_slopes(n_heads)
    heads = [h for h in heads if h < n_heads]
    vmin = min(float(bias[h].masked_fill(torch.isinf(bias[h]), 0.0).min()) for h in heads)  # the steepest head's corner
    fig, axes = plt.subplots(1, len(heads), figsize=(2.6 * len(heads) + 1.0, 3.2), squeeze=False, layout="constrained")
    for k, (ax, h) in enumerate(zip(axes[0], heads)):
        im = show_alibi(ax, bias[h], vmin)
        ax.set_title(f"head {h}: m = {slopes[h]:.3g}", fontsize=9)
        if k == 0:
            ax.set_ylabel("query i")
    fig.colorbar(im, ax=list(axes[0]), fraction=0.04, pad=0.02, label="bias −m·(i − j)")
    fig.suptitle(f"ALiBi bias for j ≤ i, {n_heads} heads; grey: masked (j > i)", fontsize=9)
    return fig


def plot_learned(wpe: torch.Tensor, ax=None, title: str = "learned positions: cosine similarity"):
    """Cosine similarity between the learned position vectors wpe[T, C] of a model."""
    w = torch.nn.functional.normalize(wpe.detach().float().cpu(), dim=-1)
    return plot_similarity(w, ax=ax, title=title)


def plot_loss_by_position(curves: dict[str, torch.Tensor], train_context: int, bucket: int = 8, ax=None):
    """Validation loss against position, one line per scheme: curves[name] is the mean loss at each
    position t (Tensor[T]); neighbouring positions are averaged in buckets of `bucket`. A dashed line
    marks the training context: to its right the model sees positions (or distances) it never trained on."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.4))
    for name, lp in curves.items():
        n = len(lp) // bucket
        centres = torch.arange(n) * bucket + (bucket - 1) / 2  # (n,)
        ax.plot(centres.numpy(), lp[: n * bucket].view(n, bucket).mean(-1).numpy(), "o-", ms=3, label=name)
    ax.axvline(train_context - 0.5, color="gray", ls="--", lw=1)
    ax.text(train_context - 0.5, 1.0, " trained up to here", transform=ax.get_xaxis_transform(), fontsize=7, color="gray", va="top")
    ax.set_xlabel(f"position t in the window (mean over buckets of {bucket})")
    ax.set_ylabel("validation loss (nats/char)")
    ax.set_title(f"trained on {train_context} characters, tested on {max(len(c) for c in curves.values())}", fontsize=9)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)  # beside the lines, not on them
    return ax


def plot_overview(T: int = 64, d: int = 64, base: float = 10000.0):
    """The static fallback: sinusoidal table, RoPE's score vs distance, one ALiBi head."""
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.3), layout="constrained")
    plot_sinusoidal(T, d, base, ax=axes[0])
    axes[0].set_title(f"sinusoidal PE[p, c] (base {base:g})", fontsize=9)
    plot_rope_scores(d, max_distance=min(T, 48), base=base, ax=axes[1])
    im = show_alibi(axes[2], alibi_bias(8, 16)[2])
    axes[2].set_ylabel("query i")
    axes[2].set_title(f"ALiBi bias, head 2 of 8 (m = {alibi_slopes(8)[2]:.3g})", fontsize=9)
    fig.colorbar(im, ax=axes[2], fraction=0.046, pad=0.04, label="bias; grey: masked")
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
            im = show_alibi(a1, b[0])
            fig.colorbar(im, ax=a1, fraction=0.046, pad=0.04, label="bias; grey: masked")
            a1.set_title(f"head 0 bias, m = {alibi_slopes(heads.value)[0]:.3g}", fontsize=9)
            a1.set_ylabel("query i")
            for h, s in enumerate(alibi_slopes(heads.value).tolist()):
                a2.plot(range(T.value), [-s * k for k in range(T.value)], label=f"head {h}" if h < 4 else None)
            a2.set_xlabel("distance i - j")
            a2.set_ylabel("bias added to the score")
            a2.set_title(f"one line per head: −m_h·(i − j), H = {heads.value}", fontsize=9)
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
