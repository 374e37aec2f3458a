"""Chapter 10's checks: each passes the reference and the code of solutions/10_masked_lm.ipynb, accepts
other right ways to write it (a different order of random draws included: mask_tokens is judged by what
its output does, not which numbers it drew), and rejects a bank of wrong implementations written the way
learners write them, with the right hint where the mistake is a known one. The exercise notebook,
unsolved, runs to the end saying "not implemented yet"."""

from __future__ import annotations

import einops
import pytest
import torch
import torch.nn.functional as F

from _checks import assert_chapter, assert_unsolved_runs, rejects
from llmlab.checks import check, get_exercise, load_all
from llmlab.checks.core import make_generator

load_all()
IDS = ["mlm.mask_tokens", "mlm.attention_mask", "mlm.mlm_loss", "mlm.mean_pool"]


def test_chapter_contract():
    assert_chapter(IDS, "10_masked_lm.ipynb")


def test_unsolved_exercise_notebook_runs_to_the_end_saying_not_implemented_yet(capsys):
    assert_unsolved_runs(IDS, "10_masked_lm.ipynb", capsys, after="pseudo-log-likelihood")


# ----------------------------------------------------------------------------- mask_tokens
def loop_masker(ids, vocab_size, mask_id, special_ids, p=0.15, generator=None):
    """Right, written as a loop, drawing in another order (one position at a time)."""
    ordinary = [i for i in range(vocab_size) if i not in special_ids]
    inputs, labels = ids.clone(), torch.full_like(ids, -100)
    for b in range(ids.size(0)):
        for t in range(ids.size(1)):
            tok = int(ids[b, t])
            if tok in special_ids or torch.rand(1, generator=generator).item() >= p:
                continue
            labels[b, t] = tok
            r = torch.rand(1, generator=generator).item()
            if r < 0.8:
                inputs[b, t] = mask_id
            elif r < 0.9:
                inputs[b, t] = ordinary[int(torch.randint(len(ordinary), (1,), generator=generator))]
    return inputs, labels


def bernoulli_masker(ids, vocab_size, mask_id, special_ids, p=0.15, generator=None):
    """Right, with torch.bernoulli and the 10 % random chosen among the non-masked selected (0.5 of 20 %)."""
    special = torch.zeros_like(ids, dtype=torch.bool)
    for s in special_ids:
        special |= ids == s
    selected = torch.bernoulli(torch.full(ids.shape, p), generator=generator).bool() & ~special
    masked = torch.bernoulli(torch.full(ids.shape, 0.8), generator=generator).bool() & selected
    randomised = torch.bernoulli(torch.full(ids.shape, 0.5), generator=generator).bool() & selected & ~masked
    ordinary = torch.tensor([i for i in range(vocab_size) if i not in special_ids])
    inputs = ids.clone()
    inputs[masked] = mask_id
    inputs[randomised] = ordinary[torch.randint(len(ordinary), (int(randomised.sum()),), generator=generator)]
    labels = ids.clone()
    labels[~selected] = -100
    return inputs, labels


@pytest.mark.parametrize("impl", [loop_masker, bernoulli_masker])
def test_mask_tokens_written_other_right_ways_passes(impl):
    assert check("mlm.mask_tokens", impl, quiet=True)


def test_mask_tokens_probes_are_large_enough_for_5_sigma_to_separate_the_mistakes():
    ex = get_exercise("mlm.mask_tokens")
    for i, probe in enumerate(ex.probes):
        ids = probe.inputs(make_generator(i))[0]
        assert ids.numel() >= 9000, probe.name


def test_mask_tokens_with_mask_and_random_shares_swapped_is_rejected():
    def mask_tokens(ids, vocab_size, mask_id, special_ids, p=0.15, generator=None):
        special = torch.isin(ids, torch.tensor(list(special_ids)))
        sel = (torch.rand(ids.shape, generator=generator) < p) & ~special
        r = torch.rand(ids.shape, generator=generator)
        ordinary = torch.tensor([i for i in range(vocab_size) if i not in special_ids])
        inputs = ids.clone()
        inputs[sel & (r < 0.1)] = mask_id  # 10 % mask, 80 % random: the split read backwards
        rnd = sel & (r >= 0.1) & (r < 0.9)
        inputs[rnd] = ordinary[torch.randint(len(ordinary), ids.shape, generator=generator)][rnd]
        return inputs, torch.where(sel, ids, -100)
    e = rejects("mlm.mask_tokens", mask_tokens)
    assert "share of selected positions that became mask_id" in e.message


