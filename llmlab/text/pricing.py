"""What tokens cost: API prices are quoted in dollars per 1,000,000 tokens, input and output apart.

    cost = n_input * price_in / 1e6 + n_output * price_out / 1e6
"""

from __future__ import annotations

PER = 1_000_000  # prices are per million tokens


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
