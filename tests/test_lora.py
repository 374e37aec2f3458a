"""llmlab.nn.lora: equal to the peft library's LoRA given the same A and B; zero update at init;
merge folds the update into one Linear; apply_lora freezes the rest and counts what trains; the
adapters alone round-trip through safetensors."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from llmlab.models.gpt import GPT, GPTConfig
from llmlab.nn.freeze import count_trainable
from llmlab.nn.lora import LoRALinear, apply_lora, load_lora_state_dict, lora_state_dict, merge, unmerge


def tiny_gpt(seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=37, block_size=16, n_layer=2, n_head=2, n_embd=24)).eval()


def randomise_b(model, seed=1):
    """B is zero at init (the update is zero); give it values so the comparisons test something."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, LoRALinear):
                m.lora_B.weight.copy_(torch.randn(m.lora_B.weight.shape, generator=g) * 0.1)


def test_outputs_equal_peft_with_the_same_adapters():
    from peft import LoraConfig, inject_adapter_in_model

    ours, theirs = tiny_gpt(), tiny_gpt()
    targets = ("c_attn", "c_fc")
    n_ours = apply_lora(ours, targets, r=4, alpha=8)
    randomise_b(ours)
    theirs = inject_adapter_in_model(LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=list(targets), bias="none"), theirs)
    sd = {}
    for name, m in ours.named_modules():
        if isinstance(m, LoRALinear):
            sd[f"{name}.lora_A.default.weight"] = m.lora_A.weight
            sd[f"{name}.lora_B.default.weight"] = m.lora_B.weight
    missing, unexpected = theirs.load_state_dict(sd, strict=False)
    assert not unexpected and not [k for k in missing if "lora_" in k]
    n_theirs = sum(p.numel() for p in theirs.parameters() if p.requires_grad)
    assert n_ours == n_theirs == 2 * 4 * ((24 + 72) + (24 + 96))  # r * (in + out) per wrapped layer, 2 blocks
    idx = torch.randint(37, (3, 11), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a, b = ours(idx)[0], theirs(idx)[0]
    # the same products in the same order: float32 rounding only
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    assert (a - tiny_gpt()(idx)[0]).abs().max() > 1e-3  # the adapters changed the function


def test_at_init_the_layer_computes_exactly_what_the_base_did():
    base = nn.Linear(10, 6)
    x = torch.randn(4, 10)
    layer = LoRALinear(copy.deepcopy(base), r=3, alpha=6)
    assert torch.equal(layer(x), base(x))
    assert not layer.base.weight.requires_grad and layer.lora_A.weight.requires_grad and layer.lora_B.weight.requires_grad
    assert layer.lora_A.weight.shape == (3, 10) and layer.lora_B.weight.shape == (6, 3) and layer.scaling == 2.0


def test_merge_folds_the_update_and_unmerge_takes_it_out():
    layer = LoRALinear(nn.Linear(10, 6), r=3, alpha=5)
    with torch.no_grad():
        layer.lora_B.weight.normal_()
    x = torch.randn(4, 10)
    merged = merge(layer)
    assert type(merged) is nn.Linear
    torch.testing.assert_close(merged(x), layer(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(merged.weight, layer.base.weight + 5 / 3 * layer.lora_B.weight @ layer.lora_A.weight)
    torch.testing.assert_close(unmerge(merged, layer).weight, layer.base.weight, atol=1e-6, rtol=0)


def test_apply_lora_freezes_the_rest_and_counts_what_trains():
    model = tiny_gpt()
    n = apply_lora(model, ("c_attn",), r=2, alpha=2)
    assert n == 2 * 2 * (24 + 72) == count_trainable(model)
    trainable = {k for k, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"transformer.h.{i}.attn.c_attn.lora_{ab}.weight" for i in (0, 1) for ab in "AB"}
    assert isinstance(model.lm_head, nn.Linear)  # "c_attn" does not reach the head


def test_adapters_alone_round_trip_through_safetensors(tmp_path):
    from safetensors.torch import load_file, save_file

    a = tiny_gpt()
    apply_lora(a, ("c_attn", "c_proj"), r=2, alpha=4)
    randomise_b(a)
    sd = lora_state_dict(a)
    assert set(sd) == {f"transformer.h.{i}.{m}.lora_{ab}.weight" for i in (0, 1) for m in ("attn.c_attn", "attn.c_proj", "mlp.c_proj") for ab in "AB"}
    save_file(sd, tmp_path / "adapter.safetensors")
    b = tiny_gpt()
    apply_lora(b, ("c_attn", "c_proj"), r=2, alpha=4)
    load_lora_state_dict(b, load_file(tmp_path / "adapter.safetensors"))
    idx = torch.randint(37, (2, 9), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(a(idx)[0], b(idx)[0])
    c = tiny_gpt()
    apply_lora(c, ("c_attn", "c_proj"), r=3, alpha=4)
    with pytest.raises(ValueError, match="another shape"):
        load_lora_state_dict(c, sd)


def test_bad_arguments_name_the_parameter():
    with pytest.raises(ValueError, match="r=0: expected a positive integer rank"):
        LoRALinear(nn.Linear(3, 3), r=0, alpha=1)
    with pytest.raises(ValueError, match="alpha=-1: expected a positive number"):
        LoRALinear(nn.Linear(3, 3), r=1, alpha=-1)
    with pytest.raises(ValueError, match="base: expected an nn.Linear, got Conv1d"):
        LoRALinear(nn.Conv1d(3, 3, 1), r=1, alpha=1)
    with pytest.raises(ValueError, match=r"targets=\('q_proj',\): no nn.Linear"):
        apply_lora(tiny_gpt(), ("q_proj",), r=1, alpha=1)
    with pytest.raises(ValueError, match="targets='c_attn': expected a tuple"):
        apply_lora(tiny_gpt(), "c_attn", r=1, alpha=1)
