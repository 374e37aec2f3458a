"""The encoder: the GPT's blocks without the causal mask, and a masked-language-model head (BERT).

    idx[B, T] -> token (+ position) (+ token-type) embeddings [-> LayerNorm] -> N blocks -> h[B, T, C]
    h -> mlm_logits: dense -> GELU -> LayerNorm -> h @ wte^T + bias -> [B, T, V]   (tied to wte)

A decoder (GPT) lets token t see tokens <= t, so that it can be trained to predict t + 1. An
encoder lets every token see every other one, left and right: `Block(cfg, causal=False)`. It can
no longer be trained on the next token (it would see it), so it is trained to fill in masked
tokens (llmlab.text.masking, llmlab.train.masked_lm). What it gives is a vector per token that
depends on the whole sentence: what understanding tasks (classification, search) need.

Sequences of different lengths share a batch by padding; `is_token[B, T]` (True = a real token,
False = [PAD]) says which keys attention may look at (`attention_mask`), and `mean_pool`
averages the real tokens' vectors into one per sequence (sentence embeddings).

One class covers the course's own small encoder (pre-LN, RoPE, like the course GPT) and BERT's
layout, in which llmlab.models.minilm runs all-MiniLM-L6-v2: post-LN blocks (`prenorm=False`),
exact GELU, LayerNorm eps 1e-12, learned absolute positions, token-type (segment) embeddings and
a LayerNorm on the summed embeddings (`embed_norm=True`). Names follow the GPT (`wte`, `pos.wpe`,
`h`, `ln_f`); `wtt` holds the token types, `ln_emb` the embedding norm.

Left out on purpose: BERT's pooler (a tanh layer on [CLS], trained for next-sentence prediction,
which RoBERTa dropped), next-sentence prediction itself, relative positions, and a KV cache (an
encoder reads its input once).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from llmlab.config import Settings
from llmlab.models.gpt import init_gpt2_
from llmlab.nn.block import Block
from llmlab.nn.mlp import ACTIVATIONS
from llmlab.nn.norms import LayerNorm, make_norm
from llmlab.nn.pooling import mean_pool  # noqa: F401  (the encoder's sentence vectors; llmlab.models.encoder.mean_pool for the lesson)
from llmlab.nn.positional import POS_ENCODINGS, make_positional


@dataclass
class EncoderConfig(Settings):
    KIND = "encoder"  # in from_dict's message

    vocab_size: int = 30522  # BERT's WordPiece vocabulary (the specials included)
    block_size: int = 512  # the longest input (learned positions cannot go further)
    n_layer: int = 6  # blocks
    n_head: int = 12  # attention heads (H)
    n_embd: int = 384  # model width (C)
    mlp_hidden: int | None = None  # the MLP's inner width; None = 4C
    dropout: float = 0.0  # on embeddings, attention weights and residual branches
    bias: bool = True  # biases in Linear layers and norms (BERT has them)
    prenorm: bool = True  # pre-LN (trains easily, the course encoder) or post-LN (BERT, MiniLM)
    norm_eps: float = 1e-5  # LayerNorm epsilon; BERT's is 1e-12
    activation: str = "gelu"  # the MLP's: "gelu" is exact GELU (BERT's), see llmlab.nn.mlp
    pos_encoding: str = "learned"  # one of llmlab.nn.positional.POS_ENCODINGS; BERT: "learned"
    rope_base: float = 10000.0  # base of the RoPE / sinusoid frequencies
    type_vocab_size: int = 0  # token types (BERT's segments A/B: 2); 0 = no token-type embedding
    embed_norm: bool = False  # a LayerNorm on the summed embeddings (BERT)
    mlm_head: bool = True  # build the masked-LM head (MiniLM ships without one)

    def __post_init__(self) -> None:
        self.check_sizes()
        if self.pos_encoding not in POS_ENCODINGS:
            raise ValueError(f"pos_encoding={self.pos_encoding!r}: expected one of {', '.join(POS_ENCODINGS)}")
        if self.pos_encoding == "alibi":
            raise ValueError("pos_encoding='alibi': ALiBi's bias is written for causal attention; use 'learned', 'rope' or 'sinusoidal'")
        if self.pos_encoding == "rope" and (self.n_embd // self.n_head) % 2:
            raise ValueError(f"pos_encoding='rope' needs an even head width, but n_embd / n_head = {self.n_embd // self.n_head}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation={self.activation!r}: expected one of {', '.join(ACTIVATIONS)}")
        if isinstance(self.type_vocab_size, bool) or not isinstance(self.type_vocab_size, int) or self.type_vocab_size < 0:
            raise ValueError(f"type_vocab_size={self.type_vocab_size!r}: expected an integer >= 0 (0 = no token types)")
        if isinstance(self.norm_eps, bool) or not isinstance(self.norm_eps, (int, float)) or not 0 < self.norm_eps < 1:
            raise ValueError(f"norm_eps={self.norm_eps!r}: expected a small positive number such as 1e-5")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout}: expected a probability in [0, 1)")



def attention_mask(is_token: torch.Tensor) -> torch.Tensor:
    """is_token[B, T] (True = a real token) -> BoolTensor[B, 1, T, T], True where query i may
    attend key j: j is a real token. No causal part: an encoder sees left and right. Queries at
    padding still attend (to the real keys): their outputs are ignored, and a row never empties.

    >>> attention_mask(torch.tensor([[True, True, False]]))[0, 0].int()
    tensor([[1, 1, 0],
            [1, 1, 0],
            [1, 1, 0]], dtype=torch.int32)
    """
    if not isinstance(is_token, torch.Tensor) or is_token.dtype != torch.bool or is_token.dim() != 2:
        raise ValueError(f"is_token: expected a BoolTensor of shape (B, T), got {getattr(is_token, 'dtype', type(is_token).__name__)} "
                         f"of shape {tuple(getattr(is_token, 'shape', ()))}")
    B, T = is_token.shape
    return is_token[:, None, None, :].expand(B, 1, T, T)  # (B, 1, 1, T) -> (B, 1, T, T): the same keys for every query


class Encoder(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.config = cfg
        parts = dict(
            wte=nn.Embedding(cfg.vocab_size, cfg.n_embd),
            pos=make_positional(cfg.pos_encoding, block_size=cfg.block_size, n_embd=cfg.n_embd, n_head=cfg.n_head, base=cfg.rope_base),
        )
        if cfg.type_vocab_size:
            parts["wtt"] = nn.Embedding(cfg.type_vocab_size, cfg.n_embd)
        if cfg.embed_norm:
            parts["ln_emb"] = LayerNorm(cfg.n_embd, bias=cfg.bias, eps=cfg.norm_eps)
        parts.update(
            drop=nn.Dropout(cfg.dropout),
            h=nn.ModuleList([Block(cfg, causal=False, prenorm=cfg.prenorm, activation=cfg.activation, mlp_hidden=cfg.mlp_hidden,
                                   layer_idx=i) for i in range(cfg.n_layer)]),
            # pre-LN needs a final norm; post-LN blocks end in one already
            ln_f=make_norm(cfg) if cfg.prenorm else nn.Identity(),
        )
        self.transformer = nn.ModuleDict(parts)
        if cfg.mlm_head:
            # BERT's head: a transform (dense, GELU, LayerNorm), then the tied output layer with its own bias
            self.mlm = nn.ModuleDict(dict(dense=nn.Linear(cfg.n_embd, cfg.n_embd), act=nn.GELU(),
                                          ln=LayerNorm(cfg.n_embd, bias=True, eps=cfg.norm_eps)))
            self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=True)
            self.lm_head.weight = self.transformer.wte.weight  # one matrix: input embedding and output layer
        init_gpt2_(self, cfg.n_layer)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())  # a shared (tied) tensor counted once

    def forward(self, idx: torch.Tensor, is_token: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """idx: LongTensor[B, T]; is_token: BoolTensor[B, T] (None = no padding); token_type_ids:
        LongTensor[B, T] (None = all 0) -> the last hidden states h[B, T, C]."""
        if idx.dim() != 2:
            raise ValueError(f"idx: expected a LongTensor of shape (B, T), got shape {tuple(idx.shape)}")
        B, T = idx.shape
        cfg, tr = self.config, self.transformer
        if T > cfg.block_size and cfg.pos_encoding == "learned":
            raise ValueError(f"idx: sequence length {T} exceeds block_size={cfg.block_size}")
        x = tr.wte(idx)  # (B, T, C)
        pe = tr.pos.embed(T)  # (T, C), or None (RoPE rotates q and k inside attention)
        if pe is not None:
            x = x + pe
        if cfg.type_vocab_size:
            tt = torch.zeros_like(idx) if token_type_ids is None else token_type_ids
            x = x + tr.wtt(tt)  # (B, T, C)
        elif token_type_ids is not None:
            raise ValueError("token_type_ids: this encoder has no token-type embedding (type_vocab_size=0)")
        if cfg.embed_norm:
            x = tr.ln_emb(x)
        x = tr.drop(x)
        mask = None
        if is_token is not None:
            if is_token.shape != idx.shape:
                raise ValueError(f"is_token: expected shape {tuple(idx.shape)} like idx, got {tuple(is_token.shape)}")
            mask = attention_mask(is_token)  # (B, 1, T, T)
        for block in tr.h:
            x = block(x, tr.pos, attn_mask=mask)  # (B, T, C)
        return tr.ln_f(x)

    def mlm_logits(self, h: torch.Tensor) -> torch.Tensor:
        """h[B, T, C] -> logits[B, T, V] over the vocabulary, at every position."""
        if not self.config.mlm_head:
            raise ValueError("mlm_logits: this encoder has no masked-LM head (mlm_head=False; MiniLM ships without one)")
        return self.lm_head(self.mlm.ln(self.mlm.act(self.mlm.dense(h))))  # (B, T, C) -> (B, T, V)

    def embed(self, idx: torch.Tensor, is_token: torch.Tensor | None = None, normalize: bool = True) -> torch.Tensor:
        """One vector per sequence, [B, C]: mean pooling over the real tokens, then (normalize) L2-normalised,
        as sentence-transformers does for all-MiniLM-L6-v2. Cosine similarity is then a dot product."""
        is_token = torch.ones_like(idx, dtype=torch.bool) if is_token is None else is_token
        v = mean_pool(self(idx, is_token), is_token)  # (B, C)
        return torch.nn.functional.normalize(v, dim=-1) if normalize else v
