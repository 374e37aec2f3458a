"""llmlab.text.tokenizers: round trips on any Unicode, save/load, known answers, the BPE rules
(non-overlapping merges, ties to the pair seen first), an independent naive trainer as an
oracle for the pattern-split trainer, and the pictures of chapter 01 (llmlab.viz.tokens)."""

from __future__ import annotations

import random
import re

import pytest

from llmlab.text import load_corpus
from llmlab.text import tokenizers as T
from llmlab.viz import tokens as vt

WEIRD = [
    "",
    " ",
    "\n\n\t ",
    "hello world",
    "naïve café déjà vu — “quotes” …",
    "你好，世界。日本語のテキスト",
    "emoji 🙂🚀 and a family 👨‍👩‍👧 (zero-width joiners), flags 🇫🇷",
    "combining: e\u0301 vs é, Å vs A\u030a",
    "RTL: שלום עולם مرحبا",
    "control \x00\x01\x7f and BOM \ufeff and U+10FFFF \U0010ffff",
    "  leading and trailing spaces  ",
    "numbers 1234567890 3.14159 0xFF",
]

# code-point ranges to draw random text from (surrogates D800-DFFF are not characters)
RANGES = [(0x20, 0x7E), (0x0A, 0x0A), (0xA0, 0x24F), (0x370, 0x3FF), (0x4E00, 0x4FFF), (0x1F300, 0x1F64F), (0xAC00, 0xACFF), (0x10000, 0x1007F)]


def random_text(rng: random.Random, n: int) -> str:
    out = []
    for _ in range(n):
        lo, hi = rng.choice(RANGES)
        out.append(chr(rng.randint(lo, hi)))
    return "".join(out)


@pytest.fixture(scope="module")
def corpus() -> str:
    return load_corpus("python-docs")[:40_000]


@pytest.fixture(scope="module")
def bpe(corpus) -> T.BPETokenizer:
    return T.BPETokenizer.train(corpus, vocab_size=256 + 120)


@pytest.fixture(scope="module")
def chars(corpus) -> T.CharTokenizer:
    return T.CharTokenizer.train(corpus)


# ----------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("text", WEIRD)
def test_round_trip_on_weird_text(bpe, chars, text):
    for tok in (bpe, chars):
        ids = tok.encode(text)
        assert all(isinstance(i, int) and 0 <= i < tok.vocab_size for i in ids)
        assert tok.decode(ids) == text


def test_round_trip_on_random_unicode(bpe, chars):
    rng = random.Random(0)
    for _ in range(200):
        text = random_text(rng, rng.randint(0, 30))
        assert bpe.decode(bpe.encode(text)) == text
        assert chars.decode(chars.encode(text)) == text


def test_round_trip_without_a_split_pattern(corpus):
    tok = T.BPETokenizer.train(corpus[:5000], vocab_size=256 + 40, pattern=None)
    for text in WEIRD:
        assert tok.decode(tok.encode(text)) == text


def test_bpe_compresses_english_and_never_expands(bpe, corpus):
    text = corpus[:5000]
    n_bytes = len(text.encode("utf-8"))
    assert len(bpe.encode(text)) < 0.7 * n_bytes  # 120 merges on this text save well over 30%
    rng = random.Random(1)
    for _ in range(50):  # merges only ever shorten: at most one id per byte
        s = random_text(rng, 20)
        assert len(bpe.encode(s)) <= len(s.encode("utf-8"))


def test_unseen_characters_fall_back_to_bytes(chars):
    assert "你" not in chars.stoi
    ids = chars.encode("a你")
    assert ids[0] == chars.stoi["a"]
    assert [i - len(chars.chars) for i in ids[1:]] == list("你".encode("utf-8"))


def test_char_tokenizer_without_fallback_names_the_character():
    tok = T.CharTokenizer.train("abc", byte_fallback=False)
    assert tok.vocab_size == 3
    with pytest.raises(ValueError, match="'z'"):
        tok.encode("abz")


def test_decode_is_not_always_invertible():
    """decode(encode(s)) == s always; encode(decode(ids)) == ids only for the ids encode would make."""
    tok = T.BPETokenizer({(101, 101): 256}, pattern=None)  # 'e' + 'e' -> 256
    assert tok.decode([101, 101]) == "ee" == tok.decode([256])
    assert tok.encode("ee") == [256]  # two id sequences, one text: encode picks the merged one


