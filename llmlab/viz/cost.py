"""Pictures of what tokens cost: a conversation re-sends its whole history every turn, so its
input grows linearly per turn and its total cost with the square of its length.

* `plot_conversation_cost`: tokens sent per turn (left) and the running total in dollars (right),
  for a few models, against the same turns each sent without their history (dashed).

Left out on purpose: discounts for cached prompts (they scale the curve down, not its shape).
The numbers come from llmlab.text.pricing; the prices from its dated table.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt

from llmlab.text.pricing import Price, conversation_costs, conversation_tokens, price, tokens_cost


def plot_conversation_cost(n_turns: int, user_tokens: int, reply_tokens: int, models: Sequence[str | Price] = ("gpt-4o", "gpt-4o-mini"),
                           system_tokens: int = 0, title: str | None = None):
    """Two panels over turns 1..n_turns of equal turns (user_tokens in, reply_tokens out each):
    the input tokens each turn sends, and the total cost so far for each of `models`."""
    if isinstance(n_turns, bool) or not isinstance(n_turns, int) or n_turns < 1:
        raise ValueError(f"n_turns={n_turns!r}: expected a whole number of turns, at least 1")
    prices = [price(m) for m in models]
    turns = list(range(1, n_turns + 1))
    sent = [conversation_tokens([(user_tokens, reply_tokens)] * k, system_tokens)[0] for k in [0, *turns]]
    per_turn = [b - a for a, b in zip(sent, sent[1:])]  # input tokens of turn k alone

    fig, (ax_tok, ax_cost) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax_tok.bar(turns, per_turn, color="#80b1d3", label="input sent (history + new message)")
    ax_tok.axhline(system_tokens + user_tokens, color="grey", ls="--", label="the new message alone")
    ax_tok.set(xlabel="turn", ylabel="input tokens sent that turn", title="Every turn re-sends the history")
    ax_tok.legend(fontsize=8)

    for k, p in enumerate(prices):
        color = f"C{k}"
        ax_cost.plot(turns, conversation_costs(n_turns, user_tokens, reply_tokens, p.input, p.output, system_tokens), color=color,
                     label=f"{p.model} (\\${p.input:.2f} in / \\${p.output:.2f} out per 1M)")  # \\$: not matplotlib's math mode
        alone = [n * tokens_cost(system_tokens + user_tokens, reply_tokens, p.input, p.output) for n in turns]
        ax_cost.plot(turns, alone, color=color, ls="--", lw=1, label=f"{p.model}, turns sent without history")
    ax_cost.set(xlabel=f"turns in the conversation ({user_tokens} tokens in, {reply_tokens} out, each)", ylabel="total cost (US \\$)",
                title=title or "The total grows with the square of the length")
    ax_cost.legend(fontsize=7)
    for ax in (ax_tok, ax_cost):
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    fig.tight_layout()
    return fig
