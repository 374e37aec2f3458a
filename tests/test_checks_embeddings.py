"""Chapter 02's checks: each passes the reference and the code of solutions/02_embeddings.ipynb,
accepts other correct ways of writing it (indexing instead of the matmul, F.normalize,
logsumexp), and rejects a bank of realistic wrong implementations — the known mistakes
with their own hint, and more that crash, lose autograd or return the wrong dtype/shape."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from _checks import assert_chapter, rejects
from llmlab.checks import REGISTRY, check, load_all

load_all()
CONTRACT = {  # the exercise contract of the course: ids and signatures are fixed
    "embeddings.one_hot_embedding": "one_hot_embedding(ids: LongTensor[...], weight: Tensor[V, C]) -> Tensor[..., C]",
    "embeddings.cosine_similarity": "cosine_similarity(a: Tensor[..., C], b: Tensor[..., C]) -> Tensor[...]",
    "embeddings.cross_entropy": "cross_entropy(logits: Tensor[N, V], targets: LongTensor[N]) -> Tensor[]",
}
IDS = list(CONTRACT)


# ----------------------------------------------------------------------------- contract and sources
def test_contract_ids_and_signatures():
    assert_chapter(IDS, "02_embeddings.ipynb")
    for eid, sig in CONTRACT.items():
        assert REGISTRY[eid].signature.startswith(sig)


# ----------------------------------------------------------------------------- the known mistakes


def test_every_exercise_has_a_bank_of_mistakes():
    assert {eid: len(REGISTRY[eid].mistakes) for eid in IDS} == {
        "embeddings.one_hot_embedding": 3, "embeddings.cosine_similarity": 5, "embeddings.cross_entropy": 7}


# ----------------------------------------------------------------------------- more wrong implementations
def ce_no_grad(z, y):
    with torch.no_grad():
        return F.cross_entropy(z, y)


def ce_gather_dim0(z, y):
    return -F.log_softmax(z, dim=1).gather(0, y[None, :]).mean()


WRONG = [
    # one_hot_embedding
    ("embeddings.one_hot_embedding", lambda ids, w: F.one_hot(ids).to(w.dtype) @ w, "num_classes"),  # V guessed from the batch
    ("embeddings.one_hot_embedding", lambda ids, w: F.one_hot(ids, w.size(0)).float() @ w, "your code raised RuntimeError"),  # float32 one-hot, float64 weight
    ("embeddings.one_hot_embedding", lambda ids, w: F.one_hot(ids, w.size(0)).to(w.dtype) @ w.T, "your code raised RuntimeError"),
    ("embeddings.one_hot_embedding", lambda ids, w: w @ F.one_hot(ids, w.size(0)).to(w.dtype), "your code raised RuntimeError"),
    ("embeddings.one_hot_embedding", lambda ids, w: F.one_hot(ids, w.size(0)).to(w.dtype), "shape"),
    ("embeddings.one_hot_embedding", lambda ids, w: F.one_hot(ids, w.size(0)) @ w.long(), "dtype"),
    ("embeddings.one_hot_embedding", lambda ids, w: torch.tensor(w[ids].tolist(), dtype=w.dtype), "weight.grad"),
    ("embeddings.one_hot_embedding", lambda ids, w: (F.one_hot(ids, w.size(0)).to(w.dtype) @ w).numpy(), "torch.Tensor"),
    # cosine_similarity
    ("embeddings.cosine_similarity", lambda a, b: (a * b).sum(-1) / (a.norm() * b.norm()), "values differ"),  # one norm over everything
    ("embeddings.cosine_similarity",
     lambda a, b: (a * b).sum(-1, keepdim=True) / (a.norm(dim=-1, keepdim=True) * b.norm(dim=-1, keepdim=True)).clamp_min(1e-8), "shape"),
    ("embeddings.cosine_similarity", lambda a, b: (a * b).sum(-1) / (a.norm(dim=-1) + b.norm(dim=-1)).clamp_min(1e-8), "values differ"),
    ("embeddings.cosine_similarity", lambda a, b: (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(1.0), "values differ"),  # "eps" of 1
    # cross_entropy
    ("embeddings.cross_entropy", lambda z, y: F.cross_entropy(z, y).item(), "torch.Tensor"),
    ("embeddings.cross_entropy", lambda z, y: F.cross_entropy(z, y, reduction="none").mean(0, keepdim=True), "shape"),
    ("embeddings.cross_entropy", ce_no_grad, "values differ"),
    ("embeddings.cross_entropy", ce_gather_dim0, "your code raised RuntimeError"),
    ("embeddings.cross_entropy", lambda z, y: F.cross_entropy(z, y) / torch.log(torch.tensor(2.0)), "values differ"),  # bits, not nats
    ("embeddings.cross_entropy", lambda z, y: F.cross_entropy(z, y, label_smoothing=0.1), "values differ"),
]


@pytest.mark.parametrize("eid, impl, words", WRONG, ids=[f"{e.split('.')[1]}-{i}" for i, (e, _, _) in enumerate(WRONG)])
def test_more_wrong_implementations_are_rejected(eid, impl, words):
    assert words in str(rejects(eid, impl))


# ----------------------------------------------------------------------------- other right answers pass
RIGHT = [
    ("embeddings.one_hot_embedding", lambda ids, w: w[ids]),  # indexing instead of the matmul is fine
    ("embeddings.one_hot_embedding", lambda ids, w: F.embedding(ids, w)),
    ("embeddings.one_hot_embedding", lambda ids, w: torch.einsum("...v,vc->...c", F.one_hot(ids, w.size(0)).to(w.dtype), w)),
    ("embeddings.cosine_similarity", lambda a, b: (F.normalize(a, dim=-1) * F.normalize(b, dim=-1)).sum(-1)),
    ("embeddings.cosine_similarity", lambda a, b: (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1) + 1e-8)),
    ("embeddings.cosine_similarity", lambda a, b: F.cosine_similarity(a, b, dim=-1)),
    ("embeddings.cross_entropy", lambda z, y: (torch.logsumexp(z, dim=1) - z[torch.arange(len(y)), y]).mean()),
    ("embeddings.cross_entropy", lambda z, y: F.nll_loss(F.log_softmax(z, dim=1), y)),
    ("embeddings.cross_entropy", lambda z, y: -(F.one_hot(y, z.size(1)) * F.log_softmax(z, dim=1)).sum(1).mean()),
]


@pytest.mark.parametrize("eid, impl", RIGHT, ids=[f"{e.split('.')[1]}-{i}" for i, (e, _) in enumerate(RIGHT)])
def test_other_correct_implementations_pass(eid, impl):
    assert check(eid, impl, quiet=True)
