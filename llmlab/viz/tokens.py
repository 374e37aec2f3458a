"""Pictures of tokenization (chapter 01): text cut into tokens, merge by merge.

* `segment` / `first_merges`: the tokens a BPE tokenizer makes after its first n merges
  (merges are learned greedily, so the first n of a big vocabulary *are* the smaller one).
* `plot_segmentation`: static rows of coloured token boxes, one row per merge count.
* `merge_stepper`: an ipywidgets slider over the merges, re-segmenting the text live.
* `plot_tokens_per_word`: tokens per word against vocabulary size.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import matplotlib.pyplot as plt

from llmlab.text.tokenizers import GPT2_SPLIT_PATTERN, BPETokenizer

# a qualitative palette; neighbouring tokens alternate through it so boundaries show
PALETTE = ("#8dd3c7", "#ffffb3", "#bebada", "#fb8072", "#80b1d3", "#fdb462", "#b3de69", "#fccde5")


def first_merges(merges: dict[tuple[int, int], int], n: int) -> dict[tuple[int, int], int]:
    """The n merges learned first (lowest ids): exactly what training to vocab_size 256 + n gives."""
    if not 0 <= n <= len(merges):
        raise ValueError(f"n={n}: expected 0..{len(merges)} (the number of merges)")
    return dict(sorted(merges.items(), key=lambda kv: kv[1])[:n])


def segment(text: str, merges: dict[tuple[int, int], int], n_merges: int | None = None, pattern: str | None = GPT2_SPLIT_PATTERN) -> list[bytes]:
    """The tokens of `text` (as the bytes each stands for) using the first `n_merges` merges (default: all)."""
    m = merges if n_merges is None else first_merges(merges, n_merges)
    tok = BPETokenizer(m, pattern=pattern)
    return [tok.token_bytes(i) for i in tok.encode(text)]


def token_label(b: bytes) -> str:
    """A printable form of a token: spaces as '·', newlines as '↵', broken UTF-8 as '�'."""
    return b.decode("utf-8", errors="replace").replace(" ", "·").replace("\n", "↵").replace("\t", "→")


def plot_segmentation(text: str, merges: dict[tuple[int, int], int], steps: Sequence[int], pattern: str | None = GPT2_SPLIT_PATTERN,
                      title: str = "The same text after more and more merges", max_tokens: int = 60):
    """One row per merge count in `steps`: the text cut into coloured token boxes (at most
    `max_tokens` per row: keep the text short, a sentence or so)."""
    rows = [segment(text, merges, n, pattern)[:max_tokens] for n in steps]
    width = max(sum(len(token_label(t)) + 1 for t in r) for r in rows)
    fig, ax = plt.subplots(figsize=(8, min(4.0, 0.45 * len(rows) + 1.0)))
    for r, (n, toks) in enumerate(zip(steps, rows)):
        x = 0.0
        for k, t in enumerate(toks):
            label = token_label(t)
            w = len(label) + 0.6
            ax.add_patch(plt.Rectangle((x, -r - 0.4), w, 0.8, color=PALETTE[k % len(PALETTE)], ec="grey", lw=0.5))
            ax.text(x + w / 2, -r, label, ha="center", va="center", fontsize=8, family="monospace")
            x += w + 0.4
        ax.text(x + 0.5, -r, f"{len(segment(text, merges, n, pattern))} tokens", va="center", fontsize=8, color="dimgrey")
    ax.set_xlim(-0.5, width * 1.05 + 12)
    ax.set_ylim(-len(rows) + 0.4, 0.6)
    ax.set_yticks([-r for r in range(len(rows))], [f"{n} merges" for n in steps])
    ax.set_xticks([])
    ax.set_xlabel("the text, token by token (a box is as wide as its token)")
    ax.set_ylabel("merges applied")
    ax.set_title(title)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    return fig


def tokens_html(tokens: Sequence[bytes]) -> str:
    """Tokens as coloured HTML spans (for the stepper)."""
    spans = (f'<span style="background:{PALETTE[k % len(PALETTE)]};padding:1px 2px;margin:1px;border-radius:3px;'
             f'font-family:monospace;white-space:pre">{html.escape(token_label(t))}</span>' for k, t in enumerate(tokens))
    return '<div style="line-height:1.9">' + "".join(spans) + "</div>"


def merge_stepper(text: str, merges: dict[tuple[int, int], int], pattern: str | None = GPT2_SPLIT_PATTERN):
    """A slider over the merges: drag it and see `text` re-segmented after that many merges,
    with the merge just learned spelled out. Returns an ipywidgets VBox."""
    import ipywidgets as widgets

    from llmlab.text.tokenizers import build_vocab

    vocab = build_vocab(merges)
    order = sorted(merges.items(), key=lambda kv: kv[1])
    n_bytes = len(text.encode("utf-8"))
    slider = widgets.IntSlider(value=min(10, len(order)), min=0, max=len(order), description="merges", continuous_update=True,
                               layout=widgets.Layout(width="95%"))
    info, view = widgets.HTML(), widgets.HTML()

    def show(change=None):
        n = slider.value
        toks = segment(text, merges, n, pattern)
        if n:
            (a, b), i = order[n - 1]
            last = (f"merge {n}: <code>{html.escape(token_label(vocab[a]))}</code> + <code>{html.escape(token_label(vocab[b]))}</code>"
                    f" &rarr; <code>{html.escape(token_label(vocab[i]))}</code> (id {i})")
        else:
            last = "no merges yet: one token per byte"
        info.value = f"{last}. <b>{len(toks)} tokens</b> for {n_bytes} bytes ({n_bytes / max(len(toks), 1):.2f} bytes per token)"
        view.value = tokens_html(toks)

    slider.observe(show, names="value")
    show()
    return widgets.VBox([slider, info, view])


def plot_tokens_per_word(vocab_sizes: Sequence[int], tokens_per_word: Sequence[float], rule_of_thumb: float = 1000 / 750, reference: dict | None = None):
    """Tokens per word against vocabulary size (log scale), with the '1,000 tokens ≈ 750 words' line."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(vocab_sizes, tokens_per_word, "o-", label="our byte-level BPE (held-out text)")
    ax.axhline(rule_of_thumb, color="grey", ls="--", label=f"1,000 tokens ≈ 750 words ({rule_of_thumb:.2f} tokens/word)")
    for name, (v, r) in (reference or {}).items():
        ax.plot([v], [r], "s", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(vocab_sizes), [str(v) for v in vocab_sizes])
    ax.minorticks_off()
    ax.set_ylim(0, max(max(tokens_per_word), rule_of_thumb) * 1.1)
    ax.set_xlabel("vocabulary size (256 bytes + merges)")
    ax.set_ylabel("tokens per word")
    ax.set_title("A bigger vocabulary means fewer tokens per word")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
