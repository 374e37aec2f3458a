"""Chapter 16's checks: each passes the reference and the code of solutions/16_dpo.ipynb, accepts other right
ways to write it, and rejects every listed wrong implementation with its own hint (the issue's list: the prompt
or padding included, the mean instead of the sum, no shift; chosen and rejected swapped, β missing from the loss
or the rewards, a gradient reaching the reference values, σ without log, −log(σ(x)) overflowing; ≥ instead of >).
The exercise notebook, unsolved, says "not implemented yet" for each exercise and runs to its end."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from _checks import assert_chapter, assert_unsolved_runs, rejects, solution_namespace
from llmlab.checks import check, get_exercise, load_all
from llmlab.train import dpo as ref

load_all()
IDS = ["dpo.sequence_logprob", "dpo.dpo_loss", "dpo.reward_accuracy"]


def hint_of(eid: str, i: int) -> str:
    return get_exercise(eid).mistakes[i].hint


def test_chapter_contract():
    assert_chapter(IDS, "16_dpo.ipynb")


def test_the_reference_and_the_solutions_notebook_pass():
    ns = solution_namespace("16_dpo.ipynb")
    for eid in IDS:
        assert check(eid, getattr(ref, eid.split(".")[1]), quiet=True)
        assert check(eid, ns[eid.split(".")[1]], quiet=True)


def test_unsolved_exercise_notebook_runs_to_the_end_saying_not_implemented_yet(capsys):
    assert_unsolved_runs(IDS, "16_dpo.ipynb", capsys, after="(ln 2 = 0.6931)")


@pytest.mark.parametrize("eid", IDS)
def test_every_listed_mistake_is_rejected_with_its_own_hint(eid):
    for m in get_exercise(eid).mistakes:
        rejects(eid, m.impl, hint=m.hint)


# ----------------------------------------------------------------------------- sequence_logprob
def test_sequence_logprob_written_other_right_ways_passes():
    def with_cross_entropy(logits, ids, is_response):  # -CE per token, ignored positions masked
        B, T, V = logits.shape
        nll = F.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1), reduction="none").view(B, T - 1)
        return -(nll * is_response[:, 1:].float()).sum(1)

    def with_a_loop(logits, ids, is_response):
        out = []
        for b in range(ids.size(0)):
            total = logits.new_zeros(())
            for t in range(1, ids.size(1)):
                if is_response[b, t]:
                    total = total + (logits[b, t - 1] - logits[b, t - 1].logsumexp(0))[ids[b, t]]
            out.append(total)
        return torch.stack(out)

    def with_where(logits, ids, is_response):  # where instead of a product, and the shift applied to the mask too
        lp = logits.log_softmax(-1)[:, :-1].gather(2, ids[:, 1:, None])[..., 0]
        return torch.where(is_response[:, 1:], lp, torch.zeros_like(lp)).sum(-1)
    for fn in (with_cross_entropy, with_a_loop, with_where):
        assert check("dpo.sequence_logprob", fn, quiet=True)


def test_sequence_logprob_that_gathers_on_the_wrong_axis_is_rejected():
    def wrong_axis(logits, ids, is_response):  # gather along T (dim 1) instead of V: picks time steps, not tokens
        lp = F.log_softmax(logits[:, :-1], -1)  # (B, T-1, V)
        idx = ids[:, 1:].clamp(max=lp.size(1) - 1)  # (B, T-1): ids read as positions
        picked = lp.gather(1, idx.unsqueeze(-1).expand(-1, -1, lp.size(2)))[..., 0]  # (B, T-1)
        return (picked * is_response[:, 1:]).sum(-1)
    rejects("dpo.sequence_logprob", wrong_axis)


def test_sequence_logprob_of_log_of_softmax_fails_on_large_logits_only():
    def log_of_softmax(logits, ids, is_response):  # softmax then log: underflows to -inf when a logit is far below the max
        p = F.softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        return (p.log() * is_response[:, 1:]).sum(-1)
    e = rejects("dpo.sequence_logprob", log_of_softmax)
    assert "logits around 200" in str(e)


# ----------------------------------------------------------------------------- dpo_loss
def test_dpo_loss_written_other_right_ways_passes():
    def with_softplus(pi_c, pi_r, ref_c, ref_r, beta):  # -log σ(z) = softplus(-z), stable in torch
        z = beta * ((pi_c - ref_c.detach()) - (pi_r - ref_r.detach()))
        return F.softplus(-z).mean(), (beta * (pi_c - ref_c)).detach(), (beta * (pi_r - ref_r)).detach()

    def rewards_not_detached(pi_c, pi_r, ref_c, ref_r, beta):  # the task does not ask for detached rewards
        with torch.no_grad():
            ref_c, ref_r = ref_c.clone(), ref_r.clone()
        r_c, r_r = beta * (pi_c - ref_c), beta * (pi_r - ref_r)
        return -F.logsigmoid(r_c - r_r).mean(), r_c, r_r
    assert check("dpo.dpo_loss", with_softplus, quiet=True)
    assert check("dpo.dpo_loss", rewards_not_detached, quiet=True)


def test_dpo_loss_returning_only_the_loss_is_rejected_clearly():
    e = rejects("dpo.dpo_loss", lambda pc, pr, rc, rr, b: -F.logsigmoid(b * ((pc - rc.detach()) - (pr - rr.detach()))).mean())
    assert "(loss, chosen_rewards, rejected_rewards)" in e.message


def test_dpo_loss_with_the_policy_detached_is_rejected_by_the_gradient_probe():
    def no_grad(pi_c, pi_r, ref_c, ref_r, beta):
        return ref.dpo_loss(pi_c.detach(), pi_r.detach(), ref_c, ref_r, beta)
    e = rejects("dpo.dpo_loss", no_grad)
    assert "no gradient reaches pi_chosen" in e.message


# ----------------------------------------------------------------------------- reward_accuracy
def test_reward_accuracy_written_other_right_ways_passes():
    assert check("dpo.reward_accuracy", lambda c, r: float((c - r > 0).sum()) / len(c), quiet=True)
    assert check("dpo.reward_accuracy", lambda c, r: torch.gt(c, r).double().mean().item(), quiet=True)


def test_reward_accuracy_returning_a_tensor_is_told_to_call_item():
    e = rejects("dpo.reward_accuracy", lambda c, r: (c > r).float().mean())
    assert ".item()" in e.message


def test_reward_accuracy_probe_with_ties_fails_the_greater_or_equal_mistake_alone():
    # the at-initialisation probe is exactly where >= and > part: 0 % against 100 %
    e = rejects("dpo.reward_accuracy", lambda c, r: (c >= r).float().mean().item(), hint=hint_of("dpo.reward_accuracy", 0))
    assert "expected 0" in e.message or "ties" in str(e)
