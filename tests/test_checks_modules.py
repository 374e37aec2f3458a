"""llmlab.checks.modules: the one loader every class exercise uses, and models passed as plain data."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from llmlab.checks.core import CheckFailed
from llmlab.checks.modules import build_model, load_weights, model_spec, run_module
from llmlab.grading import serialize
from llmlab.models.gpt import GPT, GPTConfig


class TwoLayers(nn.Module):
    def __init__(self, tied=True):
        super().__init__()
        self.inp = nn.Linear(3, 5, bias=False)
        self.out = nn.Linear(5, 3, bias=False)
        if tied:
            self.out.weight = nn.Parameter(self.inp.weight.T.contiguous())  # not shared: a separate tensor

    def forward(self, x):
        return self.out(self.inp(x))


def weights():
    g = torch.Generator().manual_seed(0)
    return {"inp.weight": torch.randn(5, 3, generator=g), "out.weight": torch.randn(3, 5, generator=g)}


def test_loads_every_parameter_by_name_and_runs_in_eval_mode():
    m = load_weights(TwoLayers(), weights(), "TwoLayers", naming="inp, out")
    assert torch.equal(m.inp.weight, weights()["inp.weight"]) and torch.equal(m.out.weight, weights()["out.weight"])
    m.train()
    x = torch.randn(2, 3)
    y = run_module(m, x)
    assert not m.training and not y.requires_grad
    torch.testing.assert_close(y, x @ weights()["inp.weight"].T @ weights()["out.weight"].T, rtol=0, atol=1e-6)


@pytest.mark.parametrize("tensors, kwargs, message", [
    ({"inp.weight": torch.zeros(5, 3)}, {}, "parameter(s) the course's does not: out.weight"),
    ({**weights(), "hidden.weight": torch.zeros(1)}, {}, "has no parameter `hidden.weight`; inp, out"),
    ({"inp.weight": torch.zeros(3, 5), "out.weight": torch.zeros(3, 5)}, {}, "`inp.weight` has shape (5, 3), expected (3, 5)"),
])
def test_each_wrong_layout_is_named(tensors, kwargs, message):
    with pytest.raises(CheckFailed) as e:
        load_weights(TwoLayers(), tensors, "TwoLayers", naming="inp, out", **kwargs)
    assert message in str(e.value)
    load_weights(TwoLayers(), {"inp.weight": torch.zeros(5, 3)}, "TwoLayers", naming="x", strict=False)  # not strict: fine


def test_not_a_module_and_aliases_and_fill():
    with pytest.raises(CheckFailed, match="expected your thing to be an nn.Module"):
        load_weights(lambda x: x, {}, "thing", naming="")
    w = weights()
    m = load_weights(TwoLayers(), {"first.weight": w["inp.weight"]}, "TwoLayers", naming="", aliases={"first.weight": "inp.weight"},
                     fill={"out.weight": lambda shape: torch.full(shape, 2.0)})
    assert torch.equal(m.inp.weight, w["inp.weight"]) and torch.equal(m.out.weight, torch.full((3, 5), 2.0))
    tied = TwoLayers()
    tied.out.weight = tied.inp.weight  # shared: the fill must not overwrite the loaded values (shapes differ anyway)
    with pytest.raises(CheckFailed, match="`inp.weight` has shape"):
        load_weights(tied, {"inp.weight": torch.zeros(3, 5)}, "TwoLayers", naming="")


def test_a_model_travels_as_plain_data_and_comes_back_equal():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8))
    spec = model_spec(model)
    struct, tensors = serialize.encode(spec)  # what the grader writes for the sandbox: JSON + safetensors
    back = build_model(serialize.decode(struct, tensors))
    idx = torch.randint(11, (2, 5))
    torch.testing.assert_close(back(idx)[0], model.eval()(idx)[0], rtol=0, atol=0)
    with pytest.raises(ValueError, match="spec: expected"):
        build_model({"class": "os.system", "config": {}, "state": {}})
