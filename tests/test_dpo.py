"""llmlab.train.dpo: the sequence log-probability against torch's cross-entropy, the DPO loss against TRL's
(its sigmoid loss, transcribed from trl 1.16 `DPOTrainer._compute_loss`, which needs a model to call; and TRL's
own `dpo_loss` where an installed trl still has it), the paper's gradient, the exact probes (policy = reference:
loss ln 2 and zero rewards), and DPO trained on the lesson's world (fast mode): the loss falls and held-out
accuracy is measured with its interval."""

from __future__ import annotations

import math
import types

import pytest
import torch
import torch.nn.functional as F

from llmlab.train import dpo


def _logits_batch(B=3, T=9, V=13, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, V, generator=g) * 3
    ids = torch.randint(V, (B, T), generator=g)
    is_response = torch.zeros(B, T, dtype=torch.bool)
    for b, (p, r) in enumerate([(2, 5), (4, 3), (1, 8)][:B]):
        is_response[b, p:p + r] = True
    return logits, ids, is_response


# ----------------------------------------------------------------------------- sequence log-probabilities
def test_sequence_logprob_is_minus_the_summed_cross_entropy_of_the_response_tokens():
    logits, ids, is_response = _logits_batch()
    B, T, V = logits.shape
    labels = ids.masked_fill(~is_response, -100)[:, 1:]  # transformers' convention: -100 is ignored
    nll = F.cross_entropy(logits[:, :-1].reshape(-1, V), labels.reshape(-1), ignore_index=-100, reduction="none").view(B, T - 1)
    torch.testing.assert_close(dpo.sequence_logprob(logits, ids, is_response), -nll.sum(1), atol=1e-5, rtol=1e-5)


def test_position_zero_never_counts_and_prompt_tokens_change_nothing_but_their_context():
    logits, ids, is_response = _logits_batch()
    with_first = is_response.clone()
    with_first[:, 0] = True  # nothing predicts position 0
    torch.testing.assert_close(dpo.sequence_logprob(logits, ids, with_first), dpo.sequence_logprob(logits, ids, is_response))
    other = ids.clone()
    other[:, -1] = (ids[:, -1] + 1) % logits.size(-1)  # a padding token changed: row 2's response ends at T-1, rows 0, 1 don't
    got = dpo.sequence_logprob(logits, other, is_response)
    assert torch.equal(got[:2], dpo.sequence_logprob(logits, ids, is_response)[:2]) and got[2] != dpo.sequence_logprob(logits, ids, is_response)[2]


def test_mean_token_logprob_divides_by_the_number_of_scored_response_tokens():
    logits, ids, is_response = _logits_batch()
    n = torch.tensor([5.0, 3.0, 8.0])
    torch.testing.assert_close(dpo.mean_token_logprob(logits, ids, is_response), dpo.sequence_logprob(logits, ids, is_response) / n)


def test_bad_shapes_name_the_parameter():
    logits, ids, is_response = _logits_batch()
    with pytest.raises(ValueError, match="ids"):
        dpo.sequence_logprob(logits, ids[:, :-1], is_response)
    with pytest.raises(ValueError, match="is_response"):
        dpo.sequence_logprob(logits, ids, is_response.long())
    with pytest.raises(ValueError, match="beta"):
        dpo.dpo_loss(*torch.zeros(4, 3), beta=0.0)
    with pytest.raises(ValueError, match="pi_chosen"):
        dpo.dpo_loss(torch.zeros(3), torch.zeros(3), torch.zeros(3), torch.zeros(2), beta=0.1)


# ----------------------------------------------------------------------------- the loss
def _trl_sigmoid_loss(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta):
    """trl 1.16, trl/trainer/dpo_trainer.py, DPOTrainer._compute_loss with loss_type "sigmoid", f_divergence_type
    "reverse_kl" (standard DPO), ld_alpha None, label_smoothing 0: the lines that follow the model's forward."""
    chosen_logratios = chosen_logps - ref_chosen_logps
    rejected_logratios = rejected_logps - ref_rejected_logps
    delta_score = chosen_logratios - rejected_logratios
    per_sequence_loss = -F.logsigmoid(beta * delta_score)
    loss = per_sequence_loss.mean()
    chosen_rewards = beta * chosen_logratios.detach()
    rejected_rewards = beta * rejected_logratios.detach()
    reward_accuracies = (chosen_rewards > rejected_rewards).float()
    return loss, chosen_rewards, rejected_rewards, reward_accuracies.mean().item()


def _four(B=64, seed=0, spread=5.0):
    g = torch.Generator().manual_seed(seed)
    return [-30 + torch.randn(B, generator=g, dtype=torch.float64) * spread for _ in range(4)]


