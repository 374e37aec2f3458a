"""The exercise pipeline: `solutions/*.ipynb` are the single source; `exercises/` is built.

Solution code sits between `### BEGIN SOLUTION` and `### END SOLUTION` lines (nbgrader's
convention). Building replaces each region by a stub that raises NotImplementedError,
clears outputs and execution counts, and keeps all metadata (so each notebook still
knows its exercise ids: `metadata.llmlab.exercises`).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = "# YOUR CODE HERE\nraise NotImplementedError()"
_BEGIN_RE = re.compile(r"^(\s*)### BEGIN SOLUTION\s*$")
_END_RE = re.compile(r"^\s*### END SOLUTION\s*$")
# A written answer in a markdown cell sits between HTML comments, invisible where the solutions
# notebook is rendered; the exercise notebook gets ANSWER_STUB in its place.
MD_BEGIN, MD_END = "<!-- BEGIN SOLUTION -->", "<!-- END SOLUTION -->"
ANSWER_STUB = "*Your answer here.*"
_MD_BEGIN_RE = re.compile(r"^\s*<!--\s*BEGIN SOLUTION\s*-->\s*$")
_MD_END_RE = re.compile(r"^\s*<!--\s*END SOLUTION\s*-->\s*$")


class NotebookError(ValueError):
    """A notebook that cannot be read or has unbalanced solution markers."""


def repo_root(start: Path | None = None) -> Path:
    """The course folder: the nearest parent holding `solutions/`, else the package's parent."""
    here = (start or Path.cwd()).resolve()
    for p in (here, *here.parents):
        if (p / "solutions").is_dir() and (p / "llmlab").is_dir():
            return p
    return Path(__file__).resolve().parent.parent


def strip_solutions(source: str, where: str = "cell", markdown: bool = False) -> tuple[str, int]:
    """Replace every solution region of a cell's source by the stub; returns (source, regions).
    Code cells mark a region with `### BEGIN SOLUTION` / `### END SOLUTION` lines (the stub raises
    NotImplementedError); markdown cells (a written answer) with `<!-- BEGIN SOLUTION -->` /
    `<!-- END SOLUTION -->` lines (the stub asks for the answer)."""
    begin_re, end_re, begin, end, stub = (_MD_BEGIN_RE, _MD_END_RE, MD_BEGIN, MD_END, ANSWER_STUB) if markdown else (_BEGIN_RE, _END_RE, BEGIN, END, STUB)
    out: list[str] = []
    inside, n = False, 0
    for i, line in enumerate(source.splitlines(), 1):
        m = begin_re.match(line)
        if m:
            if inside:
                raise NotebookError(f"{where}, line {i}: '{begin}' inside another solution region")
            inside, n = True, n + 1
            indent = "" if markdown else m.group(1)
            out.extend(indent + s for s in stub.splitlines())
        elif end_re.match(line):
            if not inside:
                raise NotebookError(f"{where}, line {i}: '{end}' without a matching '{begin}'")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise NotebookError(f"{where}: '{begin}' is never closed by '{end}'")
    return "\n".join(out), n


def read_notebook(path: Path) -> nbformat.NotebookNode:
    try:
        return nbformat.read(str(path), as_version=4)
    except Exception as e:  # nbformat raises several kinds for a malformed file
        raise NotebookError(f"{path}: not a readable Jupyter notebook ({type(e).__name__}: {e})") from e


def make_exercise(nb: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """The student version of a solutions notebook (a new object; `nb` is left alone)."""
    ex = nbformat.from_dict(nb)
    total = 0
    for k, cell in enumerate(ex.cells):
        if cell.cell_type == "code":
            cell.source, n = strip_solutions(cell.source, f"{name}, cell {k}")
            total += n
            cell.outputs = []
            cell.execution_count = None
        elif cell.cell_type == "markdown":
            cell.source, _ = strip_solutions(cell.source, f"{name}, cell {k}", markdown=True)
        cell.get("metadata", {}).pop("execution", None)
    if total == 0:
        raise NotebookError(f"{name}: has no '{BEGIN}' region, so there is nothing for a student to write")
    ex.metadata.setdefault("llmlab", {})["generated_from"] = f"solutions/{name}"
    return ex


def build(root: Path | None = None, check: bool = False) -> list[str]:
    """Write exercises/ from solutions/ (or, with check, only report what differs)."""
    root = root or repo_root()
    src_dir, dst_dir = root / "solutions", root / "exercises"
    problems: list[str] = []
    expected: set[str] = set()
    for src in sorted(src_dir.glob("*.ipynb")):
        expected.add(src.name)
        text = nbformat.writes(make_exercise(read_notebook(src), src.name)) + "\n"
        dst = dst_dir / src.name
        if check:
            if not dst.exists():
                problems.append(f"exercises/{src.name} is missing")
            elif dst.read_text(encoding="utf-8") != text:
                problems.append(f"exercises/{src.name} differs from what solutions/{src.name} builds (hand-edited, or not rebuilt)")
        else:
            dst_dir.mkdir(exist_ok=True)
            if not dst.exists() or dst.read_text(encoding="utf-8") != text:
                dst.write_text(text, encoding="utf-8")
    for extra in sorted(p.name for p in dst_dir.glob("*.ipynb")) if dst_dir.is_dir() else []:
        if extra not in expected:
            problems.append(f"exercises/{extra} has no source in solutions/") if check else (dst_dir / extra).unlink()
    return problems


def execute(path: Path, timeout: int = 900, fast: bool = False) -> None:
    """Run a notebook top to bottom in a fresh kernel and store its outputs in place
    (how lesson notebooks get the outputs that nbval and the website show)."""
    import os

    from nbclient import NotebookClient

    nb = read_notebook(path)
    if fast:
        os.environ["LLMLAB_FAST"] = "1"
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    for cell in nb.cells:
        cell.get("metadata", {}).pop("execution", None)
    nbformat.write(nb, str(path))


def configure_course(p) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    e = sub.add_parser("execute", help="run notebooks and store their outputs (for authors)")
    e.add_argument("notebooks", nargs="+", type=Path)
    e.add_argument("--fast", action="store_true", help="set LLMLAB_FAST=1 (shrinks training cells)")
    e.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    b = sub.add_parser("build", help="regenerate exercises/ from solutions/")
    b.add_argument("--check", action="store_true", help="change nothing; exit 1 if exercises/ is out of date")
    b.add_argument("--root", type=Path, default=None, help="the course folder (default: found from the current one)")


def run_course(args) -> int:
    if args.action == "execute":
        for path in args.notebooks:
            print(f"executing {path} ...", flush=True)
            execute(path, args.timeout, args.fast)
        return 0
    problems = build(args.root, check=args.check)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        print("run `llmlab course build` to regenerate exercises/", file=sys.stderr)
        return 1
    print("exercises/ is up to date" if args.check else "exercises/ rebuilt from solutions/")
    return 0


def configure_exercises(p) -> None:
    pass


def run_exercises(args) -> int:
    from llmlab.checks import exercises

    rows = exercises()
    w = max(len(r["id"]) for r in rows)
    for r in rows:
        print(f"{r['id']:<{w}}  {r['points']} pt  {r['checks']} checks  {r['signature']}")
    print(f"{len(rows)} exercises, {sum(r['points'] for r in rows)} points")
    return 0
