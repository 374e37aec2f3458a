"""The class auto-grader (llmlab.grading) against a bank of honest and adversarial
submissions (tests/grading_bank/make_bank.py): each one must get exactly its expected
grade, with the reason in its feedback, and the run must finish with every student in
grades.csv. Plus the pieces the guarantees rest on: the plain-data format, the
"calls llmlab's reference" reader, collecting an LMS zip, and determinism."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch

from llmlab.grading import Limits, collect, grade, resolve_assignment, sandbox, serialize, static_flags

_spec = importlib.util.spec_from_file_location("grading_bank_make_bank", Path(__file__).parent / "grading_bank" / "make_bank.py")
bank = sys.modules["grading_bank_make_bank"] = importlib.util.module_from_spec(_spec)  # dataclasses look their module up
_spec.loader.exec_module(bank)

# Small enough for 2 shared cores, large enough for torch: a fresh `python -I` with torch and
# llmlab maps ~650 MB, and a legitimate cell of the bank runs in well under 0.5 s.
LIMITS = Limits(cell_timeout=3.0, submission_timeout=30.0, memory_mb=1024)
SECRET = "LLMLAB_BANK_SECRET"


def _available(need: str | None) -> bool:
    f = sandbox.features()
    return {None: True, "process_cap": f["pids_cgroup"] or f["rlimit_nproc_enforced"],
            "landlock": f["landlock_abi"] > 0, "network": f["network_namespace"]}[need]


CASES = [c for c in bank.CASES if _available(c.needs)]
SKIPPED = [c.name for c in bank.CASES if not _available(c.needs)]


def _runner_processes() -> list[int]:
    pids = []
    for d in os.listdir("/proc"):
        try:
            if d.isdigit() and str(sandbox.RUNNER).encode() in Path(f"/proc/{d}/cmdline").read_bytes():
                pids.append(int(d))
        except OSError:
            pass
    return pids


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The whole bank, graded once with 2 workers and a fresh seed (as a teacher would)."""
    folder = tmp_path_factory.mktemp("submissions")
    out = tmp_path_factory.mktemp("graded")
    bank.build(folder, CASES)
    escaped = Path("/tmp/llmlab_bank_escaped.txt")
    escaped.unlink(missing_ok=True)
    os.environ[SECRET] = "hunter2"  # in the grader's environment only: the sandbox must not pass it on
    try:
        result = grade([folder], "03_attention", out, workers=2, exercises=bank.EXERCISES, limits=LIMITS)
    finally:
        os.environ.pop(SECRET, None)
    return result, out


def _student(case) -> str:
    return (case.filename or case.name).rsplit(".", 1)[0]


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bank_submission_gets_its_expected_grade(graded, case):
    result, out = graded
    s = result.by_name()[_student(case)]
    got = {ex: s.exercises[ex].score for ex in bank.EXERCISES}
    feedback = (out / "feedback" / f"{_student(case)}.md").read_text(encoding="utf-8")
    assert got == case.expected, f"{case.name} ({case.why}), seed {result.seed}: got {got}, expected {case.expected}\n{feedback}"
    assert s.flagged == case.flagged, feedback
    for phrase in case.feedback:
        assert phrase in feedback, f"{case.name}: feedback lacks {phrase!r}:\n{feedback}"


