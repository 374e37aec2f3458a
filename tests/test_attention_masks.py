"""Masks and cross-attention in llmlab.nn.attention, against independent oracles:
torch.nn.MultiheadAttention with copied weights (key padding, boolean masks, cross-attention
with Tq != Tk), F.scaled_dot_product_attention, a full recompute for both caches, and known
answers for `attention_bias` and for queries left with nothing to attend to.

Every dimension differs (B=2, Tq=5, Tk=7, C=24, H=4, D=6), so a swapped axis cannot pass.
Tolerances: float32 on O(1) values through a handful of matmuls, where two correct summation
orders differ by ~1e-6; 1e-5 absolute and relative leaves a 10x margin (as tests/test_attention.py).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from llmlab.nn import attention as A
from llmlab.nn.positional import make_positional

TOL = dict(atol=1e-5, rtol=1e-5)  # see the module docstring
B, TQ, TK, C, H = 2, 5, 7, 24, 4
D = C // H
NEG = float("-inf")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def pair(causal=True, cross=False, seed=0):
    """A fast and a slow module with the same weights (biases nonzero: nn.Linear's default init)."""
    torch.manual_seed(seed)
    fast = A.MultiHeadAttention(C, H, causal=causal, cross=cross).eval()
    slow = A.MultiHeadAttention(C, H, causal=causal, cross=cross, fast=False).eval()
    slow.load_state_dict(fast.state_dict())
    return fast, slow


def torch_mha(ours: A.MultiHeadAttention) -> nn.MultiheadAttention:
    """torch.nn.MultiheadAttention holding our weights: q, k, v stacked row-wise in in_proj."""
    theirs = nn.MultiheadAttention(C, H, batch_first=True).eval()
    w = torch.cat([ours.q_proj.weight, ours.kv_proj.weight]) if ours.cross else ours.c_attn.weight  # (3C, C)
    b = torch.cat([ours.q_proj.bias, ours.kv_proj.bias]) if ours.cross else ours.c_attn.bias  # (3C,)
    with torch.no_grad():
        theirs.in_proj_weight.copy_(w)
        theirs.in_proj_bias.copy_(b)
        theirs.out_proj.weight.copy_(ours.c_proj.weight)
        theirs.out_proj.bias.copy_(ours.c_proj.bias)
    return theirs


def right_padding(lengths, T):
    """BoolTensor[B, T], True = padding: row b has lengths[b] real tokens, then padding."""
    return torch.arange(T)[None, :] >= torch.tensor(lengths)[:, None]


# ----------------------------------------------------------------------------- attention_bias: known answers
def test_attention_bias_is_the_and_of_all_masks_plus_the_bias():
    kpm = right_padding([7, 4], TK)  # row 1: keys 4.. are padding
    am = torch.rand(TQ, TK, generator=gen(1)) < 0.7
    am[:, 0] = True  # every query keeps key 0, so no row is empty
    alibi = torch.randn(H, TQ, TK, generator=gen(2))
    bias, empty = A.attention_bias(TQ, TK, causal=True, attn_mask=am, key_padding_mask=kpm, bias=alibi)
    assert bias.shape == (B, H, TQ, TK) and not empty.any()
    i, j = torch.arange(TQ)[:, None], torch.arange(TK)[None, :]
    allowed = (j <= i + TK - TQ) & am & ~kpm[:, None, None, :]  # (B, 1, Tq, Tk)
    expected = torch.where(allowed, alibi, NEG)  # (B, H, Tq, Tk)
    assert torch.equal(bias, expected)


def test_attention_bias_without_masks_passes_the_bias_through_and_causal_alone_leaves_no_row_empty():
    assert A.attention_bias(TQ, TK) == (None, None)
    alibi = torch.randn(H, TQ, TK, generator=gen(3))
    bias, empty = A.attention_bias(TQ, TK, bias=alibi)
    assert torch.equal(bias, alibi) and empty is None
    bias, empty = A.attention_bias(TQ, TK, causal=True)
    assert empty is None and torch.equal(bias == 0, A.offset_causal_mask(TQ, TK))


def test_attention_bias_flags_and_opens_rows_with_nothing_to_attend_to():
    kpm = right_padding([7, 0], TK)  # row 1 is all padding
    bias, empty = A.attention_bias(TQ, TK, key_padding_mask=kpm)
    assert empty.shape == (B, 1, 1, 1) and empty[:, 0, 0, 0].tolist() == [False, True]
    assert torch.isfinite(bias[1]).all()  # opened: no softmax sees a row of only -inf
    am = torch.ones(TQ, TK, dtype=torch.bool)
    am[2] = False  # query 2 may attend to nothing
    _, empty = A.attention_bias(TQ, TK, attn_mask=am)
    assert empty[:, 0].tolist() == [False, False, True, False, False]


# ----------------------------------------------------------------------------- self-attention with key padding
@pytest.mark.parametrize("causal", [False, True])
def test_self_attention_with_key_padding_matches_torch_multiheadattention(causal):
    fast, slow = pair(causal=causal)
    theirs = torch_mha(fast)
    x = torch.randn(B, TK, C, generator=gen(4))
    kpm = right_padding([7, 4], TK)  # the same convention as PyTorch's: True = padding
    with torch.no_grad():
        expected, _ = theirs(x, x, x, key_padding_mask=kpm, attn_mask=~A.causal_mask(TK) if causal else None, need_weights=False)
        torch.testing.assert_close(fast(x, key_padding_mask=kpm), expected, **TOL)
        torch.testing.assert_close(slow(x, key_padding_mask=kpm), expected, **TOL)
        assert not torch.allclose(fast(x)[1], expected[1], **TOL)  # the padding did change row 1


def test_padded_keys_are_ignored():
    fast, _ = pair(causal=False)
    x = torch.randn(B, TK, C, generator=gen(5))
    kpm = right_padding([7, 4], TK)
    x2 = x.clone()
    x2[1, 4:] = torch.randn(3, C, generator=gen(6)) * 5  # change only the padded tokens
    with torch.no_grad():
        torch.testing.assert_close(fast(x2, key_padding_mask=kpm)[1, :4], fast(x, key_padding_mask=kpm)[1, :4], **TOL)
        torch.testing.assert_close(fast(x2, key_padding_mask=kpm)[0], fast(x, key_padding_mask=kpm)[0], **TOL)


@pytest.mark.parametrize("shape", [(TK, TK), (B, 1, TK, TK), (B, H, TK, TK)])
def test_boolean_attn_mask_of_any_broadcastable_shape_matches_torch(shape):
    fast, slow = pair(causal=False)
    theirs = torch_mha(fast)
    x = torch.randn(B, TK, C, generator=gen(7))
    am = torch.rand(*shape, generator=gen(8)) < 0.6
    am[..., 0] = True
    theirs_mask = (~am).expand(B, H, TK, TK).reshape(B * H, TK, TK)  # PyTorch: True = *not* allowed, (B*H, T, T)
    with torch.no_grad():
        expected, _ = theirs(x, x, x, attn_mask=theirs_mask, need_weights=False)
        torch.testing.assert_close(fast(x, attn_mask=am), expected, **TOL)
        torch.testing.assert_close(slow(x, attn_mask=am), expected, **TOL)


@pytest.mark.parametrize("pos", ["rope", "alibi"])
def test_padding_causal_and_positions_agree_on_both_paths(pos):
    fast, slow = pair(causal=True)
    positions = make_positional(pos, block_size=16, n_embd=C, n_head=H)
    x = torch.randn(B, TK, C, generator=gen(9))
    kpm = right_padding([5, 7], TK)
    am = torch.rand(B, 1, TK, TK, generator=gen(10)) < 0.8
    with torch.no_grad():
        torch.testing.assert_close(fast(x, positions, key_padding_mask=kpm, attn_mask=am), slow(x, positions, key_padding_mask=kpm, attn_mask=am), **TOL)


# ----------------------------------------------------------------------------- nothing to attend to
@pytest.mark.parametrize("case", ["fully padded row", "left padding under a causal mask"])
def test_a_query_with_nothing_to_attend_to_outputs_zero_on_both_paths_with_finite_gradients(case):
    fast, slow = pair(causal=case != "fully padded row")
    kpm = right_padding([7, 0], TK) if case == "fully padded row" else torch.arange(TK)[None, :].expand(B, TK) < torch.tensor([[2], [0]])
    empty = torch.zeros(B, TK, dtype=torch.bool)
    if case == "fully padded row":
        empty[1] = True
    else:
        empty[0, :2] = True  # row 0's first two queries see only padded keys
    x = torch.randn(B, TK, C, generator=gen(11))
    outs, grads = [], []
    for m in (fast, slow):
        xi = x.clone().requires_grad_()
        y = m(xi, key_padding_mask=kpm)
        y.square().sum().backward()
        outs.append(y.detach())
        grads.append(xi.grad)
    for y, g in zip(outs, grads):
        assert torch.isfinite(y).all() and torch.isfinite(g).all()
        assert torch.equal(y[empty], fast.c_proj.bias.detach().expand(int(empty.sum()), C))  # attention output 0, then c_proj: its bias
    torch.testing.assert_close(outs[0], outs[1], **TOL)
    torch.testing.assert_close(grads[0], grads[1], **TOL)
    slow.record_weights = True
    with torch.no_grad():
        slow(x, key_padding_mask=kpm)
    w = slow.last_weights  # (B, H, T, T)
    assert (w.transpose(1, 2)[empty] == 0).all()
    torch.testing.assert_close(w.transpose(1, 2)[~empty].sum(-1), torch.ones(int((~empty).sum()), H), **TOL)


# ----------------------------------------------------------------------------- the fast path stays mask-free
def test_no_mask_is_materialised_unless_one_is_asked_for(monkeypatch):
    calls = []
    real = F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, **kw):
        calls.append((attn_mask, is_causal))
        return real(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, **kw)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    fast, _ = pair(causal=True)
    x = torch.randn(B, TK, C, generator=gen(12))
    with torch.no_grad():
        cache = A.KVCache()
        fast(x[:, :6], cache=cache)  # prefill: T == Tk
        cache.length = 6
        fast(x[:, 6:], cache=cache)  # one new query sees every key
        fast(x, key_padding_mask=right_padding([7, 3], TK))
    assert calls[0] == (None, True) and calls[1] == (None, False)
    assert calls[2][0].shape == (B, 1, TK, TK) and calls[2][0].dtype == torch.float32 and calls[2][1] is False


