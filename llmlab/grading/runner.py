"""The student side of grading: run one notebook's code, then the graded functions on the
grader's inputs, and write their outputs as plain data. Nothing here decides a score.

    python -I llmlab/grading/runner.py IO_DIR

IO_DIR holds request.json (code cells, exercise ids, what to skip) and inputs.{json,
safetensors} (the probe arguments). This script appends progress lines to IO_DIR/status
("cell 3", "probe attention.softmax 2", "done") so the grader can tell which cell hung or
killed the process, and writes IO_DIR/out-K.{json,safetensors} per exercise and
IO_DIR/cells.jsonl (why a cell was skipped or failed).

Everything in this process is under the student's control once their first cell runs, so
this file is convenience, not security: it may be bypassed, and the grader assumes it is.
Run by path (not `-m`), so the grader's package is never imported here.
"""

from __future__ import annotations

import builtins
import difflib
import io
import json
import linecache
import os
import sys
import traceback
import types

IO = sys.argv[1]
MAIN_PID = os.getpid()
_status = open(os.path.join(IO, "status"), "a", buffering=1)


def status(line: str) -> None:
    if os.getpid() != MAIN_PID:  # a process the notebook forked got here: it must not speak for the runner
        os._exit(0)
    _status.write(line + "\n")
    _status.flush()


def clip(text: str, n: int = 400) -> str:
    text = "".join(c for c in str(text) if c.isprintable() or c in "\n\t")
    return text if len(text) <= n else text[: n - 1] + "…"


class _Sink(io.TextIOBase):
    """Where the notebook's prints go: the first 20 000 characters are kept, the rest dropped
    (a flood of output costs nothing but the time it takes to produce)."""

    def __init__(self, limit: int = 20_000):
        self.parts, self.size, self.limit = [], 0, limit

    def writable(self) -> bool:
        return True

    def write(self, s) -> int:
        s = str(s)
        if self.size < self.limit:
            self.parts.append(s[: self.limit - self.size])
        self.size += len(s)
        return len(s)


def _block_network() -> None:
    """A second line behind the sandbox's network namespace: plain `socket` use fails
    with a clear message. (ctypes can get around this; the namespace cannot be.)"""
    import socket

    def refuse(*args, **kwargs):
        raise PermissionError("network access is disabled while grading")

    class NoSocket(socket.socket):
        def __init__(self, *args, **kwargs):
            refuse()

    socket.socket = NoSocket
    socket.create_connection = refuse
    socket.socketpair = refuse
    socket.getaddrinfo = refuse


def _transform(source: str) -> tuple[str | None, str | None]:
    """IPython syntax is not Python: a cell magic (%%) skips the cell; a line magic or
    shell escape (% or !) becomes `pass` (it never runs a shell). A package install (the
    lessons' Colab set-up cell: `%pip install ...`) is dropped without a note: it changes nothing
    the grader needs, and every student's notebook has one."""
    if source.lstrip().startswith("%%"):
        return None, "cell magic (%%) cells are not run when grading"
    lines, dropped = [], False
    for line in source.splitlines():
        s = line.lstrip()
        if s.startswith(("%", "!")):
            lines.append(line[: len(line) - len(s)] + "pass  # removed when grading: " + s[:60].replace("\\", "/"))
            dropped = dropped or not s.startswith(("%pip ", "!pip ", "%conda "))
        else:
            lines.append(line)
    return "\n".join(lines), ("magics and shell commands (%, !) were not run" if dropped else None)


def _where(e: BaseException, prefix: str = "<cell") -> str:
    frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename.startswith(prefix)]
    return f" ({frames[-1].filename[1:-1]}, line {frames[-1].lineno})" if frames else ""


def run_cells(cells: list[dict], skip: dict, ns: dict) -> None:
    log = open(os.path.join(IO, "cells.jsonl"), "a", buffering=1)
    for cell in cells:
        i = cell["index"]
        if str(i) in skip:
            continue
        status(f"cell {i}")
        source, note = _transform(cell["source"])
        entry = {"index": i}
        if source is None:
            entry["skipped"] = note
        else:
            # the cell's lines, for a crash report that quotes the line (as in the notebook)
            linecache.cache[f"<cell {i}>"] = (len(source), None, source.splitlines(True), f"<cell {i}>")
            try:
                code = compile(source, f"<cell {i}>", "exec")
            except (SyntaxError, ValueError) as e:
                entry["error"] = clip(f"{type(e).__name__}: {e}")
                code = None
            if code is not None:
                try:
                    exec(code, ns)
                except BaseException as e:  # SystemExit and KeyboardInterrupt too: the notebook carries on
                    entry["error"] = clip(f"{type(e).__name__}: {e}{_where(e)}")
            if note:
                entry["note"] = note
        if os.getpid() != MAIN_PID:
            os._exit(0)
        if len(entry) > 1:
            log.write(json.dumps(entry) + "\n")
    log.close()


