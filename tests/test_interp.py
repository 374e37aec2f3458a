"""Lesson 19's measurements (llmlab.train.interp, .induction, .ioi, .probes): the hook points reproduce a
model's logits from cached activations; patching a run into itself changes nothing; the induction experiment finds
a previous-token head and induction heads with a fixed seed, and zeroing the former breaks the latter; patching
sweeps give their known answers where the answer follows from the inputs alone; the probe is the optimum of its
objective and never puts a group on both sides."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from llmlab.models.gpt import GPT, GPTConfig
from llmlab.nn.hooks import patch, run_with_cache, zero_head
from llmlab.train import interp
from llmlab.train.induction import InductionConfig, attn_only_gpt, repeated_tokens, train_induction, training_batch
from llmlab.train.ioi import S2, IOIConfig, make_prompts, train_ioi
from llmlab.train.probes import char_variables

GPT_CFG = GPTConfig(vocab_size=37, block_size=16, n_layer=3, n_head=2, n_embd=12)
LLAMA_CFG = GPTConfig(vocab_size=41, block_size=16, n_layer=2, n_head=4, n_kv_head=2, n_embd=16, bias=False, norm="rmsnorm",
                      pos_encoding="rope", rope_layout="half", activation="swiglu", tied=True)


@pytest.fixture(params=["gpt", "llama", "attn_only"])
def model_and_idx(request):
    torch.manual_seed(0)
    model = {"gpt": lambda: GPT(GPT_CFG), "llama": lambda: GPT(LLAMA_CFG),
             "attn_only": lambda: attn_only_gpt(InductionConfig(vocab=30, seq_len=7, n_embd=16, n_head=2))}[request.param]().eval()
    idx = torch.randint(1, model.config.vocab_size, (3, 11), generator=torch.Generator().manual_seed(1))
    return model, idx


def test_the_logits_are_reproduced_from_the_cached_residual_stream(model_and_idx):
    model, idx = model_and_idx
    logits, resids = interp.residual_stack(model, idx)
    assert resids.shape == (len(model.transformer.h) + 1, 3, 11, model.config.n_embd)
    lens = interp.logit_lens(resids, model.transformer.ln_f, interp.unembedding(model))
    torch.testing.assert_close(lens[-1], logits, atol=1e-5, rtol=1e-5)  # float32 rounding of one extra matmul
    # each block's output is its input plus its two branches, as cached
    _, c = run_with_cache(model, idx)
    for i in range(len(model.transformer.h)):
        torch.testing.assert_close(c[f"blocks.{i}.resid_post"], c[f"blocks.{i}.resid_pre"] + c[f"blocks.{i}.attn_out"] + c[f"blocks.{i}.mlp_out"],
                                   atol=1e-5, rtol=1e-5)


def test_patching_a_run_into_itself_changes_nothing(model_and_idx):
    model, idx = model_and_idx
    with torch.no_grad():
        logits, cache = run_with_cache(model, idx)
        for name in ("blocks.1.resid_pre", "blocks.0.attn.head_out", "blocks.1.mlp_out"):
            with patch(model, {name: cache[name]}):
                again, _ = model(idx)
            torch.testing.assert_close(again, logits, atol=1e-6, rtol=0)
        metric = lambda lg: lg[:, -1, 0] - lg[:, -1, 1]  # noqa: E731
        sweep = interp.patch_residual_sweep(model, idx, idx, lambda lg: metric(lg) - metric(logits))
    assert sweep.abs().max() < 1e-5


def test_the_cached_scale_lens_equals_the_right_one_only_at_the_last_layer(model_and_idx):
    model, idx = model_and_idx
    _, resids = interp.residual_stack(model, idx)
    W_U = interp.unembedding(model)
    right = interp.logit_lens(resids, model.transformer.ln_f, W_U)
    wrong = interp.logit_lens_cached_scale(resids, model.transformer.ln_f, W_U)
    torch.testing.assert_close(wrong[-1], right[-1], atol=1e-5, rtol=1e-5)
    assert (wrong[0] - right[0]).abs().max() > 1e-2


def test_the_induction_experiment_finds_induction_heads_with_a_fixed_seed():
    cfg = InductionConfig()  # the lesson's run: trained once (about 25 s on one core), then cached
    model, record = train_induction(cfg, verbose=False)
    idx = repeated_tokens(64, cfg.seq_len, cfg.vocab, torch.Generator().manual_seed(3))
    pat = interp.patterns(model, idx)
    prev, ind = interp.prev_token_score(pat), interp.induction_score(pat, cfg.seq_len)
    head = int(prev[0].argmax())
    assert prev[0, head] > 0.6 and ind[1].max() > 0.6, (prev, ind)
    assert ind[0].max() < 0.2  # layer 0 cannot do induction on its own: it has not seen the previous token yet
    assert record["history"][-1]["loss_repeat"] < 1.0 < record["history"][0]["loss_repeat"]
    with patch(model, {"blocks.0.attn.head_out": zero_head(head)}):
        broken = interp.induction_score(interp.patterns(model, idx), cfg.seq_len)
    assert broken[1].max() < 0.5 * ind[1].max()


def test_training_sequences_repeat_a_segment():
    cfg = InductionConfig(seq_len=8, batch_size=200)
    x = training_batch(cfg, torch.Generator().manual_seed(0))
    assert x.shape == (200, 17) and (x[:, 0] == 0).all() and (x[:, 1:] > 0).all()
    for row in x.tolist():  # some segment of >= min_len tokens occurs twice
        seqs = {tuple(row[i:i + cfg.min_len]) for i in range(1, 17 - cfg.min_len + 1)}
        assert len(seqs) < 17 - cfg.min_len


def test_patching_sweeps_give_the_answers_that_follow_from_the_prompts():
    model, _ = train_ioi(IOIConfig(steps=30), verbose=False)
    p = make_prompts(16, torch.Generator().manual_seed(0))
    assert (p["clean"] != p["corrupted"]).sum(0).nonzero().flatten().tolist() == [S2]  # only S differs
    ld = lambda lg: interp.logit_diff(lg, p["answer"], p["other"])  # noqa: E731
    with torch.no_grad():
        clean, corr = ld(model(p["clean"])[0]), ld(model(p["corrupted"])[0])
    res = interp.patch_residual_sweep(model, p["clean"], p["corrupted"], lambda lg: interp.patch_metric(ld(lg), clean, corr))
    expected_first = torch.zeros(13)
    expected_first[S2] = 1  # before block 0 only the token differs; all of it restores everything
    torch.testing.assert_close(res[0], expected_first, atol=1e-4, rtol=0)
    expected_last = torch.zeros(13)
    expected_last[-1] = 1  # after the last block only the last position reaches the logits read
    torch.testing.assert_close(res[-1], expected_last, atol=1e-4, rtol=0)


def test_patch_metric_is_zero_and_one_at_the_ends():
    clean, corr = torch.tensor([2.0, 5.0]), torch.tensor([-1.0, 1.0])
    torch.testing.assert_close(interp.patch_metric(corr, clean, corr), torch.zeros(2))
    torch.testing.assert_close(interp.patch_metric(clean, clean, corr), torch.ones(2))


def test_the_probe_is_the_optimum_of_its_objective():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(3, (300,), generator=g)
    X = 3 * F.one_hot(y, 5).float() + torch.randn(300, 5, generator=g)
    groups = torch.arange(30).repeat_interleave(10)
    l2 = 1e-2
    W, acc = interp.fit_probe(X, y, groups, l2, torch.Generator().manual_seed(1))
    train = interp.group_split(groups, 0.2, torch.Generator().manual_seed(1))
    # the gradient of mean CE + l2 ||W||^2, written out in numpy: softmax - one-hot, projected on X
    Xn, Wn, yn = X[train].double().numpy(), W.double().numpy(), y[train].numpy()
    z = Xn @ Wn
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(yn)), yn] -= 1
    grad = Xn.T @ p / len(yn) + 2 * l2 * Wn
    assert np.abs(grad).max() < 1e-4
    assert acc == ((X[~train] @ W).argmax(1) == y[~train]).float().mean().item() and acc > 0.7


def test_the_group_split_never_puts_a_group_on_both_sides():
    groups = torch.randint(50, (1000,), generator=torch.Generator().manual_seed(0))
    train = interp.group_split(groups, 0.2, torch.Generator().manual_seed(2))
    assert not set(groups[train].tolist()) & set(groups[~train].tolist())
    assert len(set(groups[~train].tolist())) == round(0.2 * len(torch.unique(groups)))


def test_control_labels_are_fixed_per_token_type():
    tokens = torch.randint(20, (500,), generator=torch.Generator().manual_seed(0))
    labels = torch.randint(3, (500,), generator=torch.Generator().manual_seed(1))
    ctrl = interp.control_labels(tokens, labels, torch.Generator().manual_seed(2))
    for t in torch.unique(tokens):
        assert len(torch.unique(ctrl[tokens == t])) == 1
    assert set(ctrl.tolist()) <= {0, 1, 2}


def test_head_scores_and_taxonomy_on_patterns_built_by_hand():
    n, T = 4, 9
    prev = torch.diag(torch.ones(T - 1), -1)
    prev[0, 0] = 1
    sink = torch.zeros(T, T)
    sink[:, 0] = 1
    ind = torch.zeros(T, T)
    for q in range(T):
        ind[q, q - n + 1 if q > n else 0] = 1
    pat = torch.stack([prev, sink, ind]).unsqueeze(0)  # (1, 3, T, T)
    kinds = [r["kind"] for r in interp.head_taxonomy(pat, n)]
    assert kinds == ["previous-token", "first-token", "induction"]
    torch.testing.assert_close(interp.prev_token_score(pat)[0, 0], torch.tensor(1.0))
    torch.testing.assert_close(interp.induction_score(pat, n)[0, 2], torch.tensor(1.0))
    assert interp.attention_entropy(pat).abs().max() < 1e-6  # one key per row: entropy 0
    uniform = torch.tril(torch.ones(T, T)) / torch.arange(1, T + 1).unsqueeze(1)
    ent = interp.attention_entropy(uniform.view(1, 1, T, T))
    assert math.isclose(ent.item(), torch.log(torch.arange(1, T + 1).float()).mean().item(), rel_tol=1e-5)


def test_bad_input_names_the_parameter():
    with pytest.raises(ValueError, match="seq_len"):
        interp.induction_score(torch.rand(1, 1, 10, 10), 4)
    with pytest.raises(ValueError, match="pattern"):
        interp.prev_token_score(torch.rand(3, 4, 4))
    with pytest.raises(ValueError, match="groups"):
        interp.group_split(torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="min_len"):
        InductionConfig(min_len=30)


def test_char_variables():
    v = char_variables('f(a, "x y") ab')
    assert v["depth"] == [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0]
    assert v["quoted"] == [0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0]
    assert v["word_pos"] == [0, -1, 0, -1, -1, -1, 0, -1, 0, -1, -1, -1, 0, 1]


def test_ablating_a_head_through_the_sweep_matches_patching_it_by_hand(model_and_idx):
    model, idx = model_and_idx
    losses = interp.head_ablation_losses(model, idx)
    with patch(model, {"blocks.1.attn.head_out": zero_head(1)}):
        by_hand = interp.mean_loss(model, idx)
    assert math.isclose(losses[1, 1].item(), by_hand, rel_tol=1e-6)
