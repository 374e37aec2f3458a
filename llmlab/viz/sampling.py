"""Pictures of sampling: the next-token distribution before and after temperature, top-k and
top-p, and a panel of sliders for the three knobs.

`filtered_distribution` is the arithmetic (the same steps as `llmlab.generate.sampling.sample_next`);
`plot_filtering` draws it as bars, and `plot_filtering_grid` a few settings side by side;
`sampling_panel` puts sliders on it. What the sliders add over a grid of settings is every value
in between, so the panel's static copy (what nbval, a PDF export and the website show, where no
kernel moves the sliders) is `plot_knob_sweep`: each knob swept over its slider's whole range.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from llmlab.generate.sampling import top_k_filter, top_p_filter
from llmlab.viz.attention import token_labels


def filtered_distribution(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                          top_p: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """logits[V] -> (probabilities at this temperature, probabilities after the filters), both [V].

    Temperature must be > 0 here (0, greedy, puts all the mass on the argmax: nothing to draw)."""
    if logits.dim() != 1:
        raise ValueError(f"logits: expected one row of shape (V,), got shape {tuple(logits.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature={temperature}: expected > 0")
    z = logits.detach().float().cpu() / temperature
    before = F.softmax(z, dim=-1)
    if top_k is not None:
        z = top_k_filter(z, top_k)
    if top_p is not None:
        z = top_p_filter(z, top_p)
    return before, F.softmax(z, dim=-1)


def plot_filtering(logits: torch.Tensor, labels: Sequence[str], temperature: float = 1.0, top_k: int | None = None,
                   top_p: float | None = None, n_show: int = 20, ax=None, title: str | None = None):
    """Bars of the n_show most likely tokens: grey = after temperature only, blue = what is
    actually sampled from after top-k / top-p (renormalised). Returns the axes."""
    before, after = filtered_distribution(logits, temperature, top_k, top_p)
    order = before.argsort(descending=True)[:n_show]  # (n_show,)
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3))
    xs = torch.arange(len(order))
    ax.bar(xs - 0.2, before[order], width=0.4, color="0.7", label=f"softmax(logits / {temperature:g})")
    ax.bar(xs + 0.2, after[order], width=0.4, color="tab:blue", label="after top-k / top-p, renormalised")
    ax.set_xticks(xs.tolist(), token_labels([labels[i] for i in order.tolist()]))
    kept = int((after > 0).sum())
    ax.set(xlabel="next token (most likely first)", ylabel="probability",
           title=title or f"T={temperature:g}, top-k={top_k}, top-p={top_p}: {kept} of {len(before)} tokens can be drawn")
    ax.legend(fontsize=8)
    return ax


def plot_filtering_grid(logits: torch.Tensor, labels: Sequence[str], settings: Sequence[tuple[float, int | None, float | None]], n_show: int = 15):
    """One small panel per (temperature, top_k, top_p) setting, side by side."""
    fig, axes = plt.subplots(1, len(settings), figsize=(2.4 * len(settings), 2.8), sharey=True, squeeze=False)
    for ax, (t, k, p) in zip(axes[0], settings):
        knobs = [f"T={t:g}"] + ([f"top-k {k}"] if k is not None else []) + ([f"top-p {p:g}"] if p is not None else [])
        plot_filtering(logits, labels, t, k, p, n_show=n_show, ax=ax, title=", ".join(knobs))
        ax.title.set_fontsize(9)
        ax.tick_params(axis="x", labelsize=6)
        ax.set_xlabel("")
        if ax is not axes[0, 0]:
            ax.set_ylabel("")
        ax.get_legend().remove()
    axes[0, 0].set_xlabel("next token")
    fig.suptitle("The next-token distribution: grey before, blue after filtering", fontsize=10)
    fig.tight_layout()
    return fig


def knob_sweep(logits: torch.Tensor, n: int = 50) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Each knob over its slider's range, the others off: {knob: (values, measure)}.

    * "temperature" (0.1 .. 2.5): the effective number of candidates exp(entropy), from 1 (one sure
      token) to V (uniform);
    * "top-k" (1 .. V, at T = 1): the probability mass the k most likely tokens keep;
    * "top-p" (0.05 .. 1, at T = 1): how many tokens are kept.
    """
    if logits.dim() != 1:
        raise ValueError(f"logits: expected one row of shape (V,), got shape {tuple(logits.shape)}")
    z = logits.detach().float().cpu()
    V = z.numel()
    temps = torch.linspace(0.1, 2.5, n)  # (n,)
    logp = F.log_softmax(z[None, :] / temps[:, None], dim=-1)  # (n, V)
    effective = torch.exp(-(logp.exp() * logp).nan_to_num().sum(-1))  # (n,): exp(entropy)
    ks = torch.arange(1, V + 1)
    mass = F.softmax(z, dim=-1).sort(descending=True).values.cumsum(0)  # (V,): mass of the k most likely
    ps = torch.linspace(0.05, 1.0, n)
    kept = torch.tensor([int(torch.isfinite(top_p_filter(z, float(p))).sum()) for p in ps])
    return {"temperature": (temps, effective), "top-k": (ks, mass), "top-p": (ps, kept)}


