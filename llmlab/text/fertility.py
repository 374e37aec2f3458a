"""Tokens per word ("fertility", Rust et al. 2021): how many tokens a tokenizer spends on a word.

The folk rule "1,000 tokens ≈ 750 words" (OpenAI's help pages: a token is about ¾ of a word of
English) means 1.33 tokens per word. Whether it holds depends on the tokenizer and on the text,
so we measure it:

* `count_words(text)`: a **word** is a whitespace-separated run of characters, `len(text.split())`.
  That is what a word processor counts, what "750 words" means to the people who quote it, and
  what lesson 01 counts. ("don't" is one word, "(for" is one word, "==" is one word.) Counting
  `\\w+` runs instead would make "don't" two words and "==" none: fewer tokens per word on prose,
  and a number nobody quotes.
* `tokens_per_word(text, tokenizer)`: tokenizer is anything with `.encode(text) -> ids` (the course's
  tokenizers, a `tiktoken.Encoding`, a Hugging Face tokenizer) or a plain function text -> ids. Mind
  what `.encode` adds or refuses: a Hugging Face tokenizer may add a start token (pass
  `lambda s: tok.encode(s, add_special_tokens=False)`), tiktoken's refuses text containing
  "<|endoftext|>" (pass `enc.encode_ordinary`).
* `measure(text, tokenizers)`: one `Row` per tokenizer: vocabulary size, tokens/word, words per
  1,000 tokens.
* `heldout_text()` / `prose(text)`: the text to measure on. Every learner has Python's own
  documentation offline (`load_corpus("python-docs")`, built from CPython's `pydoc_data`, so it
  changes a little with the Python version: 3.11 here). Lesson 01 trains on its first 90 % and holds
  out the last 10 %; `prose` keeps the held-out paragraphs that read as running English (no tables,
  no indented code), the kind of text the folk rule is about.
* `course_bpes(train_text, vocab_sizes)`: the course's BPE at several sizes, trained once (the
  first n merges of a big vocabulary *are* the smaller one: training is greedy).

Left out on purpose: other languages (the rule is about English; tokenizers spend 2-10x more on
many other scripts), characters or bytes per token (lesson 01 prints bytes per token).
Reference: Rust et al. 2021, "How good is your tokenizer? On the monolingual performance of
multilingual language models" (fertility = subwords per word).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from llmlab.text.corpora import load_corpus
from llmlab.text.tokenizers import GPT2_SPLIT_PATTERN, BPETokenizer, train_bpe

RULE_OF_THUMB = 1000 / 750  # "1,000 tokens ≈ 750 words": 1.33 tokens per word
HELDOUT_FRACTION = 0.1  # lesson 01's split: train on the first 90 %, measure on the last 10 %

# a word of running English: letters, maybe an apostrophe or hyphen inside, maybe quotes or brackets
# and punctuation around it ("(for", "it's", "well-known.", "“quoted”,")
PROSE_WORD = re.compile(r"""[("'“‘]?[A-Za-z][A-Za-z'’-]*[.,;:!?)"'”’]*""")


@dataclass(frozen=True)
class Row:
    name: str  # the tokenizer
    vocab_size: int | None  # its vocabulary (None: it did not say)
    n_tokens: int  # tokens it spent on the text
    n_words: int  # whitespace-separated words in the text

    @property
    def tokens_per_word(self) -> float:
        return self.n_tokens / self.n_words

    @property
    def words_per_1000_tokens(self) -> float:
        return 1000 * self.n_words / self.n_tokens


def count_words(text: str) -> int:
    """Whitespace-separated words.

    >>> count_words("  Don't panic: 42 (really).\\n")
    4
    """
    return len(text.split())


def encoder_of(tokenizer) -> Callable[[str], list[int]]:
    """`tokenizer.encode`, or `tokenizer` itself if it is a function text -> ids."""
    encode = getattr(tokenizer, "encode", None)
    if callable(encode):
        return encode
    if callable(tokenizer):
        return tokenizer
    raise TypeError(f"tokenizer={tokenizer!r}: expected an object with .encode(text) or a function text -> list of ids")


def count_tokens(text: str, tokenizer) -> int:
    return len(encoder_of(tokenizer)(text))


def tokens_per_word(text: str, tokenizer) -> float:
    """Tokens spent per whitespace-separated word of `text`.

    >>> from llmlab.text.tokenizers import CharTokenizer
    >>> tokens_per_word("to be or not", CharTokenizer.train("to be or not"))   # 12 characters, 4 words
    3.0
    """
    n_words = count_words(text)
    if n_words == 0:
        raise ValueError(f"text={text[:40]!r}: expected at least one word (whitespace-separated) to divide by")
    return count_tokens(text, tokenizer) / n_words


def vocab_size_of(tokenizer) -> int | None:
    """n_vocab (tiktoken), vocab_size (the course's, Hugging Face's), else None."""
    for attr in ("n_vocab", "vocab_size"):
        v = getattr(tokenizer, attr, None)
        if isinstance(v, int):
            return v
    return None


def measure(text: str, tokenizers: Mapping[str, object], vocab_sizes: Mapping[str, int] | None = None) -> list[Row]:
    """One Row per named tokenizer on the same text; `vocab_sizes` overrides what a tokenizer reports."""
    n_words = count_words(text)
    if n_words == 0:
        raise ValueError(f"text={text[:40]!r}: expected at least one word (whitespace-separated) to divide by")
    sizes = dict(vocab_sizes or {})
    return [Row(name, sizes.get(name, vocab_size_of(tok)), count_tokens(text, tok), n_words) for name, tok in tokenizers.items()]


def split_heldout(text: str, fraction: float = HELDOUT_FRACTION) -> tuple[str, str]:
    """(train, held_out): the first 1 - fraction of the characters and the rest, as lesson 01 cuts."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction={fraction!r}: expected a share of the text strictly between 0 and 1")
    cut = int((1 - fraction) * len(text))
    return text[:cut], text[cut:]


def heldout_text(corpus: str = "python-docs") -> tuple[str, str]:
    """(train, held_out) of a corpus, split as in lesson 01."""
    return split_heldout(load_corpus(corpus))


def prose(text: str, min_words: int = 8, min_share: float = 0.9) -> str:
    """The paragraphs of `text` that read as running prose, each joined onto one line.

    A paragraph (blank-line separated) is kept when no line is indented or starts a table, list
    or quote (+ | = - * >), it has at least `min_words` words, and at least `min_share` of its
    words look like English words (PROSE_WORD). Code, tables and grammar rules are dropped.
    """
    if not 0 <= min_share <= 1:
        raise ValueError(f"min_share={min_share!r}: expected a share between 0 and 1")
    keep = []
    for block in re.split(r"\n\s*\n", text):
        lines = block.strip("\n").splitlines()
        if not lines or any(line[:1].isspace() or line[:1] in "+|=-*>" for line in lines):
            continue
        words = block.split()
        if len(words) >= min_words and sum(bool(PROSE_WORD.fullmatch(w)) for w in words) >= min_share * len(words):
            keep.append(" ".join(line.strip() for line in lines))
    return "\n\n".join(keep)


def course_bpes(train_text: str, vocab_sizes: Iterable[int], pattern: str | None = GPT2_SPLIT_PATTERN) -> dict[int, BPETokenizer]:
    """The course's BPE at each vocabulary size, from one training run at the largest."""
    sizes = sorted(set(vocab_sizes))
    if not sizes or sizes[0] < 256:
        raise ValueError(f"vocab_sizes={sizes!r}: expected one or more sizes, each at least 256 (the byte alphabet)")
    merges = train_bpe(train_text, sizes[-1], pattern)
    return {v: BPETokenizer({p: i for p, i in merges.items() if i < v}, pattern) for v in sizes}
