"""The encoder-decoder transformer (Vaswani et al. 2017): read the whole source, then write the
target one token at a time while looking back at the source.

    memory = model.encode(src)            src[B, S] -> the encoder's states [B, S, C] (+ which are padding)
    logits = model.decode(tgt, memory)    tgt[B, T] so far -> logits[B, T, V] for each next token
    logits, loss = model(src, tgt)        teacher forcing: the decoder reads shift_right(tgt)

The encoder is a stack of `Block(cfg, causal=False)`: bidirectional self-attention, with the
source's padding masked (`key_padding_mask`). The decoder is a stack of `Block(cfg, cross=True)`:
causal self-attention over the target so far, then *cross-attention* (queries from the target,
keys and values from the memory, padding masked again), then the MLP. One token embedding serves
the encoder, the decoder and the output layer (a shared word vocabulary, weight tying).

Teacher forcing: the decoder's input is the target shifted right by one with <bos> in front,

    tgt       =  lo    hundo  cazi  <eos>  <pad>
    shift     = <bos>  lo     hundo cazi   <eos>      (shift_right(tgt, bos_id))

so at position t it has seen tgt[:t] and is asked for tgt[t]; one forward trains every position.
Both sides are padded on the right with `pad_id`; the loss ignores padded targets, and padding
never needs a mask in the decoder's self-attention (causal attention never looks to the right).

`CrossAttention` is the mechanism on its own, as the lesson's exercise writes it (q_proj, k_proj,
v_proj, out_proj); the model's decoder uses llmlab.nn.attention.MultiHeadAttention(cross=True),
which computes the same (tests/test_seq2seq.py, with torch.nn.MultiheadAttention too).

Left out on purpose: a KV cache for decoding (the decoder re-reads its prefix each step; the
sentences are short), separate source and target vocabularies, label smoothing, relative positions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from llmlab.config import Settings
from llmlab.models.gpt import init_gpt2_
from llmlab.nn.block import Block
from llmlab.nn.norms import NORMS, make_norm
from llmlab.nn.positional import make_positional


def shift_right(tgt: torch.Tensor, bos_id: int) -> torch.Tensor:
    """tgt[B, T] -> [B, T]: <bos> then tgt[:, :-1], the decoder's input under teacher forcing.
    >>> shift_right(torch.tensor([[5, 6, 2]]), bos_id=1).tolist()
    [[1, 5, 6]]
    """
    if tgt.dim() != 2:
        raise ValueError(f"tgt: expected a LongTensor of shape (B, T), got shape {tuple(tgt.shape)}")
    bos = torch.full_like(tgt[:, :1], bos_id)  # (B, 1)
    return torch.cat([bos, tgt[:, :-1]], dim=1)  # (B, T)


# ----------------------------------------------------------------------------- cross-attention, written out
class CrossAttention(nn.Module):
    """Multi-head attention from x (the queries) to memory (keys and values):

        out = out_proj(concat_h softmax(q_h k_h^T / sqrt(D)) v_h),  q = q_proj(x), k = k_proj(memory), v = v_proj(memory)

    x[B, Tq, C], memory[B, Tk, C], memory_is_token[B, Tk] (True = a real token, False = padding
    that no query may attend to; None = all real) -> [B, Tq, C]. No causal mask: every target
    position may read the whole source. A row whose memory is all padding gets output 0."""

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.q_proj, self.k_proj = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)
        self.v_proj, self.out_proj = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, memory_is_token: torch.Tensor | None = None) -> torch.Tensor:
        B, Tq, C = x.shape
        Tk, H = memory.size(1), self.n_heads
        D = C // H
        q = self.q_proj(x).view(B, Tq, H, D).transpose(1, 2)  # (B, H, Tq, D)
        k = self.k_proj(memory).view(B, Tk, H, D).transpose(1, 2)  # (B, H, Tk, D)
        v = self.v_proj(memory).view(B, Tk, H, D).transpose(1, 2)  # (B, H, Tk, D)
        scores = q @ k.transpose(-2, -1) / math.sqrt(D)  # (B, H, Tq, D) @ (B, H, D, Tk) -> (B, H, Tq, Tk)
        if memory_is_token is not None:
            scores = scores.masked_fill(~memory_is_token[:, None, None, :], float("-inf"))  # keys only: every query stays
        w = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # an all-padding row: 0/0 -> weights 0
        y = (w @ v).transpose(1, 2).reshape(B, Tq, C)  # (B, H, Tq, D) -> (B, Tq, H, D) -> (B, Tq, C)
        return self.out_proj(y)


# ----------------------------------------------------------------------------- the model
@dataclass
class Seq2SeqConfig(Settings):
    vocab_size: int = 100  # one word vocabulary for source and target (llmlab.text.translation.WordVocab)
    block_size: int = 64  # the longest source or target (learned positions have this many rows)
    n_encoder_layer: int = 2  # encoder blocks
    n_decoder_layer: int = 2  # decoder blocks
    n_head: int = 4  # attention heads (H); D = C / H
    n_embd: int = 64  # model width (C)
    dropout: float = 0.0
    bias: bool = True  # biases in Linear layers and norms
    pos_encoding: str = "learned"  # "learned" or "sinusoidal" (added to the embeddings; each stack has its own)
    norm: str = "layernorm"  # one of NORMS
    prenorm: bool = True  # pre-LN blocks (a final norm after each stack), or post-LN as the 2017 paper
    pad_id: int = 0  # padding, on the right of sources and targets
    bos_id: int = 1  # the decoder's first input
    eos_id: int = 2  # ends every target

    def __post_init__(self) -> None:
        self.check_sizes(("vocab_size", "block_size", "n_encoder_layer", "n_decoder_layer", "n_head", "n_embd"))
        if self.pos_encoding not in ("learned", "sinusoidal"):
            raise ValueError(f"pos_encoding={self.pos_encoding!r}: expected 'learned' or 'sinusoidal'")
        if self.norm not in NORMS:
            raise ValueError(f"norm={self.norm!r}: expected one of {', '.join(NORMS)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout}: expected a probability in [0, 1)")
        ids = {"pad_id": self.pad_id, "bos_id": self.bos_id, "eos_id": self.eos_id}
        for name, v in ids.items():
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < self.vocab_size:
                raise ValueError(f"{name}={v!r}: expected a token id in 0..{self.vocab_size - 1}")
        if len(set(ids.values())) < 3:
            raise ValueError(f"pad_id, bos_id, eos_id = {self.pad_id}, {self.bos_id}, {self.eos_id}: expected three different ids")



@dataclass
class EncoderMemory:
    """What the encoder hands the decoder: its states [B, S, C] and where the source was padding [B, S]."""

    states: torch.Tensor
    is_pad: torch.Tensor

    def index_select(self, rows: torch.Tensor) -> "EncoderMemory":
        """The memory of sources `rows` (beam search repeats each source once per beam)."""
        return EncoderMemory(self.states.index_select(0, rows), self.is_pad.index_select(0, rows))


class EncoderDecoder(nn.Module):
    def __init__(self, cfg: Seq2SeqConfig):
        super().__init__()
        self.config = cfg

        def stack(n: int, **kind) -> nn.ModuleDict:
            return nn.ModuleDict(dict(
                pos=make_positional(cfg.pos_encoding, block_size=cfg.block_size, n_embd=cfg.n_embd, n_head=cfg.n_head),
                h=nn.ModuleList([Block(cfg, **kind, layer_idx=i) for i in range(n)]),
                ln_f=make_norm(cfg) if cfg.prenorm else nn.Identity(),  # post-LN blocks end in a norm already
            ))

        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.encoder = stack(cfg.n_encoder_layer, causal=False)
        self.decoder = stack(cfg.n_decoder_layer, cross=True)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied: one matrix embeds and un-embeds
        init_gpt2_(self, cfg.n_encoder_layer + cfg.n_decoder_layer)  # the scaled c_proj: every block of both stacks

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())  # the tied matrix once

    def _embed(self, stack: nn.ModuleDict, ids: torch.Tensor, what: str) -> torch.Tensor:
        if ids.dim() != 2:
            raise ValueError(f"{what}: expected a LongTensor of shape (B, T), got shape {tuple(ids.shape)}")
        T = ids.size(1)
        if T > self.config.block_size and self.config.pos_encoding == "learned":
            raise ValueError(f"{what}: length {T} exceeds block_size={self.config.block_size} (learned positions cannot extrapolate)")
        return self.drop(self.wte(ids) + stack.pos.embed(T))  # (B, T, C)

    def encode(self, src: torch.Tensor) -> EncoderMemory:
        """src[B, S] (right-padded with pad_id) -> EncoderMemory(states [B, S, C], is_pad [B, S])."""
        is_pad = src == self.config.pad_id  # (B, S)
        x = self._embed(self.encoder, src, "src")
        for block in self.encoder.h:
            x = block(x, key_padding_mask=is_pad)  # bidirectional: every source word sees every other
        return EncoderMemory(self.encoder.ln_f(x), is_pad)

    def decode(self, tgt: torch.Tensor, memory: EncoderMemory | torch.Tensor) -> torch.Tensor:
        """tgt[B, T] (starting with <bos>) and the encoder's memory -> logits[B, T, V] of each next token.
        A plain tensor memory [B, S, C] means a source without padding."""
        states, is_pad = (memory.states, memory.is_pad) if isinstance(memory, EncoderMemory) else (memory, None)
        if states.size(0) != tgt.size(0):
            raise ValueError(f"memory: {states.size(0)} sources for {tgt.size(0)} targets (tgt shape {tuple(tgt.shape)})")
        x = self._embed(self.decoder, tgt, "tgt")
        for block in self.decoder.h:
            x = block(x, memory=states, memory_key_padding_mask=is_pad)  # causal self-attention, then cross-attention
        return self.lm_head(self.decoder.ln_f(x))  # (B, T, V)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing: src[B, S], tgt[B, T] (ending in <eos>, right-padded) -> (logits[B, T, V],
        the mean cross-entropy over the real (non-pad) target tokens)."""
        if tgt.dim() != 2 or src.dim() != 2 or tgt.size(0) != src.size(0):
            raise ValueError(f"src, tgt: expected (B, S) and (B, T) with the same B, got {tuple(src.shape)} and {tuple(tgt.shape)}")
        logits = self.decode(shift_right(tgt, self.config.bos_id), self.encode(src))  # (B, T, V)
        targets = tgt.masked_fill(tgt == self.config.pad_id, -100)  # padding teaches nothing
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-100)
        return logits, loss


