"""Checks for chapter 08, generation: `generation.top_k_filter`, `generation.top_p_filter`,
`generation.greedy_generate` and `generation.sample_generate`, the decoding loops, which take a
*model* as their argument, and `generation.cached_attention_step`, one step of a KV cache.

Rows have a vocabulary of 9 to 12 (never equal to the batch size), some probes have ties
at the k-th largest logit (integer logits), one has a token that alone holds more than p,
one has -inf entries already (top-p after top-k), and one has two leading axes, so a
filter that only works on a single row, drops ties or loses the top token shows.
The decoding loops' probes hand them a small GPT (context 8, learned positions) as plain data that is
built into the course's model on whichever side runs the learner's code (llmlab.checks.modules):
prompts short enough to fit, and ones that outgrow the context, so a loop that never crops it fails.
sample_generate's probes send a seed, not a generator (a generator is not plain data), and build the
generator where the learner's code runs; its samples are compared token for token with the
reference's from the same seed. While it runs, torch's global generator is seeded with a constant
(and restored afterwards, so the notebook's random state is untouched): code that draws from the
global state instead of `generator` gives the same tokens for every seed, which one probe tests.
At temperature 1 the tiny model's largest next-token probability is about 0.25, so argmax,
a temperature multiplied in, or one ignored, changes some of the 7 to 24 draws of every probe that draws.
cached_attention_step's probes have every size different (B=2, H=3, T_past=5, D=4), an empty cache,
and a head of width 64. Reference: llmlab.generate.sampling and llmlab.nn.attention (KVCache,
scaled_dot_product_attention).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from llmlab.checks.core import CheckFailed, Exercise, Mistake, Probe, compare_tensors, describe, equal, is_real_tensor, keeps_input, randn, register
from llmlab.checks.modules import build_model, model_spec
from llmlab.generate import sampling as ref
from llmlab.nn import attention as attn

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
    with torch.random.fork_rng(devices=[]):  # its initialisation draws from the global generator: give the notebook's back
        model = GPT(GPTConfig(vocab_size=V, block_size=T, n_layer=2, n_head=2, n_embd=16, tied=False))
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(randn(g, *p.shape, scale=1.0 if name.startswith(("lm_head", "transformer.wte")) else 0.3))
    return model_spec(model)


def _greedy_inputs(B, T, n):
    return lambda g: (_tiny_gpt(g), torch.randint(13, (B, T), generator=g), n)


def _run_greedy(fn, spec, idx, n):
    with torch.no_grad(), torch.random.fork_rng(devices=[]):  # building a model draws from the global generator
        model = build_model(spec)  # built here: in the notebook, or inside the grader's sandbox
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


# ----------------------------------------------------------------------------- sampling with a temperature (takes a model)
GLOBAL_SEED = 271_828  # torch's global generator while a candidate runs (restored afterwards); not a seed a learner would pick


def sample_reference(model, idx, max_new_tokens, temperature, generator):
    return ref.generate(model, idx, max_new_tokens, temperature=temperature, use_cache=False, generator=generator)


def _sample_inputs(B, T, n, temperature):
    return lambda g: (_tiny_gpt(g), torch.randint(13, (B, T), generator=g), n, temperature, int(torch.randint(2**31, (1,), generator=g)))


def _run_sample(fn, spec, idx, n, temperature, seed):
    """The candidate's tokens, drawn with a generator seeded `seed`, built here (a generator is not plain data)."""
    # fork: the notebook's global random state is put back afterwards (building the model draws from it too).
    # Seeded with a constant, code that draws from it instead of `generator` is deterministic: the check recognises it
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        model = build_model(spec)
        torch.default_generator.manual_seed(GLOBAL_SEED)
        return fn(model, idx, n, temperature, torch.Generator().manual_seed(seed))


def _run_two_seeds(fn, spec, idx, n, temperature, seed):
    return (_run_sample(fn, spec, idx, n, temperature, seed), _run_sample(fn, spec, idx, n, temperature, seed + 1))


