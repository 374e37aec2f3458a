"""Chapter 14's checks: each passes the reference and the code of solutions/14_lora.ipynb, accepts other
right ways to write it, and rejects wrong implementations written the way learners write them, with the
right hint where the mistake is a known one. The exercise notebook, unsolved, says "not implemented yet"
for each exercise (its cells are exercise cells and short demos only)."""

from __future__ import annotations

import math

import torch
from torch import nn

from _checks import assert_chapter, assert_unsolved_runs, rejects
from llmlab.checks import check, get_exercise, load_all
from llmlab.nn import lora as ref

load_all()
IDS = ["lora.LoRALinear", "lora.merge", "lora.apply_lora"]


def hint_of(eid: str, i: int) -> str:
    return get_exercise(eid).mistakes[i].hint


def test_chapter_contract():
    assert_chapter(IDS, "14_lora.ipynb")


def test_unsolved_exercise_notebook_runs_to_the_end_saying_not_implemented_yet(capsys):
    assert_unsolved_runs(IDS, "14_lora.ipynb", capsys, after="merged and adapted outputs differ by at most")


# ----------------------------------------------------------------------------- LoRALinear
class EinsumLoRA(nn.Module):
    """Right, another way: einsum on the weights, the scale kept as a buffer-free attribute."""

    def __init__(self, base, r, alpha):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.lora_A = nn.Linear(base.in_features, r, bias=False)
        self.lora_B = nn.Linear(r, base.out_features, bias=False)
        nn.init.normal_(self.lora_A.weight, std=1 / r)  # another random A: still right
        nn.init.zeros_(self.lora_B.weight)
        self.s = alpha / r

    def forward(self, x):
        return self.base(x) + self.s * torch.einsum("...i,ri,or->...o", x, self.lora_A.weight, self.lora_B.weight)


def lora_variant(init_b="zeros", scale="alpha/r", freeze=True, names=("lora_A", "lora_B"), bias=False):
    class Variant(nn.Module):
        def __init__(self, base, r, alpha):
            super().__init__()
            self.base, self.scale = base, {"alpha/r": alpha / r, "r/alpha": r / alpha, "1": 1.0, "sqrt": alpha / math.sqrt(r)}[scale]
            setattr(self, names[0], nn.Linear(base.in_features, r, bias=bias))
            setattr(self, names[1], nn.Linear(r, base.out_features, bias=bias))
            b = getattr(self, names[1])
            if init_b == "zeros":
                nn.init.zeros_(b.weight)
                if bias:
                    nn.init.zeros_(b.bias)
            elif init_b == "normal":
                nn.init.normal_(b.weight, std=0.02)
            if freeze:
                base.weight.requires_grad = False
                if base.bias is not None:
                    base.bias.requires_grad = False

        def forward(self, x):
            return self.base(x) + self.scale * getattr(self, names[1])(getattr(self, names[0])(x))
    return Variant


def test_lora_linear_written_other_right_ways_passes():
    assert check("lora.LoRALinear", EinsumLoRA, quiet=True)
    assert check("lora.LoRALinear", lora_variant(), quiet=True)


def test_lora_linear_with_b_drawn_small_but_not_zero_is_rejected_as_both_random():
    # std 0.02 looks harmless, but the layer no longer starts as the pretrained one
    rejects("lora.LoRALinear", lora_variant(init_b="normal"), hint=hint_of("lora.LoRALinear", 0))


def test_lora_linear_with_the_scale_upside_down_or_rank_stabilised_is_rejected():
    rejects("lora.LoRALinear", lora_variant(scale="r/alpha"))
    rejects("lora.LoRALinear", lora_variant(scale="sqrt"))  # rsLoRA's alpha / sqrt(r) is another method
    rejects("lora.LoRALinear", lora_variant(scale="1"))


def test_lora_linear_that_only_freezes_the_weight_is_rejected():
    class HalfFrozen(lora_variant(freeze=False)):
        def __init__(self, base, r, alpha):
            super().__init__(base, r, alpha)
            base.weight.requires_grad_(False)  # the bias still trains
    e = rejects("lora.LoRALinear", HalfFrozen)
    assert "base.bias" in e.message


def test_lora_linear_under_other_names_or_with_biases_is_rejected_by_name():
    e = rejects("lora.LoRALinear", lora_variant(names=("A", "B")))
    assert "no submodule lora_A, lora_B" in e.message
    e = rejects("lora.LoRALinear", lora_variant(bias=True))
    assert "bias=False" in e.message


def test_lora_linear_with_parameters_in_raschkas_layout_gets_the_transposed_hint():
    class RaschkaLayout(nn.Module):  # LLMs-from-scratch's LoRALayer: A [in, r], B [r, out], x @ A @ B
        def __init__(self, base, r, alpha):
            super().__init__()
            self.base = base.requires_grad_(False)
            self.lora_A = nn.Linear(r, base.in_features, bias=False)  # weight (in, r)
            self.lora_B = nn.Linear(base.out_features, r, bias=False)  # weight (r, out)
            nn.init.zeros_(self.lora_B.weight)
            self.s = alpha / r

        def forward(self, x):
            return self.base(x) + self.s * (x @ self.lora_A.weight @ self.lora_B.weight)
    rejects("lora.LoRALinear", RaschkaLayout, hint=hint_of("lora.LoRALinear", 3))


