"""The encoder (llmlab.models.encoder): bidirectional attention, padding masks, mean pooling,
the tied MLM head, and the config's checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from llmlab.models import MODELS, build_model
from llmlab.models.encoder import Encoder, EncoderConfig, attention_mask, mean_pool


def small(**kw) -> Encoder:
    torch.manual_seed(0)
    return Encoder(EncoderConfig(**{**dict(vocab_size=23, block_size=16, n_layer=2, n_head=2, n_embd=12), **kw})).eval()


def test_attention_mask_allows_real_keys_only_for_every_query():
    is_token = torch.tensor([[True, True, True, False], [True, False, False, False]])
    m = attention_mask(is_token)
    assert m.shape == (2, 1, 4, 4) and m.dtype == torch.bool
    for b in range(2):
        for i in range(4):
            assert torch.equal(m[b, 0, i], is_token[b])  # no causal part, padded queries still see the real keys


def test_attention_mask_rejects_non_bool_input():
    with pytest.raises(ValueError, match="is_token"):
        attention_mask(torch.ones(2, 3))


def test_mean_pool_averages_real_tokens_only_and_matches_sentence_transformers_formula():
    g = torch.Generator().manual_seed(1)
    h = torch.randn(3, 5, 4, generator=g)
    is_token = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    got = mean_pool(h, is_token)
    for b, n in enumerate([5, 2, 1]):
        torch.testing.assert_close(got[b], h[b, :n].mean(0))
    # sentence-transformers: sum(h * mask) / clamp(sum(mask), min=1e-9)
    m = is_token.unsqueeze(-1).float()
    torch.testing.assert_close(got, (h * m).sum(1) / m.sum(1).clamp(min=1e-9))


def test_bidirectional_a_change_on_the_right_moves_the_left_outputs():
    model = small()
    x = torch.randint(23, (1, 8), generator=torch.Generator().manual_seed(2))
    y = x.clone()
    y[0, -1] = (x[0, -1] + 1) % 23
    with torch.no_grad():
        a, b = model(x), model(y)
    assert (a[0, 0] - b[0, 0]).abs().max() > 1e-4  # a causal model would leave position 0 exactly as it was


@pytest.mark.parametrize("pos", ["learned", "rope"])
def test_padding_does_not_change_the_real_tokens_outputs(pos):
    model = small(pos_encoding=pos)
    x = torch.randint(23, (1, 6), generator=torch.Generator().manual_seed(3))
    padded = torch.cat([x, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    is_token = torch.tensor([[True] * 6 + [False] * 4])
    with torch.no_grad():
        alone, with_pads = model(x), model(padded, is_token)
    torch.testing.assert_close(with_pads[:, :6], alone, atol=1e-5, rtol=1e-5)  # float32 rounding of a different reduction length


def test_mlm_head_is_tied_and_gives_vocabulary_logits():
    model = small()
    assert model.lm_head.weight is model.transformer.wte.weight
    h = model(torch.zeros(2, 5, dtype=torch.long))
    assert model.mlm_logits(h).shape == (2, 5, 23)
    assert model.num_parameters() == sum(p.numel() for p in set(model.parameters()))


def test_bert_layout_options_build_their_modules():
    model = small(prenorm=False, norm_eps=1e-12, type_vocab_size=2, embed_norm=True, mlm_head=False)
    names = dict(model.named_parameters())
    assert "transformer.wtt.weight" in names and "transformer.ln_emb.weight" in names and "lm_head.weight" not in names
    assert isinstance(model.transformer.ln_f, torch.nn.Identity)  # post-LN blocks end in a norm
    assert model.transformer.h[0].ln_1.eps == 1e-12
    with pytest.raises(ValueError, match="no masked-LM head"):
        model.mlm_logits(torch.zeros(1, 2, 12))
    tt = torch.tensor([[0, 0, 1, 1]])
    with torch.no_grad():
        assert not torch.allclose(model(torch.zeros(1, 4, dtype=torch.long), token_type_ids=tt), model(torch.zeros(1, 4, dtype=torch.long)))


def test_embed_gives_unit_vectors():
    v = small().embed(torch.randint(23, (3, 7), generator=torch.Generator().manual_seed(4)))
    torch.testing.assert_close(v.norm(dim=-1), torch.ones(3))


def test_encoder_is_a_registered_model_that_rebuilds_from_its_config_dict():
    cfg = EncoderConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8)
    assert MODELS["Encoder"] == (Encoder, EncoderConfig)
    assert isinstance(build_model(cfg.to_dict(), "Encoder"), Encoder)
    assert isinstance(build_model(cfg), Encoder)


@pytest.mark.parametrize("bad, match", [
    (dict(n_embd=10, n_head=3), "not divisible"), (dict(pos_encoding="alibi"), "alibi"), (dict(type_vocab_size=-1), "type_vocab_size"),
    (dict(norm_eps=0), "norm_eps"), (dict(activation="relu"), "activation"), (dict(dropout=1.0), "dropout"), (dict(vocab_size=0), "vocab_size"),
])
def test_config_errors_name_the_parameter(bad, match):
    with pytest.raises(ValueError, match=match):
        EncoderConfig(**{**dict(vocab_size=10, n_layer=1, n_head=2, n_embd=8), **bad})
    with pytest.raises(ValueError, match="unknown encoder setting"):
        EncoderConfig.from_dict({"vocab_size": 3, "n_heads": 2})


def test_forward_errors_name_the_parameter():
    model = small()
    with pytest.raises(ValueError, match="is_token"):
        model(torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="token_type_ids"):
        model(torch.zeros(1, 3, dtype=torch.long), token_type_ids=torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_attention_matches_torch_multihead_attention_with_a_key_padding_mask():
    """One bidirectional block's attention against torch.nn.MultiheadAttention (the library oracle)."""
    model = small(n_layer=1, bias=True)
    attn = model.transformer.h[0].attn
    C = 12
    mha = torch.nn.MultiheadAttention(C, 2, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(attn.c_attn.weight)
        mha.in_proj_bias.copy_(attn.c_attn.bias)
        mha.out_proj.weight.copy_(attn.c_proj.weight)
        mha.out_proj.bias.copy_(attn.c_proj.bias)
    x = torch.randn(2, 5, C, generator=torch.Generator().manual_seed(5))
    is_token = torch.tensor([[True] * 5, [True, True, True, False, False]])
    with torch.no_grad():
        ours = attn(x, attn_mask=attention_mask(is_token))
        theirs = mha(x, x, x, key_padding_mask=~is_token, need_weights=False)[0]
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-5)
    assert F.mse_loss(ours, theirs) < 1e-12
