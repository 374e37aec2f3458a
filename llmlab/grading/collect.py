"""Collecting a class's submissions (files, folders, an LMS zip) and reading their code cells.
Nothing here runs student code: it only finds, copies and parses files, with size limits."""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

MAX_NOTEBOOK_BYTES = 20 << 20  # a lesson notebook with plots is < 1 MB
MAX_ZIP_BYTES = 500 << 20  # total uncompressed size of an LMS export
NOTEBOOK_SUFFIXES = (".ipynb", ".py")


# ----------------------------------------------------------------------------- collecting submissions
@dataclass
class Submission:
    name: str
    source: str
    path: Path | None  # the notebook (or .py) to grade; None with `problem` set
    problem: str | None = None


def _student_name(raw: str) -> str:
    stem, dot, suffix = raw.rpartition(".")
    if not dot or not suffix.isalnum() or len(suffix) > 6:  # "alice.ipynb" -> "alice", "J. Smith_123" stays
        stem = raw
    stem = "".join(c if c.isalnum() or c in "-_. " else "_" for c in stem).strip(" ._")
    return (stem or "unnamed")[:80]


def _pick_notebook(files: list[Path], assignment: str) -> tuple[Path | None, str | None]:
    notebooks = sorted(f for f in files if f.suffix.lower() == ".ipynb" and not f.name.startswith("."))
    if not notebooks:
        scripts = sorted(f for f in files if f.suffix.lower() == ".py")
        if len(scripts) == 1:
            return scripts[0], None
        names = ", ".join(sorted(f.name for f in files)[:5]) or "nothing"
        return None, f"no notebook (.ipynb) found in the submission (it holds: {names})"
    for nb in notebooks:
        if nb.stem == assignment:
            return nb, None
    if len(notebooks) > 1:
        return notebooks[0], f"several notebooks submitted; graded {notebooks[0].name} (others: {', '.join(n.name for n in notebooks[1:4])})"
    return notebooks[0], None


def collect(paths: list[str | Path], assignment: str, staging: Path) -> list[Submission]:
    """Files, folders of files or of per-student folders, and LMS zip exports -> one
    Submission per student, sorted by name (duplicates get -2, -3 ...)."""
    subs: list[Submission] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise FileNotFoundError(f"submission path {str(p)!r} does not exist")
        if p.is_file() and p.suffix.lower() == ".zip":
            subs.extend(_from_zip(p, assignment, staging))
        elif p.is_file():
            subs.append(_from_file(p, str(p)))
        else:
            for child in sorted(p.iterdir()):
                if child.name.startswith("."):
                    continue
                if child.is_dir():
                    files = [f for f in child.rglob("*") if f.is_file()]
                    nb, problem = _pick_notebook(files, assignment)
                    sub = Submission(_student_name(child.name), str(child), nb, problem if nb is None else None)
                    if nb is not None and problem:
                        sub.problem = None
                        sub.source += f" ({problem})"
                    subs.append(sub)
                elif child.suffix.lower() == ".zip":
                    subs.extend(_from_zip(child, assignment, staging))
                else:
                    subs.append(_from_file(child, str(child)))
    seen: dict[str, int] = {}
    for s in sorted(subs, key=lambda s: (s.name.lower(), s.source)):
        n = seen.get(s.name.lower(), 0) + 1
        seen[s.name.lower()] = n
        if n > 1:
            s.name = f"{s.name}-{n}"
    return sorted(subs, key=lambda s: s.name.lower())


def _from_file(p: Path, source: str) -> Submission:
    name = _student_name(p.name)
    if p.suffix.lower() not in NOTEBOOK_SUFFIXES:
        return Submission(name, source, None, f"not a Jupyter notebook: {p.name} (expected a .ipynb file)")
    return Submission(name, source, p)


