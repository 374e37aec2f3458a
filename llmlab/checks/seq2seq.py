"""Checks for chapter 11, sequence to sequence: `seq2seq.shift_right` (teacher forcing's decoder
input), `seq2seq.CrossAttention` (queries from the target, keys and values from the source),
`seq2seq.greedy_decode` (the decoding loop of an encoder-decoder, which takes a *model*) and
`seq2seq.corpus_bleu` (the metric).

shift_right's probes have B != T and token ids that never equal bos_id, and one with padding.
CrossAttention's have Tq != Tk (5 queries, 7 keys: queries taken from the memory, or a causal
mask, show), a probe with Tq = Tk and padding (a mask laid over the queries instead of the keys
shows there), a single head (the scale 1/sqrt(D) with D = C / H) and heads of width 4 with C = 12.
greedy_decode's probes hand it a tiny random EncoderDecoder as plain data (llmlab.checks.modules),
built where the learner's code runs, whose encode and decode are counted: the probes' rows end
at different steps, one row never emits <eos> within max_len, and the number of encode calls is
compared (once per call of greedy_decode). corpus_bleu's probes are noisy copies of random
references (so every n-gram order has matches), one corpus without any 4-gram match (BLEU 0),
one of short hypotheses (the brevity penalty), one with repeated words (clipping) and max_n = 2;
floats are compared to 1e-6 (the same counts give the same BLEU up to float rounding, ~1e-13,
while every wrong implementation is off by more than 0.1).
References: llmlab.models.seq2seq (shift_right, CrossAttention), llmlab.generate.seq2seq.greedy_decode,
llmlab.text.bleu.corpus_bleu.
"""

from __future__ import annotations

import math
from collections import Counter

import torch
from torch import nn

from llmlab.checks.core import CheckFailed, Exercise, Mistake, Probe, describe, equal, keeps_input, randn, register
from llmlab.checks.modules import build_model, load_weights, model_spec
from llmlab.generate import seq2seq as gen_ref
from llmlab.models import seq2seq as ref
from llmlab.text import bleu as bleu_ref


# ----------------------------------------------------------------------------- shift_right
def _shift_inputs(B, T, bos, pad_from=None):
    def make(g):
        tgt = torch.randint(3, 20, (B, T), generator=g)
        tgt[tgt == bos] = bos + 1  # no target token equals <bos>: a row that starts with it is the shift's doing
        if pad_from is not None:
            tgt[-1, pad_from:] = 0  # the last row is shorter: padded on the right
        return tgt, bos
    return make


def _shift_wrong(kind):
    def shift_right(tgt, bos_id):
        bos = torch.full_like(tgt[:, :1], bos_id)
        if kind == "none":
            return tgt
        if kind == "left":
            return torch.cat([tgt[:, 1:], bos], dim=1)
        if kind == "no_bos":
            return torch.cat([torch.zeros_like(bos), tgt[:, :-1]], dim=1)
        if kind == "overwrite":
            out = tgt.clone()
            out[:, 0] = bos_id
            return out
        if kind == "roll":
            return torch.roll(tgt, 1, dims=1)
        if kind == "longer":
            return torch.cat([bos, tgt], dim=1)
        raise ValueError(kind)
    return shift_right


register(Exercise(
    id="seq2seq.shift_right",
    signature="shift_right(tgt: LongTensor[B, T], bos_id: int) -> LongTensor[B, T]  # bos_id, then tgt[:, :-1]",
    reference=ref.shift_right,
    probes=[
        Probe("tgt[3, 5], bos_id=1", _shift_inputs(3, 5, 1), compare=equal("decoder input")),
        Probe("tgt[2, 6] with padding (0) at the end of the last row, bos_id=7", _shift_inputs(2, 6, 7, pad_from=3), compare=equal("decoder input")),
        Probe("a single position tgt[4, 1]: only <bos> is left", _shift_inputs(4, 1, 1), compare=equal("decoder input")),
        Probe("leaves its input unchanged", _shift_inputs(2, 4, 1), **keeps_input("build a new tensor (torch.cat([...], dim=1))", equal("decoder input"))),
    ],
    mistakes=[
        Mistake("shift the target to the right: the decoder's input at position t is the target's token t - 1, "
                "so it starts with <bos>: torch.cat([bos, tgt[:, :-1]], dim=1)", _shift_wrong("none")),
        Mistake("that is a shift to the left (tgt[:, 1:] first): the decoder would read the token it must predict; "
                "put <bos> first and drop the *last* token: torch.cat([bos, tgt[:, :-1]], dim=1)", _shift_wrong("left")),
        Mistake("the first position holds bos_id, not 0 (the padding id): torch.full_like(tgt[:, :1], bos_id)", _shift_wrong("no_bos")),
        Mistake("shift every token one place right: writing bos_id over tgt[:, 0] loses that token, "
                "and position t still sees the token it must predict", _shift_wrong("overwrite")),
        Mistake("torch.roll wraps the last token around to the front; put bos_id there instead: torch.cat([bos, tgt[:, :-1]], dim=1)",
                _shift_wrong("roll")),
        Mistake("keep the length T: drop the last token (tgt[:, :-1]) after putting <bos> in front", _shift_wrong("longer")),
    ],
))