def test_decode_of_a_cut_character_gives_replacement_not_a_crash(bpe):
    ids = list("é".encode("utf-8"))[:1]  # half of a two-byte character
    assert bpe.decode(ids) == "\ufffd"


def test_decode_rejects_unknown_ids(bpe, chars):
    with pytest.raises(ValueError, match=str(bpe.vocab_size + 5)):
        bpe.decode([bpe.vocab_size + 5])
    with pytest.raises(ValueError, match="-1"):
        chars.decode([-1])


# ----------------------------------------------------------------------------- save / load
def test_save_and_load_give_the_same_tokenizer(tmp_path, bpe, chars):
    for tok, name in ((bpe, "bpe.json"), (chars, "chars.json")):
        path = tmp_path / name
        tok.save(path)
        back = T.Tokenizer.load(path)
        assert type(back) is type(tok) and back.vocab_size == tok.vocab_size
        for text in WEIRD:
            assert back.encode(text) == tok.encode(text)
    back = T.Tokenizer.load(tmp_path / "bpe.json")
    assert back.merges == bpe.merges and list(back.merges) == list(bpe.merges) and back.pattern == bpe.pattern


def test_load_of_a_broken_file_names_the_path(tmp_path):
    p = tmp_path / "not_a_tokenizer.json"
    p.write_text("{oops", encoding="utf-8")
    with pytest.raises(ValueError, match="not_a_tokenizer.json"):
        T.Tokenizer.load(p)
    p.write_text('{"type": "wordpiece"}', encoding="utf-8")
    with pytest.raises(ValueError, match="wordpiece"):
        T.Tokenizer.load(p)


# ----------------------------------------------------------------------------- known answers
def test_minbpe_example():
    """karpathy/minbpe's test: 'aaabdaaabac' with 3 merges (aa, then aa+a wins a tie with ab)."""
    merges = T.train_bpe("aaabdaaabac", 259)
    a, b = ord("a"), ord("b")
    assert merges == {(a, a): 256, (256, a): 257, (257, b): 258}
    assert T.bpe_encode("aaabdaaabac", merges) == [258, 100, 258, 97, 99]
    tok = T.BPETokenizer(merges, pattern=None)
    assert tok.decode([258, 100, 258, 97, 99]) == "aaabdaaabac"
    assert tok.token_bytes(258) == b"aaab"


