"""llmlab.models.gpt2: a Hugging Face GPT-2, converted, is the same model in the course's GPT.

The oracle is transformers' own GPT2LMHeadModel, built offline from a small random GPT2Config
whose every dimension differs (vocab 101, 40 positions, width 48, 4 heads, 2 layers, MLP 192),
so a transposed or swapped matrix cannot pass by having the right shape. Its weights are redrawn
larger than GPT-2's init (std 0.2 instead of 0.02), so every layer moves the logits and a wrong
one shows. The mistakes test proves the logits comparison catches each known way to get the
conversion wrong, including the one no shape check sees (attn.c_proj is square).

Without transformers, the round-trip test still runs: a course GPT written out in Hugging Face's
layout by hand converts back to the same model.
"""

from __future__ import annotations

import pytest
import torch

from llmlab.models.gpt import GPT, GPTConfig
from llmlab.models.gpt2 import convert_gpt2_state_dict, from_hf_gpt2, gpt2_config, load_gpt2

# float32 logits of size ~6 through 2 blocks, computed by two implementations that add in different
# orders (HF's attention vs the course's SDPA call): measured max difference ~1.5e-6. 1e-4 leaves a
# ~70x margin; every mistake below moves some logit by more than 0.5.
ATOL = RTOL = 1e-4
DIMS = dict(n_layer=2, n_embd=48, n_head=4, n_positions=40, vocab_size=101)


def _hf_model(**over):
    transformers = pytest.importorskip("transformers", reason="transformers is not installed: the GPT2LMHeadModel oracle needs it")
    transformers.utils.logging.set_verbosity_error()
    cfg = transformers.GPT2Config(**{**DIMS, **over}, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():  # larger than GPT-2's init, so every layer shows in the logits
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
            elif ".ln_" in name and name.endswith("weight"):
                p.copy_(1.0 + torch.randn(p.shape, generator=g) * 0.2)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model


def _idx(V=DIMS["vocab_size"], B=3, T=17):
    return torch.randint(V, (B, T), generator=torch.Generator().manual_seed(2))


def _course_logits(hf_model, convert=convert_gpt2_state_dict) -> torch.Tensor:
    """Convert with `convert`, load strictly into a course GPT, run it on _idx()."""
    model = GPT(gpt2_config(hf_model.config))
    model.load_state_dict(convert(hf_model.state_dict()), strict=True)
    with torch.no_grad():
        return model.eval()(_idx())[0]


def assert_same_logits(hf_model, convert=convert_gpt2_state_dict) -> None:
    with torch.no_grad():
        expected = hf_model(_idx()).logits
    torch.testing.assert_close(_course_logits(hf_model, convert), expected, atol=ATOL, rtol=RTOL)


# ----------------------------------------------------------------------------- against transformers
def test_converted_gpt2_gives_the_same_logits():
    assert_same_logits(_hf_model())


def test_the_margin_is_real():
    """What ATOL claims: the correct conversion is at float32 rounding, far below the tolerance."""
    hf = _hf_model()
    with torch.no_grad():
        err = (_course_logits(hf) - hf(_idx()).logits).abs().max().item()
    assert err < ATOL / 10


def test_from_hf_gpt2_gives_the_same_loss():
    """HF shifts the labels inside (logits[:, :-1] against labels[:, 1:]); the course GPT takes the targets as given."""
    hf, idx = _hf_model(), _idx()
    gpt = from_hf_gpt2(hf)
    assert not gpt.training
    with torch.no_grad():
        theirs = hf(idx, labels=idx).loss
        _, ours = gpt(idx[:, :-1], idx[:, 1:])
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)  # a mean of 48 log-softmaxes of ~6: rounding ~1e-6


def test_a_wider_mlp_and_no_mask_buffers_of_transformers_5():
    hf = _hf_model(n_inner=80)  # not 4C: the config's n_inner must reach mlp_hidden
    assert not any(k.endswith(".attn.bias") for k in hf.state_dict())  # transformers >= 4.3x stores no mask
    assert gpt2_config(hf.config).mlp_hidden == 80
    assert_same_logits(hf)


def test_converted_names_and_shapes_are_exactly_the_course_gpts():
    hf = _hf_model()
    ours = convert_gpt2_state_dict(hf.state_dict())
    want = GPT(gpt2_config(hf.config)).state_dict()
    assert sorted(ours) == sorted(want)
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in want.items()}


