"""LoRA on a real chat model: SmolLM2-135M-Instruct taught a one-word answer in a few dozen steps (lesson 14).

The task: read a review (the UCI sentences of llmlab.text.sentiment) and answer exactly "positive" or
"negative", then stop. Zero-shot, the 135M model often answers with something else (a sentence, a
label of its own); a few dozen steps of prompt-masked supervised fine-tuning (llmlab.train.sft) through
LoRA adapters fix the format and the judgement, while 99 % of the weights stay frozen.

    <|im_start|>system\\n{INSTRUCTION}<|im_end|>\\n<|im_start|>user\\n{review}<|im_end|>\\n<|im_start|>assistant\\n
    positive<|im_end|>                          <- the response: the label's first token, then the end of the turn

`score(model, tok, reviews)` measures three things with one forward pass per review (the prompt and
the gold label fed together, teacher-forced): **format**, the greedy first token is one of the two
labels; **accuracy**, the label with the larger logit is the right one (a forced choice, defined
even when the format is wrong); **stop**, after the label the greedy next token is <|im_end|>.
`merge_all(model)` folds every adapter into its Linear (llmlab.nn.lora.merge): the merged model is a
plain GPT again, as fast as the original, and computes what the adapted one did.
`train_adapter(model, tok, reviews, cfg)` adds the adapters and trains them with the course's Trainer and
the InstructionTuning objective; the adapters (not the model) are cached as a safetensors file, keyed by the
settings and the training sentences, so a second run loads them in a second.

Left out on purpose: multi-token labels (each label is one token in SmolLM2's vocabulary; `label_ids`
checks it), sampling-based evaluation, and adapters on the MLP or in the lower blocks (the attention's
c_attn and c_proj of the last ten blocks suffice here, and autograd's backward then stops at the lowest
adapter: a third of the cost of a backward through all 30 blocks).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from llmlab.cache import cache_dir, write_atomic
from llmlab.models.gpt import GPT, run_trunk
from llmlab.nn.lora import LoRALinear, apply_lora, load_lora_state_dict, lora_state_dict, merge
from llmlab.stats import wilson_interval
from llmlab.text.sentiment import Review
from llmlab.train.loop import TrainConfig, Trainer
from llmlab.train.lora_costs import save_adapter
from llmlab.train.sft import InstructionTuning, build_example, collate

INSTRUCTION = "Is the sentiment of this review positive or negative? Answer with one word."
LABELS = ("negative", "positive")  # label 0, label 1 (llmlab.text.sentiment's convention)
TARGETS = ("attn.c_attn", "attn.c_proj")


def prompt_ids(tok, text: str) -> list[int]:
    """The chat prompt of one review, up to and including "<|im_start|>assistant\\n", as ids."""
    return tok.encode(tok.chat_prompt([{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": text}]))


def label_ids(tok) -> tuple[int, int]:
    """The token id of each label (negative, positive); each must be one token, and the two different."""
    ids = [tok.encode(label) for label in LABELS]
    if any(len(i) != 1 for i in ids) or ids[0] == ids[1]:
        raise ValueError(f"tok: the labels {LABELS} encode to {ids}; expected one distinct token each")
    return ids[0][0], ids[1][0]


def sft_examples(tok, reviews: Sequence[Review]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(inputs, labels) per review: prompt + label + <|im_end|>, the loss on the label and the stop only."""
    labels = label_ids(tok)
    return [build_example(prompt_ids(tok, r.text), [labels[r.label]], tok.eos_id, mask_prompt=True) for r in reviews]


