"""Helpers of the check tests: a solutions notebook's code as plain Python, `rejects`, the chapter
contract, and running an unsolved exercises notebook."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from llmlab.checks import CheckFailed, check

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


def rejects(eid: str, impl, hint: str | None = None) -> CheckFailed:
    """Assert that the check of `eid` fails on `impl` (and, given `hint`, that the message says it)."""
    with pytest.raises(CheckFailed) as info:
        check(eid, impl, quiet=True)
    if hint is not None:
        assert hint in str(info.value), str(info.value)
    return info.value


def assert_chapter(ids: list[str], notebook: str) -> None:
    """A chapter's exercise contract: exactly `ids` are registered under its prefix, in this
    order, and solutions/NOTEBOOK assigns them (its metadata is what the grader reads)."""
    from llmlab.checks import REGISTRY, load_all

    load_all()
    prefix = ids[0].split(".", 1)[0] + "."
    assert [e for e in REGISTRY if e.startswith(prefix)] == ids
    meta = nbformat.read(str(ROOT / "solutions" / notebook), as_version=4).metadata["llmlab"]
    assert meta == {"assignment": Path(notebook).stem, "exercises": ids}


def assert_unsolved_runs(ids: list[str], notebook: str, capsys, after: str | None = None) -> str:
    """Exec every code cell of exercises/NOTEBOOK (but the Colab install) as a learner who has
    written nothing would: nothing raises, each of `ids` says "not implemented yet", and `after`
    (text printed by a cell after the exercises) shows the notebook carried on. -> the output."""
    nb = nbformat.read(str(ROOT / "exercises" / notebook), as_version=4)
    ns: dict = {}
    for cell in nb.cells:
        if cell.cell_type == "code" and "google.colab" not in cell.source:
            exec(compile(cell.source, notebook, "exec"), ns)
    out = capsys.readouterr().out
    for eid in ids:
        assert f"… {eid}: not implemented yet\n" in out
    if after is not None:
        assert after in out, f"{notebook}: the cells after the exercises did not run (no {after!r} in the output)"
    return out
