"""Tokenizers: text <-> integer ids.

Two tokenizers, both exact on round trips (`decode(encode(s)) == s`) for any Unicode text:

* `CharTokenizer`: one id per character seen in training. Characters it never saw fall
  back to their UTF-8 bytes (ids after the characters), so nothing is ever lost.
* `BPETokenizer`: byte-level byte-pair encoding (Sennrich et al. 2016; GPT-2's variant
  works on bytes so there is no unknown token). Training repeatedly merges the most
  frequent adjacent pair of ids into a new id (ids 256, 257, ...).

Left out on purpose: special tokens, GPT-4's regex (it needs the third-party `regex`
module for \\p{L}) and the speed tricks of production tokenizers.
Reference: karpathy/minbpe, which this module follows closely.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

# GPT-2's pre-tokenization pattern, written for Python's `re` (letters = [^\W\d_]).
# Merges never cross these chunk boundaries, so " the" and "the." stay separate words.
# "_" is in \w but is neither a letter nor a digit: like GPT-2 (\p{L}, \p{N}) we count it
# with the punctuation, or re.findall would silently drop every underscore.
GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+"""


# ----------------------------------------------------------------------------- BPE pieces
def get_pair_counts(ids: list[int], counts: dict[tuple[int, int], int] | None = None, weight: int = 1) -> dict[tuple[int, int], int]:
    """Count consecutive pairs, in order of first appearance.

    >>> get_pair_counts([1, 2, 3, 1, 2])
    {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    """
    counts = {} if counts is None else counts
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + weight
    return counts


def merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every non-overlapping occurrence of `pair`, left to right, by `new_id`.

    >>> merge([1, 1, 1, 2], (1, 1), 9)   # the subtle case: overlapping runs
    [9, 1, 2]

    Returns a new list; the caller's list is left untouched.
    """
    out: list[int] = []
    i = 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def train_bpe(text: str, vocab_size: int, pattern: str | None = None) -> dict[tuple[int, int], int]:
    """Learn `vocab_size - 256` merges on the UTF-8 bytes of `text`.

    Each step merges the most frequent pair; ties go to the pair seen first in the text.
    With a `pattern`, the text is first split into chunks and merges stay inside a chunk
    (we count each distinct chunk once, weighted by how often it occurs: same result,
    much faster). Training stops early when no pair occurs twice... or at all: it stops
    when no pair is left.
    """
    if vocab_size < 256:
        raise ValueError(f"vocab_size={vocab_size}: expected at least 256 (the byte alphabet)")
    chunks = re.findall(pattern, text) if pattern else [text]
    freq: dict[tuple[int, ...], int] = {}
    for chunk in chunks:  # dicts keep first-appearance order, which the tie rule needs
        key = tuple(chunk.encode("utf-8"))
        freq[key] = freq.get(key, 0) + 1
    words = [list(k) for k in freq]
    weights = list(freq.values())

    merges: dict[tuple[int, int], int] = {}
    for new_id in range(256, vocab_size):
        counts: dict[tuple[int, int], int] = {}
        for ids, w in zip(words, weights):
            get_pair_counts(ids, counts, w)
        if not counts:
            break
        pair = max(counts, key=counts.get)  # max() keeps the first of equal counts
        merges[pair] = new_id
        words = [merge(ids, pair, new_id) if len(ids) > 1 else ids for ids in words]
    return merges


def bpe_encode(text: str, merges: dict[tuple[int, int], int]) -> list[int]:
    """Encode `text` with learned merges, applying them in the order they were learned.

    At each step we merge the pair present in the ids that was learned earliest (the
    lowest new id), exactly as training would have.
    """
    ids = list(text.encode("utf-8"))
    while len(ids) >= 2:
        pairs = set(zip(ids, ids[1:]))
        pair = min(pairs, key=lambda p: merges.get(p, float("inf")))
        if pair not in merges:
            break  # nothing left to merge
        ids = merge(ids, pair, merges[pair])
    return ids


def build_vocab(merges: dict[tuple[int, int], int]) -> dict[int, bytes]:
    """id -> the bytes it stands for."""
    vocab = {i: bytes([i]) for i in range(256)}
    for (a, b), i in sorted(merges.items(), key=lambda kv: kv[1]):
        vocab[i] = vocab[a] + vocab[b]
    return vocab


# ----------------------------------------------------------------------------- tokenizers
class Tokenizer:
    """What every tokenizer offers: encode, decode, vocab_size, save and load."""

    vocab_size: int

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, ids: Iterable[int]) -> str:
        raise NotImplementedError

    def to_dict(self) -> dict:
        raise NotImplementedError

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=1), encoding="utf-8")

    @staticmethod
    def load(path: str | Path) -> "Tokenizer":
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"path={str(path)!r}: not a saved llmlab tokenizer ({e})") from e
        return Tokenizer.from_dict(d)

    @staticmethod
    def from_dict(d: dict) -> "Tokenizer":
        kind = d.get("type")
        if kind == "char":
            return CharTokenizer(d["chars"], byte_fallback=d.get("byte_fallback", True))
        if kind == "bpe":
            merges = {(a, b): i for a, b, i in d["merges"]}
            return BPETokenizer(merges, pattern=d.get("pattern"))
        raise ValueError(f"tokenizer type={kind!r}: expected 'char' or 'bpe'")


class CharTokenizer(Tokenizer):
    """One id per character: ids 0..n-1 are the sorted characters seen in training.

    With `byte_fallback` (the default) ids n..n+255 are the 256 bytes, used for any
    character not in the vocabulary, so every string round-trips exactly.
    """

    def __init__(self, chars: Iterable[str], byte_fallback: bool = True):
        self.chars = sorted(set(chars))
        if any(len(c) != 1 for c in self.chars):
            raise ValueError("chars: expected single characters")
        self.byte_fallback = byte_fallback
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        self.vocab_size = len(self.chars) + (256 if byte_fallback else 0)

    @classmethod
    def train(cls, text: str, byte_fallback: bool = True) -> "CharTokenizer":
        return cls(set(text), byte_fallback=byte_fallback)

    def encode(self, text: str) -> list[int]:
        n, out = len(self.chars), []
        for c in text:
            i = self.stoi.get(c)
            if i is not None:
                out.append(i)
            elif self.byte_fallback:
                out.extend(n + b for b in c.encode("utf-8"))
            else:
                raise ValueError(f"text: character {c!r} is not in this tokenizer's vocabulary (build it with byte_fallback=True to encode unseen characters)")
        return out

    def decode(self, ids: Iterable[int]) -> str:
        n, parts, pending = len(self.chars), [], bytearray()
        for i in ids:
            i = int(i)
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"ids: {i} is outside 0..{self.vocab_size - 1}")
            if i < n:
                if pending:
                    parts.append(pending.decode("utf-8", errors="replace"))
                    pending = bytearray()
                parts.append(self.chars[i])
            else:
                pending.append(i - n)
        if pending:
            parts.append(pending.decode("utf-8", errors="replace"))
        return "".join(parts)

    def to_dict(self) -> dict:
        return {"type": "char", "chars": self.chars, "byte_fallback": self.byte_fallback}


class BPETokenizer(Tokenizer):
    """Byte-level BPE. Unlike CharTokenizer its base alphabet is all 256 bytes.

    >>> tok = BPETokenizer.train("aaabdaaabac", vocab_size=259, pattern=None)
    >>> tok.encode("aaabdaaabac")
    [258, 100, 258, 97, 99]
    """

    def __init__(self, merges: dict[tuple[int, int], int], pattern: str | None = GPT2_SPLIT_PATTERN):
        self.merges = dict(merges)
        self.pattern = pattern
        self.vocab = build_vocab(self.merges)
        self.vocab_size = 256 + len(self.merges)
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def train(cls, text: str, vocab_size: int, pattern: str | None = GPT2_SPLIT_PATTERN) -> "BPETokenizer":
        return cls(train_bpe(text, vocab_size, pattern), pattern)

    def encode(self, text: str) -> list[int]:
        if not self.pattern:
            return bpe_encode(text, self.merges)
        out: list[int] = []
        for chunk in re.findall(self.pattern, text):
            ids = self._cache.get(chunk)
            if ids is None:
                ids = self._cache[chunk] = bpe_encode(chunk, self.merges)
            out.extend(ids)
        return out

    def decode(self, ids: Iterable[int]) -> str:
        try:
            raw = b"".join(self.vocab[int(i)] for i in ids)
        except KeyError as e:
            raise ValueError(f"ids: {e.args[0]} is outside 0..{self.vocab_size - 1}") from None
        # a sampled sequence may end inside a multi-byte character: show U+FFFD, don't crash
        return raw.decode("utf-8", errors="replace")

    def token_bytes(self, i: int) -> bytes:
        return self.vocab[i]

    def to_dict(self) -> dict:
        merges = [[a, b, i] for (a, b), i in sorted(self.merges.items(), key=lambda kv: kv[1])]
        return {"type": "bpe", "pattern": self.pattern, "merges": merges}