# ----------------------------------------------------------------------------- CrossAttention
CROSS_NAMING = ("it needs q_proj, k_proj, v_proj and out_proj, each nn.Linear(d_model, d_model) (with bias)")


def _cross_inputs(B, Tq, Tk, C, H, pad=None):
    def make(g):
        w = {}
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            w[f"{name}.weight"], w[f"{name}.bias"] = randn(g, C, C, scale=1.5 * C ** -0.5), randn(g, C, scale=0.1)
        mask = None
        if pad is not None:  # the rows' real lengths: padding after them
            mask = torch.arange(Tk)[None, :] < torch.tensor(pad)[:, None]  # (B, Tk), True = a real token
        return C, H, randn(g, B, Tq, C), randn(g, B, Tk, C), mask, w
    return make


def _cross_run(cls, C, H, x, memory, mask, w):
    m = load_weights(cls(C, H), w, "CrossAttention", naming=CROSS_NAMING).eval()
    with torch.no_grad():
        return m(x, memory, mask) if mask is not None else m(x, memory)


def _cross_wrong(kind):
    class CrossAttention(nn.Module):
        def __init__(self, d_model, n_heads):
            super().__init__()
            self.n_heads = n_heads
            self.q_proj, self.k_proj = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)
            self.v_proj, self.out_proj = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)

        def forward(self, x, memory, memory_is_token=None):
            B, Tq, C = x.shape
            H, D = self.n_heads, C // self.n_heads
            qs, kvs = (memory, x) if kind == "q_from_memory" else (x, memory)
            q = self.q_proj(qs).view(B, qs.size(1), H, D).transpose(1, 2)
            k = self.k_proj(kvs).view(B, kvs.size(1), H, D).transpose(1, 2)
            v = self.v_proj(kvs).view(B, kvs.size(1), H, D).transpose(1, 2)
            scale = {"d_model": C, "sqrt_d_model": math.sqrt(C), "none": 1.0}.get(kind, math.sqrt(D))
            s = q @ k.transpose(-2, -1) / scale  # (B, H, Tq, Tk)
            if kind == "causal":
                s = s.masked_fill(~torch.ones(s.shape[-2:], dtype=torch.bool).tril(), float("-inf"))
            if memory_is_token is not None:
                if kind == "mask_queries":
                    s = s.masked_fill(~memory_is_token[:, None, :, None], float("-inf"))
                elif kind == "mask_inverted":
                    s = s.masked_fill(memory_is_token[:, None, None, :], float("-inf"))
                elif kind != "mask_ignored":
                    s = s.masked_fill(~memory_is_token[:, None, None, :], float("-inf"))
            w = s.softmax(dim=-2 if kind == "softmax_queries" else -1)
            y = (w @ v).transpose(1, 2).reshape(B, -1, C)
            return self.out_proj(y)
    return CrossAttention


