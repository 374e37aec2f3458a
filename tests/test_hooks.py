"""Hook points (llmlab.nn.hooks) on a GPT: caching reproduces the forward (ln_f and lm_head on
the last residual stream give the logits; each stream is the previous one plus its branch),
patching a run into itself changes nothing, patching another run's activation changes exactly
what depends on it, zeroing a head changes the attention output by that head's share only,
only a requested pattern leaves the fast path, and bad names get an error listing valid ones.

Sizes differ everywhere (B=2, T=7, V=37, L=3, H=4, C=24, D=6). Where two computations are the
same operations on the same tensors the test asks for bitwise equality (torch.equal); where the
slow and fast attention paths meet, float32 tolerance 1e-5 (as tests/test_attention.py).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from llmlab.models.gpt import GPT, GPTConfig
from llmlab.nn.block import Block
from llmlab.nn.hooks import hook_points, patch, run_with_cache, zero_head

TOL = dict(atol=1e-5, rtol=1e-5)
B, T, V, L, H, C = 2, 7, 37, 3, 4, 24
D = C // H
POINTS = ["resid_pre", "attn_out", "resid_mid", "mlp_out", "resid_post", "attn.pattern", "attn.head_out"]


def gpt() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=V, block_size=16, n_layer=L, n_head=H, n_embd=C)).eval()


def ids(seed: int) -> torch.Tensor:
    return torch.randint(V, (B, T), generator=torch.Generator().manual_seed(seed))


def all_hooks_empty(model) -> bool:
    return all(not m.hooks for m in model.modules() if hasattr(m, "hooks"))


def test_hook_point_names_follow_transformerlens():
    names = list(hook_points(gpt()))
    assert names == [f"blocks.{i}.{p}" for i in range(L) for p in POINTS]


def test_the_cached_residual_stream_reproduces_the_forward():
    model, idx = gpt(), ids(1)
    with torch.no_grad():
        plain, _ = model(idx)
        logits, acts = run_with_cache(model, idx)  # every point, patterns included (slow path)
        last = model.lm_head(model.transformer.ln_f(acts[f"blocks.{L - 1}.resid_post"]))
    assert set(acts) == set(hook_points(model))
    assert torch.equal(last, logits)  # ln_f + lm_head on the last stream are the logits
    torch.testing.assert_close(logits, plain, **TOL)
    for i in range(L):
        a = {p: acts[f"blocks.{i}.{p}"] for p in POINTS}
        assert a["resid_pre"].shape == (B, T, C) and a["attn.pattern"].shape == (B, H, T, T) and a["attn.head_out"].shape == (B, T, H, D)
        assert torch.equal(a["resid_mid"], a["resid_pre"] + a["attn_out"])
        assert torch.equal(a["resid_post"], a["resid_mid"] + a["mlp_out"])
        if i + 1 < L:
            assert acts[f"blocks.{i + 1}.resid_pre"] is a["resid_post"]
        attn = model.transformer.h[i].attn
        assert torch.equal(attn.c_proj(a["attn.head_out"].reshape(B, T, C)), a["attn_out"])  # heads side by side, then mixed
        torch.testing.assert_close(a["attn.pattern"].sum(-1), torch.ones(B, H, T), **TOL)
        assert (a["attn.pattern"].triu(1) == 0).all()
    assert all_hooks_empty(model)


def test_only_a_requested_pattern_leaves_the_fast_path(monkeypatch):
    model, idx = gpt(), ids(2)
    fused = []
    real = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **kw: fused.append(1) or real(*a, **kw))
    with torch.no_grad():
        plain, _ = model(idx)
        assert len(fused) == L
        cheap = [n for n in hook_points(model) if not n.endswith("pattern")]
        logits, acts = run_with_cache(model, idx, cheap)
        assert len(fused) == 2 * L and len(acts) == len(cheap)
        assert torch.equal(logits, plain)  # identity hooks on the fast path: bitwise the same
        run_with_cache(model, idx, ["blocks.1.attn.pattern"])
        assert len(fused) == 3 * L - 1  # block 1 wrote its weights out; the others stayed fused
    assert all_hooks_empty(model)


@pytest.mark.parametrize("name", ["blocks.1.resid_pre", "blocks.0.attn.head_out", "blocks.2.mlp_out", "blocks.1.attn.pattern"])
def test_patching_a_run_into_itself_changes_nothing(name):
    model, idx = gpt(), ids(3)
    with torch.no_grad():
        logits, acts = run_with_cache(model, idx, [name])
        with patch(model, {name: acts[name]}):
            patched, _ = model(idx)
    assert torch.equal(patched, logits)
    assert all_hooks_empty(model)


def test_patching_another_runs_activation_changes_what_depends_on_it():
    model, a, b = gpt(), ids(4), ids(5)
    with torch.no_grad():
        logits_a, _ = model(a)
        logits_b, acts_b = run_with_cache(model, b, ["blocks.1.resid_pre"])
        stream_b = acts_b["blocks.1.resid_pre"]
        with patch(model, {"blocks.1.resid_pre": stream_b}):  # everything after block 0 sees run b
            whole, _ = model(a)
        with patch(model, {"blocks.1.resid_pre": lambda s: torch.cat([s[:, :4], stream_b[:, 4:5], s[:, 5:]], dim=1)}):
            one, _ = model(a)  # only position 4 swapped
    assert torch.equal(whole, logits_b) and not torch.allclose(whole, logits_a, **TOL)
    assert torch.equal(one[:, :4], logits_a[:, :4])  # earlier positions cannot see position 4 (causal)
    assert not torch.allclose(one[:, 4], logits_a[:, 4], **TOL)


def test_zeroing_a_head_changes_the_attention_output_by_that_heads_share_only():
    model, idx, h = gpt(), ids(6), 2
    names = ["blocks.0.resid_post", "blocks.1.attn.head_out", "blocks.1.attn_out"]
    with torch.no_grad():
        logits, clean = run_with_cache(model, idx, names)
        with patch(model, {"blocks.1.attn.head_out": zero_head(h)}):
            ablated_logits, abl = run_with_cache(model, idx, names)  # a cache inside a patch sees the patched value
    heads, heads_abl = clean["blocks.1.attn.head_out"], abl["blocks.1.attn.head_out"]
    assert torch.equal(abl["blocks.0.resid_post"], clean["blocks.0.resid_post"])  # upstream untouched
    assert (heads_abl[:, :, h] == 0).all()
    others = [i for i in range(H) if i != h]
    assert torch.equal(heads_abl[:, :, others], heads[:, :, others])
    w_h = model.transformer.h[1].attn.c_proj.weight[:, h * D : (h + 1) * D]  # (C, D): head h's columns of c_proj
    share = heads[:, :, h] @ w_h.T  # (B, T, D) @ (D, C) -> (B, T, C)
    torch.testing.assert_close(clean["blocks.1.attn_out"] - abl["blocks.1.attn_out"], share, **TOL)
    assert share.abs().max() > 1e-3 and not torch.allclose(ablated_logits, logits, **TOL)


def test_bad_names_and_replacements_get_clear_errors_and_leave_no_hooks_behind():
    model, idx = gpt(), ids(7)
    with pytest.raises(ValueError, match=r"names: unknown hook point\(s\) 'blocks.9.resid_pre'; valid names: blocks.0.resid_pre, blocks.0.attn_out"):
        run_with_cache(model, idx, ["blocks.0.resid_pre", "blocks.9.resid_pre"])
    with pytest.raises(ValueError, match=r"replacements: unknown hook point\(s\) 'blocks.0.attn.scores'"):
        with patch(model, {"blocks.0.attn.scores": torch.zeros(1)}):
            pass
    shape_error = r"replacements\['blocks.0.resid_pre'\]: expected a tensor of the activation's shape \(2, 7, 24\), got shape \(2, 6, 24\)"
    with pytest.raises(ValueError, match=shape_error):
        with patch(model, {"blocks.0.resid_pre": torch.zeros(B, T - 1, C)}):
            model(idx)
    with pytest.raises(ValueError, match=r"head=4: expected 0 <= head < H=4"):
        with patch(model, {"blocks.0.attn.head_out": zero_head(4)}):
            model(idx)
    assert all_hooks_empty(model)


def test_a_decoder_block_offers_its_cross_attention_points():
    torch.manual_seed(0)
    block = Block(GPTConfig(vocab_size=V, block_size=16, n_layer=1, n_head=H, n_embd=C), cross=True).eval()
    assert list(hook_points(block)) == ["resid_pre", "attn_out", "cross_out", "resid_mid", "mlp_out", "resid_post",
                                        "attn.pattern", "attn.head_out", "cross_attn.pattern", "cross_attn.head_out"]
    x, memory = torch.randn(B, 5, C), torch.randn(B, T, C)
    with torch.no_grad():
        out, acts = run_with_cache(block, x, ["cross_attn.pattern", "cross_out", "resid_mid", "attn_out", "resid_pre"], memory=memory)
    assert acts["cross_attn.pattern"].shape == (B, H, 5, T)
    torch.testing.assert_close(acts["cross_attn.pattern"].sum(-1), torch.ones(B, H, 5), **TOL)
    assert torch.equal(acts["resid_mid"], acts["resid_pre"] + acts["attn_out"] + acts["cross_out"])