# ----------------------------------------------------------------------------- merge
def test_merge_written_other_right_ways_passes():
    def with_delta_weight(layer):
        out = nn.Linear(layer.in_features, layer.out_features, bias=layer.base.bias is not None)
        out.load_state_dict({"weight": layer.base.weight + layer.delta_weight(), **({"bias": layer.base.bias} if layer.base.bias is not None else {})})
        return out

    def with_a_deepcopy(layer):
        import copy
        out = copy.deepcopy(layer.base)
        with torch.no_grad():
            out.weight += layer.scaling * layer.lora_B.weight @ layer.lora_A.weight
        return out
    assert check("lora.merge", with_delta_weight, quiet=True)
    assert check("lora.merge", with_a_deepcopy, quiet=True)


def test_merge_with_the_product_the_wrong_way_round_is_rejected():
    def merge(layer):  # A^T B^T = (B A)^T: (in, out), which fits W only when the layer is square
        out = nn.Linear(layer.in_features, layer.out_features, bias=layer.base.bias is not None)
        with torch.no_grad():
            out.weight.copy_(layer.base.weight + layer.scaling * (layer.lora_A.weight.T @ layer.lora_B.weight.T))
            if out.bias is not None:
                out.bias.copy_(layer.base.bias)
        return out
    rejects("lora.merge", merge, hint=hint_of("lora.merge", 1))


def test_merge_returning_the_lora_layer_itself_is_rejected():
    e = rejects("lora.merge", lambda layer: layer)
    assert "plain nn.Linear" in e.message


def test_merge_with_alpha_instead_of_alpha_over_r_is_rejected():
    def merge(layer):
        out = nn.Linear(layer.in_features, layer.out_features, bias=layer.base.bias is not None)
        with torch.no_grad():
            out.weight.copy_(layer.base.weight + layer.alpha * layer.lora_B.weight @ layer.lora_A.weight)
            if out.bias is not None:
                out.bias.copy_(layer.base.bias)
        return out
    rejects("lora.merge", merge)


# ----------------------------------------------------------------------------- apply_lora
def test_apply_lora_written_other_right_ways_passes():
    def recursive(model, targets, r, alpha, prefix=""):
        if not prefix:
            model.requires_grad_(False)
        for name, child in list(model.named_children()):
            full = f"{prefix}{name}"
            if isinstance(child, nn.Linear) and full.endswith(targets):
                setattr(model, name, ref.LoRALinear(child, r, alpha))
            else:
                recursive(child, targets, r, alpha, prefix=full + ".")
        return sum(p.numel() for p in model.parameters() if p.requires_grad) if not prefix else 0

    def uses_the_learners_class(model, targets, r, alpha):  # LoRALinear here is the notebook's name: judged_alone swaps in the course's
        for p in model.parameters():
            p.requires_grad = False
        for name, m in list(model.named_modules()):
            if isinstance(m, nn.Linear) and any(name.endswith(t) for t in targets):
                parent, _, child = name.rpartition(".")
                setattr(model.get_submodule(parent), child, LoRALinear(m, r, alpha))  # noqa: F821 - swapped in by the check
        return sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert check("lora.apply_lora", recursive, quiet=True)
    uses_the_learners_class.__globals__["LoRALinear"] = None  # a stub's leftover in the learner's namespace: replaced while judged
    try:
        assert check("lora.apply_lora", uses_the_learners_class, quiet=True)
    finally:
        del uses_the_learners_class.__globals__["LoRALinear"]


def test_apply_lora_matching_the_last_name_part_only_wraps_the_wrong_layers():
    def apply_lora(model, targets, r, alpha):  # right for ("c_attn", "c_proj"), but a target may be a longer suffix
        model.requires_grad_(False)
        chosen = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n.split(".")[-1] in targets]
        for name in chosen:
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, ref.LoRALinear(model.get_submodule(name), r, alpha))
        return sum(p.numel() for p in model.parameters() if p.requires_grad)
    e = rejects("lora.apply_lora", apply_lora)  # no last name part is "attn.c_proj": the second probe wraps nothing
    assert "wrapped the wrong layers for targets=('attn.c_proj',)" in e.message


def test_apply_lora_counting_a_tied_tensor_twice_is_rejected():
    def apply_lora(model, targets, r, alpha):
        ref.apply_lora(model, targets, r, alpha)
        return sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False) if p.requires_grad) + model.lm_head.weight.numel()
    rejects("lora.apply_lora", apply_lora)


def test_apply_lora_returning_the_number_of_wrapped_layers_is_rejected():
    def apply_lora(model, targets, r, alpha):
        ref.apply_lora(model, targets, r, alpha)
        return sum(isinstance(m, ref.LoRALinear) for m in model.modules())
    e = rejects("lora.apply_lora", apply_lora)
    assert "returned count of trainable parameters" in e.message
