"""Generation speed (tokens/s) with and without the KV cache, at 64, 256 and 512 new tokens.

    .venv/bin/python benchmarks/generation.py                          # the laptop model (configs/laptop.toml)
    .venv/bin/python benchmarks/generation.py --block_size 1024 --reps 5
    .venv/bin/python benchmarks/generation.py --new 64,128 --reps 1    # a quick look

The model has the laptop config's architecture with random weights (speed does not depend
on what the weights are) and the character vocabulary of Tiny Shakespeare (65). Each row
generates greedily from a one-token prompt, `--reps` times with and without the cache, and
prints the medians; it also checks that both produced the same tokens.

Past `block_size` the context window slides, every position shifts, and exact generation
must recompute the window: `llmlab.generate.sampling.generate` drops the cache there. So the cache's
gain at n new tokens depends on how many of them fit in the window; `--block_size` sets the
model's window (with RoPE or ALiBi the same trained weights work with a longer one).
Not a test: timings depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def model_config(config: str | None, block_size: int | None):
    from llmlab.models.gpt import GPTConfig

    settings: dict = {}
    if config and Path(config).is_file():
        from llmlab.config import load_toml

        settings = dict(load_toml(config).get("model", {}))
    settings.update(vocab_size=65, dropout=0.0)
    if block_size:
        settings["block_size"] = block_size
    return GPTConfig.from_dict(settings)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "laptop.toml"), help="TOML whose [model] section is used (default: the laptop config)")
    p.add_argument("--block_size", type=int, default=None, help="override the model's block_size")
    p.add_argument("--new", default="64,256,512", help="numbers of new tokens, comma-separated")
    p.add_argument("--reps", type=int, default=3, help="runs per setting; the median is reported")
    a = p.parse_args(argv)
    from llmlab.generate.sampling import generate
    from llmlab.models.gpt import GPT

    cfg = model_config(a.config, a.block_size)
    torch.manual_seed(0)
    model = GPT(cfg).eval()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; model: {cfg.n_layer} layers, {cfg.n_head} heads, "
          f"width {cfg.n_embd}, block_size {cfg.block_size}, {cfg.pos_encoding} positions, {model.num_parameters():,} parameters")
    prompt = torch.zeros(1, 1, dtype=torch.long)
    generate(model, prompt, 8, temperature=0)  # warm-up
    print(f"{'new tokens':>10}{'no cache tok/s':>16}{'cache tok/s':>13}{'speed-up':>10}  identical  note")
    for n in (int(v) for v in a.new.split(",")):
        runs = {}
        for use_cache in (False, True):
            times, out = [], None
            for _ in range(a.reps):
                t0 = time.perf_counter()
                out = generate(model, prompt, n, temperature=0, use_cache=use_cache)
                times.append(time.perf_counter() - t0)
            runs[use_cache] = (n / statistics.median(times), out)
        (slow, o1), (fast, o2) = runs[False], runs[True]
        cached = min(n, cfg.block_size - 1)
        note = "" if n + 1 <= cfg.block_size else f"cache used for the first {cached} tokens, then the window slides"
        print(f"{n:>10}{slow:>16,.0f}{fast:>13,.0f}{fast / slow:>9.1f}x  {str(torch.equal(o1, o2)):>9}  {note}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
