"""Interpretability measurements on the course's models: head scores, the logit lens, linear probes,
activation patching and head ablation, all through the hook points of llmlab.nn.hooks.

    prev_token_score(pattern)            [L, H, T, T] -> [L, H]  attention from i to i - 1
    induction_score(pattern, n)          [L, H, T, T] -> [L, H]  on BOS + a segment of n tokens twice
    first_token_score / attention_entropy                        the "sink" and how spread a head is
    residual_stack(model, idx)           the stream before block 0 and after every block: [L+1, B, T, C]
    logit_lens(resids, ln_f, W_U)        each of them through the final norm and the unembedding
    fit_probe(acts, labels, groups)      multinomial logistic regression, held out by group
    patch_metric(patched, clean, corr)   (patched - corrupted) / (clean - corrupted), per prompt
    patch_residual_sweep / patch_head_sweep / head_ablation_losses

The logit lens (nostalgebraist 2020) recomputes the final norm for every layer: `logit_lens_cached_scale`
is the tempting shortcut that reuses the last layer's normalisation scale for all of them (what
TransformerLens's cached `ln_final` scale did before `apply_ln_to_stack` recomputed it), kept here to
show that it is wrong. Probes follow Hewitt & Liang 2019: a control task (labels fixed per token type
at random, with the task's label frequencies) measures what a probe can memorise, and selectivity
is task accuracy minus control accuracy. Patching follows Meng et al. 2022 and Wang et al. 2022 (IOI).

Left out on purpose: attribution patching (gradients), path patching, sparse autoencoders, probes
other than linear ones, and causal scrubbing.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from llmlab.nn.hooks import patch, run_with_cache, zero_head


# ----------------------------------------------------------------------------- head scores
def _check_pattern(pattern: torch.Tensor) -> None:
    if not isinstance(pattern, torch.Tensor) or pattern.dim() != 4 or pattern.size(-1) != pattern.size(-2):
        got = tuple(pattern.shape) if isinstance(pattern, torch.Tensor) else type(pattern).__name__
        raise ValueError(f"pattern: expected a tensor [L, H, T, T] (query rows, key columns), got {got}")


def prev_token_score(pattern: torch.Tensor) -> torch.Tensor:
    """Mean attention from position i to i - 1 over i >= 1: [L, H, T, T] -> [L, H]."""
    _check_pattern(pattern)
    return pattern.diagonal(offset=-1, dim1=-2, dim2=-1).mean(-1)  # the diagonal below the main one: (L, H, T - 1)


def induction_score(pattern: torch.Tensor, seq_len: int) -> torch.Tensor:
    """[L, H, T, T] with T = 1 + 2 seq_len (BOS, a segment, the segment again) -> [L, H]: the mean,
    over the second copy's queries q = 1 + n .. 2n, of the attention on key q - n + 1, the token right
    after the previous occurrence of the query's token (which sits at q - n)."""
    _check_pattern(pattern)
    n, T = seq_len, pattern.size(-1)
    if isinstance(n, bool) or not isinstance(n, int) or n < 2 or T != 1 + 2 * n:
        raise ValueError(f"seq_len={seq_len!r}: expected an integer >= 2 with T = 1 + 2 * seq_len, but T = {T}")
    diag = pattern.diagonal(offset=-(n - 1), dim1=-2, dim2=-1)  # (L, H, n + 2): entries (q, q - n + 1) for q = n - 1 .. 2n
    return diag[..., 2:].mean(-1)  # q = n + 1 .. 2n: the second copy


def first_token_score(pattern: torch.Tensor) -> torch.Tensor:
    """Mean attention on position 0 over queries i >= 1 (position 0 can only attend to itself): [L, H]."""
    _check_pattern(pattern)
    return pattern[..., 1:, 0].mean(-1)


def attention_entropy(pattern: torch.Tensor) -> torch.Tensor:
    """Mean entropy (nats) of each query's attention row: [L, H, T, T] -> [L, H]. 0 = one key; ln(i + 1) = uniform."""
    _check_pattern(pattern)
    p = pattern.clamp_min(1e-12)
    return -(pattern * p.log()).sum(-1).mean(-1)


def head_taxonomy(pattern: torch.Tensor, seq_len: int, threshold: float = 0.4) -> list[dict]:
    """One row per head of a pattern on a repeated sequence: its scores and a kind, the score above
    `threshold` that is largest among previous-token, first-token ("sink") and induction, else "other"."""
    scores = {"previous-token": prev_token_score(pattern), "first-token": first_token_score(pattern),
              "induction": induction_score(pattern, seq_len)}
    ent = attention_entropy(pattern)
    rows = []
    L, H = pattern.shape[:2]
    for layer in range(L):
        for head in range(H):
            s = {k: v[layer, head].item() for k, v in scores.items()}
            best = max(s, key=s.get)
            rows.append({"layer": layer, "head": head, **s, "entropy": ent[layer, head].item(),
                         "kind": best if s[best] >= threshold else "other"})
    return rows


