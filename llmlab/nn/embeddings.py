"""Embeddings: from token ids to vectors, and the first model that learns from text.

An embedding table is a matrix W[V, C]: row i is the vector of token i. Looking a token up
is the same as multiplying its one-hot vector by W,

    one_hot(i) @ W = W[i]        (one_hot(i): [V], W: [V, C] -> [C])

so an embedding is just a linear layer whose input happens to be one-hot, and it learns by
gradient descent like any other weight. The simplest language model built on it is the
*bigram* model: the next token depends only on the current one, and its logits are a row
of a table, logits = W[current]. It can be fitted by counting (`bigram_counts`) or by
gradient descent on the cross-entropy (`cross_entropy`, `BigramModel`); both reach the
same loss. With a narrow table W[V, C] followed by a head C -> V, the rows become
C-dimensional vectors whose geometry (`cosine_similarity`, `nearest_neighbours`,
`project_2d`) shows what the model learned: tokens used alike point alike.

Left out on purpose: word2vec-style training objectives, subword embeddings and weight
tying (chapter 06 ties the input table to the output head).
References: Bengio et al. 2003, "A Neural Probabilistic Language Model"; Karpathy,
"makemore" (the counting and the gradient-descent bigram).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


# ----------------------------------------------------------------------------- the three exercises
def one_hot_embedding(ids: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Look up rows of `weight` by multiplying one-hot vectors with it.

    ids: LongTensor[...] with values in 0..V-1, weight: [V, C]  ->  [..., C] in weight's dtype.
    Equal to `weight[ids]` and to `nn.functional.embedding(ids, weight)`, only slower:
    the point is that an embedding is a matrix product.

    >>> one_hot_embedding(torch.tensor([2, 0]), torch.arange(6.).view(3, 2))
    tensor([[4., 5.],
            [0., 1.]])
    """
    V = weight.size(0)
    one_hot = F.one_hot(ids, num_classes=V).to(weight.dtype)  # (..., V); num_classes, or a batch without id V-1 is too narrow
    return one_hot @ weight  # (..., V) @ (V, C) -> (..., C)


