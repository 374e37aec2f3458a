"""llmlab.text.scores: ROUGE-L equal to Google's rouge_score on random and real texts; token F1 and
exact match as SQuAD's official script defines them (its normalisation, multisets)."""

from __future__ import annotations

import random

import pytest

from llmlab.text.scores import exact_match, lcs_length, normalize_answer, rouge_l, token_f1

WORDS = ["the", "cat", "sat", "on", "a", "mat", "Dog", "dog", "ran", "far", "away", "x1", "2024", "re-run", "it's", "!", "..."]


def random_text(rng):
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 14)))


def test_rouge_l_equals_rouge_score():
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"])
    rng = random.Random(0)
    pairs = [(random_text(rng), random_text(rng)) for _ in range(400)]
    pairs += [("", "a cat"), ("a cat", ""), ("!!!", "cat"), ("Return the absolute value of a number.", "Return the absolute value of the argument."),
              ("The quick brown fox", "the QUICK brown fox"), ("a b c d", "d c b a")]
    for pred, ref in pairs:
        want = scorer.score(ref, pred)["rougeL"].fmeasure
        assert rouge_l(pred, ref) == pytest.approx(want, abs=1e-12), (pred, ref)


def test_lcs_is_a_subsequence_not_a_substring():
    assert lcs_length("a x b y c".split(), "a b c".split()) == 3  # a longest common substring would be 1
    assert lcs_length([], ["a"]) == 0


def test_token_f1_as_squad_defines_it():
    assert normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert token_f1("the Eiffel Tower", "Eiffel tower.") == 1.0
    assert token_f1("Paris Paris", "Paris") == pytest.approx(2 * 0.5 * 1 / 1.5)  # multisets: the second Paris is not in the gold
    assert token_f1("in Paris France", "Paris") == pytest.approx(2 * (1 / 3) * 1 / (1 / 3 + 1))
    assert token_f1("Berlin", "Paris") == 0.0
    assert token_f1("the", "a") == 1.0 and token_f1("the", "Paris") == 0.0  # both empty after normalising; one empty
    assert exact_match("The Eiffel tower.", "eiffel Tower") == 1.0 and exact_match("Eiffel", "Eiffel Tower") == 0.0
