"""llmlab.text.pricing: hand-computed costs, the history every chat turn re-sends (its quadratic
growth, against the closed form), a month of traffic, the dated price table (against tiktoken's own
model -> vocabulary map), and the picture (llmlab.viz.cost)."""

from __future__ import annotations

import json
import random
import re

import pytest

from llmlab.text import pricing as P


# ----------------------------------------------------------------------------- the formula
def test_tokens_cost_known_answers():
    assert P.tokens_cost(1_000_000, 0, 2.50, 10.00) == 2.5
    assert P.tokens_cost(0, 1_000_000, 2.50, 10.00) == 10.0
    assert P.tokens_cost(1_200, 300, 2.50, 10.00) == pytest.approx(0.003 + 0.003)
    for bad in (dict(n_input=-1), dict(n_input=1.5), dict(n_output=True)):
        args = dict(n_input=1, n_output=1, price_in=1.0, price_out=1.0) | bad
        with pytest.raises(ValueError, match=f"{next(iter(bad))}="):
            P.tokens_cost(**args)
    with pytest.raises(ValueError, match="price_out=-2"):
        P.tokens_cost(1, 1, 1.0, -2)


# ----------------------------------------------------------------------------- conversations
def test_every_turn_resends_the_history():
    # inputs: 10; 10 + 100 + 10 = 120; 120 + 10 + 100 = 230 -> 360; outputs 3 x 100
    assert P.conversation_tokens([(10, 100)] * 3) == (360, 300)
    # a 50-token system prompt rides along every turn: 60, 170, 280
    assert P.conversation_tokens([(10, 100)] * 3, system_tokens=50) == (510, 300)
    # unequal turns: 5; 5 + 20 + 7 = 32; 5 + 20 + 7 + 1 + 3 = 36
    assert P.conversation_tokens([(5, 20), (7, 1), (3, 0)]) == (5 + 32 + 36, 21)
    assert P.conversation_tokens([]) == (0, 0)
    assert P.conversation_cost([(10, 100)] * 3, 2.50, 10.00) == pytest.approx((360 * 2.50 + 300 * 10.00) / 1e6)


