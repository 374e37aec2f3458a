"""LoRA: fine-tune a big linear layer through a small low-rank update (Hu et al. 2021).

A pretrained weight W [out, in] stays frozen; the update is the product of two thin matrices:

    y = W x + b + (alpha / r) * B (A x)        A: [r, in] (random), B: [out, r] (zero at init)

so at initialisation the layer computes exactly what it did before, and training moves only
r * (in + out) numbers instead of in * out. `alpha / r` keeps the size of the update independent of
the rank: double r and each of the (twice as many) directions is scaled by half, so one learning rate
serves every rank. After training the update folds back into one matrix, W + (alpha / r) B A
(`merge`): serving costs nothing extra.

* `LoRALinear(base, r, alpha)`: wraps an nn.Linear; `lora_A`, `lora_B` are Linear(in, r) and
  Linear(r, out) without bias, named as the `peft` library names them (which a test proves equal).
* `merge(layer)`: a plain nn.Linear with the update folded in; `unmerge` is the same in reverse.
* `apply_lora(model, targets, r, alpha)`: replaces every nn.Linear whose qualified name ends with one
  of `targets`, freezes everything else, returns the number of trainable parameters.
* `lora_state_dict(model)` / `load_lora_state_dict(model, sd)`: only the adapters' tensors, what a
  fine-tune has to ship (save them with safetensors).

Left out on purpose: dropout on the LoRA branch, LoRA on embeddings or convolutions, rank-stabilised
scaling (alpha / sqrt(r)), DoRA, and several adapters per layer (peft's "adapter names").
"""

from __future__ import annotations

import math

import torch
from torch import nn

from llmlab.nn.freeze import count_trainable


class LoRALinear(nn.Module):
    """base(x) + (alpha / r) * lora_B(lora_A(x)); base frozen, lora_B zero at init."""

    def __init__(self, base: nn.Linear, r: int, alpha: float):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise ValueError(f"base: expected an nn.Linear, got {type(base).__name__}")
        if isinstance(r, bool) or not isinstance(r, int) or r < 1:
            raise ValueError(f"r={r!r}: expected a positive integer rank")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha <= 0:
            raise ValueError(f"alpha={alpha!r}: expected a positive number (the update is scaled by alpha / r)")
        self.base, self.r, self.alpha = base, r, float(alpha)
        self.scaling = self.alpha / r
        dev, dt = base.weight.device, base.weight.dtype
        self.lora_A = nn.Linear(base.in_features, r, bias=False, device=dev, dtype=dt)  # [r, in]
        self.lora_B = nn.Linear(r, base.out_features, bias=False, device=dev, dtype=dt)  # [out, r]
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))  # as nn.Linear's and peft's default
        nn.init.zeros_(self.lora_B.weight)  # the update starts at exactly zero
        for p in base.parameters():
            p.requires_grad_(False)

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def delta_weight(self) -> torch.Tensor:
        """(alpha / r) * B @ A: [out, in], the update to W this adapter stands for."""
        return self.scaling * (self.lora_B.weight @ self.lora_A.weight)  # (out, r) @ (r, in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scaling * self.lora_B(self.lora_A(x))  # (..., in) -> (..., r) -> (..., out)

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha:g}"


def merge(layer: LoRALinear) -> nn.Linear:
    """A plain nn.Linear computing what `layer` computes: weight W + (alpha / r) B A, the base's bias."""
    if not isinstance(layer, LoRALinear):
        raise ValueError(f"layer: expected a LoRALinear, got {type(layer).__name__}")
    base = layer.base
    out = nn.Linear(base.in_features, base.out_features, bias=base.bias is not None, device=base.weight.device, dtype=base.weight.dtype)
    with torch.no_grad():
        out.weight.copy_(base.weight + layer.delta_weight())
        if base.bias is not None:
            out.bias.copy_(base.bias)
    return out


def unmerge(merged: nn.Linear, layer: LoRALinear) -> nn.Linear:
    """The base weight back from a merged Linear: W = merged - (alpha / r) B A (up to float rounding)."""
    out = nn.Linear(merged.in_features, merged.out_features, bias=merged.bias is not None, device=merged.weight.device, dtype=merged.weight.dtype)
    with torch.no_grad():
        out.weight.copy_(merged.weight - layer.delta_weight())
        if merged.bias is not None:
            out.bias.copy_(merged.bias)
    return out


def apply_lora(model: nn.Module, targets: tuple[str, ...], r: int, alpha: float) -> int:
    """Replace every nn.Linear whose qualified name ends with one of `targets` by a LoRALinear; freeze
    every other parameter. -> the number of trainable parameters (the adapters')."""
    if isinstance(targets, str) or not targets or not all(isinstance(t, str) and t for t in targets):
        raise ValueError(f"targets={targets!r}: expected a tuple of module-name suffixes, e.g. ('c_attn', 'c_proj')")
    chosen = [name for name, m in model.named_modules() if isinstance(m, nn.Linear) and name.endswith(tuple(targets))]
    if not chosen:
        raise ValueError(f"targets={targets!r}: no nn.Linear of the model has a name ending with one of them")
    for p in model.parameters():
        p.requires_grad_(False)
    for name in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear(getattr(parent, child), r, alpha))
    return count_trainable(model)


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapters' tensors (…lora_A.weight, …lora_B.weight): what a fine-tune ships."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if ".lora_A." in k or ".lora_B." in k or k.startswith(("lora_A.", "lora_B."))}


def load_lora_state_dict(model: nn.Module, sd: dict[str, torch.Tensor]) -> None:
    """Put adapters saved by `lora_state_dict` into a model that `apply_lora` prepared the same way."""
    own = lora_state_dict(model)
    missing, unexpected = sorted(set(own) - set(sd)), sorted(set(sd) - set(own))
    wrong = sorted(k for k in set(own) & set(sd) if own[k].shape != sd[k].shape)
    if missing or unexpected or wrong:
        raise ValueError(f"sd: the adapters do not fit this model (missing {missing[:3]}, unexpected {unexpected[:3]}, "
                         f"another shape {wrong[:3]}); apply_lora with the same targets and rank first")
    model.load_state_dict(sd, strict=False)
