"""What tokens cost: API prices are quoted in dollars per 1,000,000 tokens, input and output apart.

    cost = n_input * price_in / 1e6 + n_output * price_out / 1e6

* `tokens_cost(n_input, n_output, price_in, price_out)`: the formula.
* `load_prices()` / `price(model)`: a dated price table shipped with the course (prices_2026-12-01.json:
  20 models, its date and its source inside: PyPI tokencost 0.1.26, a copy of litellm's table). Prices
  change: quote them with the table's date.
* `text_cost(text, encoder, model)`: what sending (or receiving) a text costs, tokens counted by a
  real tokenizer (by default the model's own, from llmlab.text.vocabularies).
* `conversation_tokens(turns)` / `conversation_cost(turns, price_in, price_out)`: a chat API keeps no
  memory, so **every turn re-sends the whole history as input**. With n turns of u user tokens and
  a reply tokens each, and a system prompt of s tokens, the input billed is

      sum over k = 1..n of (s + (k - 1)(u + a) + u)  =  n (s + u) + (u + a) n (n - 1) / 2

  which grows with the square of the conversation's length, while the output (n a) grows linearly.
* `Traffic` / `monthly_cost(traffic, price_in, price_out)`: a month of such conversations.

Left out on purpose: prompt-caching and batch discounts (they lower the price of re-sent history
but not its quadratic growth), tiered long-context prices, images and audio, the tokens a chat
template adds around each message (a few per turn), and reasoning tokens (billed as output).
Reference: OpenAI's pricing page (openai.com/api/pricing); the table's own `source`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

PER = 1_000_000  # prices are per million tokens
PRICE_TABLE = Path(__file__).with_name("prices_2026-12-01.json")


def tokens_cost(n_input: int, n_output: int, price_in: float, price_out: float) -> float:
    """Dollars for n_input prompt tokens and n_output generated tokens at price_in / price_out
    dollars per 1,000,000 tokens.

    >>> tokens_cost(1_000_000, 0, 2.50, 10.00)
    2.5
    >>> round(tokens_cost(1_200, 300, 2.50, 10.00), 6)   # a prompt and its answer on gpt-4o
    0.006
    """
    for name, v in (("n_input", n_input), ("n_output", n_output)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{name}={v!r}: expected a non-negative whole number of tokens")
    for name, v in (("price_in", price_in), ("price_out", price_out)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ValueError(f"{name}={v!r}: expected a non-negative price in dollars per 1,000,000 tokens")
    return (n_input * price_in + n_output * price_out) / PER


# ----------------------------------------------------------------------------- the price table
@dataclass(frozen=True)
class Price:
    model: str
    input: float  # dollars per 1,000,000 prompt tokens
    output: float  # dollars per 1,000,000 generated tokens
    encoding: str | None = None  # its tiktoken vocabulary, where the tokenizer is public
    context: int | None = None  # the longest prompt it takes, in tokens
    note: str = ""


@dataclass(frozen=True)
class PriceTable:
    date: str  # when these prices were current (YYYY-MM-DD)
    source: str  # where they come from
    prices: dict[str, Price]

    def __getitem__(self, model: str) -> Price:
        if model not in self.prices:
            raise KeyError(f"model={model!r}: not in the price table of {self.date}; expected one of {', '.join(sorted(self.prices))}")
        return self.prices[model]


def parse_prices(d: dict, where: str = "the price table") -> PriceTable:
    """A PriceTable from the JSON layout of prices_2026-12-01.json, checked field by field."""
    for key in ("date", "source", "models"):
        if not d.get(key):
            raise ValueError(f"{where}: the field {key!r} is missing or empty: a price means nothing without its date and source")
    prices = {}
    for model, row in d["models"].items():
        for side in ("input", "output"):
            v = row.get(side)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise ValueError(f"{where}: models[{model!r}][{side!r}]={v!r}: expected a non-negative price in dollars per 1,000,000 tokens")
        prices[model] = Price(model, float(row["input"]), float(row["output"]), row.get("encoding"), row.get("context"), row.get("note", ""))
    return PriceTable(d["date"], d["source"], prices)


@functools.lru_cache(maxsize=8)
def load_prices(path: str | Path = PRICE_TABLE) -> PriceTable:
    """The shipped price table (or another file in its layout)."""
    try:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"path={str(path)!r}: not a readable price table ({e})") from e
    return parse_prices(d, where=str(path))


def price(model: str | Price, table: PriceTable | None = None) -> Price:
    """A Price as it is, or a model's Price from `table` (default: the shipped table)."""
    if isinstance(model, Price):
        return model
    return (table or load_prices())[model]