def _compare_two_seeds(got, expected, args=None):
    a, b = got  # _run_two_seeds always returns a pair; its items are the candidate's outputs
    if is_real_tensor(a) and is_real_tensor(b) and a.shape == b.shape and torch.equal(a, b) and not torch.equal(*expected):
        raise CheckFailed("two generators with different seeds gave the same tokens: your sampling does not draw from `generator`",
                          hint="pass it to every draw, torch.multinomial(probs, num_samples=1, generator=generator): without it torch uses "
                               "its global random state, and a torch.Generator() of your own ignores the seed the caller chose")
    equal("generated ids with the first seed")(a, expected[0])
    equal("generated ids with the second seed")(b, expected[1])


def _sample_wrong(mode):
    def sample_generate(model, idx, max_new_tokens, temperature, generator):
        T, T0 = model.config.block_size, idx.size(1)
        ctx_source = idx
        for _ in range(max_new_tokens):
            src = ctx_source if mode == "context_not_grown" else idx
            ctx = src[:, :T] if mode == "crop_first" else src[:, -T:]
            logits, _ = model(ctx)  # (B, T', V)
            last = logits[:, 0] if mode == "first_position" else logits[:, -1]  # (B, V)
            if mode == "argmax":
                nxt = last.argmax(dim=-1, keepdim=True)  # (B, 1)
            else:
                scaled = last * temperature if mode == "multiply" else last if mode == "after_softmax" else last / temperature
                probs = F.softmax(scaled, dim=0 if mode == "softmax_batch_axis" else -1)  # (B, V)
                if mode == "after_softmax":
                    probs = probs / temperature  # only rescales: multinomial renormalises
                nxt = torch.multinomial(probs, 1) if mode == "global_rng" else torch.multinomial(probs, 1, generator=generator)  # (B, 1)
            if mode != "no_append":
                idx = torch.cat([idx, nxt], dim=1)  # (B, T + 1)
        return idx[:, T0:] if mode == "only_new" else idx
    return sample_generate


register(Exercise(
    id="generation.sample_generate",
    signature="sample_generate(model, idx: LongTensor[B, T], max_new_tokens: int, temperature: float, generator: torch.Generator) "
              "-> LongTensor[B, T + max_new_tokens]  # each step: crop to block_size, last position's logits / temperature, softmax, "
              "one torch.multinomial(probs, 1, generator=generator)",
    reference=sample_reference,
    points=2,
    probes=[
        Probe("draws with the generator it is given: two seeds, two samples", _sample_inputs(2, 3, 6, 1.0), run=_run_two_seeds, compare=_compare_two_seeds),
        Probe("temperature 0.5 (sharper): 3 prompts of 4 tokens, 5 new tokens", _sample_inputs(3, 4, 5, 0.5), run=_run_sample, compare=equal("generated ids")),
        Probe("temperature 2 (flatter): one prompt of 2 tokens, 7 new tokens", _sample_inputs(1, 2, 7, 2.0), run=_run_sample, compare=equal("generated ids")),
        # the crop changes the context only past 8 tokens, and at these flat distributions two contexts often draw the
        # same token from the same random numbers (~3 in 4): 33 draws past the context make a loop that crops wrongly show
        Probe("a prompt of 10 tokens, longer than the context of 8 (crop to the last 8)", _sample_inputs(3, 10, 6, 1.0), run=_run_sample,
              compare=equal("generated ids"), hint="crop the context to the model's block_size before each forward: idx[:, -model.config.block_size:]"),
        Probe("a prompt of 6 that grows past the context of 8", _sample_inputs(3, 6, 8, 1.5), run=_run_sample,
              compare=equal("generated ids"), hint="crop the context to the model's block_size before each forward: idx[:, -model.config.block_size:]"),
        Probe("max_new_tokens = 0 returns the prompt", _sample_inputs(2, 3, 0, 1.0), run=_run_sample, compare=equal("generated ids")),
    ],
    mistakes=[
        Mistake("divide the logits by the temperature, logits / temperature: multiplying sharpens where a temperature above 1 should flatten",
                _sample_wrong("multiply")),
        Mistake("the temperature has no effect in your code: divide the *logits* by it, before the softmax (probabilities divided by it are "
                "only rescaled, and torch.multinomial renormalises them)", _sample_wrong("after_softmax")),
        Mistake("take the softmax over the vocabulary, the last axis (dim=-1): each row of probs[B, V] is one prompt's distribution",
                _sample_wrong("softmax_batch_axis")),
        Mistake("take the logits of the *last* position, logits[:, -1, :]: it predicts the token after the context", _sample_wrong("first_position")),
        Mistake("sample, don't take the argmax: torch.multinomial(probs, num_samples=1, generator=generator) draws each token with its probability",
                _sample_wrong("argmax")),
        Mistake("pass the generator on, torch.multinomial(probs, 1, generator=generator): without it torch draws from its global random state, "
                "so the caller's seed does not decide the text", _sample_wrong("global_rng")),
        Mistake("crop to the *last* block_size tokens, idx[:, -block_size:]: the first ones are the oldest, and the newest must stay in view",
                _sample_wrong("crop_first")),
        Mistake("feed the grown sequence back in: each step's context must end with the token sampled just before", _sample_wrong("context_not_grown")),
        Mistake("append each new token, idx = torch.cat([idx, next_id], dim=1): torch.cat returns a new tensor and leaves idx as it was, "
                "so your function returns the prompt alone", _sample_wrong("no_append")),
        Mistake("return the prompt followed by the new tokens, torch.cat([idx, next_id], dim=1) each step, not only the new ones", _sample_wrong("only_new")),
    ],
))


