"""One way to build, load and run a learner's `nn.Module` in a check, for every exercise that is a
class (MultiHeadAttention, RMSNorm, MLP, Block, GPT, ...) or takes a model as an argument.

    m = load_weights(cls(C), {"c_fc.weight": w1, ...}, "MLP", naming="as in llmlab.nn.mlp")
    y = run_module(m, x)                      # eval mode, no autograd: plain outputs to compare
    model = build_model(spec)                 # {"class": "GPT", "config": {...}, "state": {...}}

Fixed weights go in by name, so two implementations that agree on the architecture agree on
every output; every parameter of the learner's module must receive one (an extra, randomly
initialised parameter would make the outputs depend on the seed), unless `strict=False`.

A model that an exercise takes as an *argument* (a decoding function, a wrapper) travels as plain
data, a spec of its class name, config and weights, and is built on the side that runs the
learner's code: in the notebook, or in the grader's sandbox from the tensors the grader sent.
Nothing is pickled from the student's side.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from llmlab import models
from llmlab.checks.core import CheckFailed
from llmlab.models import MODELS


def as_module(m, what: str) -> nn.Module:
    if not isinstance(m, nn.Module):
        raise CheckFailed(f"expected your {what} to be an nn.Module (class ...(nn.Module)), got {type(m).__name__}")
    return m


def load_weights(m, tensors: dict[str, torch.Tensor], what: str, *, naming: str, aliases: dict[str, str] | None = None,
                 fill: dict[str, Callable[[tuple], torch.Tensor]] | None = None, extra_note: str = "", strict: bool = True) -> nn.Module:
    """Copy `tensors` into `m`'s parameters of the same names (or their `aliases`: the learner's
    name -> another name the same tensor may have). `fill`: parameters that get fixed values when
    no tensor reached them (e.g. an untied output layer). `naming` tells the learner how to name
    the parts when one is missing. With `strict`, a parameter that got nothing is an error."""
    m = as_module(m, what)
    loaded: set[int] = set()

    def find(name: str) -> nn.Parameter:
        for n in (name, (aliases or {}).get(name)):
            if n is not None:
                try:
                    return m.get_parameter(n)
                except AttributeError:
                    continue
        raise CheckFailed(f"your {what} has no parameter `{name}`; {naming}")

    def put(p: nn.Parameter, name: str, value: torch.Tensor) -> None:
        if tuple(p.shape) != tuple(value.shape):
            raise CheckFailed(f"`{name}` has shape {tuple(p.shape)}, expected {tuple(value.shape)}")
        with torch.no_grad():
            p.copy_(value)
        loaded.add(id(p))

    for name, value in tensors.items():
        put(find(name), name, value)
    for name, make in (fill or {}).items():
        p = find(name)
        if id(p) not in loaded:  # shared with a loaded tensor (tied): it has its values already
            put(p, name, make(tuple(p.shape)))
    extra = [n for n, p in m.named_parameters() if id(p) not in loaded]
    if strict and extra:
        raise CheckFailed(f"your {what} has parameter(s) the course's does not: {', '.join(extra[:4])}{extra_note}")
    return m


def run_module(m: nn.Module, *args, **kwargs):
    """The module's output in eval mode (no dropout) without autograd."""
    m.eval()
    with torch.no_grad():
        return m(*args, **kwargs)


# ----------------------------------------------------------------------------- models as arguments
def model_spec(model: nn.Module) -> dict:
    """A course model as plain data (class name, config dict, weights) that can cross the grader's
    sandbox boundary; `build_model` turns it back into the model. The classes are llmlab.models.MODELS,
    the registry checkpoints use too."""
    cls = type(model).__name__
    if cls not in MODELS:
        raise ValueError(f"model: expected one of {', '.join(MODELS)}, got {cls}")
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return {"class": cls, "config": model.config.to_dict(), "state": state}


def build_model(spec: dict) -> nn.Module:
    """The course's model of `spec["class"]`, built from its config, with `spec["state"]` loaded, in eval mode."""
    if not isinstance(spec, dict) or spec.get("class") not in MODELS:
        raise ValueError(f"spec: expected {{'class': one of {', '.join(MODELS)}, 'config': ..., 'state': ...}}, got {spec!r:.80}")
    model = models.build_model(dict(spec["config"]), spec["class"])
    model.load_state_dict(spec["state"])
    return model.eval()