@pytest.mark.slow
def test_bank_run_completes_with_every_student_and_all_outputs(graded):
    result, out = graded
    with open(out / "grades.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["student"] for r in rows] == sorted((_student(c) for c in CASES), key=str.lower)
    for r in rows:
        assert float(r["total"]) == pytest.approx(sum(float(r[e]) for e in bank.EXERCISES), abs=1e-9)  # exact sums of 2-decimal scores
        assert r["max"] == "10"
        gs = json.loads((out / "gradescope" / r["student"] / "results.json").read_text(encoding="utf-8"))
        assert gs["max_score"] == 10 and gs["score"] == float(r["total"])
        assert [t["name"] for t in gs["tests"]] == bank.EXERCISES
        assert all(set(t) >= {"name", "score", "max_score", "output"} for t in gs["tests"])
    run = json.loads((out / "run.json").read_text())
    assert run["seed"] == result.seed and run["limits"]["memory_mb"] == 1024 and run["students"] == len(CASES)


@pytest.mark.slow
def test_bank_leaves_nothing_behind(graded):
    """No sandboxed process outlives the run (fork bombs, sleeping children), nothing was
    written outside the sandbox, and the grader's secrets never reached a notebook (the
    bank's network_and_secrets case scores full marks only if it saw no secret)."""
    assert _runner_processes() == []
    assert not Path("/tmp/llmlab_bank_escaped.txt").exists()
    assert not [p for p in Path("/tmp").glob("llmlab-grade-*") if p.is_dir() and (p / "escaped.txt").exists()]


@pytest.mark.slow
def test_same_submissions_same_grades_and_same_seed_same_feedback(graded, tmp_path):
    """Grades do not depend on the run's seed or the worker count; with the same seed even
    the feedback text (which quotes values) is byte-identical."""
    result, _ = graded
    names = ["honest_correct", "honest_partly_wrong", "calls_the_reference", "renamed_functions"]
    bank.build(tmp_path / "subs", [c for c in bank.CASES if c.name in names])
    a = grade([tmp_path / "subs"], "x", tmp_path / "a", workers=2, exercises=bank.EXERCISES, seed=123, limits=LIMITS)
    b = grade([tmp_path / "subs"], "x", tmp_path / "b", workers=1, exercises=bank.EXERCISES, seed=123, limits=LIMITS)
    feedback = "".join((tmp_path / d / "feedback" / f"{n}.md").read_text(encoding="utf-8") for d in ("a", "b") for n in names)
    assert a.rows() == b.rows() == [r for r in result.rows() if r["student"] in names], feedback
    for n in names:
        assert (tmp_path / "a" / "feedback" / f"{n}.md").read_bytes() == (tmp_path / "b" / "feedback" / f"{n}.md").read_bytes()
    assert (tmp_path / "a" / "grades.csv").read_bytes() == (tmp_path / "b" / "grades.csv").read_bytes()


@pytest.mark.slow
def test_cli_grades_an_lms_zip(tmp_path, capsys):
    from llmlab.cli import main

    bank.build(tmp_path / "nb", [c for c in bank.CASES if c.name == "honest_correct"])
    z = tmp_path / "export.zip"
    with zipfile.ZipFile(z, "w") as zf:  # one folder per student, as Moodle exports
        zf.write(tmp_path / "nb" / "honest_correct.ipynb", "Ada Lovelace_1_assignsubmission_file_/03_attention.ipynb")
        zf.writestr("Bob_2_assignsubmission_file_/notes.txt", "I did not finish")
        zf.writestr("__MACOSX/._junk", "x")
    rc = main(["grade", str(z), "--assignment", "03_attention", "--out", str(tmp_path / "out"),
               "--exercises", ",".join(bank.EXERCISES), "--cell-timeout", "3", "--memory-mb", "1024"])
    assert rc == 0
    rows = list(csv.DictReader(open(tmp_path / "out" / "grades.csv", encoding="utf-8")))
    assert [(r["student"], r["total"]) for r in rows] == [("Ada Lovelace_1_assignsubmission_file", "10"), ("Bob_2_assignsubmission_file", "0")]
    assert "no notebook (.ipynb) found" in rows[1]["notes"]


# ----------------------------------------------------------------------------- plain data across the boundary
def test_serialize_round_trips_every_allowed_type():
    value = {"t": torch.arange(6, dtype=torch.int64).view(2, 3), (1, 2): [1.0, 2, True, None, "s"], 3: (float("nan"), float("-inf")),
             "b": torch.tensor([True, False]), "h": torch.ones(2, dtype=torch.bfloat16), "empty": torch.zeros(0, 4), "scalar": torch.tensor(2.5)}
    back = serialize.loads(*serialize.dumps(value))
    assert list(back) == list(value)  # key order and key types kept
    assert type(back[3]) is tuple and math.isnan(back[3][0]) and back[3][1] == float("-inf")
    assert [type(v) for v in back[(1, 2)]] == [float, int, bool, type(None), str]
    for k in ("t", "b", "h", "empty", "scalar"):
        assert type(back[k]) is torch.Tensor and back[k].dtype == value[k].dtype
        torch.testing.assert_close(back[k], value[k], atol=0, rtol=0)  # bytes are copied, not recomputed


def _nested(depth: int) -> list:
    x: list = [1]
    for _ in range(depth):
        x = [x]
    return x


@pytest.mark.parametrize("bad", [
    pytest.param(lambda: type("Anything", (), {"__eq__": lambda s, o: True})(), id="object-with-__eq__"),
    pytest.param(lambda: torch.zeros(2).as_subclass(type("Sub", (torch.Tensor,), {})), id="tensor-subclass"),
    pytest.param(lambda: __import__("numpy").zeros(3), id="numpy-array"),
    pytest.param(lambda: type("MyInt", (int,), {})(3), id="int-subclass"),
    pytest.param(lambda: torch.zeros(2, dtype=torch.complex64), id="complex-tensor"),
    pytest.param(lambda: _nested(40), id="too-deep"),
])
def test_serialize_refuses_what_is_not_plain_data(bad):
    with pytest.raises(serialize.SerializationError):
        serialize.dumps(bad())


@pytest.mark.parametrize("js, st", [
    (b'{"$pickle": "gASV"}', b""),
    (b'{"$tensor": "t9"}', b""),
    (b"NaN", b""),
    (b'{"$dict": [[[1, 2], 3]]}', b""),  # an unhashable key
    (b'{"$tensor": "t0"}', b"\x80\x04\x95 not safetensors, a pickle"),
    (b"[1, 2", b""),
])
def test_deserialize_refuses_forged_or_broken_bytes(js, st):
    with pytest.raises(serialize.SerializationError):
        serialize.loads(js, st)


# ----------------------------------------------------------------------------- "just calls llmlab's reference"
@pytest.mark.parametrize("cells, name", [
    (["from llmlab.nn.attention import softmax"], "softmax"),
    (["from llmlab.nn import attention as ref\nsoftmax = ref.softmax"], "softmax"),
    (["import llmlab.nn.attention\ndef softmax(x, dim=-1):\n    return llmlab.nn.attention.softmax(x, dim)"], "softmax"),
    (["from llmlab.nn.attention import softmax as s", "def softmax(x, dim=-1):\n    y = s(x, dim)\n    return y"], "softmax"),
    (["import llmlab.nn.attention as A", "class MultiHeadAttention(A.MultiHeadAttention):\n    pass"], "MultiHeadAttention"),
    (["def causal_mask(T):\n    return __import__('llmlab.nn.attention').nn.attention.causal_mask(T)"], "causal_mask"),
])
def test_static_flags_catch_the_reference(cells, name):
    assert static_flags(cells, name), cells


@pytest.mark.parametrize("cells, name", [
    # own code that uses *other* course helpers, or the same name only as its own recursion, is fine
    (["from llmlab.nn import attention as ref\nimport torch", "def scaled_dot_product_attention(q, k, v, mask=None):\n"
      "    w = (q @ k.transpose(-2, -1) / q.size(-1) ** 0.5).masked_fill(~mask, float('-inf')) "
      "if mask is not None else q @ k.transpose(-2, -1) / q.size(-1) ** 0.5\n"
      "    return w.softmax(-1) @ v", "out = ref.scaled_dot_product_attention"], "scaled_dot_product_attention"),
    (["from llmlab.checks import check\ndef softmax(x, dim=-1):\n    e = (x - x.amax(dim, keepdim=True)).exp()\n"
      "    return e / e.sum(dim, keepdim=True)\ncheck('attention.softmax', softmax)"], "softmax"),
    (["from llmlab.nn import attention as ref\ndef causal_mask(T):\n    return torch.ones(T, T).tril().bool()", "m = ref.causal_mask(3)"], "causal_mask"),
])
def test_static_flags_leave_own_code_alone(cells, name):
    assert static_flags(cells, name) == []


# ----------------------------------------------------------------------------- collecting and configuring
def test_collect_reads_zip_members_under_safe_names(tmp_path):
    z = tmp_path / "canvas.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("alice_123_03_attention.ipynb", "{}")
        zf.writestr("../../evil.ipynb", "{}")  # a path out of any folder it might be unpacked into
        zf.writestr("carol/03_attention.ipynb", "{}")
        zf.writestr("carol/other.ipynb", "{}")
    (tmp_path / "stage").mkdir()
    subs = collect([z], "03_attention", tmp_path / "stage")
    assert [s.name for s in subs] == ["alice_123_03_attention", "carol", "evil"]
    assert all(s.path is not None and (tmp_path / "stage") in s.path.parents for s in subs)
    assert subs[1].path.read_text() == "{}" and "03_attention" in subs[1].path.name  # the assignment's notebook is preferred
    assert not (tmp_path.parent / "evil.ipynb").exists()


def test_duplicate_student_names_are_kept_apart(tmp_path):
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "sam.ipynb").write_text("{}")
    subs = collect([tmp_path / "a", tmp_path / "b"], "x", tmp_path)
    assert [s.name for s in subs] == ["sam", "sam-2"]


