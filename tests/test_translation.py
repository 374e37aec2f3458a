"""The translation data: the made-up language pair's grammar and alignments, the word
vocabulary, the .po parser, and Django's catalogues (read as files, checked by SHA-256)."""

from __future__ import annotations

import importlib.util

import pytest

from llmlab.text import translation as tr


def test_known_translation_and_alignment():
    p = tr.translate("the big dog chases a small cat".split())
    assert p.tgt == ["lo", "hundo", "grana", "un", "kato", "mika", "wo", "cazi"]
    assert p.align == [0, 2, 1, 4, 6, 5, -1, 3]
    p = tr.translate("alice sees bob and the cat likes a fish".split())
    assert p.tgt == ["alice", "bob", "wo", "vidi", "i", "lo", "kato", "un", "fiso", "wo", "ami"]


@pytest.mark.parametrize("clauses", [(1, 1), (1, 2), (3, 3)])
def test_every_aligned_word_translates_its_source_word(clauses):
    for p in tr.make_pairs(200, seed=3, clauses=clauses):
        assert len(p.align) == len(p.tgt)
        for w, a in zip(p.tgt, p.align):
            assert (w == tr.OBJECT_MARKER) == (a == -1)
            if a >= 0:
                assert tr.LEXICON[p.src[a]] == w
        # every source word is translated exactly once
        assert sorted(a for a in p.align if a >= 0) == list(range(len(p.src)))
        assert clauses[0] - 1 <= p.src.count("and") <= clauses[1] - 1


def test_make_pairs_is_deterministic_and_validates():
    assert tr.make_pairs(20, seed=1) == tr.make_pairs(20, seed=1) != tr.make_pairs(20, seed=2)
    with pytest.raises(ValueError, match="clauses"):
        tr.make_pairs(3, clauses=(2, 1))
    with pytest.raises(ValueError, match="n="):
        tr.make_pairs(-1)
    with pytest.raises(ValueError, match="src"):
        tr.translate("dog the sees".split())


def test_dictionary_baseline_keeps_the_source_order():
    assert tr.dictionary_translate("the big dog chases bob".split()) == ["lo", "grana", "hundo", "cazi", "bob"]


def test_word_vocab_round_trip():
    v = tr.WordVocab(["b", "a", "b"])
    assert v.itos == ["<pad>", "<bos>", "<eos>", "<unk>", "b", "a"]
    assert v.encode(["a", "zzz"], eos=True) == [5, 3, 2]
    assert v.decode([1, 5, 4, 2, 4]) == ["a", "b"]  # bos dropped, stops at eos


PO = r'''# header comment
msgid ""
msgstr ""
"Language: fr\n"

#: some/file.py:1
msgid "Yes"
msgstr "Oui"

msgid ""
"A long "
"message with \"quotes\""
msgstr ""
"Un long message "
"avec des \"guillemets\""

#, fuzzy
msgid "Maybe"
msgstr "Peut-être"

#, python-format
msgid "%(count)s item"
msgid_plural "%(count)s items"
msgstr[0] "%(count)s élément"
msgstr[1] "%(count)s éléments"

msgid "Untranslated"
msgstr ""

msgctxt "month"
msgid "May"
msgstr "Mai"
'''


def test_parse_po():
    assert tr.parse_po(PO) == [("Yes", "Oui"), ('A long message with "quotes"', 'Un long message avec des "guillemets"'), ("May", "Mai")]


def test_word_tokens_keep_placeholders_whole():
    assert tr.word_tokens("Ensure %(limit)s, Bob.") == ["ensure", "%(limit)s", ",", "bob", "."]


@pytest.mark.skipif(importlib.util.find_spec("django") is None, reason="Django (its catalogues) is not installed")
def test_django_catalogues():
    fr, de = tr.django_pairs("fr"), tr.django_pairs("de")
    assert len(fr) == 333 and len(de) == 332
    assert fr[:2] == [("Afrikaans", "Afrikaans"), ("Arabic", "Arabe")]
    assert all(a and b for a, b in fr + de)


def test_django_missing_or_changed_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(tr.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps django==5.2.19"):
        tr.django_pairs("fr")
    with pytest.raises(ValueError, match="lang="):
        tr.django_po_path("xx")
    po = tmp_path / "django" / "conf" / "locale" / "fr" / "LC_MESSAGES" / "django.po"
    po.parent.mkdir(parents=True)
    po.write_text(PO, encoding="utf-8")
    spec = type("Spec", (), {"submodule_search_locations": [str(tmp_path / "django")]})()
    monkeypatch.setattr(tr.importlib.util, "find_spec", lambda name: spec)
    with pytest.raises(ValueError, match="SHA-256"):
        tr.django_pairs("fr")
