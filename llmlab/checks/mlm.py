"""Checks for chapter 10, masked language models: `mlm.mask_tokens` (BERT's 15 % / 80-10-10
masking), `mlm.attention_mask` (an encoder's padding mask), `mlm.mlm_loss` (cross-entropy on the
masked positions only) and `mlm.mean_pool` (a sentence vector from the real tokens).

`mask_tokens` is random, so its probes judge what its output *does*, not which numbers it drew:
a large batch (9,600 to 12,000 positions) goes through the learner's function three times, twice
with generators of one seed (the outputs must be equal: the function draws from `generator`) and
once with another seed (they must differ). Of the first output, exact properties: the input is
intact; every label is -100 or the original id; no special position is selected; an unselected
position keeps its id; a selected position never holds a special other than [MASK]. Then rates,
each compared with the reference's own draw as two binomial samples: the share of ordinary
positions selected, and among the selected the shares that became [MASK], a random token, or
stayed. A rate fails when the two differ by more than 5 standard deviations of their difference
(pooled; a right implementation fails with probability below 1e-6 per rate), while every known
wrong one is 9 or more standard deviations away. The special ids differ between probes (first
four ids; ids scattered through the vocabulary), and one probe has p = 0.3, so neither a
hard-coded id range nor a hard-coded 0.15 passes.

The other three are deterministic, with every dimension different (B=3, T=5, V=7, C=4 and others).
References: llmlab.text.masking.mask_tokens, llmlab.models.encoder.attention_mask and mean_pool,
llmlab.train.masked_lm.mlm_loss.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from llmlab.checks.core import CheckFailed, Exercise, Mistake, Probe, close, describe, equal, is_real_tensor, randn, register
from llmlab.models import encoder as encoder_ref
from llmlab.text import masking as masking_ref
from llmlab.train import masked_lm as masked_lm_ref

IGNORE = -100
SIGMAS = 5.0  # the tolerance of each rate, in standard deviations of the difference of two binomial rates


# ----------------------------------------------------------------------------- mask_tokens
def _mask_inputs(B: int, T: int, V: int, specials: list[int], mask_id: int, p: float):
    """ids[B, T]: [CLS] first, [SEP] after each row's real tokens, then [PAD]s; ordinary ids drawn uniformly."""
    pad, cls, sep = [s for s in specials if s != mask_id][:3]

    def make(g):
        ordinary = torch.tensor([i for i in range(V) if i not in specials])
        ids = ordinary[torch.randint(len(ordinary), (B, T), generator=g)]  # (B, T)
        lengths = torch.randint(T // 2, T + 1, (B,), generator=g)  # real tokens per row, [CLS] and [SEP] included
        lengths[0] = T  # one row without padding
        for b, n in enumerate(lengths.tolist()):
            ids[b, 0], ids[b, n - 1] = cls, sep
            ids[b, n:] = pad
        seed = int(torch.randint(1 << 30, (1,), generator=g))
        return ids, V, mask_id, list(specials), p, seed  # plain data: the grader sends probe inputs across its sandbox
    return make


def _mask_run(fn, ids, V, mask_id, specials, p, seed):
    """Three calls: seed, seed again, seed + 1. What comes back: the first output, whether the input
    was left intact, whether the same seed repeated the output and whether another seed changed it."""
    before = ids.clone()
    out = fn(ids, V, mask_id, set(specials), p=p, generator=torch.Generator().manual_seed(seed))
    if not isinstance(out, tuple) or len(out) != 2:
        raise CheckFailed(f"expected a tuple (inputs, labels), got {describe(out)}")
    for name, t in zip(("inputs", "labels"), out):
        if not is_real_tensor(t):
            raise CheckFailed(f"expected {name} to be a torch.Tensor, got {type(t).__name__}: {describe(t)}")
        if tuple(t.shape) != tuple(ids.shape) or t.dtype.is_floating_point or t.dtype == torch.bool:
            raise CheckFailed(f"{name} is a {t.dtype} tensor of shape {tuple(t.shape)}; expected integer ids of shape {tuple(ids.shape)} like ids")
    inputs, labels = (t.detach().clone().long() for t in out)
    changed = not torch.equal(ids, before)
    again = fn(before.clone(), V, mask_id, set(specials), p=p, generator=torch.Generator().manual_seed(seed))
    other = fn(before.clone(), V, mask_id, set(specials), p=p, generator=torch.Generator().manual_seed(seed + 1))
    same = all(torch.equal(a.long(), b) for a, b in zip(again, (inputs, labels)))
    differs = not all(torch.equal(a.long(), b) for a, b in zip(other, (inputs, labels)))
    return {"inputs": inputs, "labels": labels, "input_changed": changed, "repeatable": same, "seed_matters": differs}


def _profile(out: dict, args: tuple) -> dict:
    """Counts of what the output did, from the original ids (args[0]) and the output."""
    ids, V, mask_id, specials, p, seed = args
    inputs, labels = out["inputs"], out["labels"]
    special = torch.isin(ids, torch.tensor(specials))  # (B, T)
    selected = labels != IGNORE
    other_specials = torch.tensor([s for s in specials if s != mask_id])
    sel = selected & ~special
    n_sel = int(sel.sum())
    return {
        "labels_off": int((selected & (labels != ids)).sum()),  # a label that is neither -100 nor the original id
        "special_selected": int((selected & special).sum()),
        "unselected_changed": int((~selected & (inputs != ids)).sum()),
        "random_special": int((sel & torch.isin(inputs, other_specials)).sum()),
        "selected": (n_sel, int((~special).sum())),  # (k, n): ordinary positions selected
        "masked": (int((sel & (inputs == mask_id)).sum()), n_sel),
        "random": (int((sel & (inputs != mask_id) & (inputs != ids)).sum()), n_sel),
        "kept": (int((sel & (inputs == ids)).sum()), n_sel),
    }


def _rates_differ(got: tuple[int, int], want: tuple[int, int]) -> tuple[bool, float]:
    """Two binomial rates k/n: do they differ by more than SIGMAS pooled standard deviations? (and that sd)"""
    (kg, ng), (ke, ne) = got, want
    if ng == 0 or ne == 0:
        return ng != ne, 0.0
    pooled = (kg + ke) / (ng + ne)
    sd = math.sqrt(pooled * (1 - pooled) * (1 / ng + 1 / ne))
    return abs(kg / ng - ke / ne) > SIGMAS * sd + 1e-12, sd


def _mask_compare(got, expected, args):
    if not isinstance(got, dict) or set(got) != set(expected):
        raise CheckFailed(f"unexpected output {describe(got)}")
    for key, right, bad in (
        ("input_changed", False, "your function changed `ids` in place; work on a copy (ids.clone()) and leave the input as it was"),
        ("repeatable", True, "two calls with generators of the same seed gave different outputs: draw every random number from "
         "`generator` (torch.rand(..., generator=generator), torch.randint(..., generator=generator))"),
        ("seed_matters", True, "generators of different seeds gave the same output: the draws must come from `generator`, not a fixed seed"),
    ):
        if got[key] != expected[key]:
            raise CheckFailed(bad if got[key] != right else f"your output is right on {key.replace('_', ' ')}, unlike this mistake")
    g, e = _profile(got, args), _profile(expected, args)
    what = {"labels_off": "label(s) that are neither -100 nor the original id at that position",
            "special_selected": "special position(s) ([PAD], [CLS], [SEP]) selected (their label is not -100); a special token is never a target",
            "unselected_changed": "position(s) with label -100 whose input differs from ids; only selected positions may change",
            "random_special": "selected position(s) replaced by a special token other than [MASK]; random replacements are drawn from the "
                              "non-special ids only"}
    rates = {"selected": "share of ordinary (non-special) positions selected", "masked": "share of selected positions that became mask_id",
             "random": "share of selected positions that became a random other token", "kept": "share of selected positions that kept their id"}
    # the order of the messages: the most telling first (labels everywhere shows as "100 % selected", not as "specials selected")
    for key in ("labels_off", "unselected_changed", "selected", "special_selected", "random_special", "masked", "random", "kept"):
        if key in what:
            if (g[key] > 0) != (e[key] > 0):
                text = what[key]
                raise CheckFailed(f"{g[key]} {text}" if g[key] else f"your output has no such position, unlike this mistake ({text})")
            continue
        text = rates[key]
        differ, sd = _rates_differ(g[key], e[key])
        if differ:
            (kg, ng), (ke, ne) = g[key], e[key]
            raise CheckFailed(f"{text}: {kg} of {ng} = {kg / max(ng, 1):.3f}, expected about {ke / max(ne, 1):.3f} "
                              f"(tolerance ±{SIGMAS * sd:.3f}, {SIGMAS:.0f} standard deviations; p = {args[4]})")


def _masker(kind: str):
    """A wrong mask_tokens: one switch away from the reference."""
    def mask_tokens(ids, vocab_size, mask_id, special_ids, p=0.15, generator=None):
        gen = generator if kind != "global_rng" else None
        special = torch.isin(ids, torch.tensor(sorted(special_ids)))
        prob = 0.15 if kind == "fixed_p" else p
        selected = torch.rand(ids.shape, generator=gen) < prob
        if kind != "specials_selectable":
            selected &= ~special
        action = torch.rand(ids.shape, generator=gen)
        ordinary = torch.tensor([i for i in range(vocab_size) if i not in special_ids])
        if kind == "random_specials":
            random_ids = torch.randint(vocab_size, ids.shape, generator=gen)
        else:
            random_ids = ordinary[torch.randint(len(ordinary), ids.shape, generator=gen)]
        where = torch.ones_like(selected) if kind == "every_token" else selected
        inputs = ids.clone()
        if kind == "always_mask":
            inputs[where] = mask_id
        else:
            m, r = where & (action < 0.8), where & (action >= 0.8) & (action < 0.9)
            inputs[m] = mask_id
            inputs[r] = random_ids[r]
        if kind == "labels_everywhere":
            labels = ids.clone()
        elif kind == "labels_from_inputs":
            labels = torch.where(selected, inputs, torch.full_like(ids, IGNORE))
        else:
            labels = torch.where(selected, ids, torch.full_like(ids, IGNORE))
        return inputs, labels
    return mask_tokens


def _in_place_masker(ids, vocab_size, mask_id, special_ids, p=0.15, generator=None):
    """Right draws, labels taken first, then the masking written into ids itself."""
    special = torch.isin(ids, torch.tensor(sorted(special_ids)))
    selected = (torch.rand(ids.shape, generator=generator) < p) & ~special
    action = torch.rand(ids.shape, generator=generator)
    ordinary = torch.tensor([i for i in range(vocab_size) if i not in special_ids])
    random_ids = ordinary[torch.randint(len(ordinary), ids.shape, generator=generator)]
    labels = torch.where(selected, ids, torch.full_like(ids, IGNORE))
    ids[selected & (action < 0.8)] = mask_id
    r = selected & (action >= 0.8) & (action < 0.9)
    ids[r] = random_ids[r]
    return ids, labels


register(Exercise(
    id="mlm.mask_tokens",
    signature="mask_tokens(ids: LongTensor[B, T], vocab_size: int, mask_id: int, special_ids: set[int], p: float = 0.15, "
              "generator: torch.Generator | None = None) -> (inputs[B, T], labels[B, T])  # each non-special position selected with "
              "probability p; of those 80 % -> mask_id, 10 % -> a random non-special token, 10 % unchanged; labels = the original id "
              "where selected, else -100; ids unchanged",
    reference=masking_ref.mask_tokens,
    points=3,
    probes=[
        Probe("32 x 300 ids, V=40, specials 0..3 ([MASK] = 3), p=0.15: exact properties and rates (5 sigma)",
              _mask_inputs(32, 300, 40, [0, 1, 2, 3], 3, 0.15), run=_mask_run, compare=_mask_compare),
        Probe("40 x 300 ids, V=50, specials scattered (7, 19, 33, 48; [MASK] = 19), p=0.15",
              _mask_inputs(40, 300, 50, [7, 33, 48, 19], 19, 0.15), run=_mask_run, compare=_mask_compare),
        Probe("30 x 320 ids, V=30, specials 26..29 ([MASK] = 26), p=0.3",
              _mask_inputs(30, 320, 30, [27, 28, 29, 26], 26, 0.3), run=_mask_run, compare=_mask_compare),
    ],
    mistakes=[
        Mistake("labels must be -100 wherever a position was not selected: the loss is on the selected (masked) positions only; "
                "labels = torch.where(selected, ids, -100)", _masker("labels_everywhere")),
        Mistake("special tokens ([CLS], [SEP], [PAD]) are never selected: remove them from the selection (selected &= ~is_special, "
                "with torch.isin(ids, special ids))", _masker("specials_selectable")),
        Mistake("the 80/10/10 split applies to the selected positions only; the other tokens stay exactly as they were",
                _masker("every_token")),
        Mistake("only 80 % of the selected positions become mask_id; 10 % become a random token and 10 % stay unchanged",
                _masker("always_mask")),
        Mistake("random replacements are drawn from the non-special ids only (e.g. index a tensor of the ordinary ids with "
                "torch.randint), never [PAD], [CLS] or [SEP]", _masker("random_specials")),
        Mistake("labels hold the ORIGINAL id at the selected positions (what the model must recover), not the corrupted input",
                _masker("labels_from_inputs")),
        Mistake("don't modify `ids` in place: start from inputs = ids.clone()", _in_place_masker),
        Mistake("draw every random number from `generator` (pass generator=generator to torch.rand and torch.randint)", _masker("global_rng")),
        Mistake("select with the probability `p` you are given, not a fixed 0.15", _masker("fixed_p")),
    ],
))


# ----------------------------------------------------------------------------- attention_mask
def _pads(B: int, T: int, lengths: list[int]):
    def make(g):
        is_token = torch.zeros(B, T, dtype=torch.bool)
        for b, n in enumerate(lengths):
            is_token[b, :n] = True
        return (is_token,)
    return make


def _amask(kind):
    def attention_mask(is_token):
        B, T = is_token.shape
        keys, queries = is_token[:, None, None, :], is_token[:, None, :, None]
        m = {"causal": lambda: keys & torch.ones(T, T, dtype=torch.bool).tril(), "queries": lambda: queries.expand(B, 1, T, T),
             "inverted": lambda: ~keys.expand(B, 1, T, T), "both": lambda: keys & queries,
             "no_head_axis": lambda: is_token[:, None, :].expand(B, T, T)}[kind]()
        return m
    return attention_mask


register(Exercise(
    id="mlm.attention_mask",
    signature="attention_mask(is_token: BoolTensor[B, T]) -> BoolTensor[B, 1, T, T]  # True where query i may attend key j: "
              "key j is a real token (not padding); no causal part",
    reference=encoder_ref.attention_mask,
    points=1,
    probes=[
        Probe("3 sequences of lengths 5, 3, 1 padded to T=5", _pads(3, 5, [5, 3, 1]), compare=equal("mask")),
        Probe("2 sequences of lengths 4 and 7, T=7", _pads(2, 7, [4, 7]), compare=equal("mask")),
        Probe("4 sequences without padding, T=3", _pads(4, 3, [3, 3, 3, 3]), compare=equal("mask")),
    ],
    mistakes=[
        Mistake("an encoder has no causal part: every query may attend every real key, to its right as well (no tril)", _amask("causal")),
        Mistake("mask the padded KEYS (the last axis, j), not the padded queries: is_token[:, None, None, :]", _amask("queries")),
        Mistake("True means 'may attend': a real token is True in is_token and must be True in the mask; yours is inverted", _amask("inverted")),
        Mistake("only the keys matter: a padded query may still attend the real keys (its output is ignored, and a row of only "
                "False would give nan); use is_token[:, None, None, :] alone", _amask("both")),
        Mistake("the mask has a head axis of size 1: shape [B, 1, T, T] (is_token[:, None, None, :].expand(B, 1, T, T))",
                _amask("no_head_axis")),
    ],
))


# ----------------------------------------------------------------------------- mlm_loss
def _loss_inputs(B: int, T: int, V: int, keep: float, scale: float = 2.0):
    def make(g):
        logits = randn(g, B, T, V, scale=scale)
        labels = torch.randint(V, (B, T), generator=g)
        drop = torch.rand(B, T, generator=g) >= keep
        drop[0, 0] = False  # at least one label
        labels[drop] = IGNORE
        return logits, labels
    return make


def _loss(kind):
    def mlm_loss(logits, labels):
        V = logits.size(-1)
        if kind == "all_positions":
            return F.cross_entropy(logits.reshape(-1, V), labels.clamp(min=0).reshape(-1))
        if kind == "sum":
            return F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1), ignore_index=IGNORE, reduction="sum")
        if kind == "per_all":
            s = F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1), ignore_index=IGNORE, reduction="sum")
            return s / labels.numel()
        if kind == "time_axis":  # log-softmax over T instead of V
            logp = logits.log_softmax(dim=1)
            sel = labels != IGNORE
            return -logp[sel.nonzero(as_tuple=True) + (labels[sel],)].mean()
        raise AssertionError(kind)
    return mlm_loss


