"""Checks for chapter 01, tokens: get_pair_counts, merge, train_bpe, bpe_encode.

The probes are built to expose the classic slips of byte-pair encoding: overlapping runs
([1, 1, 1] with pair (1, 1)), multi-digit ids that fool string tricks (11 2 contains
"1 2"), a pair at the very end (off-by-one), ties between equally frequent pairs in both
orders (so neither "largest pair" nor "smallest pair" passes by luck), non-ASCII text
(bytes, not characters) and merges handed over in an order other than their ids.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

import torch

from llmlab.checks.core import CheckFailed, Exercise, Mistake, Probe, describe, equal, judged_alone, register
from llmlab.text import tokenizers as ref

# a few hundred characters of English built from these words keep every probe fast in pure Python
WORDS = ("the", "then", "there", "token", "tokens", "pair", "pairs", "merge", "merged", "byte", "bytes",
         "a", "an", "and", "in", "into", "it", "its", "to", "top", "count", "counts", "encode", "text")


def _words(g: torch.Generator, n: int) -> str:
    idx = torch.randint(len(WORDS), (n,), generator=g).tolist()
    return " ".join(WORDS[i] for i in idx)


def _ids(g: torch.Generator, n: int, high: int) -> list[int]:
    return torch.randint(high, (n,), generator=g).tolist()


# ----------------------------------------------------------------------------- get_pair_counts
def _call_dict(fn, *args):
    """Run the candidate; a Counter or defaultdict comes back as a plain dict (the grader
    only moves plain data across its sandbox boundary, and either is a fine answer)."""
    out = fn(*args)
    return dict(out) if isinstance(out, Mapping) and type(out) is not dict else out


def reference_get_pair_counts(ids: list[int]) -> dict[tuple[int, int], int]:
    """The exercise's signature: llmlab.text.tokenizers.get_pair_counts without its extra options."""
    return ref.get_pair_counts(ids)


def _same_counts(what: str = "counts"):
    """A dict (or a Counter/defaultdict) with exactly the expected pairs and integer counts; order is free."""

    def compare(got, expected, args=None):
        if not isinstance(got, Mapping):
            raise CheckFailed(f"expected the {what} to be a dict {{(a, b): count}}, got {type(got).__name__}: {describe(got)}")
        got = dict(got)
        bad_keys = [k for k in got if not (isinstance(k, tuple) and len(k) == 2)]
        if bad_keys:
            raise CheckFailed(f"{what}: keys must be pairs (a, b) as tuples, got the key {bad_keys[0]!r}")
        missing = [k for k in expected if k not in got]
        extra = [k for k in got if k not in expected]
        if missing or extra:
            raise CheckFailed(f"{what}: pairs differ from the expected ones: missing {missing[:3]}, unexpected {extra[:3]} "
                              f"(expected {len(expected)} distinct pairs, got {len(got)})")
        wrong = [k for k in expected if got[k] != expected[k] or not isinstance(got[k], int)]
        if wrong:
            k = wrong[0]
            raise CheckFailed(f"{what}[{k!r}] is {got[k]!r}, expected {expected[k]!r} ({len(wrong)} of {len(expected)} counts wrong)")

    return compare


def _counts_keep_input(fn, ids):
    before = list(ids)
    fn(ids)
    return ids == before


def _input_kept(got, expected, args=None):
    if got is not expected:
        raise CheckFailed("your function changed the list it was given; read `ids`, don't modify it")


def _count_stepping(ids):
    counts: dict = {}
    for i in range(0, len(ids) - 1, 2):
        counts[(ids[i], ids[i + 1])] = counts.get((ids[i], ids[i + 1]), 0) + 1
    return counts