# ----------------------------------------------------------------------------- cross-attention as alignment
def cross_attention(model: EncoderDecoder, src: torch.Tensor, tgt: torch.Tensor) -> list[torch.Tensor]:
    """The decoder's cross-attention weights under teacher forcing, one [B, H, T, S] per decoder
    layer: row t is where the query that predicts tgt[t] looks in the source. Read at the hook
    points `decoder.h.{i}.cross_attn.pattern` (llmlab.nn.hooks), which run that layer's slow path."""
    from llmlab.nn.hooks import run_with_cache

    names = [f"decoder.h.{i}.cross_attn.pattern" for i in range(len(model.decoder.h))]
    with torch.no_grad():
        _, acts = run_with_cache(model, src, names, tgt=tgt)
    return [acts[n] for n in names]


def alignment_hits(weights: torch.Tensor, aligns: list[list[int]]) -> list[tuple[int, int]]:
    """Per sentence (hits, aligned target words): how often the source position a target word
    attends to most (argmax over S of head-averaged weights[B, H, T, S]) is the word it translates.
    Target words aligned to nothing (-1) and positions past the alignment (<eos>, padding) are skipped."""
    best = weights.mean(dim=1).argmax(dim=-1)  # (B, H, T, S) -> (B, T, S) -> (B, T)
    out = []
    for b, al in enumerate(aligns):
        pairs = [(t, a) for t, a in enumerate(al) if a >= 0]
        out.append((sum(int(best[b, t]) == a for t, a in pairs), len(pairs)))
    return out