def plot_knob_sweep(logits: torch.Tensor, context: str = ""):
    """Three panels, one per slider, each swept over its whole range (what the panel adds over a grid)."""
    sweep = knob_sweep(logits)
    V = logits.size(-1)
    fig, axes = plt.subplots(1, 3, figsize=(9.6, 2.8))
    (t, eff), (k, mass), (p, kept) = sweep["temperature"], sweep["top-k"], sweep["top-p"]
    axes[0].plot(t, eff)
    axes[0].axvline(1.0, color="0.6", ls=":", lw=1)
    axes[0].set(xlabel="temperature", ylabel="effective candidates", yscale="log", ylim=(0.8, V * 1.25),
                title="temperature: exp(entropy)")
    axes[1].plot(k, mass)
    axes[1].set(xlabel="top-k", ylabel="probability kept", xscale="log", ylim=(0, 1.02), title="top-k at T=1: mass kept")
    axes[2].step(p, kept, where="post")
    axes[2].set(xlabel="top-p", ylabel="tokens kept", yscale="log", title="top-p at T=1: tokens kept")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.title.set_fontsize(9)
    fig.suptitle("Each slider over its whole range" + (f", after {context[-30:]!r}" if context else ""), fontsize=10)
    fig.tight_layout()
    return fig


def sampling_panel(logits: torch.Tensor, labels: Sequence[str], context: str = "", show_fallback: bool = True):
    """Sliders for temperature, top-k and top-p over one next-token distribution.

    Displays the widget and, below it (show_fallback), its static copy: each knob swept over its
    slider's range (`plot_knob_sweep`), which a grid of a few settings cannot show. Returns the widget.
    """
    import ipywidgets as widgets
    from IPython.display import display

    from llmlab.viz import show_in

    V = logits.size(-1)
    temperature = widgets.FloatSlider(value=1.0, min=0.1, max=2.5, step=0.05, description="temperature")
    top_k = widgets.IntSlider(value=V, min=1, max=V, description="top-k")
    top_p = widgets.FloatSlider(value=1.0, min=0.05, max=1.0, step=0.01, description="top-p")
    out = widgets.Output()

    def draw(*_):
        fig, ax = plt.subplots(figsize=(8, 3))
        plot_filtering(logits, labels, temperature.value, top_k.value, top_p.value, ax=ax)
        if context:
            ax.text(0.99, 0.6, f"after {context[-30:]!r}", transform=ax.transAxes, ha="right", fontsize=8)
        fig.tight_layout()
        show_in(out, fig)

    for w in (temperature, top_k, top_p):
        w.observe(draw, names="value")
    draw()
    ui = widgets.VBox([widgets.HBox([temperature, top_k, top_p]), out])
    display(ui)
    if show_fallback:
        plot_knob_sweep(logits, context)
        plt.show()
    return ui