# ----------------------------------------------------------------------------- one step of a KV cache
def cached_attention_reference(q, k_new, v_new, k_cache, v_cache):
    cache = attn.KVCache([k_cache], [v_cache])
    k, v = cache.update(0, k_new, v_new)  # (B, H, T_past + 1, D): appended along the time axis
    return attn.scaled_dot_product_attention(q, k, v), k, v  # no mask: every cached key is in the new token's past


def _step_inputs(B, H, T_past, D, scale=1.0):
    def inputs(g):
        q, k_new, v_new = (randn(g, B, H, 1, D, scale=scale) for _ in range(3))
        return q, k_new, v_new, randn(g, B, H, T_past, D, scale=scale), randn(g, B, H, T_past, D)
    return inputs


STEP_PARTS = ("y", "the returned k_cache", "the returned v_cache")


def _step_shapes(fn, *args):
    out = fn(*args)
    if isinstance(out, (tuple, list)) and len(out) == 3 and all(is_real_tensor(t) for t in out):
        return tuple(tuple(t.shape) for t in out)
    return describe(out)  # a string: the comparison says what came back


def _compare_step_shapes(got, expected, args=None):
    if isinstance(got, str):
        raise CheckFailed(f"expected a tuple of three tensors (y, k_cache, v_cache), got {got}")
    for what, g, e in zip(STEP_PARTS, got, expected):
        if g != e:
            raise CheckFailed(f"{what} has shape {g}, expected {e}")


def _compare_step(got, expected, args=None):
    if not isinstance(got, (tuple, list)) or len(got) != 3:
        raise CheckFailed(f"expected a tuple of three tensors (y, k_cache, v_cache), got {describe(got)}")
    compare_tensors(got[0], expected[0], 1e-5, 1e-4, STEP_PARTS[0])  # float32 rounding of a few products and sums: ~1e-6
    for what, g, e in zip(STEP_PARTS[1:], got[1:], expected[1:]):
        compare_tensors(g, e, 0.0, 0.0, what)  # copies of the inputs: exact


