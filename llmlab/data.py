"""Corpora and batches: where the training text comes from and how it is cut up.

* `load_corpus(name)`: "python-docs" (English prose built from Python's own `pydoc_data`,
  always available offline), "tinyshakespeare" (downloaded once, verified by sha256,
  cached), or the path of any local UTF-8 text file.
* `train_val_split` and `get_batch`: random windows of `block_size` tokens, with the
  targets `y` being the inputs `x` shifted one step to the left (next-token prediction).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import torch

TINYSHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
TINYSHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"

CORPORA = {
    # name: (file name in the cache, url, sha256)
    "tinyshakespeare": ("tinyshakespeare.txt", TINYSHAKESPEARE_URL, TINYSHAKESPEARE_SHA256),
}
OFFLINE_CORPORA = ("python-docs",)


class CorpusUnavailable(RuntimeError):
    """A corpus could not be downloaded (offline?) or failed its checksum."""


def cache_dir() -> Path:
    """Where downloads live: $LLMLAB_CACHE, else $XDG_CACHE_HOME/llmlab, else ~/.cache/llmlab."""
    root = os.environ.get("LLMLAB_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "llmlab"
    return Path(root)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def python_docs() -> str:
    """~465k characters of English prose about Python, shipped with every CPython."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k].strip() for k in sorted(topics)) + "\n"


def download(url: str, dest: Path, sha256: str, timeout: float = 30.0) -> Path:
    """Fetch `url` to `dest` atomically, refusing content whose sha256 differs."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=timeout) as r:
            while block := r.read(1 << 20):
                f.write(block)
        got = sha256_file(tmp)
        if got != sha256:
            raise CorpusUnavailable(f"{url}: sha256 {got} does not match the expected {sha256}; nothing was saved")
        os.replace(tmp, dest)  # atomic: a half-written file is never taken for the corpus
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


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


def train_val_split(data: torch.Tensor, val_fraction: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """The first (1 - val_fraction) of the tokens train, the rest validate (no shuffling:
    neighbouring windows overlap, so a random split would leak validation text)."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction}: expected a number strictly between 0 and 1")
    n = int(len(data) * (1 - val_fraction))
    return data[:n], data[n:]


def get_batch(data: torch.Tensor, block_size: int, batch_size: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample `batch_size` random windows of `block_size` tokens.

    data: LongTensor[N]  ->  x, y: LongTensor[B, T], with y[b, t] = data[start_b + t + 1].
    Every start in 0..N-T-1 is equally likely (so the last target is the last token).
    """
    if data.dim() != 1:
        raise ValueError(f"data: expected a 1-D tensor of token ids, got shape {tuple(data.shape)}")
    if len(data) <= block_size:
        raise ValueError(f"block_size={block_size}: the data has only {len(data)} tokens; need more than block_size")
    starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator)  # (B,)
    offsets = torch.arange(block_size)  # (T,)
    idx = starts[:, None] + offsets[None, :]  # (B, T)
    return data[idx], data[idx + 1]
