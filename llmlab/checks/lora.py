"""Checks for chapter 14, LoRA: `lora.LoRALinear` (a frozen Linear plus a scaled low-rank update),
`lora.merge` (the update folded into one Linear) and `lora.apply_lora` (wrap Linears by name, freeze
the rest, count what trains). References: llmlab.nn.lora.

Every probe has in != out != r and alpha != r (so alpha in place of alpha / r, and A and B swapped,
change the numbers), except the first probe of `merge`, which is square so that a transposed B @ A
still runs and can be named. LoRALinear's probes build the learner's module around a fixed base
(under a fixed seed: a random B then always draws the same numbers) and report, as plain data, which
parameters train, whether the output at initialisation is the base's, and the output once fixed A and
B are loaded. apply_lora's probes wrap a small course GPT (GELU and SwiGLU variants; `judged_alone`:
the course's LoRALinear stands in for the learner's while it runs) and report the count returned,
the wrapped modules, the trainable parameters and the logits once every B is set.
"""

from __future__ import annotations

import torch
from torch import nn

from llmlab.checks.core import CheckFailed, Exercise, Mistake, Probe, close, describe, equal, judged_alone, randn, register
from llmlab.checks.modules import as_module, build_model, model_spec
from llmlab.models.gpt import GPT, GPTConfig
from llmlab.nn import lora as ref

ATOL, RTOL = 1e-5, 1e-4  # float32 rounding of a few small matmuls is ~1e-6; every known mistake is off by > 1e-2
NAMING = "it needs base (the nn.Linear it was given), lora_A = nn.Linear(in, r, bias=False) and lora_B = nn.Linear(r, out, bias=False)"
HINT_TRANSPOSED = ("lora_A maps in -> r and lora_B maps r -> out, as nn.Linear layers: lora_A = nn.Linear(in, r, bias=False) has a weight "
                   "of shape (r, in) and lora_B = nn.Linear(r, out, bias=False) one of (out, r) (peft's layout); call them, lora_B(lora_A(x))")


def _linear(in_f: int, out_f: int, W: torch.Tensor, b: torch.Tensor | None) -> nn.Linear:
    base = nn.Linear(in_f, out_f, bias=b is not None)
    with torch.no_grad():
        base.weight.copy_(W)
        if b is not None:
            base.bias.copy_(b)
    return base


def _layer_inputs(in_f: int, out_f: int, r: int, alpha: float, bias: bool = True, lead: tuple[int, ...] = (3, 2)):
    def make(g):
        W = randn(g, out_f, in_f, scale=in_f ** -0.5)
        b = randn(g, out_f, scale=0.1) if bias else None
        A, B = randn(g, r, in_f, scale=in_f ** -0.5), randn(g, out_f, r, scale=0.5)
        return in_f, out_f, W, b, r, alpha, randn(g, *lead, in_f), A, B
    return make


# ----------------------------------------------------------------------------- LoRALinear
def _lora_run(cls, in_f, out_f, W, b, r, alpha, x, A, B):
    base = _linear(in_f, out_f, W, b)
    with torch.random.fork_rng():
        torch.manual_seed(0)  # a learner's random init draws the same numbers every time: diagnosable
        m = as_module(cls(base, r, alpha), "LoRALinear")
    parts = {name: getattr(m, name, None) for name in ("base", "lora_A", "lora_B")}
    missing = [n for n, p in parts.items() if not isinstance(p, nn.Module)]
    if missing:
        raise CheckFailed(f"your LoRALinear has no submodule {', '.join(missing)}; {NAMING}")
    wa, wb = getattr(parts["lora_A"], "weight", None), getattr(parts["lora_B"], "weight", None)
    if not isinstance(wa, torch.Tensor) or not isinstance(wb, torch.Tensor):
        raise CheckFailed(f"lora_A and lora_B need a .weight each; {NAMING}")
    if tuple(wa.shape) == (in_f, r) and tuple(wb.shape) == (r, out_f):
        raise CheckFailed(f"lora_A.weight has shape {tuple(wa.shape)} and lora_B.weight {tuple(wb.shape)}: the transposes of "
                          f"({r}, {in_f}) and ({out_f}, {r})", hint=HINT_TRANSPOSED)
    if tuple(wa.shape) != (r, in_f) or tuple(wb.shape) != (out_f, r):
        raise CheckFailed(f"lora_A.weight has shape {tuple(wa.shape)} and lora_B.weight {tuple(wb.shape)}; expected ({r}, {in_f}) and "
                          f"({out_f}, {r}) for in={in_f}, out={out_f}, r={r}")
    if getattr(parts["lora_A"], "bias", None) is not None or getattr(parts["lora_B"], "bias", None) is not None:
        raise CheckFailed("lora_A or lora_B has a bias; LoRA's two matrices have none (bias=False): the base keeps its own bias")
    trainable = dict(sorted((n, bool(p.requires_grad)) for n, p in m.named_parameters()))
    m.eval()
    with torch.no_grad():
        starts_as_base = bool(torch.allclose(m(x), base(x), atol=ATOL, rtol=RTOL))
        wa.copy_(A)
        wb.copy_(B)
        y = m(x)
    return {"trainable": trainable, "starts_as_base": starts_as_base, "output": y}


