"""Objectives for translation, for the course's one training loop (llmlab.train.loop.Trainer):

* `Translation`: an encoder-decoder (llmlab.models.seq2seq.EncoderDecoder) under teacher forcing.
  A batch is (src [B, S], tgt [B, T]): random pairs, each side padded on the right with pad_id to
  its longest; tgt ends in <eos>. The loss is the model's: mean cross-entropy over real target tokens.
* `PrefixTranslation`: the same pairs for a decoder-only GPT, written as one sequence
  `source <bos> target <eos>`; the loss counts the target part only (the source is the prompt,
  not something to predict), so both models learn exactly the same thing.

    Trainer(EncoderDecoder(cfg), Translation(train, val, pad_id=0), TrainConfig(...)).fit()

Pairs are lists of token ids: (source ids, target ids without <eos>). Evaluation is the
validation loss (and per-token accuracy under teacher forcing); BLEU needs decoding, which the
lesson runs afterwards (llmlab.generate.seq2seq).

Left out on purpose: batching by length (bucketing), label smoothing, epochs (pairs are drawn
with replacement, as the other objectives do).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from llmlab.models.gpt import GPT
from llmlab.models.seq2seq import EncoderDecoder
from llmlab.train.objectives import Batch, Objective, rank_share

IdPair = tuple[Sequence[int], Sequence[int]]


def _check_pairs(name: str, pairs: Sequence[IdPair], pad_id: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if not isinstance(pairs, Sequence) or len(pairs) == 0:
        raise ValueError(f"{name}: expected a non-empty sequence of (source ids, target ids) pairs")
    out = []
    for i, p in enumerate(pairs):
        if not isinstance(p, (tuple, list)) or len(p) != 2 or not len(p[0]) or not len(p[1]):
            raise ValueError(f"{name}[{i}]: expected a pair of non-empty id lists (source, target)")
        s, t = torch.as_tensor(list(p[0]), dtype=torch.long), torch.as_tensor(list(p[1]), dtype=torch.long)
        if (s == pad_id).any() or (t == pad_id).any():
            raise ValueError(f"{name}[{i}]: contains pad_id={pad_id}; expected a pad id no sentence uses")
        out.append((s, t))
    return out


class _Pairs(Objective):
    def __init__(self, train_pairs: Sequence[IdPair], val_pairs: Sequence[IdPair], pad_id: int = 0, bos_id: int = 1, eos_id: int = 2,
                 seed: int = 1337):
        super().__init__(seed)
        for name, v in (("pad_id", pad_id), ("bos_id", bos_id), ("eos_id", eos_id)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{name}={v!r}: expected a token id (an integer >= 0)")
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.train = _check_pairs("train_pairs", train_pairs, pad_id)
        self.val = _check_pairs("val_pairs", val_pairs, pad_id)

    def _check_fits(self, vocab_size: int, longest: int, what: str) -> None:
        for name, pairs in (("train_pairs", self.train), ("val_pairs", self.val)):
            hi = max(max(int(s.max()), int(t.max())) for s, t in pairs)
            if hi >= vocab_size or max(self.pad_id, self.bos_id, self.eos_id) >= vocab_size:
                raise ValueError(f"{name}: token ids up to {hi}; expected 0..{vocab_size - 1} (the model's vocab_size)")
            n = max(self._length(s, t) for s, t in pairs)
            if n > longest:
                raise ValueError(f"{name}: a {what} of {n} tokens; expected at most the model's block_size={longest}")

    def collate(self, pairs, idx: torch.Tensor) -> Batch:
        raise NotImplementedError

    def batches(self, batch_size: int, n_micro: int = 1, world_size: int = 1, rank: int = 0) -> list[Batch]:
        idx = torch.randint(len(self.train), (n_micro * world_size * batch_size,), generator=self.generator)
        return [self.collate(self.train, i) for i in rank_share(idx, n_micro, world_size, rank)]

    def evaluate(self, model: nn.Module, batch_size: int, iters: int) -> dict[str, float]:
        """Loss and next-token accuracy under teacher forcing over the first batch_size * iters validation pairs."""
        device, n = next(model.parameters()).device, min(len(self.val), batch_size * iters)
        loss_sum, hits, count = 0.0, 0, 0
        for start in range(0, n, batch_size):
            batch = tuple(t.to(device) for t in self.collate(self.val, torch.arange(start, min(start + batch_size, n))))
            logits, targets = self._logits_targets(model, batch)
            real = targets != -100
            loss_sum += F.cross_entropy(logits[real].float(), targets[real], reduction="sum").item()
            hits += (logits[real].argmax(-1) == targets[real]).sum().item()
            count += int(real.sum())
        return {"val_loss": loss_sum / count, "val_accuracy": hits / count}


class Translation(_Pairs):
    """Teacher-forced translation for an EncoderDecoder; a batch is (src [B, S], tgt [B, T])."""

    def _length(self, s, t) -> int:
        return max(len(s), len(t) + 1)

    def bind(self, model: nn.Module) -> None:
        super().bind(model)
        if not isinstance(model, EncoderDecoder):
            raise ValueError(f"model: Translation expected an llmlab.models.seq2seq.EncoderDecoder, got {type(model).__name__}")
        cfg = model.config
        if (cfg.pad_id, cfg.bos_id, cfg.eos_id) != (self.pad_id, self.bos_id, self.eos_id):
            raise ValueError(f"pad_id, bos_id, eos_id = {self.pad_id}, {self.bos_id}, {self.eos_id}: expected the model's "
                             f"{cfg.pad_id}, {cfg.bos_id}, {cfg.eos_id}")
        self._check_fits(cfg.vocab_size, cfg.block_size, "sentence")

    def collate(self, pairs, idx: torch.Tensor) -> Batch:
        rows = [pairs[i] for i in idx.tolist()]
        src = pad_sequence([s for s, _ in rows], batch_first=True, padding_value=self.pad_id)  # (B, S)
        eos = torch.tensor([self.eos_id])
        tgt = pad_sequence([torch.cat([t, eos]) for _, t in rows], batch_first=True, padding_value=self.pad_id)  # (B, T)
        return src, tgt

    def tokens(self, batch: Batch) -> int:
        return batch[0].numel() + batch[1].numel()  # source and target positions

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        src, tgt = batch
        return model(src, tgt)[1]

    def _logits_targets(self, model, batch):
        src, tgt = batch
        logits, _ = model(src, tgt)
        return logits, tgt.masked_fill(tgt == self.pad_id, -100)


class PrefixTranslation(_Pairs):
    """The same pairs for a decoder-only GPT: x = source <bos> target, y = x shifted left with
    -100 (ignored) wherever the next token is part of the source; padding on the right. A batch is (x, y)."""

    def _length(self, s, t) -> int:
        return len(s) + len(t) + 1  # source, <bos>, target: the model reads all but the final <eos>

    def bind(self, model: nn.Module) -> None:
        super().bind(model)
        if not isinstance(model, GPT):
            raise ValueError(f"model: PrefixTranslation expected an llmlab.models.gpt.GPT, got {type(model).__name__}")
        self._check_fits(model.config.vocab_size, model.config.block_size, "source + target")

    def collate(self, pairs, idx: torch.Tensor) -> Batch:
        xs, ys = [], []
        for i in idx.tolist():
            s, t = pairs[i]
            seq = torch.cat([s, torch.tensor([self.bos_id]), t, torch.tensor([self.eos_id])])  # source <bos> target <eos>
            y = seq[1:].clone()
            y[: len(s)] = -100  # predicting the source's own words (and <bos>) is not the task
            xs.append(seq[:-1])
            ys.append(y)
        return (pad_sequence(xs, batch_first=True, padding_value=self.pad_id),
                pad_sequence(ys, batch_first=True, padding_value=-100))  # (B, T), (B, T)

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        x, y = batch
        return model(x, y)[1]  # the GPT ignores -100 targets

    def _logits_targets(self, model, batch):
        x, y = batch
        return model(x)[0], y