def patterns(model: nn.Module, idx: torch.Tensor) -> torch.Tensor:
    """Every block's attention weights on idx[B, T], averaged over the batch: [L, H, T, T]."""
    names = [f"blocks.{i}.attn.pattern" for i in range(len(model.transformer.h))]
    with torch.no_grad():
        _, cache = run_with_cache(model, idx, names)
    return torch.stack([cache[n].mean(0) for n in names])  # (L, H, T, T)


# ----------------------------------------------------------------------------- the logit lens
def residual_stack(model: nn.Module, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits[B, T, V], resids[L+1, B, T, C]): the stream entering block 0 (the embeddings), then
    leaving each block; the last is what ln_f and the unembedding turn into the logits."""
    L = len(model.transformer.h)
    names = ["blocks.0.resid_pre"] + [f"blocks.{i}.resid_post" for i in range(L)]
    with torch.no_grad():
        logits, cache = run_with_cache(model, idx, names)
    return logits, torch.stack([cache[n] for n in names])  # (L+1, B, T, C)


def unembedding(model: nn.Module) -> torch.Tensor:
    """W_U[C, V]: the output layer as a matrix the stream is multiplied by."""
    return model.lm_head.weight.T  # (V, C) -> (C, V)


def logit_lens(resids: torch.Tensor, ln_f: nn.Module, W_U: torch.Tensor) -> torch.Tensor:
    """[L+1, B, T, C] -> [L+1, B, T, V]: ln_f applied to each layer's stream (its own statistics), then W_U."""
    if resids.dim() != 4 or resids.size(-1) != W_U.size(0):
        raise ValueError(f"resids: expected [L+1, B, T, C] with C = W_U.shape[0] = {W_U.size(0)}, got {tuple(resids.shape)}")
    return ln_f(resids) @ W_U  # (L+1, B, T, C) @ (C, V)


def logit_lens_cached_scale(resids: torch.Tensor, ln_f: nn.Module, W_U: torch.Tensor) -> torch.Tensor:
    """The wrong logit lens: every layer divided by the *final* layer's norm scale (1 / rms, or 1 / std
    after centring for a LayerNorm) instead of its own. Early streams are smaller, so their logits
    come out shrunk, their distributions too flat."""
    final = resids[-1]
    w, b = getattr(ln_f, "weight", None), getattr(ln_f, "bias", None)
    eps = getattr(ln_f, "eps", 1e-5)
    if b is not None or "LayerNorm" in type(ln_f).__name__:  # LayerNorm: centre each layer, scale by the final std
        scale = torch.sqrt(final.var(-1, keepdim=True, unbiased=False) + eps)  # (B, T, 1)
        y = (resids - resids.mean(-1, keepdim=True)) / scale
    else:  # RMSNorm
        y = resids / torch.sqrt(final.pow(2).mean(-1, keepdim=True) + eps)
    if w is not None:
        y = y * w
    if b is not None:
        y = y + b
    return y @ W_U