def test_mask_tokens_that_never_keeps_a_token_is_rejected():
    def mask_tokens(ids, vocab_size, mask_id, special_ids, p=0.15, generator=None):
        special = torch.isin(ids, torch.tensor(list(special_ids)))
        sel = (torch.rand(ids.shape, generator=generator) < p) & ~special
        r = torch.rand(ids.shape, generator=generator)
        ordinary = torch.tensor([i for i in range(vocab_size) if i not in special_ids])
        inputs = ids.clone()
        inputs[sel & (r < 0.8)] = mask_id
        rnd = sel & (r >= 0.8)  # 20 % random, none kept
        inputs[rnd] = ordinary[torch.randint(len(ordinary), ids.shape, generator=generator)][rnd]
        return inputs, torch.where(sel, ids, -100)
    e = rejects("mlm.mask_tokens", mask_tokens)
    assert "share of selected positions that became a random other token" in e.message


def test_mask_tokens_that_assumes_specials_are_the_first_ids_is_rejected():
    def mask_tokens(ids, vocab_size, mask_id, special_ids, p=0.15, generator=None):
        special = ids < len(special_ids)  # "the specials are 0..3"
        sel = (torch.rand(ids.shape, generator=generator) < p) & ~special
        r = torch.rand(ids.shape, generator=generator)
        inputs = ids.clone()
        inputs[sel & (r < 0.8)] = mask_id
        rnd = sel & (r >= 0.8) & (r < 0.9)
        inputs[rnd] = torch.randint(len(special_ids), vocab_size, ids.shape, generator=generator)[rnd]
        return inputs, torch.where(sel, ids, -100)
    e = rejects("mlm.mask_tokens", mask_tokens)
    assert "special position(s) ([PAD], [CLS], [SEP]) selected" in e.message  # passes the first probe, fails the scattered ids


def test_mask_tokens_that_reseeds_instead_of_using_the_generator_is_rejected():
    def mask_tokens(ids, vocab_size, mask_id, special_ids, p=0.15, generator=None):
        torch.manual_seed(0)  # "for reproducibility"
        special = torch.isin(ids, torch.tensor(list(special_ids)))
        sel = (torch.rand(ids.shape) < p) & ~special
        inputs = ids.clone()
        r = torch.rand(ids.shape)
        inputs[sel & (r < 0.8)] = mask_id
        ordinary = torch.tensor([i for i in range(vocab_size) if i not in special_ids])
        rnd = sel & (r >= 0.8) & (r < 0.9)
        inputs[rnd] = ordinary[torch.randint(len(ordinary), ids.shape)][rnd]
        return inputs, torch.where(sel, ids, -100)
    e = rejects("mlm.mask_tokens", mask_tokens)
    assert "different seeds gave the same output" in e.message


def test_mask_tokens_returning_a_list_is_rejected_by_type():
    e = rejects("mlm.mask_tokens", lambda ids, *a, **k: [ids.clone(), ids.clone()])
    assert "expected a tuple (inputs, labels)" in e.message


# ----------------------------------------------------------------------------- attention_mask
def test_attention_mask_written_other_right_ways_passes():
    def with_einops(is_token):
        return einops.repeat(is_token, "b j -> b 1 i j", i=is_token.size(1))

    def with_outer(is_token):
        ones = torch.ones_like(is_token)
        return (ones[:, :, None] & is_token[:, None, :]).unsqueeze(1)  # (B, T, T) -> (B, 1, T, T)
    assert check("mlm.attention_mask", with_einops, quiet=True)
    assert check("mlm.attention_mask", with_outer, quiet=True)


