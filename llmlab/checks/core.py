"""The machinery of exercise checks: probes, comparisons, diagnosis of known mistakes.

An exercise is a reference implementation plus a list of *probes*. A probe
  1. builds inputs from a seeded generator (`inputs(gen) -> args`),
  2. runs a callable on them (`run(fn, *args) -> plain data`: tensors, numbers, lists),
  3. compares what the learner's callable gave with what the reference gave
     (`compare(got, expected, args)` raises CheckFailed with a message a learner can act on).

Keeping the three steps apart lets the same probes serve two masters: `check()` runs all
of them in the learner's notebook, and the grader runs step 2 in the student's sandboxed
process but steps 1 and 3 in its own (so a student's code never decides its own score).

When a probe fails, the learner's output is compared with the outputs of known wrong
implementations (`mistakes`); a match turns "values differ" into "you normalised over
the wrong axis".
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch


class CheckFailed(AssertionError):
    """A property of the learner's implementation does not hold. The message says which,
    what was expected and what came back, and a hint when the mistake is a known one."""

    def __init__(self, message: str, hint: str | None = None, exercise: str | None = None, probe: str | None = None):
        self.message, self.hint, self.exercise, self.probe = message, hint, exercise, probe
        super().__init__(self._text())

    def _text(self) -> str:
        head = f"✘ {self.exercise} — {self.probe}: " if self.exercise else ""
        text = head + self.message
        if self.hint:
            text += f"\n  Hint: {self.hint}"
        return text

    def __str__(self) -> str:
        return self._text()

    # IPython calls this instead of printing a traceback: the learner sees only the feedback.
    def _render_traceback_(self) -> list[str]:
        return ["\x1b[31m" + line + "\x1b[0m" if i == 0 else line for i, line in enumerate(self._text().splitlines())]


class NotImplementedYet(Exception):
    """Raised internally when the candidate is still the exercise stub."""


@dataclass(frozen=True)
class Crash:
    """The learner's code raised: what, and where in the learner's own code (never llmlab's frames).
    Plain data, so the grader's sandbox can send it back and the grader words it as check() does."""

    type: str  # "ValueError"
    message: str
    line: int | None = None  # line in the learner's cell or file
    code: str | None = None  # that line's source, when known

    @classmethod
    def from_exception(cls, e: BaseException) -> "Crash":
        import traceback

        user = [f for f in traceback.extract_tb(e.__traceback__) if _learners(f.filename)]
        last = user[-1] if user else None
        try:
            message = str(e)
        except Exception:  # an exception whose __str__ raises (the grader's sandbox meets such code)
            message = "<the exception's message could not be read>"
        return cls(type(e).__name__, message, last.lineno if last else None, ((last.line or "").strip() or None) if last else None)

    def describe(self) -> str:
        where = f" (line {self.line}: `{self.code}`)" if self.line and self.code else f" (line {self.line})" if self.line else ""
        return f"your code raised {self.type}: {self.message}{where}"

    def to_dict(self) -> dict:
        return {"type": self.type, "message": self.message, "line": self.line, "code": self.code}

    @classmethod
    def from_dict(cls, d: dict, clip: int = 400) -> "Crash":
        """From the sandbox's plain data, bounded and typed (whatever the student's process wrote)."""
        def text(v, n):
            return None if v is None else "".join(c for c in str(v) if c.isprintable())[:n]

        line = d.get("line")
        return cls(text(d.get("type"), 80) or "Exception", text(d.get("message"), clip) or "", line if type(line) is int else None, text(d.get("code"), 200))


def _learners(filename: str) -> bool:
    """Is this frame the learner's code (a notebook cell, their own file), not llmlab's, torch's or Python's?"""
    import sysconfig

    f = filename.replace("\\", "/")
    if f.startswith("<cell") or "/ipykernel_" in f:
        return True
    package = str(Path(__file__).resolve().parent.parent).replace("\\", "/")  # llmlab/
    libs = {sysconfig.get_paths()[k].replace("\\", "/") for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    return not (f.startswith(package + "/") or any(f.startswith(lib + "/") for lib in libs)
                or "/site-packages/" in f or "/dist-packages/" in f or f.startswith("<frozen"))


class CodeRaised(CheckFailed):
    """A probe could not judge the code because it raised (a `Crash`), as opposed to a wrong answer."""

    def __init__(self, crash: Crash):
        self.crash = crash
        super().__init__(crash.describe())


# ----------------------------------------------------------------------------- describing outputs
def describe(x: Any, max_items: int = 4) -> str:
    """A short, readable description of a value for a feedback message."""
    if isinstance(x, torch.Tensor):
        vals = x.detach().flatten()[:max_items].tolist()
        vals = ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in vals)
        more = ", …" if x.numel() > max_items else ""
        return f"tensor of shape {tuple(x.shape)}, dtype {str(x.dtype).replace('torch.', '')}, starting [{vals}{more}]"
    if isinstance(x, (list, tuple)):
        inner = ", ".join(describe(v) if not isinstance(v, (int, float)) else repr(v) for v in list(x)[:max_items])
        more = ", …" if len(x) > max_items else ""
        return f"{type(x).__name__} of length {len(x)}: [{inner}{more}]"
    if isinstance(x, dict):
        items = list(x.items())[:max_items]
        more = ", …" if len(x) > max_items else ""
        return f"dict with {len(x)} entries {{{', '.join(f'{k!r}: {v!r}' for k, v in items)}{more}}}"
    r = repr(x)
    return r if len(r) < 80 else r[:77] + "…"


# ----------------------------------------------------------------------------- comparisons
def is_real_tensor(x: Any) -> bool:
    return type(x) is torch.Tensor or type(x) is torch.nn.Parameter


def compare_tensors(got: Any, expected: torch.Tensor, atol: float, rtol: float, what: str = "output") -> None:
    """Raise CheckFailed unless `got` is a real tensor of expected's shape and values."""
    if not is_real_tensor(got):
        raise CheckFailed(f"expected the {what} to be a torch.Tensor, got {type(got).__name__}: {describe(got)}")
    if tuple(got.shape) != tuple(expected.shape):
        raise CheckFailed(f"{what} has shape {tuple(got.shape)}, expected {tuple(expected.shape)}")
    if expected.dtype == torch.bool:
        if got.dtype != torch.bool:
            raise CheckFailed(f"{what} has dtype {got.dtype}, expected torch.bool (True/False)")
        bad = (got != expected).nonzero()
        if len(bad):
            i = tuple(bad[0].tolist())
            raise CheckFailed(f"{what} differs at {len(bad)} position(s), first at index {i}: expected {expected[i].item()}, got {got[i].item()}")
        return
    if expected.is_floating_point() and not got.is_floating_point():
        raise CheckFailed(f"{what} has dtype {got.dtype}, expected a floating-point tensor")
    if not expected.is_floating_point():
        if got.dtype != expected.dtype:
            raise CheckFailed(f"{what} has dtype {got.dtype}, expected {expected.dtype}")
    g, e = got.detach().double().cpu(), expected.detach().double().cpu()
    if not torch.isfinite(g).all() and torch.isfinite(e).all():
        raise CheckFailed(f"{what} contains nan or inf where the expected values are all finite ({describe(got)})")
    err = (g - e).abs()
    tol = atol + rtol * e.abs()
    bad = (err > tol) | (g.isnan() != e.isnan()) | (e.isinf() & (g != e))  # an infinite expected value makes tol inf: match it exactly
    if bad.any():
        i = tuple(bad.nonzero()[0].tolist())
        raise CheckFailed(
            f"{what} values differ: at index {i} expected {e[i].item():.6g}, got {g[i].item():.6g} "
            f"(max abs error {err[torch.isfinite(err)].max().item() if torch.isfinite(err).any() else float('nan'):.3g}, "
            f"{bad.sum().item()} of {bad.numel()} entries off)"
        )


def close(atol: float = 1e-5, rtol: float = 1e-4, what: str = "output") -> Callable:
    """Compare float tensors. Defaults: float32 rounding after a handful of operations on
    O(1) values is ~1e-6, while every known wrong implementation is off by > 1e-2."""

    def compare(got, expected, args=None):
        compare_tensors(got, expected, atol, rtol, what)

    return compare


def keeps_input(message: str, compare: Callable | None = None) -> dict:
    """`run` and `compare` of a "leaves its input unchanged" probe, for an exercise whose first
    argument is a tensor: the output comes back only when that tensor is intact (None when the
    call changed it in place) and is then compared like any other output, so a function that
    ignores its input earns nothing here. `message` says what to do instead of mutating.
        Probe("leaves its input unchanged", inputs, **keeps_input("work on a new tensor"))"""
    compare = compare or close()

    def run(fn, x, *rest):
        before = x.clone()
        out = fn(x, *rest)
        return out if torch.equal(x, before) else None

    def check_kept(got, expected, args=None):
        if got is None and expected is None:  # a known mistake that also mutates: diagnosis matches it
            return
        if got is None:
            raise CheckFailed(f"your function changed its input tensor in place; {message}")
        if expected is None:
            raise CheckFailed("your function leaves its input unchanged here, unlike this mistake")
        compare(got, expected, args)

    return {"run": run, "compare": check_kept}


def equal(what: str = "output") -> Callable:
    """Exact equality for ints, lists, tuples and dicts (and integer/bool tensors)."""

    def compare(got, expected, args=None):
        if isinstance(expected, torch.Tensor):
            return compare_tensors(got, expected, 0.0, 0.0, what)
        if type(got) is not type(expected):
            raise CheckFailed(f"expected the {what} to be a {type(expected).__name__}, got {type(got).__name__}: {describe(got)}")
        if isinstance(expected, (list, tuple)) and len(got) != len(expected):
            raise CheckFailed(f"{what} has length {len(got)}, expected {len(expected)}: expected {describe(expected)}, got {describe(got)}")
        if isinstance(expected, dict):
            missing = [k for k in expected if k not in got]
            extra = [k for k in got if k not in expected]
            if missing or extra:
                raise CheckFailed(f"{what} keys differ: missing {missing[:3]}, unexpected {extra[:3]}")
            wrong = [k for k in expected if got[k] != expected[k] or type(got[k]) is not type(expected[k])]
            if wrong:
                k = wrong[0]
                raise CheckFailed(f"{what}[{k!r}] is {got[k]!r}, expected {expected[k]!r} ({len(wrong)} entries wrong)")
            if list(got) != list(expected):
                raise CheckFailed(f"{what} has the right entries in a different order: expected keys in the order {list(expected)[:4]}…, got {list(got)[:4]}…")
            return
        if isinstance(expected, (list, tuple)):
            for i, (g, e) in enumerate(zip(got, expected)):
                if g != e or type(g) is not type(e):
                    raise CheckFailed(f"{what}[{i}] is {g!r}, expected {e!r} (expected {describe(expected)}, got {describe(got)})")
            return
        if got != expected:
            raise CheckFailed(f"{what} is {describe(got)}, expected {describe(expected)}")

    return compare


def call(fn: Callable, *args) -> Any:
    """The default way to run a candidate on a probe's inputs."""
    return fn(*args)


def judged_alone(helpers: dict[str, Callable], run: Callable = call) -> Callable:
    """A probe's `run` that judges the candidate on its own: while it runs, each name in `helpers`
    that the candidate's namespace (the learner's notebook) defines points to the course's version,
    and is put back afterwards. A bug, or a stub, in the learner's own `merge` then costs the `merge`
    exercise only, not `train_bpe` too, in the notebook and in the grader alike."""

    def alone(fn, *args):
        g = getattr(fn, "__globals__", None)
        if not isinstance(g, dict):
            return run(fn, *args)
        saved = {name: g[name] for name in helpers if name in g}
        g.update({name: helpers[name] for name in saved})
        try:
            return run(fn, *args)
        finally:
            g.update(saved)

    return alone


def clone_args(args: tuple) -> tuple:
    """Fresh copies, so a candidate that mutates its inputs cannot spoil the reference's run."""
    def c(a):
        if isinstance(a, torch.Tensor):
            return a.clone()
        if isinstance(a, list):
            return [c(v) for v in a]
        if isinstance(a, dict):
            return {k: c(v) for k, v in a.items()}
        if isinstance(a, tuple):
            return tuple(c(v) for v in a)
        return a

    return tuple(c(a) for a in args)


# ----------------------------------------------------------------------------- registry
@dataclass
class Probe:
    name: str  # what property is checked, in words ("rows sum to one")
    inputs: Callable[[torch.Generator], tuple]  # seeded generator -> positional args
    run: Callable[..., Any] = call  # (candidate, *args) -> plain data
    compare: Callable[[Any, Any, tuple], None] = field(default_factory=close)  # raises CheckFailed
    hint: str | None = None  # shown whenever this probe fails


@dataclass
class Mistake:
    hint: str  # what the learner probably did and how to fix it
    impl: Callable  # a wrong implementation with the exercise's signature


@dataclass
class Exercise:
    id: str  # "chapter.name", shared by notebooks, checks and the grader
    signature: str  # as shown to the learner
    reference: Callable  # the course's implementation
    probes: list[Probe]
    points: int = 1
    mistakes: list[Mistake] = field(default_factory=list)
    kind: str = "function"  # or "class"

    @property
    def name(self) -> str:
        return self.id.split(".", 1)[1]


REGISTRY: dict[str, Exercise] = {}


def register(ex: Exercise) -> Exercise:
    if ex.id in REGISTRY:
        raise ValueError(f"exercise id {ex.id!r} is registered twice")
    REGISTRY[ex.id] = ex
    return ex


# chapter modules, in course order; importing one registers its exercises
CHAPTERS = ("tokenization", "embeddings", "attention", "positional", "block", "gpt", "training", "generation",
            "pretrained", "mlm", "seq2seq", "finetune", "sft", "lora", "rlhf", "dpo", "interp")

_loaded = False


def load_all() -> None:
    """Import every chapter's check module (each registers its exercises); once per process."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for name in CHAPTERS:
        try:
            importlib.import_module(f"llmlab.checks.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"llmlab.checks.{name}":
                raise


def get_exercise(exercise_id: str) -> Exercise:
    load_all()
    try:
        return REGISTRY[exercise_id]
    except KeyError:
        import difflib

        close_ids = difflib.get_close_matches(exercise_id, REGISTRY, n=3)
        also = f" Did you mean {', '.join(map(repr, close_ids))}?" if close_ids else ""
        raise KeyError(f"exercise_id={exercise_id!r} is not a known exercise.{also} llmlab.checks.exercises() lists them all") from None


# ----------------------------------------------------------------------------- running
def make_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def run_candidate(probe: Probe, fn: Callable, args: tuple) -> Any:
    """Run one probe on a candidate; a stub raises NotImplementedYet, a crash CodeRaised."""
    __tracebackhide__ = True
    try:
        return probe.run(fn, *clone_args(args))
    except NotImplementedError:
        raise NotImplementedYet() from None
    except CheckFailed:
        raise
    except Exception as e:  # the learner's code crashed: say where, not a bare traceback
        raise CodeRaised(Crash.from_exception(e)) from None


def signature_of(fn: Callable) -> str:
    try:
        return str(inspect.signature(fn))
    except (TypeError, ValueError):
        return "(...)"


def randn(gen: torch.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=gen) * scale


def nan_safe(x: float) -> float:
    return x if math.isfinite(x) else 0.0