register(Exercise(
    id="seq2seq.CrossAttention",
    signature="CrossAttention(d_model, n_heads); forward(x: Tensor[B, Tq, C], memory: Tensor[B, Tk, C], "
              "memory_is_token: BoolTensor[B, Tk] | None = None) -> Tensor[B, Tq, C]  # q from x, k and v from memory, "
              "scores / sqrt(C / H), no causal mask, keys where memory_is_token is False never attended to; "
              "q_proj, k_proj, v_proj, out_proj = Linear(C, C)",
    reference=ref.CrossAttention,
    kind="class",
    points=2,
    probes=[
        Probe("5 queries attend to 7 memory positions, no padding (C=12, H=3)", _cross_inputs(2, 5, 7, 12, 3), run=_cross_run),
        Probe("Tq = Tk = 6 with padding: the sources have 5 and 4 real tokens", _cross_inputs(2, 6, 6, 12, 3, pad=[5, 4]), run=_cross_run),
        Probe("6 queries, 4 memory positions, padded sources (C=8, H=2)", _cross_inputs(3, 6, 4, 8, 2, pad=[3, 2, 3]), run=_cross_run),
        Probe("a single head: D = C = 8", _cross_inputs(2, 3, 5, 8, 1), run=_cross_run),
    ],
    mistakes=[
        Mistake("the queries come from x (the decoder's tokens), the keys and values from memory (the encoder's output): "
                "q = q_proj(x), k = k_proj(memory), v = v_proj(memory)", _cross_wrong("q_from_memory")),
        Mistake("cross-attention has no causal mask: every target position may read the whole source", _cross_wrong("causal")),
        Mistake("divide the scores by sqrt(D), the head width C / n_heads, not by d_model", _cross_wrong("d_model")),
        Mistake("divide the scores by sqrt(D), the head width C / n_heads, not by sqrt(d_model)", _cross_wrong("sqrt_d_model")),
        Mistake("memory_is_token says which *keys* are real: mask the key axis (the last one of the scores [B, H, Tq, Tk]), "
                "with memory_is_token[:, None, None, :]; every query stays", _cross_wrong("mask_queries")),
        Mistake("memory_is_token is True for a real token: fill -inf where it is False (~memory_is_token)", _cross_wrong("mask_inverted")),
        Mistake("use memory_is_token: padded memory positions must get -inf scores before the softmax", _cross_wrong("mask_ignored")),
        Mistake("softmax over the keys (dim=-1): each query's weights over the memory sum to 1", _cross_wrong("softmax_queries")),
    ],
))


# ----------------------------------------------------------------------------- greedy_decode (takes a model)
V_TINY = 9  # <pad> 0, <bos> 1, <eos> 2, six words


def _tiny_seq2seq(g) -> ref.EncoderDecoder:
    """A 1+1-layer EncoderDecoder with seeded random weights: norms near 1, strong cross-attention (the
    output depends on the source), and the decoder's positions pushed towards <eos> (rows end)."""
    cfg = ref.Seq2SeqConfig(vocab_size=V_TINY, block_size=16, n_encoder_layer=1, n_decoder_layer=1, n_head=2, n_embd=16)
    with torch.random.fork_rng(devices=[]):  # its initialisation draws from the global generator: give the notebook's back
        model = ref.EncoderDecoder(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".ln" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + randn(g, *p.shape, scale=0.1))
            else:
                p.copy_(randn(g, *p.shape, scale=1.0 if name == "wte.weight" or "cross" in name else 0.5))
        eos = model.wte.weight[cfg.eos_id]
        model.decoder.pos.wpe.weight += 4.0 * torch.arange(16.0)[:, None] * eos / eos.norm()  # (16, C)
    return model.eval()


def _greedy_inputs(B, S, max_len):
    """A model and sources on which the rows end at different steps, one of them early and one never
    (within max_len): drawn again until so (a few draws), so the probe tests that for every seed."""
    def make(g):
        for _ in range(100):
            model, src = _tiny_seq2seq(g), torch.randint(3, V_TINY, (B, S), generator=g)
            lengths = [len(r) for r in gen_ref.greedy_decode(model, src, 1, 2, max_len)]
            if max_len == 0 or (max_len in lengths and any(0 < n < max_len - 1 for n in lengths) and len(set(lengths)) >= 2):
                return model_spec(model), src, 1, 2, max_len
        raise RuntimeError("no probe model found")  # not reached: about one draw in three qualifies
    return make


def _run_greedy(fn, spec, src, bos, eos, max_len):
    """The candidate's output, and how often it called model.encode (a model built here, counted)."""
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        model = build_model(spec)
        calls = {"encode": 0}
        encode = model.encode

        def counted_encode(*a, **k):
            calls["encode"] += 1
            return encode(*a, **k)

        model.encode = counted_encode
        return fn(model, src, bos, eos, max_len), calls["encode"]


def _greedy_compare(got, expected, args):
    ids, n_enc = got
    equal("decoded ids")(ids, expected[0])
    if n_enc != expected[1]:
        raise CheckFailed(f"your greedy_decode called model.encode {n_enc} times; expected {expected[1]} "
                          "(once, before the loop: the source does not change while the decoder writes)")