register(Exercise(
    id="mlm.mlm_loss",
    signature="mlm_loss(logits: Tensor[B, T, V], labels: LongTensor[B, T]) -> Tensor[]  # mean cross-entropy over the positions "
              "whose label is not -100",
    reference=masked_lm_ref.mlm_loss,
    points=1,
    probes=[
        Probe("logits[2, 5, 7], about 30 % of the positions labelled", _loss_inputs(2, 5, 7, 0.3), compare=close(1e-5, 1e-5, "loss")),
        Probe("logits[3, 9, 11], about 15 % labelled, large logits (x 6)", _loss_inputs(3, 9, 11, 0.15, 6.0), compare=close(1e-5, 1e-5, "loss")),
        Probe("logits[4, 6, 5], every position labelled", _loss_inputs(4, 6, 5, 1.1), compare=close(1e-5, 1e-5, "loss")),
    ],
    mistakes=[
        Mistake("only the positions with a label count: pass ignore_index=-100 to F.cross_entropy (it is the default) instead of "
                "turning -100 into a real class", _loss("all_positions")),
        Mistake("the loss is a mean over the labelled positions, not a sum (reduction='mean', the default)", _loss("sum")),
        Mistake("divide by the number of labelled positions, not by B * T: unlabelled positions have no loss and must not dilute it",
                _loss("per_all")),
        Mistake("the softmax runs over the vocabulary (the last axis, V): flatten logits to [B*T, V] and labels to [B*T]",
                _loss("time_axis")),
    ],
))


