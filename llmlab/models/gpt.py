"""The GPT: token embeddings -> N transformer blocks -> a final norm -> logits over the vocabulary.

Follows GPT-2 (Radford et al. 2019) as nanoGPT writes it: pre-LN blocks, GELU MLP of
width 4C, weight tying between the token embedding and the output layer, and GPT-2's
initialisation. Names match GPT-2's checkpoint (`wte`, `c_attn`, `c_fc`, `c_proj`,
`ln_f`) except learned positions, which live at `pos.wpe`.

The same class is a Llama (Touvron et al. 2023) when its config says so: RMSNorm, RoPE, SwiGLU,
no biases, grouped-query attention (`n_kv_head`). That is how the course runs SmolLM2's real
weights (llmlab.models.smollm2), with Hugging Face's logits.

`count_parameters` is the size in closed form (lesson 05), `parameter_breakdown` where a built
model's parameters sit (lesson 09).

Left out on purpose: loading OpenAI's weights, mixture of experts, sliding-window attention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from llmlab.config import Settings
from llmlab.nn.attention import KVCache
from llmlab.nn.block import Block
from llmlab.nn.mlp import ACTIVATIONS, MLP, swiglu_hidden
from llmlab.nn.norms import NORMS, LayerNorm, RMSNorm, layer_norm, make_norm
from llmlab.nn.positional import POS_ENCODINGS, ROPE_LAYOUTS, make_positional

# The GPT and its closed-form size, plus the parts it is built from (lesson 05 reaches them as
# `ref.LayerNorm`, `ref.MLP`, ... through this module; they live in llmlab.nn).
__all__ = ["GPT", "GPTConfig", "count_parameters", "parameter_breakdown", "run_trunk",
           "Block", "MLP", "LayerNorm", "RMSNorm", "layer_norm", "make_norm", "NORMS", "POS_ENCODINGS"]


@dataclass
class GPTConfig(Settings):
    vocab_size: int = 50257  # GPT-2's BPE vocabulary
    block_size: int = 1024  # the longest context the model sees (T max)
    n_layer: int = 12  # transformer blocks
    n_head: int = 12  # attention heads per block (H)
    n_kv_head: int | None = None  # key/value heads (H_kv), a divisor of n_head; fewer = grouped-query attention; None = n_head
    n_embd: int = 768  # model width (C); each head gets D = C / H
    dropout: float = 0.0  # on attention weights and residual branches; 0 for small data
    bias: bool = True  # biases in Linear layers and norms, as GPT-2
    tied: bool = True  # output layer shares the token embedding matrix (weight tying)
    pos_encoding: str = "learned"  # one of POS_ENCODINGS
    norm: str = "layernorm"  # one of NORMS
    prenorm: bool = True  # pre-LN (GPT-2) or post-LN (the original Transformer)
    rope_base: float = 10000.0  # base of the sinusoidal / RoPE frequencies
    rope_layout: str = "interleaved"  # RoPE's pairs: "interleaved" (x[2i], x[2i+1]) as the paper, "half" (x[i], x[i + D/2]) as HF Llama
    norm_eps: float = 1e-5  # the epsilon in the norms' sqrt(var + eps); Llamas store theirs (rms_norm_eps)
    activation: str = "gelu"  # the MLP's: "gelu", "gelu_tanh" (OpenAI's GPT-2), "swiglu" (Llama); see llmlab.nn.mlp
    mlp_hidden: int | None = None  # the MLP's inner width; None = 4C for GELU, llmlab.nn.mlp.swiglu_hidden(C) for SwiGLU
    fast_attention: bool = True  # use F.scaled_dot_product_attention

    def __post_init__(self) -> None:
        self.check_sizes()
        h_kv = self.n_kv_head
        if h_kv is not None and (isinstance(h_kv, bool) or not isinstance(h_kv, int) or h_kv < 1 or self.n_head % h_kv):
            raise ValueError(f"n_kv_head={h_kv!r}: expected None or a positive divisor of n_head={self.n_head} "
                             "(each key/value head serves n_head / n_kv_head query heads)")
        if self.rope_layout not in ROPE_LAYOUTS:
            raise ValueError(f"rope_layout={self.rope_layout!r}: expected one of {', '.join(ROPE_LAYOUTS)}")
        if isinstance(self.norm_eps, bool) or not isinstance(self.norm_eps, (int, float)) or not 0 < self.norm_eps < 1:
            raise ValueError(f"norm_eps={self.norm_eps!r}: expected a small positive number such as 1e-5")
        if self.pos_encoding == "rope" and (self.n_embd // self.n_head) % 2:
            raise ValueError(f"pos_encoding='rope' needs an even head width, but n_embd / n_head = {self.n_embd // self.n_head}")
        if self.pos_encoding == "sinusoidal" and self.n_embd % 2:
            raise ValueError(f"pos_encoding='sinusoidal' needs an even n_embd, got {self.n_embd}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout}: expected a probability in [0, 1)")
        if self.pos_encoding not in POS_ENCODINGS:
            raise ValueError(f"pos_encoding={self.pos_encoding!r}: expected one of {', '.join(POS_ENCODINGS)}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation={self.activation!r}: expected one of {', '.join(ACTIVATIONS)}")
        if self.mlp_hidden is not None and (isinstance(self.mlp_hidden, bool) or not isinstance(self.mlp_hidden, int) or self.mlp_hidden < 1):
            raise ValueError(f"mlp_hidden={self.mlp_hidden!r}: expected a positive integer or None (the activation's default width)")
        if self.norm not in NORMS:
            raise ValueError(f"norm={self.norm!r}: expected one of {', '.join(NORMS)}")



def init_gpt2_(model: nn.Module, n_layer: int) -> None:
    """GPT-2's initialisation, in place: every Linear and Embedding weight ~ N(0, 0.02), biases 0, then
    each residual branch's output projection (`c_proj`) ~ N(0, 0.02 / sqrt(2 * n_layer)), so the
    variance of the residual stream does not grow with depth (n_layer: the blocks the stream passes)."""

    def init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    model.apply(init)
    for name, p in model.named_parameters():
        if name.endswith("c_proj.weight"):
            nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))


# ----------------------------------------------------------------------------- the GPT
class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(cfg.vocab_size, cfg.n_embd),
                pos=make_positional(cfg.pos_encoding, block_size=cfg.block_size, n_embd=cfg.n_embd, n_head=cfg.n_head, base=cfg.rope_base,
                                    layout=cfg.rope_layout),
                drop=nn.Dropout(cfg.dropout),
                h=nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)]),
                # pre-LN leaves the residual stream un-normalised, so it needs a final norm; post-LN
                # blocks already end in one (ln_2), and a second would only repeat it
                ln_f=make_norm(cfg) if cfg.prenorm else nn.Identity(),
            )
        )
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tied:
            self.lm_head.weight = self.transformer.wte.weight  # one matrix, two uses
        for i, block in enumerate(self.transformer.h):
            block.attn.layer_idx = i
        init_gpt2_(self, cfg.n_layer)

    def num_parameters(self, non_embedding: bool = False) -> int:
        """Parameters, each shared tensor counted once. non_embedding drops positions and (untied) wte."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            pos = self.transformer.pos
            if hasattr(pos, "wpe"):
                n -= pos.wpe.weight.numel()
            if not self.config.tied:  # tied, wte is also the output layer's weight and stays counted
                n -= self.transformer.wte.weight.numel()
        return n

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: KVCache | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx: LongTensor[B, T] -> logits[B, T, V], and the mean cross-entropy if targets given."""
        if idx.dim() != 2:
            raise ValueError(f"idx: expected a LongTensor of shape (B, T), got shape {tuple(idx.shape)}")
        B, T = idx.shape
        past = cache.length if cache is not None else 0
        x = run_trunk(self.transformer, self.config, idx, cache)  # (B, T, C)
        x = self.transformer.ln_f(x)
        logits = self.lm_head(x)  # (B, T, V)
        if cache is not None:
            cache.length = past + T
        loss = None
        if targets is not None:
            if targets.shape != idx.shape:
                raise ValueError(f"targets: expected shape {tuple(idx.shape)} like idx, got {tuple(targets.shape)}")
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-100)
        return logits, loss


def run_trunk(transformer: nn.ModuleDict, cfg: GPTConfig, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
    """Token and position embeddings, dropout, then every block: idx[B, T] -> the residual stream
    x[B, T, C] before the final norm. The GPT and the models built on its trunk (SequenceClassifier)
    share it."""
    T = idx.size(1)
    past = cache.length if cache is not None else 0
    if past + T > cfg.block_size and cfg.pos_encoding == "learned":
        raise ValueError(f"idx: sequence length {past + T} exceeds block_size={cfg.block_size}")
    x = transformer.wte(idx)  # (B, T, C)
    pe = transformer.pos.embed(T, offset=past)  # (T, C), or None (RoPE and ALiBi act inside attention)
    if pe is not None:
        x = x + pe
    x = transformer.drop(x)
    for block in transformer.h:
        x = block(x, transformer.pos, cache)  # (B, T, C)
    return x


def count_parameters(vocab_size: int | GPTConfig, block_size: int | None = None, n_layer: int | None = None, n_embd: int | None = None,
                     tied: bool = True, bias: bool = True, *, n_head: int | None = None, n_kv_head: int | None = None, activation: str = "gelu",
                     mlp_hidden: int | None = None, norm: str = "layernorm", pos_encoding: str = "learned", prenorm: bool = True) -> int:
    """Closed-form parameter count of the course's GPT. With the defaults: learned positions,
    a 4x GELU MLP, LayerNorms and a final one (GPT-2). The keyword-only arguments are the
    GPTConfig fields that change the count; `count_parameters(cfg)` reads them all from a config.

    >>> count_parameters(50257, 1024, 12, 768)   # GPT-2 small
    124439808
    >>> count_parameters(49152, 8192, 30, 576, bias=False, n_head=9, n_kv_head=3, activation="swiglu",
    ...                  mlp_hidden=1536, norm="rmsnorm", pos_encoding="rope")   # SmolLM2-135M
    134515008
    """
    if isinstance(vocab_size, GPTConfig):
        cfg = vocab_size
        if (block_size, n_layer, n_embd) != (None, None, None):
            raise ValueError("count_parameters(cfg): a GPTConfig already holds every size; pass nothing else")
        return count_parameters(cfg.vocab_size, cfg.block_size, cfg.n_layer, cfg.n_embd, cfg.tied, cfg.bias, n_head=cfg.n_head, n_kv_head=cfg.n_kv_head,
                                activation=cfg.activation, mlp_hidden=cfg.mlp_hidden, norm=cfg.norm, pos_encoding=cfg.pos_encoding, prenorm=cfg.prenorm)
    if None in (block_size, n_layer, n_embd):
        raise ValueError(f"block_size={block_size}, n_layer={n_layer}, n_embd={n_embd}: expected integers (or one GPTConfig alone)")
    if n_kv_head is not None and n_head is None:
        raise ValueError(f"n_kv_head={n_kv_head}: needs n_head too (a key/value head is n_embd / n_head wide)")
    C, b = n_embd, int(bias)
    ln = C + b * C if norm == "layernorm" else C  # weight (+ bias); RMSNorm has no bias
    kv = C if n_kv_head is None else n_kv_head * (C // n_head)  # width of k (and of v): H_kv * D
    attn = C * (C + 2 * kv) + b * (C + 2 * kv) + C * C + b * C  # c_attn (q, k, v) + c_proj
    if activation == "swiglu":
        hidden = mlp_hidden or swiglu_hidden(C)
        mlp = 3 * C * hidden + b * (2 * hidden + C)  # gate_proj, up_proj + down_proj
    else:
        hidden = mlp_hidden or 4 * C
        mlp = 2 * C * hidden + b * (hidden + C)  # c_fc + c_proj
    per_layer = 2 * ln + attn + mlp
    embeddings = vocab_size * C + (block_size * C if pos_encoding == "learned" else 0)  # RoPE, ALiBi, sinusoids: nothing learned
    head = 0 if tied else vocab_size * C
    final = ln if prenorm else 0  # post-LN blocks end in a norm already: no ln_f
    return embeddings + n_layer * per_layer + final + head


def parameter_breakdown(model: nn.Module) -> dict[str, int]:
    """Where a GPT's parameters sit: {"embeddings" (wte), "positions" (learned wpe), "attention",
    "mlp", "norms" (the blocks' and ln_f), "head" (an untied lm_head; 0 when tied)} -> counts.
    Attention, MLP and norms are summed over the n_layer blocks (every block is the same size, so
    divide by n_layer for one). The values add up to model.num_parameters(): a shared tensor is
    counted once, where it is first met (tied: in the embeddings).

    >>> b = parameter_breakdown(GPT(GPTConfig(vocab_size=10, block_size=4, n_layer=1, n_head=1, n_embd=2)))
    >>> b["embeddings"], b["positions"], b["attention"], b["head"]
    (20, 8, 24, 0)
    """
    parts = {"embeddings": 0, "positions": 0, "attention": 0, "mlp": 0, "norms": 0, "head": 0}
    where = [("transformer.wte.", "embeddings"), ("transformer.pos.", "positions"), ("lm_head.", "head"), (".attn.", "attention"),
             (".cross_attn.", "attention"), (".mlp.", "mlp"), (".ln_", "norms"), ("transformer.ln_f.", "norms")]
    for name, p in model.named_parameters():  # named_parameters() yields a shared tensor once
        part = next((part for key, part in where if name.startswith(key) or (key.startswith(".") and key in name)), None)
        if part is None:
            raise ValueError(f"parameter {name!r}: not part of a GPT's embeddings, blocks or head; expected a model built like llmlab.models.gpt.GPT")
        parts[part] += p.numel()
    return parts
