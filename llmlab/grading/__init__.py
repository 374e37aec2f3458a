"""The class auto-grader: `llmlab grade SUBMISSIONS... --assignment ID --out DIR`.

    >>> from llmlab.grading import grade
    >>> result = grade(["submissions.zip"], "03_attention", "graded/")    # doctest: +SKIP
    >>> result.rows()[0]                                                   # doctest: +SKIP
    {'student': 'alice', 'attention.softmax': 2.0, ..., 'total': 11.0}

How a grade is decided (the split that `llmlab.checks.core` was written for):
  1. here, in the grader's process: each probe's inputs are built from a seed that is fresh
     for every grading run (recorded in run.json; `seed=` repeats a run exactly), and the
     reference's outputs are computed;
  2. in a fresh sandboxed process per submission (sandbox.py, runner.py): the notebook's
     code cells run, then each graded function runs on those inputs, and its outputs come
     back as plain data (serialize.py: JSON + safetensors, never pickle);
  3. here again: each output is read strictly (a real tensor, number or list, or nothing)
     and compared with the reference by the probe's own `compare`; known mistakes give the
     hint. Nothing the student's process says can raise a score: a forged "passed" does not
     exist in the protocol, only outputs, and a flag can only lower one.

A graded function that is llmlab's own reference (imported, aliased, wrapped, subclassed)
is flagged and scores zero for that exercise: the course package is there to learn from,
not to hand in.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmlab.grading import sandbox, serialize
from llmlab.grading.collect import Submission, collect, read_code_cells
from llmlab.grading.flags import static_flags
from llmlab.grading.sandbox import Limits


# ----------------------------------------------------------------------------- results
@dataclass
class ExerciseResult:
    id: str
    max_score: float
    score: float = 0.0
    probes: list = field(default_factory=list)  # llmlab.checks.feedback.Verdict, one per probe
    reason: str | None = None  # why the whole exercise scored zero, when it did for one reason
    flags: list[str] = field(default_factory=list)


@dataclass
class StudentResult:
    name: str
    source: str  # where the submission came from (file, folder or zip entry)
    exercises: dict[str, ExerciseResult] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # about the whole submission (timeouts, skipped cells, ...)
    cell_problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def score(self) -> float:
        return round(sum(e.score for e in self.exercises.values()), 2)

    @property
    def max_score(self) -> float:
        return round(sum(e.max_score for e in self.exercises.values()), 2)

    @property
    def flagged(self) -> bool:
        return any(e.flags for e in self.exercises.values())


@dataclass
class ClassResult:
    assignment: str
    exercise_ids: list[str]
    students: list[StudentResult]
    seed: int
    out_dir: Path | None
    seconds: float

    def rows(self) -> list[dict]:
        rows = []
        for s in self.students:
            row = {"student": s.name}
            row.update({ex: s.exercises[ex].score for ex in self.exercise_ids})
            row["total"], row["max"] = s.score, s.max_score
            rows.append(row)
        return rows

    def by_name(self) -> dict[str, StudentResult]:
        return {s.name: s for s in self.students}


# ----------------------------------------------------------------------------- assignments
def resolve_assignment(assignment: str, root: Path | None = None) -> list[str]:
    """Exercise ids of an assignment: `metadata.llmlab.exercises` of solutions/ID.ipynb or
    exercises/ID.ipynb (or of the notebook at that path)."""
    from llmlab.course import repo_root

    p = Path(assignment)
    candidates = [p] if p.suffix == ".ipynb" else []
    base = repo_root(root)
    candidates += [base / "solutions" / f"{assignment}.ipynb", base / "exercises" / f"{assignment}.ipynb"]
    for c in candidates:
        if c.is_file():
            meta = json.loads(c.read_text(encoding="utf-8")).get("metadata", {}).get("llmlab", {})
            ids = meta.get("exercises")
            if ids:
                return list(ids)
            raise ValueError(f"{c} has no metadata.llmlab.exercises: cannot tell which exercises assignment {assignment!r} grades")
    raise ValueError(f"assignment={assignment!r}: no solutions/{assignment}.ipynb or exercises/{assignment}.ipynb under {base}; "
                     f"pass exercise ids explicitly (--exercises attention.softmax,...)")


# ----------------------------------------------------------------------------- the grader
class Grader:
    """One grading run: seeded inputs, reference outputs and limits shared by every submission."""

    def __init__(self, exercise_ids: list[str], seed: int, limits: Limits):
        import torch

        from llmlab.checks.core import clone_args, get_exercise, make_generator

        self.limits, self.seed = limits, seed
        self.exercises = [get_exercise(i) for i in exercise_ids]
        self.inputs: dict[str, list[tuple]] = {}
        self.expected: dict[str, list[Any]] = {}
        with torch.no_grad():
            for ex in self.exercises:
                args_list, exp = [], []
                for i, probe in enumerate(ex.probes):
                    # a fresh seed per run and per probe: outputs cannot be memorised from an earlier run
                    args = probe.inputs(make_generator(_mix(seed, ex.id, i)))
                    args_list.append(args)
                    exp.append(probe.run(ex.reference, *clone_args(args)))
                self.inputs[ex.id], self.expected[ex.id] = args_list, exp
        self._inputs_bytes = serialize.dumps(self.inputs)
        self._mistake_cache: dict[tuple, Any] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------- running one submission
    def grade_submission(self, sub: Submission, tmp_root: Path) -> StudentResult:
        t0 = time.monotonic()
        res = StudentResult(sub.name, sub.source)
        for ex in self.exercises:
            res.exercises[ex.id] = ExerciseResult(ex.id, float(ex.points))
        try:
            if sub.path is None:
                raise ValueError(sub.problem or "nothing to grade")
            cells = read_code_cells(sub.path)
        except (ValueError, OSError) as e:
            reason = str(e) if isinstance(e, ValueError) else f"could not read the file: {e}"
            res.notes.append(reason)
            for er in res.exercises.values():
                er.reason = reason
            res.seconds = time.monotonic() - t0
            return res
        flags = {ex.id: static_flags(cells, ex.name) for ex in self.exercises}
        outputs = self._execute(sub, cells, tmp_root, res)
        for ex in self.exercises:
            self._score(ex, outputs.get(ex.id), flags[ex.id], res.exercises[ex.id])
        res.seconds = time.monotonic() - t0
        return res

    def _execute(self, sub: Submission, cells: list[str], tmp_root: Path, res: StudentResult) -> dict[str, dict]:
        """Run the notebook in the sandbox; when a cell (or a probe) hangs or ends the
        process, skip it and run again, so a stray `while True:` or `sys.exit()` costs that
        cell, not the whole grade."""
        lim = self.limits
        budget = [lim.submission_timeout]  # own seconds left for the notebook's code, over all attempts
        skip_cells: set[int] = set()
        skip_probes: dict[str, dict[int, str]] = {}
        outputs: dict[str, dict] = {}
        box = Path(tempfile.mkdtemp(prefix="sub-", dir=tmp_root))
        try:
            for attempt in range(lim.attempts):
                remaining = [ex for ex in self.exercises if ex.id not in outputs]
                if not remaining:
                    break
                work, io = box / f"a{attempt}" / "work", box / f"a{attempt}" / "io"
                work.mkdir(parents=True)
                io.mkdir()
                if sub.path is not None:
                    shutil.copyfile(sub.path, work / ("notebook" + sub.path.suffix.lower()))
                (io / "inputs.json").write_bytes(self._inputs_bytes[0])
                (io / "inputs.safetensors").write_bytes(self._inputs_bytes[1])
                request = {
                    "cells": [{"index": i, "source": s} for i, s in enumerate(cells) if i not in skip_cells],
                    "threads": lim.cpu_threads,
                    "exercises": [{"id": ex.id, "name": ex.name, "skip_probes": sorted(skip_probes.get(ex.id, {}))} for ex in remaining],
                }
                (io / "request.json").write_text(json.dumps(request))
                where, why = self._watch(io, work, budget)
                for k, ex in enumerate(remaining):
                    try:
                        out = serialize.read(io / f"out-{k}")
                    except serialize.SerializationError:
                        continue
                    if isinstance(out, dict) and out.get("id") == ex.id:
                        out["skipped_probes"] = skip_probes.get(ex.id, {})
                        outputs[ex.id] = out
                self._cell_problems(io, res)
                if where == "done":
                    break
                if where.startswith("cell "):
                    i = int(where.split()[1])
                    skip_cells.add(i)
                    res.notes.append(f"cell {i + 1} (code cell {i}) {why}; the notebook was run again without it")
                elif where.startswith("probe "):
                    _, ex_id, i = where.split()
                    skipped = skip_probes.setdefault(ex_id, {})
                    if skipped:  # a second case of the same exercise hangs too: do not try the rest one by one
                        n = len(next(ex for ex in self.exercises if ex.id == ex_id).probes)
                        skipped.update({j: "was not run: earlier cases of this exercise hung or ended the process" for j in range(n) if j not in skipped})
                    skipped[int(i)] = why
                elif where.startswith("write "):
                    ex_id = where.split()[1]
                    outputs[ex_id] = {"id": ex_id, "probes": [], "flags": [], "broken": f"the outputs could not be written: the process {why}"}
                else:  # never got to the notebook's code (or died between its phases)
                    log = _tail(io.parent / "log.txt")
                    res.notes.append(f"the grading process {why} before running the notebook's functions" + (f"; its last output: {log}" if log else ""))
                    break
                if budget[0] <= 0:
                    res.notes.append(f"the submission ran out of its {lim.submission_timeout:g} s in total")
                    break
            else:
                if any(ex.id not in outputs for ex in self.exercises):
                    res.notes.append(f"gave up after {lim.attempts} runs of the notebook")
            for ex in self.exercises:
                if ex.id not in outputs and ex.id in skip_probes:
                    # the process died in this exercise every time: what we know per probe
                    outputs[ex.id] = {"id": ex.id, "probes": [], "flags": [], "skipped_probes": skip_probes[ex.id]}
        finally:
            shutil.rmtree(box, ignore_errors=True)
        return outputs

    def _watch(self, io: Path, work: Path, budget: list[float]) -> tuple[str, str]:
        """Run one attempt; returns (last progress line, why it stopped). Limits count the
        process's own time (sandbox.OwnClock), and budget[0], the submission's own seconds
        left, shrinks by what this attempt used after its start-up."""
        lim = self.limits
        cgroup = sandbox.PidsCgroup(f"llmlab-grade-{os.getpid()}-{threading.get_ident()}-{time.monotonic_ns()}", lim.max_processes)
        proc = sandbox.spawn(io, work, io.parent / "log.txt", lim, cgroup)
        clock = sandbox.OwnClock(proc.pid)
        last, why = "", None
        since = started = 0.0
        left = budget[0]
        try:
            while True:
                rc = proc.poll()
                line = _last_line(io / "status")
                now = clock()
                if line != last:
                    if last in ("", "start"):
                        started = now
                    last, since = line, now
                if rc is not None:
                    break
                # the interpreter's start-up (importing torch) is not the student's time
                booting = last in ("", "start")
                allowance = max(lim.cell_timeout, 30.0) if booting else lim.cell_timeout
                if now - since > allowance:
                    why = f"ran longer than the {allowance:g} s limit per cell (an infinite loop?)"
                    break
                if not booting and now - started > left:
                    why = f"was stopped at the {lim.submission_timeout:g} s limit per submission"
                    break
                time.sleep(0.05)
        finally:
            if last not in ("", "start"):
                budget[0] = left - (clock() - started)
            sandbox.kill_tree(proc, cgroup)  # also any process the notebook left behind
            cgroup.remove()
        if why is None:
            why = "ended the process (" + sandbox.describe_exit(proc.returncode) + ")"
        return last or "", why

    def _cell_problems(self, io: Path, res: StudentResult) -> None:
        p = io / "cells.jsonl"
        if not p.is_file() or p.stat().st_size > 1 << 20:
            return
        for line in p.read_text(encoding="utf-8", errors="replace").splitlines()[:200]:
            try:
                e = json.loads(line)
                i = int(e["index"])
            except (ValueError, KeyError, TypeError):
                continue
            for key in ("error", "skipped", "note"):
                if isinstance(e.get(key), str):
                    text = f"code cell {i}: {_clean(e[key], 300)}"
                    if text not in res.cell_problems:
                        res.cell_problems.append(text)

    # ------------------------------------------------------------- scoring, in this process only
    def _score(self, ex, out: dict | None, flags: list[str], er: ExerciseResult) -> None:
        n = len(ex.probes)
        if out is None:
            er.reason = er.reason or "the notebook's functions could not be run (see the notes above)"
            return
        if out.get("missing") is not None:
            alt = [a for a in out["missing"] if isinstance(a, str)][:3]
            er.reason = f"no {'class' if ex.kind == 'class' else 'function'} named `{ex.name}` in the notebook" + (
                f" (found {', '.join('`' + _clean(a, 40) + '`' for a in alt)}: renamed? the grader looks for the exact name `{ex.name}`)" if alt else "")
            return
        if out.get("not_callable") is not None:
            er.reason = f"`{ex.name}` is a {_clean(str(out['not_callable']), 40)}, not a {'class' if ex.kind == 'class' else 'function'}"
            return
        if isinstance(out.get("broken"), str):
            er.reason = _clean(out["broken"], 300)
            return
        er.flags = sorted(set(flags) | {_clean(f, 200) for f in out.get("flags", []) if isinstance(f, str)})
        if er.flags:
            er.reason = "flagged: " + "; ".join(er.flags) + ". Graded functions must be your own code: 0 points (ask your instructor if this is a mistake)"
            return
        from llmlab.checks.core import Crash
        from llmlab.checks.feedback import Outcome, judge

        probes = out.get("probes") if isinstance(out.get("probes"), list) else []
        skipped = out.get("skipped_probes", {})
        cases = []
        for i in range(len(ex.probes)):
            item = probes[i] if i < len(probes) and isinstance(probes[i], dict) else {}
            if i in skipped:
                outcome = Outcome("skipped", message=str(skipped[i]))
            elif item.get("stub") is True:
                outcome = Outcome("stub")
            elif "value" in item:
                outcome = Outcome("value", item["value"])
            elif isinstance(item.get("crash"), dict):
                outcome = Outcome("crash", crash=Crash.from_dict(item["crash"]))
            elif isinstance(item.get("error"), str):
                outcome = Outcome("failed", message=_clean(item["error"], 400))
            else:
                outcome = Outcome("none")
            cases.append((self.inputs[ex.id][i], self.expected[ex.id][i], outcome))
        er.probes = judge(ex, cases, mistake_output=lambda m_i, i: self._mistake_output(ex, m_i, i))
        if all(c[2].kind == "stub" for c in cases):
            er.reason = "not implemented yet"
        passed = sum(p.passed for p in er.probes)
        er.score = round(er.max_score * passed / n, 2)

    def _mistake_output(self, ex, m_i: int, i: int):
        """Known mistake m_i's output on probe i of this run's inputs, computed once per run."""
        from llmlab.checks.core import clone_args

        key = (ex.id, m_i, i)
        with self._lock:
            cached = self._mistake_cache.get(key, KeyError)
        if cached is KeyError:
            cached = ex.probes[i].run(ex.mistakes[m_i].impl, *clone_args(self.inputs[ex.id][i]))
            with self._lock:
                self._mistake_cache[key] = cached
        return cached


def _mix(seed: int, ex_id: str, i: int) -> int:
    import hashlib

    return int.from_bytes(hashlib.sha256(f"{seed}:{ex_id}:{i}".encode()).digest()[:7], "big")


def _last_line(p: Path) -> str:
    try:
        with open(p, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 512))
            lines = f.read().decode("utf-8", errors="replace").splitlines()
            return lines[-1].strip()[:200] if lines else ""
    except OSError:
        return ""


def _tail(p: Path, n: int = 300) -> str:
    try:
        with open(p, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - n))
            return _clean(f.read().decode("utf-8", errors="replace").strip(), n)
    except OSError:
        return ""


def _clean(text: str, n: int) -> str:
    """Text from the student's process, made safe to show: printable, bounded."""
    text = "".join(c for c in str(text) if c.isprintable() or c in "\n\t")
    return text if len(text) <= n else text[: n - 1] + "…"


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


