"""WordPiece (Schuster & Nakajima 2012; BERT, Devlin et al. 2019): words split into the longest
pieces a fixed vocabulary knows, "##" marking a piece that continues a word.

Two steps, as BERT's uncased tokenizer (and Hugging Face's `tokenizers` BertNormalizer +
BertPreTokenizer + WordPiece, which tests prove equal on real text):

1. the *basic* tokenizer: drop control characters, put spaces around CJK ideographs, lowercase,
   strip accents (NFD, then drop the combining marks: "café" -> "cafe"), split on whitespace, and
   make every punctuation character a word of its own: "Hello, world!" -> hello , world !
2. *WordPiece* on each word: greedy longest-match-first. Take the longest prefix in the vocabulary,
   then the longest "##"-piece of what is left, and so on:

       "unaffable" -> un ##aff ##able        "tokenization" -> token ##ization

   A word with no way through (a piece missing from the vocabulary), or longer than 100
   characters, becomes one [UNK].

Unlike BPE (llmlab.text.tokenizers), which learns merges and applies them in the order learned,
WordPiece keeps only the vocabulary and matches greedily at encoding time; and it works on
normalised words, not bytes, so it cannot round-trip every text ("Café" decodes to "cafe").

Left out on purpose: training a WordPiece vocabulary (BERT's used a likelihood criterion close to
BPE's), cased vocabularies, the `never_split` list, and offsets (which characters a piece covers).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from pathlib import Path

import torch

MAX_WORD_CHARS = 100  # BERT's max_input_chars_per_word: a longer "word" is one [UNK]


def _is_whitespace(c: str) -> bool:
    return c in " \t\n\r" or unicodedata.category(c) == "Zs"


def _is_control(c: str) -> bool:
    if c in "\t\n\r":  # whitespace, not control, for BERT
        return False
    return unicodedata.category(c) in ("Cc", "Cf")


def _is_punctuation(c: str) -> bool:
    cp = ord(c)
    # every non-letter, non-number ASCII character ("$", "^", "`", ...) counts, as in BERT
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(c).startswith("P")


def _is_cjk(cp: int) -> bool:
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2B73F
            or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def basic_tokenize(text: str, lowercase: bool = True) -> list[str]:
    """BERT's basic tokenizer: 'Héllo, wörld!' -> ['hello', ',', 'world', '!']."""
    chars = []
    for c in text:
        if ord(c) == 0 or ord(c) == 0xFFFD or _is_control(c):
            continue
        if _is_whitespace(c):
            chars.append(" ")
        elif _is_cjk(ord(c)):
            chars.append(f" {c} ")  # every ideograph is a word of its own
        else:
            chars.append(c)
    words = []
    for word in "".join(chars).split():
        if lowercase:
            word = word.lower()
            word = "".join(c for c in unicodedata.normalize("NFD", word) if unicodedata.category(c) != "Mn")  # strip accents
        current = ""
        for c in word:
            if _is_punctuation(c):
                if current:
                    words.append(current)
                words.append(c)
                current = ""
            else:
                current += c
        if current:
            words.append(current)
    return words


def wordpiece(word: str, vocab: dict[str, int] | set[str], unk: str = "[UNK]", max_chars: int = MAX_WORD_CHARS) -> list[str]:
    """Greedy longest-match-first: 'unaffable' -> ['un', '##aff', '##able'] (with BERT's vocabulary);
    [unk] when some piece has no match, or the word is longer than max_chars characters."""
    if len(word) > max_chars:
        return [unk]
    pieces, start = [], 0
    while start < len(word):
        end = len(word)
        while end > start:  # the longest piece from `start` that the vocabulary knows
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                break
            end -= 1
        if end == start:  # not even one character matched: the whole word is unknown
            return [unk]
        pieces.append(piece)
        start = end
    return pieces


class WordPieceTokenizer:
    """BERT's uncased tokenizer over a vocabulary file (one token a line; the id is the line number)."""

    def __init__(self, vocab: list[str], lowercase: bool = True, unk: str = "[UNK]", cls: str = "[CLS]", sep: str = "[SEP]",
                 pad: str = "[PAD]", mask: str = "[MASK]"):
        self.itos = list(vocab)
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        for name, tok in (("unk", unk), ("cls", cls), ("sep", sep), ("pad", pad), ("mask", mask)):
            if tok not in self.stoi:
                raise ValueError(f"{name}={tok!r}: not in the vocabulary; expected a vocabulary with BERT's special tokens")
        self.lowercase, self.unk = lowercase, unk
        self.unk_id, self.cls_id, self.sep_id, self.pad_id, self.mask_id = (self.stoi[t] for t in (unk, cls, sep, pad, mask))
        self.vocab_size = len(self.itos)

    @classmethod
    def from_file(cls, path: str | Path, **kwargs) -> "WordPieceTokenizer":
        """A BERT vocab.txt."""
        lines = Path(path).read_text(encoding="utf-8").split("\n")
        if lines and lines[-1] == "":
            lines = lines[:-1]
        return cls(lines, **kwargs)

    def tokenize(self, text: str) -> list[str]:
        """Text -> pieces: 'Tokenization works!' -> ['token', '##ization', 'works', '!']."""
        return [p for word in basic_tokenize(text, self.lowercase) for p in wordpiece(word, self.stoi, self.unk)]

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Text -> ids, with [CLS] first and [SEP] last unless add_special_tokens=False."""
        ids = [self.stoi[p] for p in self.tokenize(text)]
        return [self.cls_id, *ids, self.sep_id] if add_special_tokens else ids

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """Ids -> text: pieces joined by spaces, "##" continuations glued to the piece before."""
        specials = {self.cls_id, self.sep_id, self.pad_id}
        out = ""
        for i in ids:
            i = int(i)
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"ids: {i} is outside 0..{self.vocab_size - 1}")
            if skip_special_tokens and i in specials:
                continue
            t = self.itos[i]
            out += t[2:] if t.startswith("##") and out else (" " + t if out else t)
        return out

    def batch(self, texts: list[str], max_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Texts -> (ids LongTensor[B, T], is_token BoolTensor[B, T]), padded on the right with [PAD]
        to the longest (cut to max_length tokens, [SEP] kept last)."""
        if isinstance(texts, str) or not texts:
            raise ValueError("texts: expected a non-empty list of strings")
        rows = [self.encode(t) for t in texts]
        if max_length is not None:
            rows = [r if len(r) <= max_length else r[: max_length - 1] + [self.sep_id] for r in rows]
        T = max(len(r) for r in rows)
        ids = torch.full((len(rows), T), self.pad_id, dtype=torch.long)  # (B, T)
        is_token = torch.zeros(len(rows), T, dtype=torch.bool)
        for b, r in enumerate(rows):
            ids[b, : len(r)] = torch.tensor(r)
            is_token[b, : len(r)] = True
        return ids, is_token
