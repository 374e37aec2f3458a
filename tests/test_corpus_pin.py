"""The python-docs corpus changes with every CPython release: the suite says which one the lessons'
stored outputs were made with, and on another Python it runs their notebooks without comparing
printed numbers (tests/conftest.py), instead of failing on numbers no learner's code changed."""

from __future__ import annotations

import hashlib
import platform
from types import SimpleNamespace

import pytest

from conftest import relax_corpus_cells
from llmlab.text.corpora import PYTHON_DOCS_PINNED, python_docs, python_docs_is_pinned


class IPyNbCell(SimpleNamespace):  # what the hook looks at: the type's name, .options, .parent.fspath
    pass


def cells(tmp_path, text: str, n: int = 2) -> list:
    nb = tmp_path / f"nb{abs(hash(text))}.ipynb"
    nb.write_text(text, encoding="utf-8")
    return [IPyNbCell(options={"check": True}, parent=SimpleNamespace(fspath=nb)) for _ in range(n)]


def test_relaxes_only_corpus_notebooks_and_only_when_not_pinned(tmp_path):
    docs, other = cells(tmp_path, '{"source": "load_corpus(\\"python-docs\\")"}'), cells(tmp_path, '{"source": "1 + 1"}')
    assert relax_corpus_cells(docs + other, pinned=True) == 0
    assert all(c.options["check"] for c in docs + other)
    assert relax_corpus_cells(docs + other, pinned=False) == 2
    assert [c.options["check"] for c in docs + other] == [False, False, True, True]


def test_cells_marked_ignore_output_stay_unchecked_and_are_not_counted(tmp_path):
    items = cells(tmp_path, "python-docs")
    items[0].options["check"] = False  # NBVAL_IGNORE_OUTPUT
    assert relax_corpus_cells(items, pinned=False) == 1


def test_pin_records_length_and_hash_of_the_text():
    text = python_docs()
    pinned = hashlib.sha256(text.encode("utf-8")).hexdigest() == PYTHON_DOCS_PINNED[2]
    assert python_docs_is_pinned() is pinned
    if pinned:
        assert len(text) == PYTHON_DOCS_PINNED[1]


@pytest.mark.skipif(platform.python_version() != PYTHON_DOCS_PINNED[0], reason=f"the pin was taken on Python {PYTHON_DOCS_PINNED[0]}")
def test_the_pinned_python_has_the_pinned_corpus():
    assert python_docs_is_pinned()