@torch.no_grad()
def score(model: GPT, tok, reviews: Sequence[Review], batch_size: int = 16) -> dict:
    """{"format", "accuracy", "stop"}: each (k, n, low, high) with the Wilson interval; see the module docstring."""
    neg, pos = label_ids(tok)
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    fmt = correct = stop = 0
    for start in range(0, len(reviews), batch_size):
        chunk = reviews[start : start + batch_size]
        prompts = [prompt_ids(tok, r.text) for r in chunk]
        seqs = [(torch.tensor(p + [(neg, pos)[r.label]]), torch.zeros(len(p) + 1, dtype=torch.long)) for p, r in zip(prompts, chunk)]
        x, _, _ = collate(seqs, pad_id=tok.eos_id)  # (b, T), right-padded: a causal model's real positions ignore the pads
        h = model.transformer.ln_f(run_trunk(model.transformer, model.config, x.to(dev)))  # (b, T, C)
        rows, at = torch.arange(len(chunk)), torch.tensor([len(p) - 1 for p in prompts])
        answer = model.lm_head(h[rows, at]).float().cpu()  # (b, V): what comes after "assistant\n" (the head on 2 positions, not T)
        after = model.lm_head(h[rows, at + 1]).float().cpu()  # (b, V): what comes after the gold label
        for b, r in enumerate(chunk):
            fmt += int(answer[b].argmax()) in (neg, pos)
            correct += int((answer[b, pos] > answer[b, neg]) == bool(r.label))
            stop += int(after[b].argmax()) == tok.eos_id
    model.train(was_training)
    n = len(reviews)
    return {name: (k, n, *wilson_interval(k, n)) for name, k in (("format", fmt), ("accuracy", correct), ("stop", stop))}


def merge_all(model: nn.Module) -> int:
    """Replace every LoRALinear of `model` by its merged nn.Linear (in place); -> how many were merged."""
    names = [name for name, m in model.named_modules() if isinstance(m, LoRALinear)]
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, merge(getattr(parent, child)))
    return len(names)


@dataclass
class ChatConfig:
    r: int = 8  # the adapters' rank
    alpha: float = 16.0  # their alpha (scale alpha / r)
    targets: tuple[str, ...] = TARGETS  # which Linears of a block get adapters
    top_blocks: int | None = 10  # adapters in the last this many blocks only (None: all): the backward stops below them
    steps: int = 16  # optimizer steps
    batch_size: int = 8  # examples per step
    lr: float = 2e-3  # AdamW's, constant (no warmup, no decay: a few steps)
    seed: int = 0  # the adapters' A and the batch order


def train_adapter(model: GPT, tok, reviews: Sequence[Review], cfg: ChatConfig, name: str = "smollm2-sentiment",
                  say: Callable[[str], None] = print) -> dict:
    """Add cfg's adapters to `model` (in place) and train them on `reviews`, or load them from the cache.
    -> {"trainable", "seconds", "history", "path", "cached"}; the model is left in eval mode."""
    examples = sft_examples(tok, reviews)
    digest = hashlib.sha256(json.dumps({"config": asdict(cfg), "instruction": INSTRUCTION, "labels": LABELS}, sort_keys=True, default=list).encode())
    for x, y in examples:
        digest.update(x.numpy().tobytes() + y.numpy().tobytes())
    torch.manual_seed(cfg.seed)
    L = model.config.n_layer
    blocks = range(L - min(cfg.top_blocks, L), L) if cfg.top_blocks else range(L)
    trainable = apply_lora(model, tuple(f"h.{i}.{t}" for i in blocks for t in cfg.targets), cfg.r, cfg.alpha)
    path = cache_dir() / "models" / f"{name}-lora-{digest.hexdigest()[:16]}.safetensors"
    meta = path.with_suffix(".json")
    if path.is_file() and meta.is_file():
        from safetensors.torch import load_file

        try:
            load_lora_state_dict(model, load_file(str(path)))
            info = json.loads(meta.read_text(encoding="utf-8"))
            say(f"loaded the adapters from the cache ({path.name}; trained in {info['seconds']:.0f} s)")
            return {**info, "trainable": trainable, "path": str(path), "cached": True}
        except (ValueError, KeyError, OSError):
            pass  # unreadable or another shape: train again
    tc = TrainConfig(max_steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, min_lr=cfg.lr, warmup_steps=0, weight_decay=0.0,
                     grad_clip=1.0, eval_interval=cfg.steps, eval_iters=1, log_interval=1, device=str(next(model.parameters()).device),
                     seed=cfg.seed, progress=False)
    objective = InstructionTuning(examples, examples[: cfg.batch_size], pad_id=tok.eos_id, seed=cfg.seed)
    t0 = time.perf_counter()
    trainer = Trainer(model, objective, tc)
    trainer.fit()
    info = {"seconds": time.perf_counter() - t0, "history": [{"step": h["step"], "train_loss": h["train_loss"]} for h in trainer.history]}
    save_adapter(lora_state_dict(model), path)
    write_atomic(meta, lambda p: Path(p).write_text(json.dumps(info), encoding="utf-8"))
    model.eval()
    return {**info, "trainable": trainable, "path": str(path), "cached": False}
