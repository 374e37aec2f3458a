"""llmlab.train.rlhf: the losses and GAE against TRL's code (transcribed from trl 1.16, whose PPO and reward trainers
compute them inside `train()` / `compute_loss`, which need models to call; trl is not a dependency), the exact probes
(PPO's loss at rho = 1 is -mean(A); clipped ratios get zero gradient), the reward model's head on the last real token,
the value head's alignment, and a fast-mode run end to end (cached, with the keys lesson 16 reads)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from llmlab.train import preference as world
from llmlab.train import rlhf


def _rows(T, prompts, responses):
    m = torch.zeros(len(prompts), T, dtype=torch.bool)
    for b, (p, r) in enumerate(zip(prompts, responses)):
        m[b, p:p + r] = True
    return m


# ----------------------------------------------------------------------------- TRL, transcribed
def _trl_reward_loss(rewards_chosen, rewards_rejected):
    """trl 1.16, RewardTrainer.compute_loss without a margin: -logsigmoid(chosen - rejected).mean()."""
    return -F.logsigmoid(rewards_chosen - rewards_rejected).mean()


def _masked_mean(values, mask):
    return (values * mask).sum() / mask.sum()


def _trl_gae(rewards, values, gamma, lam):
    """trl 1.16, trl/experimental/ppo/ppo_trainer.py, "6. compute advantages and returns" (before whitening), on
    response-only tensors [B, L] (TRL keeps the query apart), values and rewards 0 past each response."""
    lastgaelam = 0
    advantages_reversed = []
    gen_length = rewards.shape[1]
    for t in reversed(range(gen_length)):
        nextvalues = values[:, t + 1] if t < gen_length - 1 else 0.0
        delta = rewards[:, t] + gamma * nextvalues - values[:, t]
        lastgaelam = delta + gamma * lam * lastgaelam
        advantages_reversed.append(lastgaelam)
    advantages = torch.stack(advantages_reversed[::-1], axis=1)
    return advantages, advantages + values


def _trl_pg_loss(new_logprobs, mb_logprobs, mb_advantage, padding_mask, cliprange):
    """trl 1.16, the same file: the policy-gradient part of the PPO loss."""
    logprobs_diff = new_logprobs - mb_logprobs
    ratio = torch.exp(logprobs_diff)
    pg_losses = -mb_advantage * ratio
    pg_losses2 = -mb_advantage * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    pg_loss_max = torch.max(pg_losses, pg_losses2)
    return _masked_mean(pg_loss_max, ~padding_mask)


def test_bradley_terry_loss_equals_trls_reward_loss_and_bce():
    g = torch.Generator().manual_seed(0)
    c, r = torch.randn(64, generator=g, dtype=torch.float64) * 3, torch.randn(64, generator=g, dtype=torch.float64) * 3
    torch.testing.assert_close(rlhf.bradley_terry_loss(c, r), _trl_reward_loss(c, r), atol=0, rtol=1e-12)
    torch.testing.assert_close(rlhf.bradley_terry_loss(c, r), F.binary_cross_entropy_with_logits(c - r, torch.ones(64, dtype=torch.float64)))
    assert math.isclose(rlhf.bradley_terry_loss(c, c).item(), math.log(2), rel_tol=1e-12)
    big = rlhf.bradley_terry_loss(torch.tensor([1000.0, -1000.0]), torch.zeros(2))
    assert math.isclose(big.item(), 500.0, rel_tol=1e-6)


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 0.8), (0.99, 1.0)])
def test_gae_equals_trls_loop_on_response_only_rows(gamma, lam):
    g = torch.Generator().manual_seed(1)
    lengths = [5, 2, 7, 1]
    mask = _rows(7, [0] * 4, lengths)  # TRL's layout: the response starts at column 0
    rewards = torch.randn(4, 7, generator=g, dtype=torch.float64) * mask
    values = torch.randn(4, 7, generator=g, dtype=torch.float64) * mask  # TRL zeroes the values past the response
    adv, ret = rlhf.gae(rewards, values, mask, gamma, lam)
    t_adv, t_ret = _trl_gae(rewards, values, gamma, lam)
    torch.testing.assert_close(adv, t_adv * mask, atol=1e-12, rtol=0)
    torch.testing.assert_close(ret, t_ret * mask, atol=1e-12, rtol=0)


def test_gae_ignores_the_prompt_and_the_padding_values():
    """Shifting each row right by a prompt, and writing garbage values on prompt and padding, changes nothing."""
    g = torch.Generator().manual_seed(2)
    mask0 = _rows(6, [0, 0], [4, 6])
    r0, v0 = torch.randn(2, 6, generator=g) * mask0, torch.randn(2, 6, generator=g) * mask0
    a0, ret0 = rlhf.gae(r0, v0, mask0, 0.9, 0.7)
    mask = torch.cat([torch.zeros(2, 3, dtype=torch.bool), mask0], 1)  # 3 prompt tokens first
    r = torch.cat([torch.zeros(2, 3), r0], 1)
    v = torch.where(mask, torch.cat([torch.zeros(2, 3), v0], 1), torch.randn(2, 9, generator=g) * 10)
    a, ret = rlhf.gae(r, v, mask, 0.9, 0.7)
    torch.testing.assert_close(a[:, 3:], a0)
    torch.testing.assert_close(ret[:, 3:], ret0)
    assert (a[~mask] == 0).all() and (ret[~mask] == 0).all()


def test_with_lam_1_and_zero_values_the_advantage_is_the_discounted_reward_to_go():
    mask = _rows(5, [1], [4])
    rewards = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0]])
    adv, _ = rlhf.gae(rewards, torch.zeros(1, 5), mask, 0.5, 1.0)
    torch.testing.assert_close(adv, torch.tensor([[0.0, 1 + 0.5 * 2 + 0.25 * 3 + 0.125 * 4, 2 + 0.5 * 3 + 0.25 * 4, 3 + 0.5 * 4, 4.0]]))


@pytest.mark.parametrize("clip", [0.1, 0.2])
def test_ppo_clip_loss_equals_trls_pg_loss(clip):
    g = torch.Generator().manual_seed(3)
    mask = _rows(8, [0, 0, 0], [8, 3, 5])
    old = -2 + torch.randn(3, 8, generator=g, dtype=torch.float64)
    new = old + 0.4 * torch.randn(3, 8, generator=g, dtype=torch.float64)
    adv = torch.randn(3, 8, generator=g, dtype=torch.float64)
    torch.testing.assert_close(rlhf.ppo_clip_loss(new, old, adv, mask, clip), _trl_pg_loss(new, old, adv, ~mask, clip), atol=1e-12, rtol=0)


def test_ppo_exact_probes_ratio_one_and_clipped_gradients():
    g = torch.Generator().manual_seed(4)
    mask = _rows(7, [2, 1], [4, 6])
    old, adv = -1 + torch.randn(2, 7, generator=g), torch.randn(2, 7, generator=g)
    new = old.clone().requires_grad_(True)
    loss = rlhf.ppo_clip_loss(new, old, adv, mask)
    torch.testing.assert_close(loss, -adv[mask].mean())
    loss.backward()
    torch.testing.assert_close(new.grad, -adv * mask / mask.sum())  # d/d logp of rho A at rho = 1 is A
    # every ratio beyond the clip in its advantage's direction: nothing to gain, zero gradient
    far = (old + torch.where(adv > 0, math.log(1.5), math.log(0.5))).requires_grad_(True)
    rlhf.ppo_clip_loss(far, old, adv, mask, 0.2).backward()
    assert far.grad.abs().max() == 0
    # ... and in the other direction the unclipped term still pulls back
    back = (old + torch.where(adv > 0, math.log(0.5), math.log(1.5))).requires_grad_(True)
    rlhf.ppo_clip_loss(back, old, adv, mask, 0.2).backward()
    assert (back.grad[mask] != 0).all()
    old_leaf = old.clone().requires_grad_(True)
    rlhf.ppo_clip_loss(new.detach().requires_grad_(True), old_leaf, adv, mask).backward()
    assert old_leaf.grad is None  # logp_old is detached


def test_kl_shaped_rewards_sum_to_the_score_minus_beta_times_the_sampled_kl():
    g = torch.Generator().manual_seed(5)
    mask = _rows(8, [2, 3, 1], [4, 5, 2])
    logp, ref_logp, score = torch.randn(3, 8, generator=g), torch.randn(3, 8, generator=g), torch.randn(3, generator=g)
    r = rlhf.kl_shaped_rewards(score, logp, ref_logp, mask, 0.2)
    torch.testing.assert_close(r.sum(1), score - 0.2 * ((logp - ref_logp) * mask).sum(1))
    assert (r[~mask] == 0).all()
    last = rlhf.last_response_index(mask)
    assert last.tolist() == [5, 7, 2]
    torch.testing.assert_close(r[torch.arange(3), last], score - 0.2 * (logp - ref_logp)[torch.arange(3), last])
    with pytest.raises(ValueError, match="is_response"):
        rlhf.last_response_index(torch.zeros(2, 3, dtype=torch.bool))


def test_reinforce_loss_is_minus_advantage_times_logp_over_the_response():
    mask = _rows(4, [1, 0], [2, 4])
    logp = torch.full((2, 4), -1.0, requires_grad=True)
    loss = rlhf.reinforce_loss(logp, torch.tensor([2.0, -1.0]), mask)
    assert loss.item() == pytest.approx(-(2.0 * -1 * 2 + -1.0 * -1 * 4) / 6)


# ----------------------------------------------------------------------------- the models
def test_reward_model_reads_the_last_real_token_and_ignores_the_padding():
    policy, tok = world.sft_policy(fast=True, verbose=False)
    torch.manual_seed(0)
    rm = rlhf.RewardModel(policy).eval()
    torch.nn.init.normal_(rm.head.weight)
    ids, mask = world.encode_rows(tok, ["The food", "The food"], [" was good.", " was good."])
    padded = torch.cat([ids, torch.randint(tok.vocab_size, (2, 5))], 1)  # garbage after the row
    padded_mask = torch.cat([mask, torch.zeros(2, 5, dtype=torch.bool)], 1)
    with torch.no_grad():
        a, b = rm(ids, mask), rm(padded, padded_mask)
        changed = ids.clone()
        changed[1, 2] = (changed[1, 2] + 1) % tok.vocab_size  # a token before the end: the score moves
        c = rm(changed, mask)
    torch.testing.assert_close(a, b)
    assert a.shape == (2,) and not torch.isclose(c[1], a[1])


def test_policy_with_value_keeps_the_gpts_logits_and_values_the_state_before_each_token():
    policy, tok = world.sft_policy(fast=True, verbose=False)
    pv = rlhf.PolicyWithValue(policy)
    torch.nn.init.normal_(pv.v_head[2].weight)
    ids, _ = world.encode_rows(tok, ["I love"], [" it."])
    with torch.no_grad():
        logits, values = pv.logits_and_values(ids)
        torch.testing.assert_close(logits, policy(ids)[0])
        _, v_short = pv.logits_and_values(ids[:, :4])
    assert values[0, 0] == 0
    torch.testing.assert_close(values[0, :4], v_short[0])  # causal: the value at t reads only tokens < t
    pv.zero_grad()
    _, vv = pv.logits_and_values(ids)
    vv.sum().backward()
    assert all(p.grad is None for p in pv.gpt.parameters())  # the value head reads detached features: its loss never reaches the trunk


def test_run_config_names_bad_values():
    with pytest.raises(ValueError, match="method"):
        rlhf.RunConfig(method="dpo")
    with pytest.raises(ValueError, match="beta"):
        rlhf.RunConfig(beta=-1)
    with pytest.raises(ValueError, match="minibatches"):
        rlhf.RunConfig(batch_size=10, minibatches=3)


# ----------------------------------------------------------------------------- fast-mode runs, end to end
def test_reward_model_card_reports_accuracy_against_the_ceiling():
    rm, card = rlhf.reward_model(fast=True, verbose=False)
    acc = rlhf.PairAccuracy(**card["test"])
    assert 0 <= acc.accuracy <= 1 and acc.interval[0] <= acc.accuracy <= acc.interval[1]
    assert 0.5 < card["noise_ceiling_test"] < 1
    pairs = world.preference_pairs("test", fast=True)
    assert rlhf.pair_accuracy(rm, pairs) == acc  # the cached model is the one measured


def test_a_perfect_reward_model_agrees_with_the_gold_order_and_with_the_labels_as_often_as_they_agree_with_gold():
    pairs = world.preference_pairs("test", fast=True)

    class Gold(torch.nn.Module):  # scores each row by the gold reward of its text
        def forward(self, ids, mask):
            texts = pairs.chosen if torch.equal(ids, pairs.chosen_ids) else pairs.rejected
            return world.gold_reward(texts)
    acc = rlhf.pair_accuracy(Gold(), pairs)
    assert acc.k_gold == acc.n_gold
    ties = int((pairs.gold_chosen == pairs.gold_rejected).sum())
    assert acc.k == int(pairs.agrees_with_gold.sum()) - ties


@pytest.mark.parametrize("method", ["ppo", "reinforce"])
def test_a_fast_run_records_what_the_lesson_plots_and_is_cached(method):
    cfg = rlhf.RunConfig(method=method, beta=0.1)
    rec = rlhf.rlhf_run(cfg, fast=True, verbose=False)
    assert len(rec["history"]) == rlhf.FAST_RUN["iterations"]
    assert {"samples", "proxy", "gold", "kl", "length", "distinct2"} <= set(rec["history"][0])
    assert rec["history"][0]["kl"] == pytest.approx(0.0, abs=1e-5)  # the first batch is sampled before any update
    f = rec["final"]
    assert f["gold_lo"] <= f["gold"] <= f["gold_hi"] and f["win_lo"] <= f["win_rate"] <= f["win_hi"]
    assert rec["reference"]["kl"] == 0.0
    again = rlhf.rlhf_run(cfg, fast=True, verbose=False)
    assert again["final"] == f and again["seconds"] == rec["seconds"]  # read from the cache, not trained again
    kept = rlhf.rlhf_run(cfg, fast=True, verbose=False, keep_policy=True)
    assert isinstance(kept["policy"], rlhf.PolicyWithValue)


def test_ppo_frontier_gives_lesson_16_one_point_per_beta():
    pts = rlhf.ppo_frontier(fast=True)
    assert [p["beta"] for p in pts] == list(rlhf.BETAS)
    for p in pts:
        assert {"method", "beta", "kl", "gold", "gold_lo", "gold_hi", "proxy"} <= set(p) and p["method"] == "ppo"
        assert p["gold_lo"] <= p["gold"] <= p["gold_hi"]
    assert rlhf.ppo_frontier(fast=True, cached_only=True) == pts
