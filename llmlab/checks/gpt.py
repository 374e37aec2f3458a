"""Checks for chapter 06, the whole GPT: `gpt.GPT`, the learner's assembly of token and
position embeddings, a stack of `llmlab.models.gpt.Block`s, a final LayerNorm and a tied
output layer, returning (logits, loss).

Fixed weights are loaded into the learner's model by name. The learner's layout is
nanoGPT's; the course's reference keeps learned positions in a positional module, so one
translation table maps the two (`transformer.wpe` <-> `transformer.pos.wpe`). The vocabulary
(11), context (8), width (12), heads (3) and layers (2) all differ, so a swapped axis shows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from llmlab.checks.block import block_weights
from llmlab.checks.core import CheckFailed, Exercise, Mistake, Probe, close, randn, register
from llmlab.checks.modules import load_weights
from llmlab.models import gpt as ref

# the learner's name -> where the course's GPT keeps the same tensor
ALIASES = {"transformer.wpe.weight": "transformer.pos.wpe.weight"}


def _cfg(V=11, T=8, L=2, H=3, C=12) -> dict:
    # plain data, not a GPTConfig: probe inputs cross the grader's sandbox boundary as JSON + tensors
    return dict(vocab_size=V, block_size=T, n_layer=L, n_head=H, n_embd=C)


def _gpt_weights(g, cfg: dict) -> dict[str, torch.Tensor]:
    C = cfg["n_embd"]
    w = {"transformer.wte.weight": randn(g, cfg["vocab_size"], C), "transformer.wpe.weight": randn(g, cfg["block_size"], C, scale=0.5)}
    for i in range(cfg["n_layer"]):
        w.update({f"transformer.h.{i}.{k}": v for k, v in block_weights(g, C).items()})
    w["transformer.ln_f.weight"] = 1.0 + randn(g, C, scale=0.3)
    w["transformer.ln_f.bias"] = randn(g, C, scale=0.3)
    return w


def _load(m: nn.Module, w: dict[str, torch.Tensor]) -> nn.Module:
    # an untied lm_head gets fixed values of its own, so outputs are reproducible either way
    return load_weights(m, w, "GPT", aliases=ALIASES, extra_note=" (lm_head has no bias)",
                        fill={"lm_head.weight": lambda shape: randn(torch.Generator().manual_seed(7), *w["transformer.wte.weight"].shape)},
                        naming="name the parts as nanoGPT does: transformer.wte, transformer.wpe, transformer.h "
                               "(a ModuleList of Blocks), transformer.ln_f, lm_head")


def _build(cls, cfg: dict, w: dict[str, torch.Tensor] | None = None) -> nn.Module:
    m = cls(ref.GPTConfig(**cfg))
    return _load(m, w).eval() if w is not None else m


def _forward(cls, cfg, w, idx, targets=None):
    m = _build(cls, cfg, w)
    with torch.no_grad():
        out = m(idx) if targets is None else m(idx, targets)
    if not isinstance(out, tuple) or len(out) != 2:
        raise CheckFailed(f"forward must return a pair (logits, loss), got {type(out).__name__}")
    return out


def _inputs(cfg_kw=None, B=2, T=5, targets=False):
    def make(g):
        cfg = _cfg(**(cfg_kw or {}))
        idx = torch.randint(cfg["vocab_size"], (B, T), generator=g)
        tgt = torch.randint(cfg["vocab_size"], (B, T), generator=g) if targets else None
        return cfg, _gpt_weights(g, cfg), idx, tgt
    return make


def _logits(cls, cfg, w, idx, targets):
    return _forward(cls, cfg, w, idx, targets)[0]


def _loss(cls, cfg, w, idx, targets):
    loss = _forward(cls, cfg, w, idx, targets)[1]
    if not isinstance(loss, torch.Tensor):
        raise CheckFailed(f"with targets given, the loss must be a tensor (F.cross_entropy of logits and targets), got {type(loss).__name__}")
    return loss


def _loss_is_none(cls, cfg, w, idx, targets):
    return torch.tensor(_forward(cls, cfg, w, idx, None)[1] is None)


def _future(cls, cfg, w, idx, targets):
    m = _build(cls, cfg, w)
    idx2 = idx.clone()
    idx2[:, 3:] = (idx2[:, 3:] + 1) % cfg["vocab_size"]
    with torch.no_grad():
        return m(idx2)[0][:, :3] - m(idx)[0][:, :3]


def _tied(cls, cfg, w, idx, targets):
    m = _build(cls, cfg)
    try:
        head, wte = m.get_parameter("lm_head.weight"), m.get_parameter("transformer.wte.weight")
    except AttributeError as e:
        raise CheckFailed(f"your GPT needs transformer.wte (an nn.Embedding) and lm_head (an nn.Linear): {e}") from None
    return torch.tensor(head is wte)


def _same(what):
    def compare(got, expected, args=None):
        if bool(got) != bool(expected):
            raise CheckFailed(what)
    return compare


def _gpt_variant(kind):
    class GPT(nn.Module):
        def __init__(self, cfg):
            super().__init__()
            self.config = cfg
            self.transformer = nn.ModuleDict(dict(
                wte=nn.Embedding(cfg.vocab_size, cfg.n_embd),
                wpe=nn.Embedding(cfg.block_size, cfg.n_embd),
                h=nn.ModuleList([ref.Block(cfg) for _ in range(cfg.n_layer)]),
                ln_f=ref.LayerNorm(cfg.n_embd),
            ))
            self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
            if kind != "untied":
                self.lm_head.weight = self.transformer.wte.weight

        def forward(self, idx, targets=None):
            B, T = idx.shape
            x = self.transformer.wte(idx)
            if kind != "no_positions":
                x = x + self.transformer.wpe(torch.arange(T))
            for block in self.transformer.h:
                x = block(x)
            if kind != "no_ln_f":
                x = self.transformer.ln_f(x)
            logits = self.lm_head(x)
            loss = None
            if targets is not None:
                flat, t = logits.view(B * T, -1), targets.view(-1)
                if kind == "sum_loss":
                    loss = F.cross_entropy(flat, t, reduction="sum")
                elif kind == "softmax_loss":
                    loss = F.cross_entropy(F.softmax(flat, dim=-1), t)
                elif kind == "nll_of_logits":
                    loss = F.nll_loss(flat, t)
                else:
                    loss = F.cross_entropy(flat, t)
            return logits, loss
    return GPT


register(Exercise(
    id="gpt.GPT",
    signature="GPT(cfg: GPTConfig); forward(idx[B, T], targets=None) -> (logits[B, T, V], loss or None); "
              "parts transformer.wte, transformer.wpe, transformer.h, transformer.ln_f, lm_head (tied to wte)",
    reference=ref.GPT,
    kind="class",
    points=4,
    probes=[
        Probe("logits for idx[2, 5] (V=11, block_size=8, 2 layers)", _inputs(), run=_logits),
        Probe("a full context: idx[3, 8] with T = block_size", _inputs(B=3, T=8), run=_logits),
        Probe("another model: V=13, block_size=6, 1 layer, 2 heads", _inputs(dict(V=13, T=6, L=1, H=2, C=8), B=2, T=6), run=_logits),
        Probe("the loss with targets: mean cross-entropy over all B*T positions", _inputs(targets=True), run=_loss,
              compare=close(atol=1e-5, rtol=1e-5, what="loss")),
        Probe("without targets the loss is None", _inputs(), run=_loss_is_none, compare=_same("forward(idx) without targets must return (logits, None)")),
        Probe("lm_head shares its weight with wte (weight tying)", _inputs(), run=_tied,
              compare=_same("lm_head.weight must be the very same Parameter as transformer.wte.weight: self.lm_head.weight = self.transformer.wte.weight")),
        Probe("earlier logits ignore later tokens (causality)", _inputs(T=6), run=_future),
    ],
    mistakes=[
        Mistake("tie the output layer to the token embedding: self.lm_head.weight = self.transformer.wte.weight", _gpt_variant("untied")),
        Mistake("add the learned position embeddings: x = wte(idx) + wpe(torch.arange(T))", _gpt_variant("no_positions")),
        Mistake("apply the final LayerNorm ln_f after the last block, before lm_head", _gpt_variant("no_ln_f")),
        Mistake("the loss is the mean cross-entropy over all B*T positions (F.cross_entropy's default reduction), not the sum", _gpt_variant("sum_loss")),
        Mistake("F.cross_entropy takes raw logits (it applies log-softmax itself); do not softmax first", _gpt_variant("softmax_loss")),
        Mistake("F.nll_loss expects log-probabilities; use F.cross_entropy on the logits", _gpt_variant("nll_of_logits")),
    ],
))
