"""llmlab.models.gpt: the config's validation, the norms against independent oracles, parameter
counts (closed form == the built model), weight tying, the loss at initialisation,
overfitting one batch, causality of the whole model, pre-LN and post-LN, shape errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from llmlab.models.gpt import GPT, GPTConfig, count_parameters, parameter_breakdown
from llmlab.nn.block import Block
from llmlab.nn.mlp import MLP
from llmlab.nn.norms import LayerNorm, RMSNorm, layer_norm, rms_norm


def tiny(**kw) -> GPTConfig:
    # every size different (V=37, T=16, L=2, H=3, C=24) so a swapped dimension shows
    base = dict(vocab_size=37, block_size=16, n_layer=2, n_head=3, n_embd=24)
    return GPTConfig(**{**base, **kw})


# ----------------------------------------------------------------------------- GPTConfig
def test_config_rejects_n_embd_not_divisible_by_n_head_naming_both():
    with pytest.raises(ValueError) as info:
        GPTConfig(n_embd=100, n_head=12)
    msg = str(info.value)
    assert "n_embd=100" in msg and "n_head=12" in msg


@pytest.mark.parametrize("field, value", [("n_layer", 0), ("vocab_size", -3), ("block_size", 2.5), ("n_head", True)])
def test_config_rejects_non_positive_integers_naming_field_and_value(field, value):
    with pytest.raises(ValueError, match=f"{field}={value!r}"):
        GPTConfig(**{field: value})


@pytest.mark.parametrize("field, value", [("norm", "batchnorm"), ("pos_encoding", "absolute"), ("dropout", 1.0)])
def test_config_rejects_unknown_choices_naming_value(field, value):
    with pytest.raises(ValueError, match=f"{field}={value!r}"):
        GPTConfig(**{field: value})


def test_from_dict_rejects_unknown_keys_and_names_them():
    with pytest.raises(ValueError) as info:
        GPTConfig.from_dict({"n_layer": 2, "n_layers": 4, "d_model": 64})
    msg = str(info.value)
    assert "n_layers" in msg and "d_model" in msg and "n_layer" in msg  # the unknown ones, and what is allowed


def test_from_dict_round_trips():
    cfg = tiny(dropout=0.1, prenorm=False, norm="rmsnorm")
    assert GPTConfig.from_dict(cfg.to_dict()) == cfg


# ----------------------------------------------------------------------------- norms
def test_layer_norm_matches_torch():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, generator=g) * 4 + 2
    w, b = torch.randn(5, generator=g), torch.randn(5, generator=g)
    for eps in (1e-5, 0.1):  # 0.1: makes eps's place (inside the root) matter
        # float32 after ~6 operations on O(1) values: rounding ~1e-6
        torch.testing.assert_close(layer_norm(x, w, b, eps), F.layer_norm(x, (5,), w, b, eps), atol=1e-5, rtol=1e-5)


def test_layer_norm_without_affine_is_standardised():
    x = torch.randn(4, 7, generator=torch.Generator().manual_seed(1)) * 3 - 1
    y = layer_norm(x, None, None, eps=0.0)
    torch.testing.assert_close(y.mean(-1), torch.zeros(4), atol=1e-6, rtol=0)
    torch.testing.assert_close(y.var(-1, unbiased=False), torch.ones(4), atol=1e-5, rtol=0)


def test_layernorm_module_equals_layer_norm_function():
    g = torch.Generator().manual_seed(2)
    ln = LayerNorm(6)
    with torch.no_grad():
        ln.weight.copy_(torch.randn(6, generator=g))
        ln.bias.copy_(torch.randn(6, generator=g))
    x = torch.randn(3, 4, 6, generator=g)
    torch.testing.assert_close(ln(x), layer_norm(x, ln.weight, ln.bias, ln.eps), atol=1e-5, rtol=1e-5)  # fused vs step by step


def test_layernorm_without_bias():
    ln = LayerNorm(6, bias=False)
    assert ln.bias is None and [n for n, _ in ln.named_parameters()] == ["weight"]
    x = torch.randn(2, 6, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(ln(x), layer_norm(x, ln.weight, None), atol=1e-5, rtol=1e-5)


def test_rmsnorm_matches_closed_form():
    g = torch.Generator().manual_seed(4)
    rms = RMSNorm(5, eps=0.1)
    with torch.no_grad():
        rms.weight.copy_(torch.randn(5, generator=g))
    x = torch.randn(2, 3, 5, generator=g) + 1.5  # non-zero mean: RMSNorm must not centre
    expected = x / torch.sqrt((x**2).sum(-1, keepdim=True) / 5 + 0.1) * rms.weight
    torch.testing.assert_close(rms(x), expected, atol=1e-6, rtol=1e-5)


def test_rmsnorm_module_fused_equals_rms_norm_function_and_transformers_llama():
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    g = torch.Generator().manual_seed(5)
    rms, theirs = RMSNorm(64, eps=1e-5), LlamaRMSNorm(64, eps=1e-5)
    with torch.no_grad():
        rms.weight.copy_(torch.randn(64, generator=g))
        theirs.weight.copy_(rms.weight)
    x = torch.randn(3, 7, 64, generator=g) * 5 + 1
    # the fused kernel (F.rms_norm) against the six operations written out: float32 rounding of O(1)
    # outputs, ~1e-7 each; 2e-6 allows a few ulps
    torch.testing.assert_close(rms(x), rms_norm(x, rms.weight, rms.eps), atol=2e-6, rtol=2e-6)
    torch.testing.assert_close(rms(x), theirs(x), atol=2e-6, rtol=2e-6)
    torch.testing.assert_close(rms_norm(x, None, 0.0).pow(2).mean(-1), torch.ones(3, 7), atol=1e-5, rtol=0)  # unit RMS


# ----------------------------------------------------------------------------- parameter counts
def test_gpt2_small_count_closed_form_and_built_model_on_meta():
    assert count_parameters(50257, 1024, 12, 768) == 124_439_808
    with torch.device("meta"):  # shapes without storage: no 500 MB allocation
        model = GPT(GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768))
    assert model.transformer.wte.weight.is_meta
    assert model.num_parameters() == 124_439_808


def test_gpt3_175b_count_from_its_published_configuration():
    # Brown et al. 2020, Table 2.1: n_layers=96, d_model=12288, n_ctx=2048; GPT-2's vocabulary of 50257
    n = count_parameters(vocab_size=50257, block_size=2048, n_layer=96, n_embd=12288)
    assert n == 174_604_259_328
    assert round(n / 1e9) == 175  # the press's "175 billion"


@pytest.mark.parametrize("tied, bias", [(True, True), (False, True), (True, False), (False, False)])
def test_closed_form_equals_built_model(tied, bias):
    cfg = tiny(tied=tied, bias=bias)
    model = GPT(cfg)
    assert count_parameters(cfg.vocab_size, cfg.block_size, cfg.n_layer, cfg.n_embd, tied=tied, bias=bias) == model.num_parameters()


# every architectural choice that changes the count, each against the others (V=37, T=16, L=2, H=6, C=24)
GRID = [
    dict(),
    dict(n_kv_head=2), dict(n_kv_head=1, bias=False), dict(n_kv_head=3, tied=False),
    dict(activation="swiglu"), dict(activation="swiglu", mlp_hidden=40, bias=False), dict(activation="gelu_tanh", mlp_hidden=30),
    dict(norm="rmsnorm"), dict(norm="rmsnorm", bias=False, tied=False), dict(norm="layernorm", bias=False),
    dict(pos_encoding="rope"), dict(pos_encoding="alibi", tied=False), dict(pos_encoding="sinusoidal", n_kv_head=2),
    dict(prenorm=False), dict(prenorm=False, norm="rmsnorm", pos_encoding="rope"),
    dict(n_kv_head=2, activation="swiglu", mlp_hidden=64, norm="rmsnorm", bias=False, pos_encoding="rope", rope_layout="half"),  # a Llama
]


@pytest.mark.parametrize("kw", GRID, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "gpt2")
def test_closed_form_equals_built_model_over_architectures(kw):
    cfg = tiny(n_head=6, **kw)
    model = GPT(cfg)
    assert count_parameters(cfg) == model.num_parameters()
    keys = {k: getattr(cfg, k) for k in ("n_head", "n_kv_head", "activation", "mlp_hidden", "norm", "pos_encoding", "prenorm")}
    assert count_parameters(cfg.vocab_size, cfg.block_size, cfg.n_layer, cfg.n_embd, cfg.tied, cfg.bias, **keys) == model.num_parameters()
    parts = parameter_breakdown(model)
    assert sum(parts.values()) == model.num_parameters()
    assert parts["head"] == (0 if cfg.tied else 37 * 24) and parts["embeddings"] == 37 * 24
    assert parts["positions"] == (16 * 24 if cfg.pos_encoding == "learned" else 0)


def test_parameter_breakdown_of_gpt2_small_on_meta():
    with torch.device("meta"):  # shapes without storage
        parts = parameter_breakdown(GPT(GPTConfig()))
    C, L = 768, 12
    assert parts == {"embeddings": 50257 * C, "positions": 1024 * C, "attention": L * (4 * C * C + 4 * C), "mlp": L * (8 * C * C + 5 * C),
                     "norms": (2 * L + 1) * 2 * C, "head": 0}


def test_count_parameters_refuses_half_a_call():
    with pytest.raises(ValueError, match="n_kv_head=2: needs n_head"):
        count_parameters(37, 16, 2, 24, n_kv_head=2)
    with pytest.raises(ValueError, match="a GPTConfig already holds every size"):
        count_parameters(tiny(), 16)


def test_norm_eps_reaches_every_norm():
    model = GPT(tiny(norm="rmsnorm", norm_eps=1e-3))
    eps = {m.eps for m in model.modules() if isinstance(m, (RMSNorm, LayerNorm))}
    assert eps == {1e-3}
    assert {m.eps for m in GPT(tiny(norm_eps=2e-6)).modules() if isinstance(m, LayerNorm)} == {2e-6}


def test_block_has_12C2_plus_13C_parameters():
    C = 24
    assert sum(p.numel() for p in Block(tiny(n_embd=C)).parameters()) == 12 * C * C + 13 * C


def test_non_embedding_count_drops_positions():
    model = GPT(tiny())
    assert model.num_parameters() - model.num_parameters(non_embedding=True) == 16 * 24


def test_non_embedding_count_of_untied_model_also_drops_wte():
    model = GPT(tiny(tied=False))  # wte is then only an embedding; lm_head keeps its own V x C
    assert model.num_parameters() - model.num_parameters(non_embedding=True) == 16 * 24 + 37 * 24


# ----------------------------------------------------------------------------- the GPT
def test_weight_tying_shares_storage():
    model = GPT(tiny())
    assert model.lm_head.weight is model.transformer.wte.weight
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
    with torch.no_grad():
        model.transformer.wte.weight[3, 5] = 7.0
    assert model.lm_head.weight[3, 5].item() == 7.0  # one matrix, seen from both places


def test_untied_model_has_two_matrices():
    model = GPT(tiny(tied=False))
    assert model.lm_head.weight.data_ptr() != model.transformer.wte.weight.data_ptr()


def test_forward_shapes():
    model = GPT(tiny())
    idx = torch.randint(37, (2, 11), generator=torch.Generator().manual_seed(0))
    logits, loss = model(idx)
    assert logits.shape == (2, 11, 37) and loss is None
    _, loss = model(idx, idx)
    assert loss.shape == ()


def test_loss_at_init_is_close_to_ln_vocab():
    # GPT-2's init (std 0.02) gives near-zero logits, so every token is about equally likely
    torch.manual_seed(0)
    V = 512
    model = GPT(tiny(vocab_size=V, n_embd=48))
    g = torch.Generator().manual_seed(1)
    idx, targets = torch.randint(V, (8, 16), generator=g), torch.randint(V, (8, 16), generator=g)
    _, loss = model(idx, targets)
    assert abs(loss.item() - math.log(V)) < 0.1


def test_overfits_one_batch():
    # a working model, loss and optimiser memorise 4 random sequences; a bug usually stalls far above 0.1.
    # Measured: loss < 0.1 after ~50 steps with this seed (2 layers, width 48); 150 leaves room
    torch.manual_seed(0)
    model = GPT(tiny(vocab_size=29, block_size=24, n_embd=48))
    g = torch.Generator().manual_seed(0)
    x, y = torch.randint(29, (4, 24), generator=g), torch.randint(29, (4, 24), generator=g)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    losses = []
    for _ in range(150):
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if loss.item() < 0.1:
            break
    assert losses[-1] < 0.1, f"loss after {len(losses)} steps: {losses[-1]:.3f}"


@pytest.mark.parametrize("prenorm", [True, False])
@pytest.mark.parametrize("pos_encoding", ["learned", "rope"])
def test_full_model_is_causal(prenorm, pos_encoding):
    torch.manual_seed(0)
    model = GPT(tiny(prenorm=prenorm, pos_encoding=pos_encoding)).eval()
    g = torch.Generator().manual_seed(5)
    idx = torch.randint(37, (2, 12), generator=g)
    idx2 = idx.clone()
    idx2[:, 7:] = torch.randint(37, (2, 5), generator=g)  # change only the future
    with torch.no_grad():
        a, b = model(idx)[0], model(idx2)[0]
    # the first 7 positions cannot see the change: equal up to float32 rounding of the fused kernel
    torch.testing.assert_close(a[:, :7], b[:, :7], atol=1e-6, rtol=1e-5)
    assert not torch.allclose(a[:, 7:], b[:, 7:], atol=1e-3)  # and the later ones do see it


def test_pre_ln_and_post_ln_both_run_and_differ():
    torch.manual_seed(0)
    pre = GPT(tiny(prenorm=True)).eval()
    post = GPT(tiny(prenorm=False)).eval()
    # the same weights, only the wiring differs; post-LN has no final norm (its blocks end in one)
    assert isinstance(post.transformer.ln_f, torch.nn.Identity) and not isinstance(pre.transformer.ln_f, torch.nn.Identity)
    post.load_state_dict({k: v for k, v in pre.state_dict().items() if not k.startswith("transformer.ln_f.")})
    idx = torch.randint(37, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        lp, lq = pre(idx)[0], post(idx)[0]
    assert lp.shape == lq.shape == (2, 9, 37)
    assert torch.isfinite(lp).all() and torch.isfinite(lq).all()
    assert not torch.allclose(lp, lq, atol=1e-3)


def test_post_ln_block_normalises_its_output():
    block = Block(tiny(prenorm=False)).eval()
    x = torch.randn(2, 5, 24, generator=torch.Generator().manual_seed(0)) * 5 + 3
    with torch.no_grad():
        y = block(x)
    # the last op is ln_2 with weight 1, bias 0: each token's vector has mean 0 and variance ~1
    torch.testing.assert_close(y.mean(-1), torch.zeros(2, 5), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(-1, unbiased=False), torch.ones(2, 5), atol=1e-3, rtol=0)


def test_pre_ln_block_with_zero_branches_is_identity():
    block = Block(tiny()).eval()
    with torch.no_grad():
        for lin in (block.attn.c_proj, block.mlp.c_proj):
            lin.weight.zero_()
            lin.bias.zero_()
        x = torch.randn(2, 5, 24, generator=torch.Generator().manual_seed(0))
        assert torch.equal(block(x), x)  # x + 0 + 0 is exact


def test_mlp_is_4x_wide_and_positionwise():
    mlp = MLP(24).eval()
    assert mlp.c_fc.weight.shape == (96, 24) and mlp.c_proj.weight.shape == (24, 96)
    x = torch.randn(2, 5, 24, generator=torch.Generator().manual_seed(0))
    x2 = x.clone()
    x2[:, 1:] = 0.0
    with torch.no_grad():
        torch.testing.assert_close(mlp(x)[:, 0], mlp(x2)[:, 0], atol=1e-6, rtol=1e-6)  # token 0 ignores the others


@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
def test_norm_choice_builds_the_right_module(norm):
    model = GPT(tiny(norm=norm))
    kind = LayerNorm if norm == "layernorm" else RMSNorm
    assert isinstance(model.transformer.ln_f, kind) and isinstance(model.transformer.h[0].ln_1, kind)


# ----------------------------------------------------------------------------- shape errors
def test_forward_rejects_1d_idx_naming_the_shape():
    with pytest.raises(ValueError, match=r"idx: expected .*\(B, T\).*\(11,\)"):
        GPT(tiny())(torch.zeros(11, dtype=torch.long))


def test_forward_rejects_sequences_longer_than_block_size():
    with pytest.raises(ValueError, match="17.*block_size=16"):
        GPT(tiny())(torch.zeros(1, 17, dtype=torch.long))


def test_forward_rejects_targets_of_another_shape():
    with pytest.raises(ValueError, match=r"targets: expected shape \(2, 5\).*\(2, 4\)"):
        GPT(tiny())(torch.zeros(2, 5, dtype=torch.long), torch.zeros(2, 4, dtype=torch.long))
