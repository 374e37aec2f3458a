"""BLEU (Papineni et al. 2002): how many of a translation's n-grams the reference has too.

For n = 1..4, the *clipped* n-gram precision of the whole corpus: each hypothesis n-gram counts
as matched at most as often as it occurs in its reference ("the the the" against "the cat" matches
once), matches and hypothesis n-grams are summed over ALL sentences, then divided:

    p_n  = sum_s matched_n(s) / sum_s total_n(s)
    BLEU = 100 * BP * exp(mean_n log p_n),   BP = min(1, exp(1 - ref_len / hyp_len))

with lengths summed over the corpus too. The brevity penalty BP stands in for recall: without
it, a one-word output that is right would score 100. It is a *corpus* statistic: the mean of
sentence BLEUs is another (and worse) number, since one short sentence with no 4-gram gives 0.
Any p_n = 0 makes BLEU 0 (no smoothing), as sacrebleu with smooth_method="none"; an empty
hypothesis corpus scores 0. `corpus_bleu` on token lists equals
`sacrebleu.corpus_bleu([" ".join(h) ...], [[" ".join(r) ...]], tokenize="none", smooth_method="none")`
(tests/test_bleu.py).

`sentence_stats` keeps each sentence's counts, so `bleu_from_stats` of a resample of sentences is
cheap: that is how `bootstrap_ci` puts a 95% interval on a corpus BLEU (Koehn 2004), or on any
mean (exact match) over test sentences.

Left out on purpose: several references per sentence, smoothing, sacrebleu's tokenizers (we
score the model's own tokens), chrF and learned metrics (COMET).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

from llmlab.stats import bootstrap_ci


def ngrams(tokens: Sequence[str], n: int) -> Counter:
    """Counts of the n-grams of `tokens`: ngrams("a b a b".split(), 2) -> {('a', 'b'): 2, ('b', 'a'): 1}."""
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def sentence_stats(hyp: Sequence[str], ref: Sequence[str], max_n: int = 4) -> np.ndarray:
    """[matched_1..max_n, total_1..max_n, hyp_len, ref_len] of one sentence (clipped matches)."""
    out = np.zeros(2 * max_n + 2, dtype=np.int64)
    for n in range(1, max_n + 1):
        h, r = ngrams(hyp, n), ngrams(ref, n)
        out[n - 1] = sum(min(c, r[g]) for g, c in h.items())  # clipped: at most as often as the reference has it
        out[max_n + n - 1] = max(len(hyp) - n + 1, 0)
    out[-2:] = len(hyp), len(ref)
    return out


def bleu_from_stats(stats: np.ndarray, max_n: int = 4) -> float:
    """Corpus BLEU from summed sentence_stats (shape [2 * max_n + 2])."""
    matched, total, hyp_len, ref_len = stats[:max_n], stats[max_n:2 * max_n], stats[-2], stats[-1]
    if hyp_len == 0 or (matched == 0).any():
        return 0.0
    log_p = np.log(matched / total).mean()  # geometric mean of the precisions, in logs
    bp = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return float(100 * bp * math.exp(log_p))


def _check(hyps, refs, max_n):
    if not isinstance(max_n, int) or isinstance(max_n, bool) or max_n < 1:
        raise ValueError(f"max_n={max_n!r}: expected a positive integer")
    if len(hyps) != len(refs):
        raise ValueError(f"hyps, refs: {len(hyps)} hypotheses for {len(refs)} references; expected one reference per hypothesis")
    for name, corpus in (("hyps", hyps), ("refs", refs)):
        for i, s in enumerate(corpus):
            if isinstance(s, str):
                raise ValueError(f"{name}[{i}] is a string; expected a list of tokens (str.split() it)")


def corpus_stats(hyps: Sequence[Sequence[str]], refs: Sequence[Sequence[str]], max_n: int = 4) -> np.ndarray:
    """sentence_stats of every sentence: [N, 2 * max_n + 2]."""
    _check(hyps, refs, max_n)
    return np.stack([sentence_stats(h, r, max_n) for h, r in zip(hyps, refs)]) if hyps else np.zeros((0, 2 * max_n + 2), dtype=np.int64)


def corpus_bleu(hyps: Sequence[Sequence[str]], refs: Sequence[Sequence[str]], max_n: int = 4) -> float:
    """Corpus BLEU in [0, 100] of token lists, one reference each; 0.0 when some precision is 0."""
    return bleu_from_stats(corpus_stats(hyps, refs, max_n).sum(0), max_n)


def exact_match(hyps: Sequence[Sequence[str]], refs: Sequence[Sequence[str]]) -> float:
    """Percentage of hypotheses equal to their reference, token for token."""
    _check(hyps, refs, 1)
    return 100.0 * sum(list(h) == list(r) for h, r in zip(hyps, refs)) / max(len(hyps), 1)


def bleu_ci(hyps, refs, max_n: int = 4, n_boot: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """Corpus BLEU with a bootstrap 95% interval over sentences."""
    return bootstrap_ci(corpus_stats(hyps, refs, max_n), lambda s: bleu_from_stats(s.sum(0), max_n), n_boot, seed)


def exact_match_ci(hyps, refs, n_boot: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """Exact match (%) with a bootstrap 95% interval over sentences."""
    _check(hyps, refs, 1)
    hits = np.array([float(list(h) == list(r)) for h, r in zip(hyps, refs)])
    return bootstrap_ci(hits, lambda x: 100.0 * x.mean(), n_boot, seed)