def _from_zip(z: Path, assignment: str, staging: Path) -> list[Submission]:
    """A zip as an LMS exports it: one file per student at the top level, or one folder
    per student. Members are read into a staging folder under sanitised names (no path
    from the zip is ever used as a path on disk) and the total size is bounded."""
    try:
        zf = zipfile.ZipFile(z)
    except zipfile.BadZipFile as e:
        return [Submission(_student_name(z.name), str(z), None, f"not a readable zip file: {e}")]
    groups: dict[str, list[zipfile.ZipInfo]] = {}
    total = 0
    with zf:
        for info in zf.infolist():
            parts = [p for p in info.filename.replace("\\", "/").split("/") if p not in ("", ".", "..")]
            if info.is_dir() or not parts or parts[0] == "__MACOSX" or parts[-1].startswith("."):
                continue
            total += info.file_size
            if total > MAX_ZIP_BYTES:
                raise ValueError(f"zip {str(z)!r} expands to more than {MAX_ZIP_BYTES >> 20} MB; unpack it and pass the folder")
            key = parts[0] if len(parts) > 1 else info.filename
            groups.setdefault(key, []).append(info)
        base = Path(tempfile.mkdtemp(prefix="zip-", dir=staging))
        out = []
        for k, (key, infos) in enumerate(sorted(groups.items())):
            folder = base / f"s{k}"
            folder.mkdir()
            files = []
            for j, info in enumerate(infos):
                suffix = Path(info.filename).suffix.lower()[:8]
                (folder / str(j)).mkdir()
                dst = folder / str(j) / (_student_name(Path(info.filename).stem) + suffix)
                with zf.open(info) as src, open(dst, "wb") as f:
                    shutil.copyfileobj(src, f, length=1 << 20)
                files.append(dst)
            name = _student_name(Path(key).name)
            source = f"{z}:{key}"
            if len(infos) == 1 and "/" not in infos[0].filename.strip("/"):
                out.append(_from_file(files[0], source) if Path(key).suffix.lower() in NOTEBOOK_SUFFIXES
                           else Submission(name, source, None, f"not a Jupyter notebook: {key} (expected a .ipynb file)"))
                out[-1].name = name
            else:
                nb, problem = _pick_notebook(files, assignment)
                out.append(Submission(name, source, nb, problem if nb is None else None))
    return out


# ----------------------------------------------------------------------------- reading a notebook
def read_code_cells(path: Path) -> list[str]:
    """The code cells of a notebook (or a .py file as one cell). Raises ValueError with a
    reason a student can act on for anything that is not a readable notebook."""
    size = path.stat().st_size
    if size > MAX_NOTEBOOK_BYTES:
        raise ValueError(f"the file is {size >> 20} MB, more than the {MAX_NOTEBOOK_BYTES >> 20} MB a notebook may be (clear large outputs)")
    data = path.read_bytes()
    if path.suffix.lower() == ".py":
        return [data.decode("utf-8", errors="replace")]
    if not data.strip():
        raise ValueError("the notebook file is empty (0 bytes)")
    try:
        nb = json.loads(data.decode("utf-8", errors="replace"))
    except json.JSONDecodeError as e:
        raise ValueError(f"the notebook is not valid JSON (truncated or damaged? {e.msg} at line {e.lineno})") from None
    cells = nb.get("cells") if isinstance(nb, dict) else None
    if cells is None and isinstance(nb, dict) and isinstance(nb.get("worksheets"), list) and nb["worksheets"]:
        cells = [dict(c, source=c.get("input", "")) for c in nb["worksheets"][0].get("cells", [])]  # nbformat 3
    if not isinstance(cells, list):
        raise ValueError("the file is JSON but not a Jupyter notebook (no list of cells)")
    code = []
    for c in cells:
        if isinstance(c, dict) and c.get("cell_type") == "code":
            src = c.get("source", "")
            if isinstance(src, list):
                src = "".join(s for s in src if isinstance(s, str))
            if isinstance(src, str):
                code.append(src)
    if not any(s.strip() for s in code):
        raise ValueError("the notebook has no code")
    return code
