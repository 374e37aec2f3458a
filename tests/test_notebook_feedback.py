"""What a learner sees in a real kernel: feedback lines, never a traceback through llmlab."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

WRONG = """
from llmlab.checks import check
def softmax(x, dim=-1):
    return x.exp() / x.exp().sum(dim=0, keepdim=True)
check("attention.softmax", softmax)
"""

STUB = """
from llmlab.checks import check
def softmax(x, dim=-1):
    # YOUR CODE HERE
    raise NotImplementedError()
check("attention.softmax", softmax)
print("the notebook goes on")
"""


def _run(source: str, allow_errors: bool):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source)]
    NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=allow_errors).execute()
    return nb.cells[0].outputs


def test_failed_check_shows_feedback_not_frames():
    outputs = _run(WRONG, allow_errors=True)
    errors = [o for o in outputs if o.output_type == "error"]
    assert len(errors) == 1 and errors[0].ename == "CheckFailed"
    shown = "\n".join(errors[0].traceback)
    assert "attention.softmax" in shown and "Hint:" in shown and "wrong axis" in shown
    assert "Traceback" not in shown and "core.py" not in shown and "File " not in shown


def test_stub_does_not_stop_the_notebook():
    outputs = _run(STUB, allow_errors=False)  # would raise CellExecutionError on any error
    text = "".join(o.get("text", "") for o in outputs)
    assert text == "… attention.softmax: not implemented yet\nthe notebook goes on\n"


def test_wrong_answer_does_stop_a_run_all():
    with pytest.raises(CellExecutionError):
        _run(WRONG, allow_errors=False)