def test_attention_mask_with_the_padding_convention_of_nn_multiheadattention_is_rejected():
    # nn.MultiheadAttention's key_padding_mask: True = padding
    rejects("mlm.attention_mask", lambda m: (m == 0)[:, None, None, :].expand(m.size(0), 1, m.size(1), m.size(1)), hint="inverted")


def test_attention_mask_as_floats_is_rejected_by_dtype():
    e = rejects("mlm.attention_mask", lambda m: m[:, None, None, :].expand(m.size(0), 1, m.size(1), m.size(1)).float())
    assert "expected torch.bool" in e.message


def test_attention_mask_with_a_causal_triangle_written_by_triu_is_rejected():
    def attention_mask(is_token):
        T = is_token.size(1)
        allowed = ~torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
        return allowed[None, None] & is_token[:, None, None, :]
    rejects("mlm.attention_mask", attention_mask, hint="no causal part")


# ----------------------------------------------------------------------------- mlm_loss
def test_mlm_loss_written_other_right_ways_passes():
    def with_gather(logits, labels):
        sel = labels != -100
        logp = logits.log_softmax(-1)[sel]  # (N, V)
        return -logp.gather(1, labels[sel][:, None]).mean()

    def with_mask(logits, labels):
        per = F.cross_entropy(logits.transpose(1, 2), labels.clamp(min=0), reduction="none")  # (B, T)
        m = (labels != -100).float()
        return (per * m).sum() / m.sum()
    assert check("mlm.mlm_loss", with_gather, quiet=True)
    assert check("mlm.mlm_loss", with_mask, quiet=True)


def test_mlm_loss_with_a_mean_per_sequence_first_is_rejected():
    def mlm_loss(logits, labels):  # averages each row's masked positions, then the rows: rows with few masks weigh more
        per = F.cross_entropy(logits.transpose(1, 2), labels.clamp(min=0), reduction="none")
        m = (labels != -100).float()
        return ((per * m).sum(1) / m.sum(1).clamp(min=1)).mean()
    rejects("mlm.mlm_loss", mlm_loss)


def test_mlm_loss_on_probabilities_is_rejected():
    def mlm_loss(logits, labels):
        return F.cross_entropy(logits.softmax(-1).reshape(-1, logits.size(-1)), labels.reshape(-1))  # softmax twice
    rejects("mlm.mlm_loss", mlm_loss)


def test_mlm_loss_with_nll_on_raw_logits_is_rejected():
    def mlm_loss(logits, labels):
        return F.nll_loss(logits.reshape(-1, logits.size(-1)), labels.reshape(-1))  # no log_softmax
    rejects("mlm.mlm_loss", mlm_loss)


# ----------------------------------------------------------------------------- mean_pool
def test_mean_pool_written_other_right_ways_passes():
    def with_a_loop(h, is_token):
        return torch.stack([h[b][is_token[b]].mean(0) for b in range(h.size(0))])

    def with_einsum(h, is_token):
        m = is_token.float()
        return torch.einsum("btc,bt->bc", h, m) / m.sum(1, keepdim=True)
    assert check("mlm.mean_pool", with_a_loop, quiet=True)
    assert check("mlm.mean_pool", with_einsum, quiet=True)


def test_mean_pool_with_the_mask_inverted_is_rejected():
    def mean_pool(h, is_token):
        m = (~is_token).unsqueeze(-1).float()  # the padding convention of key_padding_mask
        return (h * m).sum(1) / m.sum(1).clamp(min=1)
    rejects("mlm.mean_pool", mean_pool)


def test_mean_pool_over_the_wrong_axis_is_rejected():
    e = rejects("mlm.mean_pool", lambda h, m: (h * m.unsqueeze(-1)).mean(dim=2))
    assert "shape" in e.message


def test_mean_pool_with_pads_in_the_mean_is_rejected_with_its_hint():
    def mean_pool(h, is_token):  # counts the real tokens but sums everything
        return h.sum(dim=1) / is_token.sum(dim=1, keepdim=True)
    rejects("mlm.mean_pool", mean_pool, hint="padded vectors are in your sum")
