"""Chapter 15's checks: each passes the reference and the code of solutions/15_rlhf.ipynb, accepts other right ways to
write it, rejects every listed mistake with its own hint, and rejects wrong implementations written the way learners
write them. The exercise notebook, unsolved, says "not implemented yet" for each exercise and runs to the end."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from _checks import assert_chapter, assert_unsolved_runs, rejects, solution_namespace
from llmlab.checks import check, get_exercise, load_all

load_all()
IDS = ["rlhf.bradley_terry_loss", "rlhf.token_logprobs", "rlhf.kl_shaped_rewards", "rlhf.gae", "rlhf.ppo_clip_loss"]


def test_chapter_contract():
    assert_chapter(IDS, "15_rlhf.ipynb")


def test_unsolved_exercise_notebook_runs_to_the_end_saying_not_implemented_yet(capsys):
    assert_unsolved_runs(IDS, "15_rlhf.ipynb", capsys, after="the pieces together: PPO loss at rho = 1 is")


def test_the_solutions_notebook_passes_every_check():
    ns = solution_namespace("15_rlhf.ipynb")
    for eid in IDS:
        assert check(eid, ns[eid.split(".", 1)[1]], quiet=True), eid


@pytest.mark.parametrize("eid", IDS)
def test_the_reference_passes(eid):
    assert check(eid, get_exercise(eid).reference, quiet=True)


@pytest.mark.parametrize("eid,i", [(eid, i) for eid in IDS for i in range(len(get_exercise(eid).mistakes))])
def test_every_listed_mistake_is_rejected_with_its_own_hint(eid, i):
    m = get_exercise(eid).mistakes[i]
    rejects(eid, m.impl, m.hint)


def hint(eid: str, i: int) -> str:
    return get_exercise(eid).mistakes[i].hint


# ----------------------------------------------------------------------------- other right ways
def test_other_right_ways_pass():
    assert check("rlhf.bradley_terry_loss", lambda c, r: F.softplus(r - c).mean(), quiet=True)  # softplus(-x) = -log sigma(x)
    assert check("rlhf.bradley_terry_loss", lambda c, r: F.binary_cross_entropy_with_logits(c - r, torch.ones_like(c)), quiet=True)
    assert check("rlhf.token_logprobs", lambda lg, ids: -F.cross_entropy(lg[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none"),
                 quiet=True)
    assert check("rlhf.token_logprobs",
                 lambda lg, ids: (lg[:, :-1] - lg[:, :-1].logsumexp(-1, keepdim=True)).gather(2, ids[:, 1:].unsqueeze(2))[..., 0], quiet=True)

    def kl_loop(score, logp, ref_logp, is_response, beta):
        out = torch.zeros_like(logp)
        for b in range(logp.size(0)):
            pos = is_response[b].nonzero().flatten().tolist()
            for t in pos:
                out[b, t] = -beta * (logp[b, t] - ref_logp[b, t])
            out[b, pos[-1]] += score[b]
        return out
    assert check("rlhf.kl_shaped_rewards", kl_loop, quiet=True)

    def gae_per_row(rewards, values, is_response, gamma, lam):
        adv, ret = torch.zeros_like(rewards), torch.zeros_like(rewards)
        for b in range(rewards.size(0)):
            pos = is_response[b].nonzero().flatten().tolist()
            a, v_next = 0.0, 0.0
            for t in reversed(pos):
                a = rewards[b, t] + gamma * v_next - values[b, t] + gamma * lam * a
                adv[b, t], ret[b, t] = a, a + values[b, t]
                v_next = values[b, t]
        return adv, ret
    assert check("rlhf.gae", gae_per_row, quiet=True)

    def ppo_masked_select(new, old, adv, mask, clip=0.2):  # TRL's form: max of the two negated terms
        ratio = (new - old.detach()).exp()[mask]
        a = adv[mask]
        return torch.max(-a * ratio, -a * ratio.clamp(1 - clip, 1 + clip)).mean()
    assert check("rlhf.ppo_clip_loss", ppo_masked_select, quiet=True)


# ----------------------------------------------------------------------------- learners' mistakes, as written
def test_bradley_terry_written_with_log_of_sigmoid_is_named_as_the_overflow():
    rejects("rlhf.bradley_terry_loss", lambda c, r: torch.log(1 / (1 + torch.exp(-(c - r)))).neg().mean(), "F.logsigmoid")


def test_bradley_terry_with_rejected_minus_chosen_is_named_as_the_sign():
    rejects("rlhf.bradley_terry_loss", lambda c, r: -F.logsigmoid(r - c).mean(), hint("rlhf.bradley_terry_loss", 0))


def test_token_logprobs_without_the_shift_in_full_shape_is_rejected():
    e = rejects("rlhf.token_logprobs", lambda lg, ids: F.log_softmax(lg, -1).gather(-1, ids[..., None])[..., 0])
    assert "shape" in str(e)


def test_kl_penalty_on_the_prompt_is_named():
    def wrong(score, logp, ref_logp, is_response, beta):
        r = -beta * (logp - ref_logp)
        last = torch.where(is_response, torch.arange(is_response.size(1)), -1).amax(1)
        r[torch.arange(len(score)), last] += score
        return r
    rejects("rlhf.kl_shaped_rewards", wrong, hint("rlhf.kl_shaped_rewards", 3))


def test_gae_with_returns_from_rewards_only_is_rejected():
    def mc_returns(rewards, values, is_response, gamma, lam):  # discounted rewards-to-go: no critic at all
        ret = torch.zeros_like(rewards)
        g = torch.zeros(rewards.size(0))
        for t in reversed(range(rewards.size(1))):
            g = torch.where(is_response[:, t], rewards[:, t] + gamma * g, g)
            ret[:, t] = g * is_response[:, t]
        return ret, ret
    rejects("rlhf.gae", mc_returns)


def test_ppo_with_logp_old_kept_in_the_graph_is_caught_by_the_gradient_probe():
    def wrong(new, old, adv, mask, clip=0.2):
        ratio = torch.exp(new - old)
        s = torch.min(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv)
        return -(s * mask).sum() / mask.sum()
    e = rejects("rlhf.ppo_clip_loss", wrong, "detach")
    assert "logp_old" in str(e)


def test_ppo_mean_over_the_whole_tensor_is_named_as_padding():
    def wrong(new, old, adv, mask, clip=0.2):
        ratio = torch.exp(new - old.detach())
        return -torch.min(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv).mean()
    rejects("rlhf.ppo_clip_loss", wrong, "is_response.sum()")