def _greedy_wrong(kind):
    def greedy_decode(model, src, bos_id, eos_id, max_len):
        B = src.size(0)
        memory = model.encode(src)
        tgt = torch.full((B, 1), bos_id, dtype=torch.long)
        out = [[bos_id] if kind == "bos" else [] for _ in range(B)]
        done = [False] * B
        for _ in range(max_len):
            if kind == "re_encode":
                memory = model.encode(src)
            ctx = tgt[:, -1:] if kind == "last_only" else tgt
            logits = model.decode(ctx, memory)
            nxt = (logits[:, 0] if kind == "first_position" else logits[:, -1]).argmax(-1)
            for b, tok in enumerate(nxt.tolist()):
                if done[b] and kind != "no_stop":
                    continue
                if tok == eos_id:
                    done[b] = True
                    if kind == "eos":
                        out[b].append(tok)
                    continue
                out[b].append(tok)
            if kind == "batch_stop" and any(done):
                break
            if all(done):
                break
            tgt = torch.cat([tgt, nxt[:, None]], dim=1)
        return out
    return greedy_decode


register(Exercise(
    id="seq2seq.greedy_decode",
    signature="greedy_decode(model, src: LongTensor[B, S], bos_id: int, eos_id: int, max_len: int) -> list[list[int]]  "
              "# memory = model.encode(src) once; then logits = model.decode(tgt_so_far, memory), argmax of the last position; "
              "each row stops at its own eos_id; no bos_id or eos_id in the output; max_len tokens for a row that never emits eos_id",
    reference=gen_ref.greedy_decode,
    points=2,
    probes=[
        Probe("4 sources of 5 words, max_len=8 (rows end at different steps)", _greedy_inputs(4, 5, 8), run=_run_greedy, compare=_greedy_compare),
        Probe("3 sources of 3 words, max_len=6", _greedy_inputs(3, 3, 6), run=_run_greedy, compare=_greedy_compare),
        Probe("6 sources of 4 words, max_len=10", _greedy_inputs(6, 4, 10), run=_run_greedy, compare=_greedy_compare),
        Probe("max_len=0 writes nothing", _greedy_inputs(2, 4, 0), run=_run_greedy, compare=_greedy_compare),
    ],
    mistakes=[
        Mistake("each row stops at its *own* <eos>: stopping the whole batch when the first row ends cuts the others short; "
                "keep a done flag per row and stop when all are done", _greedy_wrong("batch_stop")),
        Mistake("leave <bos> out of the output: it is the decoder's first input, not part of the translation", _greedy_wrong("bos")),
        Mistake("leave <eos> out of the output: it marks the end, it is not a word of the translation", _greedy_wrong("eos")),
        Mistake("call model.encode(src) once, before the loop: the source does not change while the decoder writes", _greedy_wrong("re_encode")),
        Mistake("a row that has emitted <eos> is finished: ignore what it writes afterwards", _greedy_wrong("no_stop")),
        Mistake("feed the decoder everything written so far (<bos> and every token), not only the newest: "
                "without a cache it sees only what you pass it", _greedy_wrong("last_only")),
        Mistake("take the logits of the *last* position, logits[:, -1]: it predicts the next token", _greedy_wrong("first_position")),
    ],
))


# ----------------------------------------------------------------------------- corpus_bleu
WORDS = ("the", "cat", "sat", "on", "mat", "a", "dog", "ran")


def _noisy_corpus(g, n, lo, hi, p_change=0.25, drop=0.0, max_n=4):
    refs, hyps = [], []
    for _ in range(n):
        L = int(torch.randint(lo, hi + 1, (1,), generator=g))
        ref_s = [WORDS[int(i)] for i in torch.randint(len(WORDS), (L,), generator=g)]
        hyp = []
        for w in ref_s:
            u = float(torch.rand((), generator=g))
            if u < drop:
                continue
            hyp.append(WORDS[int(torch.randint(len(WORDS), (1,), generator=g))] if u < drop + p_change else w)
        refs.append(ref_s)
        hyps.append(hyp)
    return hyps, refs, max_n


def _no_4gram(g):
    refs = [["the", "cat", "sat", "on", "the", "mat"], ["a", "dog", "ran"], ["on", "a", "mat", "sat", "the", "dog"]]
    hyps = [["the", "cat", "on", "sat", "mat", "the"], ["a", "dog", "ran", "ran"], ["on", "a", "mat", "the", "sat", "dog"]]  # trigrams at most
    return hyps, refs, 4


