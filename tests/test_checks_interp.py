"""Chapter 19's checks: each passes the reference and the code of solutions/19_interpretability.ipynb, accepts
other right ways to write it, and rejects wrong implementations written the way learners write them, each with its
own hint. The exercise notebook, unsolved, says "not implemented yet" for each exercise and runs to the end."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from _checks import assert_chapter, assert_unsolved_runs, rejects, solution_namespace
from llmlab.checks import check, get_exercise, load_all
from llmlab.train import interp as ref

load_all()
IDS = ["interp.induction_score", "interp.prev_token_score", "interp.logit_lens", "interp.patch_metric", "interp.fit_probe"]


def hint_of(eid: str, i: int) -> str:
    return get_exercise(eid).mistakes[i].hint


def test_chapter_contract():
    assert_chapter(IDS, "19_interpretability.ipynb")


def test_unsolved_exercise_notebook_runs_to_the_end_saying_not_implemented_yet(capsys):
    assert_unsolved_runs(IDS, "19_interpretability.ipynb", capsys, after="the last layer's lens equals the model's logits: True")


def test_the_solutions_notebook_passes_every_check():
    ns = solution_namespace("19_interpretability.ipynb", record_checks=True)
    assert [eid for eid, _ in ns["__checked__"]] == IDS
    for eid, fn in ns["__checked__"]:
        assert check(eid, fn, quiet=True)


@pytest.mark.parametrize("eid", IDS)
def test_every_listed_mistake_is_rejected_with_its_own_hint(eid):
    for i, m in enumerate(get_exercise(eid).mistakes):
        rejects(eid, m.impl, hint_of(eid, i))


@pytest.mark.parametrize("eid", IDS)
def test_the_reference_passes(eid):
    assert check(eid, get_exercise(eid).reference, quiet=True)


# ----------------------------------------------------------------------------- other right ways
def induction_by_loops(pattern, seq_len):
    L, H, T, _ = pattern.shape
    out = torch.zeros(L, H)
    for q in range(seq_len + 1, 2 * seq_len + 1):
        out += pattern[:, :, q, q - seq_len + 1]
    return out / seq_len


def induction_by_gather(pattern, seq_len):
    q = torch.arange(seq_len + 1, 2 * seq_len + 1)
    return pattern[:, :, q, q - seq_len + 1].mean(-1)


def test_induction_score_written_other_right_ways_passes():
    assert check("interp.induction_score", induction_by_loops, quiet=True)
    assert check("interp.induction_score", induction_by_gather, quiet=True)


def test_prev_token_score_written_other_right_ways_passes():
    assert check("interp.prev_token_score", lambda p: torch.stack([p[..., i, i - 1] for i in range(1, p.size(-1))], -1).mean(-1), quiet=True)
    assert check("interp.prev_token_score", lambda p: (p * torch.diag(torch.ones(p.size(-1) - 1), -1)).sum((-1, -2)) / (p.size(-1) - 1), quiet=True)


def test_logit_lens_written_other_right_ways_passes():
    assert check("interp.logit_lens", lambda r, ln_f, W: torch.stack([ln_f(x) for x in r]) @ W, quiet=True)
    assert check("interp.logit_lens", lambda r, ln_f, W: torch.einsum("lbtc,cv->lbtv", ln_f(r), W), quiet=True)


def test_patch_metric_written_another_right_way_passes():
    assert check("interp.patch_metric", lambda p, c, k: 1 - (c - p) / (c - k), quiet=True)


def fit_probe_adam(acts, labels, groups, l2=1e-3, generator=None):
    """Right, another way: Adam instead of L-BFGS, groups shuffled by sorting random keys, a random init."""
    ids = torch.unique(groups)
    order = torch.argsort(torch.rand(len(ids), generator=generator))
    held = ids[order[: int(0.2 * len(ids))]]
    train = ~torch.isin(groups, held)
    W = (0.01 * torch.randn(acts.size(1), int(labels.max()) + 1, generator=generator)).requires_grad_()
    opt = torch.optim.Adam([W], lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        loss = F.cross_entropy(acts[train] @ W, labels[train]) + l2 * (W ** 2).sum()
        loss.backward()
        opt.step()
    W = W.detach()
    return W, float(((acts[~train] @ W).argmax(1) == labels[~train]).double().mean())


def test_fit_probe_written_another_right_way_passes():
    assert check("interp.fit_probe", fit_probe_adam, quiet=True)


def test_fit_probe_returning_an_untrained_w_is_rejected():
    def zeros(acts, labels, groups, l2=1e-3, generator=None):
        W, acc = ref.fit_probe(acts, labels, groups, l2, generator)
        return torch.zeros_like(W), acc
    rejects("interp.fit_probe", zeros, "is it the trained weight matrix")


def test_fit_probe_with_the_wrong_shape_of_w_is_rejected():
    def transposed(acts, labels, groups, l2=1e-3, generator=None):
        W, acc = ref.fit_probe(acts, labels, groups, l2, generator)
        return W.T, acc
    rejects("interp.fit_probe", transposed, "the transpose of (C, K)")


def test_a_logit_lens_that_returns_the_embeddings_only_is_rejected():
    rejects("interp.logit_lens", lambda r, ln_f, W: ln_f(r[:1]) @ W, "has shape")