def test_get_pair_counts_docstring_and_accumulation():
    assert T.get_pair_counts([1, 2, 3, 1, 2]) == {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    assert list(T.get_pair_counts([5, 4, 5, 3])) == [(5, 4), (4, 5), (5, 3)]  # order of first appearance
    counts = T.get_pair_counts([1, 2])
    T.get_pair_counts([1, 2, 1], counts, weight=3)
    assert counts == {(1, 2): 4, (2, 1): 3}
    assert T.get_pair_counts([7, 7, 7]) == {(7, 7): 2}  # pairs overlap when counting
    assert T.get_pair_counts([]) == {} and T.get_pair_counts([1]) == {}


def test_merge_is_non_overlapping_left_to_right_and_returns_a_new_list():
    ids = [1, 1, 1, 2, 1, 1, 1, 1]
    before = list(ids)
    assert T.merge(ids, (1, 1), 9) == [9, 1, 2, 9, 9]
    assert ids == before
    assert T.merge(ids, (4, 4), 9) == ids and T.merge(ids, (4, 4), 9) is not ids
    assert T.merge([11, 2, 1, 2], (1, 2), 7) == [11, 2, 7]  # ids are numbers, not digits
    assert T.merge([3, 4], (3, 4), 5) == [5] and T.merge([], (3, 4), 5) == []


@pytest.mark.parametrize("text, first", [("ababxcdcd", (97, 98)), ("cdcdxabab", (99, 100))])
def test_ties_go_to_the_pair_seen_first(text, first):
    assert next(iter(T.train_bpe(text, 257))) == first


def test_vocab_size_below_256_is_refused():
    with pytest.raises(ValueError, match="vocab_size=255"):
        T.train_bpe("abc", 255)


def test_training_stops_when_no_pair_is_left():
    assert T.train_bpe("ab", 300) == {(97, 98): 256}
    assert T.train_bpe("", 300) == {}


# ----------------------------------------------------------------------------- oracles and properties
def naive_train(text: str, vocab_size: int, pattern: str) -> dict[tuple[int, int], int]:
    """Independent oracle: every chunk occurrence as its own list, counts recomputed from scratch."""
    words = [list(c.encode("utf-8")) for c in re.findall(pattern, text)]
    merges = {}
    for new_id in range(256, vocab_size):
        counts: dict = {}
        for w in words:
            for p in zip(w, w[1:]):
                counts[p] = counts.get(p, 0) + 1
        if not counts:
            break
        best = max(counts.values())
        pair = next(p for p in counts if counts[p] == best)  # first seen, scanning the text in order
        merges[pair] = new_id
        words = [T.merge(w, pair, new_id) for w in words]
    return merges


def test_pattern_trainer_matches_the_naive_oracle(corpus):
    text = corpus[:6000]
    assert T.train_bpe(text, 256 + 60, T.GPT2_SPLIT_PATTERN) == naive_train(text, 256 + 60, T.GPT2_SPLIT_PATTERN)


def test_merges_of_a_smaller_vocabulary_are_a_prefix(corpus):
    """Greedy training: the first n merges of a big vocabulary are the small vocabulary (lesson 01 relies on it)."""
    big = T.train_bpe(corpus[:8000], 256 + 50, T.GPT2_SPLIT_PATTERN)
    small = T.train_bpe(corpus[:8000], 256 + 20, T.GPT2_SPLIT_PATTERN)
    assert list(big.items())[:20] == list(small.items())
    assert vt.first_merges(big, 20) == small


def test_encoding_equals_applying_merges_in_learned_order(corpus):
    """Lowest-id-first merging (bpe_encode) == applying each merge in turn to the whole text,
    which is what training did to the training text."""
    merges = T.train_bpe(corpus[:3000], 256 + 40)
    for text in (corpus[:3000], corpus[3000:4000], "naïve 🙂 text"):
        ids = list(text.encode("utf-8"))
        for pair, i in merges.items():
            ids = T.merge(ids, pair, i)
        assert T.bpe_encode(text, merges) == ids


def test_split_pattern_keeps_every_character():
    """re.findall silently skips what no alternative matches (it once dropped every '_')."""
    rng = random.Random(2)
    for text in WEIRD + ["def __init__(self): x_1 = 2² _"] + [random_text(rng, 40) for _ in range(200)]:
        assert "".join(re.findall(T.GPT2_SPLIT_PATTERN, text)) == text
    assert re.findall(T.GPT2_SPLIT_PATTERN, " __init__(self)") == [" __", "init", "__(", "self", ")"]


def test_merges_never_cross_chunk_boundaries(bpe, corpus):
    text = corpus[5000:9000]
    chunks = re.findall(bpe.pattern, text)
    assert "".join(chunks) == text  # the pattern covers every character
    per_chunk = [i for c in chunks for i in bpe.encode(c)]
    assert bpe.encode(text) == per_chunk


# ----------------------------------------------------------------------------- pictures
def test_segment_and_stepper(bpe):
    text = "the tokenizer"
    assert b"".join(vt.segment(text, bpe.merges, 0)) == text.encode()
    assert vt.segment(text, bpe.merges, 0) == [bytes([b]) for b in text.encode()]
    assert len(vt.segment(text, bpe.merges)) < len(text)
    with pytest.raises(ValueError, match="n=999"):
        vt.first_merges(bpe.merges, 999)
    box = vt.merge_stepper(text, bpe.merges)
    slider, info, view = box.children
    slider.value = 0
    assert "no merges yet" in info.value and f"<b>{len(text)} tokens</b>" in info.value
    slider.value = slider.max
    assert f"<b>{len(bpe.encode(text))} tokens</b>" in info.value and f"merge {slider.max}:" in info.value
    assert view.value.count("<span") == len(bpe.encode(text))


def test_plots_have_titles_and_labels(bpe):
    import matplotlib.pyplot as plt

    for fig in (vt.plot_segmentation("the tokens of the text", bpe.merges, [0, 10, 100]),
                vt.plot_tokens_per_word([256, 512], [2.5, 1.9])):
        ax = fig.axes[0]
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
        w, h = fig.get_size_inches()
        assert w <= 8 and h <= 4
        plt.close(fig)
