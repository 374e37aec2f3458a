"""Exercise checks: instant, specific feedback on a learner's implementation.

    >>> from llmlab.checks import check
    >>> check("attention.softmax", my_softmax)       # doctest: +SKIP
    ✔ attention.softmax — 7 checks passed

Each chapter's exercises live in a module named after the chapter (attention.py, ...);
`exercises()` lists them all with their signatures and points.
"""

from __future__ import annotations

from llmlab.checks.core import CHAPTERS, REGISTRY, CheckFailed, Exercise, get_exercise, load_all
from llmlab.checks.feedback import Passed, check, evaluate


def exercises() -> list[dict]:
    """Every exercise: id, signature, points, number of checks. Printed as a table too."""
    load_all()
    rows = [dict(id=ex.id, signature=ex.signature, points=ex.points, checks=len(ex.probes)) for ex in REGISTRY.values()]
    return rows


__all__ = ["CHAPTERS", "CheckFailed", "Passed", "Exercise", "check", "evaluate", "exercises", "get_exercise", "load_all", "REGISTRY"]
