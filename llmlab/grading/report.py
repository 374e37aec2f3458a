"""What a grading run leaves behind, in out_dir:

    grades.csv                      one row per student, one column per exercise, total, max, flagged, notes
    feedback/NAME.md                for the student: each exercise, each failed property, the hint
    gradescope/NAME/results.json    Gradescope's format: score, max_score, tests[{name, score, max_score, output}]
    run.json                        seed, limits, isolation layers in force, versions: enough to repeat the run

Everything a student's notebook produced (error messages, names) is treated as text to
show, never as markup: CSV cells that a spreadsheet would run as a formula are quoted,
Markdown gets code spans.
"""

from __future__ import annotations

import csv
import json
import platform
import sys
from pathlib import Path

from llmlab.grading import sandbox


def _csv_safe(v):
    """A name like `=HYPERLINK(...)` would be a formula in Excel: prefix it with '."""
    if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + v
    return v


def _md(text: str) -> str:
    """Text that may quote the student's notebook, inside Markdown: one line, no HTML."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", " ").replace("\n", " ⏎ ")


def write_csv(result, path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["student", *result.exercise_ids, "total", "max", "flagged", "notes"])
        for s in result.students:
            notes = "; ".join(s.notes)[:300]
            w.writerow([_csv_safe(s.name), *(f"{s.exercises[i].score:g}" for i in result.exercise_ids),
                        f"{s.score:g}", f"{s.max_score:g}", "yes" if s.flagged else "", _csv_safe(notes)])


def exercise_output(er) -> str:
    """Plain-text feedback for one exercise (Gradescope's `output`, and the Markdown body)."""
    lines = []
    if er.reason:
        lines.append(er.reason)
    for p in er.probes:
        if p.passed:
            lines.append(f"✔ {p.name}")
        else:
            lines.append(f"✘ {p.name}: {p.message}")
            if p.hint:
                lines.append(f"  Hint: {p.hint}")
    return "\n".join(lines)


def feedback_markdown(s, result) -> str:
    out = [f"# {result.assignment}: feedback for {s.name}", "",
           f"**Score: {s.score:g} / {s.max_score:g}**", ""]
    if s.notes:
        out += ["## About your submission", ""] + [f"- {_md(n)}" for n in s.notes] + [""]
    for ex_id in result.exercise_ids:
        er = s.exercises[ex_id]
        mark = "✔" if er.score == er.max_score else ("✘" if er.score == 0 else "◐")
        out += [f"## {mark} `{ex_id}`: {er.score:g} / {er.max_score:g}", ""]
        if er.reason:
            out += [f"**{_md(er.reason)}**", ""]
        for p in er.probes:
            if p.passed:
                out.append(f"- ✔ {p.name}")
            else:
                out.append(f"- ✘ **{p.name}**: {_md(p.message)}")
                if p.hint:
                    out.append(f"  - Hint: {p.hint}")
        out.append("")
    if s.cell_problems:
        out += ["## Cells that did not run", "",
                "These cells raised an error or were skipped when your notebook was run from top to bottom "
                "in a fresh process. Restart the kernel and run all cells to see them yourself.", ""]
        out += [f"- {_md(c)}" for c in s.cell_problems[:20]] + [""]
    return "\n".join(out)


def gradescope_json(s, result) -> dict:
    tests = []
    for ex_id in result.exercise_ids:
        er = s.exercises[ex_id]
        tests.append({"name": ex_id, "score": er.score, "max_score": er.max_score, "output": exercise_output(er), "visibility": "visible"})
    general = "\n".join(s.notes + [f"code cell problem: {c}" for c in s.cell_problems[:20]])
    return {"score": s.score, "max_score": s.max_score, "output": general, "tests": tests, "visibility": "visible"}


def file_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip(".") or "unnamed"


def write_all(result, out: Path, limits) -> None:
    import torch

    out.mkdir(parents=True, exist_ok=True)
    (out / "feedback").mkdir(exist_ok=True)
    write_csv(result, out / "grades.csv")
    for s in result.students:
        (out / "feedback" / f"{file_name(s.name)}.md").write_text(feedback_markdown(s, result), encoding="utf-8")
        gs = out / "gradescope" / file_name(s.name)
        gs.mkdir(parents=True, exist_ok=True)
        (gs / "results.json").write_text(json.dumps(gradescope_json(s, result), indent=1, ensure_ascii=False), encoding="utf-8")
    run = {
        "assignment": result.assignment, "exercises": result.exercise_ids, "seed": result.seed,
        "students": len(result.students), "seconds": round(result.seconds, 2),
        "limits": sandbox.limits_dict(limits), "isolation": sandbox.features(),
        "python": sys.version.split()[0], "torch": torch.__version__, "platform": platform.platform(),
        "sources": {s.name: s.source for s in result.students},
    }
    (out / "run.json").write_text(json.dumps(run, indent=1), encoding="utf-8")