def test_input_tokens_follow_the_closed_form():
    """n (s + u) + (u + a) n (n - 1) / 2, the module docstring's formula, for random conversations."""
    rng = random.Random(0)
    for _ in range(50):
        n, u, a, s = rng.randint(1, 60), rng.randint(0, 500), rng.randint(0, 900), rng.randint(0, 2000)
        assert P.conversation_tokens([(u, a)] * n, s) == (n * (s + u) + (u + a) * n * (n - 1) // 2, n * a)


def test_cost_grows_quadratically_with_length():
    costs = P.conversation_costs(40, 50, 200, 2.50, 10.00, system_tokens=300)
    first = [b - a for a, b in zip(costs, costs[1:])]
    second = [b - a for a, b in zip(first, first[1:])]
    # each turn re-sends one more (user + reply) than the last: a constant second difference
    assert second == pytest.approx([(50 + 200) * 2.50 / 1e6] * len(second))
    assert costs[-1] / costs[19] > 3  # twice the turns, more than three times the cost (-> 4 as history dominates)
    alone = 40 * P.tokens_cost(300 + 50, 200, 2.50, 10.00)
    assert costs[-1] > 4 * alone  # against sending each turn on its own


def test_conversation_errors_name_the_turn():
    with pytest.raises(ValueError, match=r"turns\[1\]=\(3,\): expected a pair"):
        P.conversation_tokens([(1, 2), (3,)])
    with pytest.raises(ValueError, match=r"turns\[0\] reply tokens=-5"):
        P.conversation_tokens([(1, -5)])
    with pytest.raises(ValueError, match="system_tokens=1.5"):
        P.conversation_tokens([(1, 1)], system_tokens=1.5)
    with pytest.raises(ValueError, match="n_turns=-1: expected a non-negative whole number of turns"):
        P.conversation_costs(-1, 1, 1, 1.0, 1.0)


def test_monthly_cost_known_answers():
    one_shot = P.Traffic(conversations_per_day=1000, turns=1, user_tokens=500, reply_tokens=1000)
    assert P.monthly_cost(one_shot, 2.50, 10.00) == pytest.approx(30 * 1000 * (500 * 2.50 + 1000 * 10.00) / 1e6)  # $337.50
    chat = P.Traffic(conversations_per_day=200, turns=3, user_tokens=10, reply_tokens=100, system_tokens=50, days=31)
    assert P.monthly_cost(chat, 2.50, 10.00) == pytest.approx(31 * 200 * (510 * 2.50 + 300 * 10.00) / 1e6)
    with pytest.raises(ValueError, match="traffic=1000"):
        P.monthly_cost(1000, 2.50, 10.00)


@pytest.mark.parametrize("bad, match", [(dict(turns=0), "turns=0"), (dict(conversations_per_day=-1), "conversations_per_day=-1"),
                                        (dict(user_tokens=2.5), "user_tokens=2.5"), (dict(days="30"), "days='30'")])
def test_traffic_errors_name_the_field(bad, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        P.Traffic(**(dict(conversations_per_day=10) | bad))


# ----------------------------------------------------------------------------- the table
def test_the_table_has_its_date_and_source():
    table = P.load_prices()
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", table.date)
    assert "tokencost 0.1.26" in table.source
    raw = json.loads(P.PRICE_TABLE.read_text(encoding="utf-8"))
    assert raw["unit"] == "US dollars per 1,000,000 tokens" and raw["compiled"] == "2026-12-01"
    assert len(table.prices) >= 10


def test_known_prices():
    gpt4o = P.price("gpt-4o")
    assert (gpt4o.input, gpt4o.output, gpt4o.encoding) == (2.50, 10.00, "o200k_base")
    assert P.price("chatgpt-4o-latest").input == 5.00  # the eWeek article's "ChatGPT-4o $5.00"
    assert P.price(gpt4o) is gpt4o
    with pytest.raises(KeyError, match="model='gpt-7'.*gpt-4o"):
        P.price("gpt-7")


def test_the_tables_vocabularies_are_tiktokens():
    tiktoken = pytest.importorskip("tiktoken")
    for model, p in P.load_prices().prices.items():
        if p.encoding is not None:
            assert tiktoken.encoding_name_for_model(model) == p.encoding, model


def test_a_table_without_date_or_with_a_bad_price_is_refused(tmp_path):
    good = json.loads(P.PRICE_TABLE.read_text(encoding="utf-8"))
    with pytest.raises(ValueError, match="'date' is missing"):
        P.parse_prices({k: v for k, v in good.items() if k != "date"})
    bad = dict(good, models={"m": {"input": -1, "output": 1}})
    with pytest.raises(ValueError, match=r"models\['m'\]\['input'\]=-1"):
        P.parse_prices(bad)
    (tmp_path / "p.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a readable price table"):
        P.load_prices(tmp_path / "p.json")


def test_text_cost_counts_with_the_models_tokenizer():
    pytest.importorskip("tiktoken")
    from llmlab.text.vocabularies import encoding

    text = "hello world"  # 2 tokens in o200k_base: [24912, 2375]
    assert P.text_cost(text, None, "gpt-4o") == pytest.approx(2 * 2.50 / 1e6)
    assert P.text_cost(text, encoding("o200k_base"), "gpt-4o", as_output=True) == pytest.approx(2 * 10.00 / 1e6)
    assert P.text_cost(text, encoding("r50k_base"), "gpt-4") == pytest.approx(2 * 30.00 / 1e6)  # any encoder may be passed
    with pytest.raises(ValueError, match="encoder=None: model 'claude-sonnet-4-20250514' has no public tokenizer"):
        P.text_cost(text, None, "claude-sonnet-4-20250514")


# ----------------------------------------------------------------------------- the picture
def test_plot_conversation_cost_draws_the_quadratic():
    from llmlab.viz.cost import plot_conversation_cost

    fig = plot_conversation_cost(12, 50, 200, models=("gpt-4o", P.Price("toy", 1.0, 2.0)), system_tokens=100)
    ax_tok, ax_cost = fig.axes
    assert [b.get_height() for b in ax_tok.patches] == [100 + 50 + k * 250 for k in range(12)]
    assert list(ax_cost.lines[0].get_ydata()) == pytest.approx(P.conversation_costs(12, 50, 200, 2.50, 10.00, 100))
    assert len(ax_cost.lines) == 4  # with and without history, per model
    with pytest.raises(ValueError, match="n_turns=0"):
        plot_conversation_cost(0, 1, 1)
