"""Checks for chapter 13, instruction tuning: `sft.build_example` (prompt + response + EOS as shifted inputs and
labels, the prompt masked), `sft.collate` (a right-padded batch), `sft.token_f1` (SQuAD's F1) and `sft.rouge_l`
(ROUGE-L's F-measure, equal to rouge_score's: tests/test_scores.py).

The two data functions are judged exactly on plain lists (the grader's sandbox sends them back as data), with
prompts and responses of different lengths, the EOS id and the pad id inside the real tokens (so `x != pad_id`
is not a padding mask), and both values of mask_prompt. The two scores are judged on a bank of (prediction,
reference) pairs chosen so that each known mistake changes at least one score by more than 0.05, against a
tolerance of 1e-9 (the same arithmetic in another order differs by ~1e-16).
References: llmlab.train.sft.build_example and collate, llmlab.text.scores.token_f1 and rouge_l.
"""

from __future__ import annotations

import re
import string
from collections import Counter

import torch

from llmlab.checks.core import CheckFailed, Exercise, Mistake, Probe, close, describe, equal, is_real_tensor, register
from llmlab.text import scores as scores_ref
from llmlab.train import sft as sft_ref

IGNORE = -100


def _as_long_list(name: str, t) -> list[int]:
    if not is_real_tensor(t):
        raise CheckFailed(f"expected {name} to be a torch.Tensor, got {type(t).__name__}: {describe(t)}")
    if t.dtype.is_floating_point or t.dtype == torch.bool:
        raise CheckFailed(f"{name} has dtype {t.dtype}; expected integer ids (torch.long)")
    return t.tolist()


# ----------------------------------------------------------------------------- build_example
def _example_inputs(n_prompt: int, n_response: int, V: int, eos: int, mask_prompt: bool):
    def make(g):
        ids = torch.randint(V, (n_prompt + n_response,), generator=g).tolist()
        return ids[:n_prompt], ids[n_prompt:], eos, mask_prompt
    return make


def _example_run(fn, prompt_ids, response_ids, eos_id, mask_prompt):
    out = fn(list(prompt_ids), list(response_ids), eos_id, mask_prompt=mask_prompt)
    if not isinstance(out, tuple) or len(out) != 2:
        raise CheckFailed(f"expected a tuple (inputs, labels), got {describe(out)}")
    return {"inputs": _as_long_list("inputs", out[0]), "labels": _as_long_list("labels", out[1])}


def _builder(kind: str):
    def build_example(prompt_ids, response_ids, eos_id, mask_prompt=True):
        seq = list(prompt_ids) + list(response_ids) + ([] if kind == "no_eos" else [eos_id])
        if kind == "not_shifted":
            inputs, labels = seq[:-1], seq[:-1]
        else:
            inputs, labels = seq[:-1], seq[1:]
        labels = list(labels)
        n = {"lose_first": len(prompt_ids), "mask_one_more": len(prompt_ids), "mask_one_less": len(prompt_ids) - 2}.get(kind, len(prompt_ids) - 1)
        if kind == "no_mask":
            n = 0
        if mask_prompt or kind == "always_mask":
            labels[: max(n, 0)] = [IGNORE] * max(n, 0)
        if kind == "eos_masked":
            labels[-1] = IGNORE
        return torch.tensor(inputs), torch.tensor(labels)
    return build_example