def grade(submissions: list[str | Path], assignment: str, out_dir: str | Path | None, workers: int | None = None,
          exercises: list[str] | None = None, seed: int | None = None, limits: Limits | None = None,
          progress: Any = None) -> ClassResult:
    """Grade every submission; write grades.csv, feedback/NAME.md, gradescope/NAME/results.json
    and run.json into out_dir (None: write nothing). Returns the ClassResult.

    submissions: notebook files, folders (one file or subfolder per student) or LMS zips.
    assignment: "03_attention" (exercise ids from its notebook's metadata) or any label when
        `exercises` lists the ids explicitly. seed: None draws a fresh one (recorded).
    """
    from llmlab.grading import report

    t0 = time.monotonic()
    ids = list(exercises) if exercises else resolve_assignment(assignment)
    if not ids:
        raise ValueError(f"exercises={exercises!r}: expected at least one exercise id")
    if workers is not None and workers < 1:
        raise ValueError(f"workers={workers!r}: expected a positive number of parallel submissions")
    seed = secrets.randbits(48) if seed is None else int(seed)
    limits = limits or Limits()
    grader = Grader(ids, seed, limits)
    with tempfile.TemporaryDirectory(prefix="llmlab-grade-") as tmp:
        tmp_root = Path(tmp)
        subs = collect(list(submissions), assignment, tmp_root)
        if not subs:
            raise ValueError(f"submissions={[str(s) for s in submissions]!r}: no submissions found there")

        def one(sub: Submission) -> StudentResult:
            try:
                r = grader.grade_submission(sub, tmp_root)
            except Exception as e:  # a bug of ours must not cost the rest of the class
                r = StudentResult(sub.name, sub.source, {ex.id: ExerciseResult(ex.id, float(ex.points), reason="grader error") for ex in grader.exercises})
                r.notes.append(f"internal grader error ({type(e).__name__}: {e}); please report it")
            if progress:
                progress(r)
            return r

        with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
            students = list(pool.map(one, subs))
    result = ClassResult(assignment, ids, students, seed, Path(out_dir) if out_dir is not None else None, time.monotonic() - t0)
    if out_dir is not None:
        report.write_all(result, Path(out_dir), limits)
    return result


