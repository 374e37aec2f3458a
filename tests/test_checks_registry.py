"""Every registered exercise, the same way: its reference passes with the one-line message,
a stub says "not implemented yet", each known mistake is rejected with its own hint, and its
solutions notebook lists it, checks it and passes. (Each chapter's test_checks_*.py adds the
contract of its ids and a bank of further wrong implementations.)"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from torch import nn

from _checks import solution_namespace
from llmlab.checks import REGISTRY, CheckFailed, check, load_all

load_all()
IDS = sorted(REGISTRY)
SOLUTIONS = sorted((Path(__file__).resolve().parent.parent / "solutions").glob("*.ipynb"))


def _listed() -> dict[str, str]:
    """exercise id -> the solutions notebook whose metadata lists it."""
    where = {}
    for path in SOLUTIONS:
        for eid in nbformat.read(str(path), as_version=4).metadata.get("llmlab", {}).get("exercises", []):
            where[eid] = path.name
    return where


WHERE = _listed()


@pytest.fixture(scope="module")
def namespaces() -> dict[str, dict]:
    return {}


def stub_for(eid: str):
    if REGISTRY[eid].kind == "class":
        class Stub(nn.Module):
            def __init__(self, *a, **k):
                super().__init__()
                raise NotImplementedError()
        return Stub

    def stub(*a, **k):
        raise NotImplementedError()
    return stub


@pytest.mark.parametrize("eid", IDS)
def test_reference_passes_with_one_line(eid, capsys):
    ex = REGISTRY[eid]
    assert ex.probes and ex.points > 0
    assert check(eid, ex.reference)
    assert capsys.readouterr().out == f"✔ {eid} — {len(ex.probes)} checks passed\n"


@pytest.mark.parametrize("eid", IDS)
def test_stub_is_not_implemented_yet(eid, capsys):
    assert check(eid, stub_for(eid)) is None
    assert capsys.readouterr().out == f"… {eid}: not implemented yet\n"


@pytest.mark.parametrize("eid", IDS)
def test_every_known_mistake_is_rejected_with_its_own_hint(eid):
    ex = REGISTRY[eid]
    assert len(ex.mistakes) >= 3, f"{eid}: only {len(ex.mistakes)} known mistakes"
    for m in ex.mistakes:
        with pytest.raises(CheckFailed) as info:
            check(eid, m.impl, quiet=True)
        assert info.value.hint == m.hint, f"{eid}: mistake {m.hint!r} got the hint {info.value.hint!r}"


def test_every_exercise_is_in_one_solutions_notebook():
    assert sorted(WHERE) == IDS
    for path in SOLUTIONS:
        meta = nbformat.read(str(path), as_version=4).metadata["llmlab"]
        assert meta["assignment"] == path.stem
        assert sorted(meta["exercises"]) == [e for e in IDS if WHERE[e] == path.name]


@pytest.mark.parametrize("eid", IDS)
def test_solution_notebook_checks_and_passes(eid, namespaces):
    name = WHERE[eid]
    if name not in namespaces:
        namespaces[name] = solution_namespace(name, record_checks=True)
    ns = namespaces[name]
    fn = ns[eid.split(".", 1)[1]]
    assert (eid, fn) in ns["__checked__"], f"solutions/{name}: no check({eid!r}, ...) call after its exercise cell"
    assert check(eid, fn, quiet=True)


@pytest.mark.parametrize("eid", IDS)
def test_exercise_notebook_has_a_stub_and_a_check(eid):
    path = Path(__file__).resolve().parent.parent / "exercises" / WHERE[eid]
    src = "\n".join(c.source for c in nbformat.read(str(path), as_version=4).cells if c.cell_type == "code")
    assert f'check("{eid}", {eid.split(".", 1)[1]})' in src
    assert "raise NotImplementedError()" in src and "### BEGIN SOLUTION" not in src
