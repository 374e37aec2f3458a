"""Checks for chapter 19, interpretability: `interp.induction_score`, `interp.prev_token_score`,
`interp.logit_lens`, `interp.patch_metric` and `interp.fit_probe`. References: llmlab.train.interp.

Pattern probes use random attention rows that are *not* causal (every entry non-zero), so queries and
keys swapped, or a diagonal off by one, give other numbers; L != H and seq_len differs between probes.
Logit-lens probes give each layer's stream a different size (the scale of the final layer's norm then
differs from every other layer's) and use the course LayerNorm, its RMSNorm and torch's nn.LayerNorm.
fit_probe's split is the learner's own random choice, so its probes are built so that any split by
group gives one answer and the known mistakes another: rows of one group are near-copies with one
label (a split by row then finds them on both sides), or pure noise with more dimensions than rows
(accuracy on the training rows is then 100 %), or a signal shared by every group (a right probe finds it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from llmlab.checks.core import CheckFailed, Exercise, Mistake, Probe, close, describe, is_real_tensor, randn, register
from llmlab.nn.norms import LayerNorm, RMSNorm
from llmlab.train import interp as ref


# ----------------------------------------------------------------------------- patterns
def _patterns(L: int, H: int, T: int, sharp: float = 2.0):
    def make(g):
        return (F.softmax(randn(g, L, H, T, T, scale=sharp), dim=-1),)
    return make


def _induction_inputs(L, H, n):
    def make(g):
        return F.softmax(randn(g, L, H, 1 + 2 * n, 1 + 2 * n, scale=2.0), dim=-1), n
    return make


def _induction(kind: str):
    def induction_score(pattern, seq_len):
        n = seq_len
        T = pattern.size(-1)
        if kind == "offset_n":  # the previous occurrence itself, not the token after it
            return pattern.diagonal(offset=-n, dim1=-2, dim2=-1)[..., 1:].mean(-1)
        if kind == "first_copy":  # every query that has a key n - 1 back, the first copy's included
            return pattern.diagonal(offset=-(n - 1), dim1=-2, dim2=-1).mean(-1)
        if kind == "swapped":  # pattern[k, q] read as pattern[q, k]
            return pattern.transpose(-1, -2).diagonal(offset=-(n - 1), dim1=-2, dim2=-1)[..., 2:].mean(-1)
        if kind == "all_rows":  # mean over all T query rows, zeros included
            return pattern.diagonal(offset=-(n - 1), dim1=-2, dim2=-1)[..., 2:].sum(-1) / T
        raise AssertionError(kind)
    return induction_score


register(Exercise(
    id="interp.induction_score",
    signature="induction_score(pattern: Tensor[L, H, T, T], seq_len: int) -> Tensor[L, H]  # T = 1 + 2 seq_len (BOS, a segment, the "
              "segment again): the mean, over the second copy's queries, of the attention on the token right after the same token's "
              "previous occurrence",
    reference=ref.induction_score,
    points=1,
    probes=[
        Probe("L=2, H=3, seq_len=5 (T=11)", _induction_inputs(2, 3, 5)),
        Probe("L=3, H=2, seq_len=8 (T=17)", _induction_inputs(3, 2, 8)),
        Probe("L=1, H=4, seq_len=3 (T=7)", _induction_inputs(1, 4, 3)),
    ],
    mistakes=[
        Mistake("the query q = i + n holds the same token as q - n, its previous occurrence; the induction head attends to the token "
                "AFTER it, at q - n + 1: the diagonal at offset -(seq_len - 1), not -seq_len", _induction("offset_n")),
        Mistake("only the second copy's queries count (q = 1 + seq_len .. 2 seq_len): in the first copy the token has not been seen "
                "before, so there is nothing to induce; drop the first two entries of the diagonal at offset -(seq_len - 1)",
                _induction("first_copy")),
        Mistake("pattern[l, h, q, k] is the attention of query q (row) on key k (column): the key of query q is q - seq_len + 1, "
                "so read pattern[..., q, q - seq_len + 1], not pattern[..., q - seq_len + 1, q]", _induction("swapped")),
        Mistake("average over the seq_len queries of the second copy, not over all T rows", _induction("all_rows")),
    ],
))


def _prev(kind: str):
    def prev_token_score(pattern):
        if kind == "main":
            return pattern.diagonal(dim1=-2, dim2=-1).mean(-1)
        if kind == "above":  # keys after the query: pattern[i, i + 1]
            return pattern.diagonal(offset=1, dim1=-2, dim2=-1).mean(-1)
        if kind == "over_T":  # the T - 1 entries summed, divided by T
            return pattern.diagonal(offset=-1, dim1=-2, dim2=-1).sum(-1) / pattern.size(-1)
        raise AssertionError(kind)
    return prev_token_score


register(Exercise(
    id="interp.prev_token_score",
    signature="prev_token_score(pattern: Tensor[L, H, T, T]) -> Tensor[L, H]  # mean attention from position i to i - 1, over i >= 1",
    reference=ref.prev_token_score,
    points=1,
    probes=[
        Probe("L=2, H=3, T=7", _patterns(2, 3, 7)),
        Probe("L=3, H=1, T=12", _patterns(3, 1, 12)),
        Probe("L=1, H=4, T=2", _patterns(1, 4, 2)),
    ],
    mistakes=[
        Mistake("the main diagonal is each position attending to itself; the previous token is the diagonal just below it, "
                "pattern.diagonal(offset=-1, dim1=-2, dim2=-1)", _prev("main")),
        Mistake("offset=+1 is the diagonal above the main one (key i + 1, a future token); the previous token is offset=-1",
                _prev("above")),
        Mistake("there are T - 1 queries with a previous token (i = 1 .. T - 1): take the mean of the T - 1 entries, not their sum / T",
                _prev("over_T")),
    ],
))


# ----------------------------------------------------------------------------- logit lens
def _norm(kind: str, C: int, g: torch.Generator) -> nn.Module:
    m = {"layernorm": lambda: LayerNorm(C), "rmsnorm": lambda: RMSNorm(C), "torch": lambda: nn.LayerNorm(C)}[kind]()
    with torch.no_grad():
        m.weight.copy_(1 + 0.3 * randn(g, C))
        if getattr(m, "bias", None) is not None:
            m.bias.copy_(0.2 * randn(g, C))
    return m


def _lens_inputs(kind: str, L: int, B: int, T: int, C: int, V: int):
    def make(g):
        scales = torch.linspace(0.3, 3.0, L + 1).view(L + 1, 1, 1, 1)  # each layer's stream a different size
        resids = randn(g, L + 1, B, T, C) * scales + 0.5 * randn(g, 1, 1, 1, C)
        return resids, {"kind": kind, "C": C, "seed": int(torch.randint(1 << 20, (1,), generator=g))}, randn(g, C, V, scale=C ** -0.5)
    return make


def _lens_run(fn, resids, norm_spec, W_U):
    ln_f = _norm(norm_spec["kind"], norm_spec["C"], torch.Generator().manual_seed(norm_spec["seed"]))
    with torch.no_grad():
        return fn(resids, ln_f, W_U)


def _lens(kind: str):
    def logit_lens(resids, ln_f, W_U):
        if kind == "no_norm":
            return resids @ W_U
        if kind == "cached_scale":
            return ref.logit_lens_cached_scale(resids, ln_f, W_U)
        if kind == "drop_embed":
            return ln_f(resids[1:]) @ W_U
        raise AssertionError(kind)
    return logit_lens


register(Exercise(
    id="interp.logit_lens",
    signature="logit_lens(resids: Tensor[L+1, B, T, C], ln_f: nn.Module, W_U: Tensor[C, V]) -> Tensor[L+1, B, T, V]  # the final "
              "norm applied to each layer's residual stream, then the unembedding",
    reference=ref.logit_lens,
    points=1,
    probes=[
        Probe("a LayerNorm, L=3, B=2, T=4, C=6, V=7", _lens_inputs("layernorm", 3, 2, 4, 6, 7), run=_lens_run, compare=close(1e-4, 1e-4)),
        Probe("an RMSNorm (Llama's), L=2, B=1, T=5, C=8, V=5", _lens_inputs("rmsnorm", 2, 1, 5, 8, 5), run=_lens_run, compare=close(1e-4, 1e-4)),
        Probe("torch's nn.LayerNorm, L=4, B=3, T=2, C=4, V=9", _lens_inputs("torch", 4, 3, 2, 4, 9), run=_lens_run, compare=close(1e-4, 1e-4)),
    ],
    mistakes=[
        Mistake("the residual stream goes through the final norm before the unembedding, as in the model's own forward: "
                "ln_f(resids) @ W_U", _lens("no_norm")),
        Mistake("each layer's stream has its own size: recompute the norm on every layer (ln_f(resids) does it, position by "
                "position and layer by layer) instead of reusing the final layer's normalisation scale for all of them",
                _lens("cached_scale")),
        Mistake("resids has L + 1 entries: the embeddings (before block 0) and each block's output; decode all of them, the "
                "embedding layer included", _lens("drop_embed")),
    ],
))


# ----------------------------------------------------------------------------- patch metric
def _metric_inputs(lead: tuple[int, ...], N: int):
    def make(g):
        clean = 2 + randn(g, N)
        corrupted = -1 + randn(g, N, scale=0.5)
        return randn(g, *lead, N), clean, corrupted
    return make


def _metric(kind: str):
    def patch_metric(patched, clean, corrupted):
        if kind == "swapped":
            return (patched - corrupted) / (corrupted - clean)
        if kind == "from_clean":
            return (patched - clean) / (corrupted - clean)
        if kind == "mean_first":
            return (patched.mean(-1) - corrupted.mean()) / (clean.mean() - corrupted.mean())
        raise AssertionError(kind)
    return patch_metric


register(Exercise(
    id="interp.patch_metric",
    signature="patch_metric(patched: Tensor, clean: Tensor, corrupted: Tensor) -> Tensor  # (patched - corrupted) / (clean - corrupted), "
              "per prompt",
    reference=ref.patch_metric,
    points=1,
    probes=[
        Probe("6 prompts", _metric_inputs((), 6)),
        Probe("a sweep: patched[3, 4, 5] (layer, position, prompt), clean and corrupted [5]", _metric_inputs((3, 4), 5)),
    ],
    mistakes=[
        Mistake("the denominator is clean - corrupted (so a full restore gives +1, not -1): (patched - corrupted) / (clean - corrupted)",
                _metric("swapped")),
        Mistake("measure from the corrupted run: 0 means as corrupted, 1 means as clean; (patched - clean) / (corrupted - clean) is "
                "1 minus that", _metric("from_clean")),
        Mistake("per prompt: divide element by element, without averaging over the prompts first", _metric("mean_first")),
    ],
))


# ----------------------------------------------------------------------------- fit_probe
def _probe_inputs(kind: str):
    def make(g):
        if kind == "copies":  # 150 groups x 4 near-identical rows, one random label per group, C = 256
            G, r, C, K = 150, 4, 256, 3
            centre = randn(g, G, C)
            acts = centre.repeat_interleave(r, 0) + 0.05 * randn(g, G * r, C)
            labels = torch.randint(K, (G,), generator=g).repeat_interleave(r)
            groups = torch.arange(G).repeat_interleave(r)
        elif kind == "noise":  # 200 rows of pure noise in C = 256 dimensions, random labels
            G, r, C, K = 40, 5, 256, 3
            acts, labels = randn(g, G * r, C), torch.randint(K, (G * r,), generator=g)
            groups = torch.arange(G).repeat_interleave(r)
        else:  # a signal every group shares: the label's direction plus noise
            G, r, C, K = 30, 10, 8, 4
            labels = torch.randint(K, (G * r,), generator=g)
            acts = 3 * F.one_hot(labels, C).float() + randn(g, G * r, C)
            groups = torch.arange(G).repeat_interleave(r)[torch.randperm(G * r, generator=g)]
        return acts, labels, groups, 1e-3
    return make


HINT_W = "W maps an activation to K logits: shape (C, K), logits = acts @ W (nn.Linear's weight is the transpose, (K, C))"


def _probe_run(fn, acts, labels, groups, l2):
    out = fn(acts, labels, groups, l2, torch.Generator().manual_seed(0))
    if not isinstance(out, tuple) or len(out) != 2:
        raise CheckFailed(f"expected (W, held_out_accuracy), got {describe(out)}")
    W, acc = out
    C, K = acts.size(1), int(labels.max()) + 1
    if is_real_tensor(W) and tuple(W.shape) == (K, C):
        raise CheckFailed(f"W has shape {(K, C)}, the transpose of (C, K) = {(C, K)}", hint=HINT_W)
    if not is_real_tensor(W) or W.dim() != 2 or tuple(W.shape) != (acts.size(1), int(labels.max()) + 1):
        raise CheckFailed(f"W: expected a tensor of shape (C, K) = {(acts.size(1), int(labels.max()) + 1)}, got {describe(W)}")
    if isinstance(acc, torch.Tensor) and acc.numel() == 1:
        acc = acc.item()
    if isinstance(acc, bool) or not isinstance(acc, (int, float)) or not 0 <= acc <= 1:
        raise CheckFailed(f"held_out_accuracy: expected a float between 0 and 1, got {describe(acc)}")
    fitted = ((acts @ W.detach().to(acts.dtype)).argmax(-1) == labels).float().mean().item()  # W on every row
    return {"accuracy": float(acc), "fitted": fitted}


def _probe_compare(got, expected, args):
    band = lambda a: "chance" if a < 0.6 else "high" if a > 0.85 else "middle"  # noqa: E731
    if band(got["accuracy"]) != band(expected["accuracy"]) or (band(got["accuracy"]) == "middle" and abs(got["accuracy"] - expected["accuracy"]) > 0.1):
        raise CheckFailed(f"held-out accuracy {got['accuracy']:.3f}, expected about {expected['accuracy']:.3f} "
                          f"({'near chance: no held-out group can be recognised from the others' if expected['accuracy'] < 0.6 else 'high'})")
    if expected["fitted"] > 0.85 and got["fitted"] < 0.75:
        raise CheckFailed(f"the W returned classifies only {got['fitted']:.1%} of all rows (the reference's: {expected['fitted']:.1%}): "
                          "is it the trained weight matrix, logits = acts @ W?")


def _fit(kind: str):
    def fit_probe(acts, labels, groups, l2=1e-3, generator=None):
        if kind == "transposed":
            W, acc = ref.fit_probe(acts, labels, groups, l2, generator)
            return W.T, acc
        N = acts.size(0)
        if kind == "row_split":
            train = torch.zeros(N, dtype=torch.bool)
            train[torch.randperm(N, generator=generator)[: int(0.8 * N)]] = True
        else:
            train = ref.group_split(groups, 0.2, generator)
        W = ref.train_softmax_probe(acts[train], labels[train], int(labels.max()) + 1, l2)
        rows = train if kind == "train_acc" else ~train
        return W, ((acts[rows] @ W).argmax(-1) == labels[rows]).float().mean().item()
    return fit_probe


register(Exercise(
    id="interp.fit_probe",
    signature="fit_probe(acts: Tensor[N, C], labels: LongTensor[N], groups: LongTensor[N], l2: float = 1e-3, generator: torch.Generator "
              "or None = None) -> (W: Tensor[C, K], held_out_accuracy: float)  # multinomial logistic regression trained on 80 % of the "
              "groups, scored on the other 20 %",
    reference=ref.fit_probe,
    points=2,
    probes=[
        Probe("a signal shared by all 30 groups (K=4, C=8)", _probe_inputs("signal"), run=_probe_run, compare=_probe_compare),
        Probe("150 groups of near-identical rows, one random label each (K=3, C=256)", _probe_inputs("copies"), run=_probe_run,
              compare=_probe_compare),
        Probe("pure noise, 200 rows in 256 dimensions (K=3)", _probe_inputs("noise"), run=_probe_run, compare=_probe_compare),
    ],
    mistakes=[
        Mistake("score the probe on the held-out groups' rows, not on the rows it was trained on (with more dimensions than rows "
                "any labels can be fitted: training accuracy says nothing)", _fit("train_acc")),
        Mistake("split the groups, not the rows: choose 20 % of the distinct group ids (torch.unique(groups), then a random "
                "permutation) and hold out every row of those; split by row, near-copies of a training row are scored as "
                "'held out' (leakage)", _fit("row_split")),
        Mistake(HINT_W, _fit("transposed")),
    ],
))