# ----------------------------------------------------------------------------- cross-attention
def test_cross_attention_with_memory_padding_matches_torch_multiheadattention():
    fast, slow = pair(causal=False, cross=True)
    theirs = torch_mha(fast)
    x = torch.randn(B, TQ, C, generator=gen(13))
    memory = torch.randn(B, TK, C, generator=gen(14))
    kpm = right_padding([7, 3], TK)
    with torch.no_grad():
        expected, _ = theirs(x, memory, memory, key_padding_mask=kpm, need_weights=False)
        assert fast(x, memory=memory, key_padding_mask=kpm).shape == (B, TQ, C)
        torch.testing.assert_close(fast(x, memory=memory, key_padding_mask=kpm), expected, **TOL)
        torch.testing.assert_close(slow(x, memory=memory, key_padding_mask=kpm), expected, **TOL)
        unpadded, _ = theirs(x, memory, memory, need_weights=False)
        torch.testing.assert_close(fast(x, memory=memory), unpadded, **TOL)
        assert not torch.allclose(unpadded[1], expected[1], **TOL)


def test_cross_attention_has_its_own_projections():
    m = A.MultiHeadAttention(C, H, causal=False, cross=True)
    assert {n: tuple(p.shape) for n, p in m.named_parameters()} == {
        "q_proj.weight": (C, C), "q_proj.bias": (C,), "kv_proj.weight": (2 * C, C), "kv_proj.bias": (2 * C,),
        "c_proj.weight": (C, C), "c_proj.bias": (C,)}


