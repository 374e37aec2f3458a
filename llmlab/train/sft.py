"""Supervised fine-tuning on (prompt, response) pairs: instruction tuning (lesson 13).

A pretrained LM continues text; an assistant answers. The difference is taught with examples laid
out as one sequence, prompt then response then an end-of-sequence token, trained with the same
next-token loss but only on the response (Ouyang et al. 2022; Raschka ch. 7):

    seq    = prompt + response + [eos]                 e.g. [p0 p1 p2 | r0 r1 | eos]
    inputs = seq[:-1]                                   [p0 p1 p2 r0 r1]
    labels = seq[1:], the first len(prompt) - 1 masked  [-100 -100 r0 r1 eos]

The label under p2 is r0, so the first response token is still learned; the EOS label teaches the
model to stop. `build_example` makes one, `collate` pads a batch on the right (inputs with pad_id,
labels with -100, so padding is never learned) and returns is_token.

`InstructionTuning` is the objective for the Trainer: the loss is the mean over *every response token
of the optimizer step*, not of each micro-batch. Each batch carries the normaliser (the step's label
count across micro-batches and ranks, divided by n_micro x world_size), so n micro-batches, or two
processes, take exactly the step one batch would (tests/test_sft.py proves it in float64).

Left out on purpose: packing several examples in one row, multi-turn conversations with a loss on
every assistant turn, and the chat template (lesson 13 builds one from the course tokenizer's special
tokens).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from llmlab.models.gpt import GPT
from llmlab.train.objectives import Batch, Objective, rank_share

IGNORE = -100  # F.cross_entropy's ignore_index: the label of positions that are not learned


def build_example(prompt_ids: list[int], response_ids: list[int], eos_id: int, mask_prompt: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs LongTensor[L], labels LongTensor[L]), L = len(prompt) + len(response); see the module docstring."""
    if len(prompt_ids) == 0:
        raise ValueError("prompt_ids: expected at least one token (the model needs something to read)")
    seq = torch.tensor(list(prompt_ids) + list(response_ids) + [eos_id], dtype=torch.long)  # (L + 1,)
    inputs, labels = seq[:-1].clone(), seq[1:].clone()  # (L,), (L,)
    if mask_prompt:
        labels[: len(prompt_ids) - 1] = IGNORE  # predicting the prompt's own tokens is not the task
    return inputs, labels


def collate(examples: Sequence[tuple[torch.Tensor, torch.Tensor]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded (inputs [B, T] with pad_id, labels [B, T] with -100, is_token BoolTensor[B, T])."""
    if len(examples) == 0:
        raise ValueError("examples: expected at least one (inputs, labels) pair")
    T = max(len(x) for x, _ in examples)
    B = len(examples)
    inputs = torch.full((B, T), pad_id, dtype=torch.long)
    labels = torch.full((B, T), IGNORE, dtype=torch.long)
    is_token = torch.zeros(B, T, dtype=torch.bool)
    for i, (x, y) in enumerate(examples):
        if len(x) != len(y):
            raise ValueError(f"examples[{i}]: inputs of {len(x)} tokens but labels of {len(y)}; expected the same length")
        inputs[i, : len(x)], labels[i, : len(y)], is_token[i, : len(x)] = x, y, True
    return inputs, labels, is_token


def _loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy over the labelled positions: logits (b, T, V), labels (b, T). In at least
    float32 (a softmax in bf16's 8 mantissa bits is coarse), float64 kept for the tests."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=IGNORE, reduction="sum")


class InstructionTuning(Objective):
    """Prompt-masked next-token loss on (inputs, labels) examples (from `build_example`), for a GPT.
    A batch is (inputs [b, T], labels [b, T], normaliser [] float); see the module docstring."""

    def __init__(self, train_examples: Sequence, val_examples: Sequence, pad_id: int, seed: int = 1337):
        super().__init__(seed)
        if not isinstance(pad_id, int) or isinstance(pad_id, bool) or pad_id < 0:
            raise ValueError(f"pad_id={pad_id!r}: expected a token id (an integer >= 0)")
        for name, ex in (("train_examples", train_examples), ("val_examples", val_examples)):
            if len(ex) == 0 or not all((y != IGNORE).any() for _, y in ex):
                raise ValueError(f"{name}: expected a non-empty list of (inputs, labels) with at least one label each")
        self.train, self.val, self.pad_id = list(train_examples), list(val_examples), pad_id

    def bind(self, model: nn.Module) -> None:
        super().bind(model)
        if not isinstance(model, GPT):
            raise ValueError(f"model: InstructionTuning expected an llmlab.models.gpt.GPT, got {type(model).__name__}")
        cfg = model.config
        for name, ex in (("train_examples", self.train), ("val_examples", self.val)):
            longest = max(len(x) for x, _ in ex)
            if longest > cfg.block_size:
                raise ValueError(f"{name}: an example of {longest} tokens; expected at most the model's block_size={cfg.block_size}")
            hi = max(max(int(x.max()), int(y.max())) for x, y in ex)
            if hi >= cfg.vocab_size or self.pad_id >= cfg.vocab_size:
                raise ValueError(f"{name}: token ids up to {max(hi, self.pad_id)}; expected 0..{cfg.vocab_size - 1} (the model's vocab_size)")

    def batches(self, batch_size: int, n_micro: int = 1, world_size: int = 1, rank: int = 0) -> list[Batch]:
        idx = torch.randint(len(self.train), (n_micro * world_size * batch_size,), generator=self.generator)  # the whole step, every rank
        n_labels = sum(int((self.train[i][1] != IGNORE).sum()) for i in idx.tolist())
        norm = torch.tensor(n_labels / (n_micro * world_size), dtype=torch.float64)  # the loop divides by n_micro, DDP averages over ranks
        out = []
        for share in rank_share(idx, n_micro, world_size, rank):
            x, y, _ = collate([self.train[i] for i in share.tolist()], self.pad_id)
            out.append((x, y, norm))
        return out

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        x, y, norm = batch
        total = _loss_sum(model(x)[0], y)
        return total / norm.to(total.dtype)

    def evaluate(self, model: nn.Module, batch_size: int, iters: int) -> dict[str, float]:
        """Mean loss per response token over the first batch_size * iters validation examples (all, if fewer)."""
        device = next(model.parameters()).device
        n = min(len(self.val), batch_size * iters)
        total, count = 0.0, 0
        for start in range(0, n, batch_size):
            x, y, _ = collate(self.val[start : start + batch_size], self.pad_id)
            total += _loss_sum(model(x.to(device))[0], y.to(device)).item()
            count += int((y != IGNORE).sum())
        return {"val_loss": total / count}

    def tokens(self, batch: Batch) -> int:
        return batch[0].numel()