def test_assignment_ids_come_from_the_notebook_metadata(tmp_path):
    nb = tmp_path / "07_x.ipynb"
    nb.write_text(json.dumps({"cells": [], "metadata": {"llmlab": {"assignment": "07_x", "exercises": ["attention.softmax"]}}}))
    assert resolve_assignment(str(nb)) == ["attention.softmax"]
    with pytest.raises(ValueError, match="no_such_assignment"):
        resolve_assignment("no_such_assignment", root=tmp_path)


def test_limits_name_the_bad_value():
    with pytest.raises(ValueError, match=r"Limits.memory_mb=0"):
        Limits(memory_mb=0)


# ----------------------------------------------------------------------------- time limits on a busy machine
_BUSY = "import time\nt = time.monotonic()\nwhile time.monotonic() - t < {s}:\n    pass"


def _pinned(cpu: int, code: str) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", code])
    os.sched_setaffinity(p.pid, {cpu})
    return p


needs_schedstat = pytest.mark.skipif(not Path("/proc/self/schedstat").exists(), reason="no /proc/PID/schedstat (not Linux): limits are plain wall-clock")


@needs_schedstat
def test_own_clock_counts_sleep_but_not_waiting_for_a_cpu():
    """Four CPU-bound processes on one core: each gets about a quarter of the wall-clock, and its
    own time says so (< 0.6 of the wall: 0.25 expected, slack for the other CI worker's scheduling);
    a sleeping process's own time is its wall-clock (> 0.9: waking up can wait for a CPU, briefly)."""
    cpu = sorted(os.sched_getaffinity(0))[0]
    hogs = [_pinned(cpu, _BUSY.format(s=3.5)) for _ in range(3)]
    busy, sleeper = _pinned(cpu, _BUSY.format(s=3.5)), _pinned(cpu, "import time; time.sleep(3.5)")
    try:
        time.sleep(0.5)  # past their start-up: the sleeper is asleep, the busy one busy
        busy_clock, sleep_clock = sandbox.OwnClock(busy.pid), sandbox.OwnClock(sleeper.pid)
        t0 = time.monotonic()
        time.sleep(2.0)
        wall = time.monotonic() - t0
        own_busy, own_sleep = busy_clock(), sleep_clock()
    finally:
        for p in [*hogs, busy, sleeper]:
            p.kill()
            p.wait()
    assert own_busy < 0.6 * wall, (own_busy, wall)
    assert own_sleep > 0.9 * wall, (own_sleep, wall)


