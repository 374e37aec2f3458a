"""Tokenizers: text <-> integer ids.

Two tokenizers, both exact on round trips (`decode(encode(s)) == s`) for any Unicode text:

* `CharTokenizer`: one id per character seen in training. Characters it never saw fall
  back to their UTF-8 bytes (ids after the characters), so nothing is ever lost.
* `BPETokenizer`: byte-level byte-pair encoding (Sennrich et al. 2016; GPT-2's variant
  works on bytes so there is no unknown token). Training repeatedly merges the most
  frequent adjacent pair of ids into a new id (ids 256, 257, ...).

* `RankedBPETokenizer`: the same BPE run with a published vocabulary (GPT-2's, GPT-4's):
  a tiktoken-style rank table {token bytes: id} is turned back into merges, and the
  course's own merge loop then gives exactly tiktoken's ids (tests/test_vocabularies.py).

Split patterns: `GPT2_SPLIT_PATTERN` approximates GPT-2's with Python's `re`;
`GPT2_SPLIT_PATTERN_EXACT` is GPT-2's own, which needs the third-party `regex` module
for \\p{L} / \\p{N}. `split_text` takes `re` when it can compile a pattern, else `regex`.

Left out on purpose: special tokens (`<|endoftext|>` is not a merge: tiktoken adds it
apart) and the speed tricks of production tokenizers.
References: karpathy/minbpe, which this module follows closely (its GPT4Tokenizer for the
rank tables); openai/gpt-2 `src/encoder.py` for GPT-2's pattern; openai/tiktoken.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from pathlib import Path

# GPT-2's pre-tokenization pattern, written for Python's `re` (letters = [^\W\d_]).
# Merges never cross these chunk boundaries, so " the" and "the." stay separate words.
# "_" is in \w but is neither a letter nor a digit: like GPT-2 (\p{L}, \p{N}) we count it
# with the punctuation, or re.findall would silently drop every underscore.
GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+"""

# GPT-2's own pattern, as openai/gpt-2's src/encoder.py writes it (tiktoken's r50k_base uses
# an equivalent, faster spelling). It needs the `regex` module: Python's `re` has no \p{..}.
# Where the two differ (every code point compared, Unicode 14, Python 3.11):
#   * "other numbers" and "letter numbers" (², ³, ½, Ⅻ, ①: Unicode No and Nl, ~1,100 code
#     points) are digits here (\p{N}) but letters in GPT2_SPLIT_PATTERN (`re`'s \w holds them,
#     its \d only holds decimal digits), so "x²" is one chunk there and "x", "²" here;
#   * the separators U+001C..U+001F are whitespace for `re` (str.isspace) but not for \p{..}/regex;
#   * code points assigned after Python's Unicode database (Cn there) can be letters to `regex`.
# So "\x1c's" is ["\x1c", "'s"] there and ["\x1c'", "s"] here, and GPT-2's ids differ.
# English prose without such characters splits identically with both.
GPT2_SPLIT_PATTERN_EXACT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


@functools.lru_cache(maxsize=32)
def compile_pattern(pattern: str):
    """`re.compile(pattern)` when Python's `re` accepts it, else the `regex` module's compile
    (for \\p{L}, \\p{N} and friends), so old patterns keep exactly their old behaviour."""
    try:
        return re.compile(pattern)
    except re.error:
        pass
    try:
        import regex
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(f"pattern={pattern!r} needs the third-party regex module (Python's re has no \\p{{L}}): pip install regex") from e
    return regex.compile(pattern)


def split_text(text: str, pattern: str | None) -> list[str]:
    """The chunks BPE works inside: every match of `pattern` (no pattern: the whole text).

    >>> split_text("Hello world's 123!", GPT2_SPLIT_PATTERN)
    ['Hello', ' world', "'s", ' 123', '!']
    """
    return compile_pattern(pattern).findall(text) if pattern else [text]


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
    chunks = split_text(text, pattern)
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
    return apply_merges(list(text.encode("utf-8")), merges)


def apply_merges(ids: list[int], merges: dict[tuple[int, int], int]) -> list[int]:
    """The loop of `bpe_encode`, on ids instead of text: while some adjacent pair has a merge,
    apply the one learned earliest (lowest new id) everywhere. Returns a new list.

    >>> apply_merges([97, 97, 97, 98], {(97, 97): 256, (256, 97): 257})
    [257, 98]
    """
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
            if "byte_ids" in d:  # a RankedBPETokenizer: bytes keep their published ids
                return RankedBPETokenizer(merges, d["byte_ids"], pattern=d.get("pattern"))
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
        for chunk in split_text(text, self.pattern):
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