register(Exercise(
    id="sft.build_example",
    signature="build_example(prompt_ids: list[int], response_ids: list[int], eos_id: int, mask_prompt: bool = True) -> "
              "(inputs LongTensor[L], labels LongTensor[L])  # seq = prompt + response + [eos]; inputs = seq[:-1], labels = seq[1:]; "
              "with mask_prompt the first len(prompt_ids) - 1 labels are -100",
    reference=sft_ref.build_example,
    points=2,
    probes=[
        Probe("prompt of 5, response of 3, EOS = 7, mask_prompt=True", _example_inputs(5, 3, 20, 7, True), run=_example_run, compare=equal("example")),
        Probe("prompt of 2, response of 6, EOS = 0, mask_prompt=True", _example_inputs(2, 6, 11, 0, True), run=_example_run, compare=equal("example")),
        Probe("prompt of 4, response of 1, EOS = 12, mask_prompt=False", _example_inputs(4, 1, 13, 12, False), run=_example_run,
              compare=equal("example")),
        Probe("prompt of 1, response of 4, EOS = 3, mask_prompt=True", _example_inputs(1, 4, 9, 3, True), run=_example_run, compare=equal("example")),
    ],
    mistakes=[
        Mistake("shift by one: inputs = seq[:-1] and labels = seq[1:] (the label at position t is the token at t + 1)", _builder("not_shifted")),
        Mistake("append eos_id to the sequence before shifting: the last label must be the EOS (that is how the model learns to stop)",
                _builder("no_eos")),
        Mistake("the EOS label must stay: it is the only place the model learns to stop; mask the prompt only", _builder("eos_masked")),
        Mistake("mask the first len(prompt_ids) - 1 labels, not len(prompt_ids): the label under the last prompt token is the first "
                "response token, which must be learned", _builder("lose_first")),
        Mistake("with mask_prompt=True the first len(prompt_ids) - 1 labels are -100: predicting the prompt is not the task", _builder("no_mask")),
        Mistake("mask only when mask_prompt is True; with mask_prompt=False every label is learned (full-sequence loss)", _builder("always_mask")),
        Mistake("mask exactly len(prompt_ids) - 1 labels: yours masks one too few (the prompt's second-to-last token still predicts a "
                "prompt token)", _builder("mask_one_less")),
    ],
))


