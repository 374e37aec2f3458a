"""The code of a solutions notebook, as plain Python, for the check tests."""

from __future__ import annotations

from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent


def solution_namespace(name: str, record_checks: bool = False) -> dict:
    """Exec the set-up cell (its imports: the first code cell that is not the Colab install
    cell) and every exercise cell of solutions/NAME.ipynb; return the namespace.

    record_checks: replace `check` by a recorder, so the exercise cells' own check calls are
    listed in ns["__checked__"] as (id, function) instead of run."""
    path = ROOT / "solutions" / name
    nb = nbformat.read(str(path), as_version=4)
    cells = [c.source for c in nb.cells if c.cell_type == "code" and "google.colab" not in c.source]
    ns: dict = {}
    exec(compile(cells[0], path.name, "exec"), ns)
    calls: list = []
    if record_checks:
        ns["check"] = lambda eid, fn, *a, **k: calls.append((eid, fn))
    for src in cells[1:]:
        if "### BEGIN SOLUTION" in src:
            exec(compile(src, path.name, "exec"), ns)
    ns["__checked__"] = calls
    return ns
