"""Translation data, offline: a made-up language pair whose ground truth is known, real
translations from Django's catalogues, and a word vocabulary for both.

1. `make_pairs(n, seed, clauses=...)`: sentences of a small English-like grammar and their
   translation into "Toki", an invented language with its own words and its own word order:

       source (SVO, adjective before noun):   the big dog chases a small cat
       target (SOV, adjective after noun,     lo hundo grana un kato mika wo cazi
               an object marker "wo"):         0    2     1   4   6    5  -1   3

   The numbers are the *alignment*: the source position each target word translates (-1 for
   "wo", which translates nothing). Names (alice, bob, ...) are the same in both languages, so
   copying the source is right for them and wrong for everything else. Clauses are joined by
   "and" / "i", which makes longer sentences for a length-generalisation test. Every pair is a
   `Pair(src, tgt, align)`.

2. `django_pairs(lang)`: English -> `lang` strings of Django's own translation catalogue
   (django/conf/locale/<lang>/LC_MESSAGES/django.po), read as a file from the installed package
   (never imported) and checked by SHA-256. `parse_po` is the small .po parser: msgid/msgstr,
   strings over several lines, escapes; it skips the header, fuzzy entries, plural forms and
   empty translations. `%(name)s` placeholders are kept, each as one token (`word_tokens`).

3. `WordVocab`: words <-> ids, with <pad>=0, <bos>=1, <eos>=2, <unk>=3.

Left out on purpose: subword tokenization (the made-up pair has 71 words), morphology,
ambiguity (each source word has exactly one translation), and Django's other catalogues (admin,
auth, ...), which would roughly triple the real data.
"""

from __future__ import annotations

import hashlib
import importlib.util
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

# ----------------------------------------------------------------------------- the made-up language pair
# one translation per word: source -> target
NOUNS = {"dog": "hundo", "cat": "kato", "bird": "pajo", "fish": "fiso", "horse": "hevo", "mouse": "muso",
         "fox": "vulpo", "bear": "urso", "duck": "anado", "frog": "rano", "goat": "kapro", "lion": "leono"}
ADJECTIVES = {"big": "grana", "small": "mika", "red": "ruda", "blue": "blua", "old": "vela", "young": "juna",
              "happy": "gaja", "sad": "trista", "fast": "rapida", "slow": "lanta"}
VERBS = {"sees": "vidi", "likes": "ami", "chases": "cazi", "eats": "mangi", "finds": "trovi", "helps": "helpi",
         "follows": "sekvi", "hears": "audi"}
DETERMINERS = {"the": "lo", "a": "un"}
NAMES = ("alice", "bob", "carol", "dave")  # the same word in both languages
CONJUNCTION = ("and", "i")
OBJECT_MARKER = "wo"  # follows the object in the target; aligned to nothing (-1)
LEXICON = {**NOUNS, **ADJECTIVES, **VERBS, **DETERMINERS, **{n: n for n in NAMES}, CONJUNCTION[0]: CONJUNCTION[1]}


@dataclass(frozen=True)
class Pair:
    src: list[str]  # source words
    tgt: list[str]  # target words
    align: list[int]  # per target word: the index of the source word it translates, -1 for none


def _noun_phrase(rng: random.Random, max_adjectives: int) -> list[str]:
    if rng.random() < 0.2:
        return [rng.choice(NAMES)]
    n_adj = rng.randint(0, max_adjectives)
    return [rng.choice(list(DETERMINERS))] + rng.sample(list(ADJECTIVES), n_adj) + [rng.choice(list(NOUNS))]


def _translate_np(np_: list[str], start: int) -> tuple[list[str], list[int]]:
    """det adj* noun -> det noun adj* (the adjectives keep their order); a name stays."""
    if len(np_) == 1:
        return [LEXICON[np_[0]]], [start]
    order = [0, len(np_) - 1] + list(range(1, len(np_) - 1))
    return [LEXICON[np_[i]] for i in order], [start + i for i in order]


