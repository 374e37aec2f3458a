"""Grouped-query attention and RoPE's two layouts, against independent oracles: full multi-head
attention whose key/value heads are repeated by hand, the pre-GQA attention written out, and
Hugging Face Llama's rotary embedding.

Dimensions all differ (B=2, T=7, C=48, H=6, D=8, H_kv=2 or 3) so a swapped axis fails.
Tolerances: float32 on O(1) values through a few matmuls; two correct summation orders differ by
~1e-6 there, so 1e-5 leaves a 10x margin and every real bug (a wrong head, pair or angle) is off
by > 1e-2. Where the code runs the very same kernels on the very same numbers, the test says
torch.equal.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from llmlab.models.gguf import unpermute_rope_rows
from llmlab.models.gpt import GPT, GPTConfig
from llmlab.nn import attention as A
from llmlab.nn.positional import RoPE, apply_rope, make_positional

TOL = dict(atol=1e-5, rtol=1e-5)  # see the module docstring
B, T, C, H, D = 2, 7, 48, 6, 8


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def gqa_pair(n_kv: int, seed: int = 0, bias: bool = True) -> tuple[A.MultiHeadAttention, A.MultiHeadAttention]:
    """A GQA attention with n_kv key/value heads, and a full one (H heads) that repeats each of them
    by hand in its weights: kv head j's rows copied to query heads j * H/n_kv ... (j + 1) * H/n_kv - 1."""
    torch.manual_seed(seed)
    gqa, full = A.MultiHeadAttention(C, H, bias=bias, n_kv_heads=n_kv), A.MultiHeadAttention(C, H, bias=bias)
    rep = H // n_kv
    with torch.no_grad():
        for name in ("weight", "bias") if bias else ("weight",):
            w = getattr(gqa.c_attn, name)  # (C + 2 * n_kv * D, ...)
            q, k, v = w.split([C, n_kv * D, n_kv * D], dim=0)
            k, v = (a.unflatten(0, (n_kv, D)).repeat_interleave(rep, dim=0).flatten(0, 1) for a in (k, v))  # (H * D, ...)
            getattr(full.c_attn, name).copy_(torch.cat([q, k, v], dim=0))
        full.c_proj.load_state_dict(gqa.c_proj.state_dict())
    return gqa.eval(), full.eval()


# ----------------------------------------------------------------------------- GQA = repeated heads
@pytest.mark.parametrize("n_kv", [1, 2, 3])
@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("pos", [None, "rope", "alibi"])
def test_gqa_equals_full_attention_with_repeated_kv_heads(n_kv, fast, pos):
    gqa, full = gqa_pair(n_kv)
    gqa.fast = full.fast = fast
    positions = make_positional(pos, block_size=16, n_embd=C, n_head=H) if pos else None
    x = torch.randn(B, T, C, generator=gen(1))
    with torch.no_grad():
        torch.testing.assert_close(gqa(x, positions), full(x, positions), **TOL)


@pytest.mark.parametrize("fast", [True, False])
def test_gqa_with_masks_equals_full_attention(fast):
    gqa, full = gqa_pair(2, seed=3)
    gqa.fast = full.fast = fast
    x = torch.randn(B, T, C, generator=gen(4))
    pad = torch.zeros(B, T, dtype=torch.bool)
    pad[1, -3:] = True  # the second sequence ends in padding
    allowed = torch.rand(B, H, T, T, generator=gen(5)) > 0.3  # True = may attend, per head
    with torch.no_grad():
        torch.testing.assert_close(gqa(x, key_padding_mask=pad), full(x, key_padding_mask=pad), **TOL)
        torch.testing.assert_close(gqa(x, attn_mask=allowed), full(x, attn_mask=allowed), **TOL)


def test_gqa_cross_attention_equals_full_cross_attention():
    torch.manual_seed(6)
    gqa, full = A.MultiHeadAttention(C, H, causal=False, cross=True, n_kv_heads=3), A.MultiHeadAttention(C, H, causal=False, cross=True)
    with torch.no_grad():
        full.q_proj.load_state_dict(gqa.q_proj.state_dict())
        full.c_proj.load_state_dict(gqa.c_proj.state_dict())
        for name in ("weight", "bias"):
            k, v = getattr(gqa.kv_proj, name).chunk(2, dim=0)  # (3 * D, ...) each
            k, v = (a.unflatten(0, (3, D)).repeat_interleave(2, dim=0).flatten(0, 1) for a in (k, v))
            getattr(full.kv_proj, name).copy_(torch.cat([k, v], dim=0))
    x, memory = torch.randn(B, T, C, generator=gen(7)), torch.randn(B, 5, C, generator=gen(8))
    with torch.no_grad():
        torch.testing.assert_close(gqa(x, memory=memory), full(x, memory=memory), **TOL)