def test_old_checkpoints_mask_buffers_are_dropped():
    """transformers < 4.3x saved each block's causal mask and masked_bias with the weights."""
    hf = _hf_model()
    sd = hf.state_dict()
    T = DIMS["n_positions"]
    old = dict(sd)
    for i in range(DIMS["n_layer"]):
        old[f"transformer.h.{i}.attn.bias"] = torch.ones(T, T, dtype=torch.bool).tril().view(1, 1, T, T)
        old[f"transformer.h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    ours, plain = convert_gpt2_state_dict(old), convert_gpt2_state_dict(sd)
    assert sorted(ours) == sorted(plain)
    assert all(torch.equal(ours[k], plain[k]) for k in plain)
    assert sum(k.endswith(".attn.c_attn.bias") for k in ours) == DIMS["n_layer"]  # ends in "attn.bias" too, and is a real parameter


def test_gpt2_config_reads_every_setting():
    hf = _hf_model()
    cfg = gpt2_config(hf.config)
    assert (cfg.vocab_size, cfg.block_size, cfg.n_layer, cfg.n_head, cfg.n_embd) == (101, 40, 2, 4, 48)
    assert (cfg.activation, cfg.bias, cfg.tied, cfg.dropout, cfg.pos_encoding, cfg.norm, cfg.prenorm) == \
        ("gelu_tanh", True, True, 0.0, "learned", "layernorm", True)
    assert cfg.mlp_hidden is None  # n_inner None: 4C
    assert gpt2_config(hf.config.to_dict()) == cfg  # a plain dict works too


# ----------------------------------------------------------------------------- each mistake is caught by the logits
def _wrong(kind):
    def convert(hf):
        out = {}
        for k, v in hf.items():
            if kind != "keep_mask" and k.endswith((".attn.bias", ".attn.masked_bias")):
                continue
            if kind == "no_lm_head" and k == "lm_head.weight":
                continue
            conv1d = k.endswith((".c_attn.weight", ".c_proj.weight", ".c_fc.weight"))
            if kind == "no_c_proj_transpose":
                conv1d = conv1d and not k.endswith(".attn.c_proj.weight")
            if kind == "transpose_embeddings":
                conv1d = conv1d or k.endswith(("wte.weight", "wpe.weight"))
            if kind == "no_transpose":
                conv1d = False
            if conv1d:
                v = v.t()
            out[k.replace("transformer.wpe.", "transformer.pos.wpe.") if kind != "no_rename" else k] = v
        return out
    return convert


@pytest.mark.parametrize("kind", ["no_c_proj_transpose", "transpose_embeddings", "no_lm_head", "no_transpose", "no_rename", "keep_mask"])
def test_each_mistake_is_caught_by_the_logits_test(kind):
    hf = _hf_model()
    sd = dict(hf.state_dict())
    if kind == "keep_mask":  # the buffers an old checkpoint holds
        T = DIMS["n_positions"]
        sd.update({f"transformer.h.{i}.attn.bias": torch.ones(1, 1, T, T) for i in range(DIMS["n_layer"])})
    hf.state_dict = lambda: sd  # what the conversion reads
    with pytest.raises((AssertionError, RuntimeError)):
        assert_same_logits(hf, _wrong(kind))


def test_only_the_logits_see_the_missing_c_proj_transpose():
    """attn.c_proj is C x C: without its transpose the dict loads strictly, and the logits are far off."""
    hf = _hf_model()
    model = GPT(gpt2_config(hf.config))
    model.load_state_dict(_wrong("no_c_proj_transpose")(hf.state_dict()), strict=True)  # no error
    with torch.no_grad():
        err = (model.eval()(_idx())[0] - hf(_idx()).logits).abs().max().item()
    assert err > 0.5


def test_load_gpt2_offline_says_what_to_do(tmp_path):
    pytest.importorskip("transformers", reason="transformers is not installed")
    with pytest.raises(OSError, match=r"name='gpt2': could not load GPT-2 weights from its local cache"):
        load_gpt2("gpt2", cache_dir=str(tmp_path), local_files_only=True)  # an empty cache, never the network


# ----------------------------------------------------------------------------- without transformers
def _to_hf(model: GPT) -> dict[str, torch.Tensor]:
    """A course GPT's state dict written in Hugging Face's GPT-2 layout by hand (the inverse table)."""
    out = {}
    for k, v in model.state_dict().items():
        if k.endswith((".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight", ".mlp.c_proj.weight")):
            v = v.t()
        out[k.replace("transformer.pos.wpe.", "transformer.wpe.")] = v.clone()
    return out


def test_round_trip_through_the_hf_layout_is_the_same_model():
    cfg = GPTConfig(vocab_size=29, block_size=11, n_layer=2, n_head=3, n_embd=12, activation="gelu_tanh")
    torch.manual_seed(3)
    a, b = GPT(cfg).eval(), GPT(cfg).eval()
    b.load_state_dict(convert_gpt2_state_dict(_to_hf(a)), strict=True)
    idx = torch.randint(29, (2, 9), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.equal(a(idx)[0], b(idx)[0])  # the same numbers in the same layout: bit for bit


def test_a_name_that_is_not_gpt2s_is_refused():
    with pytest.raises(ValueError, match=r"'h.0.ln_1.weight' is not a GPT2LMHeadModel name"):
        convert_gpt2_state_dict({"h.0.ln_1.weight": torch.ones(3)})


@pytest.mark.parametrize("over, match", [({"activation_function": "relu"}, "activation_function='relu'"),
                                         ({"layer_norm_epsilon": 1e-6}, "layer_norm_epsilon=1e-06"),
                                         ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx=True"),
                                         ({"model_type": "llama"}, "model_type='llama'")])
def test_settings_the_course_gpt_cannot_follow_are_refused(over, match):
    base = dict(DIMS, model_type="gpt2", activation_function="gelu_new", layer_norm_epsilon=1e-5)
    with pytest.raises(ValueError, match=match):
        gpt2_config({**base, **over})