@pytest.mark.parametrize("beta", [0.01, 0.1, 0.5, 2.0])
def test_dpo_loss_equals_trls_sigmoid_loss_on_the_same_logprobs(beta):
    pi_c, pi_r, ref_c, ref_r = _four()
    loss, r_c, r_r = dpo.dpo_loss(pi_c, pi_r, ref_c, ref_r, beta)
    t_loss, t_c, t_r, t_acc = _trl_sigmoid_loss(pi_c, pi_r, ref_c, ref_r, beta)
    torch.testing.assert_close(loss, t_loss, atol=0, rtol=1e-12)
    torch.testing.assert_close(r_c, t_c, atol=0, rtol=1e-12)
    torch.testing.assert_close(r_r, t_r, atol=0, rtol=1e-12)
    assert dpo.reward_accuracy(r_c, r_r) == t_acc


def test_dpo_loss_equals_trls_own_dpo_loss_where_trl_is_installed():
    trl = pytest.importorskip("trl")  # not a course dependency: the transcription above is the test that always runs
    trainer = getattr(getattr(trl, "DPOTrainer", None), "dpo_loss", None)
    if trainer is None:
        pytest.skip(f"trl {trl.__version__} computes its loss inside _compute_loss, which needs a model")
    pi_c, pi_r, ref_c, ref_r = _four(B=16)
    fake = types.SimpleNamespace(beta=0.1, loss_type="sigmoid", label_smoothing=0.0, f_divergence_type="reverse_kl",
                                 reference_free=False, use_weighting=False, device=torch.device("cpu"), ld_alpha=None)
    losses, t_c, t_r = trainer(fake, pi_c, pi_r, ref_c, ref_r)[:3]
    loss, r_c, r_r = dpo.dpo_loss(pi_c, pi_r, ref_c, ref_r, 0.1)
    torch.testing.assert_close(loss, losses.mean())
    torch.testing.assert_close(r_c, t_c)
    torch.testing.assert_close(r_r, t_r)


def test_dpo_loss_matches_the_closed_form_in_double_precision_and_stays_finite_at_large_margins():
    pi_c, pi_r, ref_c, ref_r = _four(B=8)
    beta = 0.3
    z = [beta * ((a - b) - (c - d)) for a, b, c, d in zip(pi_c.tolist(), ref_c.tolist(), pi_r.tolist(), ref_r.tolist())]
    expected = sum(math.log1p(math.exp(-v)) for v in z) / len(z)  # -log σ(z) = log(1 + e^-z)
    assert dpo.dpo_loss(pi_c, pi_r, ref_c, ref_r, beta)[0].item() == pytest.approx(expected, rel=1e-12)
    big = torch.tensor([4000.0, -4000.0])  # β·Δ = ±1000 in float32
    loss = dpo.dpo_loss(big, -big, torch.zeros(2), torch.zeros(2), 0.125)[0]
    assert loss.item() == pytest.approx(500.0, rel=1e-6)  # (0 + 1000) / 2: −log σ(−1000) = 1000


def test_policy_equal_to_reference_gives_loss_ln2_and_zero_rewards():
    ref_c, ref_r = torch.randn(5), torch.randn(5)
    loss, r_c, r_r = dpo.dpo_loss(ref_c.clone(), ref_r.clone(), ref_c, ref_r, beta=0.1)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-7)
    assert torch.equal(r_c, torch.zeros(5)) and torch.equal(r_r, torch.zeros(5))
    assert dpo.reward_accuracy(r_c, r_r) == 0.0  # ties are not wins


def test_dpo_gradient_is_the_papers_and_never_reaches_the_reference():
    # Rafailov et al. 2023, eq. 7: ∇L = -β σ(r_r - r_c) (∇ log π(y_c) - ∇ log π(y_r)), averaged over the batch
    pi_c, pi_r, ref_c, ref_r = [t.float().requires_grad_(True) for t in _four(B=6, spread=1.0)]
    beta = 0.4
    loss, r_c, r_r = dpo.dpo_loss(pi_c, pi_r, ref_c, ref_r, beta)
    loss.backward()
    weight = beta * torch.sigmoid(r_r - r_c) / 6
    torch.testing.assert_close(pi_c.grad, -weight)
    torch.testing.assert_close(pi_r.grad, weight)
    assert ref_c.grad is None and ref_r.grad is None
    assert not r_c.requires_grad


def test_reward_accuracy_counts_strict_wins_only():
    assert dpo.reward_accuracy(torch.tensor([1.0, 2.0, 3.0, 0.0]), torch.tensor([0.0, 2.0, 4.0, -1.0])) == 0.5
    with pytest.raises(ValueError, match="chosen_rewards"):
        dpo.reward_accuracy(torch.zeros(3), torch.zeros(2))


