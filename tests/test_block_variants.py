"""One Block class for GPT's block, an encoder block and a decoder block with cross-attention,
and the MLP's activations, against independent oracles: torch.nn.TransformerEncoderLayer and
TransformerDecoderLayer with copied weights (pre-LN and post-LN), F.gelu(approximate="tanh"),
a hand-written SwiGLU, and transformers' LlamaMLP where transformers is installed.

Every dimension differs (B=2, Tq=5, Tk=7, C=24, H=4), norm weights are away from 1 and biases
away from 0, so a swapped axis, norm or bias cannot pass. Tolerance: float32 on O(1) values
through about a dozen matmuls and norms, where correct implementations differ by ~1e-6;
1e-5 absolute and relative leaves a 10x margin and any real mistake is off by > 1e-2.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from llmlab.models.gpt import GPTConfig
from llmlab.nn.attention import KVCache, causal_mask
from llmlab.nn.block import Block
from llmlab.nn.mlp import ACTIVATIONS, MLP, swiglu_hidden
from llmlab.nn.norms import LayerNorm, RMSNorm, make_norm

TOL = dict(atol=1e-5, rtol=1e-5)  # see the module docstring
B, TQ, TK, C, H = 2, 5, 7, 24, 4


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def cfg(**kw) -> GPTConfig:
    return GPTConfig(**{**dict(vocab_size=37, block_size=16, n_layer=2, n_head=H, n_embd=C), **kw})


def randomize(m: nn.Module, seed: int) -> nn.Module:
    """Every parameter away from its default: norm weights ~1 +- 0.3, biases ~ +-0.3, matrices ~ 1/sqrt(fan_in)."""
    g = gen(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) * p.size(1) ** -0.5)
            else:
                p.copy_((1.0 if name.endswith("weight") and "ln" in name else 0.0) + 0.3 * torch.randn(p.shape, generator=g))
    return m.eval()


def right_padding(lengths, T):
    return torch.arange(T)[None, :] >= torch.tensor(lengths)[:, None]  # (B, T), True = padding


def copy_attention(theirs: nn.MultiheadAttention, ours) -> None:
    w = torch.cat([ours.q_proj.weight, ours.kv_proj.weight]) if ours.cross else ours.c_attn.weight
    b = torch.cat([ours.q_proj.bias, ours.kv_proj.bias]) if ours.cross else ours.c_attn.bias
    theirs.in_proj_weight.copy_(w)
    theirs.in_proj_bias.copy_(b)
    theirs.out_proj.weight.copy_(ours.c_proj.weight)
    theirs.out_proj.bias.copy_(ours.c_proj.bias)


def copy_linear_norm(theirs: nn.Module, ours: nn.Module) -> None:
    theirs.weight.copy_(ours.weight)
    theirs.bias.copy_(ours.bias)


# ----------------------------------------------------------------------------- GPT's block is unchanged
def test_gpt_block_keeps_its_state_dict_names():
    assert list(Block(cfg()).state_dict()) == [
        "ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight", "attn.c_proj.bias",
        "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"]


def test_any_config_object_will_do_and_keywords_override_it():
    ref = randomize(Block(cfg()), 1)
    plain = Block(SimpleNamespace(n_embd=C, n_head=H)).eval()  # everything else: GPT-2's defaults
    plain.load_state_dict(ref.state_dict())
    x = torch.randn(B, TQ, C, generator=gen(2))
    with torch.no_grad():
        torch.testing.assert_close(plain(x), ref(x), **TOL)
    enc = Block(SimpleNamespace(n_embd=C, n_head=H, causal=False, norm="rmsnorm", bias=False))
    assert enc.attn.causal is False and isinstance(enc.ln_1, RMSNorm) and enc.attn.c_attn.bias is None
    assert Block(SimpleNamespace(n_embd=C, n_head=H, causal=False), causal=True).attn.causal is True
    dec = Block(cfg(), cross=True, activation="swiglu", mlp_hidden=40, prenorm=False, layer_idx=3)
    assert dec.cross_attn is not None and dec.mlp.gate_proj.out_features == 40 and dec.prenorm is False
    assert dec.attn.layer_idx == dec.cross_attn.layer_idx == 3


# ----------------------------------------------------------------------------- encoder and decoder against PyTorch's layers
@pytest.mark.parametrize("prenorm", [True, False])
def test_encoder_block_with_padding_matches_torch_transformer_encoder_layer(prenorm):
    ours = randomize(Block(cfg(), causal=False, prenorm=prenorm), 3)
    theirs = nn.TransformerEncoderLayer(C, H, dim_feedforward=4 * C, dropout=0.0, activation="gelu", batch_first=True, norm_first=prenorm).eval()
    with torch.no_grad():
        copy_attention(theirs.self_attn, ours.attn)
        copy_linear_norm(theirs.linear1, ours.mlp.c_fc)
        copy_linear_norm(theirs.linear2, ours.mlp.c_proj)
        copy_linear_norm(theirs.norm1, ours.ln_1)
        copy_linear_norm(theirs.norm2, ours.ln_2)
    x = torch.randn(B, TK, C, generator=gen(4))
    kpm = right_padding([7, 4], TK)
    with torch.enable_grad():  # keeps PyTorch on its plain (not fused, not nested) path
        expected = theirs(x, src_key_padding_mask=kpm).detach()
    with torch.no_grad():
        torch.testing.assert_close(ours(x, key_padding_mask=kpm), expected, **TOL)
        assert not torch.allclose(ours(x)[1], expected[1], **TOL)  # padding matters in row 1


@pytest.mark.parametrize("prenorm", [True, False])
def test_decoder_block_with_cross_attention_matches_torch_transformer_decoder_layer(prenorm):
    ours = randomize(Block(cfg(), cross=True, prenorm=prenorm), 5)
    theirs = nn.TransformerDecoderLayer(C, H, dim_feedforward=4 * C, dropout=0.0, activation="gelu", batch_first=True, norm_first=prenorm).eval()
    with torch.no_grad():
        copy_attention(theirs.self_attn, ours.attn)
        copy_attention(theirs.multihead_attn, ours.cross_attn)
        copy_linear_norm(theirs.linear1, ours.mlp.c_fc)
        copy_linear_norm(theirs.linear2, ours.mlp.c_proj)
        for t, o in ((theirs.norm1, ours.ln_1), (theirs.norm2, ours.ln_cross), (theirs.norm3, ours.ln_2)):
            copy_linear_norm(t, o)
    x, memory = torch.randn(B, TQ, C, generator=gen(6)), torch.randn(B, TK, C, generator=gen(7))
    mkpm = right_padding([7, 3], TK)
    with torch.no_grad():
        expected = theirs(x, memory, tgt_mask=~causal_mask(TQ), memory_key_padding_mask=mkpm)
        torch.testing.assert_close(ours(x, memory=memory, memory_key_padding_mask=mkpm), expected, **TOL)


def test_decoder_block_cache_steps_equal_the_full_run():
    ours = randomize(Block(cfg(), cross=True), 8)
    x, memory = torch.randn(B, TQ, C, generator=gen(9)), torch.randn(B, TK, C, generator=gen(10))
    mkpm = right_padding([6, 7], TK)
    with torch.no_grad():
        full = ours(x, memory=memory, memory_key_padding_mask=mkpm)
        cache = KVCache()
        steps = [ours(x[:, :2], cache=cache, memory=memory, memory_key_padding_mask=mkpm)]
        cache.length = 2
        for t in range(2, TQ):
            steps.append(ours(x[:, t : t + 1], cache=cache, memory_key_padding_mask=mkpm))
            cache.length += 1
    assert cache.k[0].shape == (B, H, TQ, C // H) and cache.cross[0][0].shape == (B, H, TK, C // H)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, **TOL)


def test_blocks_reject_a_memory_they_cannot_use():
    x, memory = torch.randn(B, TQ, C), torch.randn(B, TK, C)
    with pytest.raises(ValueError, match=r"memory: this block has no cross-attention.*cross=True"):
        Block(cfg())(x, memory=memory)
    with pytest.raises(ValueError, match=r"memory: cross-attention expected shape"):
        Block(cfg(), cross=True)(x)


# ----------------------------------------------------------------------------- the MLP's activations
def linear(x, lin):
    return x @ lin.weight.T + lin.bias  # (.., in) @ (in, out) -> (.., out)


@pytest.mark.parametrize("activation, gelu", [("gelu", lambda h: F.gelu(h)), ("gelu_tanh", lambda h: F.gelu(h, approximate="tanh"))])
def test_gelu_mlps_match_a_hand_written_oracle(activation, gelu):
    mlp = MLP(C, activation=activation).eval()
    x = torch.randn(B, TQ, C, generator=gen(11)) * 2
    with torch.no_grad():
        torch.testing.assert_close(mlp(x), linear(gelu(linear(x, mlp.c_fc)), mlp.c_proj), **TOL)


def test_gelu_tanh_is_gpt2s_formula_and_differs_from_exact_gelu():
    h = torch.linspace(-4, 4, 101)
    gpt2 = 0.5 * h * (1 + torch.tanh((2 / torch.pi) ** 0.5 * (h + 0.044715 * h**3)))  # GPT-2's gelu, written out
    torch.testing.assert_close(MLP(C, activation="gelu_tanh").gelu(h), gpt2, **TOL)
    a, b = MLP(C), MLP(C, activation="gelu_tanh")
    b.load_state_dict(a.state_dict())
    x = torch.randn(B, TQ, C, generator=gen(12)) * 3
    with torch.no_grad():
        assert (a(x) - b(x)).abs().max() > 1e-4  # the choice is live


def test_swiglu_matches_a_hand_written_oracle_and_llamas_names():
    mlp = randomize(MLP(C, activation="swiglu"), 13)
    assert {n: tuple(p.shape) for n, p in mlp.named_parameters()} == {
        "gate_proj.weight": (64, C), "gate_proj.bias": (64,), "up_proj.weight": (64, C), "up_proj.bias": (64,),
        "down_proj.weight": (C, 64), "down_proj.bias": (C,)}  # 8/3 * 24 = 64
    x = torch.randn(B, TQ, C, generator=gen(14))
    g = linear(x, mlp.gate_proj)
    expected = linear(g * torch.sigmoid(g) * linear(x, mlp.up_proj), mlp.down_proj)  # down(silu(gate) * up)
    with torch.no_grad():
        torch.testing.assert_close(mlp(x), expected, **TOL)


def test_swiglu_hidden_width_follows_llama():
    assert swiglu_hidden(4096, multiple_of=256) == 11008  # Llama 7B
    assert swiglu_hidden(128) == 344  # 8/3 * 128 = 341.3, up to a multiple of 8
    assert MLP(C, activation="swiglu", hidden=40).up_proj.out_features == 40
    assert MLP(C, hidden=50).c_fc.out_features == 50 and MLP(C).c_fc.out_features == 4 * C


def test_swiglu_matches_transformers_llama_mlp():
    reason = "transformers is not installed: the LlamaMLP comparison needs it (the hand-written oracle above still runs)"
    transformers = pytest.importorskip("transformers", reason=reason)
    from transformers.models.llama.modeling_llama import LlamaMLP

    ours = randomize(MLP(C, bias=False, activation="swiglu", hidden=40), 15)
    theirs = LlamaMLP(transformers.LlamaConfig(hidden_size=C, intermediate_size=40, num_attention_heads=4, hidden_act="silu", mlp_bias=False)).eval()
    theirs.load_state_dict(ours.state_dict())  # the same names: gate_proj, up_proj, down_proj
    x = torch.randn(B, TQ, C, generator=gen(16))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), **TOL)


def test_mlp_and_norm_errors_name_the_parameter():
    with pytest.raises(ValueError, match=r"activation='relu': expected one of gelu, gelu_tanh, swiglu"):
        MLP(C, activation="relu")
    with pytest.raises(ValueError, match=r"hidden=0: expected a positive integer"):
        MLP(C, hidden=0)
    with pytest.raises(ValueError, match=r"norm='batchnorm': expected one of layernorm, rmsnorm"):
        make_norm(SimpleNamespace(n_embd=C, norm="batchnorm"))
    assert isinstance(make_norm(SimpleNamespace(n_embd=C)), LayerNorm) and ACTIVATIONS[0] == "gelu"
