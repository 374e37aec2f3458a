"""The course cache: where downloaded data and weights live, verified by checksum.

* `cache_dir()`: $LLMLAB_CACHE, else $XDG_CACHE_HOME/llmlab, else ~/.cache/llmlab.
* `download(url, dest, sha256)`: fetch atomically, refusing content whose sha256 differs.
* `write_atomic(path, write)`: how every cache file is written (a reader never sees half a file).

No torch here: `llmlab doctor` reports the cache folder on a machine without it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path


class ChecksumMismatch(ValueError):
    """A download's sha256 is not the one expected: nothing was saved."""


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


def write_atomic(path: Path, write: Callable[[str], object]) -> Path:
    """write(tmp) into a temporary file beside `path`, then rename it over `path` (os.replace is
    atomic): a reader never sees half a file, and a failed write leaves the old file (or none)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".part")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a cache is plain data
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def download(url: str, dest: Path, sha256: str, timeout: float = 30.0) -> Path:
    """Fetch `url` to `dest` atomically, refusing content whose sha256 differs."""

    def fetch(tmp: str) -> None:
        with open(tmp, "wb") as f, urllib.request.urlopen(url, timeout=timeout) as r:
            while block := r.read(1 << 20):
                f.write(block)
        got = sha256_file(tmp)
        if got != sha256:
            raise ChecksumMismatch(f"{url}: sha256 {got} does not match the expected {sha256}; nothing was saved")

    return write_atomic(dest, fetch)  # a half-written file is never taken for the corpus