def lens_report(lens_logits: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per layer, from lens logits [L+1, B, T, V] and the next tokens [B, T]: "loss" (cross-entropy of
    the target), "top1" (share of positions whose argmax is the target), "agree" (share whose argmax
    is the final layer's), "kl" (KL from the final layer's distribution, nats). Each: [L+1]."""
    logp = F.log_softmax(lens_logits.float(), -1)  # (L+1, B, T, V)
    final = logp[-1]
    loss = -logp.gather(-1, targets.expand(logp.shape[:-1]).unsqueeze(-1)).squeeze(-1)  # (L+1, B, T)
    top = logp.argmax(-1)  # (L+1, B, T)
    kl = (final.exp() * (final - logp)).sum(-1)  # (L+1, B, T)
    return {"loss": loss.mean((1, 2)), "top1": (top == targets).float().mean((1, 2)),
            "agree": (top == top[-1]).float().mean((1, 2)), "kl": kl.mean((1, 2))}


# ----------------------------------------------------------------------------- probes
def group_split(groups: torch.Tensor, held_out: float = 0.2, generator: torch.Generator | None = None) -> torch.Tensor:
    """BoolTensor[N], True for rows of the training groups: a random (1 - held_out) of the distinct groups."""
    ids = torch.unique(groups)
    if len(ids) < 2:
        raise ValueError(f"groups: expected at least 2 distinct groups to hold some out, got {len(ids)}")
    n_held = min(len(ids) - 1, max(1, round(held_out * len(ids))))
    held = ids[torch.randperm(len(ids), generator=generator)[:n_held]]
    return ~torch.isin(groups, held)


def train_softmax_probe(acts: torch.Tensor, labels: torch.Tensor, n_classes: int, l2: float = 1e-3, steps: int = 100) -> torch.Tensor:
    """W[C, K] minimising mean cross-entropy(acts @ W, labels) + l2 * ||W||^2 (full batch, L-BFGS from zero)."""
    W = torch.zeros(acts.size(1), n_classes, dtype=torch.float64, requires_grad=True)
    X, y = acts.double(), labels
    opt = torch.optim.LBFGS([W], lr=1, max_iter=steps, tolerance_grad=1e-9, tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(X @ W, y) + l2 * W.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return W.detach().to(acts.dtype)


def fit_probe(acts: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor, l2: float = 1e-3,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, float]:
    """A linear probe acts[N, C] -> labels[N] in K = labels.max() + 1 classes, trained on 80 % of the
    groups (documents: rows of one never sit on both sides) and scored on the other 20 % -> (W[C, K],
    held-out accuracy)."""
    if acts.dim() != 2 or labels.shape != (acts.size(0),) or groups.shape != (acts.size(0),):
        raise ValueError(f"acts, labels, groups: expected shapes [N, C], [N], [N], got {tuple(acts.shape)}, {tuple(labels.shape)}, {tuple(groups.shape)}")
    train = group_split(groups, 0.2, generator)  # (N,)
    W = train_softmax_probe(acts[train], labels[train], int(labels.max()) + 1, l2)
    acc = ((acts[~train] @ W).argmax(-1) == labels[~train]).float().mean().item()
    return W, acc


def control_labels(token_ids: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Hewitt & Liang's control task: every token type gets one label, drawn at random with the task's
    label frequencies; each row gets its token's label. A probe can only learn it by memorising types."""
    types = torch.unique(token_ids)
    freq = torch.bincount(labels).double()
    per_type = torch.multinomial(freq / freq.sum(), len(types), replacement=True, generator=generator)  # (n_types,)
    lookup = torch.zeros(int(types.max()) + 1, dtype=torch.long)
    lookup[types] = per_type
    return lookup[token_ids]


# ----------------------------------------------------------------------------- patching and ablation
def patch_metric(patched: torch.Tensor, clean: torch.Tensor, corrupted: torch.Tensor) -> torch.Tensor:
    """(patched - corrupted) / (clean - corrupted), per prompt: 0 = as corrupted, 1 = fully restored."""
    return (patched - corrupted) / (clean - corrupted)


def logit_diff(logits: torch.Tensor, good: torch.Tensor, bad: torch.Tensor) -> torch.Tensor:
    """Last position's logit of `good` minus that of `bad`, per prompt: logits[B, T, V], good/bad[B] -> [B]."""
    last = logits[:, -1]  # (B, V)
    return last.gather(1, good[:, None]).squeeze(1) - last.gather(1, bad[:, None]).squeeze(1)


def patch_residual_sweep(model: nn.Module, clean: torch.Tensor, corrupted: torch.Tensor, metric: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """For each layer's incoming stream (blocks.i.resid_pre, then the last block's resid_post) and
    each position t: the corrupted run with the clean run's stream at (layer, t) -> metric(logits)
    [B], averaged over prompts: Tensor[L + 1, T]."""
    L, T = len(model.transformer.h), clean.size(1)
    names = [f"blocks.{i}.resid_pre" for i in range(L)] + [f"blocks.{L - 1}.resid_post"]
    with torch.no_grad():
        _, cache = run_with_cache(model, clean, names)
        out = torch.zeros(L + 1, T)
        for li, name in enumerate(names):
            for t in range(T):
                def put(x, name=name, t=t):
                    x = x.clone()
                    x[:, t] = cache[name][:, t]  # (B, C) at one position
                    return x
                with patch(model, {name: put}):
                    logits, _ = model(corrupted)
                out[li, t] = metric(logits).mean()
    return out


def patch_head_sweep(model: nn.Module, clean: torch.Tensor, corrupted: torch.Tensor, metric: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """For each head: the corrupted run with that head's clean output (attn.head_out, every position)
    -> the mean metric: Tensor[L, H]."""
    L, H = len(model.transformer.h), model.config.n_head
    names = [f"blocks.{i}.attn.head_out" for i in range(L)]
    with torch.no_grad():
        _, cache = run_with_cache(model, clean, names)
        out = torch.zeros(L, H)
        for li, name in enumerate(names):
            for h in range(H):
                def put(x, name=name, h=h):
                    x = x.clone()
                    x[:, :, h] = cache[name][:, :, h]  # (B, T, D)
                    return x
                with patch(model, {name: put}):
                    logits, _ = model(corrupted)
                out[li, h] = metric(logits).mean()
    return out


def mean_loss(model: nn.Module, idx: torch.Tensor, positions: slice = slice(None)) -> float:
    """Mean next-token cross-entropy over the given predicting positions of idx[B, T]."""
    with torch.no_grad():
        logits, _ = model(idx)
    loss = F.cross_entropy(logits[:, :-1].transpose(1, 2), idx[:, 1:], reduction="none")  # (B, T - 1)
    return loss[:, positions].mean().item()


def head_ablation_losses(model: nn.Module, idx: torch.Tensor, positions: slice = slice(None)) -> torch.Tensor:
    """The mean loss (over `positions`) with each head zeroed in turn: Tensor[L, H]."""
    L, H = len(model.transformer.h), model.config.n_head
    out = torch.zeros(L, H)
    for li in range(L):
        for h in range(H):
            with patch(model, {f"blocks.{li}.attn.head_out": zero_head(h)}):
                out[li, h] = mean_loss(model, idx, positions)
    return out