def _step_wrong(mode):
    def cached_attention_step(q, k_new, v_new, k_cache, v_cache):
        if mode == "prepend":
            k, v = torch.cat([k_new, k_cache], dim=2), torch.cat([v_new, v_cache], dim=2)
        else:
            k, v = torch.cat([k_cache, k_new], dim=2), torch.cat([v_cache, v_new], dim=2)  # (B, H, T_past + 1, D)
        ka, va = (k_cache, v_cache) if mode == "attend_before_append" else (k_new, v_new) if mode == "new_only" else (k, v)
        D = q.size(-1)
        scores = q @ ka.transpose(-2, -1)  # (B, H, 1, Tk)
        scores = scores if mode == "no_scale" else scores / D if mode == "scale_by_D" else scores / math.sqrt(D)
        if mode == "tril_mask":  # the square causal mask's first row: hides every key but the first
            scores = scores.masked_fill(~torch.ones(scores.shape[-2:], dtype=torch.bool).tril(), NEG_INF)
        y = torch.softmax(scores, dim=-2 if mode == "softmax_query_axis" else -1) @ va  # (B, H, 1, D)
        return (y, k_cache, v_cache) if mode == "old_cache" else (y, k, v)
    return cached_attention_step


register(Exercise(
    id="generation.cached_attention_step",
    signature="cached_attention_step(q: Tensor[B, H, 1, D], k_new: Tensor[B, H, 1, D], v_new: Tensor[B, H, 1, D], "
              "k_cache: Tensor[B, H, T_past, D], v_cache: Tensor[B, H, T_past, D]) -> (y[B, H, 1, D], k_cache[B, H, T_past + 1, D], "
              "v_cache[B, H, T_past + 1, D])  # append, then softmax(q K^T / sqrt(D)) V over every cached key, no mask",
    reference=cached_attention_reference,
    points=2,
    probes=[
        Probe("returns y [B, H, 1, D] and both caches one step longer, [B, H, T_past + 1, D]", _step_inputs(2, 3, 5, 4), run=_step_shapes,
              compare=_compare_step_shapes,
              hint="append along the time axis, dim=2: torch.cat([k_cache, k_new], dim=2) is [B, H, T_past + 1, D]; y has the query's shape"),
        Probe("attends over the 5 cached tokens and the new one (B=2, H=3, D=4)", _step_inputs(2, 3, 5, 4), compare=_compare_step),
        Probe("the first token: an empty cache, T_past = 0", _step_inputs(2, 2, 0, 6), compare=_compare_step),
        Probe("one head over a cache of 9", _step_inputs(1, 1, 9, 8, scale=1.5), compare=_compare_step),
        Probe("heads of width 64 (the scores need their 1/sqrt(D))", _step_inputs(1, 2, 3, 64), compare=_compare_step),
    ],
    mistakes=[
        Mistake("divide the scores by sqrt(D), D = q.size(-1): without it they grow with the head width and the softmax saturates",
                _step_wrong("no_scale")),
        Mistake("divide the scores by sqrt(D) (math.sqrt(q.size(-1))), not by D", _step_wrong("scale_by_D")),
        Mistake("no mask is needed: the one new query is the latest position, so every cached key is in its past; the square causal "
                "mask's row for a single query, torch.ones(1, T).tril(), hides all keys but the first", _step_wrong("tril_mask")),
        Mistake("append first, then attend: the new token's query must also see its own key and value", _step_wrong("attend_before_append")),
        Mistake("attend over the whole grown cache, the cached keys and the new one, not the new token alone", _step_wrong("new_only")),
        Mistake("take the softmax over the keys, the last axis (dim=-1) of the scores [B, H, 1, T_past + 1]", _step_wrong("softmax_query_axis")),
        Mistake("return the grown caches (the result of torch.cat), not the ones passed in: the next step needs this token's key and value too",
                _step_wrong("old_cache")),
        Mistake("the new key and value go at the end of the cache, torch.cat([k_cache, k_new], dim=2): the cache keeps the tokens in order",
                _step_wrong("prepend")),
    ],
))
