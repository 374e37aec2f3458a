"""`llmlab doctor`: is this machine ready for the course? Prints what it finds and exits
non-zero, naming the fix, when something the course needs is missing."""

from __future__ import annotations

import importlib
import platform
import sys

NEEDED = ["torch", "einops", "matplotlib", "ipywidgets", "jupyterlab", "ipykernel", "nbformat", "nbclient", "tqdm", "safetensors"]


def _version(name: str) -> str | None:
    try:
        mod = importlib.import_module(name)
    except Exception:
        return None
    return getattr(mod, "__version__", "installed")


def _works(fn) -> tuple[bool, str]:
    try:
        fn()
        return True, "yes"
    except Exception as e:  # noqa: BLE001 - we report whatever went wrong
        return False, f"no ({type(e).__name__}: {str(e).splitlines()[0][:80] if str(e) else ''})"


def bf16_finding(runs: bool, speed) -> str:
    """The doctor's bf16 line: whether autocast runs, and whether it is fast here (a `Bf16Speed`)."""
    if not runs:
        return "no - training uses fp32 (or fp16 with a scaler on older GPUs)"
    if speed.fast:
        return f"yes, {speed.describe()}"
    return f"yes, but {speed.describe()} - dtype='auto' trains in fp32 here; dtype='bf16' warns"


def report(check_compile: bool = True, bf16=None) -> tuple[list[tuple[str, str]], list[str]]:
    """(rows of (what, finding), problems). `bf16`: a `Bf16Speed` to report instead of measuring."""
    rows: list[tuple[str, str]] = [("python", f"{sys.version.split()[0]} ({platform.system()} {platform.machine()})")]
    problems: list[str] = []
    if sys.version_info < (3, 10):
        problems.append("Python 3.10 or newer is needed")
    for name in NEEDED:
        v = _version(name)
        rows.append((name, v or "MISSING"))
        if v is None and name == "torch":
            problems.append("torch is missing: run `make setup` (it installs the CPU build, torch==2.13.0), or "
                            "`pip install torch` with the index URL for your GPU (README, section GPUs)")
        elif v is None:
            problems.append(f"{name} is missing: run `make setup` (or `pip install -e \".[lab]\"`)")
    if _version("torch") is None:
        return rows, problems

    import torch

    from llmlab.cache import cache_dir
    from llmlab.device import bf16_speed, device_name, get_device, supports_bf16

    dev = get_device()
    rows.append(("device", f"{dev.type} ({device_name(dev)})"))
    rows.append(("cuda build", torch.version.cuda or "no (CPU build)"))
    runs = supports_bf16(dev)
    rows.append(("bf16 autocast", bf16_finding(runs, bf16 if bf16 is not None else bf16_speed(dev) if runs else None)))
    if check_compile:
        def compiled():
            f = torch.compile(lambda x: (x * 2).sin().sum())
            f(torch.randn(8, device=dev))

        ok, text = _works(compiled)
        rows.append(("torch.compile", text if ok else text + " - training falls back to eager mode"))
    rows.append(("cache folder", str(cache_dir())))
    return rows, problems


def configure_doctor(p) -> None:
    p.add_argument("--no-compile", action="store_true", help="skip the (slow) torch.compile check")


def run_doctor(args) -> int:
    rows, problems = report(check_compile=not args.no_compile)
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    if problems:
        print("\nProblems:", *[f"  - {p}" for p in problems], sep="\n", file=sys.stderr)
        return 1
    print("\nAll good: the course is ready to run here.")
    return 0