register(Exercise(
    id="tokenization.get_pair_counts",
    signature="get_pair_counts(ids: list[int]) -> dict[tuple[int, int], int]  # counts of consecutive pairs",
    reference=reference_get_pair_counts,
    probes=[
        Probe("the docstring example [1, 2, 3, 1, 2]", lambda g: ([1, 2, 3, 1, 2],), run=_call_dict, compare=_same_counts()),
        Probe("37 random ids with many repeats", lambda g: (_ids(g, 37, 5),), run=_call_dict, compare=_same_counts()),
        Probe("a run [7, 7, 7, 7] has three (7, 7) pairs (counting may overlap)", lambda g: ([7, 7, 7, 7],), run=_call_dict, compare=_same_counts(),
              hint="count every position i: the pairs are (ids[i], ids[i+1]) for i = 0 .. len(ids)-2; in a run they overlap"),
        Probe("ids above 255 and the last pair counted", lambda g: ([300, 5, 300, 5, 261, 9],), run=_call_dict, compare=_same_counts()),
        Probe("no pairs in a single id", lambda g: ([42],), run=_call_dict, compare=_same_counts()),
        Probe("no pairs in an empty list", lambda g: ([],), run=_call_dict, compare=_same_counts()),
        Probe("leaves its input unchanged", lambda g: (_ids(g, 11, 4),), run=_counts_keep_input, compare=_input_kept),
    ],
    mistakes=[
        Mistake("you stop one pair early: the last pair is (ids[-2], ids[-1]); loop over range(len(ids) - 1), or zip(ids, ids[1:])",
                lambda ids: ref.get_pair_counts(ids[:-1])),
        Mistake("you wrapped around: there is no pair (last, first); use zip(ids, ids[1:]), not a rotated copy",
                lambda ids: ref.get_pair_counts(ids + ids[:1]) if ids else {}),
        Mistake("you recorded which pairs occur, not how often: add 1 to the pair's count each time you see it",
                lambda ids: {p: 1 for p in zip(ids, ids[1:])}),
        Mistake("you stepped two at a time, so only pairs starting at even positions were counted; every position starts a pair",
                _count_stepping),
    ],
))


# ----------------------------------------------------------------------------- merge
def _merge_keeps_input(fn, ids, pair, new_id):
    """[caller's list unchanged, a new list returned both when merging and when the pair is absent]"""
    before = list(ids)
    out = fn(ids, pair, new_id)
    kept = ids == before
    out_absent = fn(ids, (max(before) + 1, max(before) + 2), new_id)  # a pair that cannot occur
    return [kept, out is not ids and out_absent is not ids]


def _merge_new_list(got, expected, args=None):
    if got == expected:  # (True, True) for a candidate; a known mistake's own pattern when diagnosing
        return
    if not got[0]:
        raise CheckFailed("your merge changed the caller's list in place; build and return a new list")
    if not got[1]:
        raise CheckFailed("your merge returned the very list it was given; return a new list, even when nothing was merged")


def _merge_inputs(g):
    ids = _ids(g, 40, 6)
    ids[-2:] = [3, 4]  # the pair at the very end: an off-by-one loop misses it
    ids[:2] = [3, 4]
    return ids, (3, 4), 299


def _merge_overlapping(ids, pair, new_id):
    """Wrong: after a match it moves on by one, so the second element is reused."""
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
        else:
            out.append(ids[i])
        i += 1
    return out


def _merge_right_to_left(ids, pair, new_id):
    return ref.merge(ids[::-1], pair[::-1], new_id)[::-1]


