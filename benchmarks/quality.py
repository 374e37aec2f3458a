"""Quality per second: nanoGPT's published CPU configuration against the course's laptop config,
character-level Tiny Shakespeare (and the offline python-docs corpus).

    LLMLAB_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/quality.py            # everything
    LLMLAB_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/quality.py --runs nanogpt,nanogpt-fast
    LLMLAB_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/quality.py --steps 200 # a quick look

Runs (each a fresh `llmlab.train.train`, seed 1337):
* `nanogpt`: nanoGPT's README CPU run — 4 layers, 4 heads, width 128, context 64, batch 12, 2,000
  iterations, lr 1e-3 (warmup 100, cosine to 1e-4 at 2,000), AdamW betas (0.9, 0.99), weight decay
  0.1, clip 1.0, no dropout, no biases, learned positions — here in fp32, eager. nanoGPT's README:
  validation loss 1.88 in ~3 minutes on a CPU; ~59 ms/iteration is our measurement of nanoGPT's own
  train.py on this course's 2-core development machine, not a published figure.
* `nanogpt-fast`: the identical architecture, batch and schedule with the speed features that
  hold up on this CPU (`--fast-dtype`, default bf16 autocast; `--fast-compile` adds torch.compile).
* `laptop`: configs/laptop.toml (the config the course ships for laptops), on Tiny Shakespeare.
* `python-docs`: the laptop config on the offline corpus.
* `candidate-a`, `candidate-c`: the settings recommended for the laptop config in benchmarks/README.md
  (RoPE, lr 2e-3 -> 2e-4, bf16, 1,800 steps; batch 12 and 32).

Reported: median tokens/s over the run's log intervals (evaluation excluded), the wall time of
the training call, and the validation loss: the mean over 200 fixed batches of the validation
split (the last 10 % of the text), at the run's own context length, as nanoGPT estimates it.
Not a test. Time only on a quiet machine, and quote medians of several runs (`--repeat`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
NANOGPT_MODEL = dict(block_size=64, n_layer=4, n_head=4, n_embd=128, dropout=0.0, bias=False)
NANOGPT_TRAIN = dict(max_steps=2000, batch_size=12, block_size=64, lr=1e-3, min_lr=1e-4, warmup_steps=100,
                     beta1=0.9, beta2=0.99, weight_decay=0.1, grad_clip=1.0, dtype="fp32", compile=False)


def corpus_ids(name: str):
    from llmlab.text import load_corpus, train_val_split
    from llmlab.text.tokenizers import CharTokenizer

    text = load_corpus(name)
    tok = CharTokenizer.train(text, byte_fallback=False)
    ids = torch.tensor(tok.encode(text), dtype=torch.long)
    return tok, *train_val_split(ids, 0.1)


@torch.no_grad()
def val_loss(model, val_ids, block_size: int, batches: int = 200, batch_size: int = 12) -> float:
    from llmlab.text import get_batch

    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(0)
    losses = [model(*(t.to(device) for t in get_batch(val_ids, block_size, batch_size, gen)))[1].item() for _ in range(batches)]
    return statistics.mean(losses)


def one_run(name: str, model_cfg: dict, train_cfg: dict, corpus: str, steps: int | None) -> dict:
    from llmlab.models.gpt import GPTConfig
    from llmlab.train import TrainConfig, train

    tok, tr, va = corpus_ids(corpus)
    tc_kw = {"max_steps": 1000, **train_cfg}
    if steps:  # a shortened run keeps the schedule's shape
        scale = steps / tc_kw["max_steps"]
        tc_kw["warmup_steps"] = max(1, int((tc_kw.get("warmup_steps") or tc_kw["max_steps"] // 20) * scale))
        tc_kw["max_steps"] = steps
    tc_kw.update(eval_interval=tc_kw["max_steps"], eval_iters=1, log_interval=10, progress=False, out_dir=None, device="cpu", seed=1337)
    tc = TrainConfig(**tc_kw)
    cfg = GPTConfig.from_dict({**model_cfg, "vocab_size": tok.vocab_size})
    t0 = time.perf_counter()
    result = train(cfg, tc, tr, va)
    wall = time.perf_counter() - t0
    block = tc.block_size or cfg.block_size
    tps = statistics.median(r["tokens_per_s"] for r in result.history)
    return dict(run=name, corpus=corpus, steps=tc.max_steps, batch=tc.batch_size * tc.grad_accum, block=block, dtype=tc.dtype,
                compile=tc.compile, tokens_per_s=tps, ms_per_step=1000 * tc.batch_size * tc.grad_accum * block / tps,
                wall_s=wall, val_loss=val_loss(result.model, va, block))


def laptop_config(path: Path) -> tuple[dict, dict]:
    """The [model] and [train] sections of a config file (only the training settings that shape
    the optimisation: logging, evaluation and output settings are the benchmark's own)."""
    from llmlab.config import load_toml

    raw = load_toml(path)
    keep = set(NANOGPT_TRAIN) | {"grad_accum", "warmup_steps"}
    return dict(raw.get("model", {})), {k: v for k, v in raw.get("train", {}).items() if k in keep}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", default="nanogpt,nanogpt-fast,laptop,python-docs")
    p.add_argument("--config", default=str(ROOT / "configs" / "laptop.toml"))
    p.add_argument("--steps", type=int, default=None, help="shorten every run to this many steps (schedule scaled)")
    p.add_argument("--repeat", type=int, default=1, help="runs of each; medians are reported")
    p.add_argument("--fast-dtype", default="bf16", choices=["fp32", "bf16"])
    p.add_argument("--fast-compile", action="store_true")
    a = p.parse_args(argv)
    if "LLMLAB_DATA_DIR" not in os.environ and (ROOT.parent / "shared" / "data").is_dir():
        os.environ["LLMLAB_DATA_DIR"] = str(ROOT.parent / "shared" / "data")
    plans = {
        "nanogpt": (NANOGPT_MODEL, NANOGPT_TRAIN, "tinyshakespeare"),
        "nanogpt-fast": (NANOGPT_MODEL, {**NANOGPT_TRAIN, "dtype": a.fast_dtype, "compile": a.fast_compile}, "tinyshakespeare"),
    }
    # the settings recommended for configs/laptop.toml (see README): RoPE, lr 2e-3, bf16, batch 12 or 32
    rope = {**NANOGPT_MODEL, "pos_encoding": "rope"}
    tuned = {**NANOGPT_TRAIN, "max_steps": 1800, "lr": 2e-3, "min_lr": 2e-4, "dtype": a.fast_dtype}
    plans["candidate-a"] = (rope, tuned, "tinyshakespeare")
    plans["candidate-c"] = (rope, {**tuned, "batch_size": 32}, "tinyshakespeare")
    if any(r in a.runs for r in ("laptop", "python-docs")):
        if not Path(a.config).is_file():
            p.error(f"--config={a.config}: no such file (the laptop runs need it)")
        m, t = laptop_config(Path(a.config))
        plans["laptop"] = (m, t, "tinyshakespeare")
        plans["python-docs"] = (m, t, "python-docs")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'run':<14}{'corpus':<17}{'steps':>6}{'batch':>6}{'ctx':>5}{'dtype':>6}{'compile':>8}{'tok/s':>9}{'ms/step':>9}{'wall s':>8}{'val loss':>9}")
    for name in a.runs.split(","):
        if name not in plans:
            p.error(f"--runs: unknown run {name!r}; expected some of {list(plans)}")
        rows = [one_run(name, *plans[name], a.steps) for _ in range(a.repeat)]
        med = {k: statistics.median(r[k] for r in rows) for k in ("tokens_per_s", "ms_per_step", "wall_s", "val_loss")}
        r = {**rows[0], **med}
        print(f"{r['run']:<14}{r['corpus']:<17}{r['steps']:>6}{r['batch']:>6}{r['block']:>5}{r['dtype']:>6}{str(r['compile']):>8}"
              f"{r['tokens_per_s']:>9,.0f}{r['ms_per_step']:>9.1f}{r['wall_s']:>8.1f}{r['val_loss']:>9.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