# ----------------------------------------------------------------------------- collate
def _collate_inputs(lengths: list[int], V: int, pad_id: int):
    def make(g):
        examples = []
        for n in lengths:
            seq = torch.randint(V, (n + 1,), generator=g)
            seq[n // 2] = pad_id  # the pad id is also a real token here (pad = EOS is common)
            x, y = seq[:-1].clone(), seq[1:].clone()
            y[: max(0, n // 3)] = IGNORE  # a masked prompt
            examples.append((x, y))
        return examples, pad_id
    return make


def _collate_run(fn, examples, pad_id):
    out = fn([(x.clone(), y.clone()) for x, y in examples], pad_id)
    if not isinstance(out, tuple) or len(out) != 3:
        raise CheckFailed(f"expected a tuple (inputs, labels, is_token), got {describe(out)}")
    inputs, labels = _as_long_list("inputs", out[0]), _as_long_list("labels", out[1])
    if not is_real_tensor(out[2]) or out[2].dtype != torch.bool:
        raise CheckFailed(f"expected is_token to be a BoolTensor, got {describe(out[2])}")
    return {"inputs": inputs, "labels": labels, "is_token": out[2].tolist()}


def _collater(kind: str):
    def collate(examples, pad_id):
        T = max(len(x) for x, _ in examples) + (1 if kind == "one_extra" else 0)
        B = len(examples)
        inputs = torch.full((B, T), pad_id, dtype=torch.long)
        labels = torch.full((B, T), pad_id if kind == "labels_pad" else IGNORE, dtype=torch.long)
        for i, (x, y) in enumerate(examples):
            if kind == "left":
                inputs[i, T - len(x):], labels[i, T - len(y):] = x, y
            else:
                inputs[i, : len(x)], labels[i, : len(y)] = x, y
        if kind == "left":
            is_token = torch.zeros(B, T, dtype=torch.bool)
            for i, (x, _) in enumerate(examples):
                is_token[i, T - len(x):] = True
        elif kind == "by_value":
            is_token = inputs != pad_id
        else:
            is_token = torch.zeros(B, T, dtype=torch.bool)
            for i, (x, _) in enumerate(examples):
                is_token[i, : len(x)] = True
        return inputs, labels, is_token
    return collate


register(Exercise(
    id="sft.collate",
    signature="collate(examples: list[tuple[LongTensor[L_i], LongTensor[L_i]]], pad_id: int) -> (inputs LongTensor[B, T], "
              "labels LongTensor[B, T], is_token BoolTensor[B, T])  # right-padded to the longest: inputs with pad_id, labels with -100",
    reference=sft_ref.collate,
    points=1,
    probes=[
        Probe("3 examples of lengths 5, 2, 7, pad_id = 4", _collate_inputs([5, 2, 7], 9, 4), run=_collate_run, compare=equal("batch")),
        Probe("2 examples of lengths 3 and 6, pad_id = 0", _collate_inputs([3, 6], 7, 0), run=_collate_run, compare=equal("batch")),
        Probe("4 examples of one length (4), pad_id = 10", _collate_inputs([4, 4, 4, 4], 11, 10), run=_collate_run, compare=equal("batch")),
    ],
    mistakes=[
        Mistake("pad the labels with -100, not pad_id: a padded label would be learned (the model would be taught to predict padding)",
                _collater("labels_pad")),
        Mistake("pad on the right: each row starts at position 0 and its padding comes after it (x goes into inputs[i, :len(x)])",
                _collater("left")),
        Mistake("is_token must come from the lengths, not from inputs != pad_id: the pad id can be a real token too (here it is the EOS)",
                _collater("by_value")),
        Mistake("pad to the longest example, T = max(len(x)), not one more", _collater("one_extra")),
    ],
))


# ----------------------------------------------------------------------------- the scores
def _pairs(pairs: list[tuple[str, str]]):
    def make(g):
        return (list(pairs),)
    return make


def _score_run(fn, pairs):
    out = []
    for pred, ref in pairs:
        v = fn(pred, ref)
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            v = v.item()
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise CheckFailed(f"expected a float score for ({pred!r}, {ref!r}), got {describe(v)}")
        out.append(float(v))
    return torch.tensor(out, dtype=torch.float64)


_PUNCT = set(string.punctuation)


def _f1(kind: str):
    def token_f1(pred, gold):
        def norm(s):
            if kind == "no_normalise":
                return s.split()
            s = "".join(ch for ch in s.lower() if ch not in _PUNCT) if kind != "keep_punct" else s.lower()
            if kind != "keep_articles":
                s = re.sub(r"\b(a|an|the)\b", " ", s)
            return s.split()
        p, g = norm(pred), norm(gold)
        if not p or not g:
            return float(p == g)
        common = len(set(p) & set(g)) if kind == "sets" else sum((Counter(p) & Counter(g)).values())
        if common == 0:
            return 0.0
        precision, recall = common / len(p), common / len(g)
        if kind == "precision":
            return precision
        if kind == "recall":
            return recall
        return 2 * precision * recall / (precision + recall)
    return token_f1


F1_PAIRS = [
    ("Tavira", "tavira"), ("The city of Tavira.", "Tavira"), ("a baker", "baker"), ("blue blue blue", "blue"),
    ("red green", "red"), ("Tavira", "Tavira and Morrow"), ("an apple, the pear", "Apple pear!"), ("", ""), ("pilot", ""),
    ("the the the", "the"), ("New York New York", "New York"),
]
F1_PAIRS_2 = [
    ("Kessil works as a pilot.", "pilot"), ("pilot pilot", "pilot pilot pilot"), ("The Baker", "the baker!"), ("x y z", "z y x"),
    ("Dorvan's", "Dorvans"), ("red, red and blue", "blue red"),
]

register(Exercise(
    id="sft.token_f1",
    signature="token_f1(pred: str, gold: str) -> float  # SQuAD's F1: lower case, drop punctuation and the articles a/an/the, "
              "split on whitespace, F1 of the multisets of words (1.0 if both are empty, 0.0 if only one is)",
    reference=scores_ref.token_f1,
    points=1,
    probes=[
        Probe("11 (prediction, gold) pairs: case, punctuation, articles, repeats, empty answers", _pairs(F1_PAIRS), run=_score_run,
              compare=close(1e-9, 0.0, "F1 scores")),
        Probe("6 more pairs: partial overlaps and repeated words", _pairs(F1_PAIRS_2), run=_score_run, compare=close(1e-9, 0.0, "F1 scores")),
    ],
    mistakes=[
        Mistake("normalise both answers first: lower case, remove punctuation, remove the articles a/an/the, then split on whitespace",
                _f1("no_normalise")),
        Mistake("count words as a multiset (collections.Counter(p) & Counter(g)): 'blue blue blue' against 'blue' shares one word, not "
                "three, and a set would count a word once however often both say it", _f1("sets")),
        Mistake("F1 is the harmonic mean 2PR / (P + R); yours returns the precision (common / len(pred)) alone", _f1("precision")),
        Mistake("F1 is the harmonic mean 2PR / (P + R); yours returns the recall (common / len(gold)) alone", _f1("recall")),
        Mistake("remove the articles a, an and the (as whole words) after lower-casing", _f1("keep_articles")),
        Mistake("remove punctuation (every character of string.punctuation) before splitting", _f1("keep_punct")),
    ],
))


def _rl(kind: str):
    def rouge_l(pred, ref):
        tokenize = (lambda s: s.split()) if kind == "whitespace" else (lambda s: re.findall(r"[a-z0-9]+", s.lower()))
        p, r = tokenize(pred), tokenize(ref)
        if not p or not r:
            return 0.0
        if kind == "substring":  # the longest common contiguous run
            best = 0
            for i in range(len(p)):
                for j in range(len(r)):
                    n = 0
                    while i + n < len(p) and j + n < len(r) and p[i + n] == r[j + n]:
                        n += 1
                    best = max(best, n)
            lcs = best
        else:
            row = [0] * (len(r) + 1)
            for x in p:
                diag = 0
                for j, y in enumerate(r, 1):
                    diag, row[j] = row[j], diag + 1 if x == y else max(row[j], row[j - 1])
            lcs = row[-1]
        if lcs == 0:
            return 0.0
        precision, recall = lcs / len(p), lcs / len(r)
        if kind == "precision":
            return precision
        if kind == "recall":
            return recall
        if kind == "mean":
            return (precision + recall) / 2
        return 2 * precision * recall / (precision + recall)
    return rouge_l


RL_PAIRS = [
    ("Return the number of items in the list.", "Return the number of items."),
    ("the cat sat on the mat", "the cat on a mat sat"),
    ("Open a file and return a stream", "Return a stream for the file"),
    ("Close the connection.", "Close the connection"),
    ("", "Return the value."),
    ("A B C D E", "a x b y c z d"),
]
RL_PAIRS_2 = [
    ("Convert a string to an integer, raising ValueError.", "Convert a string into an integer"),
    ("Get the item", "Return the item at index i of the sequence"),
    ("socket.connect(address) Connect to a remote socket", "Connect to a remote socket at address"),
    ("x", "y"),
]

register(Exercise(
    id="sft.rouge_l",
    signature="rouge_l(pred: str, ref: str) -> float  # ROUGE-L F-measure: tokens = runs of [a-z0-9] of the lower-cased text, "
              "LCS = longest common subsequence, P = LCS / len(pred), R = LCS / len(ref), F = 2PR / (P + R); 0.0 if either is empty",
    reference=scores_ref.rouge_l,
    points=2,
    probes=[
        Probe("6 (prediction, reference) pairs: reordered words, punctuation, case, an empty prediction", _pairs(RL_PAIRS), run=_score_run,
              compare=close(1e-9, 0.0, "ROUGE-L scores")),
        Probe("4 more pairs: longer predictions and references, no overlap", _pairs(RL_PAIRS_2), run=_score_run,
              compare=close(1e-9, 0.0, "ROUGE-L scores")),
    ],
    mistakes=[
        Mistake("ROUGE-L uses the longest common SUBSEQUENCE (in order, gaps allowed), not the longest common substring (contiguous): "
                "'the cat sat' and 'the cat on a mat sat' share 3 words in order", _rl("substring")),
        Mistake("the F-measure is 2PR / (P + R); yours returns the precision LCS / len(pred) alone", _rl("precision")),
        Mistake("the F-measure is 2PR / (P + R); yours returns the recall LCS / len(ref) alone", _rl("recall")),
        Mistake("the F-measure is the harmonic mean 2PR / (P + R), not the arithmetic mean (P + R) / 2", _rl("mean")),
        Mistake("tokenise as rouge_score does: lower case, then the runs of letters and digits (re.findall(r'[a-z0-9]+', text.lower())), "
                "so 'connection.' and 'Connection' are the same word", _rl("whitespace")),
    ],
))