def cosine_similarity(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """cos(a, b) = a . b / (max(|a|, eps) * max(|b|, eps)) along the last axis.

    a: [..., C], b: [..., C] (broadcast against each other)  ->  [...], values in [-1, 1].
    The eps keeps a zero vector from giving 0/0 = nan (its similarity to anything is 0),
    and is applied to each norm separately, as torch.nn.functional.cosine_similarity does.
    """
    dot = (a * b).sum(dim=-1)  # (...,)
    na = a.norm(dim=-1).clamp_min(eps)  # (...,) the length of each vector, over C
    nb = b.norm(dim=-1).clamp_min(eps)
    return dot / (na * nb)


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of the targets: -(1/N) sum_n log softmax(logits_n)[y_n].

    logits: [N, V], targets: LongTensor[N]  ->  a 0-d tensor.
    Written with log-sum-exp, log softmax(z)_y = z_y - m - log sum_j exp(z_j - m), m = max_j z_j,
    so it is exact for logits in the thousands, where exp() overflows and softmax() rounds
    the target's probability to 0 (and log 0 = -inf).
    """
    if logits.dim() != 2 or targets.shape != logits.shape[:1]:
        raise ValueError(f"logits, targets: expected shapes (N, V) and (N,), got {tuple(logits.shape)} and {tuple(targets.shape)}")
    m = logits.amax(dim=1, keepdim=True).detach()  # (N, 1); a constant shift, so no gradient needed
    log_z = m.squeeze(1) + (logits - m).exp().sum(dim=1).log()  # (N,) log sum_j exp(z_j)
    target_logit = logits.gather(1, targets.unsqueeze(1)).squeeze(1)  # (N,) z[n, y_n]: gather along V
    return (log_z - target_logit).mean()


# ----------------------------------------------------------------------------- the bigram model
def bigram_counts(ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """N[i, j] = how often token j directly follows token i in `ids` (LongTensor[T]) -> LongTensor[V, V]."""
    if ids.dim() != 1:
        raise ValueError(f"ids: expected a 1-D tensor of token ids, got shape {tuple(ids.shape)}")
    if len(ids) and not 0 <= int(ids.min()) <= int(ids.max()) < vocab_size:
        raise ValueError(f"ids: values must lie in 0..{vocab_size - 1} (vocab_size={vocab_size}), got {int(ids.min())}..{int(ids.max())}")
    flat = ids[:-1] * vocab_size + ids[1:]  # (T-1,) pair (i, j) -> one index i*V + j
    return torch.bincount(flat, minlength=vocab_size * vocab_size).view(vocab_size, vocab_size)


def bigram_log_probs(counts: torch.Tensor, smoothing: float = 1.0) -> torch.Tensor:
    """log P(next = j | current = i) = log (N[i, j] + s) / sum_j (N[i, j] + s).

    The pseudo-count `s` (add-one smoothing for s=1) gives pairs never seen in training a
    small probability instead of log 0 = -inf on the first unseen pair of new text.
    """
    if smoothing < 0:
        raise ValueError(f"smoothing={smoothing}: expected a pseudo-count >= 0")
    n = counts.double() + smoothing  # (V, V)
    return (n / n.sum(dim=1, keepdim=True)).log().float()


class BigramModel(nn.Module):
    """logits for the next token = a lookup in a table, nothing else.

    n_embd=None: one table wte[V, V]; row i holds the logits of the token after i (this
    is exactly the counting model, with log-probabilities learned instead of counted).
    n_embd=C: a narrow table wte[V, C] and a linear head C -> V. The bottleneck forces
    tokens that are followed by similar things to get similar vectors: an embedding.
    Same interface as llmlab.models.gpt.GPT: forward(idx, targets=None) -> (logits, loss).
    """

    def __init__(self, vocab_size: int, n_embd: int | None = None):
        super().__init__()
        if vocab_size < 1:
            raise ValueError(f"vocab_size={vocab_size}: expected at least 1")
        if n_embd is not None and n_embd < 1:
            raise ValueError(f"n_embd={n_embd}: expected a positive width or None (a full V x V table)")
        self.vocab_size, self.n_embd = vocab_size, n_embd
        self.wte = nn.Embedding(vocab_size, n_embd or vocab_size)
        self.lm_head = nn.Linear(n_embd, vocab_size) if n_embd else None

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx: LongTensor[...] -> logits[..., V], and the mean cross-entropy when targets (shaped like idx) are given."""
        x = self.wte(idx)  # (..., C), or (..., V) without a head
        logits = self.lm_head(x) if self.lm_head is not None else x  # (..., V)
        loss = None
        if targets is not None:
            if targets.shape != idx.shape:
                raise ValueError(f"targets: expected shape {tuple(idx.shape)} like idx, got {tuple(targets.shape)}")
            loss = cross_entropy(logits.reshape(-1, self.vocab_size), targets.reshape(-1))  # (N, V), (N,)
        return logits, loss

    @property
    def embeddings(self) -> torch.Tensor:
        """The token vectors, wte.weight: [V, C] (detached)."""
        return self.wte.weight.detach()


# ----------------------------------------------------------------------------- geometry
def nearest_neighbours(emb: torch.Tensor, query: int | torch.Tensor, k: int = 5, exclude: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The k rows of emb[V, C] most cosine-similar to `query` (a row index or a vector [C]).

    Returns (indices LongTensor[k], similarities [k]), most similar first. A row index as
    query is left out of its own neighbours (it would always come first, at 1.0);
    `exclude` leaves out another row, e.g. the source token of a vector-arithmetic query.
    """
    V = emb.size(0)
    skip = [exclude] if exclude is not None else []
    if isinstance(query, int):
        if not 0 <= query < V:
            raise ValueError(f"query={query}: expected a row index in 0..{V - 1}")
        skip.append(query)
        query = emb[query]
    if query.shape != emb.shape[1:]:
        raise ValueError(f"query: expected a vector of shape {tuple(emb.shape[1:])}, got {tuple(query.shape)}")
    if not 1 <= k <= V - len(skip):
        raise ValueError(f"k={k}: expected 1..{V - len(skip)} (V={V} rows, {len(skip)} left out)")
    sims = cosine_similarity(emb, query[None, :])  # (V, C) vs (1, C) -> (V,)
    sims[skip] = float("-inf")
    top = sims.topk(k)
    return top.indices, top.values


def project_2d(x: torch.Tensor) -> torch.Tensor:
    """Principal component analysis: x[N, C] -> [N, 2], the coordinates along the two
    directions in which the (centred) points vary most.

    Exact SVD, not torch.pca_lowrank (randomised), so the picture is the same every run;
    each axis's sign is fixed so that its largest loading is positive.
    """
    if x.dim() != 2 or x.size(1) < 2:
        raise ValueError(f"x: expected shape (N, C) with C >= 2, got {tuple(x.shape)}")
    xc = x.double() - x.double().mean(dim=0, keepdim=True)  # (N, C) centred
    _, _, Vh = torch.linalg.svd(xc, full_matrices=False)  # Vh: (min(N, C), C), rows = directions
    axes = Vh[:2]  # (2, C)
    sign = axes.gather(1, axes.abs().argmax(dim=1, keepdim=True)).sign()  # (2, 1)
    return (xc @ (axes * sign).T).to(x.dtype)  # (N, C) @ (C, 2) -> (N, 2)