def test_sdpa_enable_gqa_equals_repeat_kv(monkeypatch):
    """The fast path lets SDPA share the key/value heads (enable_gqa); without it (old torch),
    repeat_kv copies them. The two must agree."""
    if not A.SDPA_GQA:
        pytest.skip("this torch's scaled_dot_product_attention has no enable_gqa")
    gqa, _ = gqa_pair(2, seed=9)
    x = torch.randn(B, T, C, generator=gen(10))
    rope = make_positional("rope", block_size=16, n_embd=C, n_head=H)
    with torch.no_grad():
        shared = gqa(x, rope)
        monkeypatch.setattr(A, "SDPA_GQA", False)
        copied = gqa(x, rope)
    torch.testing.assert_close(shared, copied, **TOL)


# ----------------------------------------------------------------------------- the KV cache keeps H_kv heads
@pytest.mark.parametrize("pos", ["rope", "alibi", "learned"])
def test_gqa_cache_holds_kv_heads_and_matches_the_full_forward(pos):
    torch.manual_seed(11)
    cfg = GPTConfig(vocab_size=29, block_size=16, n_layer=2, n_head=H, n_kv_head=2, n_embd=C, pos_encoding=pos)
    model = GPT(cfg).eval()
    idx = torch.randint(29, (B, 9), generator=gen(12))
    with torch.no_grad():
        full, _ = model(idx)
        cache = A.KVCache()
        steps = [model(idx[:, :5], cache=cache)[0]] + [model(idx[:, t : t + 1], cache=cache)[0] for t in range(5, 9)]
    assert all(k.shape == (B, 2, 9, D) for k in cache.k) and all(v.shape == (B, 2, 9, D) for v in cache.v)  # H_kv = 2 heads, not 6
    torch.testing.assert_close(torch.cat(steps, dim=1), full, **TOL)


def test_pattern_hook_sees_every_query_head_under_gqa():
    gqa, full = gqa_pair(3, seed=13)
    x = torch.randn(B, T, C, generator=gen(14))
    seen = {}
    gqa.hooks["pattern"] = lambda w: seen.setdefault("w", w)  # see llmlab.nn.hooks: read, pass on unchanged
    full.record_weights = True
    with torch.no_grad():
        y, y_full = gqa(x), full(x)
    assert seen["w"].shape == (B, H, T, T)
    torch.testing.assert_close(seen["w"], full.last_weights, **TOL)
    torch.testing.assert_close(y, y_full, **TOL)


# ----------------------------------------------------------------------------- n_kv_head = n_head is the old model
def pre_gqa_attention(m: A.MultiHeadAttention, x: torch.Tensor, positions) -> torch.Tensor:
    """MultiHeadAttention.forward as it was before grouped-query attention (no masks, fast path)."""
    B_, T_, C_ = x.shape
    q, k, v = rearrange(m.c_attn(x), "b t (three h d) -> three b h t d", three=3, h=m.n_heads)  # 3 x (B, H, T, D)
    q, k = positions.rotate(q, k, offset=0)
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, D)
    return m.c_proj(rearrange(y, "b h t d -> b t h d").reshape(B_, T_, C_))


@pytest.mark.parametrize("n_kv", [None, H])
def test_n_kv_heads_equal_to_n_heads_is_the_pre_gqa_attention_bit_for_bit(n_kv):
    torch.manual_seed(15)
    m = A.MultiHeadAttention(C, H, n_kv_heads=n_kv).eval()
    assert m.c_attn.weight.shape == (3 * C, C)  # GPT-2's fused q, k, v: checkpoints load unchanged
    x = torch.randn(B, T, C, generator=gen(16))
    rope = make_positional("rope", block_size=16, n_embd=C, n_head=H)
    with torch.no_grad():
        assert torch.equal(m(x, rope), pre_gqa_attention(m, x, rope))


def test_gpt_with_n_kv_head_equal_to_n_head_is_the_same_model_bit_for_bit():
    torch.manual_seed(17)
    kw = dict(vocab_size=31, block_size=12, n_layer=2, n_head=H, n_embd=C, pos_encoding="rope")
    old, same = GPT(GPTConfig(**kw)).eval(), GPT(GPTConfig(**kw, n_kv_head=H)).eval()
    assert {k: v.shape for k, v in old.state_dict().items()} == {k: v.shape for k, v in same.state_dict().items()}
    same.load_state_dict(old.state_dict())
    idx = torch.randint(31, (B, 10), generator=gen(18))
    with torch.no_grad():
        assert torch.equal(old(idx)[0], same(idx)[0])


