"""Settings from TOML files and command lines, checked with messages that name the setting.

* `tomllib`: the standard library's reader on Python >= 3.11, the `tomli` package on 3.10
  (the same API; pyproject.toml installs it there).
* `reject_unknown`, `check_types`: a dataclass's fields are the only names a section accepts,
  and each value must have its field's type (taken from the default): 'yes' is not a bool.
* `parse_value`: a command-line value read as TOML ('3' -> 3, 'true' -> True), else a string.
* `Settings`: `from_dict` / `to_dict` for a model's config dataclass (what a checkpoint stores),
  every unknown key named at once.

No torch here: the layer every other one may use.
"""

from __future__ import annotations

import difflib
import sys
from dataclasses import asdict, fields

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised by tests/test_config.py with the fallback forced
    import tomli as tomllib


def is_int(v) -> bool:
    """An int that is not a bool (True is an int in Python, but not a step count)."""
    return isinstance(v, int) and not isinstance(v, bool)


def reject_unknown(cls, d: dict, section: str) -> None:
    """A key that is not a field of `cls`: say which, and the closest real name."""
    known = [f.name for f in fields(cls)]
    for key in d:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown setting {key!r} in [{section}]{hint}; expected one of {', '.join(known)}")


def check_types(cls, d: dict, section: str) -> None:
    """Each value must have its field's type (taken from the default); ints become floats where a float is due."""
    for f in fields(cls):
        if f.name not in d or f.default is None or d[f.name] is None:
            continue
        v, want = d[f.name], type(f.default)
        if want is float and is_int(v):
            d[f.name] = float(v)
        elif not isinstance(v, want) or (want is int and isinstance(v, bool)):
            kind = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(want, want.__name__)
            raise ValueError(f"{f.name}={v!r} in [{section}]: expected {kind}")


def parse_value(text: str):
    """'3' -> 3, '1e-3' -> 0.001, 'true' -> True, 'bf16' -> 'bf16' (a bare word stays a string)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def load_toml(path) -> dict:
    """A TOML file as a dict; FileNotFoundError or ValueError naming the file."""
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config={str(p)!r}: no such file")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"config={str(p)!r}: not valid TOML ({e})") from e


class Settings:
    """Mixin for a dataclass of settings: `from_dict` (every unknown key named, with the known ones)
    and `to_dict`. `KIND` names the settings in the message ("model", "encoder")."""

    KIND = "model"

    @classmethod
    def from_dict(cls, d: dict):
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown {cls.KIND} setting(s) {', '.join(unknown)}: expected some of {', '.join(sorted(known))}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)

    def check_sizes(self, names: tuple[str, ...] = ("vocab_size", "block_size", "n_layer", "n_head", "n_embd")) -> None:
        """Each of `names` a positive integer, and n_embd divisible by n_head (each head gets n_embd / n_head channels)."""
        for name in names:
            v = getattr(self, name)
            if not is_int(v) or v < 1:
                raise ValueError(f"{name}={v!r}: expected a positive integer")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}: each head needs n_embd / n_head channels")
