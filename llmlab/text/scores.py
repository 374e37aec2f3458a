"""Scores of a generated text against a reference: SQuAD's token F1 and exact match (question
answering), ROUGE-L (summarisation). BLEU, for translation, is in llmlab.text.bleu.

* `token_f1(pred, gold)` (Rajpurkar et al. 2016, the official SQuAD script): normalise both (lower
  case, drop punctuation and the articles a/an/the, collapse whitespace), split on whitespace, and take
  the F1 of the two *multisets* of words: a word said twice counts twice only if the gold says it twice.
* `rouge_l(pred, ref)` (Lin 2004): the longest common subsequence of the two token lists (in order, not
  necessarily adjacent), as precision LCS / |pred|, recall LCS / |ref| and their F-measure; tokens as
  Google's `rouge_score` makes them (lower case, runs of [a-z0-9], no stemming), which a test proves equal.

Left out on purpose: ROUGE-1/2 and ROUGE-Lsum (summary-level, split on newlines), stemming, several
references per example (SQuAD takes the max over them).
"""

from __future__ import annotations

import re
import string
from collections import Counter

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)
_ROUGE_TOKEN = re.compile(r"[a-z0-9]+")


def normalize_answer(s: str) -> str:
    """SQuAD's normalisation: lower case, punctuation removed, articles removed, whitespace collapsed."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


def exact_match(pred: str, gold: str) -> float:
    """1.0 when the normalised answers are equal, else 0.0."""
    return float(normalize_answer(pred) == normalize_answer(gold))


def token_f1(pred: str, gold: str) -> float:
    """F1 of the multisets of normalised words; 1.0 when both are empty, 0.0 when only one is."""
    p, g = normalize_answer(pred).split(), normalize_answer(gold).split()
    if not p or not g:
        return float(p == g)
    common = sum((Counter(p) & Counter(g)).values())  # multiset intersection
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def rouge_tokens(text: str) -> list[str]:
    """rouge_score's tokens without a stemmer: lower case, then the runs of letters and digits."""
    return _ROUGE_TOKEN.findall(text.lower())


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence, dynamic programming over one row: O(|a| |b|) time."""
    row = [0] * (len(b) + 1)
    for x in a:
        prev_diag = 0
        for j, y in enumerate(b, 1):
            prev_diag, row[j] = row[j], prev_diag + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def rouge_l(pred: str, ref: str) -> float:
    """ROUGE-L F-measure of pred against ref, in [0, 1]; 0.0 when either has no tokens."""
    p, r = rouge_tokens(pred), rouge_tokens(ref)
    if not p or not r:
        return 0.0
    lcs = lcs_length(r, p)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(p), lcs / len(r)
    return 2 * precision * recall / (precision + recall)