# ----------------------------------------------------------------------------- bad settings
@pytest.mark.parametrize("bad", [4, 0, -2, True, 2.0, 12])
def test_bad_n_kv_head_is_refused_with_its_value(bad):
    with pytest.raises(ValueError, match=rf"n_kv_head={bad!r}.*divisor of n_head=6"):
        GPTConfig(n_head=6, n_embd=48, n_kv_head=bad)
    with pytest.raises(ValueError, match=rf"n_kv_heads={bad!r}.*divisor of n_heads=6"):
        A.MultiHeadAttention(48, 6, n_kv_heads=bad)


def test_bad_rope_layout_and_norm_eps_are_refused():
    with pytest.raises(ValueError, match="rope_layout='halves'.*interleaved, half"):
        GPTConfig(rope_layout="halves")
    with pytest.raises(ValueError, match="layout='neox'"):
        RoPE(layout="neox")
    with pytest.raises(ValueError, match="norm_eps=0"):
        GPTConfig(norm_eps=0)


# ----------------------------------------------------------------------------- RoPE "half" = Hugging Face's
def hf_rotary(q, k, base: float, offset: int):
    transformers = pytest.importorskip("transformers", reason="transformers is not installed: no Hugging Face RoPE to compare with")
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

    cfg = transformers.LlamaConfig(hidden_size=q.size(1) * q.size(-1), num_attention_heads=q.size(1), num_key_value_heads=k.size(1),
                                   head_dim=q.size(-1), max_position_embeddings=64, rope_parameters={"rope_type": "default", "rope_theta": base})
    position_ids = torch.arange(offset, offset + q.size(-2))[None]  # (1, T)
    cos, sin = LlamaRotaryEmbedding(cfg)(q, position_ids)  # (1, T, D) each
    return apply_rotary_pos_emb(q, k, cos, sin)


@pytest.mark.parametrize("base, offset", [(10000.0, 0), (100000.0, 0), (100000.0, 29)])
def test_rope_half_layout_equals_transformers_llama_rotary(base, offset):
    """4e-6: HF computes the frequencies as 1 / base^(2i/D), the course as base^(-2i/D); they differ
    by an ulp (1.5e-8) in a third of the entries, so angles at position p < 40 differ by < 6e-7,
    which moves values up to ~6 by < 4e-6 (measured: 1e-6). A wrong pairing or angle is off by > 1e-1."""
    q, k = torch.randn(B, H, T, D, generator=gen(19)) * 2, torch.randn(B, 2, T, D, generator=gen(20)) * 2
    hq, hk = hf_rotary(q, k, base, offset)
    rope = RoPE(base, block_size=64, head_dim=D, layout="half")
    rq, rk = rope.rotate(q, k, offset=offset)  # the model's table path, GQA shapes
    for got, want in ((rq, hq), (rk, hk), (apply_rope(q, base, offset, layout="half"), hq), (apply_rope(k, base, offset, layout="half"), hk)):
        torch.testing.assert_close(got, want, atol=4e-6, rtol=0)
    # and the course's own layout is not HF's: the test can tell them apart
    assert (apply_rope(q, base, offset) - hq).abs().max() > 1e-1


def llama_cpp_permute(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """What llama.cpp's converter does to HF's q/k rows (convert_hf_to_gguf.py, LlamaModel.permute)."""
    rows, C_ = w.shape
    return w.reshape(n_heads, 2, rows // n_heads // 2, C_).transpose(1, 2).reshape(rows, C_)


def test_gguf_rows_with_interleaved_rope_are_the_same_model_as_hf_rows_with_half_rope():
    """The two honest ways to load a GGUF Llama: rows as the file stores them and the interleaved
    RoPE (llama.cpp), or un-permuted rows and rotate_half (Hugging Face). Same outputs."""
    torch.manual_seed(21)
    hf_rows = A.MultiHeadAttention(C, H, bias=False, n_kv_heads=3).eval()  # HF's layout
    q, k, v = hf_rows.c_attn.weight.detach().split([C, 3 * D, 3 * D])
    assert torch.equal(unpermute_rope_rows(llama_cpp_permute(q, H), H), q)
    gguf_rows = A.MultiHeadAttention(C, H, bias=False, n_kv_heads=3).eval()
    with torch.no_grad():
        gguf_rows.c_attn.weight.copy_(torch.cat([llama_cpp_permute(q, H), llama_cpp_permute(k, 3), v]))
        gguf_rows.c_proj.load_state_dict(hf_rows.c_proj.state_dict())
    x = torch.randn(B, T, C, generator=gen(22))
    half = make_positional("rope", block_size=16, n_embd=C, n_head=H, layout="half")
    interleaved = make_positional("rope", block_size=16, n_embd=C, n_head=H, layout="interleaved")
    with torch.no_grad():
        torch.testing.assert_close(gguf_rows(x, interleaved), hf_rows(x, half), **TOL)
        assert (gguf_rows(x, half) - hf_rows(x, half)).abs().max() > 1e-3  # the layout must match the rows