def _lora_compare(got, expected, args):
    if not isinstance(got, dict) or set(got) != set(expected):
        raise CheckFailed(f"unexpected output {describe(got)}")
    if got["trainable"] != expected["trainable"]:
        wrong = [n for n in expected["trainable"] if got["trainable"].get(n) != expected["trainable"][n]]
        extra = [n for n in got["trainable"] if n not in expected["trainable"]]
        raise CheckFailed(f"requires_grad is wrong for {', '.join(wrong + extra)}: expected {expected['trainable']}, got {got['trainable']}")
    if got["starts_as_base"] != expected["starts_as_base"]:
        raise CheckFailed("at initialisation your layer's output differs from base(x)" if expected["starts_as_base"]
                          else "your layer starts as base(x), unlike this mistake")
    close(ATOL, RTOL, "output with A and B set")(got["output"], expected["output"])


def _lora_variant(kind: str):
    class WrongLoRALinear(nn.Module):
        def __init__(self, base, r, alpha):
            super().__init__()
            self.base, self.r, self.alpha = base, r, alpha
            if kind == "transposed":  # A [in, r], B [r, out], used as x @ A @ B
                self.lora_A = nn.Linear(r, base.in_features, bias=False)
                self.lora_B = nn.Linear(base.out_features, r, bias=False)
            else:
                self.lora_A = nn.Linear(base.in_features, r, bias=False)
                self.lora_B = nn.Linear(r, base.out_features, bias=False)
            if kind != "both_random":
                nn.init.zeros_(self.lora_B.weight)
            if kind != "base_trainable":
                for p in base.parameters():
                    p.requires_grad_(False)

        def forward(self, x):
            scale = self.alpha if kind == "alpha" else self.alpha / self.r
            if kind == "transposed":
                return self.base(x) + scale * (x @ self.lora_A.weight @ self.lora_B.weight)
            return self.base(x) + scale * self.lora_B(self.lora_A(x))
    return WrongLoRALinear


register(Exercise(
    id="lora.LoRALinear",
    signature="LoRALinear(base: nn.Linear, r: int, alpha: float); submodules base (frozen), lora_A = Linear(in, r, bias=False), "
              "lora_B = Linear(r, out, bias=False), lora_B zero at init; forward(x) = base(x) + (alpha / r) * lora_B(lora_A(x))",
    reference=ref.LoRALinear,
    kind="class",
    points=3,
    probes=[
        Probe("in=6, out=5, r=2, alpha=3 on x[3, 2, 6]", _layer_inputs(6, 5, 2, 3.0), run=_lora_run, compare=_lora_compare),
        Probe("in=7, out=4, r=3, alpha=12", _layer_inputs(7, 4, 3, 12.0, lead=(5,)), run=_lora_run, compare=_lora_compare),
        Probe("a base without bias: in=4, out=9, r=4, alpha=2", _layer_inputs(4, 9, 4, 2.0, bias=False, lead=(2, 3)), run=_lora_run,
              compare=_lora_compare),
    ],
    mistakes=[
        Mistake("lora_B starts at zero (nn.init.zeros_(self.lora_B.weight)): then B A = 0 and the wrapped layer computes exactly what the "
                "base did until training moves B; only A is random", _lora_variant("both_random")),
        Mistake("scale the update by alpha / r, not alpha: (self.alpha / self.r) * lora_B(lora_A(x)), so one learning rate serves every rank",
                _lora_variant("alpha")),
        Mistake("freeze the base: p.requires_grad_(False) for every parameter of base; only lora_A and lora_B train",
                _lora_variant("base_trainable")),
        Mistake(HINT_TRANSPOSED, _lora_variant("transposed")),
    ],
))


# ----------------------------------------------------------------------------- merge
def _merge_run(fn, in_f, out_f, W, b, r, alpha, x, A, B):
    layer = ref.LoRALinear(_linear(in_f, out_f, W, b), r, alpha)
    with torch.no_grad():
        layer.lora_A.weight.copy_(A)
        layer.lora_B.weight.copy_(B)
        before = layer(x)
    merged = fn(layer)
    if not isinstance(merged, nn.Linear) or isinstance(merged, ref.LoRALinear):
        raise CheckFailed(f"expected a plain nn.Linear, got {type(merged).__name__}; build nn.Linear(in, out, bias=...) and copy the merged weight in")
    with torch.no_grad():
        return {"weight": merged.weight.detach().clone(), "bias": None if merged.bias is None else merged.bias.detach().clone(),
                "output": merged(x), "layer_unchanged": bool(torch.equal(layer(x), before))}