def _repeats(g):
    hyps, refs, _ = _noisy_corpus(g, 5, 6, 10, 0.2)
    hyps[0] = ["the"] * 7 + hyps[0]
    hyps[2] = hyps[2] + hyps[2][:3]
    return hyps, refs, 4


def _float_compare(got, expected, args):
    if isinstance(got, bool) or not isinstance(got, (int, float)) and not (isinstance(got, torch.Tensor) and got.numel() == 1):
        raise CheckFailed(f"expected a number (a float in [0, 100]), got {type(got).__name__}: {describe(got)}")
    g = float(got)
    if not math.isclose(g, expected, rel_tol=1e-6, abs_tol=1e-6):
        raise CheckFailed(f"BLEU is {g:.6g}, expected {expected:.6g}")


def _ngram_counts(tokens, n):
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def _bleu_wrong(kind):
    def corpus_bleu(hyps, refs, max_n=4):
        if kind == "sentence_mean":
            return sum(bleu_ref.corpus_bleu([h], [r], max_n) for h, r in zip(hyps, refs)) / len(hyps)
        matched, total = [0] * max_n, [0] * max_n
        hyp_len = sum(len(h) for h in hyps)
        ref_len = sum(len(r) for r in refs)
        for h, r in zip(hyps, refs):
            for n in range(1, max_n + 1):
                hc, rc = _ngram_counts(h, n), _ngram_counts(r, n)
                matched[n - 1] += sum(c if kind == "unclipped" and rc[g] else min(c, rc[g]) for g, c in hc.items())
                total[n - 1] += max(len(h) - n + 1, 0)
        if min(matched) == 0:
            return 0.0
        p = [m / t for m, t in zip(matched, total)]
        if kind == "arithmetic":
            mean = sum(p) / max_n
        else:
            mean = math.exp(sum(math.log(x) for x in p) / max_n)
        if kind == "no_bp":
            bp = 1.0
        elif kind == "bp_inverted":
            bp = min(1.0, math.exp(1 - hyp_len / ref_len))
        else:
            bp = min(1.0, math.exp(1 - ref_len / hyp_len))
        return (1.0 if kind == "fraction" else 100.0) * bp * mean
    return corpus_bleu


register(Exercise(
    id="seq2seq.corpus_bleu",
    signature="corpus_bleu(hyps: list[list[str]], refs: list[list[str]], max_n: int = 4) -> float  # in [0, 100]: "
              "clipped n-gram matches and n-gram totals summed over the corpus, geometric mean of the precisions for n = 1..max_n, "
              "brevity penalty min(1, exp(1 - ref_len / hyp_len)) from the total lengths; 0.0 when any precision is 0",
    reference=bleu_ref.corpus_bleu,
    points=2,
    probes=[
        Probe("12 noisy copies of their references", lambda g: _noisy_corpus(g, 12, 5, 12), compare=_float_compare),
        Probe("short hypotheses: words dropped (the brevity penalty)", lambda g: _noisy_corpus(g, 10, 6, 12, 0.1, drop=0.3), compare=_float_compare),
        Probe("repeated words (clipped counts)", _repeats, compare=_float_compare),
        Probe("no 4-gram matches anywhere: BLEU is 0.0", _no_4gram, compare=_float_compare),
        Probe("max_n=2", lambda g: _noisy_corpus(g, 8, 3, 8, 0.35, max_n=2), compare=_float_compare),
    ],
    mistakes=[
        Mistake("clip each n-gram's count at its count in the reference: min(count in hyp, count in ref)", _bleu_wrong("unclipped")),
        Mistake("multiply by the brevity penalty min(1, exp(1 - ref_len / hyp_len)), lengths summed over the corpus: "
                "without it a short output scores too high", _bleu_wrong("no_bp")),
        Mistake("the brevity penalty is min(1, exp(1 - ref_len / hyp_len)): reference length over hypothesis length", _bleu_wrong("bp_inverted")),
        Mistake("corpus BLEU sums the counts over all sentences, then computes one BLEU; the mean of sentence BLEUs is another number",
                _bleu_wrong("sentence_mean")),
        Mistake("take the geometric mean of the precisions, exp(mean of log p_n), not their arithmetic mean", _bleu_wrong("arithmetic")),
        Mistake("BLEU is reported in [0, 100]: multiply by 100", _bleu_wrong("fraction")),
    ],
))
