"""Decoding an encoder-decoder: encode the source once, then extend the target token by token.

    memory = model.encode(src)                          once per batch of sources
    tgt = [<bos>]; repeat: logits = model.decode(tgt, memory)[:, -1]; append the choice

`greedy_decode` appends the most likely token. Each sequence stops at its own <eos> (the others
go on until every row has ended or `max_len` tokens were written); the result holds neither the
<bos> nor the <eos>, and a sequence that never emits <eos> comes back with max_len tokens.

`beam_search` keeps the `beam_size` most likely partial translations instead of one. A
finished hypothesis y (one that emitted <eos>) is scored by its log-probability divided by its
length to the power alpha (length normalisation, Wu et al. 2016 use a smoothed variant):

    score(y) = log p(y | x) / |y|^alpha        alpha = 0: the raw sum, which favours short outputs;
                                              alpha = 1: the mean log-probability per token

A source's search ends when it holds `beam_size` finished hypotheses (or at max_len, where the
live beams count as finished); the best score wins.

`prefix_greedy_decode` is greedy decoding for a decoder-only GPT that reads `source <bos>` as a
prompt (the lesson's comparison): sources of one length go through together, so no padding is
needed where the GPT has no padding mask.

Left out on purpose: a KV cache (each step re-reads the prefix; the sentences are short),
sampling, coverage penalties, constrained decoding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _check(src: torch.Tensor, max_len: int) -> None:
    if not isinstance(src, torch.Tensor) or src.dim() != 2:
        raise ValueError(f"src: expected a LongTensor of shape (B, S), got {getattr(src, 'shape', type(src).__name__)}")
    if not isinstance(max_len, int) or isinstance(max_len, bool) or max_len < 0:
        raise ValueError(f"max_len={max_len!r}: expected an integer >= 0 (tokens to write at most)")


@torch.no_grad()
def greedy_decode(model: nn.Module, src: torch.Tensor, bos_id: int, eos_id: int, max_len: int) -> list[list[int]]:
    """src[B, S] -> B lists of token ids: argmax at each step, each row stopping at its own <eos>
    (<bos> and <eos> not included; max_len tokens when a row never emits <eos>)."""
    _check(src, max_len)
    B = src.size(0)
    memory = model.encode(src)  # once: the source does not change while we write
    tgt = torch.full((B, 1), bos_id, dtype=torch.long, device=src.device)  # (B, 1)
    out: list[list[int]] = [[] for _ in range(B)]
    done = [False] * B
    for _ in range(max_len):
        nxt = model.decode(tgt, memory)[:, -1].argmax(dim=-1)  # (B, T, V) -> (B,)
        for b, tok in enumerate(nxt.tolist()):
            if not done[b]:
                if tok == eos_id:
                    done[b] = True
                else:
                    out[b].append(tok)
        if all(done):
            break
        tgt = torch.cat([tgt, nxt[:, None]], dim=1)  # (B, T + 1); finished rows write on, ignored
    return out


@torch.no_grad()
def beam_search(model: nn.Module, src: torch.Tensor, bos_id: int, eos_id: int, max_len: int, beam_size: int = 4,
                alpha: float = 1.0) -> list[list[int]]:
    """src[B, S] -> B lists of token ids (no <bos>, no <eos>): the best of `beam_size` beams under
    log p / length^alpha (see the module docstring). beam_size=1 is greedy decoding."""
    _check(src, max_len)
    if not isinstance(beam_size, int) or isinstance(beam_size, bool) or beam_size < 1:
        raise ValueError(f"beam_size={beam_size!r}: expected a positive integer")
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or alpha < 0:
        raise ValueError(f"alpha={alpha!r}: expected a number >= 0 (0 = no length normalisation)")
    B, K, dev = src.size(0), beam_size, src.device
    memory = model.encode(src).index_select(torch.arange(B, device=dev).repeat_interleave(K))  # each source K times
    seqs = torch.full((B * K, 1), bos_id, dtype=torch.long, device=dev)  # (B*K, 1)
    scores = torch.full((B, K), float("-inf"), device=dev)
    scores[:, 0] = 0.0  # one live beam to start with: K copies of it would fill the beam with duplicates
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]
    for t in range(max_len):
        logp = F.log_softmax(model.decode(seqs, memory)[:, -1].float(), dim=-1)  # (B*K, V)
        V = logp.size(-1)
        cand = (scores.view(B * K, 1) + logp).view(B, K * V)  # (B, K*V): every beam times every next token
        top_scores, top_idx = cand.topk(min(2 * K, K * V), dim=-1)  # 2K: at least K that are not <eos>
        new_rows, new_tokens, new_scores = [], [], torch.full((B, K), float("-inf"), device=dev)
        for b in range(B):
            kept = 0
            for s, i in zip(top_scores[b].tolist(), top_idx[b].tolist()):
                beam, tok = divmod(i, V)
                if s == float("-inf") or len(finished[b]) >= K or kept == K:
                    break
                if tok == eos_id:
                    finished[b].append((s / (t + 1) ** alpha, seqs[b * K + beam, 1:].tolist()))
                    continue
                new_rows.append(b * K + beam)
                new_tokens.append(tok)
                new_scores[b, kept] = s
                kept += 1
            for _ in range(kept, K):  # a beam with nothing left: a dead copy (score -inf)
                new_rows.append(b * K)
                new_tokens.append(eos_id)
        if all(len(f) >= K for f in finished):
            break
        rows = torch.tensor(new_rows, device=dev)
        seqs = torch.cat([seqs[rows], torch.tensor(new_tokens, device=dev)[:, None]], dim=1)  # (B*K, t + 2)
        scores = new_scores
    else:  # max_len reached: the live beams are candidates too, without an <eos>
        for b in range(B):
            for k in range(K):
                if len(finished[b]) < K and scores[b, k] > float("-inf"):
                    finished[b].append((scores[b, k].item() / max(max_len, 1) ** alpha, seqs[b * K + k, 1:].tolist()))
    return [max(f, key=lambda c: c[0])[1] if f else [] for f in finished]


@torch.no_grad()
def prefix_greedy_decode(gpt: nn.Module, sources: list[list[int]], bos_id: int, eos_id: int, max_len: int) -> list[list[int]]:
    """Greedy translation with a decoder-only model: the prompt is `source <bos>`, the answer what
    follows, up to <eos>. `gpt(idx)` -> (logits[B, T, V], _). Sources of equal length share a batch."""
    out: list[list[int]] = [[] for _ in sources]
    by_len: dict[int, list[int]] = {}
    for i, s in enumerate(sources):
        by_len.setdefault(len(s), []).append(i)
    dev = next(gpt.parameters()).device
    for rows in by_len.values():
        idx = torch.tensor([sources[i] + [bos_id] for i in rows], device=dev)  # (b, S + 1)
        done = [False] * len(rows)
        for _ in range(max_len):
            if idx.size(1) >= gpt.config.block_size:  # the context is full: stop (learned positions end there)
                break
            nxt = gpt(idx)[0][:, -1].argmax(dim=-1)  # (b,)
            for j, tok in enumerate(nxt.tolist()):
                if not done[j]:
                    if tok == eos_id:
                        done[j] = True
                    else:
                        out[rows[j]].append(tok)
            if all(done):
                break
            idx = torch.cat([idx, nxt[:, None]], dim=1)
    return out
