"""llmlab.nn.freeze: requires_grad by name prefix, tied tensors counted once, clear errors."""

from __future__ import annotations

import pytest
import torch

from llmlab.models.gpt import GPT, GPTConfig
from llmlab.nn.freeze import count_trainable, freeze_all_but


def gpt(tied=True):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=30, block_size=8, n_layer=2, n_head=2, n_embd=16, tied=tied))


def test_only_the_named_prefixes_train_and_the_count_is_theirs():
    m = gpt()
    n = freeze_all_but(m, ["transformer.h.1", "transformer.ln_f"])
    want = sum(p.numel() for name, p in m.named_parameters() if name.startswith(("transformer.h.1", "transformer.ln_f")))
    assert n == want == count_trainable(m)
    assert {name for name, p in m.named_parameters() if p.requires_grad} == {name for name, _ in m.named_parameters()
                                                                              if name.startswith(("transformer.h.1", "transformer.ln_f"))}
    assert m.training  # freezing is not .eval()
    assert freeze_all_but(m, []) == 0 and freeze_all_but(m, [""]) == m.num_parameters()  # nothing; everything


def test_a_tied_tensor_counts_once_and_trains_under_either_name():
    m = gpt(tied=True)
    assert freeze_all_but(m, ["lm_head"]) == 30 * 16  # lm_head.weight is transformer.wte.weight: one tensor
    assert m.transformer.wte.weight.requires_grad
    assert freeze_all_but(m, ["transformer.wte", "lm_head"]) == 30 * 16  # not twice


def test_bad_input_names_the_parameter():
    with pytest.raises(ValueError, match="trainable: no parameter name starts with 'head'"):
        freeze_all_but(gpt(), ["head"])
    with pytest.raises(ValueError, match="trainable='lm_head': expected a list of parameter-name prefixes"):
        freeze_all_but(gpt(), "lm_head")