def translate(src: Sequence[str]) -> Pair:
    """The one correct translation of a sentence of the source grammar, with its alignment.
    >>> translate("the big dog chases a cat".split()).tgt
    ['lo', 'hundo', 'grana', 'un', 'kato', 'wo', 'cazi']
    """
    src = list(src)
    tgt, align, i = [], [], 0
    while i < len(src):
        if src[i] == CONJUNCTION[0]:
            tgt.append(CONJUNCTION[1])
            align.append(i)
            i += 1
            continue
        # a clause: subject NP, verb, object NP
        j = i
        while src[j] not in VERBS:
            j += 1
        k = j + 1
        while k < len(src) and src[k] != CONJUNCTION[0]:
            k += 1
        if j == i or k == j + 1 or any(w not in LEXICON for w in src[i:k]):
            raise ValueError(f"src: {' '.join(src)!r} is not a sentence of the source grammar (subject verb object [and ...])")
        for part, start in ((src[i:j], i), (src[j + 1:k], j + 1)):
            words, pos = _translate_np(part, start)
            tgt += words
            align += pos
        tgt.append(OBJECT_MARKER)
        align.append(-1)
        tgt.append(LEXICON[src[j]])
        align.append(j)
        i = k
    return Pair(src, tgt, align)


def make_pairs(n: int, seed: int = 0, clauses: tuple[int, int] = (1, 1), max_adjectives: int = 2) -> list[Pair]:
    """`n` random sentences of `clauses[0]`..`clauses[1]` clauses joined by "and", each noun with
    0..max_adjectives adjectives (no repeats), translated, with alignments. Deterministic in `seed`."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"n={n!r}: expected a number of pairs >= 0")
    lo, hi = clauses
    if not 1 <= lo <= hi:
        raise ValueError(f"clauses={clauses!r}: expected (min, max) with 1 <= min <= max")
    if not 0 <= max_adjectives <= len(ADJECTIVES):
        raise ValueError(f"max_adjectives={max_adjectives!r}: expected 0..{len(ADJECTIVES)}")
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        src: list[str] = []
        for c in range(rng.randint(lo, hi)):
            if c:
                src.append(CONJUNCTION[0])
            src += _noun_phrase(rng, max_adjectives) + [rng.choice(list(VERBS))] + _noun_phrase(rng, max_adjectives)
        out.append(translate(src))
    return out


def dictionary_translate(src: Sequence[str]) -> list[str]:
    """The word-by-word baseline: each word's translation, in the source's order (no reordering, no "wo")."""
    return [LEXICON.get(w, w) for w in src]


# ----------------------------------------------------------------------------- a word vocabulary
PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"


class WordVocab:
    """Words <-> ids: the four specials first (pad 0, bos 1, eos 2, unk 3), then `words` in order of first appearance."""

    def __init__(self, words: Iterable[str]):
        self.itos = [PAD, BOS, EOS, UNK]
        for w in words:
            if w not in self.itos:
                self.itos.append(w)
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = 0, 1, 2, 3

    @classmethod
    def from_pairs(cls, pairs: Iterable[Pair]) -> "WordVocab":
        return cls(w for p in pairs for w in (*p.src, *p.tgt))

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, words: Sequence[str], eos: bool = False) -> list[int]:
        ids = [self.stoi.get(w, self.unk_id) for w in words]
        return ids + [self.eos_id] if eos else ids

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Ids -> words, stopping at the first <eos>; <pad> and <bos> dropped."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i not in (self.pad_id, self.bos_id):
                out.append(self.itos[i] if 0 <= i < len(self.itos) else UNK)
        return out


# ----------------------------------------------------------------------------- Django's catalogues
DJANGO_VERSION = "5.2.19"
DJANGO_SHA256 = {  # django/conf/locale/<lang>/LC_MESSAGES/django.po of Django 5.2.19
    "fr": "c5d2472789be6b426437600e4de3f5b7ffc3b928929e9ebeecd744d335c2f57e",
    "de": "bee23320c466971b03e18d5ab9f5ce1d768adfab7c634d7096c871664fe51051",
}
_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\", "r": "\r"}


def _unquote(s: str) -> str:
    s = s.strip()
    if len(s) < 2 or s[0] != '"' or s[-1] != '"':
        raise ValueError(f"text: expected a quoted .po string, got {s[:40]!r}")
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), s[1:-1])


def parse_po(text: str) -> list[tuple[str, str]]:
    """(msgid, msgstr) of every usable entry of a .po file's text: a string continues over the
    quoted lines that follow its keyword; the header (empty msgid), entries flagged `#, fuzzy`,
    plural entries (msgid_plural / msgstr[n]) and empty translations are skipped; msgctxt is ignored.

    >>> parse_po('msgid "Yes"\\nmsgstr "Oui"\\n\\n#, fuzzy\\nmsgid "No"\\nmsgstr "Non"\\n')
    [('Yes', 'Oui')]
    """
    out: list[tuple[str, str]] = []
    entry: dict[str, str] = {}
    flags: set[str] = set()
    key = None

    def flush():
        nonlocal entry, flags, key
        if entry.get("msgid") and entry.get("msgstr") and "fuzzy" not in flags and "msgid_plural" not in entry:
            out.append((entry["msgid"], entry["msgstr"]))
        entry, flags, key = {}, set(), None

    for line in text.splitlines():
        line = line.strip()
        if not line:
            flush()
        elif line.startswith("#,"):
            if "msgid" in entry:
                flush()
            flags |= {f.strip() for f in line[2:].split(",")}
        elif line.startswith("#"):
            continue
        elif line.startswith('"'):
            if key is not None:
                entry[key] += _unquote(line)
        else:
            word, _, rest = line.partition(" ")
            if word == "msgid" and "msgid" in entry:
                flush()
            key = word  # msgid, msgstr, msgctxt, msgid_plural, msgstr[0], ...
            entry[key] = _unquote(rest)
    flush()
    return out


def django_po_path(lang: str) -> Path:
    """The installed Django's catalogue for `lang`, found without importing Django."""
    if lang not in DJANGO_SHA256:
        raise ValueError(f"lang={lang!r}: expected one of {', '.join(DJANGO_SHA256)}")
    spec = importlib.util.find_spec("django")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"Django is not installed; its translation catalogues come with it: pip install --no-deps django=={DJANGO_VERSION}")
    path = Path(list(spec.submodule_search_locations)[0]) / "conf" / "locale" / lang / "LC_MESSAGES" / "django.po"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: pip install --no-deps django=={DJANGO_VERSION}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != DJANGO_SHA256[lang]:
        raise ValueError(f"{path}: SHA-256 {digest[:12]}… is not Django {DJANGO_VERSION}'s {DJANGO_SHA256[lang][:12]}…; "
                         f"pip install --no-deps django=={DJANGO_VERSION}")
    return path


def django_pairs(lang: str = "fr") -> list[tuple[str, str]]:
    """(English, translation) strings of Django's own catalogue for `lang` ("fr" or "de"), in file order."""
    return parse_po(django_po_path(lang).read_text(encoding="utf-8"))


_TOKEN = re.compile(r"%\(\w+\)[sdif]|%[sdif]|\w+|[^\w\s]")


def word_tokens(text: str) -> list[str]:
    """Lower-cased words and punctuation; a placeholder (%(name)s, %s) is one token.
    >>> word_tokens("Ensure this value is %(limit_value)s.")
    ['ensure', 'this', 'value', 'is', '%(limit_value)s', '.']
    """
    return [t if t.startswith("%") else t.lower() for t in _TOKEN.findall(text)]
