"""llmlab.nn.attention against independent oracles: torch.softmax, F.scaled_dot_product_attention,
torch.nn.MultiheadAttention with the same weights, and a full recompute for the KV cache.

Tolerances: every comparison below is float32 on O(1) values through a handful of
matmuls, where two correct summation orders differ by ~1e-6; 1e-5 absolute (and 1e-5
relative) leaves a 10x margin and still fails for any real bug (those are off by > 1e-2).
"""

from __future__ import annotations

import matplotlib
import pytest
import torch
import torch.nn.functional as F

from llmlab.models.gpt import GPT, GPTConfig
from llmlab.nn import attention as A
from llmlab.nn.positional import make_positional

TOL = dict(atol=1e-5, rtol=1e-5)  # see the module docstring


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- softmax
@pytest.mark.parametrize("dim", [-1, 0, 1, 2])
def test_softmax_matches_torch(dim):
    x = torch.randn(3, 4, 5, generator=gen(1)) * 3
    torch.testing.assert_close(A.softmax(x, dim=dim), torch.softmax(x, dim=dim), **TOL)


def test_softmax_large_and_very_negative_logits_stay_finite():
    x = torch.tensor([[1000.0, 1000.0, 999.0], [-1000.0, -1001.0, -1000.0], [1e4, -1e4, 0.0]])
    got = A.softmax(x)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, torch.softmax(x, dim=-1), **TOL)
    naive = x.exp() / x.exp().sum(-1, keepdim=True)  # what the max-subtraction protects against
    assert naive[0].isnan().all() and naive[1].isnan().all()


def test_softmax_masked_entries_get_exactly_zero_and_input_is_untouched():
    x = torch.randn(4, 6, generator=gen(2)).masked_fill(~A.causal_mask(6)[:4], float("-inf"))
    before = x.clone()
    w = A.softmax(x)
    assert (w[~A.causal_mask(6)[:4]] == 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(4), **TOL)
    assert torch.equal(x, before)


# ----------------------------------------------------------------------------- masks
def test_causal_mask_is_j_le_i_and_bool():
    T = 7
    m = A.causal_mask(T)
    assert m.dtype == torch.bool and m.shape == (T, T)
    expected = torch.tensor([[j <= i for j in range(T)] for i in range(T)])
    assert torch.equal(m, expected)


@pytest.mark.parametrize("Tq, Tk", [(1, 5), (3, 5), (5, 5)])
def test_offset_causal_mask_is_the_last_rows_of_the_full_mask(Tq, Tk):
    assert torch.equal(A.offset_causal_mask(Tq, Tk), A.causal_mask(Tk)[Tk - Tq:])


# ----------------------------------------------------------------------------- scaled dot-product attention
def qkv(B=2, H=3, Tq=4, Tk=6, D=8, Dv=5, seed=0):
    g = gen(seed)
    return torch.randn(B, H, Tq, D, generator=g), torch.randn(B, H, Tk, D, generator=g), torch.randn(B, H, Tk, Dv, generator=g)


def test_sdpa_without_mask_matches_pytorch_with_tq_ne_tk_and_d_ne_dv():
    q, k, v = qkv()
    out = A.scaled_dot_product_attention(q, k, v)
    assert out.shape == (2, 3, 4, 5)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), **TOL)


def test_sdpa_causal_matches_is_causal():
    q, k, v = qkv(Tq=6, Tk=6)
    torch.testing.assert_close(A.scaled_dot_product_attention(q, k, v, A.causal_mask(6)),
                               F.scaled_dot_product_attention(q, k, v, is_causal=True), **TOL)


def test_sdpa_boolean_mask_with_tq_ne_tk_matches_pytorch():
    q, k, v = qkv()
    mask = torch.rand(4, 6, generator=gen(3)) < 0.5
    mask[:, 0] = True  # every query keeps at least one key
    torch.testing.assert_close(A.scaled_dot_product_attention(q, k, v, mask),
                               F.scaled_dot_product_attention(q, k, v, attn_mask=mask), **TOL)
    # the offset mask of a KV-cache step (queries are the last Tq of Tk positions)
    m2 = A.offset_causal_mask(4, 6)
    torch.testing.assert_close(A.scaled_dot_product_attention(q, k, v, m2),
                               F.scaled_dot_product_attention(q, k, v, attn_mask=m2), **TOL)


