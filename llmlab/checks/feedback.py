"""What a learner is told: one judge for the notebook's `check()` and the grader's feedback.

Both sides first *run* the learner's code on every probe, each in its own way (in the notebook's
kernel; in the grader's sandbox, from inputs the grader sent), and record one `Outcome` per probe:

    value    the code returned something (plain data)            -> compared with the reference
    crash    the code raised: a `Crash` (type, message, line, code), a type, not a string to match
    failed   the probe itself refused the code (a CheckFailed with its message, e.g. a missing c_attn)
    stub     the code still raises NotImplementedError
    skipped  the grader could not run it (it hung or ended the process): `message` says why
    none     nothing came back

`judge(ex, cases)` turns them into one `Verdict` per probe: passed or not, the message, and the
hint: the hint of a known mistake whose outputs reproduce the learner's on every probe that
returned a value, else the probe's own hint. `Verdict.text(exercise_id)` is the line a learner
reads, in the notebook (the CheckFailed it raises) and in the grader's feedback file alike.

Left out on purpose: partial credit within a probe, and hints chosen by a model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from llmlab.checks.core import CheckFailed, CodeRaised, Crash, Exercise, NotImplementedYet, clone_args, describe, get_exercise, make_generator, run_candidate

KINDS = ("value", "crash", "failed", "stub", "skipped", "none")


@dataclass(frozen=True)
class Outcome:
    """What running the learner's code on one probe gave (see the module docstring)."""

    kind: str
    value: Any = None
    crash: Crash | None = None
    message: str = ""
    hint: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind={self.kind!r}: expected one of {', '.join(KINDS)}")


@dataclass
class Verdict:
    """The judgement of one probe, as the learner reads it."""

    name: str  # the probe: the property checked, in words
    passed: bool
    message: str = ""
    hint: str | None = None

    def text(self, exercise_id: str | None = None) -> str:
        head = f"✘ {exercise_id} — {self.name}: " if exercise_id else f"✘ {self.name}: "
        return head + self.message + (f"\n  Hint: {self.hint}" if self.hint else "")


def judge(ex: Exercise, cases: Sequence[tuple[tuple, Any, Outcome]],
          mistake_output: Callable[[int, int], Any] | None = None) -> list[Verdict]:
    """One Verdict per probe of `ex`. `cases[i]` = (probe i's inputs, the reference's output, the
    learner's Outcome). `mistake_output(m, i)`: known mistake m's output on probe i (the grader
    caches them); by default it is computed here."""
    if len(cases) != len(ex.probes):
        raise ValueError(f"cases: expected one per probe of {ex.id} ({len(ex.probes)}), got {len(cases)}")
    verdicts, values = [], []
    for i, (probe, (args, expected, out)) in enumerate(zip(ex.probes, cases)):
        v = Verdict(probe.name, False)
        if out.kind == "value":
            values.append((i, out.value))  # passing outputs too: a known mistake must reproduce all of them
            try:
                probe.compare(out.value, expected, args)
                v.passed = True
            except CheckFailed as f:
                v.message, v.hint = f.message, f.hint or probe.hint
            except Exception as e:  # a value of a form the comparison did not expect
                v.message, v.hint = f"the output has an unexpected form ({describe(out.value)}): {type(e).__name__}", probe.hint
        elif out.kind == "crash":
            v.message, v.hint = out.crash.describe(), probe.hint
        elif out.kind == "failed":
            v.message, v.hint = out.message, out.hint or probe.hint
        elif out.kind == "stub":
            v.message = "not implemented yet (still raises NotImplementedError)"
        elif out.kind == "skipped":
            v.message = f"your code {out.message}"
        else:
            v.message = "no output came back for this case"
        verdicts.append(v)
    if values and not all(v.passed for v in verdicts):
        known = diagnose(ex, [(i, got, cases[i][0]) for i, got in values], mistake_output)
        if known:
            with_value = {i for i, _ in values}
            for i, v in enumerate(verdicts):
                if not v.passed and i in with_value:
                    v.hint = known
    return verdicts


def diagnose(ex: Exercise, outputs: list[tuple[int, Any, tuple]], mistake_output: Callable[[int, int], Any] | None = None) -> str | None:
    """The hint of the first known mistake whose output matches the learner's on every probe that
    returned a value (matching on one is not enough: two different bugs can both give nan there)."""
    for m_i, m in enumerate(ex.mistakes):
        try:
            for i, got, args in outputs:
                expected = mistake_output(m_i, i) if mistake_output else ex.probes[i].run(m.impl, *clone_args(args))
                ex.probes[i].compare(got, expected, args)
            return m.hint
        except Exception:
            continue
    return None


# ----------------------------------------------------------------------------- in the notebook
@dataclass(frozen=True)
class Passed:
    """What `check()` returns when every probe passed: true in an `if`, and displayed as nothing in a
    notebook (the "✔ ... checks passed" line has said it; IPython would otherwise echo `True`)."""

    exercise: str
    checks: int

    def __bool__(self) -> bool:
        return True

    def _ipython_display_(self) -> None:  # IPython calls this instead of showing a repr
        pass


def evaluate(ex: Exercise, candidate: Callable, seed: int = 0) -> list[Verdict]:
    """Run every probe on `candidate` here and judge it. Raises NotImplementedYet for a stub."""
    cases = []
    for i, probe in enumerate(ex.probes):
        args = probe.inputs(make_generator(seed * 1000 + i))
        expected = probe.run(ex.reference, *clone_args(args))
        try:
            out = Outcome("value", run_candidate(probe, candidate, args))
        except CodeRaised as c:
            out = Outcome("crash", crash=c.crash)
        except CheckFailed as f:  # the probe refused the code (a missing submodule, a wrong shape)
            out = Outcome("failed", message=f.message, hint=f.hint)
        cases.append((args, expected, out))
    return judge(ex, cases)


def check(exercise_id: str, candidate: Callable, seed: int = 0, quiet: bool = False) -> bool | None:
    """Check a learner's function or class against every probe of an exercise.

    Pass: prints "✔ id — N checks passed" and returns a `Passed` (true; a notebook shows nothing for
    it, so no stray `True` under the ✔ line). A stub still raising
    NotImplementedError: prints "… id: not implemented yet" and returns None, so the
    notebook carries on. Failure: raises CheckFailed (an AssertionError) naming the first
    failed property, expected vs got, and a hint where the mistake is a known one.
    """
    __tracebackhide__ = True
    ex = get_exercise(exercise_id)
    if not callable(candidate):
        raise CheckFailed(f"expected a function or class to check, got {type(candidate).__name__}", exercise=ex.id, probe="input")
    try:
        verdicts = evaluate(ex, candidate, seed)
    except NotImplementedYet:
        if not quiet:
            print(f"… {ex.id}: not implemented yet")
        return None
    failed = [v for v in verdicts if not v.passed]
    if failed:
        raise CheckFailed(failed[0].message, failed[0].hint, ex.id, failed[0].name)
    if not quiet:
        print(f"✔ {ex.id} — {len(verdicts)} checks passed")
    return Passed(ex.id, len(verdicts))