# ----------------------------------------------------------------------------- command line
def configure_grade(p) -> None:
    p.add_argument("submissions", nargs="+", help="notebooks, folders of submissions, or an LMS zip export")
    p.add_argument("--assignment", required=True, help="assignment id, e.g. 03_attention (its exercise ids come from the notebook's metadata)")
    p.add_argument("--out", required=True, type=Path, help="folder for grades.csv, feedback/, gradescope/ and run.json")
    p.add_argument("--exercises", default=None, help="comma-separated exercise ids (overrides the notebook's list)")
    p.add_argument("--workers", type=int, default=None, help=f"submissions graded in parallel (default: CPU count, here {default_workers()})")
    p.add_argument("--seed", type=int, default=None, help="repeat a run's inputs exactly (default: fresh; recorded in run.json)")
    p.add_argument("--cell-timeout", type=float, default=Limits.cell_timeout,
                   help="own seconds (waiting for a CPU excluded) per cell or check (default %(default)s)")
    p.add_argument("--timeout", type=float, default=Limits.submission_timeout, help="seconds per submission, own time, start-up excluded (default %(default)s)")
    p.add_argument("--memory-mb", type=int, default=Limits.memory_mb, help="memory per submission in MB (default %(default)s)")


def run_grade(args) -> int:
    import sys

    limits = Limits(cell_timeout=args.cell_timeout, submission_timeout=args.timeout, memory_mb=args.memory_mb)
    ids = [s.strip() for s in args.exercises.split(",") if s.strip()] if args.exercises else None

    def progress(r: StudentResult) -> None:
        print(f"  {r.name:<24} {r.score:g}/{r.max_score:g}" + ("  FLAGGED" if r.flagged else "") + (f"  ({r.notes[0][:70]})" if r.notes else ""), flush=True)

    print(f"grading {args.assignment} ...", flush=True)
    result = grade(args.submissions, args.assignment, args.out, workers=args.workers, exercises=ids, seed=args.seed, limits=limits, progress=progress)
    print(f"{len(result.students)} submissions graded in {result.seconds:.1f} s (seed {result.seed}); see {args.out}/grades.csv", file=sys.stderr)
    return 0


__all__ = ["ClassResult", "Limits", "StudentResult", "collect", "grade", "read_code_cells", "resolve_assignment", "static_flags"]
