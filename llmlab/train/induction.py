"""Induction heads on a model trained in a minute: a 2-layer, attention-only transformer learns to
continue repeated random segments (Olsson et al. 2022, "In-context learning and induction heads").

The data: BOS, then a random segment of n tokens (n drawn per sequence), the same segment again,
then random tokens up to the context length. Nothing but the earlier copy predicts the later one,
and because n varies, no fixed positional offset does either: the model has to find the earlier
occurrence of the current token and copy what came after it. That takes two heads in two layers,
a previous-token head in layer 0 (each position learns what came before it) and an induction head
in layer 1 (a query looks for the key "preceded by my token"). Its training curve shows the phase
change: the loss on the repeated half sits at ln(V) and then drops within a few hundred steps.

`attn_only_gpt(cfg)` is the course GPT (llmlab.models.gpt) with every MLP taken out (the residual
stream is embeddings plus attention outputs only, as in Elhage et al. 2021's attention-only models);
all the GPT's hook points stay. `train_induction(cfg)` trains it once and caches the weights and the
curve in the course cache, keyed by the recipe; in fast mode a shorter run of the same shapes.

Left out on purpose: the MLP-bearing and deeper models of the papers, their natural-language data,
and per-step checkpoints (the curve records scores at a few steps instead).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from llmlab.cache import cache_dir, write_atomic
from llmlab.device import fast_mode
from llmlab.models.gpt import GPT, GPTConfig
from llmlab.train.interp import induction_score, patterns, prev_token_score

FORMAT = 1  # bump when the cached file's meaning changes
BOS = 0  # token 0 opens every sequence; the random tokens are 1 .. vocab - 1


@dataclass
class InductionConfig:
    vocab: int = 64  # tokens, BOS included
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    pos_encoding: str = "rope"  # relative positions make "the token before me" one pattern for every position
    rope_base: float = 100.0  # with D = 16 and the usual 10000, too few RoPE frequencies turn fast enough to single out
    # the token one back, and the heads settle on offsets of 4 to 6 instead (an induction circuit shifted by as much)
    seq_len: int = 20  # the segment length of the evaluation sequences: T = 1 + 2 * seq_len
    min_len: int = 4  # training segments have n in [min_len, seq_len]
    steps: int = 1200
    batch_size: int = 64
    lr: float = 3e-3
    eval_every: int = 25
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("vocab", "n_layer", "n_head", "n_embd", "seq_len", "min_len", "steps", "batch_size", "eval_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}={v!r}: expected a positive integer")
        if not 1 <= self.min_len <= self.seq_len:
            raise ValueError(f"min_len={self.min_len}: expected 1 <= min_len <= seq_len={self.seq_len}")
        if self.vocab < 3:
            raise ValueError(f"vocab={self.vocab}: expected at least 3 (BOS and two tokens)")

    @property
    def T(self) -> int:
        return 1 + 2 * self.seq_len


FAST = InductionConfig(steps=60, eval_every=20)  # fast mode: the same shapes, too few steps for induction heads


class NoMLP(nn.Module):
    """Stands in for a block's MLP: adds nothing to the residual stream."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


def attn_only_gpt(cfg: InductionConfig) -> GPT:
    """The course GPT with learned positions and no MLPs: x = x + attn(ln_1(x)) per block, then ln_f."""
    gpt = GPT(GPTConfig(vocab_size=cfg.vocab, block_size=cfg.T, n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd,
                        pos_encoding=cfg.pos_encoding, rope_base=cfg.rope_base, bias=False, tied=False))
    for block in gpt.transformer.h:
        block.mlp, block.ln_2 = NoMLP(), nn.Identity()  # mlp_out is then zero and resid_post = resid_mid
    return gpt