def text_cost(text: str, encoder=None, model: str | Price = "gpt-4o", as_output: bool = False) -> float:
    """Dollars for sending `text` to `model` (or, with as_output, for the model writing it).

    `encoder` counts the tokens (anything with .encode(text) -> ids); None takes the model's own
    tiktoken vocabulary from the table (an error for models whose tokenizer is not public).
    """
    p = price(model)
    if encoder is None:
        if p.encoding is None:
            raise ValueError(f"encoder=None: model {p.model!r} has no public tokenizer in the table; pass an encoder to count its tokens with")
        from llmlab.text.vocabularies import encoding

        encoder = encoding(p.encoding)
    n = len(encoder.encode(text))
    return tokens_cost(0, n, p.input, p.output) if as_output else tokens_cost(n, 0, p.input, p.output)


# ----------------------------------------------------------------------------- conversations
def conversation_tokens(turns: Sequence[tuple[int, int]], system_tokens: int = 0) -> tuple[int, int]:
    """(input, output) tokens billed for a conversation of `turns` = [(user tokens, reply tokens), ...].

    Turn k sends the system prompt, every earlier message and reply, and its new message; it is
    billed its reply as output.

    >>> conversation_tokens([(10, 100), (10, 100), (10, 100)])   # inputs 10, 120, 230
    (360, 300)
    """
    _check_tokens("system_tokens", system_tokens)
    n_in = n_out = history = 0
    for k, turn in enumerate(turns):
        if not (isinstance(turn, (tuple, list)) and len(turn) == 2):
            raise ValueError(f"turns[{k}]={turn!r}: expected a pair (user tokens, reply tokens)")
        user, reply = turn
        _check_tokens(f"turns[{k}] user tokens", user)
        _check_tokens(f"turns[{k}] reply tokens", reply)
        n_in += system_tokens + history + user
        n_out += reply
        history += user + reply  # what the next turn has to send again
    return n_in, n_out


def conversation_cost(turns: Sequence[tuple[int, int]], price_in: float, price_out: float, system_tokens: int = 0) -> float:
    """Dollars for a whole conversation, every turn re-sending the history (see conversation_tokens).

    >>> round(conversation_cost([(10, 100)] * 3, 2.50, 10.00), 6)   # 360 in, 300 out on gpt-4o
    0.0039
    """
    n_in, n_out = conversation_tokens(turns, system_tokens)
    return tokens_cost(n_in, n_out, price_in, price_out)


def conversation_costs(n_turns: int, user_tokens: int, reply_tokens: int, price_in: float, price_out: float,
                       system_tokens: int = 0) -> list[float]:
    """The total cost after 1, 2, ..., n_turns equal turns: the quadratic curve to plot."""
    _check_tokens("n_turns", n_turns, "turns")
    return [conversation_cost([(user_tokens, reply_tokens)] * n, price_in, price_out, system_tokens) for n in range(1, n_turns + 1)]


@dataclass(frozen=True)
class Traffic:
    """A month of conversations, all alike."""

    conversations_per_day: float  # conversations started per day (any non-negative number: an average)
    turns: int = 1  # turns per conversation (1: one question, one answer)
    user_tokens: int = 100  # tokens per user message
    reply_tokens: int = 300  # tokens per reply
    system_tokens: int = 0  # the system prompt, sent again with every turn
    days: float = 30.0  # days in the month

    def __post_init__(self):
        for name in ("conversations_per_day", "days"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise ValueError(f"{name}={v!r}: expected a non-negative number")
        if isinstance(self.turns, bool) or not isinstance(self.turns, int) or self.turns < 1:
            raise ValueError(f"turns={self.turns!r}: expected a whole number of turns per conversation, at least 1")
        for name in ("user_tokens", "reply_tokens", "system_tokens"):
            _check_tokens(name, getattr(self, name))


def monthly_cost(traffic: Traffic, price_in: float, price_out: float) -> float:
    """Dollars per month for `traffic` at price_in / price_out dollars per 1,000,000 tokens.

    >>> monthly_cost(Traffic(conversations_per_day=1000, turns=1, user_tokens=500, reply_tokens=1000), 2.50, 10.00)
    337.5
    """
    if not isinstance(traffic, Traffic):
        raise ValueError(f"traffic={traffic!r}: expected a Traffic(conversations_per_day=..., turns=..., ...)")
    turns = [(traffic.user_tokens, traffic.reply_tokens)] * traffic.turns
    return conversation_cost(turns, price_in, price_out, traffic.system_tokens) * traffic.conversations_per_day * traffic.days


def _check_tokens(name: str, v, what: str = "tokens") -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"{name}={v!r}: expected a non-negative whole number of {what}")