def test_sdpa_additive_bias_matches_a_float_attn_mask():
    q, k, v = qkv()
    bias = torch.randn(3, 4, 6, generator=gen(4))  # (H, Tq, Tk), broadcast over B like ALiBi
    torch.testing.assert_close(A.scaled_dot_product_attention(q, k, v, bias=bias),
                               F.scaled_dot_product_attention(q, k, v, attn_mask=bias), **TOL)


def test_attention_weights_rows_sum_to_one_and_ignore_the_future():
    q, k, v = qkv(Tq=6, Tk=6)
    w = A.attention_weights(q, k, A.causal_mask(6))
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3, 6), **TOL)
    assert (w.triu(1) == 0).all()


# ----------------------------------------------------------------------------- multi-head attention
def mha_pair(C=24, H=4, causal=True, **kw):
    torch.manual_seed(0)
    fast = A.MultiHeadAttention(C, H, causal=causal, **kw).eval()
    slow = A.MultiHeadAttention(C, H, causal=causal, fast=False, **kw).eval()
    slow.load_state_dict(fast.state_dict())
    return fast, slow


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("pos", [None, "rope", "alibi"])
def test_mha_fast_path_equals_slow_path(causal, pos):
    fast, slow = mha_pair(causal=causal)
    positions = make_positional(pos, block_size=16, n_embd=24, n_head=4) if pos else None
    x = torch.randn(2, 7, 24, generator=gen(5))
    with torch.no_grad():
        torch.testing.assert_close(fast(x, positions), slow(x, positions), **TOL)


def test_mha_matches_torch_multiheadattention_with_copied_weights():
    C, H, T = 24, 4, 7
    ours = A.MultiHeadAttention(C, H, causal=True).eval()
    theirs = torch.nn.MultiheadAttention(C, H, batch_first=True).eval()
    with torch.no_grad():  # same layout: q, k, v stacked row-wise in one (3C, C) matrix
        theirs.in_proj_weight.copy_(ours.c_attn.weight)
        theirs.in_proj_bias.copy_(ours.c_attn.bias)
        theirs.out_proj.weight.copy_(ours.c_proj.weight)
        theirs.out_proj.bias.copy_(ours.c_proj.bias)
        x = torch.randn(3, T, C, generator=gen(6))
        # PyTorch's bool attn_mask is the opposite convention: True = *not* allowed
        expected, _ = theirs(x, x, x, attn_mask=~A.causal_mask(T), need_weights=False)
        torch.testing.assert_close(ours(x), expected, **TOL)
        expected_full, _ = theirs(x, x, x, need_weights=False)
        ours.causal = False
        torch.testing.assert_close(ours(x), expected_full, **TOL)


def test_record_weights_keeps_the_pattern_and_output_is_unchanged():
    fast, _ = mha_pair()
    x = torch.randn(2, 5, 24, generator=gen(7))
    with torch.no_grad():
        y = fast(x)
        fast.record_weights = True
        y2 = fast(x)
    torch.testing.assert_close(y2, y, **TOL)
    w = fast.last_weights
    assert w.shape == (2, 4, 5, 5)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 5), **TOL)
    assert (w.triu(1) == 0).all()


def test_mha_is_causal():
    fast, _ = mha_pair()
    x = torch.randn(1, 6, 24, generator=gen(8))
    x2 = x.clone()
    x2[:, 4:] += 3.0
    with torch.no_grad():
        torch.testing.assert_close(fast(x2)[:, :4], fast(x)[:, :4], **TOL)
        assert not torch.allclose(fast(x2)[:, 4:], fast(x)[:, 4:])