def reference_flags(obj, name: str) -> list[str]:
    """Is the graded object llmlab's own implementation, or a thin wrapper around it?
    (The grader also reads the notebook's source for this; this catches aliases.)"""
    flags = []
    mod = getattr(obj, "__module__", None) or ""
    if mod.startswith("llmlab"):
        flags.append(f"`{name}` is {mod}.{getattr(obj, '__qualname__', name)} from the llmlab package, not code written in the notebook")
    if isinstance(obj, type):
        for base in obj.__mro__[1:]:
            if (base.__module__ or "").startswith("llmlab"):
                flags.append(f"`{name}` subclasses llmlab's {base.__module__}.{base.__qualname__}")
        fns = []
        for v in vars(obj).values():
            v = getattr(v, "__func__", v)
            if isinstance(v, property):
                v = v.fget
            if isinstance(v, types.FunctionType):
                fns.append(v)
    else:
        fns = [obj] if isinstance(obj, types.FunctionType) else []
    for fn in fns:
        seen = {id(c) for c in (fn.__closure__ or ())}
        values = [c.cell_contents for c in (fn.__closure__ or ()) if _has_contents(c)]
        codes, names = [fn.__code__], set()
        while codes:
            c = codes.pop()
            names.update(c.co_names)
            codes.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
        values += [fn.__globals__[n] for n in names if n in fn.__globals__]
        for v in values:
            vmod = getattr(v, "__module__", None) or ""
            if vmod.startswith("llmlab") and getattr(v, "__name__", None) == name and id(v) not in seen:
                flags.append(f"`{name}` calls llmlab's own {vmod}.{name}")
    return sorted(set(flags))


def _has_contents(cell) -> bool:
    try:
        cell.cell_contents
        return True
    except ValueError:
        return False


def _load_serialize():
    """serialize.py sits next to this file; load it by path so llmlab.grading (the grader)
    is not imported into the student's process."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_llmlab_serialize", os.path.join(os.path.dirname(os.path.abspath(__file__)), "serialize.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    status("start")
    with open(os.path.join(IO, "request.json"), encoding="utf-8") as f:
        request = json.load(f)
    import torch

    torch.set_num_threads(int(request.get("threads", 1)))
    import llmlab.checks
    import llmlab.checks.core as core

    ser = _load_serialize()
    inputs = ser.read(__import__("pathlib").Path(IO) / "inputs")  # read before any student code runs
    llmlab.checks.load_all()
    # the notebook's own check() calls would only repeat the grading, slower: make them no-ops
    quiet = lambda *args, **kwargs: None  # noqa: E731
    import llmlab.checks.feedback as feedback

    llmlab.checks.check = feedback.check = quiet
    _block_network()

    sink = _Sink()
    real_stdout = sys.stdout
    sys.stdout = sys.stderr = sink
    builtins.display = lambda *a, **k: None  # IPython's display(), absent in plain Python
    ns = {"__name__": "__main__", "__builtins__": builtins}
    run_cells(request["cells"], set(map(str, request.get("skip_cells", []))), ns)
    status("cells done")

    for k, ex_req in enumerate(request["exercises"]):
        ex_id, name = ex_req["id"], ex_req["name"]
        ex = core.REGISTRY[ex_id]
        skip_probes = set(ex_req.get("skip_probes", []))
        result: dict = {"id": ex_id, "flags": [], "probes": []}
        obj = ns.get(name)
        if obj is None:
            defined = [n for n, v in ns.items() if not n.startswith("_") and callable(v) and not isinstance(v, types.ModuleType)]
            result["missing"] = difflib.get_close_matches(name, defined, n=3, cutoff=0.5)
        elif not callable(obj):
            result["not_callable"] = type(obj).__name__
        else:
            try:
                result["flags"] = reference_flags(obj, name)
            except Exception:
                pass
            for i, probe in enumerate(ex.probes):
                if i in skip_probes:
                    result["probes"].append({"error": "skipped"})
                    continue
                status(f"probe {ex_id} {i}")
                result["probes"].append(_run_probe(ser, core, probe, obj, inputs[ex_id][i]))
        status(f"write {ex_id}")
        try:
            ser.write(__import__("pathlib").Path(IO) / f"out-{k}", result)
        except Exception as e:
            ser.write(__import__("pathlib").Path(IO) / f"out-{k}", {"id": ex_id, "flags": [], "probes": [], "broken": clip(str(e))})
    sys.stdout = real_stdout
    status("done")
    _status.close()
    os._exit(0)  # no atexit handlers or finalizers of the notebook's objects


def _run_probe(ser, core, probe, obj, args) -> dict:
    try:
        got = probe.run(obj, *core.clone_args(args))
    except NotImplementedError:
        return {"stub": True}
    except core.CheckFailed as e:  # the probe refused the code (a missing submodule, a wrong shape)
        return {"error": clip(e.message)}
    except BaseException as e:  # noqa: BLE001 (SystemExit, RecursionError, MemoryError ...)
        return {"crash": core.Crash.from_exception(e).to_dict()}  # worded by the grader, as check() words it
    try:
        ser.encode(got)  # only plain data goes back; anything else fails this case
    except ser.SerializationError as e:
        return {"error": clip(f"returned a value that is not plain data: {e}")}
    except BaseException as e:  # noqa: BLE001 (an object whose attributes raise)
        return {"error": clip(f"returned a value that could not be read: {type(e).__name__}")}
    return {"value": got}


if __name__ == "__main__":
    main()
