"""How long `llmlab grade` takes for a class: 30 submissions of 03_attention (the grading
bank's honest students, repeated), default worker count, default limits.

    .venv/bin/python benchmarks/grading.py [--students 30] [--workers N]

Prints the wall time for the class, the mean wall time per submission, and the fixed
overhead of one submission (a sandboxed interpreter that imports torch and llmlab, runs a
one-line notebook and reports back) measured alone. Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

from llmlab.grading import default_workers, grade

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("grading_bank_make_bank", ROOT / "tests" / "grading_bank" / "make_bank.py")
bank = sys.modules["grading_bank_make_bank"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bank)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--students", type=int, default=30)
    ap.add_argument("--workers", type=int, default=None, help=f"default: the grader's default ({default_workers()} here)")
    args = ap.parse_args()
    honest = [c for c in bank.CASES if c.name in ("honest_correct", "honest_partly_wrong", "missing_functions")]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subs = tmp / "class"
        subs.mkdir()
        for i in range(args.students):
            case = honest[i % len(honest)]
            (subs / f"student{i:02d}.ipynb").write_bytes(case.write(tmp).read_bytes())
        one = tmp / "overhead"
        one.mkdir()
        (one / "empty.ipynb").write_bytes(bank.Case("empty", "", {}, cells=["pass"]).write(tmp).read_bytes())

        grade([one], "03_attention", None, exercises=bank.EXERCISES, workers=1)  # warm the file cache
        overhead = [grade([one], "03_attention", None, exercises=bank.EXERCISES, workers=1).students[0].seconds for _ in range(3)]
        t0 = time.perf_counter()
        result = grade([subs], "03_attention", tmp / "out", exercises=bank.EXERCISES, workers=args.workers)
        wall = time.perf_counter() - t0
    per = [s.seconds for s in result.students]
    print(f"{args.students} submissions, {args.workers or default_workers()} workers, {default_workers()} CPUs visible")
    print(f"class wall time:               {wall:6.1f} s")
    print(f"per submission (mean, in pool): {statistics.mean(per):6.2f} s  (min {min(per):.2f}, max {max(per):.2f})")
    print(f"overhead of one submission:     {statistics.median(overhead):6.2f} s  (median of 3, alone: sandbox + interpreter + torch import)")


if __name__ == "__main__":
    main()
