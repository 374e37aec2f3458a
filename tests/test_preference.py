"""llmlab.train.preference, the world of lessons 15-16: prompts, sampling (the cached sampler against a plain
rerun of the whole prefix), log-probabilities against torch's cross-entropy, the gold reward's terms, the noise
ceiling's closed form, win rates and distinct-n (fast mode)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from llmlab.train import preference as world


@pytest.fixture(scope="module")
def sft():
    return world.sft_policy(fast=True, verbose=False)


def test_prompts_are_the_opening_words_deterministic_and_split():
    train, test = world.review_prompts("train"), world.review_prompts("test")
    assert train and test and not set(test) <= set(train)
    assert all(2 <= len(p.split()) <= 4 for p in train + test)
    assert world.review_prompts("test", 5) == world.review_prompts("test", 5) == test[:5]
    assert world.review_prompts("test", 5, seed=1) != world.review_prompts("test", 5)
    assert world.prompt_of("The battery lasts a whole week.") == world.prompt_of("The battery lasts a whole week.")
    assert world.prompt_of("Too short.") is None
    with pytest.raises(ValueError, match="split"):
        world.review_prompts("dev")
    with pytest.raises(ValueError, match="n="):
        world.review_prompts("train", 0)


def test_sft_policy_is_a_fresh_copy_with_the_same_weights(sft):
    a, _ = world.sft_policy(fast=True, verbose=False)
    b, _ = world.sft_policy(fast=True, verbose=False)
    assert a is not b and not a.training
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), n
    with torch.no_grad():
        next(a.parameters()).add_(1.0)  # a caller trains its copy: the next one is unchanged
    c, _ = world.sft_policy(fast=True, verbose=False)
    assert torch.equal(next(c.parameters()), next(b.parameters()))


def test_sample_rows_are_prompt_response_end_and_padding(sft):
    policy, tok = sft
    prompts = world.review_prompts("test", 6)
    ro = world.sample(policy, tok, prompts, max_new_tokens=20, generator=torch.Generator().manual_seed(0))
    end = tok.encode(world.END)[0]
    assert ro.ids.shape == ro.is_response.shape and len(ro) == 6
    for b, p in enumerate(prompts):
        start = len(tok.encode(p))
        pos = ro.is_response[b].nonzero().flatten()
        assert int(pos[0]) == start and torch.equal(pos, torch.arange(start, start + len(pos)))  # contiguous after the prompt
        assert tok.decode(ro.ids[b, :start].tolist()) == p
        assert len(pos) <= 20
        assert bool(ro.finished[b]) == (int(ro.ids[b, pos[-1]]) == end)
        assert ro.texts[b] == p + ro.responses[b] and world.END not in ro.responses[b]
    again = world.sample(policy, tok, prompts, max_new_tokens=20, generator=torch.Generator().manual_seed(0))
    assert again.texts == ro.texts


def test_the_cached_sampler_matches_row_by_row_greedy_decoding(sft):
    """At temperature 1e-4 sampling is argmax: each row must be what llmlab.generate.sampling.generate writes for its
    prompt alone (no forced prompt tokens, no shared cache across rows of different lengths)."""
    from llmlab.generate.sampling import generate

    policy, tok = sft
    prompts = world.review_prompts("test", 5)
    ro = world.sample(policy, tok, prompts, max_new_tokens=15, temperature=1e-4, generator=torch.Generator().manual_seed(3))
    end = tok.encode(world.END)[0]
    for b, p in enumerate(prompts):
        idx = torch.tensor([tok.encode(p)])
        out = generate(policy, idx, 15, temperature=0, stop_token=end)[0, idx.size(1):].tolist()
        text = tok.decode(out[: out.index(end)] if end in out else out)
        assert ro.responses[b] == text, (p, ro.responses[b], text)
    lp = world.response_logprobs(policy, ro.ids, ro.is_response)
    assert world.kl_to_reference(policy, policy, ro) == 0.0 and (lp <= 0).all() and (lp[~ro.is_response] == 0).all()


def test_sample_rejects_bad_input(sft):
    policy, tok = sft
    with pytest.raises(ValueError, match="prompts"):
        world.sample(policy, tok, "The food")
    with pytest.raises(ValueError, match="max_new_tokens"):
        world.sample(policy, tok, ["The food"], max_new_tokens=0)
    with pytest.raises(ValueError, match="temperature"):
        world.sample(policy, tok, ["The food"], temperature=0)


def test_token_logprobs_equals_minus_cross_entropy_of_the_next_token():
    g = torch.Generator().manual_seed(0)
    logits, ids = torch.randn(3, 7, 11, generator=g) * 3, torch.randint(11, (3, 7), generator=g)
    want = -F.cross_entropy(logits[:, :-1].reshape(-1, 11), ids[:, 1:].reshape(-1), reduction="none").view(3, 6)
    torch.testing.assert_close(world.token_logprobs(logits, ids), want, atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match="logits, ids"):
        world.token_logprobs(logits, ids[:, :-1])


def test_response_logprobs_align_with_ids_and_are_zero_off_the_response(sft):
    policy, tok = sft
    ids, mask = world.encode_rows(tok, ["The food", "I love"], [" was good.", " it"])
    lp = world.response_logprobs(policy, ids, mask)
    with torch.no_grad():
        logits, _ = policy(ids)
    b, t = 0, int(mask[0].nonzero()[0])
    torch.testing.assert_close(lp[b, t], F.log_softmax(logits[b, t - 1], -1)[ids[b, t]])
    assert (lp[~mask] == 0).all() and lp.requires_grad


def test_gold_reward_is_sentiment_minus_the_degeneracy_penalties():
    texts = ["The food was great.", "The food was terrible.", "great great great great great", "The fooq blarg zzzt.", "x" * 91]
    parts = world.gold_parts(texts)
    torch.testing.assert_close(parts["gold"], parts["sentiment"] - parts["repetition"] - parts["nonwords"] - parts["too_long"])
    gold = world.gold_reward(texts)
    assert gold.dtype == torch.float32 and gold[0] > 0 > gold[1]
    assert parts["repetition"][2] == 0.75 and parts["nonwords"][3] == 0.75 and parts["too_long"][4] == 1.0
    assert gold[2] < gold[0]  # repeating a positive word is not rewarded
    with pytest.raises(ValueError, match="texts"):
        world.gold_reward("one string")


def test_pairs_are_labelled_by_gold_with_noise_and_the_ceiling_has_its_closed_form():
    pairs = world.preference_pairs("test", fast=True)
    assert len(pairs) == world.FAST_PAIRS_RECIPE.n_test
    torch.testing.assert_close(pairs.gold_chosen, world.gold_reward(pairs.chosen))
    torch.testing.assert_close(pairs.gold_rejected, world.gold_reward(pairs.rejected))
    assert torch.equal(pairs.agrees_with_gold, pairs.gold_chosen >= pairs.gold_rejected)
    assert (~pairs.agrees_with_gold).any()  # there is label noise
    gap = (pairs.gold_chosen - pairs.gold_rejected).abs()
    want = sum(1 / (1 + math.exp(-float(x) / pairs.temperature)) for x in gap) / len(gap)
    assert math.isclose(world.noise_ceiling(pairs), want, rel_tol=1e-5)
    assert pairs.chosen_ids.shape == pairs.chosen_mask.shape and pairs.chosen_mask.any(1).all()
    sub = world.preference_pairs("test", n=5, fast=True)
    assert sub.chosen == pairs.chosen[:5]
    with pytest.raises(ValueError, match="split"):
        world.preference_pairs("val", fast=True)


def test_win_rate_counts_ties_half_with_a_wilson_interval():
    a = ["The food was great.", "The food was terrible.", "The food was food."]
    b = ["The food was terrible.", "The food was great.", "The food was food."]
    wr = world.win_rate(a, b)
    assert (wr.wins, wr.ties, wr.n) == (1, 1, 3) and wr.rate == 0.5
    k, n, lo, hi = wr
    assert (k, n) == (1.5, 3) and lo < 0.5 < hi
    with pytest.raises(ValueError, match="texts_a, texts_b"):
        world.win_rate(a, b[:2])


def test_distinct_n_pools_the_texts():
    assert world.distinct_n(["a b c", "a b d"], 2) == 3 / 4
    assert world.distinct_n(["a b a b"], 2) == 2 / 3
    assert world.distinct_n(["one"], 2) == 0.0
    with pytest.raises(ValueError, match="n="):
        world.distinct_n(["a b"], 0)