def _merge_drops_last(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids) - 1:
        if (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _merge_in_place(ids, pair, new_id):
    i = 0
    while i < len(ids) - 1:
        if (ids[i], ids[i + 1]) == pair:
            ids[i:i + 2] = [new_id]
        i += 1
    return ids


def _merge_strings(ids, pair, new_id):
    s = " " + " ".join(map(str, ids)) + " "
    s = s.replace(f"{pair[0]} {pair[1]}", str(new_id))
    return [int(t) for t in s.split()]


def _merge_first_only(ids, pair, new_id):
    for i in range(len(ids) - 1):
        if (ids[i], ids[i + 1]) == pair:
            return ids[:i] + [new_id] + ids[i + 2:]
    return list(ids)


register(Exercise(
    id="tokenization.merge",
    signature="merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]  # non-overlapping, left to right, new list",
    reference=ref.merge,
    probes=[
        Probe("40 random ids, the pair at both ends", _merge_inputs, compare=equal("merged ids")),
        Probe("overlapping run [1, 1, 1, 2] with (1, 1) -> [new, 1, 2]", lambda g: ([1, 1, 1, 2], (1, 1), 256), compare=equal("merged ids"),
              hint="after merging a pair, skip both of its elements (i += 2), so [1, 1, 1] becomes [new, 1], left to right"),
        Probe("a run of five 7s with (7, 7)", lambda g: ([5, 7, 7, 7, 7, 7], (7, 7), 300), compare=equal("merged ids")),
        Probe("multi-digit ids: [11, 2, 1, 2] with (1, 2)", lambda g: ([11, 2, 1, 2, 21, 1, 2], (1, 2), 258), compare=equal("merged ids"),
              hint="compare ids as numbers, pair by pair; joining them into a string and using str.replace matches across id boundaries"),
        Probe("a pair that never occurs changes nothing", lambda g: (_ids(g, 9, 3), (5, 6), 260), compare=equal("merged ids")),
        Probe("the reversed pair is not the pair", lambda g: ([2, 1, 2, 1, 1, 2], (1, 2), 270), compare=equal("merged ids")),
        Probe("an empty list", lambda g: ([], (8, 8), 256), compare=equal("merged ids")),
        Probe("a one-element list", lambda g: ([8], (8, 8), 256), compare=equal("merged ids")),
        Probe("returns a new list and leaves the caller's alone", lambda g: ([4, 4, 5, 4, 4], (4, 4), 257),
              run=_merge_keeps_input, compare=_merge_new_list),
    ],
    mistakes=[
        Mistake("your merge overlaps: after replacing a pair, jump past both of its elements (i += 2), not just one", _merge_overlapping),
        Mistake("merges go left to right: in [1, 1, 1] the first two 1s merge, giving [new, 1], not [1, new]", _merge_right_to_left),
        Mistake("your loop stops one short and drops the last id when it is not part of a pair; the last element must be copied too",
                _merge_drops_last),
        Mistake("you edited the caller's list in place; build a new list `out` and return it", _merge_in_place),
        Mistake("string replacement matches across ids (\"11 2\" contains \"1 2\"); compare the ids themselves", _merge_strings),
        Mistake("replace every occurrence of the pair, not only the first one", _merge_first_only),
    ],
))


# ----------------------------------------------------------------------------- train_bpe
def reference_train_bpe(text: str, vocab_size: int) -> dict[tuple[int, int], int]:
    """Byte-level BPE on the whole text (no pre-tokenization pattern), ids from 256."""
    return ref.train_bpe(text, vocab_size)


def _merges_in_id_order(what="merges"):
    """The same pairs with the same ids; the dict's insertion order is free (the ids give the order)."""

    def compare(got, expected, args=None):
        if not isinstance(got, Mapping):
            raise CheckFailed(f"expected the {what} to be a dict {{(a, b): new_id}}, got {type(got).__name__}: {describe(got)}")
        got = dict(got)
        if not all(isinstance(v, int) and isinstance(k, tuple) for k, v in got.items()):
            raise CheckFailed(f"{what}: expected tuple keys (a, b) and int ids, got {describe(got)}")
        if len(got) != len(expected):
            raise CheckFailed(f"you learned {len(got)} merges, expected {len(expected)} (vocab_size={args[1]} is 256 bytes + "
                              f"{args[1] - 256} merges): expected {describe(expected)}, got {describe(got)}")
        got_ids, want_ids = sorted(got.values()), list(expected.values())
        if got_ids != want_ids:
            raise CheckFailed(f"{what}: the new ids are {got_ids[:4]}…, expected {want_ids[:4]}… (one new id per merge, counting up from 256)")
        order = sorted(got, key=got.get)
        for k, (g_pair, e_pair) in enumerate(zip(order, expected)):
            if g_pair != e_pair:
                agree = f"; the {k} merge(s) before it agree" if k else ""
                raise CheckFailed(f"merge number {k} (id {256 + k}) is {g_pair!r}, expected {e_pair!r}{agree}")

    return compare


def _tie_text(g: torch.Generator, first_smaller: bool) -> tuple[str, int]:
    # "cd" and "ab" both occur twice; only the order of first appearance decides
    return ("ababxcdcd" if first_smaller else "cdcdxabab"), 258


def _unicode_text(g: torch.Generator) -> tuple[str, int]:
    return "naïve café, déjà vu: 你好你好 🙂🙂 é é " * 3, 256 + 9


def _train_wrong(select="first", start=256, extra=0, recount=True, to_ids="bytes", update=True):
    def train_bpe(text, vocab_size):
        ids = list(text.encode("utf-8")) if to_ids == "bytes" else [ord(c) for c in text]
        merges: dict = {}
        counts = ref.get_pair_counts(ids)
        for k in range(vocab_size - 256 + extra):
            if recount:
                counts = ref.get_pair_counts(ids)
            else:  # the first counts, minus the pairs already merged
                counts = {p: c for p, c in counts.items() if p not in merges}
            if not counts:
                break
            if select == "first":
                pair = max(counts, key=counts.get)
            elif select == "largest":
                pair = max(counts, key=lambda p: (counts[p], p))
            elif select == "smallest":
                pair = max(counts, key=lambda p: (counts[p], -p[0], -p[1]))
            else:  # "last": >= lets a later pair with an equal count win
                pair, best = None, -1
                for p, c in counts.items():
                    if c >= best:
                        pair, best = p, c
            merges[pair] = start + k
            if update:
                ids = ref.merge(ids, pair, start + k)
        return merges
    return train_bpe


# train_bpe and bpe_encode are judged on their own: the learner's get_pair_counts and merge (which
# they call) are the course's while they run, so one bug in merge costs the merge exercise only.
HELPERS = {"get_pair_counts": ref.get_pair_counts, "merge": ref.merge}


def _alone(ex: Exercise) -> Exercise:
    for probe in ex.probes:
        probe.run = judged_alone(HELPERS, probe.run)
    return ex


register(_alone(Exercise(
    id="tokenization.train_bpe",
    signature="train_bpe(text: str, vocab_size: int) -> dict[tuple[int, int], int]  # byte-level merges, ids from 256; ties go to the pair seen first",
    reference=reference_train_bpe,
    points=3,
    probes=[
        Probe("minbpe's example: 'aaabdaaabac', vocab_size=259", lambda g: ("aaabdaaabac", 259), run=_call_dict, compare=_merges_in_id_order()),
        Probe("English words, vocab_size=256+23", lambda g: (_words(g, 90), 256 + 23), run=_call_dict, compare=_merges_in_id_order()),
        Probe("a tie, first-seen pair is the smaller one ('ababxcdcd')", lambda g: _tie_text(g, True), run=_call_dict, compare=_merges_in_id_order(),
              hint="when two pairs are equally frequent, take the one that appears first in the ids: max(counts, key=counts.get) does, "
                   "because dicts keep insertion order and max() keeps the first of equal values"),
        Probe("a tie, first-seen pair is the larger one ('cdcdxabab')", lambda g: _tie_text(g, False), run=_call_dict, compare=_merges_in_id_order(),
              hint="when two pairs are equally frequent, take the one that appears first in the ids, not the larger or smaller pair"),
        Probe("non-ASCII text works on UTF-8 bytes", _unicode_text, run=_call_dict, compare=_merges_in_id_order(),
              hint="start from list(text.encode('utf-8')): bytes 0..255, not characters (ord('你') is 20320)"),
        Probe("vocab_size=256 learns nothing", lambda g: ("hello hello", 256), run=_call_dict, compare=_merges_in_id_order()),
        Probe("no pre-tokenization: merges may cross spaces ('ab ab ab')", lambda g: ("ab ab ab", 258), run=_call_dict, compare=_merges_in_id_order(),
              hint="train on the bytes of the whole text, without splitting it into words first (no regex pattern in this exercise)"),
    ],
    mistakes=[
        Mistake("new ids start at 256 (ids 0..255 are the bytes) and go up by one per merge", _train_wrong(start=255)),
        Mistake("learn vocab_size - 256 merges: the vocabulary is 256 bytes plus one id per merge", _train_wrong(extra=1)),
        Mistake("ties must go to the pair seen first; you took the larger pair. Use max(counts, key=counts.get)", _train_wrong(select="largest")),
        Mistake("ties must go to the pair seen first; you took the smaller pair. Use max(counts, key=counts.get)", _train_wrong(select="smallest")),
        Mistake("ties must go to the pair seen first; with `>=` a later pair of equal count replaces it. Use `>`, or max(counts, key=counts.get)",
                _train_wrong(select="last")),
        Mistake("recount the pairs after every merge: merging creates new pairs (with the new id) and removes old ones", _train_wrong(recount=False)),
        Mistake("work on UTF-8 bytes, list(text.encode('utf-8')), not on characters (ord)", _train_wrong(to_ids="chars")),
        Mistake("apply each merge to the ids (ids = merge(ids, pair, new_id)) before counting again", _train_wrong(update=False)),
    ],
)))


# ----------------------------------------------------------------------------- bpe_encode
def _shuffled(merges: dict, seed: int) -> dict:
    items = list(merges.items())
    random.Random(seed).shuffle(items)
    return dict(items)


def _encode_inputs(text_seed_words=120, vocab=256 + 30, other=None, order="learned"):
    def inputs(g):
        train = _words(g, text_seed_words)
        merges = ref.train_bpe(train, vocab)
        if order == "shuffled":
            merges = _shuffled(merges, 7)
        elif order == "by_pair":
            merges = dict(sorted(merges.items()))
        text = train if other is None else other(g)
        return text, merges
    return inputs


def _encode_wrong(mode):
    def bpe_encode(text, merges):
        ids = list(text.encode("utf-8")) if mode != "chars" else [ord(c) for c in text]
        if mode in ("dict_order", "chars"):
            for pair, i in merges.items():
                ids = ref.merge(ids, pair, i)
            return ids
        if mode == "reverse":
            for pair, i in sorted(merges.items(), key=lambda kv: -kv[1]):
                ids = ref.merge(ids, pair, i)
            return ids
        if mode == "stale_pairs":  # pairs computed once, from the bytes only
            present = set(zip(ids, ids[1:]))
            for pair, i in sorted(merges.items(), key=lambda kv: kv[1]):
                if pair in present:
                    ids = ref.merge(ids, pair, i)
            return ids
        if mode == "most_frequent":  # re-running training's rule: the most frequent known pair first
            while len(ids) >= 2:
                counts = {p: c for p, c in ref.get_pair_counts(ids).items() if p in merges}
                if not counts:
                    break
                pair = max(counts, key=counts.get)
                ids = ref.merge(ids, pair, merges[pair])
            return ids
        raise ValueError(mode)
    return bpe_encode


register(_alone(Exercise(
    id="tokenization.bpe_encode",
    signature="bpe_encode(text: str, merges: dict[tuple[int, int], int]) -> list[int]",
    reference=ref.bpe_encode,
    points=2,
    probes=[
        Probe("minbpe's example encodes to [258, 100, 258, 97, 99]",
              lambda g: ("aaabdaaabac", ref.train_bpe("aaabdaaabac", 259)), compare=equal("ids")),
        Probe("the training text, 30 merges", _encode_inputs(), compare=equal("ids")),
        Probe("new text with unseen and non-ASCII characters", _encode_inputs(other=lambda g: "Then tokens merged — ça 🙂 " + _words(g, 12)),
              compare=equal("ids"), hint="encode the UTF-8 bytes of the text; characters never seen in training stay as their bytes"),
        Probe("merges whose dict order is not their id order (the ids give the order)", _encode_inputs(order="shuffled"), compare=equal("ids"),
              hint="apply merges in the order they were learned, i.e. by increasing id (the pair present with the lowest id first), "
                   "not in the dict's order"),
        Probe("merges sorted by pair, not by id", _encode_inputs(order="by_pair", other=lambda g: _words(g, 30)), compare=equal("ids")),
        Probe("the earliest merge wins, even when a later one is more frequent", lambda g: ("ababc", {(98, 99): 256, (97, 98): 257}),
              compare=equal("ids"), hint="encoding does not count frequencies: merge the pair present whose id is lowest, then repeat"),
        Probe("no merges: the bytes", lambda g: ("héllo", {}), compare=equal("ids")),
        Probe("empty text", lambda g: ("", ref.train_bpe("abab abab", 258)), compare=equal("ids")),
    ],
    mistakes=[
        Mistake("apply merges in the order they were learned (increasing id), not in the dict's order", _encode_wrong("dict_order")),
        Mistake("you applied the newest merges first; apply them from the lowest id up, as training made them", _encode_wrong("reverse")),
        Mistake("merging creates new pairs (with the new ids); recompute the pairs present after every merge", _encode_wrong("stale_pairs")),
        Mistake("encoding does not count frequencies: at each step merge the pair with the lowest id in `merges`", _encode_wrong("most_frequent")),
        Mistake("encode the UTF-8 bytes, list(text.encode('utf-8')), not the characters", _encode_wrong("chars")),
    ],
)))
