"""Objectives: what a training step learns. The loop (`Trainer` in loop.py) is the same for all;
an objective says how a batch is drawn, how it becomes a loss, and what to measure.

    class Objective:
        bind(model)                                   start a run: rewind the data, check it fits the model
        batches(batch_size, n_micro, world_size, rank) -> list of batches (tuples of CPU tensors)
        loss(model, batch) -> 0-d tensor              the mean over the batch's examples
        evaluate(model, batch_size, iters) -> {"val_loss": ..., ...}
        tokens(batch) -> int                          positions the model processed (for tokens/s)
        state_dict() / load_state_dict(d)             the position in the data, for exact resume

Next-token prediction, the whole of it (`NextToken` below adds the checks):

    def batches(self, batch_size, n_micro=1, world_size=1, rank=0):
        x, y = get_batch(self.train_data, self.block_size, n_micro * world_size * batch_size, self.generator)
        return list(zip(rank_share(x, n_micro, world_size, rank), rank_share(y, n_micro, world_size, rank)))

    def loss(self, model, batch):
        x, y = batch
        return model(x, y)[1]          # the GPT's mean cross-entropy over B * T positions

The contract the loop relies on:
* `batches` draws from a generator that every process seeds alike, the whole step's examples at
  once, and keeps this rank's share (`rank_share`): two processes with batch b then take the
  step one process takes with 2b. The loop moves each tensor of a batch to the device.
* `loss` runs inside autocast, through the model's own forward (DDP syncs gradients there).
  It is a mean over the examples of one micro-batch; the loop divides it by the number of
  micro-batches, so n micro-batches of b make the same step as one batch of n * b.
* `evaluate` runs under torch.no_grad(), model.eval() and autocast, on the same validation
  batches every time; it returns floats, "val_loss" among them.
* `state_dict` holds everything that decides the next batch (here: the generator's state); the
  checkpoint stores it, and `load_state_dict` puts it back.

Left out on purpose: epochs (both objectives sample with replacement, as nanoGPT does), data
that does not fit in memory, packing several short sequences into one row, and losses that need
several models (distillation, RL): those would be objectives too, but not in this course yet.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from llmlab.models.classifier import SequenceClassifier
from llmlab.models.gpt import GPT
from llmlab.text.batches import get_batch

Batch = tuple[torch.Tensor, ...]


def rank_share(t: torch.Tensor, n_micro: int, world_size: int, rank: int) -> torch.Tensor:
    """This rank's part of a step drawn for all ranks: (n_micro * world_size * b, ...) -> (n_micro, b, ...).

    Micro-batch i of rank r is rows [(i * W + r) * b, (i * W + r + 1) * b): rank 0 and rank 1
    split what one process would take as micro-batch i, so DDP averages the same gradient.
    """
    if t.shape[0] % (n_micro * world_size):
        raise ValueError(f"t: {t.shape[0]} rows do not split into n_micro={n_micro} x world_size={world_size} equal parts")
    return t.view(n_micro, world_size, -1, *t.shape[1:])[:, rank]  # (n_micro, b, ...)


class Objective:
    """The interface (see the module docstring). A subclass writes batches, loss and evaluate."""

    def __init__(self, seed: int = 1337):
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError(f"seed={seed!r}: expected an integer")
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)  # the same on every rank: the data position

    def bind(self, model: nn.Module) -> None:
        """The start of a run: rewind the generator to `seed` (two runs of one objective see the
        same batches), and check that the data fits `model` (a subclass adds that part)."""
        self.generator.manual_seed(self.seed)

    def batches(self, batch_size: int, n_micro: int = 1, world_size: int = 1, rank: int = 0) -> list[Batch]:
        raise NotImplementedError(f"{type(self).__name__} must define this method")

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must define this method")

    def evaluate(self, model: nn.Module, batch_size: int, iters: int) -> dict[str, float]:
        raise NotImplementedError(f"{type(self).__name__} must define this method")

    def tokens(self, batch: Batch) -> int:
        return batch[0].numel()  # from the shape only: never waits for the device

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"].cpu())


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _at_least_fp32(logits: torch.Tensor) -> torch.Tensor:
    # cross-entropy in fp32 under bf16/fp16 autocast (a softmax in 8 mantissa bits is coarse),
    # but float64 stays float64 (the tests compare runs in float64)
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


# ----------------------------------------------------------------------------- next-token prediction
class NextToken(Objective):
    """Predict each next token of one long text: random windows of `block_size` ids (x), and the
    same windows shifted by one (y). The model is a GPT: `model(x, y)` returns (logits, loss).

    train_data, val_data: 1-D integer tensors of token ids. block_size: None = the model's.
    seed: the batch order (the validation windows use seed + 1: the same every evaluation).
    """

    def __init__(self, train_data: torch.Tensor, val_data: torch.Tensor, block_size: int | None = None, seed: int = 1337):
        super().__init__(seed)
        if block_size is not None and (not isinstance(block_size, int) or isinstance(block_size, bool) or block_size < 1):
            raise ValueError(f"block_size={block_size!r}: expected a positive integer (or None: the model's)")
        self.train_data = _check_ids("train_data", train_data)
        self.val_data = _check_ids("val_data", val_data)
        self.block_size = block_size

    def bind(self, model: nn.Module) -> None:
        super().bind(model)
        if not isinstance(model, GPT):
            raise ValueError(f"model: NextToken expected an llmlab.models.gpt.GPT (forward(x, y) -> (logits, loss)), got {type(model).__name__}")
        cfg = model.config
        self.block_size = self.block_size or cfg.block_size
        if self.block_size > cfg.block_size:
            raise ValueError(f"block_size={self.block_size}: expected at most the model's block_size={cfg.block_size}")
        for name, data in (("train_data", self.train_data), ("val_data", self.val_data)):
            if len(data) <= self.block_size:
                raise ValueError(f"{name}: {len(data)} tokens; need more than block_size={self.block_size}")
            lo, hi = int(data.min()), int(data.max())
            if lo < 0 or hi >= cfg.vocab_size:
                raise ValueError(f"{name}: token ids span {lo}..{hi}; expected 0..{cfg.vocab_size - 1} (the model's vocab_size={cfg.vocab_size})")

    def batches(self, batch_size: int, n_micro: int = 1, world_size: int = 1, rank: int = 0) -> list[Batch]:
        x, y = get_batch(self.train_data, self.block_size, n_micro * world_size * batch_size, self.generator)  # (n*W*b, T)
        return list(zip(rank_share(x, n_micro, world_size, rank), rank_share(y, n_micro, world_size, rank)))  # n of (b, T)

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        x, y = batch
        return model(x, y)[1]  # mean cross-entropy over the B * T positions

    def evaluate(self, model: nn.Module, batch_size: int, iters: int) -> dict[str, float]:
        device, gen = _device(model), torch.Generator().manual_seed(self.seed + 1)
        losses = []
        for _ in range(iters):
            x, y = get_batch(self.val_data, self.block_size, batch_size, gen)
            losses.append(self.loss(model, (x.to(device), y.to(device))).float())
        return {"val_loss": torch.stack(losses).mean().item()}  # one device -> host sync


def _check_ids(name: str, data) -> torch.Tensor:
    if not isinstance(data, torch.Tensor) or data.dim() != 1 or data.dtype.is_floating_point or data.dtype == torch.bool:
        raise ValueError(f"{name}: expected a 1-D integer tensor of token ids, got {getattr(data, 'shape', type(data).__name__)}")
    return data.long().cpu()


# ----------------------------------------------------------------------------- sequence classification
class Classification(Objective):
    """One label per sequence, for a `SequenceClassifier`. Sequences differ in length: each
    micro-batch is padded on the RIGHT with `pad_id` to its longest, and carries the lengths,
    so the model pools each sequence's last real token. A batch is (x (B, T), lengths (B,), labels (B,)).

    train_set, val_set: sequences of (token ids, label) pairs; ids a non-empty list or 1-D tensor.
    pad_id: the filler; no sequence may contain it (it would be indistinguishable from padding
    for anyone who later recovers lengths from `x != pad_id`).

    The loss is a mean over sequences, never over tokens: every sequence counts once whatever
    its length, and every micro-batch has the same number of sequences, so accumulating
    micro-batches gives the step of one big batch although their padded widths differ.
    """

    def __init__(self, train_set: Sequence, val_set: Sequence, pad_id: int, seed: int = 1337):
        super().__init__(seed)
        if not isinstance(pad_id, int) or isinstance(pad_id, bool) or pad_id < 0:
            raise ValueError(f"pad_id={pad_id!r}: expected a token id (an integer >= 0)")
        self.pad_id = pad_id
        self.train_seqs, self.train_labels = self._check_set("train_set", train_set)
        self.val_seqs, self.val_labels = self._check_set("val_set", val_set)

    def _check_set(self, name: str, data) -> tuple[list[torch.Tensor], torch.Tensor]:
        if not isinstance(data, Sequence) or len(data) == 0:
            raise ValueError(f"{name}: expected a non-empty sequence of (token ids, label) pairs, got {type(data).__name__}")
        seqs, labels = [], []
        for i, item in enumerate(data):
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise ValueError(f"{name}[{i}]: expected a (token ids, label) pair, got {type(item).__name__}")
            ids, label = torch.as_tensor(item[0]), item[1]
            if ids.dim() != 1 or len(ids) == 0 or ids.dtype.is_floating_point or ids.dtype == torch.bool:
                raise ValueError(f"{name}[{i}]: expected a non-empty 1-D sequence of integer token ids, got shape {tuple(ids.shape)} {ids.dtype}")
            if not isinstance(label, int) or isinstance(label, bool) or label < 0:
                raise ValueError(f"{name}[{i}]: label={label!r}; expected a class index (an integer >= 0)")
            if (ids == self.pad_id).any():
                raise ValueError(f"{name}[{i}]: contains pad_id={self.pad_id}; expected a pad id that no sequence uses")
            seqs.append(ids.long())
            labels.append(label)
        return seqs, torch.tensor(labels)

    def bind(self, model: nn.Module) -> None:
        super().bind(model)
        if not isinstance(model, SequenceClassifier):
            raise ValueError(f"model: Classification expected an llmlab.models.classifier.SequenceClassifier, got {type(model).__name__}")
        cfg = model.config
        if self.pad_id >= cfg.vocab_size:
            raise ValueError(f"pad_id={self.pad_id}: expected 0..{cfg.vocab_size - 1} (the model's vocab_size={cfg.vocab_size})")
        for name, seqs, labels in (("train_set", self.train_seqs, self.train_labels), ("val_set", self.val_seqs, self.val_labels)):
            longest, hi = max(len(s) for s in seqs), max(int(s.max()) for s in seqs)
            lo = min(int(s.min()) for s in seqs)
            if longest > cfg.block_size:
                raise ValueError(f"{name}: a sequence of {longest} tokens; expected at most the model's block_size={cfg.block_size}")
            if lo < 0 or hi >= cfg.vocab_size:
                raise ValueError(f"{name}: token ids span {lo}..{hi}; expected 0..{cfg.vocab_size - 1} (the model's vocab_size={cfg.vocab_size})")
            if int(labels.max()) >= cfg.n_classes:
                raise ValueError(f"{name}: labels span 0..{int(labels.max())}; expected 0..{cfg.n_classes - 1} (the model's n_classes={cfg.n_classes})")

    def collate(self, seqs: list[torch.Tensor], labels: torch.Tensor, idx: torch.Tensor) -> Batch:
        """Examples `idx` as one batch, padded on the right to their longest."""
        rows = [seqs[i] for i in idx.tolist()]
        x = pad_sequence(rows, batch_first=True, padding_value=self.pad_id)  # (B, T), T = the longest here
        lengths = torch.tensor([len(r) for r in rows])  # (B,)
        return x, lengths, labels[idx]

    def batches(self, batch_size: int, n_micro: int = 1, world_size: int = 1, rank: int = 0) -> list[Batch]:
        idx = torch.randint(len(self.train_seqs), (n_micro * world_size * batch_size,), generator=self.generator)
        return [self.collate(self.train_seqs, self.train_labels, i) for i in rank_share(idx, n_micro, world_size, rank)]

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        x, lengths, labels = batch
        return F.cross_entropy(_at_least_fp32(model(x, lengths)), labels)  # mean over the B sequences

    def evaluate(self, model: nn.Module, batch_size: int, iters: int) -> dict[str, float]:
        """Loss and accuracy over the first batch_size * iters validation examples (all, if fewer)."""
        device, n = _device(model), min(len(self.val_seqs), batch_size * iters)
        loss_sum = torch.zeros((), device=device)  # float32: MPS has no float64
        correct = torch.zeros((), dtype=torch.long, device=device)
        for start in range(0, n, batch_size):
            x, lengths, labels = (t.to(device) for t in self.collate(self.val_seqs, self.val_labels, torch.arange(start, min(start + batch_size, n))))
            logits = _at_least_fp32(model(x, lengths))  # (B, K)
            loss_sum += F.cross_entropy(logits, labels, reduction="sum").float()
            correct += (logits.argmax(-1) == labels).sum()
        return {"val_loss": loss_sum.item() / n, "val_accuracy": correct.item() / n}  # the sums stay on the device until here
