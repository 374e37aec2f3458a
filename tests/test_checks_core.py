"""The check framework itself: what a learner sees on pass, stub, crash and failure."""

from __future__ import annotations

import pytest
import torch

from llmlab.checks import REGISTRY, CheckFailed, check, exercises, load_all
from llmlab.checks.core import close, equal
from llmlab.nn import attention as ref

load_all()


def stub(*args, **kwargs):
    raise NotImplementedError()


def test_pass_prints_one_line(capsys):
    assert check("attention.softmax", ref.softmax)
    out = capsys.readouterr().out
    assert out == f"✔ attention.softmax — {len(REGISTRY['attention.softmax'].probes)} checks passed\n"


def test_stub_reports_not_implemented_without_raising(capsys):
    assert check("attention.softmax", stub) is None
    assert capsys.readouterr().out == "… attention.softmax: not implemented yet\n"


def test_crash_in_learner_code_is_reported_with_its_line():
    def softmax(x, dim=-1):
        e = x.exp()
        return e / e.sum(dim=dim, keepdims=True, nonsense=1)

    with pytest.raises(CheckFailed) as info:
        check("attention.softmax", softmax)
    msg = str(info.value)
    assert "your code raised TypeError" in msg
    assert "e.sum(dim=dim, keepdims=True, nonsense=1)" in msg  # the learner's own line, not llmlab's


def test_failure_is_an_assertion_error_with_expected_got_and_hint():
    def softmax(x, dim=-1):  # the classic: normalise over axis 0
        return x.exp() / x.exp().sum(dim=0, keepdim=True)

    with pytest.raises(AssertionError) as info:
        check("attention.softmax", softmax)
    e = info.value
    assert isinstance(e, CheckFailed)
    assert e.exercise == "attention.softmax" and e.probe
    assert "expected" in e.message and "got" in e.message
    assert "wrong axis" in e.hint


def test_ipython_shows_feedback_instead_of_a_traceback():
    e = CheckFailed("output values differ", hint="subtract the max", exercise="attention.softmax", probe="large logits")
    lines = e._render_traceback_()
    text = "\n".join(lines)
    assert "attention.softmax" in text and "Hint: subtract the max" in text
    assert "Traceback" not in text and "File " not in text


def test_unknown_exercise_suggests_close_ids():
    with pytest.raises(KeyError, match="attention.softmax"):
        check("attention.sofmax", ref.softmax)


def test_non_callable_candidate():
    with pytest.raises(CheckFailed, match="expected a function or class"):
        check("attention.softmax", 42)


class AlwaysEqual:
    """The object that fools `==`-based graders: equal to everything."""

    def __eq__(self, other):
        return True

    shape = (3, 4, 5)


@pytest.mark.parametrize("compare, expected", [(close(), torch.zeros(3, 4, 5)), (equal(), [1, 2, 3]), (equal(), {(1, 2): 3}), (equal(), 7)])
def test_compare_rejects_objects_that_claim_equality(compare, expected):
    with pytest.raises(CheckFailed, match="expected the output to be"):
        compare(AlwaysEqual(), expected)


def test_equal_is_strict_about_types_and_order():
    with pytest.raises(CheckFailed):
        equal()([1, 2.0], [1, 2])  # 2.0 is not the int 2
    with pytest.raises(CheckFailed, match="different order"):
        equal()({(1, 2): 1, (2, 3): 1}, {(2, 3): 1, (1, 2): 1})
    with pytest.raises(CheckFailed, match="shape"):
        close()(torch.zeros(3, 5, 4), torch.zeros(3, 4, 5))


def test_close_tolerance_is_tight():
    x = torch.rand(100) + 0.5
    close()(x * (1 + 5e-6), x)  # float32 rounding after a few ops: accepted
    with pytest.raises(CheckFailed):
        close()(x * (1 + 1e-3), x)  # a real error of 0.1 %: rejected


def test_exercise_listing():
    rows = exercises()
    ids = [r["id"] for r in rows]
    assert "attention.softmax" in ids and len(ids) == len(set(ids))
    assert all(r["signature"] and r["points"] > 0 and r["checks"] > 0 for r in rows)
