"""Checks for chapter 02, embeddings: one_hot_embedding, cosine_similarity, cross_entropy.

Every dimension differs (ids of shape (2, 5) into V=11, C=3; vectors of shape (3, 5, 7))
so an axis mix-up changes the shape or the values; weights in float64 catch a one-hot
left in the wrong dtype; a zero vector catches a missing eps; logits in the thousands
(one target 500 below its row's maximum) catch exp() overflow and log(softmax) underflow; gradients are
compared too, so an answer that leaves autograd (.item(), .detach(), numpy) is caught.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from llmlab.checks.core import CheckFailed, Exercise, Mistake, Probe, compare_tensors, randn, register
from llmlab.nn import embeddings as ref


def close_same_dtype(atol: float = 1e-6, rtol: float = 1e-5, what: str = "output"):
    """Values as close(), and the same floating dtype (float64 in must stay float64 out).
    Tolerance: a lookup or a handful of float32 operations on O(1) values, error ~1e-7."""

    def compare(got, expected, args=None):
        if isinstance(got, torch.Tensor) and got.dtype != expected.dtype:
            raise CheckFailed(f"{what} has dtype {got.dtype}, expected {expected.dtype} (the dtype of `weight`)")
        compare_tensors(got, expected, atol, rtol, what)

    return compare


# ----------------------------------------------------------------------------- one_hot_embedding
def _ids_weight(shape, V, C, high=None, dtype=torch.float32):
    def inputs(g):
        ids = torch.randint(high or V, shape, generator=g)
        return ids, randn(g, V, C).to(dtype)
    return inputs


def _embedding_grad(fn, ids, weight, upstream):
    """d(sum(out * upstream)) / d weight: row i gets the upstream of every position holding id i."""
    with torch.enable_grad():  # the grader computes expected outputs under no_grad()
        weight = weight.clone().requires_grad_(True)
        out = fn(ids, weight)
        if not isinstance(out, torch.Tensor) or out.shape != upstream.shape:
            return out  # the value probes report what is wrong with it
        if out.requires_grad:
            (out * upstream).sum().backward()
    return weight.grad if weight.grad is not None else torch.zeros_like(weight)


def _with_upstream(shape, V, C):
    def inputs(g):
        ids = torch.randint(V, shape, generator=g)
        return ids, randn(g, V, C), randn(g, *shape, C)
    return inputs


register(Exercise(
    id="embeddings.one_hot_embedding",
    signature="one_hot_embedding(ids: LongTensor[...], weight: Tensor[V, C]) -> Tensor[..., C]  # computed as one_hot(ids) @ weight",
    reference=ref.one_hot_embedding,
    probes=[
        Probe("ids (2, 5) into V=11, C=3", _ids_weight((2, 5), 11, 3), compare=close_same_dtype()),
        Probe("a batch whose ids never reach V-1 (ids < 6, V=13)", _ids_weight((9,), 13, 4, high=6), compare=close_same_dtype(),
              hint="F.one_hot(ids) guesses the number of classes from the largest id; pass num_classes=weight.size(0)"),
        Probe("3-D ids (2, 3, 4) into V=7, C=6", _ids_weight((2, 3, 4), 7, 6), compare=close_same_dtype()),
        Probe("float64 weights give float64 vectors", _ids_weight((4, 3), 5, 2, dtype=torch.float64), compare=close_same_dtype(),
              hint="F.one_hot returns int64: convert it with .to(weight.dtype) before the matrix product"),
        Probe("gradients reach `weight`", _with_upstream((3, 4), 6, 5), run=_embedding_grad, compare=close_same_dtype(what="weight.grad"),
              hint="keep the result connected to `weight`: no .detach(), .data, torch.no_grad() or numpy on the way"),
    ],
    mistakes=[
        Mistake("keep the leading shape of `ids`: one_hot(ids) is (..., V) and (..., V) @ (V, C) is (..., C); don't flatten the ids",
                lambda ids, w: F.one_hot(ids.flatten(), w.size(0)).to(w.dtype) @ w),
        Mistake("the result must have weight's dtype; convert the one-hot with .to(weight.dtype), not to float64 or another fixed type",
                lambda ids, w: F.one_hot(ids, w.size(0)).double() @ w.double()),
        Mistake("you detached the weights, so no gradient can reach them", lambda ids, w: F.one_hot(ids, w.size(0)).to(w.dtype) @ w.detach()),
    ],
))


# ----------------------------------------------------------------------------- cosine_similarity
def _vectors(shape_a, shape_b, scale_a=2.5, scale_b=0.7, zero_rows=False):
    def inputs(g):
        a, b = randn(g, *shape_a, scale=scale_a), randn(g, *shape_b, scale=scale_b)
        if zero_rows:
            a[0] = 0.0  # a zero vector: its cosine with anything is defined as 0
            b[..., 1, :] = 0.0
        return a, b
    return inputs


def _self_and_opposite(fn, a, b):
    return torch.stack([fn(a, a), fn(a, -3.0 * a), fn(a, 0.01 * a)])


register(Exercise(
    id="embeddings.cosine_similarity",
    signature="cosine_similarity(a: Tensor[..., C], b: Tensor[..., C]) -> Tensor[...]  # along the last axis",
    reference=lambda a, b: ref.cosine_similarity(a, b),
    probes=[
        Probe("vectors of shape (3, 5, 7), lengths far from 1", _vectors((3, 5, 7), (3, 5, 7)),
              hint="the similarity runs along the last axis (dim=-1), and divides by both lengths"),
        Probe("broadcasting (4, 1, 6) against (1, 5, 6) -> (4, 5)", _vectors((4, 1, 6), (1, 5, 6))),
        Probe("one vector against a table: (9,) vs (2, 9)", _vectors((9,), (2, 9), scale_a=4.0)),
        Probe("a zero vector has similarity 0, not nan", _vectors((3, 4, 8), (4, 8), zero_rows=True),
              hint="|a| = 0 gives 0/0 = nan: clamp each length to at least eps (norm.clamp_min(1e-8)) before dividing"),
        Probe("cos(a, a) = 1, cos(a, -3a) = -1, cos(a, a/100) = 1", _vectors((5, 3), (5, 3)), run=_self_and_opposite),
    ],
    mistakes=[
        Mistake("divide the dot product by the lengths of both vectors: a.b / (|a| |b|)", lambda a, b: (a * b).sum(-1)),
        Mistake("F.cosine_similarity's default is dim=1; the vectors lie along the last axis, dim=-1",
                lambda a, b: F.cosine_similarity(a, b, dim=1)),
        Mistake("you normalised over the wrong axis: the length of each vector is a.norm(dim=-1, keepdim=True)",
                lambda a, b: ((a / a.norm(dim=0, keepdim=True)) * (b / b.norm(dim=0, keepdim=True))).sum(-1)),
        Mistake("the length is the square root of the sum of squares: a.norm(dim=-1), not a.pow(2).sum(-1)",
                lambda a, b: (a * b).sum(-1) / (a.pow(2).sum(-1) * b.pow(2).sum(-1))),
        Mistake("a zero vector gives 0/0 = nan: clamp each length with .clamp_min(eps) (eps=1e-8) before dividing",
                lambda a, b: (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))),
    ],
))


# ----------------------------------------------------------------------------- cross_entropy
def _logits_targets(N, V, scale=2.0, shift=0.0, far_target=False):
    def inputs(g):
        z, y = randn(g, N, V, scale=scale) + shift, torch.randint(V, (N,), generator=g)
        if far_target:  # row 0's target 500 below its row's max: softmax gives it exactly 0.0 in float32
            z[0, y[0]] = z[0].max() - 500.0
        return z, y
    return inputs


def _ce_grad(fn, logits, targets):
    """d loss / d logits, which for the mean cross-entropy is (softmax(logits) - one_hot(targets)) / N."""
    with torch.enable_grad():  # the grader computes expected outputs under no_grad()
        logits = logits.clone().requires_grad_(True)
        loss = fn(logits, targets)
        if not isinstance(loss, torch.Tensor) or loss.shape != ():
            return loss  # the value probes say what is wrong with it
        if loss.requires_grad:
            loss.backward()
    return logits.grad if logits.grad is not None else torch.zeros_like(logits)


def _close_relative(got, expected, args=None):
    # |loss| ~ 100 here: float32 keeps ~7 digits, so 1e-5 relative is rounding, 1e-2 is a bug
    compare_tensors(got, expected, atol=1e-4, rtol=1e-5, what="loss")


def _ce_log_softmax_of_softmax(logits, targets):
    p = F.softmax(logits, dim=1)  # stable, but the target's probability can round to 0
    return -p.log()[torch.arange(len(targets)), targets].mean()


register(Exercise(
    id="embeddings.cross_entropy",
    signature="cross_entropy(logits: Tensor[N, V], targets: LongTensor[N]) -> Tensor[]  # mean over N, numerically stable",
    reference=ref.cross_entropy,
    points=2,
    probes=[
        Probe("N=6 rows, V=11 classes", _logits_targets(6, 11)),
        Probe("more rows than classes: N=13, V=5", _logits_targets(13, 5)),
        Probe("a single row, N=1", _logits_targets(1, 4)),
        Probe("logits around 1000, one target 500 below its row's maximum",
              _logits_targets(6, 11, scale=100.0, shift=1000.0, far_target=True), compare=_close_relative,
              hint="exp(1000) overflows and softmax rounds tiny probabilities to 0 (log 0 = -inf): compute "
                   "log softmax as z - max(z) - log(sum(exp(z - max(z))))"),
        Probe("logits around -1000", _logits_targets(6, 11, scale=10.0, shift=-1000.0), compare=_close_relative,
              hint="exp(-1000) is 0 and log 0 = -inf: subtract each row's maximum before exp()"),
        Probe("gradient = (softmax - one_hot) / N", _logits_targets(7, 9), run=_ce_grad,
              hint="keep the loss a tensor connected to `logits` (no .item(), numpy or torch.no_grad()), and average over the N rows"),
    ],
    mistakes=[
        Mistake("average over the N rows (.mean()), don't sum", lambda z, y: -F.log_softmax(z, dim=1)[torch.arange(len(y)), y].sum()),
        Mistake("the loss is the *negative* log-likelihood: put a minus sign in front", lambda z, y: F.log_softmax(z, dim=1)[torch.arange(len(y)), y].mean()),
        Mistake("the softmax runs over the classes (dim=1, V), not over the batch (dim=0)",
                lambda z, y: -F.log_softmax(z, dim=0)[torch.arange(len(y)), y].mean()),
        Mistake("pick one logit per row: z[torch.arange(N), targets] (or gather along dim=1); z[:, targets] takes an N x N block",
                lambda z, y: -F.log_softmax(z, dim=1)[:, y].mean()),
        Mistake("you averaged over all N*V entries of one_hot * log p; average over the N rows only",
                lambda z, y: -(F.one_hot(y, z.size(1)) * F.log_softmax(z, dim=1)).mean()),
        Mistake("exp() overflows for large logits: subtract each row's maximum first (log-sum-exp)",
                lambda z, y: (z.exp().sum(1).log() - z[torch.arange(len(y)), y]).mean()),
        Mistake("log(softmax(z)) hits log 0 = -inf when a probability rounds to 0; compute log softmax directly: z - logsumexp(z)",
                _ce_log_softmax_of_softmax),
    ],
))