@needs_schedstat
@pytest.mark.slow
def test_a_correct_notebook_gets_full_marks_on_a_starved_cpu(tmp_path):
    """The grader and its sandbox share one core with three CPU-bound processes, so everything
    takes about four times its own time in wall-clock (the interpreter's start-up alone ~4 x 2 s).
    Limits count own time after the start-up, so a correct notebook still gets 10 / 10 with 2 s
    per submission (with wall-clock limits that counted the start-up it got 0)."""
    cpu = sorted(os.sched_getaffinity(0))[0]
    before = os.sched_getaffinity(0)
    bank.build(tmp_path / "subs", [c for c in bank.CASES if c.name == "honest_correct"])
    hogs = [_pinned(cpu, _BUSY.format(s=600)) for _ in range(3)]
    os.sched_setaffinity(0, {cpu})  # this thread, and the threads and processes it starts (the sandbox keeps it)
    try:
        r = grade([tmp_path / "subs"], "x", tmp_path / "out", workers=1, exercises=bank.EXERCISES, seed=1,
                  limits=Limits(cell_timeout=1.0, submission_timeout=2.0, memory_mb=1024))
    finally:
        os.sched_setaffinity(0, before)
        for p in hogs:
            p.kill()
            p.wait()
    feedback = (tmp_path / "out" / "feedback" / "honest_correct.md").read_text(encoding="utf-8")
    assert r.rows()[0]["total"] == 10.0, feedback
