"""Checks for chapter 08, generation: `generation.top_k_filter`, `generation.top_p_filter` and
`generation.greedy_generate`, the decoding loop, which takes a *model* as its argument.

Rows have a vocabulary of 9 to 12 (never equal to the batch size), some probes have ties
at the k-th largest logit (integer logits), one has a token that alone holds more than p,
one has -inf entries already (top-p after top-k), and one has two leading axes, so a
filter that only works on a single row, drops ties or loses the top token shows.
greedy_generate's probes hand it a small GPT (context 8, learned positions) as plain data that is
built into the course's model on whichever side runs the learner's code (llmlab.checks.modules):
prompts short enough to fit, and ones that outgrow the context, so a loop that never crops it fails.
Reference: llmlab.generate.sampling.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from llmlab.checks.core import Exercise, Mistake, Probe, equal, keeps_input, randn, register
from llmlab.checks.modules import build_model, model_spec
from llmlab.generate import sampling as ref

NEG_INF = float("-inf")


KEEPS_LOGITS = keeps_input("return a new tensor (logits.masked_fill(...), not logits[...] = ...)")


# ----------------------------------------------------------------------------- top-k
def _ties(g, rows, V):
    return torch.randint(0, 4, (rows, V), generator=g).float()  # values 0..3: ties everywhere


def _topk_wrong(mode):
    def top_k_filter(logits, k):
        if mode == "exactly_k":  # keeps k entries, dropping some of those tied with the k-th
            idx = torch.topk(logits, k, dim=-1).indices
            keep = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, idx, True)
            return logits.masked_fill(~keep, NEG_INF)
        if mode == "k_plus_1":  # the k-th largest is at 0-based index k - 1, not k
            kth = torch.sort(logits, dim=-1, descending=True).values[..., min(k, logits.size(-1) - 1), None]
            return logits.masked_fill(logits < kth, NEG_INF)
        if mode == "ascending":
            kth = torch.sort(logits, dim=-1).values[..., k - 1, None]
            return logits.masked_fill(logits < kth, NEG_INF)
        if mode == "inverted":
            kth = torch.topk(logits, k, dim=-1).values[..., -1:]
            return logits.masked_fill(logits >= kth, NEG_INF)
        if mode == "zero":
            kth = torch.topk(logits, k, dim=-1).values[..., -1:]
            return logits.masked_fill(logits < kth, 0.0)
        if mode == "values":
            return torch.topk(logits, k, dim=-1).values
        if mode == "inplace":
            kth = torch.topk(logits, k, dim=-1).values[..., -1:]
            logits[logits < kth] = NEG_INF
            return logits
        raise ValueError(mode)
    return top_k_filter


register(Exercise(
    id="generation.top_k_filter",
    signature="top_k_filter(logits: Tensor[..., V], k: int) -> Tensor  # entries below the k-th largest of each row set to -inf (ties with it kept)",
    reference=ref.top_k_filter,
    points=2,
    probes=[
        Probe("keeps the 3 largest of each row", lambda g: (randn(g, 4, 10), 3)),
        Probe("entries tied with the k-th largest are kept", lambda g: (_ties(g, 5, 9), 3),
              hint="compare with the k-th largest *value* (torch.topk(...).values[..., -1:]) so ties with it survive"),
        Probe("k=1 keeps only the maximum", lambda g: (randn(g, 3, 11), 1)),
        Probe("k = V keeps everything", lambda g: (randn(g, 2, 9), 9)),
        Probe("works with two leading axes [2, 3, V]", lambda g: (randn(g, 2, 3, 12), 4)),
        Probe("a single row [V]", lambda g: (randn(g, 10), 2)),
        Probe("leaves its input unchanged", lambda g: (randn(g, 3, 10), 3), **KEEPS_LOGITS),
    ],
    mistakes=[
        Mistake("tokens tied with the k-th largest must stay: mask where logits < (k-th largest value), instead of keeping exactly k indices",
                _topk_wrong("exactly_k")),
        Mistake("you keep k + 1 tokens: after a descending sort, the k-th largest is at index k - 1", _topk_wrong("k_plus_1")),
        Mistake("sort in descending order (or use torch.topk): you compared with the k-th *smallest* logit", _topk_wrong("ascending")),
        Mistake("the comparison is the wrong way round: the k largest stay, the entries *below* the k-th largest become -inf", _topk_wrong("inverted")),
        Mistake("set removed entries to float('-inf'), not 0: a logit of 0 still has probability after softmax", _topk_wrong("zero")),
        Mistake("return the whole row (shape [..., V]) with the removed entries at -inf, not just the k largest values", _topk_wrong("values")),
        Mistake("your function changed its input tensor in place; return a new tensor (logits.masked_fill(...))", _topk_wrong("inplace")),
    ],
))


# ----------------------------------------------------------------------------- top-p
def _peaked(g, rows, V):
    x = randn(g, rows, V)
    x[torch.arange(rows), torch.randint(V, (rows,), generator=g)] += 6.0  # one token holds > 0.9 of the mass
    return x


def _after_topk(g, rows, V, k):
    return ref.top_k_filter(randn(g, rows, V, scale=1.5), k)


def _known_row():
    # probabilities 0.05, 0.40, 0.10, 0.30, 0.15: with p=0.6, 0.40 alone falls short, 0.40 + 0.30 reaches it
    return torch.tensor([[0.05, 0.40, 0.10, 0.30, 0.15]]).log()


def _topp_wrong(mode):
    def top_p_filter(logits, p):
        desc = mode != "ascending"
        sorted_logits, order = torch.sort(logits, dim=-1, descending=desc)
        probs = sorted_logits.softmax(dim=-1) if mode != "logits" else sorted_logits
        cum = probs.cumsum(dim=-1)
        if mode in ("strict", "strict_top"):  # keep tokens with cumulative probability <= p
            remove = cum > p
            if mode == "strict_top":
                remove[..., 0] = False
        elif mode == "no_top":  # the shift-right trick without re-keeping the first token
            remove = cum > p
            remove[..., 1:] = remove[..., :-1].clone()
        else:
            remove = (cum - probs) >= p
        if mode == "sorted":
            return sorted_logits.masked_fill(remove, NEG_INF)
        remove = torch.zeros_like(remove).scatter(-1, order, remove)
        out = logits.masked_fill(remove, NEG_INF)
        if mode == "renorm":
            return F.log_softmax(out, dim=-1)
        if mode == "probs":
            return out.softmax(dim=-1)
        return out
    return top_p_filter


register(Exercise(
    id="generation.top_p_filter",
    signature="top_p_filter(logits: Tensor[..., V], p: float) -> Tensor  "
              "# keeps the smallest set of most probable tokens with total probability >= p; the rest -inf",
    reference=ref.top_p_filter,
    points=3,
    probes=[
        Probe("p=0.9 on rows of random logits", lambda g: (randn(g, 4, 12, scale=2.0), 0.9)),
        Probe("keeps the token that carries the total past p (0.40 + 0.30 >= 0.6)", lambda g: (_known_row(), 0.6),
              hint="keep a token when the probability of the tokens ranked *above* it is still < p; the one that crosses p belongs to the set"),
        Probe("keeps the most probable token even when it alone holds more than p", lambda g: (_peaked(g, 3, 10), 0.5),
              hint="the most probable token is always kept: the mass above it is 0, which is < p"),
        Probe("p = 1 keeps every token", lambda g: (randn(g, 3, 10), 1.0)),
        Probe("rows that already hold -inf (top-k, then top-p)", lambda g: (_after_topk(g, 3, 11, 5), 0.8)),
        Probe("works with two leading axes [2, 3, V]", lambda g: (randn(g, 2, 3, 9, scale=2.0), 0.7)),
        Probe("leaves its input unchanged", lambda g: (randn(g, 3, 10), 0.8), **KEEPS_LOGITS),
    ],
    mistakes=[
        Mistake("you dropped the token that carries the total past p: keep a token when the mass of the tokens ranked above it (cumsum - prob) is < p",
                _topp_wrong("strict_top")),
        Mistake("the most probable token must always stay: after shifting the removal mask one place right, set its first entry to False",
                _topp_wrong("no_top")),
        Mistake("keeping only tokens with cumulative probability <= p drops the token that crosses p, and everything when the top token alone exceeds p: "
                "keep a token when the mass ranked above it (cumsum - prob) is < p", _topp_wrong("strict")),
        Mistake("scatter the mask back to vocabulary order (or index with the sort's indices): the output must keep each logit at its own position",
                _topp_wrong("sorted")),
        Mistake("return the original logits of the kept tokens unchanged (only the removed ones become -inf); sampling's softmax renormalises later",
                _topp_wrong("renorm")),
        Mistake("return logits (with -inf for removed tokens), not probabilities", _topp_wrong("probs")),
        Mistake("take the cumulative sum of probabilities (softmax of the sorted logits), not of the logits themselves", _topp_wrong("logits")),
        Mistake("sort in descending order: the set is made of the *most* probable tokens", _topp_wrong("ascending")),
    ],
))


# ----------------------------------------------------------------------------- the decoding loop (takes a model)
def greedy_reference(model, idx, max_new_tokens):
    return ref.generate(model, idx, max_new_tokens, temperature=0.0)


def _tiny_gpt(g, V=13, T=8):
    """A small GPT with decisive, seeded weights (no ties in the argmax), as a plain-data spec."""
    from llmlab.models.gpt import GPT, GPTConfig

    # an untied, random output layer: the next token is a seeded function of the context, not a
    # copy of the last one, and no two logits tie (a loop reading the wrong position shows)
    model = GPT(GPTConfig(vocab_size=V, block_size=T, n_layer=2, n_head=2, n_embd=16, tied=False))
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(randn(g, *p.shape, scale=1.0 if name.startswith(("lm_head", "transformer.wte")) else 0.3))
    return model_spec(model)


def _greedy_inputs(B, T, n):
    return lambda g: (_tiny_gpt(g), torch.randint(13, (B, T), generator=g), n)


def _run_greedy(fn, spec, idx, n):
    model = build_model(spec)  # built here: in the notebook, or inside the grader's sandbox
    with torch.no_grad():
        return fn(model, idx, n)


def _greedy_wrong(mode):
    def greedy_generate(model, idx, max_new_tokens):
        T, T0 = model.config.block_size, idx.size(1)
        for _ in range(max_new_tokens):
            ctx = idx if mode == "no_crop" else idx[:, -1:] if mode == "last_token_only" else idx[:, -T:]
            logits, _ = model(ctx)
            last = logits[:, 0] if mode == "first_position" else logits[:, -1]  # (B, V)
            nxt = last.argmax(dim=-1)  # (B,)
            idx = torch.cat([idx, nxt[:, None]], dim=1)  # (B, T + 1)
        return idx[:, T0:] if mode == "only_new" else idx
    return greedy_generate


register(Exercise(
    id="generation.greedy_generate",
    signature="greedy_generate(model, idx: LongTensor[B, T], max_new_tokens: int) -> LongTensor[B, T + max_new_tokens]  "
              "# argmax of the last position, context cropped to model.config.block_size",
    reference=greedy_reference,
    points=2,
    probes=[
        Probe("3 prompts of 4 tokens, 3 new tokens each", _greedy_inputs(3, 4, 3), run=_run_greedy, compare=equal("generated ids")),
        Probe("one prompt of 2 tokens, 5 new tokens", _greedy_inputs(1, 2, 5), run=_run_greedy, compare=equal("generated ids")),
        Probe("a prompt of 6 that grows past the context of 8 (crop to the last 8)", _greedy_inputs(2, 6, 6), run=_run_greedy,
              compare=equal("generated ids"), hint="crop the context to the model's block_size before each forward: idx[:, -model.config.block_size:]"),
        Probe("max_new_tokens = 0 returns the prompt", _greedy_inputs(2, 3, 0), run=_run_greedy, compare=equal("generated ids")),
    ],
    mistakes=[
        Mistake("take the logits of the *last* position, logits[:, -1, :]: it predicts the token after the prompt", _greedy_wrong("first_position")),
        Mistake("feed the whole (cropped) context each step, not only the newest token: without a KV cache the model sees only what you pass it",
                _greedy_wrong("last_token_only")),
        Mistake("return the prompt followed by the new tokens, torch.cat([idx, next_id], dim=1) each step, not only the new ones", _greedy_wrong("only_new")),
    ],
))
