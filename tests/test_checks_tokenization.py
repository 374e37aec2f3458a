"""Chapter 01's checks: each passes the reference and the code of solutions/01_tokens.ipynb,
accepts other correct ways of writing it, and rejects a bank of realistic wrong
implementations — the known mistakes with their own hint, and more that crash or break a
property (mutating the input, returning the wrong type, the GPT-2 split pattern)."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

from _checks import assert_chapter, rejects
from llmlab.checks import REGISTRY, check, load_all
from llmlab.text import tokenizers as ref

load_all()
CONTRACT = {  # the exercise contract of the course: ids and signatures are fixed
    "tokenization.get_pair_counts": "get_pair_counts(ids: list[int]) -> dict[tuple[int, int], int]",
    "tokenization.merge": "merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]",
    "tokenization.train_bpe": "train_bpe(text: str, vocab_size: int) -> dict[tuple[int, int], int]",
    "tokenization.bpe_encode": "bpe_encode(text: str, merges: dict[tuple[int, int], int]) -> list[int]",
}
IDS = list(CONTRACT)


# ----------------------------------------------------------------------------- contract and sources
def test_contract_ids_and_signatures():
    assert_chapter(IDS, "01_tokens.ipynb")
    for eid, sig in CONTRACT.items():
        assert REGISTRY[eid].signature.startswith(sig)


# ----------------------------------------------------------------------------- the known mistakes


def test_every_exercise_has_a_bank_of_mistakes():
    assert {eid: len(REGISTRY[eid].mistakes) for eid in IDS} == {
        "tokenization.get_pair_counts": 4, "tokenization.merge": 6, "tokenization.train_bpe": 8, "tokenization.bpe_encode": 5}


# ----------------------------------------------------------------------------- more wrong implementations
def counts_popping(ids):  # right counts, but it empties the caller's list
    counts = {}
    while len(ids) > 1:
        a = ids.pop(0)
        counts[(a, ids[0])] = counts.get((a, ids[0]), 0) + 1
    return counts


def merge_popping(ids, pair, new_id):  # right output, but it empties the caller's list
    out = []
    while ids:
        a = ids.pop(0)
        if ids and (a, ids[0]) == pair:
            ids.pop(0)
            out.append(new_id)
        else:
            out.append(a)
    return out


def merge_same_list_if_absent(ids, pair, new_id):
    if pair not in set(zip(ids, ids[1:])):
        return ids  # "nothing to do" -- but the contract promises a new list
    return ref.merge(ids, pair, new_id)


def merge_first_element_only(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def train_with_overlapping_merge(text, vocab_size):
    from llmlab.checks.tokenization import _merge_overlapping

    ids, merges = list(text.encode("utf-8")), {}
    for new_id in range(256, vocab_size):
        counts = ref.get_pair_counts(ids)
        if not counts:
            break
        pair = max(counts, key=counts.get)
        merges[pair] = new_id
        ids = _merge_overlapping(ids, pair, new_id)
    return merges


def encode_min_with_none(text, merges):  # merges.get returns None for unknown pairs: min() cannot compare
    ids = list(text.encode("utf-8"))
    while len(ids) >= 2:
        pair = min(set(zip(ids, ids[1:])), key=merges.get)
        if pair not in merges:
            break
        ids = ref.merge(ids, pair, merges[pair])
    return ids


WRONG = [
    ("tokenization.get_pair_counts", counts_popping, "changed the list"),
    ("tokenization.get_pair_counts", lambda ids: list(zip(ids, ids[1:])), "expected the counts to be a dict"),
    ("tokenization.get_pair_counts", lambda ids: {f"{a},{b}": n for (a, b), n in ref.get_pair_counts(ids).items()}, "keys must be pairs"),
    ("tokenization.get_pair_counts", lambda ids: dict(Counter(ids)), "keys must be pairs"),
    ("tokenization.get_pair_counts", lambda ids: dict(Counter(tuple(sorted(p)) for p in zip(ids, ids[1:]))), "pairs differ"),
    ("tokenization.get_pair_counts", lambda ids: {p: float(n) for p, n in ref.get_pair_counts(ids).items()}, "expected 2"),
    ("tokenization.merge", merge_popping, "changed the caller's list"),
    ("tokenization.merge", merge_same_list_if_absent, "returned the very list"),
    ("tokenization.merge", lambda ids, pair, new_id: tuple(ref.merge(ids, pair, new_id)), "to be a list"),
    ("tokenization.merge", merge_first_element_only, "merged ids"),
    ("tokenization.train_bpe", lambda text, vs: ref.train_bpe(text, vs, ref.GPT2_SPLIT_PATTERN), "merge number"),
    ("tokenization.train_bpe", lambda text, vs: list(ref.train_bpe(text, vs)), "to be a dict"),
    ("tokenization.train_bpe", lambda text, vs: {i: p for p, i in ref.train_bpe(text, vs).items()}, "tuple keys"),
    ("tokenization.train_bpe", train_with_overlapping_merge, "merge number"),
    ("tokenization.bpe_encode", encode_min_with_none, "your code raised TypeError"),
    ("tokenization.bpe_encode", lambda text, merges: list(text.encode("utf-8")), "ids"),
    ("tokenization.bpe_encode", lambda text, merges: [bytes([b]) for b in ref.bpe_encode(text, merges) if b < 256], "ids"),
]


@pytest.mark.parametrize("eid, impl, words", WRONG, ids=[f"{e.split('.')[1]}-{i}" for i, (e, _, _) in enumerate(WRONG)])
def test_more_wrong_implementations_are_rejected(eid, impl, words):
    assert words in str(rejects(eid, impl))


# ----------------------------------------------------------------------------- other right answers pass
def counts_defaultdict(ids):
    counts = defaultdict(int)
    for i in range(len(ids) - 1):
        counts[ids[i], ids[i + 1]] += 1
    return counts


def merge_with_skip_flag(ids, pair, new_id):
    out, skip = [], False
    for i, x in enumerate(ids):
        if skip:
            skip = False
            continue
        if i + 1 < len(ids) and (x, ids[i + 1]) == pair:
            out.append(new_id)
            skip = True
        else:
            out.append(x)
    return out


def train_most_common(text, vocab_size):
    ids, merges = list(text.encode("utf-8")), {}
    for new_id in range(256, vocab_size):
        counts = Counter(zip(ids, ids[1:]))
        if not counts:
            break
        pair = counts.most_common(1)[0][0]  # ties: the first inserted, i.e. the pair seen first
        merges[pair] = new_id
        ids = ref.merge(ids, pair, new_id)
    return merges


def train_stop_at_singletons(text, vocab_size):  # minbpe-like variant that stops when nothing repeats: the probes never get there
    ids, merges = list(text.encode("utf-8")), {}
    for new_id in range(256, vocab_size):
        counts = ref.get_pair_counts(ids)
        if not counts or max(counts.values()) < 2:
            break
        pair = sorted(counts.items(), key=lambda kv: -kv[1])[0][0]  # a stable sort keeps the first of ties
        merges[pair] = new_id
        ids = ref.merge(ids, pair, new_id)
    return merges


def encode_in_id_order(text, merges):  # each merge in learned order over the whole text: equivalent
    ids = list(text.encode("utf-8"))
    for pair, i in sorted(merges.items(), key=lambda kv: kv[1]):
        ids = ref.merge(ids, pair, i)
    return ids


RIGHT = [
    ("tokenization.get_pair_counts", lambda ids: Counter(zip(ids, ids[1:]))),
    ("tokenization.get_pair_counts", counts_defaultdict),
    ("tokenization.merge", merge_with_skip_flag),
    ("tokenization.train_bpe", train_most_common),
    ("tokenization.train_bpe", train_stop_at_singletons),
    ("tokenization.train_bpe", lambda text, vs: dict(reversed(list(ref.train_bpe(text, vs).items())))),  # insertion order is free
    ("tokenization.bpe_encode", encode_in_id_order),
]


@pytest.mark.parametrize("eid, impl", RIGHT, ids=[f"{e.split('.')[1]}-{i}" for i, (e, _) in enumerate(RIGHT)])
def test_other_correct_implementations_pass(eid, impl):
    assert check(eid, impl, quiet=True)


# ----------------------------------------------------------------------------- each exercise judged on its own
def test_train_bpe_and_bpe_encode_are_judged_without_the_learners_helpers():
    """A learner whose get_pair_counts is still a stub and whose merge is wrong: train_bpe and
    bpe_encode, written right on top of them, still pass (the check lends them the course's helpers),
    and the learner's own helpers are back in place afterwards."""
    ns: dict = {}
    exec(
        "def get_pair_counts(ids):\n    raise NotImplementedError()\n"
        "def merge(ids, pair, new_id):\n    return ids  # forgot to merge\n"
        "def train_bpe(text, vocab_size):\n"
        "    ids, merges = list(text.encode('utf-8')), {}\n"
        "    for new_id in range(256, vocab_size):\n"
        "        counts = get_pair_counts(ids)\n"
        "        if not counts:\n            break\n"
        "        pair = max(counts, key=counts.get)\n"
        "        merges[pair] = new_id\n"
        "        ids = merge(ids, pair, new_id)\n"
        "    return merges\n"
        "def bpe_encode(text, merges):\n"
        "    ids = list(text.encode('utf-8'))\n"
        "    while len(ids) >= 2:\n"
        "        pair = min(get_pair_counts(ids), key=lambda p: merges.get(p, float('inf')))\n"
        "        if pair not in merges:\n            break\n"
        "        ids = merge(ids, pair, merges[pair])\n"
        "    return ids\n", ns)
    stub, broken = ns["get_pair_counts"], ns["merge"]
    assert check("tokenization.train_bpe", ns["train_bpe"], quiet=True)
    assert check("tokenization.bpe_encode", ns["bpe_encode"], quiet=True)
    assert ns["get_pair_counts"] is stub and ns["merge"] is broken
    rejects("tokenization.merge", broken)  # the bug is charged to merge itself
