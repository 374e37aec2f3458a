"""Chapter 08's checks: each passes the reference and the code of solutions/08_generation.ipynb,
and rejects a bank of wrong implementations written the way learners write them (not copies
of the checks' own `Mistake`s), with the right hint where the mistake is a known one. The banks of
sample_generate and cached_attention_step are in tests/test_checks_sampling_cache.py."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from _checks import assert_chapter, rejects
from llmlab.checks import check, load_all

load_all()
IDS = ["generation.top_k_filter", "generation.top_p_filter", "generation.greedy_generate", "generation.sample_generate",
       "generation.cached_attention_step"]


def test_chapter_contract():
    assert_chapter(IDS, "08_generation.ipynb")
NEG_INF = float("-inf")


# ----------------------------------------------------------------------------- top-k: other correct forms pass
def test_top_k_with_sort_and_where_passes():
    def top_k_filter(logits, k):
        kth = logits.sort(dim=-1, descending=True).values[..., k - 1 : k]
        return torch.where(logits >= kth, logits, torch.full_like(logits, NEG_INF))

    assert check("generation.top_k_filter", top_k_filter, quiet=True)


# ----------------------------------------------------------------------------- top-k: wrong ones fail
def test_top_k_keeping_exactly_k_by_index_is_rejected():
    def top_k_filter(logits, k):
        out = torch.full_like(logits, NEG_INF)
        idx = logits.topk(k, dim=-1).indices
        return out.scatter(-1, idx, logits.gather(-1, idx))
    rejects("generation.top_k_filter", top_k_filter, hint="tied with the k-th largest must stay")


def test_top_k_keeping_k_plus_one_is_rejected():
    def top_k_filter(logits, k):
        kth = logits.sort(dim=-1, descending=True).values[..., k : k + 1]  # index k: the (k+1)-th largest
        if kth.size(-1) == 0:  # k = V
            return logits.clone()
        return logits.masked_fill(logits < kth, NEG_INF)
    rejects("generation.top_k_filter", top_k_filter, hint="keep k + 1 tokens")


def test_top_k_sorting_ascending_is_rejected():
    def top_k_filter(logits, k):
        kth = logits.sort(dim=-1).values[..., k - 1 : k]
        return logits.masked_fill(logits < kth, NEG_INF)
    rejects("generation.top_k_filter", top_k_filter, hint="descending")


def test_top_k_with_strict_comparison_drops_the_kth_itself():
    def top_k_filter(logits, k):
        kth = logits.topk(k, dim=-1).values[..., -1:]
        return logits.masked_fill(logits <= kth, NEG_INF)
    rejects("generation.top_k_filter", top_k_filter)


def test_top_k_only_on_2d_input_is_rejected():
    def top_k_filter(logits, k):
        kth = logits.topk(k, dim=1).values[:, -1:]  # assumes (B, V)
        return logits.masked_fill(logits < kth, NEG_INF)
    rejects("generation.top_k_filter", top_k_filter)


def test_top_k_using_a_large_negative_number_is_rejected():
    def top_k_filter(logits, k):
        kth = logits.topk(k, dim=-1).values[..., -1:]
        return logits.masked_fill(logits < kth, -1e9)
    rejects("generation.top_k_filter", top_k_filter)


def test_top_k_in_place_is_rejected():
    def top_k_filter(logits, k):
        kth = logits.topk(k, dim=-1).values[..., -1:]
        logits[logits < kth] = NEG_INF
        return logits
    rejects("generation.top_k_filter", top_k_filter, hint="in place")


# ----------------------------------------------------------------------------- top-p: other correct forms pass
def test_top_p_with_a_shifted_mask_passes():
    """The Hugging Face formulation: remove where cumsum > p, shift right by one, keep the first."""
    def top_p_filter(logits, p):
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        remove = cum > p
        remove[..., 1:] = remove[..., :-1].clone()
        remove[..., 0] = False
        return logits.masked_fill(remove.scatter(-1, order, remove), NEG_INF)

    # cum > p (shifted) and cum - prob >= p differ only when a cumulative sum equals p exactly
    assert check("generation.top_p_filter", top_p_filter, quiet=True)


# ----------------------------------------------------------------------------- top-p: wrong ones fail
def _sorted_parts(logits):
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    return sorted_logits, order, probs, probs.cumsum(-1)


def _unsort(remove, order):
    return torch.zeros_like(remove).scatter(-1, order, remove)


def test_top_p_excluding_the_crossing_token_is_rejected():
    def top_p_filter(logits, p):
        _, order, probs, cum = _sorted_parts(logits)
        remove = cum > p
        remove[..., 0] = False  # keeps the top token, but not the one that crosses p
        return logits.masked_fill(_unsort(remove, order), NEG_INF)
    rejects("generation.top_p_filter", top_p_filter, hint="carries the total past p")


def test_top_p_that_can_remove_every_token_is_rejected():
    def top_p_filter(logits, p):
        _, order, probs, cum = _sorted_parts(logits)
        remove = cum > p
        remove[..., 1:] = remove[..., :-1].clone()  # forgot remove[..., 0] = False
        return logits.masked_fill(_unsort(remove, order), NEG_INF)
    rejects("generation.top_p_filter", top_p_filter, hint="most probable token must always stay")


def test_top_p_returning_sorted_logits_is_rejected():
    def top_p_filter(logits, p):
        sorted_logits, order, probs, cum = _sorted_parts(logits)
        return sorted_logits.masked_fill(cum - probs >= p, NEG_INF)
    rejects("generation.top_p_filter", top_p_filter, hint="vocabulary order")


def test_top_p_gathering_instead_of_scattering_is_rejected():
    def top_p_filter(logits, p):  # gather applies the inverse permutation: the mask lands on the wrong tokens
        _, order, probs, cum = _sorted_parts(logits)
        return logits.masked_fill((cum - probs >= p).gather(-1, order), NEG_INF)
    rejects("generation.top_p_filter", top_p_filter)


def test_top_p_renormalising_the_logits_is_rejected():
    def top_p_filter(logits, p):
        _, order, probs, cum = _sorted_parts(logits)
        kept = logits.masked_fill(_unsort(cum - probs >= p, order), NEG_INF)
        return kept - torch.logsumexp(kept, dim=-1, keepdim=True)  # log-probabilities of the kept set
    rejects("generation.top_p_filter", top_p_filter, hint="unchanged")


def test_top_p_returning_probabilities_is_rejected():
    def top_p_filter(logits, p):
        _, order, probs, cum = _sorted_parts(logits)
        keep = ~_unsort(cum - probs >= p, order)
        return F.softmax(logits, -1) * keep
    rejects("generation.top_p_filter", top_p_filter)


def test_top_p_on_unnormalised_scores_is_rejected():
    def top_p_filter(logits, p):
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        w = sorted_logits.exp()  # forgot to divide by the sum: not probabilities
        remove = w.cumsum(-1) - w >= p
        return logits.masked_fill(_unsort(remove, order), NEG_INF)
    rejects("generation.top_p_filter", top_p_filter)


def test_top_p_in_place_is_rejected():
    def top_p_filter(logits, p):
        _, order, probs, cum = _sorted_parts(logits)
        logits[_unsort(cum - probs >= p, order)] = NEG_INF
        return logits
    rejects("generation.top_p_filter", top_p_filter)


# ----------------------------------------------------------------------------- greedy_generate: takes a model
def test_greedy_generate_written_other_ways_passes():
    def greedy_generate(model, idx, max_new_tokens):  # preallocated output, topk instead of argmax
        B, T0 = idx.shape
        out = torch.empty(B, T0 + max_new_tokens, dtype=idx.dtype)
        out[:, :T0] = idx
        for t in range(T0, T0 + max_new_tokens):
            ctx = out[:, max(0, t - model.config.block_size):t]
            out[:, t] = model(ctx)[0][:, -1].topk(1, dim=-1).indices[:, 0]
        return out

    assert check("generation.greedy_generate", greedy_generate, quiet=True)


def test_greedy_generate_with_a_kv_cache_of_its_own_passes():
    from llmlab.generate.sampling import generate

    assert check("generation.greedy_generate", lambda m, idx, n: generate(m, idx, n, temperature=0.0, use_cache=False), quiet=True)


def test_greedy_generate_reading_the_first_position_is_rejected():
    def greedy_generate(model, idx, max_new_tokens):
        for _ in range(max_new_tokens):
            logits, _ = model(idx[:, -model.config.block_size:])
            idx = torch.cat([idx, logits[:, 0].argmax(-1, keepdim=True)], dim=1)
        return idx
    rejects("generation.greedy_generate", greedy_generate, hint="logits of the *last* position")


def test_greedy_generate_without_cropping_is_rejected():
    def greedy_generate(model, idx, max_new_tokens):
        for _ in range(max_new_tokens):
            idx = torch.cat([idx, model(idx)[0][:, -1].argmax(-1, keepdim=True)], dim=1)
        return idx
    rejects("generation.greedy_generate", greedy_generate, hint="crop the context to the model's block_size")


def test_greedy_generate_returning_only_new_tokens_is_rejected():
    def greedy_generate(model, idx, max_new_tokens):
        new = []
        for _ in range(max_new_tokens):
            nxt = model(idx[:, -8:])[0][:, -1].argmax(-1, keepdim=True)
            new.append(nxt)
            idx = torch.cat([idx, nxt], dim=1)
        return torch.cat(new, dim=1) if new else idx[:, :0]
    rejects("generation.greedy_generate", greedy_generate, hint="the prompt followed by the new tokens")


def test_greedy_generate_sampling_instead_of_argmax_is_rejected():
    def greedy_generate(model, idx, max_new_tokens):
        g = torch.Generator().manual_seed(0)
        for _ in range(max_new_tokens):
            p = model(idx[:, -model.config.block_size:])[0][:, -1].softmax(-1)
            idx = torch.cat([idx, torch.multinomial(p, 1, generator=g)], dim=1)
        return idx
    rejects("generation.greedy_generate", greedy_generate)


def test_greedy_generate_feeding_only_the_last_token_is_rejected():
    def greedy_generate(model, idx, max_new_tokens):
        for _ in range(max_new_tokens):
            idx = torch.cat([idx, model(idx[:, -1:])[0][:, -1].argmax(-1, keepdim=True)], dim=1)
        return idx
    rejects("generation.greedy_generate", greedy_generate, hint="feed the whole (cropped) context")
