"""Corpora: where the training text comes from.

`load_corpus(name)`: "python-docs" (English prose built from Python's own `pydoc_data`,
always available offline), "tinyshakespeare" (downloaded once, verified by sha256, cached),
or the path of any local UTF-8 text file.
"""

from __future__ import annotations

import os
import urllib.error
from pathlib import Path

from llmlab.cache import ChecksumMismatch, cache_dir, download, sha256_file

TINYSHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
TINYSHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"

CORPORA = {
    # name: (file name in the cache, url, sha256)
    "tinyshakespeare": ("tinyshakespeare.txt", TINYSHAKESPEARE_URL, TINYSHAKESPEARE_SHA256),
}
OFFLINE_CORPORA = ("python-docs",)


class CorpusUnavailable(RuntimeError):
    """A corpus could not be downloaded (offline?) or failed its checksum."""


# The lessons' stored outputs (corpus length, character counts, entropies, losses) were made with
# the python-docs corpus of this Python; `pydoc_data` changes with every CPython release, so on
# another Python the same cells print other numbers. The test suite then still runs every
# notebook but stops comparing their printed outputs, and says so (tests/conftest.py).
PYTHON_DOCS_PINNED = ("3.11.7", 465_048, "2a95af4ac93f5b719944030ce3769070ddf827d847cba42192afa8da989e5dc4")  # version, chars, sha256


def python_docs() -> str:
    """~465k characters of English prose about Python, shipped with every CPython (its text
    depends on the Python release: see PYTHON_DOCS_PINNED and `python_docs_is_pinned`)."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k].strip() for k in sorted(topics)) + "\n"


def python_docs_is_pinned() -> bool:
    """True when this Python's python-docs corpus is the one the lessons' stored outputs were made with."""
    import hashlib

    return hashlib.sha256(python_docs().encode("utf-8")).hexdigest() == PYTHON_DOCS_PINNED[2]


def corpus_path(name: str, url: str | None = None) -> Path:
    """The verified local file for a downloadable corpus, fetching it on first use.

    Looks in $LLMLAB_DATA_DIR first (a folder of pre-fetched files, as CI has), then the
    cache, then downloads from `url` (default: the corpus's public source).
    """
    fname, default_url, sha = CORPORA[name]
    for folder in filter(None, [os.environ.get("LLMLAB_DATA_DIR")]):
        p = Path(folder) / fname
        if p.is_file() and sha256_file(p) == sha:
            return p
    cached = cache_dir() / fname
    if cached.is_file():
        if sha256_file(cached) == sha:
            return cached
        cached.unlink()  # corrupt or stale: fetch again
    url = url or os.environ.get(f"LLMLAB_{name.upper()}_URL") or default_url
    try:
        return download(url, cached, sha)
    except ChecksumMismatch as e:
        raise CorpusUnavailable(str(e)) from e
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        raise CorpusUnavailable(
            f"could not download corpus {name!r} from {url} ({e}). You seem to be offline: "
            f"use load_corpus('python-docs'), which ships with Python, or put the file at {cached}"
        ) from e


def load_corpus(name: str = "python-docs", url: str | None = None) -> str:
    """Return a corpus as one string.

    >>> text = load_corpus("python-docs"); len(text) > 100_000
    True
    """
    if name == "python-docs":
        return python_docs()
    if name in CORPORA:
        return corpus_path(name, url).read_text(encoding="utf-8")
    p = Path(name).expanduser()
    if p.is_file():
        return p.read_text(encoding="utf-8")
    choices = ", ".join(repr(n) for n in (*OFFLINE_CORPORA, *CORPORA))
    raise ValueError(f"corpus name={name!r}: expected one of {choices} or the path of an existing text file")
