"""Chapter 11's checks: each passes the reference and other right ways to write it, and rejects a
bank of wrong implementations written the way learners write them (not copies of the checks' own
`Mistake`s), with the right hint where the mistake is a known one. The exercise notebook, unsolved,
runs to the end saying "not implemented yet"."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch
from torch import nn

from _checks import assert_chapter, assert_unsolved_runs, rejects
from llmlab.checks import check, load_all

load_all()
IDS = ["seq2seq.shift_right", "seq2seq.CrossAttention", "seq2seq.greedy_decode", "seq2seq.corpus_bleu"]
pytestmark = pytest.mark.usefixtures("one_thread")


def test_chapter_contract():
    assert_chapter(IDS, "11_translation.ipynb")


def test_unsolved_exercise_notebook_runs_to_the_end_saying_not_implemented_yet(capsys, monkeypatch):
    monkeypatch.setenv("LLMLAB_FAST", "1")
    assert_unsolved_runs(IDS, "11_translation.ipynb", capsys)


# ----------------------------------------------------------------------------- shift_right
def test_shift_right_written_other_ways_passes():
    def with_new_tensor(tgt, bos_id):
        out = torch.empty_like(tgt)
        out[:, 0] = bos_id
        out[:, 1:] = tgt[:, :-1]
        return out

    def with_pad(tgt, bos_id):
        return nn.functional.pad(tgt, (1, 0), value=bos_id)[:, :-1]
    assert check("seq2seq.shift_right", with_new_tensor, quiet=True)
    assert check("seq2seq.shift_right", with_pad, quiet=True)


def test_shift_right_wrong_ones_are_rejected():
    rejects("seq2seq.shift_right", lambda tgt, bos_id: torch.cat([tgt[:, 1:], tgt[:, :1] * 0 + bos_id], 1), hint="shift to the left")
    rejects("seq2seq.shift_right", lambda tgt, bos_id: nn.functional.pad(tgt, (1, 0))[:, :-1], hint="not 0")
    rejects("seq2seq.shift_right", lambda tgt, bos_id: tgt.roll(1, 1), hint="torch.roll")

    def in_place(tgt, bos_id):
        tgt[:, 1:] = tgt[:, :-1].clone()
        tgt[:, 0] = bos_id
        return tgt
    rejects("seq2seq.shift_right", in_place, hint="changed its input")
    rejects("seq2seq.shift_right", lambda tgt, bos_id: torch.cat([torch.full_like(tgt[:, :1], bos_id), tgt[:, :-1]], 1).float())
    rejects("seq2seq.shift_right", lambda tgt, bos_id: torch.cat([torch.full_like(tgt[:1], bos_id), tgt[:-1]], 0))  # the batch axis


# ----------------------------------------------------------------------------- CrossAttention
def _cross(scores_fn=None, mask_fn=None, heads_first=True, bias=True):
    class CrossAttention(nn.Module):
        def __init__(self, d_model, n_heads):
            super().__init__()
            self.h = n_heads
            self.q_proj, self.k_proj = nn.Linear(d_model, d_model, bias=bias), nn.Linear(d_model, d_model, bias=bias)
            self.v_proj, self.out_proj = nn.Linear(d_model, d_model, bias=bias), nn.Linear(d_model, d_model, bias=bias)

        def forward(self, x, memory, memory_is_token=None):
            B, Tq, C = x.shape
            D = C // self.h

            def split(t):
                return t.view(B, -1, self.h, D).transpose(1, 2) if heads_first else t.view(B, self.h, -1, D)  # the second: a wrong reshape
            q, k, v = split(self.q_proj(x)), split(self.k_proj(memory)), split(self.v_proj(memory))
            s = scores_fn(q, k, D) if scores_fn else q @ k.transpose(-1, -2) / math.sqrt(D)
            if memory_is_token is not None:
                s = mask_fn(s, memory_is_token) if mask_fn else s.masked_fill(~memory_is_token[:, None, None], float("-inf"))
            y = (s.softmax(-1) @ v).transpose(1, 2).reshape(B, Tq, C)
            return self.out_proj(y)
    return CrossAttention


def test_cross_attention_written_other_ways_passes():
    assert check("seq2seq.CrossAttention", _cross(), quiet=True)
    assert check("seq2seq.CrossAttention", _cross(mask_fn=lambda s, m: s + torch.where(m, 0.0, float("-inf"))[:, None, None]), quiet=True)

    class WithSDPA(nn.Module):
        def __init__(self, d_model, n_heads):
            super().__init__()
            self.h = n_heads
            self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(d_model, d_model) for _ in range(4))

        def forward(self, x, memory, memory_is_token=None):
            B, Tq, C = x.shape
            q = self.q_proj(x).view(B, Tq, self.h, -1).transpose(1, 2)
            k = self.k_proj(memory).view(B, memory.size(1), self.h, -1).transpose(1, 2)
            v = self.v_proj(memory).view(B, memory.size(1), self.h, -1).transpose(1, 2)
            mask = None if memory_is_token is None else memory_is_token[:, None, None, :]
            y = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            return self.out_proj(y.transpose(1, 2).reshape(B, Tq, C))
    assert check("seq2seq.CrossAttention", WithSDPA, quiet=True)


def test_cross_attention_wrong_ones_are_rejected():
    rejects("seq2seq.CrossAttention", _cross(scores_fn=lambda q, k, D: q @ k.transpose(-1, -2) / (D * q.size(1))), hint="not by d_model")
    rejects("seq2seq.CrossAttention", _cross(scores_fn=lambda q, k, D: q @ k.transpose(-1, -2)))  # no scale at all
    rejects("seq2seq.CrossAttention", _cross(mask_fn=lambda s, m: s.masked_fill(m[:, None, None], -1e9)), hint="~memory_is_token")
    rejects("seq2seq.CrossAttention", _cross(mask_fn=lambda s, m: s * m[:, None, None]))  # zeroed scores still get weight
    rejects("seq2seq.CrossAttention", _cross(heads_first=False))  # view(B, H, T, D) mixes positions into heads
    rejects("seq2seq.CrossAttention", _cross(bias=False))  # the layers have biases

    def causal(q, k, D):
        s = q @ k.transpose(-1, -2) / math.sqrt(D)
        return s.masked_fill(torch.triu(torch.ones(s.shape[-2:], dtype=torch.bool), 1), float("-inf"))
    rejects("seq2seq.CrossAttention", _cross(scores_fn=causal), hint="no causal mask")


# ----------------------------------------------------------------------------- greedy_decode
def _greedy(stop="own", keep_bos=False, encode_each_step=False, use_cache_trick=False):
    def greedy_decode(model, src, bos_id, eos_id, max_len):
        memory = model.encode(src)
        ys = torch.full((src.size(0), 1), bos_id)
        finished = torch.zeros(src.size(0), dtype=torch.bool)
        for _ in range(max_len):
            if encode_each_step:
                memory = model.encode(src)
            nxt = model.decode(ys, memory)[:, -1].argmax(-1)
            ys = torch.cat([ys, nxt[:, None]], 1)
            finished |= nxt == eos_id
            if (stop == "own" and finished.all()) or (stop == "first" and finished.any()):
                break
        out = []
        for row in ys.tolist():
            row = row if keep_bos else row[1:]
            out.append(row[: row.index(eos_id)] if eos_id in row else row)
        return out
    return greedy_decode


def test_greedy_decode_written_with_tensors_passes():
    assert check("seq2seq.greedy_decode", _greedy(), quiet=True)


def test_greedy_decode_wrong_ones_are_rejected():
    rejects("seq2seq.greedy_decode", _greedy(stop="first"), hint="its *own* <eos>")
    rejects("seq2seq.greedy_decode", _greedy(keep_bos=True), hint="leave <bos> out")
    rejects("seq2seq.greedy_decode", _greedy(encode_each_step=True), hint="model.encode(src) once")

    def returns_tensor(model, src, bos_id, eos_id, max_len):
        return torch.tensor([r + [0] * (max_len - len(r)) for r in _greedy()(model, src, bos_id, eos_id, max_len)])
    rejects("seq2seq.greedy_decode", returns_tensor)

    def sampled(model, src, bos_id, eos_id, max_len):
        memory, ys = model.encode(src), torch.full((src.size(0), 1), bos_id)
        for _ in range(max_len):
            probs = model.decode(ys, memory)[:, -1].softmax(-1)
            ys = torch.cat([ys, torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(0))], 1)
        return [r[1:][: r[1:].index(eos_id)] if eos_id in r[1:] else r[1:] for r in ys.tolist()]
    rejects("seq2seq.greedy_decode", sampled)


# ----------------------------------------------------------------------------- corpus_bleu
def _counts(t, n):
    return Counter(tuple(t[i:i + n]) for i in range(len(t) - n + 1))


def _bleu(clip=True, bp=True, per_sentence_bp=False, smooth=0.0, orders=None):
    def corpus_bleu(hyps, refs, max_n=4):
        m, tot = [0.0] * max_n, [0.0] * max_n
        for h, r in zip(hyps, refs):
            for n in range(1, (orders or max_n) + 1):
                hc, rc = _counts(h, n), _counts(r, n)
                m[n - 1] += sum(min(c, rc[g]) if clip else c * (g in rc) for g, c in hc.items())
                tot[n - 1] += max(len(h) - n + 1, 0)
        if any(x + smooth == 0 for x in m):
            return 0.0
        logp = sum(math.log((x + smooth) / max(t, 1)) for x, t in zip(m, tot)) / max_n
        H, R = sum(map(len, hyps)), sum(map(len, refs))
        if per_sentence_bp:
            penalty = sum(min(1.0, math.exp(1 - len(r) / max(len(h), 1))) for h, r in zip(hyps, refs)) / len(hyps)
        else:
            penalty = min(1.0, math.exp(1 - R / H)) if bp else 1.0
        return 100 * penalty * math.exp(logp)
    return corpus_bleu


def test_corpus_bleu_written_another_way_passes():
    assert check("seq2seq.corpus_bleu", _bleu(), quiet=True)


def test_corpus_bleu_wrong_ones_are_rejected():
    rejects("seq2seq.corpus_bleu", _bleu(clip=False), hint="clip each n-gram")
    rejects("seq2seq.corpus_bleu", _bleu(bp=False), hint="brevity penalty")
    rejects("seq2seq.corpus_bleu", _bleu(per_sentence_bp=True))  # the penalty from each sentence's lengths
    rejects("seq2seq.corpus_bleu", _bleu(smooth=1.0))  # add-one smoothing: the task says 0.0 for a zero precision
    rejects("seq2seq.corpus_bleu", lambda hyps, refs, max_n=4: _bleu()(hyps, refs, max_n) / 100, hint="multiply by 100")

    def four_orders_always(hyps, refs, max_n=4):
        return _bleu()(hyps, refs, 4)
    rejects("seq2seq.corpus_bleu", four_orders_always)  # ignores max_n
