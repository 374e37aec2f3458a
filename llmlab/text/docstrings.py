"""A real summarisation task that ships with Python: the standard library's docstrings.

PEP 257 asks a docstring for a one-line summary, a blank line, then the body. Across the standard
library that gives pairs (body -> summary) written by people, with no download:

    def dumps(obj, ...):
        '''Serialize ``obj`` to a JSON formatted ``str``.          <- the summary (the target)

        If ``skipkeys`` is true then ``dict`` keys that are not ...  <- the body (the source)
        '''

`docstring_pairs()` walks the standard library's own .py files with `ast` (never importing them),
keeps functions and methods whose docstring is a one-line summary + blank line + body, with the body
between 80 and 1,200 characters, drops exact repeats, and returns them sorted by module and name.
Tests, idlelib, the turtle demos, site-packages and private modules (`_name.py`, not `__init__.py`) are left out:
1,390 pairs on Python 3.11.7. The
pairs depend on the Python release (see `DOCSTRINGS_PINNED`): lessons quote figures made with it.

`split_by_module` keeps all the functions of one module on the same side, so a model is tested on
modules it never saw (near-identical docstrings of sibling methods would otherwise leak across).

Left out on purpose: classes' and modules' docstrings, C functions (their docstrings live in C
files), and any cleaning of reST markup in the bodies.
"""

from __future__ import annotations

import ast
import hashlib
import random
import sysconfig
from dataclasses import dataclass
from pathlib import Path

SKIP_DIRS = {"test", "tests", "idlelib", "site-packages", "turtledemo", "__pycache__", "lib2to3", "ensurepip", "venv"}
BODY_CHARS = (80, 1200)
SUMMARY_CHARS = (10, 120)
# (Python release, number of pairs, sha256 of the pairs as JSON lines): the pairs the lessons were made with
DOCSTRINGS_PINNED = ("3.11.7", 1390, "719aaf3bef7ad6146f342a22ed9be1b01b21b5a0f8f3dba6c009b7e12abd33e3")


@dataclass(frozen=True)
class DocPair:
    module: str  # "json.encoder"
    name: str  # "JSONEncoder.encode"
    summary: str  # the one-line summary
    body: str  # the rest of the docstring, dedented


def stdlib_files(root: Path | None = None) -> list[Path]:
    root = Path(root or sysconfig.get_paths()["stdlib"])
    out = []
    for p in sorted(root.rglob("*.py")):
        rel = p.relative_to(root).parts
        if any(part in SKIP_DIRS or part.startswith("test") for part in rel[:-1]) or (rel[-1].startswith(("_", "test")) and rel[-1] != "__init__.py"):
            continue
        out.append(p)
    return out


def split_docstring(doc: str) -> tuple[str, str] | None:
    """(summary, body) of a PEP 257 docstring: one summary line, a blank line, a body; else None."""
    lines = doc.strip().splitlines()
    if len(lines) < 3 or lines[1].strip():
        return None
    summary, body = lines[0].strip(), "\n".join(lines[2:]).strip()
    if not SUMMARY_CHARS[0] <= len(summary) <= SUMMARY_CHARS[1] or not BODY_CHARS[0] <= len(body) <= BODY_CHARS[1]:
        return None
    return summary, body


def _functions(tree: ast.Module):
    """(qualified name, node) of every function and method, nested in classes."""
    stack = [("", n) for n in tree.body]
    while stack:
        prefix, node = stack.pop(0)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield prefix + node.name, node
        elif isinstance(node, ast.ClassDef):
            stack[:0] = [(prefix + node.name + ".", n) for n in node.body]


def docstring_pairs(root: Path | None = None) -> list[DocPair]:
    root = Path(root or sysconfig.get_paths()["stdlib"])
    seen, out = set(), []
    for path in stdlib_files(root):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue  # a few files are deliberately invalid or not UTF-8
        module = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        for name, node in _functions(tree):
            doc = ast.get_docstring(node, clean=True)
            parts = split_docstring(doc) if doc else None
            if parts is None or parts in seen:
                continue
            seen.add(parts)
            out.append(DocPair(module, name, *parts))
    return out


def pairs_sha256(pairs: list[DocPair]) -> str:
    h = hashlib.sha256()
    for p in pairs:
        h.update(f"{p.module}\t{p.name}\t{p.summary}\t{p.body}\n".encode())
    return h.hexdigest()


def docstrings_are_pinned(pairs: list[DocPair] | None = None) -> bool:
    """True when this Python's pairs (or `pairs`) are the ones the lessons' stored outputs were made with."""
    pairs = docstring_pairs() if pairs is None else pairs
    return len(pairs) == DOCSTRINGS_PINNED[1] and pairs_sha256(pairs) == DOCSTRINGS_PINNED[2]


def split_by_module(pairs: list[DocPair], test_fraction: float = 0.15, seed: int = 0) -> tuple[list[DocPair], list[DocPair]]:
    """(train, test) with every module's pairs on one side; about test_fraction of the pairs in test."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction={test_fraction!r}: expected a share between 0 and 1")
    modules = sorted({p.module for p in pairs})
    random.Random(seed).shuffle(modules)
    test_modules, n = set(), 0
    for m in modules:
        if n >= test_fraction * len(pairs):
            break
        test_modules.add(m)
        n += sum(p.module == m for p in pairs)
    return [p for p in pairs if p.module not in test_modules], [p for p in pairs if p.module in test_modules]