def repeated_tokens(batch: int, seq_len: int, vocab: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """BOS, a random segment of seq_len tokens, the same segment: LongTensor[batch, 1 + 2 * seq_len]."""
    seg = torch.randint(1, vocab, (batch, seq_len), generator=generator)  # (B, n)
    return torch.cat([torch.full((batch, 1), BOS), seg, seg], dim=1)  # (B, 1 + 2n)


def training_batch(cfg: InductionConfig, generator: torch.Generator) -> torch.Tensor:
    """Sequences of length T: BOS and random tokens, in which a segment of random length n in
    [min_len, seq_len], starting anywhere, is repeated after a random gap. Neither where the copy
    starts nor how far back its source lies is fixed: only the tokens themselves say it."""
    B, T = cfg.batch_size, cfg.T
    x = torch.randint(1, cfg.vocab, (B, T), generator=generator)
    x[:, 0] = BOS
    n = torch.randint(cfg.min_len, cfg.seq_len + 1, (B,), generator=generator)  # (B,)
    room = T - 1 - 2 * n  # free positions left over: split at random into before, gap and after
    a = 1 + (torch.rand(B, generator=generator) * (room + 1)).long()  # the source starts at a ...
    gap = (torch.rand(B, generator=generator) * (room - (a - 1) + 1)).long()
    b = a + n + gap  # ... and the copy at b
    pos = torch.arange(T).unsqueeze(0)  # (1, T)
    in_copy = (pos >= b.unsqueeze(1)) & (pos < (b + n).unsqueeze(1))  # (B, T)
    src = (pos - (b - a).unsqueeze(1)).clamp(min=0)  # (B, T): the copy's position t reads t - (b - a)
    return torch.where(in_copy, x.gather(1, src), x)


def per_token_loss(model: nn.Module, idx: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of predicting idx[:, t + 1] at every t: Tensor[B, T - 1]."""
    logits, _ = model(idx)  # (B, T, V)
    return F.cross_entropy(logits[:, :-1].transpose(1, 2), idx[:, 1:], reduction="none")  # (B, T - 1)


def _key(cfg: InductionConfig) -> str:
    blob = json.dumps({"format": FORMAT, "config": asdict(cfg), "torch": torch.__version__.split("+")[0]}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cache_path(cfg: InductionConfig) -> Path:
    return cache_dir() / "models" / f"induction-{_key(cfg)}.pt"


def train_induction(cfg: InductionConfig | None = None, verbose: bool = True) -> tuple[GPT, dict]:
    """(model in eval mode, record) for the recipe; trained once, then read from the cache.
    record: {"config", "seconds", "history": [{"step", "loss_first", "loss_repeat", "prev", "induction"}]}
    with the losses on the first and second copies of a fixed evaluation batch and each score's best head."""
    cfg = cfg or (FAST if fast_mode() else InductionConfig())
    path = cache_path(cfg)
    model = attn_only_gpt(cfg)
    if path.exists():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(saved["state_dict"])
        return model.eval(), json.loads(saved["record"])
    if verbose:
        print(f"training the 2-layer attention-only model ({cfg.steps} steps, first use; then cached) ...")
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        model = attn_only_gpt(cfg)
    g = torch.Generator().manual_seed(cfg.seed)
    eval_idx = repeated_tokens(128, cfg.seq_len, cfg.vocab, torch.Generator().manual_seed(cfg.seed + 1))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01, betas=(0.9, 0.98))
    history, t0, n = [], time.perf_counter(), cfg.seq_len
    for step in range(cfg.steps + 1):
        if step % cfg.eval_every == 0 or step == cfg.steps:
            model.eval()
            with torch.no_grad():
                loss = per_token_loss(model, eval_idx).mean(0)  # (T - 1,): position t predicts token t + 1
            pat = patterns(model, eval_idx)  # (L, H, T, T)
            history.append({"step": step, "loss_first": loss[:n].mean().item(), "loss_repeat": loss[n + 1:].mean().item(),
                            "prev": prev_token_score(pat)[0].max().item(), "induction": induction_score(pat, n)[-1].max().item()})
            model.train()
        if step == cfg.steps:
            break
        lr = cfg.lr * min(1.0, (step + 1) / 50)  # a short warmup, then constant
        for group in opt.param_groups:
            group["lr"] = lr
        idx = training_batch(cfg, g)
        loss = per_token_loss(model, idx).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    record = {"config": asdict(cfg), "seconds": time.perf_counter() - t0, "history": history}
    write_atomic(path, lambda p: torch.save({"state_dict": model.state_dict(), "record": json.dumps(record)}, p))
    if verbose:
        print(f"trained in {record['seconds']:.0f} s; cached")
    return model.eval(), record
