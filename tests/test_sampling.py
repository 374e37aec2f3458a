"""llmlab.generate.sampling: the filters against a row-by-row oracle and worked examples, sampling
(greedy, temperature, seeded reproducibility), the KV cache's equivalence with plain
generation (greedy, every positional scheme, across the block_size boundary) and stopping
at a length, a stop token or a stop string."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from llmlab.generate.sampling import generate, generate_text, generate_tokens, sample_next, top_k_filter, top_p_filter
from llmlab.models.gpt import GPT, GPTConfig
from llmlab.nn.attention import KVCache
from llmlab.text.tokenizers import CharTokenizer

NEG_INF = float("-inf")


# ----------------------------------------------------------------------------- top-k
def test_top_k_worked_example_keeps_ties():
    out = top_k_filter(torch.tensor([1.0, 3.0, 2.0, 3.0, 2.0]), 3)
    # the 3rd largest is 2: both 2s stay, so 4 entries survive
    assert out.tolist() == [NEG_INF, 3.0, 2.0, 3.0, 2.0]


def test_top_k_matches_a_row_by_row_oracle():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 5, (2, 3, 11), generator=g).float()  # many ties
    out = top_k_filter(x, 4)
    for row, got in zip(x.reshape(-1, 11), out.reshape(-1, 11)):
        kth = sorted(row.tolist(), reverse=True)[3]
        expected = [v if v >= kth else NEG_INF for v in row.tolist()]
        assert got.tolist() == expected


def test_top_k_larger_than_vocabulary_keeps_everything_and_input_is_untouched():
    x = torch.randn(3, 7)
    before = x.clone()
    assert torch.equal(top_k_filter(x, 50), x)
    top_k_filter(x, 2)
    assert torch.equal(x, before)


@pytest.mark.parametrize("k", [0, -1, 2.0, True])
def test_top_k_rejects_bad_k_naming_it(k):
    with pytest.raises(ValueError, match=f"k={k!r}"):
        top_k_filter(torch.randn(5), k)


# ----------------------------------------------------------------------------- top-p
def test_top_p_worked_example_keeps_the_token_that_crosses_p():
    probs = torch.tensor([0.05, 0.40, 0.10, 0.30, 0.15])
    out = top_p_filter(probs.log(), 0.6)  # 0.40 < 0.6; 0.40 + 0.30 >= 0.6
    assert torch.isfinite(out).tolist() == [False, True, False, True, False]
    assert torch.equal(out[[1, 3]], probs.log()[[1, 3]])  # kept logits unchanged, in place


def _top_p_oracle(row: torch.Tensor, p: float) -> list[bool]:
    probs = torch.softmax(row.double(), -1).tolist()
    order = sorted(range(len(probs)), key=lambda i: -probs[i])
    keep, total = set(), 0.0
    for i in order:
        keep.add(i)
        total += probs[i]
        if total >= p:
            break
    return [i in keep for i in range(len(probs))]


@pytest.mark.parametrize("p", [0.05, 0.3, 0.75, 0.9, 0.99])
def test_top_p_matches_a_row_by_row_oracle(p):
    x = torch.randn(6, 13, generator=torch.Generator().manual_seed(1)) * 2
    out = top_p_filter(x, p)
    for row, got in zip(x, out):
        keep = _top_p_oracle(row, p)
        assert torch.isfinite(got).tolist() == keep
        assert torch.equal(got[torch.tensor(keep)], row[torch.tensor(keep)])


def test_top_p_always_keeps_the_most_probable_token():
    x = torch.tensor([[0.0, 8.0, 1.0, 0.5]])  # the second token holds > 99 % of the mass
    assert torch.isfinite(top_p_filter(x, 0.01)).tolist() == [[False, True, False, False]]


def test_top_p_of_one_keeps_every_token_even_with_many_tiny_ones():
    x = torch.cat([torch.tensor([30.0]), torch.full((5000,), -30.0)])  # a cumulative sum may round to 1 early
    assert torch.equal(top_p_filter(x, 1.0), x)


def test_top_p_after_top_k_leaves_removed_tokens_removed():
    x = torch.randn(4, 9, generator=torch.Generator().manual_seed(2))
    out = top_p_filter(top_k_filter(x, 3), 0.95)
    assert (torch.isfinite(out).sum(-1) <= 3).all()


@pytest.mark.parametrize("p", [0.0, -0.1, 1.5, True])
def test_top_p_rejects_bad_p_naming_it(p):
    with pytest.raises(ValueError, match=f"p={p!r}"):
        top_p_filter(torch.randn(5), p)


# ----------------------------------------------------------------------------- sample_next
def test_temperature_zero_is_argmax_and_negative_is_refused():
    x = torch.randn(4, 10, generator=torch.Generator().manual_seed(3))
    assert torch.equal(sample_next(x, temperature=0), x.argmax(-1, keepdim=True))
    with pytest.raises(ValueError, match="temperature=-1"):
        sample_next(x, temperature=-1)


def test_seeded_generator_reproduces_samples_and_the_global_seed_does_not_matter():
    x = torch.randn(3, 20, generator=torch.Generator().manual_seed(4))
    torch.manual_seed(0)
    a = sample_next(x, 1.0, generator=torch.Generator().manual_seed(7))
    torch.manual_seed(1)
    b = sample_next(x, 1.0, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b) and a.shape == (3, 1) and a.dtype == torch.long


def test_filters_restrict_what_can_be_sampled():
    x = torch.randn(2, 30, generator=torch.Generator().manual_seed(5))
    gen = torch.Generator().manual_seed(0)
    top2 = set(map(tuple, x.topk(2, -1).indices.tolist()))
    draws = torch.cat([sample_next(x, 1.5, top_k=2, generator=gen) for _ in range(200)], dim=1)  # (2, 200)
    for row, allowed in zip(draws.tolist(), x.topk(2, -1).indices.tolist()):
        assert set(row) == set(allowed), top2  # both survivors are drawn, nothing else ever is


def test_low_temperature_concentrates_samples_on_the_argmax():
    x = torch.tensor([[1.0, 2.0, 1.5]])
    gen = torch.Generator().manual_seed(0)
    cold = torch.cat([sample_next(x, 0.05, generator=gen) for _ in range(300)])
    hot = torch.cat([sample_next(x, 5.0, generator=gen) for _ in range(300)])
    assert (cold == 1).float().mean() > 0.99  # p(argmax) = 1 / (1 + 2 e^-10) at T = 0.05
    assert (hot == 1).float().mean() < 0.5  # near-uniform at T = 5: p(argmax) = 0.37


# ----------------------------------------------------------------------------- the KV cache
def sharp_gpt(pos_encoding: str, block_size: int = 12, seed: int = 0) -> GPT:
    """A small GPT with large random weights, so next-token logits are far apart (a wrong
    cache shows up as different tokens, not as rounding noise that a tie could hide)."""
    torch.manual_seed(seed)
    m = GPT(GPTConfig(vocab_size=23, block_size=block_size, n_layer=2, n_head=4, n_embd=32, pos_encoding=pos_encoding))
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.35)
    return m.eval()


@pytest.mark.parametrize("pos_encoding", ["learned", "sinusoidal", "rope", "alibi"])
def test_cached_logits_equal_full_recomputation_step_by_step(pos_encoding):
    m = sharp_gpt(pos_encoding)
    idx = torch.randint(23, (3, 12), generator=torch.Generator().manual_seed(6))
    cache = KVCache()
    with torch.no_grad():
        full, _ = m(idx)  # (B, 12, V)
        first, _ = m(idx[:, :5], cache=cache)  # prefill 5 positions
        steps = [m(idx[:, t : t + 1], cache=cache)[0] for t in range(5, 12)]  # then one at a time
    got = torch.cat([first, *steps], dim=1)
    # float32: the cached path sums the same products in another order; errors ~1e-6 on logits of size ~10
    torch.testing.assert_close(got, full, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("pos_encoding", ["learned", "sinusoidal", "rope", "alibi"])
@pytest.mark.parametrize("prompt_len, new", [(3, 5), (4, 12), (12, 4)])
def test_greedy_generation_with_cache_is_token_for_token_identical(pos_encoding, prompt_len, new):
    """(4, 12) and (12, 4) run past block_size=12, where the context starts sliding."""
    m = sharp_gpt(pos_encoding)
    idx = torch.randint(23, (2, prompt_len), generator=torch.Generator().manual_seed(prompt_len))
    with_cache = generate(m, idx, new, temperature=0, use_cache=True)
    without = generate(m, idx, new, temperature=0, use_cache=False)
    assert with_cache.shape == (2, prompt_len + new)
    assert torch.equal(with_cache, without)
    assert len(set(with_cache[:, prompt_len:].flatten().tolist())) > 2  # not a degenerate repeat of one token


def test_sampling_with_a_seeded_generator_is_identical_with_and_without_cache():
    m = sharp_gpt("rope")
    idx = torch.randint(23, (2, 4), generator=torch.Generator().manual_seed(8))
    a = generate(m, idx, 15, temperature=1.0, top_k=10, generator=torch.Generator().manual_seed(3), use_cache=True)
    b = generate(m, idx, 15, temperature=1.0, top_k=10, generator=torch.Generator().manual_seed(3), use_cache=False)
    c = generate(m, idx, 15, temperature=1.0, top_k=10, generator=torch.Generator().manual_seed(4), use_cache=True)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_generate_gives_the_model_back_in_training_mode():
    m = sharp_gpt("learned").train()
    generate(m, torch.zeros(1, 1, dtype=torch.long), 3)
    assert m.training


def test_generate_checks_its_arguments():
    m = sharp_gpt("learned")
    with pytest.raises(ValueError, match="idx"):
        generate(m, torch.zeros(3, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="max_new_tokens=-1"):
        generate(m, torch.zeros(1, 2, dtype=torch.long), -1)


# ----------------------------------------------------------------------------- stopping
class Counter(nn.Module):
    """A stand-in model that always predicts token (last + 1) mod V, with the cache API."""

    def __init__(self, V: int, block_size: int = 64):
        super().__init__()
        self.config = GPTConfig(vocab_size=V, block_size=block_size, n_layer=1, n_head=1, n_embd=4)
        self.dummy = nn.Parameter(torch.zeros(1))
        self.calls: list[int] = []  # sequence length fed at each call

    def forward(self, idx, targets=None, cache=None):
        self.calls.append(idx.size(1))
        if cache is not None:
            cache.length += idx.size(1)
        logits = torch.full((*idx.shape, self.config.vocab_size), -5.0)
        return logits.scatter(-1, ((idx + 1) % self.config.vocab_size)[..., None], 5.0), None


ALPHABET = CharTokenizer("abcdefghij", byte_fallback=False)


def test_stop_string_ends_the_text_right_after_it():
    m = Counter(10)
    out = generate_text(m, ALPHABET, "a", max_new_tokens=50, stop="de", temperature=0)
    assert out == "abcde"
    assert len(m.calls) == 4  # b, c, d, e: not a token more


def test_stop_string_inside_the_prompt_does_not_stop_generation():
    out = generate_text(Counter(10), ALPHABET, "dea", max_new_tokens=50, stop="de", temperature=0)
    assert out == "deabcde"


def test_max_new_tokens_bounds_the_text_when_the_stop_string_never_comes():
    out = generate_text(Counter(10), ALPHABET, "a", max_new_tokens=12, stop="zz", temperature=0)
    assert out == "abcdefghijabc"  # 1 + 12 characters


def test_prefill_once_then_one_token_per_step():
    m = Counter(10)
    list(generate_tokens(m, torch.tensor([[1, 2, 3]]), 4, temperature=0))
    assert m.calls == [3, 1, 1, 1]


def test_stop_token_pads_finished_rows_and_ends_when_all_are_done():
    idx = torch.tensor([[7], [4]])  # row 0 reaches 9 after 2 steps, row 1 after 5
    out = generate(Counter(10), idx, 20, temperature=0, stop_token=9)
    assert out.tolist() == [[7, 8, 9, 9, 9, 9], [4, 5, 6, 7, 8, 9]]


def test_generate_text_seed_makes_samples_reproducible():
    m = sharp_gpt("learned", block_size=16)
    tok = CharTokenizer("abcdefghijklmnopqrstuvw", byte_fallback=False)  # 23 characters = the vocabulary
    a = generate_text(m, tok, "abc", max_new_tokens=30, seed=1)
    b = generate_text(m, tok, "abc", max_new_tokens=30, seed=1)
    c = generate_text(m, tok, "abc", max_new_tokens=30, seed=2)
    assert a == b != c and len(a) == 33 and a.startswith("abc")


def test_generate_text_refuses_an_empty_stop_string():
    with pytest.raises(ValueError, match="stop=''"):
        generate_text(Counter(10), ALPHABET, "a", stop="")