# ----------------------------------------------------------------------------- published vocabularies
def recover_merges(ranks: dict[bytes, int]) -> dict[tuple[int, int], int]:
    """The merges behind a tiktoken-style rank table {token bytes: id}, in the course's ids.

    GPT-2 and GPT-4 publish ranks, not merges: a token's rank is both its id and its merge
    priority. Each token of two or more bytes was made by merging two earlier (lower-rank)
    tokens; to find which, run the merges found so far on its bytes: they must stop at exactly
    two pieces. Ids as this module writes them: a single byte is its byte value (0..255) and a
    longer token its rank (all >= 256, as the single bytes hold ranks 0..255).

    >>> recover_merges({**{bytes([i]): i for i in range(256)}, b"ab": 256, b"abb": 257})
    {(97, 98): 256, (256, 98): 257}
    """
    byte_ids(ranks)  # validates the 256 single bytes
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise ValueError(f"ranks: expected the ids 0..{len(ranks) - 1}, each once (a table with gaps or repeats is not a BPE vocabulary)")
    merges: dict[tuple[int, int], int] = {}
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(token) == 1:
            continue
        parts = apply_merges(list(token), merges)  # only merges of lower rank are known yet
        if len(parts) != 2:
            raise ValueError(f"ranks: token {token!r} (rank {rank}) is not one merge of two lower-rank tokens "
                             f"(its bytes merge to {len(parts)} pieces): not a byte-level BPE rank table")
        merges[(parts[0], parts[1])] = rank
    return merges


def byte_ids(ranks: dict[bytes, int]) -> list[int]:
    """byte value -> its id in the table. GPT-2 gives "!" id 0 and byte 0 id 188: printable
    bytes first (a quirk of its encoder.json), so ids and byte values differ."""
    out = []
    for b in range(256):
        r = ranks.get(bytes([b]))
        if r is None or not 0 <= r < 256:
            raise ValueError(f"ranks: the single byte {bytes([b])!r} has rank {r}: expected every byte to have a rank in 0..255")
        out.append(r)
    if len(set(out)) != 256:
        raise ValueError("ranks: two single bytes share a rank: expected 256 distinct ranks for the 256 bytes")
    return out


class RankedBPETokenizer(BPETokenizer):
    """Byte-level BPE with a published vocabulary: ids are the table's (GPT-2's, GPT-4's).

    Unlike BPETokenizer, the 256 single bytes keep the table's ids instead of their byte values
    (GPT-2: "!" is 0, "A" is 32, byte 0 is 188): encoding runs the course's merge loop unchanged
    in the course's ids (bytes 0..255, merged tokens = their rank) and renames the bytes left
    unmerged at the end; decoding renames them back. Merged tokens need no renaming.

    >>> from llmlab.text.vocabularies import course_tokenizer    # doctest: +SKIP
    >>> course_tokenizer("r50k_base").encode("Hello world")     # doctest: +SKIP
    [15496, 995]
    """

    def __init__(self, merges: dict[tuple[int, int], int], byte_ids: list[int], pattern: str | None = GPT2_SPLIT_PATTERN_EXACT):
        super().__init__(merges, pattern)
        if sorted(byte_ids) != list(range(256)):
            raise ValueError("byte_ids: expected a permutation of 0..255 (the ids of the 256 single bytes)")
        self.byte_ids = list(byte_ids)
        self._byte_of = {i: b for b, i in enumerate(self.byte_ids)}  # table id -> byte value

    @classmethod
    def from_ranks(cls, ranks: dict[bytes, int], pattern: str | None = GPT2_SPLIT_PATTERN_EXACT) -> "RankedBPETokenizer":
        """From a tiktoken rank table {token bytes: id} and its split pattern, e.g.
        `llmlab.text.vocabularies.encoding_spec("cl100k_base")`'s "mergeable_ranks" and "pat_str"."""
        return cls(recover_merges(ranks), byte_ids(ranks), pattern)

    def encode(self, text: str) -> list[int]:
        ids = super().encode(text)
        return [self.byte_ids[i] if i < 256 else i for i in ids]

    def _course_id(self, i: int) -> int:
        i = int(i)
        if not 0 <= i < self.vocab_size:
            raise ValueError(f"ids: {i} is outside 0..{self.vocab_size - 1} (special tokens such as <|endoftext|> are not merges)")
        return self._byte_of[i] if i < 256 else i

    def decode(self, ids: Iterable[int]) -> str:
        return super().decode(self._course_id(i) for i in ids)

    def token_bytes(self, i: int) -> bytes:
        return self.vocab[self._course_id(i)]

    def to_dict(self) -> dict:
        return {**super().to_dict(), "byte_ids": self.byte_ids}