def test_cross_attention_cache_projects_the_memory_once_and_equals_no_cache():
    fast, slow = pair(causal=False, cross=True)
    x = torch.randn(B, TQ, C, generator=gen(15))
    memory = torch.randn(B, TK, C, generator=gen(16))
    kpm = right_padding([7, 5], TK)
    for m in (fast, slow):
        calls = []
        handle = m.kv_proj.register_forward_hook(lambda mod, inp, out: calls.append(1))
        with torch.no_grad():
            full = m(x, memory=memory, key_padding_mask=kpm)
            assert len(calls) == 1
            cache = A.KVCache()
            steps = [m(x[:, :2], cache=cache, memory=memory, key_padding_mask=kpm)]
            for t in range(2, TQ):  # later steps need no memory at all: it is in the cache
                steps.append(m(x[:, t : t + 1], cache=cache, key_padding_mask=kpm))
        handle.remove()
        assert len(calls) == 2  # once for `full`, once for the cached run
        assert cache.cross[0][0].shape == (B, H, TK, D) and cache.k == []
        torch.testing.assert_close(torch.cat(steps, dim=1), full, **TOL)


def test_self_attention_cache_with_key_padding_equals_full_recompute():
    fast, slow = pair(causal=True)
    x = torch.randn(B, TK, C, generator=gen(17))
    kpm = right_padding([7, 5], TK)  # padding covers past and new keys
    with torch.no_grad():
        for m in (fast, slow):
            full = m(x, key_padding_mask=kpm)
            cache = A.KVCache()
            steps = [m(x[:, :3], cache=cache, key_padding_mask=kpm[:, :3])]
            cache.length = 3
            for t in range(3, TK):
                steps.append(m(x[:, t : t + 1], cache=cache, key_padding_mask=kpm[:, : t + 1]))
                cache.length += 1
            torch.testing.assert_close(torch.cat(steps, dim=1), full, **TOL)


