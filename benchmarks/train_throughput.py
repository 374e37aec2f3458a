"""Training throughput (tokens/s) and model FLOPs utilisation (MFU), one feature at a time.

    .venv/bin/python benchmarks/train_throughput.py                 # all variants, nanoGPT's CPU shape
    .venv/bin/python benchmarks/train_throughput.py --steps 20 --variants eager-fp32,sdpa-bf16

Each variant runs in a fresh process (so torch.compile caches and peak memory do not leak
from one to the next): a GPT of nanoGPT's CPU configuration (4 layers, 4 heads, width 128,
context 64, batch 12, character vocabulary of 65) takes `--warmup` optimizer steps, then
`--steps` timed ones through `llmlab.train.optim.train_step` (AdamW, clipping); the script prints
the median time per step, tokens/s, MFU against this machine's measured matmul peak, and
the process's peak resident memory.

FLOPs per token follow Kaplan et al. 2020 / nanoGPT's `estimate_mfu`: 6 N (forward and
backward through N weights) + 12 L T C (attention scores and the weighted sum).
The peak is measured, not taken from a data sheet: the best over sizes 512-2048 of the median of
`--peak-reps` square matmuls, fp32 and under bf16 autocast. A bf16 run's MFU is taken against the
better of the two peaks (on a CPU that emulates bf16, fp32 is the real ceiling), and an MFU that
would exceed 100 % is shown as n/a: it means the peak was measured while the machine was busy.
Not a test: timings depend on the machine and on what else runs on it. Quote medians
from a quiet machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F

VARIANTS = {
    # name: (fast_attention, compile, dtype, grad_accum)
    "naive-fp32": (False, False, "fp32", 1),  # hand-written attention: scores, mask, softmax, weighted sum
    "sdpa-fp32": (True, False, "fp32", 1),  # F.scaled_dot_product_attention (fused kernel)
    "sdpa-bf16": (True, False, "bf16", 1),  # + bf16 autocast
    "compile-fp32": (True, True, "fp32", 1),  # + torch.compile (Inductor)
    "compile-bf16": (True, True, "bf16", 1),
    "sdpa-fp32-accum4": (True, False, "fp32", 4),  # the same 12 sequences per step as 4 micro-batches of 3
    "compile-bf16-accum4": (True, True, "bf16", 4),
}


def matmul_peak(dtype: str, sizes=(512, 1024, 2048), reps: int = 20, budget_s: float = 0.5) -> float:
    """This machine's matmul rate in GFLOP/s: the best, over `sizes`, of the median of `reps`
    `F.linear` calls of n x n x n (2 n^3 FLOPs), in fp32 or under bf16 autocast from fp32 inputs,
    the path training takes (casting to bf16 by hand can hit slower kernels than autocast does).
    Sizes stop growing once one call takes more than `budget_s` (emulated bf16: ~1 GFLOP/s)."""
    best = 0.0
    for n in sizes:
        a, w = torch.randn(n, n), torch.randn(n, n)
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bf16" else contextlib.nullcontext()
        with ctx:
            t = time.perf_counter()
            F.linear(a, w)  # warm-up, and a first estimate of the cost
            first = time.perf_counter() - t
            times = []
            for _ in range(reps if first < budget_s / 10 else 3):
                t = time.perf_counter()
                F.linear(a, w)
                times.append(time.perf_counter() - t)
        best = max(best, 2 * n**3 / statistics.median(times) / 1e9)
        if first > budget_s:
            break
    return best


def mfu(gflops: float, dtype: str, peaks: dict) -> float | None:
    """Achieved / peak. A bf16 run is measured against the better of the bf16 and fp32 peaks (where
    bf16 is emulated, fp32 is what the hardware can really do); None when the step beat the peak,
    which means the peak was mis-measured (a busy machine), never an MFU above 100 %."""
    peak = max(peaks["fp32"], peaks[dtype])
    return gflops / peak if gflops <= peak else None


def flops_per_token(model, n_layer: int, n_embd: int, T: int) -> float:
    n = model.num_parameters()
    pos = model.transformer.pos
    if hasattr(pos, "wpe"):
        n -= pos.wpe.weight.numel()  # a lookup, not a matmul
    return 6 * n + 12 * n_layer * n_embd * T


def run_variant(name: str, args_dict: dict, queue) -> None:
    from llmlab.models.gpt import GPT, GPTConfig
    from llmlab.train.optim import DTYPES, make_optimizer, train_step

    a = argparse.Namespace(**args_dict)
    fast, compile_, dtype, accum = VARIANTS[name]
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=65, block_size=a.block_size, n_layer=a.n_layer, n_head=a.n_head, n_embd=a.n_embd, dropout=0.0, bias=False, fast_attention=fast)
    model = GPT(cfg)
    opt = make_optimizer(model, 1e-3, 0.1, (0.9, 0.99))
    net = torch.compile(model) if compile_ else model
    g = torch.Generator().manual_seed(0)
    data = torch.randint(65, (100_000,), generator=g)
    from llmlab.text import get_batch

    def batches():
        x, y = get_batch(data, a.block_size, a.batch_size, g)  # (B, T)
        return list(zip(x.chunk(accum), y.chunk(accum)))

    t_first = time.perf_counter()
    for _ in range(a.warmup):
        train_step(net, opt, batches(), grad_clip=1.0, amp_dtype=DTYPES[dtype])
    warm_s = time.perf_counter() - t_first
    times = []
    for _ in range(a.steps):
        bs = batches()
        t = time.perf_counter()
        float(train_step(net, opt, bs, grad_clip=1.0, amp_dtype=DTYPES[dtype]))
        times.append(time.perf_counter() - t)
    step_s = statistics.median(times)
    tokens = a.batch_size * a.block_size
    queue.put(dict(variant=name, ms_per_step=1000 * step_s, tokens_per_s=tokens / step_s,
                   gflops=flops_per_token(model, a.n_layer, a.n_embd, a.block_size) * tokens / step_s / 1e9,
                   warmup_s=warm_s, peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {', '.join(VARIANTS)}")
    p.add_argument("--steps", type=int, default=50, help="timed optimizer steps per variant")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first (compilation happens here)")
    p.add_argument("--batch_size", type=int, default=12)
    p.add_argument("--block_size", type=int, default=64)
    p.add_argument("--n_layer", type=int, default=4)
    p.add_argument("--n_head", type=int, default=4)
    p.add_argument("--n_embd", type=int, default=128)
    p.add_argument("--peak-reps", type=int, default=20)
    p.add_argument("--json", help="also write the results to this file")
    a = p.parse_args(argv)
    names = a.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        p.error(f"--variants: unknown {unknown}; expected some of {list(VARIANTS)}")
    peaks = {d: matmul_peak(d, reps=a.peak_reps) for d in ("fp32", "bf16")}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; matmul peak (best of 512^3-2048^3, median of "
          f"{a.peak_reps}): fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 autocast {peaks['bf16']:.0f} GFLOP/s; MFU of a bf16 "
          f"run is against the better of the two")
    print(f"model: {a.n_layer} layers, {a.n_head} heads, width {a.n_embd}, context {a.block_size}, batch {a.batch_size}; "
          f"{a.steps} timed steps after {a.warmup} warm-up steps")
    ctx = mp.get_context("spawn")
    rows = []
    header = f"{'variant':<22}{'ms/step':>9}{'tokens/s':>10}{'GFLOP/s':>9}{'MFU':>7}{'peak RSS MB':>12}{'warm-up s':>10}"
    print(header)
    for name in names:
        q = ctx.Queue()
        proc = ctx.Process(target=run_variant, args=(name, vars(a), q))
        proc.start()
        proc.join()
        if proc.exitcode != 0:
            print(f"{name:<22} failed (exit code {proc.exitcode})")
            continue
        r = q.get()
        r["mfu"] = mfu(r["gflops"], VARIANTS[name][2], peaks)
        rows.append(r)
        shown = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a*"
        print(f"{name:<22}{r['ms_per_step']:>9.1f}{r['tokens_per_s']:>10,.0f}{r['gflops']:>9.1f}{shown:>7}{r['peak_rss_mb']:>12.0f}{r['warmup_s']:>10.1f}",
              flush=True)
    if any(r["mfu"] is None for r in rows):
        print("* the step ran faster than the measured matmul peak: the peak was measured while the machine was busy; rerun")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"peaks_gflops": peaks, "args": vars(a), "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