def _merge_compare(got, expected, args):
    if not isinstance(got, dict) or set(got) != set(expected):
        raise CheckFailed(f"unexpected output {describe(got)}")
    if (got["bias"] is None) != (expected["bias"] is None):
        raise CheckFailed("the merged Linear has a bias but the base has none" if expected["bias"] is None
                          else "the merged Linear has no bias; it keeps the base's bias")
    close(ATOL, RTOL, "merged weight")(got["weight"], expected["weight"])
    if expected["bias"] is not None:
        close(ATOL, RTOL, "merged bias")(got["bias"], expected["bias"])
    close(ATOL, RTOL, "merged output")(got["output"], expected["output"])
    if got["layer_unchanged"] != expected["layer_unchanged"]:
        raise CheckFailed("merging changed the LoRALinear it was given (its output moved): build a new nn.Linear and leave `layer` as it was"
                          if expected["layer_unchanged"] else "your merge leaves the layer unchanged, unlike this mistake")


def _merge_variant(kind: str):
    def merge(layer):
        base = layer.base
        delta = layer.lora_B.weight @ layer.lora_A.weight  # (out, r) @ (r, in)
        if kind == "transposed":
            delta = delta.T  # (in, out): runs only when in == out
        scale = 1.0 if kind == "no_scale" else layer.alpha / layer.r
        if kind == "in_place":
            with torch.no_grad():
                base.weight += scale * delta
            return base
        out = nn.Linear(base.in_features, base.out_features, bias=base.bias is not None and kind != "no_bias")
        with torch.no_grad():
            out.weight.copy_(base.weight + scale * delta)
            if out.bias is not None:
                out.bias.copy_(base.bias)
        return out
    return merge


register(Exercise(
    id="lora.merge",
    signature="merge(layer: LoRALinear) -> nn.Linear  # a plain Linear with weight W + (alpha / r) * B @ A and the base's bias: the same outputs",
    reference=ref.merge,
    points=1,
    probes=[
        Probe("square: in=out=6, r=2, alpha=5", _layer_inputs(6, 6, 2, 5.0), run=_merge_run, compare=_merge_compare),
        Probe("in=7, out=4, r=3, alpha=1.5", _layer_inputs(7, 4, 3, 1.5), run=_merge_run, compare=_merge_compare),
        Probe("a base without bias, square: in=out=5, r=4, alpha=8", _layer_inputs(5, 5, 4, 8.0, bias=False), run=_merge_run, compare=_merge_compare),
    ],
    mistakes=[
        Mistake("the update is scaled as in forward: W + (alpha / r) * B @ A (layer.scaling), not W + B @ A", _merge_variant("no_scale")),
        Mistake("B @ A is (out, r) @ (r, in) = (out, in), the shape of W, as it is: no transpose", _merge_variant("transposed")),
        Mistake("build a new nn.Linear: adding to layer.base.weight in place also changes the LoRALinear (its base now holds the update, "
                "and its forward adds it a second time)", _merge_variant("in_place")),
        Mistake("keep the base's bias: nn.Linear(in, out, bias=layer.base.bias is not None) and copy it", _merge_variant("no_bias")),
    ],
))


# ----------------------------------------------------------------------------- apply_lora
def _apply_inputs(cfg: dict, targets: tuple[str, ...], r: int, alpha: float):
    def make(g):
        with torch.random.fork_rng():
            torch.manual_seed(int(torch.randint(1 << 30, (1,), generator=g)))
            spec = model_spec(GPT(GPTConfig(**cfg)))
        idx = torch.randint(cfg["vocab_size"], (2, 5), generator=g)
        return spec, tuple(targets), r, alpha, idx, int(torch.randint(1 << 30, (1,), generator=g))
    return make


def _apply_plain(fn, spec, targets, r, alpha, idx, seed):
    model = build_model(spec)
    with torch.random.fork_rng():
        torch.manual_seed(seed)  # the adapters' A: the same numbers for every candidate
        returned = fn(model, targets, r, alpha)
    if isinstance(returned, torch.Tensor) and returned.numel() == 1:
        returned = int(returned.item())
    wrapped = sorted(n for n, m in model.named_modules() if hasattr(m, "lora_A") and hasattr(m, "lora_B"))
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    count = sum(p.numel() for p in model.parameters() if p.requires_grad)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n in wrapped:  # B is zero at init: give it values, so the logits test the wrapping
            w = model.get_submodule(n).lora_B.weight
            w.copy_(torch.randn(w.shape, generator=g) * 0.5)
        logits = model.eval()(idx)[0]
    return {"returned": returned, "wrapped": wrapped, "trainable": trainable, "count": count, "logits": logits}


