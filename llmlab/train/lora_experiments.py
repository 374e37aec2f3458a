"""LoRA measured on a real classifier: rank 1 … 16 against full fine-tuning and head-only (lesson 14).

The model is all-MiniLM-L6-v2 (llmlab.models.minilm, 22.6M parameters) with mean pooling and a new
linear head (lesson 12's `EncoderClassifier`), on the UCI review sentences (llmlab.text.sentiment; the procedural
reviews when they cannot be had). Three ways to fine-tune it, on one split, with the same batches:

    head-only   the head alone trains (770 numbers): logistic regression on frozen sentence vectors
    full        every parameter trains (22.6M)
    LoRA r      the head and rank-r adapters on every Linear of the six blocks (llmlab.nn.lora)

`finetune` runs one of them through the course's Trainer (lesson 12's `EncoderClassification` is its objective)
and returns a plain record: test accuracy with its Wilson interval, what trained, the adapter's
safetensors bytes, AdamW's state bytes (measured, and the closed form of llmlab.train.lora_costs),
the size of the update it made to the weights and, for full fine-tuning, the singular values of that
update on the attention matrices (`attention_updates`): how low-rank is what full fine-tuning learns?
`lora_sweep` runs every method and rank for several seeds and caches the records (a JSON file in
the course cache, keyed by the settings and the data).

`alpha_rule_toy` isolates the alpha / r scaling on a problem small enough for a grid of learning
rates: the loss each rank reaches at each learning rate when the update is scaled by alpha / r, and
when it is not.

Left out on purpose: hyper-parameter search on the real task (one learning rate per method, fixed
before the runs; the validation split only reports), LoRA dropout, epochs (batches are drawn with
replacement, as everywhere in the course), and adapters on the embeddings.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from llmlab.cache import cache_dir, write_atomic
from llmlab.models.encoder import Encoder
from llmlab.nn.freeze import count_trainable, freeze_all_but
from llmlab.nn.lora import LoRALinear, apply_lora, lora_state_dict
from llmlab.stats import wilson_interval
from llmlab.text.sentiment import Review
from llmlab.train.finetune import EncoderClassification, EncoderClassifier, encode_texts, encoder_logits
from llmlab.train.loop import TrainConfig, Trainer
from llmlab.train.lora_costs import adamw_bytes, adamw_state_bytes, save_adapter, trainable_tensors
from llmlab.train.transfer import lesson_data

FORMAT = 1  # bump when a cached record's meaning changes
TARGETS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")  # every Linear of MiniLM's blocks
METHODS = ("head", "full", "lora")
LRS = {"head": 1e-2, "full": 1e-4, "lora": 1e-3}  # one per method, fixed before the runs (see the module docstring)


# ----------------------------------------------------------------------------- the model and its data
# The classifier, its objective and batched prediction are lesson 12's (llmlab.train.finetune): MiniLM with
# mean pooling and a new Linear head (`EncoderClassifier`), trained by `EncoderClassification`.
def encode(tok, reviews: Sequence[Review], max_length: int) -> list[tuple[torch.Tensor, int]]:
    """Reviews -> [(ids LongTensor[L], label)], L <= max_length ([CLS] ... [SEP], [SEP] kept when cut)."""
    rows = encode_texts(tok, [r.text for r in reviews], max_length)
    return [(torch.tensor(ids, dtype=torch.long), int(r.label)) for ids, r in zip(rows, reviews)]


def predict(model: nn.Module, data: Sequence[tuple[torch.Tensor, int]], batch_size: int = 64, return_logits: bool = False):
    """Predicted classes LongTensor[N] (and logits [N, K]) of (ids, label) pairs; batched by length (less padding)."""
    logits = encoder_logits(model, [ids.tolist() for ids, _ in data], pad_id=0, batch_size=batch_size)  # pads are masked: any id
    return (logits.argmax(-1), logits) if return_logits else logits.argmax(-1)


# ----------------------------------------------------------------------------- one run
@dataclass
class FinetuneConfig:
    method: str  # "head", "full" or "lora"
    r: int | None = None  # LoRA's rank (method "lora" only)
    alpha: float = 16.0  # LoRA's alpha: the update is scaled by alpha / r
    targets: tuple[str, ...] = TARGETS  # which Linears get adapters (name suffixes)
    steps: int = 60  # optimizer steps
    batch_size: int = 16  # sentences per step
    lr: float | None = None  # None: LRS[method]
    seed: int = 0  # the head's initialisation, the adapters' A and the batch order

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r}: expected one of {', '.join(METHODS)}")
        if (self.method == "lora") != (self.r is not None):
            raise ValueError(f"r={self.r!r}: expected a rank for method='lora' and None for {self.method!r}")
        if self.r is not None and (isinstance(self.r, bool) or not isinstance(self.r, int) or self.r < 1):
            raise ValueError(f"r={self.r!r}: expected a positive integer rank")
        for name in ("steps", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}={v!r}: expected a positive integer")
        self.targets = tuple(self.targets)

    @property
    def label(self) -> str:
        return f"LoRA r={self.r}" if self.method == "lora" else {"head": "head-only", "full": "full fine-tuning"}[self.method]


def prepare(model: EncoderClassifier, cfg: FinetuneConfig) -> int:
    """Set what trains for the method (adapters are added for "lora"); -> the trainable count."""
    if cfg.method == "full":
        return freeze_all_but(model, [""])  # every name starts with ""
    if cfg.method == "head":
        return freeze_all_but(model, ["head"])
    apply_lora(model.encoder, cfg.targets, cfg.r, cfg.alpha)  # freezes the encoder's other weights
    model.head.requires_grad_(True)  # the new head always trains (peft's modules_to_save)
    return count_trainable(model)


def attention_matrices(encoder: Encoder) -> dict[str, torch.Tensor]:
    """W_q, W_k, W_v (the three row blocks of the fused c_attn) and W_o (c_proj) of every block, [C, C] each."""
    out = {}
    for i, block in enumerate(encoder.transformer.h):
        attn = block.attn
        w = (attn.c_attn.base if isinstance(attn.c_attn, LoRALinear) else attn.c_attn).weight  # (3C, C)
        for name, part in zip("qkv", w.detach().chunk(3, dim=0)):
            out[f"h.{i}.W_{name}"] = part.clone()
        wo = (attn.c_proj.base if isinstance(attn.c_proj, LoRALinear) else attn.c_proj).weight
        out[f"h.{i}.W_o"] = wo.detach().clone()
    return out


def attention_updates(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> dict[str, list[float]]:
    """name -> singular values (descending) of ΔW = W_after - W_before, in float64."""
    return {k: torch.linalg.svdvals((after[k] - before[k]).double()).tolist() for k in before}


def energy_share(s: Sequence[float], k: int) -> float:
    """Share of ||ΔW||_F^2 = sum of s_i^2 held by the k largest singular values (what a rank-k matrix can keep)."""
    s2 = torch.tensor(s, dtype=torch.float64) ** 2
    return float(s2[:k].sum() / s2.sum())


def energy_rank(s: Sequence[float], share: float = 0.9) -> int:
    """The smallest k whose top-k singular values hold `share` of the energy."""
    if not 0 < share <= 1:
        raise ValueError(f"share={share!r}: expected a fraction in (0, 1]")
    s2 = torch.tensor(s, dtype=torch.float64) ** 2
    cum = s2.cumsum(0) / s2.sum()
    return int((cum < share - 1e-12).sum()) + 1


def lora_update_norm(model: nn.Module) -> float:
    """sqrt(sum over adapters of ||(alpha / r) B A||_F^2): how far LoRA moved the weights."""
    return math.sqrt(sum(float(m.delta_weight().detach().double().pow(2).sum()) for m in model.modules() if isinstance(m, LoRALinear)))


def finetune(base: EncoderClassifier, data: dict, cfg: FinetuneConfig, pad_id: int, with_spectra: bool = True) -> tuple[EncoderClassifier, dict]:
    """Train a copy of `base` by cfg's method on data["train"], score it on data["test"] -> (model, record).
    data: {"train", "val", "test"}: lists of (ids, label) from `encode`."""
    torch.manual_seed(cfg.seed)
    model = copy.deepcopy(base)
    nn.init.normal_(model.head.weight, std=0.02)  # a fresh head for this seed
    nn.init.zeros_(model.head.bias)
    before = attention_matrices(model.encoder) if cfg.method == "full" and with_spectra else None
    trainable = prepare(model, cfg)
    lr = cfg.lr if cfg.lr is not None else LRS[cfg.method]
    tc = TrainConfig(max_steps=cfg.steps, batch_size=cfg.batch_size, lr=lr, min_lr=lr, warmup_steps=0, weight_decay=0.0,
                     beta2=0.999, grad_clip=1.0, eval_interval=cfg.steps, eval_iters=max(1, len(data["val"]) // cfg.batch_size),
                     log_interval=cfg.steps, device="cpu", seed=cfg.seed, progress=False)
    objective = EncoderClassification(data["train"], data["val"], pad_id, seed=cfg.seed)
    t0 = time.perf_counter()
    trainer = Trainer(model, objective, tc)
    result = trainer.fit()
    seconds = time.perf_counter() - t0
    pred = predict(model, data["test"])
    gold = torch.tensor([y for _, y in data["test"]])
    k, n = int((pred == gold).sum()), len(gold)
    lo, hi = wilson_interval(k, n)
    if cfg.method == "lora":
        shipped = {**lora_state_dict(model), **{f"head.{k}": v for k, v in model.head.state_dict().items()}}
    elif cfg.method == "head":
        shipped = {f"head.{k}": v for k, v in model.head.state_dict().items()}
    else:
        shipped = dict(model.state_dict())
    with tempfile.TemporaryDirectory() as tmp:
        file = save_adapter(shipped, Path(tmp) / "adapter.safetensors")
    record = dict(label=cfg.label, **asdict(cfg), lr_used=lr, trainable=trainable, total=sum(p.numel() for p in model.parameters()),
                  trainable_tensors=trainable_tensors(model), correct=k, n=n, accuracy=k / n, ci=[lo, hi],
                  val_accuracy=result.metrics.get("val_accuracy"), final_train_loss=trainer.history[-1]["train_loss"] if trainer.history else None,
                  seconds=seconds, adapter_bytes=file["bytes"], adapter_payload=file["payload"],
                  adamw_bytes=adamw_state_bytes(trainer.optimizer), adamw_bytes_formula=adamw_bytes(trainable, trainable_tensors(model)),
                  update_norm=lora_update_norm(model) if cfg.method == "lora" else None)
    record["targets"] = list(cfg.targets)
    if before is not None:
        record["spectra"] = attention_updates(before, attention_matrices(model.encoder))
        record["update_norm"] = math.sqrt(sum(sum(v * v for v in s) for s in record["spectra"].values()))
    return model, record


# ----------------------------------------------------------------------------- the sweep
@dataclass
class SweepConfig:
    ranks: tuple[int, ...] = (1, 2, 4, 8, 16)  # LoRA ranks
    seeds: tuple[int, ...] = (0, 1)  # every method and rank once per seed
    steps: int = 30  # optimizer steps per run
    batch_size: int = 16  # sentences per step
    alpha: float = 16.0  # LoRA's alpha (the same for every rank: the scale alpha / r falls with r)
    max_length: int = 48  # WordPiece tokens per sentence at most ([CLS] and [SEP] included)
    n_train: int | None = None  # None: the whole training split
    n_val: int = 64  # validation sentences (reported, never used to choose)
    n_test: int | None = None  # None: the whole test split
    source: str = "auto"  # "uci", "procedural" or "auto" (llmlab.text.sentiment.load_sentiment)
    lrs: dict = field(default_factory=lambda: dict(LRS))  # learning rate per method

    def runs(self) -> list[FinetuneConfig]:
        out = []
        for seed in self.seeds:
            common = dict(steps=self.steps, batch_size=self.batch_size, seed=seed, alpha=self.alpha)
            out.append(FinetuneConfig("head", lr=self.lrs["head"], **common))
            out.append(FinetuneConfig("full", lr=self.lrs["full"], **common))
            out += [FinetuneConfig("lora", r=r, lr=self.lrs["lora"], **common) for r in self.ranks]
        return out


def sweep_data(cfg: SweepConfig, tok) -> tuple[dict, str]:
    """The split (lesson 12's: stratified 70 / 15 / 15, seed 0), cut to the config's sizes and encoded -> (data, note)."""
    parts, note = lesson_data(cfg.source)
    data = {"train": encode(tok, parts["train"][: cfg.n_train], cfg.max_length), "val": encode(tok, parts["val"][: cfg.n_val], cfg.max_length),
            "test": encode(tok, parts["test"][: cfg.n_test], cfg.max_length)}
    return data, note


def sweep_path(cfg: SweepConfig, note: str, data: dict) -> Path:
    digest = hashlib.sha256()
    digest.update(json.dumps({"format": FORMAT, "config": asdict(cfg), "note": note}, sort_keys=True, default=list).encode())
    for part in ("train", "val", "test"):
        for ids, y in data[part]:
            digest.update(ids.numpy().tobytes() + bytes([y]))
    return cache_dir() / "results" / f"lora-sweep-{digest.hexdigest()[:16]}.json"


def lora_sweep(cfg: SweepConfig, load_encoder: Callable[[], tuple[Encoder, object]], say: Callable[[str], None] = print) -> dict:
    """Every run of cfg (cached): {"note", "records": [record, ...], "seconds"}. load_encoder() -> (encoder, tokenizer)."""
    encoder, tok = load_encoder()
    data, note = sweep_data(cfg, tok)
    path = sweep_path(cfg, note, data)
    if path.is_file():
        try:
            cached = json.loads(path.read_text(encoding="utf-8"))
            say(f"loaded {len(cached['records'])} runs from the cache ({path.name}; they took {cached['seconds']:.0f} s)")
            return cached
        except (ValueError, KeyError):
            pass  # unreadable: run again
    say(f"{note}; {len(data['train'])} train / {len(data['val'])} val / {len(data['test'])} test sentences")
    base = EncoderClassifier(encoder.float())
    t0, records = time.perf_counter(), []
    for run in cfg.runs():
        _, rec = finetune(base, data, run, tok.pad_id)
        records.append(rec)
        say(f"  seed {run.seed} {rec['label']:<17} {rec['accuracy']:6.1%}  [{rec['ci'][0]:.1%}, {rec['ci'][1]:.1%}]  "
            f"{rec['trainable']:>10,} trainable  {rec['seconds']:5.1f} s")
    out = {"note": note, "config": asdict(cfg), "records": records, "seconds": time.perf_counter() - t0,
           "sizes": {k: len(v) for k, v in data.items()}}
    write_atomic(path, lambda p: Path(p).write_text(json.dumps(out), encoding="utf-8"))
    return out


def summarise(records: list[dict]) -> list[dict]:
    """One row per method and rank, in the order of the runs: each seed's accuracy with its Wilson interval
    (over that seed's test predictions: the seeds share the test sentences, so their counts are not pooled),
    the mean over seeds, and the (seed-independent) trainable count, adapter bytes and AdamW bytes."""
    rows: dict[str, dict] = {}
    for rec in records:
        row = rows.setdefault(rec["label"], {"label": rec["label"], "method": rec["method"], "r": rec["r"], "trainable": rec["trainable"],
                                             "adapter_bytes": rec["adapter_bytes"], "adamw_bytes": rec["adamw_bytes"], "n": rec["n"],
                                             "seeds": [], "update_norm": []})
        row["seeds"].append({"seed": rec["seed"], "accuracy": rec["accuracy"], "ci": rec["ci"], "correct": rec["correct"]})
        row["update_norm"].append(rec["update_norm"])
    for row in rows.values():
        row["accuracy"] = sum(s["accuracy"] for s in row["seeds"]) / len(row["seeds"])
    return list(rows.values())


# ----------------------------------------------------------------------------- alpha / r on a toy
def alpha_rule_toy(ranks: Sequence[int] = (1, 2, 4, 8, 16), lrs: Sequence[float] = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1),
                   rule: str = "alpha/r", alpha: float = 4.0, steps: int = 100, d_in: int = 64, d_out: int = 48,
                   n: int = 256, seed: int = 0) -> dict[int, list[float]]:
    """Fit y = (W + u v^T) x with LoRA on a frozen Linear W, Adam for `steps` at each lr -> {r: [final MSE per lr]}.

    rule "alpha/r": the update is scaled by alpha / r (LoRA's); "fixed": by alpha whatever the rank
    (alpha grows with r, as a recipe "alpha = 2r" does). The target update is rank 1, so every rank can fit it:
    what differs is how fast one learning rate gets there."""
    if rule not in ("alpha/r", "fixed"):
        raise ValueError(f"rule={rule!r}: expected 'alpha/r' or 'fixed'")
    g = torch.Generator().manual_seed(seed)
    base = nn.Linear(d_in, d_out)
    with torch.no_grad():
        base.weight.copy_(torch.randn(d_out, d_in, generator=g) / math.sqrt(d_in))
        base.bias.zero_()
    u, v = torch.randn(d_out, 1, generator=g), torch.randn(1, d_in, generator=g) / math.sqrt(d_in)
    x = torch.randn(n, d_in, generator=g)  # (n, in)
    with torch.no_grad():
        y = base(x) + x @ (u @ v).T  # (n, out): the base plus a rank-1 change
    out: dict[int, list[float]] = {}
    for r in ranks:
        losses = []
        for lr in lrs:
            torch.manual_seed(seed + r)  # A's initialisation: the same for every lr (and for both rules)
            layer = LoRALinear(copy.deepcopy(base), r, alpha if rule == "alpha/r" else alpha * r)
            opt = torch.optim.Adam([layer.lora_A.weight, layer.lora_B.weight], lr=lr)
            for _ in range(steps):
                loss = F.mse_loss(layer(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
            with torch.no_grad():
                final = F.mse_loss(layer(x), y).item()
            losses.append(final if math.isfinite(final) else float("inf"))
        out[r] = losses
    return out
