"""Fine-tuning a pretrained model for classification, by the course's Trainer (lesson 12).

* `EncoderClassifier`: an encoder (MiniLM, lesson 10) and a linear head on its mean-pooled or [CLS] state;
  `EncoderClassification` is its objective (padded batches of token ids); `encoder_features` and
  `predict_encoder` run it frozen and batched by length.
* `FeatureClassification` / `train_head`: head-only fine-tuning on cached features. A frozen trunk in eval
  mode maps each sentence to the same vector every time, so training the head on those vectors takes
  exactly the steps that training it through the trunk (with `freeze_all_but(model, ["head"])`) takes;
  tests/test_transfer.py proves it, weight for weight.
* `gpt_classifier`, `train_gpt_classifier`, `predict_gpt`: the course GPT's trunk with a head on the last
  real token (llmlab.models.classifier), from its pretrained weights or from scratch, on characters.
* `fit`: the Trainer with the fine-tuning schedule (warmup, cosine), the caller's random state kept.

Left out on purpose: dropout during fine-tuning (MiniLM's config has none), discriminative learning rates,
gradual unfreezing, multi-label heads.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from llmlab.models.classifier import ClassifierConfig, SequenceClassifier
from llmlab.nn.pooling import mean_pool
from llmlab.text.sentiment import Review
from llmlab.train.checkpoint import rng_state, set_rng_state
from llmlab.train.loop import TrainConfig, Trainer
from llmlab.train.objectives import Classification, Objective, rank_share

# ----------------------------------------------------------------------------- an encoder with a head
POOLINGS = ("mean", "cls")


class EncoderClassifier(nn.Module):
    """A pretrained encoder (llmlab.models.encoder.Encoder) and a linear head on one vector per sentence:
    the mean of the real tokens' last hidden states ("mean", how MiniLM was trained to make sentence
    vectors) or the state at [CLS], position 0 ("cls", BERT's convention). Parameters: encoder.*, head.*."""

    def __init__(self, encoder: nn.Module, n_classes: int = 2, pooling: str = "mean"):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling={pooling!r}: expected one of {', '.join(POOLINGS)}")
        if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
            raise ValueError(f"n_classes={n_classes!r}: expected an integer >= 2")
        self.encoder, self.pooling, self.n_classes = encoder, pooling, n_classes
        self.head = nn.Linear(encoder.config.n_embd, n_classes)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def features(self, idx: torch.Tensor, is_token: torch.Tensor) -> torch.Tensor:
        """idx, is_token [B, T] -> the pooled sentence vectors [B, C]."""
        h = self.encoder(idx, is_token)  # (B, T, C)
        return mean_pool(h, is_token) if self.pooling == "mean" else h[:, 0]

    def forward(self, idx: torch.Tensor, is_token: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(idx, is_token))  # (B, K)


def encode_texts(tok, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """WordPiece ids with [CLS] first and [SEP] last, cut to max_length tokens ([SEP] kept)."""
    rows = [tok.encode(t) for t in texts]
    return [r if len(r) <= max_length else r[: max_length - 1] + [tok.sep_id] for r in rows]


def _pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = pad_sequence([torch.as_tensor(r, dtype=torch.long) for r in rows], batch_first=True, padding_value=pad_id)  # (B, T)
    lengths = torch.tensor([len(r) for r in rows])
    return ids, torch.arange(ids.size(1))[None, :] < lengths[:, None]  # is_token (B, T): right padding


def _by_length(rows: Sequence[Sequence[int]], batch_size: int):
    """Batches of row indices, shortest rows together (less padding, the same results)."""
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    return [order[i: i + batch_size] for i in range(0, len(order), batch_size)]


@torch.no_grad()
def encoder_features(encoder: nn.Module, tok, texts: Sequence[str], max_length: int = 64, batch_size: int = 64) -> dict[str, torch.Tensor]:
    """A frozen encoder's sentence vectors: {"mean": [N, C], "cls": [N, C]} from one pass."""
    rows = encode_texts(tok, texts, max_length)
    out = {p: torch.zeros(len(rows), encoder.config.n_embd) for p in POOLINGS}
    was = encoder.training
    encoder.eval()
    for idx in _by_length(rows, batch_size):
        ids, is_token = _pad([rows[i] for i in idx], tok.pad_id)
        h = encoder(ids, is_token)  # (b, T, C)
        out["mean"][idx], out["cls"][idx] = mean_pool(h, is_token), h[:, 0]
    encoder.train(was)
    return out


@torch.no_grad()
def encoder_logits(clf: nn.Module, rows: Sequence[Sequence[int]], pad_id: int, batch_size: int = 64) -> torch.Tensor:
    """Logits [N, K] of a classifier (ids, is_token) -> [B, K] on token-id rows, batched by length, in eval mode."""
    out: list = [None] * len(rows)
    was = clf.training
    clf.eval()
    dev = _dev(clf)
    for idx in _by_length(rows, batch_size):
        ids, is_token = _pad([rows[i] for i in idx], pad_id)
        for i, row in zip(idx, clf(ids.to(dev), is_token.to(dev)).float().cpu()):  # (b, K)
            out[i] = row
    clf.train(was)
    return torch.stack(out)


def predict_encoder(clf: EncoderClassifier, tok, texts: Sequence[str], max_length: int = 64, batch_size: int = 64) -> list[int]:
    return encoder_logits(clf, encode_texts(tok, texts, max_length), tok.pad_id, batch_size).argmax(-1).tolist()


class EncoderClassification(Objective):
    """One label per sentence for an `EncoderClassifier`: a batch is (ids (B, T), is_token (B, T), labels (B,)),
    right-padded with `pad_id` to its longest. train_set, val_set: sequences of (token ids, label). The loss
    is the mean cross-entropy over sentences; the batches are drawn as `Classification`'s are."""

    def __init__(self, train_set: Sequence, val_set: Sequence, pad_id: int, seed: int = 1337):
        super().__init__(seed)
        self.pad_id = pad_id
        self.train_rows, self.train_labels = _rows_and_labels("train_set", train_set)
        self.val_rows, self.val_labels = _rows_and_labels("val_set", val_set)

    def bind(self, model: nn.Module) -> None:
        super().bind(model)
        if not isinstance(model, EncoderClassifier):
            raise ValueError(f"model: EncoderClassification expected an EncoderClassifier, got {type(model).__name__}")
        top = max(int(self.train_labels.max()), int(self.val_labels.max()))
        if top >= model.n_classes:
            raise ValueError(f"train_set, val_set: labels span 0..{top}; expected 0..{model.n_classes - 1} (the model's n_classes)")

    def _batch(self, rows, labels, idx: torch.Tensor):
        ids, is_token = _pad([rows[i] for i in idx.tolist()], self.pad_id)
        return ids, is_token, labels[idx]

    def batches(self, batch_size: int, n_micro: int = 1, world_size: int = 1, rank: int = 0):
        idx = torch.randint(len(self.train_rows), (n_micro * world_size * batch_size,), generator=self.generator)
        return [self._batch(self.train_rows, self.train_labels, i) for i in rank_share(idx, n_micro, world_size, rank)]

    def loss(self, model: nn.Module, batch) -> torch.Tensor:
        ids, is_token, labels = batch
        return F.cross_entropy(model(ids, is_token).float(), labels)

    def tokens(self, batch) -> int:
        return int(batch[1].sum())

    def evaluate(self, model: nn.Module, batch_size: int, iters: int) -> dict[str, float]:
        n = min(len(self.val_rows), batch_size * iters)
        loss, correct = 0.0, 0
        for start in range(0, n, batch_size):
            ids, is_token, labels = self._batch(self.val_rows, self.val_labels, torch.arange(start, min(start + batch_size, n)))
            logits = model(ids.to(_dev(model)), is_token.to(_dev(model))).float()
            loss += F.cross_entropy(logits, labels.to(logits.device), reduction="sum").item()
            correct += int((logits.argmax(-1).cpu() == labels).sum())
        return {"val_loss": loss / n, "val_accuracy": correct / n}


class FeatureClassification(EncoderClassification):
    """Unlike EncoderClassification: each example is a fixed vector (a frozen trunk's output), and the
    model is the head alone (any module: features [B, C] -> logits [B, K]). The same draws of examples."""

    def __init__(self, train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor, seed: int = 1337):
        Objective.__init__(self, seed)
        for name, x, y in (("train", train_x, train_y), ("val", val_x, val_y)):
            if x.dim() != 2 or y.shape != (x.size(0),):
                raise ValueError(f"{name}_x, {name}_y: expected shapes (N, C) and (N,), got {tuple(x.shape)} and {tuple(y.shape)}")
        self.train_rows, self.train_labels = train_x.float(), train_y.long()
        self.val_rows, self.val_labels = val_x.float(), val_y.long()

    def bind(self, model: nn.Module) -> None:
        Objective.bind(self, model)

    def _batch(self, rows, labels, idx: torch.Tensor):
        return rows[idx], labels[idx]

    def loss(self, model: nn.Module, batch) -> torch.Tensor:
        x, labels = batch
        return F.cross_entropy(model(x).float(), labels)

    def tokens(self, batch) -> int:
        return batch[0].size(0)

    def evaluate(self, model: nn.Module, batch_size: int, iters: int) -> dict[str, float]:
        logits = model(self.val_rows.to(_dev(model))).float().cpu()
        return {"val_loss": F.cross_entropy(logits, self.val_labels).item(),
                "val_accuracy": (logits.argmax(-1) == self.val_labels).float().mean().item()}


def _rows_and_labels(name: str, data: Sequence) -> tuple[list[list[int]], torch.Tensor]:
    if not isinstance(data, Sequence) or len(data) == 0:
        raise ValueError(f"{name}: expected a non-empty sequence of (token ids, label) pairs, got {type(data).__name__}")
    rows, labels = [], []
    for i, item in enumerate(data):
        if not isinstance(item, (tuple, list)) or len(item) != 2 or len(item[0]) == 0:
            raise ValueError(f"{name}[{i}]: expected a (non-empty token ids, label) pair, got {item!r:.80}")
        rows.append(list(item[0]))
        labels.append(int(item[1]))
    return rows, torch.tensor(labels)


def _dev(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def fit(model: nn.Module, objective: Objective, steps: int, batch_size: int, lr: float, seed: int,
        weight_decay: float = 0.01, warmup: float = 0.1) -> dict[str, float]:
    """The course's Trainer on the CPU with the fine-tuning schedule (linear warmup over `warmup` of the
    steps, cosine to lr / 10), one evaluation at the end; the caller's random state is left as it was.
    -> the final metrics (val_loss, val_accuracy)."""
    tc = TrainConfig(max_steps=steps, batch_size=batch_size, lr=lr, warmup_steps=max(1, round(warmup * steps)),
                     weight_decay=weight_decay, beta2=0.999, grad_clip=1.0, eval_interval=steps, eval_iters=1000,
                     device="cpu", progress=False, seed=seed)
    outer = rng_state()
    try:
        result = Trainer(model, objective, tc).fit()
    finally:
        set_rng_state(outer)
    model.eval()
    return result.metrics


def train_head(train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor, n_classes: int = 2,
               steps: int = 200, batch_size: int = 32, lr: float = 1e-3, seed: int = 0, head: nn.Linear | None = None) -> nn.Linear:
    """Head-only fine-tuning on cached features: a Linear(C, K) (initialised as EncoderClassifier's unless given)
    trained with `fit`. Exactly the steps of training the head through a frozen trunk."""
    if head is None:
        g = torch.Generator().manual_seed(seed)
        head = nn.Linear(train_x.size(1), n_classes)
        with torch.no_grad():
            head.weight.copy_(torch.randn(head.weight.shape, generator=g) * 0.02)
            head.bias.zero_()
    fit(head, FeatureClassification(train_x, train_y, val_x, val_y, seed=seed), steps, batch_size, lr, seed)
    return head


def predict_head(head: nn.Module, x: torch.Tensor) -> list[int]:
    with torch.no_grad():
        return head(x.float()).argmax(-1).tolist()


# ----------------------------------------------------------------------------- the course GPT with a head
def char_ids(tok, text: str, block_size: int) -> list[int]:
    """The course's characters for `text`, the first block_size of them; a character the tokenizer has
    never seen (an accent, an emoji) becomes "?" (or a space)."""
    fallback = tok.stoi.get("?", tok.stoi.get(" ", 0))
    return [tok.stoi.get(c, fallback) for c in text[:block_size]] or [fallback]


def gpt_classifier(gpt: nn.Module, pretrained: bool, seed: int = 0, n_classes: int = 2) -> SequenceClassifier:
    """A SequenceClassifier of the GPT's shapes with one more id (the padding): from the GPT's weights
    (pretrained) or from a fresh GPT-2 initialisation (seeded); the head is new either way."""
    cfg = ClassifierConfig(**{**gpt.config.to_dict(), "vocab_size": gpt.config.vocab_size + 1, "n_classes": n_classes})
    outer = rng_state()
    try:
        torch.manual_seed(seed)
        clf = SequenceClassifier(cfg)
    finally:
        set_rng_state(outer)
    if pretrained:
        sd = {k: v.clone() for k, v in gpt.transformer.state_dict().items()}
        wte = clf.transformer.wte.weight.detach().clone()
        wte[: gpt.config.vocab_size] = sd["wte.weight"]  # the pad row keeps its init: no real token ever attends to it
        sd["wte.weight"] = wte
        clf.transformer.load_state_dict(sd)
    return clf


def train_gpt_classifier(clf: SequenceClassifier, tok, train: Sequence[Review], val: Sequence[Review], steps: int = 300,
                         batch_size: int = 32, lr: float = 1e-3, seed: int = 0) -> dict[str, float]:
    T, pad = clf.config.block_size, clf.config.vocab_size - 1
    obj = Classification([(char_ids(tok, r.text, T), r.label) for r in train], [(char_ids(tok, r.text, T), r.label) for r in val], pad, seed)
    return fit(clf, obj, steps, batch_size, lr, seed)


@torch.no_grad()
def predict_gpt(clf: SequenceClassifier, tok, texts: Sequence[str], batch_size: int = 64) -> list[int]:
    T, pad = clf.config.block_size, clf.config.vocab_size - 1
    rows = [char_ids(tok, t, T) for t in texts]
    pred = [0] * len(rows)
    clf.eval()
    for idx in _by_length(rows, batch_size):
        ids, is_token = _pad([rows[i] for i in idx], pad)
        for i, p in zip(idx, clf(ids, is_token.sum(1)).argmax(-1).tolist()):
            pred[i] = p
    return pred
