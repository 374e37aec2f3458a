"""BLEU: the course's corpus_bleu equals sacrebleu's on the same tokens (random corpora of many
shapes: zero matches, short and empty hypotheses, repeats), known answers by hand, and the
bootstrap interval's properties."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import sacrebleu

from llmlab.text.bleu import bleu_ci, bootstrap_ci, corpus_bleu, exact_match, exact_match_ci, ngrams, sentence_stats


def _sacre(hyps, refs, max_n=4):
    bleu = sacrebleu.metrics.BLEU(tokenize="none", smooth_method="none", max_ngram_order=max_n)
    return bleu.corpus_score([" ".join(h) for h in hyps], [[" ".join(r) for r in refs]]).score


def _corpus(seed):
    r = random.Random(seed)
    words = ["a", "b", "c", "d", "e", "f"][: r.randint(2, 6)]
    refs = [[r.choice(words) for _ in range(r.randint(1, 12))] for _ in range(r.randint(1, 8))]
    hyps = []
    for ref in refs:
        kind = r.random()
        if kind < 0.3:  # a noisy copy: every order has matches
            hyps.append([w if r.random() > 0.2 else r.choice(words) for w in ref])
        elif kind < 0.4:
            hyps.append([])  # empty
        elif kind < 0.6:
            hyps.append(ref[: r.randint(1, len(ref))])  # short
        else:
            hyps.append([r.choice(words) for _ in range(r.randint(1, 14))])
    return hyps, refs


@pytest.mark.parametrize("max_n", [1, 2, 4])
def test_equals_sacrebleu_on_random_corpora(max_n):
    nonzero = 0
    for seed in range(150):
        hyps, refs = _corpus(seed)
        ours = corpus_bleu(hyps, refs, max_n)
        assert math.isclose(ours, _sacre(hyps, refs, max_n), rel_tol=1e-9, abs_tol=1e-9), seed  # same counts: only rounding differs
        nonzero += ours > 0
    assert nonzero > 30  # the comparison is not all zeros


def test_known_answers():
    assert corpus_bleu([["the", "cat", "sat", "on", "the", "mat"]], [["the", "cat", "sat", "on", "the", "mat"]]) == pytest.approx(100.0)
    # "the the the the" vs "the cat": unigram matches clipped at 1 -> p1 = 1/4; BLEU-1 with BP = 1
    assert corpus_bleu([["the"] * 4], [["the", "cat"]], max_n=1) == pytest.approx(25.0)
    # a right but short output: p1 = 1, BP = exp(1 - 4/2)
    assert corpus_bleu([["the", "cat"]], [["the", "cat", "sat", "down"]], max_n=1) == pytest.approx(100 * math.exp(-1))
    assert corpus_bleu([["a", "b", "c"]], [["c", "b", "a"]]) == 0.0  # no bigram in common: 0, no smoothing
    assert corpus_bleu([[]], [["a"]]) == 0.0 and corpus_bleu([], []) == 0.0


def test_corpus_bleu_is_not_the_mean_of_sentence_bleus():
    hyps = [["a", "b", "c", "d", "e"], ["x", "y"]]
    refs = [["a", "b", "c", "d", "e"], ["x", "z"]]
    assert corpus_bleu(hyps, refs) > 50 and np.mean([corpus_bleu([h], [r]) for h, r in zip(hyps, refs)]) == pytest.approx(50.0)


def test_ngrams_and_sentence_stats():
    assert ngrams("a b a b".split(), 2) == {("a", "b"): 2, ("b", "a"): 1}
    assert sentence_stats(["a", "a", "b"], ["a", "b"], max_n=2).tolist() == [2, 1, 3, 2, 3, 2]


def test_bad_input_names_the_parameter():
    with pytest.raises(ValueError, match="hyps, refs"):
        corpus_bleu([["a"]], [])
    with pytest.raises(ValueError, match=r"hyps\[0\] is a string"):
        corpus_bleu(["a b"], [["a", "b"]])
    with pytest.raises(ValueError, match="max_n"):
        corpus_bleu([["a"]], [["a"]], max_n=0)


def test_bootstrap_interval_brackets_the_value_and_narrows_with_more_sentences():
    r = random.Random(0)
    refs = [[r.choice("abcde") for _ in range(8)] for _ in range(400)]
    hyps = [[w if r.random() > 0.3 else "z" for w in ref] for ref in refs]
    v, lo, hi = bleu_ci(hyps, refs, n_boot=300)
    assert v == pytest.approx(corpus_bleu(hyps, refs)) and lo < v < hi
    _, lo2, hi2 = bleu_ci(hyps[:50], refs[:50], n_boot=300)
    assert hi2 - lo2 > hi - lo
    em, elo, ehi = exact_match_ci(hyps, refs, n_boot=300)
    assert em == pytest.approx(exact_match(hyps, refs)) and elo <= em <= ehi
    assert bootstrap_ci(np.ones(5), lambda x: x.mean())[1:] == (1.0, 1.0)  # no spread, no width