_apply_run = judged_alone({"LoRALinear": ref.LoRALinear, "merge": ref.merge}, run=_apply_plain)


def _apply_compare(got, expected, args):
    if not isinstance(got, dict) or set(got) != set(expected):
        raise CheckFailed(f"unexpected output {describe(got)}")
    if got["wrapped"] != expected["wrapped"]:
        missing = [n for n in expected["wrapped"] if n not in got["wrapped"]]
        extra = [n for n in got["wrapped"] if n not in expected["wrapped"]]
        raise CheckFailed(f"wrapped the wrong layers for targets={args[1]}: missing {missing[:3]}, not to be wrapped {extra[:3]}")
    if got["trainable"] != expected["trainable"]:
        extra = [n for n in got["trainable"] if n not in expected["trainable"]]
        missing = [n for n in expected["trainable"] if n not in got["trainable"]]
        raise CheckFailed(f"the wrong parameters train: {len(extra)} should be frozen (e.g. {extra[:2]}), {len(missing)} should train "
                          f"(e.g. {missing[:2]})")
    if type(got["returned"]) is not int:
        raise CheckFailed(f"expected the number of trainable parameters as an int, got {describe(got['returned'])}")
    equal("returned count of trainable parameters")(got["returned"], expected["returned"])  # the reference returns the true count
    close(ATOL, RTOL, "logits of the wrapped model (every B set)")(got["logits"], expected["logits"])


def _apply_variant(kind: str):
    def apply_lora(model, targets, r, alpha):
        if kind == "nested_missed":  # only the model's direct children
            chosen = [n for n, m in model.named_children() if isinstance(m, nn.Linear) and n.endswith(tuple(targets))]
        elif kind == "every_linear":
            chosen = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        else:
            chosen = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n.endswith(tuple(targets))]
        if kind != "rest_trainable":
            for p in model.parameters():
                p.requires_grad_(False)
        for name in chosen:
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, ref.LoRALinear(getattr(parent, child), r, alpha))
        if kind == "total":
            return sum(p.numel() for p in model.parameters())
        return sum(p.numel() for p in model.parameters() if p.requires_grad)
    return apply_lora


_GELU = dict(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=8)
_SWIGLU = dict(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_kv_head=1, n_embd=8, bias=False, norm="rmsnorm", activation="swiglu",
               mlp_hidden=12, pos_encoding="rope")

register(Exercise(
    id="lora.apply_lora",
    signature="apply_lora(model: nn.Module, targets: tuple[str, ...], r: int, alpha: float) -> int  # every nn.Linear whose qualified name "
              "ends with one of targets becomes a LoRALinear; every other parameter is frozen; returns the number of trainable parameters",
    reference=ref.apply_lora,
    points=2,
    probes=[
        Probe("a 2-block GPT, targets ('c_attn', 'c_proj', 'c_fc'), r=2, alpha=4", _apply_inputs(_GELU, ("c_attn", "c_proj", "c_fc"), 2, 4.0),
              run=_apply_run, compare=_apply_compare),
        Probe("targets ('attn.c_proj',): the MLP's c_proj stays as it is; r=3", _apply_inputs(_GELU, ("attn.c_proj",), 3, 3.0),
              run=_apply_run, compare=_apply_compare),
        Probe("a SwiGLU GPT, targets ('gate_proj', 'down_proj'), r=1, alpha=2", _apply_inputs(_SWIGLU, ("gate_proj", "down_proj"), 1, 2.0),
              run=_apply_run, compare=_apply_compare),
    ],
    mistakes=[
        Mistake("the Linears sit deep inside the model (transformer.h.0.attn.c_attn): walk model.named_modules(), which yields every "
                "module with its qualified name, not model.named_children() (the top level only)", _apply_variant("nested_missed")),
        Mistake("wrap only the Linears whose name ends with one of targets (name.endswith(tuple(targets))); the output layer lm_head is "
                "not a target and stays a frozen nn.Linear", _apply_variant("every_linear")),
        Mistake("freeze every parameter first (p.requires_grad_(False) for p in model.parameters()), then wrap: only the adapters train",
                _apply_variant("rest_trainable")),
        Mistake("return the number of *trainable* parameters, sum(p.numel() for p in model.parameters() if p.requires_grad), not all of them",
                _apply_variant("total")),
    ],
))
