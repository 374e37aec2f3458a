"""A task with a known answer for activation patching: indirect-object identification (Wang et al.
2022, "Interpretability in the wild"), shrunk to a made-up language a small GPT learns in seconds.

Every prompt has the same 12 word-tokens, so positions line up across prompts:

    BOS  A  and  B  went  to  the  PLACE  .  S  gave  it  to   -> the other name
     0   1   2   3   4    5   6     7     8  9  10    11  12

A and B are two different names, S is one of them (the subject, said again), and the answer is the
name that is not S. The corrupted prompt says the other name at position 9, which flips the answer:
patching a clean activation into the corrupted run and measuring how much of the logit difference
(answer minus other name) comes back locates where "which name was repeated" is carried.

`train_ioi(cfg)` trains the course GPT (llmlab.models.gpt, 2 layers with MLPs) on random prompts
once and caches it; in fast mode a shorter run. Left out on purpose: natural-language IOI on GPT-2,
its name movers and S-inhibition heads, path patching.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from llmlab.cache import cache_dir, write_atomic
from llmlab.device import fast_mode
from llmlab.models.gpt import GPT, GPTConfig

FORMAT = 1
WORDS = ["<bos>", "and", "went", "to", "the", ".", "gave", "it"]
PLACES = ["store", "park", "school", "beach", "office", "garden"]
NAMES = ["Ann", "Bob", "Cem", "Dan", "Eve", "Fay", "Gus", "Hal", "Ida", "Jon", "Kim", "Lea", "Max", "Ned", "Ola", "Pat"]
VOCAB = WORDS + PLACES + NAMES
ID = {w: i for i, w in enumerate(VOCAB)}
S2 = 9  # the position of the repeated name
POSITIONS = ["BOS", "A", "and", "B", "went", "to", "the", "PLACE", ".", "S", "gave", "it", "to"]


@dataclass
class IOIConfig:
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    steps: int = 600
    batch_size: int = 64
    lr: float = 3e-3
    seed: int = 0


FAST = IOIConfig(steps=80)


def make_prompts(n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """n random prompts: {"clean" [n, 13], "corrupted" [n, 13] (the other name at S2), "answer" [n]
    (the clean answer), "other" [n] (the corrupted run's answer)}."""
    names = torch.stack([torch.randperm(len(NAMES), generator=generator)[:2] for _ in range(n)]) + ID[NAMES[0]]  # (n, 2)
    a, b = names[:, 0], names[:, 1]
    place = torch.randint(len(PLACES), (n,), generator=generator) + ID[PLACES[0]]
    s_is_a = torch.rand(n, generator=generator) < 0.5
    s = torch.where(s_is_a, a, b)
    io = torch.where(s_is_a, b, a)  # the indirect object: the name not repeated
    w = {k: torch.full((n,), ID[k]) for k in WORDS}
    clean = torch.stack([w["<bos>"], a, w["and"], b, w["went"], w["to"], w["the"], place, w["."], s, w["gave"], w["it"], w["to"]], 1)
    corrupted = clean.clone()
    corrupted[:, S2] = io
    return {"clean": clean, "corrupted": corrupted, "answer": io, "other": s}


def ioi_model(cfg: IOIConfig) -> GPT:
    return GPT(GPTConfig(vocab_size=len(VOCAB), block_size=len(POSITIONS), n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd, bias=False))


def cache_path(cfg: IOIConfig) -> Path:
    key = hashlib.sha256(json.dumps({"format": FORMAT, "config": asdict(cfg), "vocab": VOCAB}, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / "models" / f"ioi-{key}.pt"


def accuracy(model: GPT, prompts: dict[str, torch.Tensor]) -> float:
    """Share of clean prompts whose most likely next token is the answer."""
    with torch.no_grad():
        logits, _ = model(prompts["clean"])
    return (logits[:, -1].argmax(-1) == prompts["answer"]).float().mean().item()


def train_ioi(cfg: IOIConfig | None = None, verbose: bool = True) -> tuple[GPT, dict]:
    """(model in eval mode, {"config", "seconds", "accuracy" on 1,000 fresh prompts}); cached."""
    cfg = cfg or (FAST if fast_mode() else IOIConfig())
    path = cache_path(cfg)
    model = ioi_model(cfg)
    if path.exists():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(saved["state_dict"])
        return model.eval(), json.loads(saved["record"])
    if verbose:
        print(f"training the IOI model ({cfg.steps} steps, first use; then cached) ...")
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        model = ioi_model(cfg)
    g = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    t0 = time.perf_counter()
    for _ in range(cfg.steps):
        p = make_prompts(cfg.batch_size, g)
        logits, _ = model(p["clean"])
        loss = F.cross_entropy(logits[:, -1], p["answer"])  # only the answer is trained: the rest is template
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    record = {"config": asdict(cfg), "seconds": time.perf_counter() - t0,
              "accuracy": accuracy(model, make_prompts(1000, torch.Generator().manual_seed(cfg.seed + 99)))}
    write_atomic(path, lambda f: torch.save({"state_dict": model.state_dict(), "record": json.dumps(record)}, f))
    if verbose:
        print(f"trained in {record['seconds']:.0f} s; accuracy {record['accuracy']:.1%}; cached")
    return model, record