@pytest.mark.parametrize("pos", ["learned", "sinusoidal", "rope", "alibi"])
def test_kv_cache_steps_equal_full_recompute(pos):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=31, block_size=16, n_layer=2, n_head=2, n_embd=16, pos_encoding=pos)).eval()
    idx = torch.randint(31, (2, 11), generator=gen(9))
    with torch.no_grad():
        full, _ = model(idx)  # (B, T, V)
        cache = A.KVCache()
        steps = [model(idx[:, :4], cache=cache)[0]]  # prefill 4 tokens, then one at a time
        for t in range(4, 11):
            steps.append(model(idx[:, t : t + 1], cache=cache)[0])
    assert cache.length == 11 and cache.k[0].shape == (2, 2, 11, 8)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, **TOL)


def test_kv_cache_appends_into_a_buffer_that_doubles():
    """Appending 300 single steps after a prefill of 5: the layer's keys are always exactly what was
    appended (a view of the filled part), and the buffer is reallocated O(log T) times, not every step."""
    g = gen(11)
    cache, want_k, want_v, buffers = A.KVCache(), [], [], set()
    for t in [5] + [1] * 300:
        k, v = torch.randn(2, 3, t, 4, generator=g), torch.randn(2, 3, t, 4, generator=g)
        want_k.append(k)
        want_v.append(v)
        got_k, got_v = cache.update(0, k, v)
        buffers.add(got_k.data_ptr())
        assert got_k is cache.k[0] and got_v is cache.v[0]
    torch.testing.assert_close(cache.k[0], torch.cat(want_k, dim=2), rtol=0, atol=0)
    torch.testing.assert_close(cache.v[0], torch.cat(want_v, dim=2), rtol=0, atol=0)
    assert cache.k[0].shape == (2, 3, 305, 4)
    assert len(buffers) <= 5  # the prompt's own tensor, then buffers of 64, 130, 262, 526 positions


def test_kv_cache_on_a_single_module():
    fast, slow = mha_pair()
    x = torch.randn(1, 6, 24, generator=gen(10))
    with torch.no_grad():
        full = fast(x)
        for m in (fast, slow):
            cache, outs = A.KVCache(), []
            for t in range(6):
                outs.append(m(x[:, t : t + 1], cache=cache))
                cache.length += 1  # the GPT does this after each forward
            torch.testing.assert_close(torch.cat(outs, dim=1), full, **TOL)


def test_mha_errors_name_the_parameters():
    with pytest.raises(ValueError, match=r"d_model=10 is not divisible by n_heads=3"):
        A.MultiHeadAttention(10, 3)
    m = A.MultiHeadAttention(12, 3)
    with pytest.raises(ValueError, match=r"d_model=12.*\(2, 5, 8\)"):
        m(torch.randn(2, 5, 8))


def test_mha_parameter_names_follow_gpt2():
    m = A.MultiHeadAttention(12, 3)
    assert {n: tuple(p.shape) for n, p in m.named_parameters()} == {
        "c_attn.weight": (36, 12), "c_attn.bias": (36,), "c_proj.weight": (12, 12), "c_proj.bias": (12,)}


# ----------------------------------------------------------------------------- pictures
def test_plots_have_labelled_axes():
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from llmlab.viz import attention as V

    ax = V.plot_attention(torch.softmax(torch.randn(4, 6), -1), list("abcd"), list("uvwxyz"))
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    assert [t.get_text() for t in ax.get_xticklabels()] == list("uvwxyz")
    fig = V.plot_score_scaling(dims=(4, 64), n=200)
    assert all(a.get_xlabel() and a.get_ylabel() and a.get_title() for a in fig.axes)
    plt.close("all")


def test_attention_patterns_of_a_gpt_restore_the_flags():
    from llmlab.viz.attention import attention_patterns

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=20, block_size=16, n_layer=3, n_head=2, n_embd=8))
    p = attention_patterns(model, torch.arange(9))
    assert p.shape == (3, 2, 9, 9)
    torch.testing.assert_close(p.sum(-1), torch.ones(3, 2, 9), **TOL)
    assert all(not b.attn.record_weights and b.attn.last_weights is None for b in model.transformer.h)
    assert model.training  # put back in the mode it was in
    with pytest.raises(ValueError, match="idx"):
        attention_patterns(model, torch.zeros(2, 3, dtype=torch.long))


def test_token_labels_show_whitespace():
    from llmlab.viz.attention import token_labels

    assert token_labels(["a", " ", "\n"]) == ["a", "␣", "⏎"]