# ----------------------------------------------------------------------------- DPO on the lesson's world (fast mode)
@pytest.fixture(scope="module")
def world():
    from llmlab.train import preference

    policy, tok = preference.sft_policy(fast=True, verbose=False)
    return preference, policy, tok, preference.preference_pairs("train", fast=True), preference.preference_pairs("test", fast=True)


def test_pair_logprobs_agree_with_the_worlds_per_token_logprobs(world):
    preference, policy, _, train, _ = world
    idx = torch.arange(6)
    with torch.no_grad():
        c, r = dpo.pair_logprobs(policy, train, idx)
        want_c = preference.response_logprobs(policy, train.chosen_ids[idx], train.chosen_mask[idx]).sum(1)
        want_r = preference.response_logprobs(policy, train.rejected_ids[idx], train.rejected_mask[idx]).sum(1)
    torch.testing.assert_close(c, want_c, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(r, want_r, atol=1e-4, rtol=1e-5)


def test_at_initialisation_the_heldout_accuracy_is_zero_not_one(world):
    preference, policy, _, _, test = world
    ref_c, ref_r = dpo.all_pair_logprobs(policy, test)
    acc = dpo.heldout_accuracy(policy, ref_c, ref_r, test, beta=0.1)
    assert acc["k"] == 0 and acc["acc"] == 0.0  # every implicit reward is exactly 0: ties


def test_train_dpo_separates_the_pairs_it_trains_on(world):
    preference, _, _, train, _ = world
    few = train.subset(range(8))
    policy, _ = preference.sft_policy(fast=True, verbose=False)
    reference, _ = preference.sft_policy(fast=True, verbose=False)
    before = [p.detach().clone() for p in reference.parameters()]
    cfg = dpo.DPOConfig(beta=0.5, steps=12, batch_size=8, lr=1e-3, log_every=4)
    history = dpo.train_dpo(policy, reference, few, cfg, say=None)
    assert [h["step"] for h in history] == [0, 4, 8, 12]
    pi_c, pi_r = dpo.all_pair_logprobs(policy, few)
    ref_c, ref_r = dpo.all_pair_logprobs(reference, few)
    loss, r_c, r_r = dpo.dpo_loss(pi_c, pi_r, ref_c, ref_r, 0.5)
    assert loss.item() < math.log(2) - 0.05 and dpo.reward_accuracy(r_c, r_r) >= 0.75
    assert all(torch.equal(a, b) for a, b in zip(before, reference.parameters()))  # the reference never moved


def test_dpo_config_names_a_bad_parameter():
    with pytest.raises(ValueError, match="beta"):
        dpo.DPOConfig(beta=-1.0)
    with pytest.raises(ValueError, match="logprob"):
        dpo.DPOConfig(logprob="median")
    with pytest.raises(ValueError, match="steps"):
        dpo.DPOConfig(steps=0)


def test_a_fast_run_is_measured_and_cached(world):
    said = []
    rec = dpo.dpo_run(dpo.DPOConfig(beta=0.3), fast=True, say=said.append)
    again = dpo.dpo_run(dpo.DPOConfig(beta=0.3), fast=True, say=said.append)
    assert again == rec and sum(s.startswith("training") for s in said) <= 1  # the second call reads the cache
    n = rec["config"]["eval_prompts"]
    assert rec["win"]["n"] == n and 0 <= rec["win"]["lo"] <= rec["win"]["rate"] <= rec["win"]["hi"] <= 1
    assert rec["heldout"]["n"] == len(world[4].prompts) and len(rec["eval"]["texts"]) == n
    assert rec["eval"]["kl"]["lo"] <= rec["eval"]["kl"]["mean"] <= rec["eval"]["kl"]["hi"]


def test_the_frontier_plot_shows_ppo_only_when_given_and_refuses_no_runs():
    import matplotlib

    matplotlib.use("Agg")
    from llmlab.viz import dpo as viz

    ci = {"mean": 0.1, "lo": 0.0, "hi": 0.2}
    run = {"config": {"beta": 0.1, "logprob": "sum"}, "label": "DPO β=0.1", "eval": {"kl": {"mean": 5.0, "lo": 4.0, "hi": 6.0}, "gold": ci}}
    ref = {"gold": ci}
    ax = viz.plot_frontier([run], ref)
    assert "no PPO runs" in ax.get_title()
    ppo = [{"method": "ppo", "beta": 0.05, "kl": 3.0, "gold": 0.3, "gold_lo": 0.2, "gold_hi": 0.4}]
    ax = viz.plot_frontier([run], ref, ppo)
    assert "PPO (lesson 15)" in [t.get_text() for t in ax.get_legend().get_texts()]
    with pytest.raises(ValueError, match="records"):
        viz.plot_beta_sweep([], ref)
