"""Pictures of vocabulary size against text length: tokens per word for the course's BPE at a few
sizes and for real tokenizers (GPT-2's, GPT-4's, GPT-4o's, SmolLM2's), with the folk rule
"1,000 tokens ≈ 750 words" drawn in.

* `plot_fertility(rows)`: rows of llmlab.text.fertility.measure, one panel per text.

Left out on purpose: a fit of the curve (two points per decade are not a law).
See also llmlab.viz.tokens.plot_tokens_per_word, lesson 01's simpler plot of the course's BPE alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt

from llmlab.text.fertility import RULE_OF_THUMB, Row


def plot_fertility(texts: Mapping[str, Sequence[Row]], course_prefix: str = "course BPE", title: str = "Tokens per word against vocabulary size"):
    """One panel per text {text name: rows}: the course's BPE (rows named `course_prefix`...) as a line,
    every other tokenizer as a labelled point, on a log-2 axis of vocabulary size."""
    if not texts:
        raise ValueError("texts: expected at least one {text name: rows} entry")
    fig, axes = plt.subplots(1, len(texts), figsize=(5.5 * len(texts), 3.8), squeeze=False, sharey=True)
    for ax, (text_name, rows) in zip(axes[0], texts.items()):
        rows = [r for r in rows if r.vocab_size]
        ours = sorted((r for r in rows if r.name.startswith(course_prefix)), key=lambda r: r.vocab_size)
        theirs = [r for r in rows if not r.name.startswith(course_prefix)]
        if ours:
            ax.plot([r.vocab_size for r in ours], [r.tokens_per_word for r in ours], "o-", label=f"{course_prefix} (trained here)")
        markers = "sDv^P"  # distinct shapes: SmolLM2's 49,152 and GPT-2's 50,257 sit almost on one spot of a log axis
        for k, r in enumerate(theirs):
            ax.plot([r.vocab_size], [r.tokens_per_word], markers[k % len(markers)], color=f"C{k + 1}", markersize=8 - k % 3,
                    markerfacecolor="none" if k % 2 else f"C{k + 1}", label=f"{r.name} ({r.tokens_per_word:.2f})")
        ax.axhline(RULE_OF_THUMB, color="grey", ls="--", lw=1, label="1,000 tokens ≈ 750 words (1.33)")
        ax.set_xscale("log", base=2)
        ticks = [256, 1024, 4096, 16384, 65536, 262144]
        ax.set_xticks(ticks, ["256", "1k", "4k", "16k", "64k", "256k"])
        ax.minorticks_off()
        ax.set(xlabel="vocabulary size (tokens)", title=f"{text_name}: {rows[0].n_words:,} words" if rows else text_name)
        ax.set_ylim(0, max([r.tokens_per_word for r in rows] + [RULE_OF_THUMB]) * 1.08)
        ax.legend(fontsize=7)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    axes[0][0].set_ylabel("tokens per word")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
