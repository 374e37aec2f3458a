"""llmlab.text.docstrings: the rules that make (body -> summary) pairs, on a planted standard
library, and the real one pinned on the Python the lessons were made with."""

from __future__ import annotations

import sys
import textwrap

import pytest

from llmlab.text import docstrings as D

BODY = "It does the thing described above, carefully, for every item it is given, and returns the result."


def write(root, rel, src):
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(textwrap.dedent(src), encoding="utf-8")


def test_the_rules_on_a_planted_stdlib(tmp_path):
    good = f'    """Do the thing.\n\n    {BODY}\n    """\n'
    write(tmp_path, "pkg/mod.py", f"def f():\n{good}\nclass C:\n    def m(self):\n        \"\"\"Do another thing.\n\n        {BODY}\n        \"\"\"\n"
                                  f"def one_line():\n    \"\"\"Only a summary.\"\"\"\n"
                                  f"def no_blank():\n    \"\"\"A summary.\n    {BODY}\n    \"\"\"\n"
                                  f"def short():\n    \"\"\"A summary.\n\n    Too short.\n    \"\"\"\n"
                                  f"def twin():\n{good}")  # an exact repeat of f's docstring
    write(tmp_path, "pkg/__init__.py", f"def g():\n{good.replace('Do the thing', 'Do it in the package')}")
    write(tmp_path, "_private.py", f"def h():\n{good}")
    write(tmp_path, "test/test_x.py", f"def t():\n{good.replace('Do the thing', 'Test it')}")
    write(tmp_path, "broken.py", "def (:\n")
    pairs = D.docstring_pairs(tmp_path)
    assert [(p.module, p.name, p.summary) for p in pairs] == [("pkg", "g", "Do it in the package."), ("pkg.mod", "f", "Do the thing."),
                                                               ("pkg.mod", "C.m", "Do another thing.")]
    assert pairs[1].body == BODY


def test_split_keeps_each_module_on_one_side():
    pairs = [D.DocPair(f"m{i % 20}", f"f{i}", "A summary.", BODY) for i in range(200)]
    train, test = D.split_by_module(pairs, 0.2, seed=1)
    assert len(train) + len(test) == 200 and 30 <= len(test) <= 60
    assert not {p.module for p in train} & {p.module for p in test}
    with pytest.raises(ValueError, match="test_fraction=1.5: expected a share between 0 and 1"):
        D.split_by_module(pairs, 1.5)


@pytest.mark.skipif(sys.version.split()[0] != D.DOCSTRINGS_PINNED[0], reason="the pinned pairs are Python 3.11.7's")
def test_the_real_pairs_are_the_pinned_ones():
    pairs = D.docstring_pairs()
    assert D.docstrings_are_pinned(pairs)
    assert len(pairs) == 1390  # "~1,400 functions whose docstring has a one-line summary and a body"
    copymode = next(p for p in pairs if p.module == "shutil" and p.name == "copymode")
    assert copymode.summary == "Copy mode bits from src to dst."
