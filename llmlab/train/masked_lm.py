"""Masked-language-model training and scoring: the loss, an objective for the Trainer, and
pseudo-log-likelihood.

    loss = mean over the selected positions of  -log P(original token | the masked sequence)

Only the selected positions (labels != -100, llmlab.text.masking) count: the model sees the
others, so predicting them would be copying. About 15 % of the tokens give a loss, against all of
them for a GPT, which is one reason an MLM learns more slowly per step.

`MaskedLM` is the objective (llmlab.train.objectives' interface): windows of the corpus wrapped
in [CLS] ... [SEP], masked as BERT does, either afresh every time a window is drawn (dynamic,
RoBERTa) or once for good (`static=True`, BERT's original data pipeline). Static masking needs a
fixed `pool` of windows (each gets its one mask); dynamic masking can take a pool too, so the two
can be compared on the same data and budget. Its evaluation reports `val_loss` and
`val_accuracy`, the share of masked validation tokens predicted exactly, with every selected
validation token replaced by [MASK] (the same positions every evaluation).

`pseudo_log_likelihood` (Salazar et al. 2020) scores a sentence with an MLM, which has no
left-to-right probability: mask each token in turn, and sum log P(the original token) over the
positions. All the one-masked copies go through the model as one batch.

The lesson's accuracies over held-out positions get their 95 % intervals from
`llmlab.stats.wilson_interval` (imported here for it).

Left out on purpose: next-sentence prediction (RoBERTa found it does not help), whole-word
masking, distributed training for this objective (the loss calls the head outside `forward`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from llmlab.models.encoder import Encoder
from llmlab.stats import wilson_interval  # noqa: F401  (the lesson's accuracies: llmlab.train.masked_lm.wilson_interval)
from llmlab.text.batches import get_batch
from llmlab.text.masking import IGNORE, SpecialTokens, mask_all_selected, mask_tokens
from llmlab.train.objectives import Batch, Objective, rank_share


def mlm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """logits[B, T, V], labels[B, T] (-100 = no loss) -> the mean cross-entropy over the positions
    with a label. A batch with no label at all gives 0 (not nan), so a step can never poison the model."""
    if logits.dim() != 3 or labels.shape != logits.shape[:2]:
        raise ValueError(f"labels: expected shape {tuple(logits.shape[:2])} (the B, T of logits), got {tuple(labels.shape)}")
    flat = logits.reshape(-1, logits.size(-1)).float()  # (B*T, V): a softmax in float32 even under autocast
    targets = labels.reshape(-1)  # (B*T,)
    if not (targets != IGNORE).any():
        return flat.sum() * 0.0
    return F.cross_entropy(flat, targets, ignore_index=IGNORE)


class MaskedLM(Objective):
    """Fill in masked tokens of windows of one long text, for an `Encoder` with an MLM head.

    train_data, val_data: 1-D integer tensors of base-vocabulary token ids (a character
    tokenizer's). specials: the ids of [PAD], [CLS], [SEP], [MASK] (SpecialTokens.after(V_base)).
    block_size: the encoder's input length; windows hold block_size - 2 tokens, plus [CLS] and [SEP].
    pool: None = windows drawn anywhere in train_data; N = the first N non-overlapping windows only.
    static: mask each pool window once, at the start, and reuse that mask (needs a pool).
    A batch is (inputs (B, T), labels (B, T)).
    """

    def __init__(self, train_data: torch.Tensor, val_data: torch.Tensor, specials: SpecialTokens, block_size: int, p: float = 0.15,
                 pool: int | None = None, static: bool = False, seed: int = 1337):
        super().__init__(seed)
        for name, data in (("train_data", train_data), ("val_data", val_data)):
            if not isinstance(data, torch.Tensor) or data.dim() != 1 or data.dtype.is_floating_point:
                raise ValueError(f"{name}: expected a 1-D integer tensor of token ids")
            if len(data) <= block_size:
                raise ValueError(f"{name}: {len(data)} tokens; need more than block_size={block_size}")
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 3:
            raise ValueError(f"block_size={block_size!r}: expected an integer >= 3 ([CLS], a token, [SEP])")
        if static and pool is None:
            raise ValueError("static=True: needs a pool of windows (pool=N), each masked once")
        self.train_data, self.val_data = train_data.long().cpu(), val_data.long().cpu()
        self.specials, self.block_size, self.p, self.static = specials, block_size, p, static
        n = block_size - 2  # tokens per window
        if pool is not None:
            if isinstance(pool, bool) or not isinstance(pool, int) or not 1 <= pool <= len(self.train_data) // n:
                raise ValueError(f"pool={pool!r}: expected 1..{len(self.train_data) // n} windows of {n} tokens")
            self.pool = specials.wrap(self.train_data[: pool * n].view(pool, n))  # (pool, T)
        else:
            self.pool = None
        self.fixed: tuple[torch.Tensor, torch.Tensor] | None = None  # static masking's one draw, made in bind()

    def _mask(self, ids: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.specials
        return mask_tokens(ids, s.vocab_size, s.mask, s.ids, self.p, gen)

    def bind(self, model: nn.Module) -> None:
        super().bind(model)
        if not isinstance(model, Encoder) or not model.config.mlm_head:
            raise ValueError(f"model: MaskedLM expected an llmlab.models.encoder.Encoder with an MLM head, got {type(model).__name__}")
        if model.config.vocab_size != self.specials.vocab_size:
            raise ValueError(f"specials: vocab_size={self.specials.vocab_size}, but the model's is {model.config.vocab_size}")
        if self.block_size > model.config.block_size:
            raise ValueError(f"block_size={self.block_size}: expected at most the model's block_size={model.config.block_size}")
        if self.static:
            self.fixed = self._mask(self.pool, torch.Generator().manual_seed(self.seed + 2))  # one mask per window, for good

    def _draw(self, B: int) -> Batch:
        if self.pool is None:
            x, _ = get_batch(self.train_data, self.block_size - 2, B, self.generator)  # (B, T - 2)
            return self._mask(self.specials.wrap(x), self.generator)
        idx = torch.randint(len(self.pool), (B,), generator=self.generator)  # (B,)
        if self.static:
            return self.fixed[0][idx], self.fixed[1][idx]
        return self._mask(self.pool[idx], self.generator)

    def batches(self, batch_size: int, n_micro: int = 1, world_size: int = 1, rank: int = 0) -> list[Batch]:
        x, y = self._draw(n_micro * world_size * batch_size)  # (n*W*b, T) each
        return list(zip(rank_share(x, n_micro, world_size, rank), rank_share(y, n_micro, world_size, rank)))

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        x, y = batch
        return mlm_loss(model.mlm_logits(model(x)), y)

    def val_batches(self, batch_size: int, iters: int) -> list[Batch]:
        """The validation batches: the same windows and masks every evaluation, every selected token a [MASK]."""
        gen, s, out = torch.Generator().manual_seed(self.seed + 1), self.specials, []
        for _ in range(iters):
            x, _ = get_batch(self.val_data, self.block_size - 2, batch_size, gen)
            out.append(mask_all_selected(s.wrap(x), s.mask, s.ids, self.p, gen))
        return out

    def evaluate(self, model: nn.Module, batch_size: int, iters: int) -> dict[str, float]:
        device = next(model.parameters()).device
        loss_sum, correct, n = 0.0, 0, 0
        for x, y in self.val_batches(batch_size, iters):
            x, y = x.to(device), y.to(device)
            logits = model.mlm_logits(model(x))  # (B, T, V)
            sel = y != IGNORE
            k = int(sel.sum())
            loss_sum += mlm_loss(logits, y).item() * k
            correct += int((logits.argmax(-1) == y)[sel].sum())
            n += k
        return {"val_loss": loss_sum / max(n, 1), "val_accuracy": correct / max(n, 1)}


@torch.no_grad()
def pseudo_log_likelihood(model: Encoder, ids: torch.Tensor, mask_id: int, special_ids: set[int] | None = None,
                          batch_size: int = 64) -> float:
    """PLL(ids) = sum over positions t (specials skipped) of log P(ids[t] | ids with t masked), in nats.

    ids: a 1-D LongTensor, one sequence ([CLS] ... [SEP] included). The copies with one position
    masked each go through the model `batch_size` at a time: a sentence of n tokens costs n rows,
    not n forward passes. Higher (closer to 0) = more plausible to the model."""
    if not isinstance(ids, torch.Tensor) or ids.dim() != 1:
        raise ValueError(f"ids: expected a 1-D LongTensor (one sequence), got shape {tuple(getattr(ids, 'shape', ()))}")
    special_ids = special_ids or set()
    positions = [t for t in range(len(ids)) if int(ids[t]) not in special_ids]
    if not positions:
        raise ValueError("ids: no position to score (every token is special)")
    device = next(model.parameters()).device
    ids = ids.to(device)
    total = 0.0
    for start in range(0, len(positions), batch_size):
        pos = torch.tensor(positions[start : start + batch_size], device=device)  # (b,)
        x = ids.repeat(len(pos), 1)  # (b, T): one copy per position
        x[torch.arange(len(pos), device=device), pos] = mask_id  # copy i has position pos[i] masked
        logp = model.mlm_logits(model(x)).float().log_softmax(-1)  # (b, T, V)
        total += logp[torch.arange(len(pos), device=device), pos, ids[pos]].sum().item()
    return total