# ----------------------------------------------------------------------------- mean_pool
def _pool_inputs(B: int, T: int, C: int, lengths: list[int]):
    def make(g):
        h = randn(g, B, T, C)
        is_token = torch.zeros(B, T, dtype=torch.bool)
        for b, n in enumerate(lengths):
            is_token[b, :n] = True
        return h, is_token
    return make


def _pool(kind):
    def mean_pool(h, is_token):
        m = is_token.unsqueeze(-1).to(h.dtype)
        return {"all": lambda: h.mean(dim=1), "pads_in_sum": lambda: h.sum(dim=1) / m.sum(dim=1),
                "by_T": lambda: (h * m).sum(dim=1) / h.size(1), "first": lambda: h[:, 0],
                "max": lambda: h.masked_fill(~is_token.unsqueeze(-1), float("-inf")).amax(dim=1)}[kind]()
    return mean_pool


register(Exercise(
    id="mlm.mean_pool",
    signature="mean_pool(h: Tensor[B, T, C], is_token: BoolTensor[B, T]) -> Tensor[B, C]  # mean over the real tokens only",
    reference=encoder_ref.mean_pool,
    points=1,
    probes=[
        Probe("h[3, 5, 4], lengths 5, 2, 3", _pool_inputs(3, 5, 4, [5, 2, 3])),
        Probe("h[2, 7, 6], lengths 1 and 4", _pool_inputs(2, 7, 6, [1, 4])),
        Probe("h[4, 3, 2], no padding", _pool_inputs(4, 3, 2, [3, 3, 3, 3])),
    ],
    mistakes=[
        Mistake("average the real tokens only: multiply h by the mask (is_token[..., None]) before summing over T", _pool("all")),
        Mistake("the padded vectors are in your sum: multiply h by is_token[..., None] before summing, then divide by the count", _pool("pads_in_sum")),
        Mistake("divide by each sequence's number of real tokens (is_token.sum(1)), not by T", _pool("by_T")),
        Mistake("mean pooling averages every real token; yours takes the first token only (that is [CLS] pooling)", _pool("first")),
        Mistake("mean pooling averages the real tokens' vectors; yours takes the maximum (max pooling)", _pool("max")),
    ],
))