# ----------------------------------------------------------------------------- errors name the parameter
def test_bad_masks_and_memories_get_errors_naming_the_parameter():
    m, cross = A.MultiHeadAttention(C, H), A.MultiHeadAttention(C, H, causal=False, cross=True)
    x, memory = torch.randn(B, TQ, C), torch.randn(B, TK, C)
    with pytest.raises(ValueError, match=r"key_padding_mask: .*\(2, 5\).*True = padding.*\(2, 7\)"):
        m(x, key_padding_mask=torch.zeros(B, TK, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"key_padding_mask: .*torch.int64"):
        m(x, key_padding_mask=torch.zeros(B, TQ, dtype=torch.long))
    with pytest.raises(ValueError, match=r"attn_mask: .*broadcastable to \(2, 4, 5, 5\).*torch.float32"):
        m(x, attn_mask=torch.zeros(TQ, TQ))
    with pytest.raises(ValueError, match=r"attn_mask: .*\(3, 5, 5\)"):
        m(x, attn_mask=torch.ones(3, TQ, TQ, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"memory: this is self-attention"):
        m(x, memory=memory)
    with pytest.raises(ValueError, match=r"memory: cross-attention expected shape \(B, Tk, C\) = \(2, Tk, 24\), got None"):
        cross(x)
    with pytest.raises(ValueError, match=r"memory: .*got shape \(3, 7, 24\)"):
        cross(x, memory=torch.randn(3, TK, C))
    with pytest.raises(ValueError, match=r"positions: cross-attention takes none"):
        cross(x, make_positional("rope", block_size=8, n_embd=C, n_head=H), memory=memory)
    with pytest.raises(ValueError, match=r"causal=True with cross=True"):
        A.MultiHeadAttention(C, H, cross=True)
    with pytest.raises(ValueError, match=r"x: expected shape \(B, T, C\).*got shape \(5, 24\)"):
        m(torch.randn(TQ, C))
