"""Checks for chapter 09, real pretrained models: `pretrained.SwiGLU` (Llama's MLP),
`pretrained.repeat_kv` (grouped-query attention's sharing of key/value heads),
`pretrained.convert_gpt2_state_dict` (Hugging Face's GPT-2 weights into the course GPT) and
`pretrained.tokens_cost` (what an API call costs).

Every probe has all its dimensions different, so a swapped axis cannot pass by coincidence:
SwiGLU runs C=6 -> hidden 10 on x[2, 3, 6]; repeat_kv gets x[B=2, H_kv=3, T=5, D=4] (and others);
the GPT-2 state dicts have V=29, 11 positions, C=12, 3 heads and 2 layers (3C = 36, 4C = 48).

`convert_gpt2_state_dict` is judged the way it is used: the learner's dict is loaded with
`strict=True` into a course GPT (GPT-2's settings: tanh GELU, biases, tied), which then computes
logits. What comes back is plain data: the keys it lacks, the keys it should not have, the
tensors of the wrong shape, and the logits once it loads. The logits are what catch the one
mistake no name or shape reveals: attn.c_proj is square (C x C), so an untransposed one loads.
The first probe's dict holds the causal-mask buffers older transformers versions saved
(`attn.bias`, `attn.masked_bias`); the second holds none, as transformers 5 saves it.
References: llmlab.nn.mlp.MLP (activation="swiglu"), llmlab.nn.attention.repeat_kv,
llmlab.models.gpt2.convert_gpt2_state_dict, llmlab.text.pricing.tokens_cost.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from llmlab.checks.core import CheckFailed, Exercise, Mistake, Probe, close, describe, equal, is_real_tensor, randn, register
from llmlab.checks.modules import load_weights
from llmlab.models import gpt2 as gpt2_ref
from llmlab.models.gpt import GPT, GPTConfig
from llmlab.nn import attention as attention_ref
from llmlab.nn.mlp import MLP
from llmlab.text import pricing as pricing_ref


# ----------------------------------------------------------------------------- SwiGLU
def swiglu_reference(d_model: int, d_hidden: int) -> nn.Module:
    """The course's SwiGLU: llmlab.nn.mlp.MLP with Llama's names (gate_proj, up_proj, down_proj), no biases."""
    return MLP(d_model, bias=False, activation="swiglu", hidden=d_hidden)


SWIGLU_NAMING = ("it needs gate_proj = nn.Linear(d_model, d_hidden, bias=False), up_proj = nn.Linear(d_model, d_hidden, bias=False) "
                 "and down_proj = nn.Linear(d_hidden, d_model, bias=False)")


def _swiglu_inputs(C, hidden, *shape, scale=1.0):
    def make(g):
        w = {"gate_proj.weight": randn(g, hidden, C, scale=C ** -0.5), "up_proj.weight": randn(g, hidden, C, scale=C ** -0.5),
             "down_proj.weight": randn(g, C, hidden, scale=hidden ** -0.5)}
        return C, hidden, randn(g, *shape, C, scale=scale), w
    return make


def _swiglu_run(cls, C, hidden, x, w):
    m = load_weights(cls(C, hidden), w, "SwiGLU", naming=SWIGLU_NAMING).eval()
    with torch.no_grad():
        return m(x)


def _swiglu_variant(kind):
    class SwiGLU(nn.Module):
        def __init__(self, d_model, d_hidden):
            super().__init__()
            self.gate_proj = nn.Linear(d_model, d_hidden, bias=False)
            self.up_proj = nn.Linear(d_model, d_hidden, bias=False)
            self.down_proj = nn.Linear(d_hidden, d_model, bias=False)

        def forward(self, x):
            gate, up = self.gate_proj(x), self.up_proj(x)
            h = {"silu_on_up": lambda: gate * F.silu(up), "gelu": lambda: F.gelu(gate) * up, "no_gate": lambda: F.silu(gate),
                 "sum": lambda: F.silu(gate) + up, "silu_after": lambda: F.silu(gate * up), "sigmoid": lambda: torch.sigmoid(gate) * up,
                 "relu": lambda: F.relu(gate) * up}[kind]()
            return self.down_proj(h)
    return SwiGLU


register(Exercise(
    id="pretrained.SwiGLU",
    signature="SwiGLU(d_model, d_hidden); forward(x[..., C]) -> [..., C] = down_proj(silu(gate_proj(x)) * up_proj(x)); "
              "gate_proj, up_proj = Linear(C, hidden, bias=False), down_proj = Linear(hidden, C, bias=False)",
    reference=swiglu_reference,
    kind="class",
    points=2,
    probes=[
        Probe("d_model=6, d_hidden=10 on x[2, 3, 6]", _swiglu_inputs(6, 10, 2, 3), run=_swiglu_run),
        Probe("d_model=8, d_hidden=12 on x[3, 5, 8], large pre-activations (x * 3)", _swiglu_inputs(8, 12, 3, 5, scale=3.0), run=_swiglu_run),
        Probe("a single vector x[7] (d_model=7, d_hidden=4)", _swiglu_inputs(7, 4), run=_swiglu_run),
    ],
    mistakes=[
        Mistake("the SiLU goes on the gate branch: silu(gate_proj(x)) * up_proj(x); yours is on up_proj", _swiglu_variant("silu_on_up")),
        Mistake("the activation is SiLU (F.silu, x * sigmoid(x): the \"Swish\" of SwiGLU), not GELU", _swiglu_variant("gelu")),
        Mistake("multiply the gate by up_proj(x): silu(gate_proj(x)) * up_proj(x); without the product there is no gating "
                "(and up_proj is never used)", _swiglu_variant("no_gate")),
        Mistake("the gate multiplies: silu(gate_proj(x)) * up_proj(x), not +", _swiglu_variant("sum")),
        Mistake("apply the SiLU to gate_proj(x) alone, then multiply: silu(gate_proj(x)) * up_proj(x), not silu(gate * up)",
                _swiglu_variant("silu_after")),
        Mistake("SiLU is x * sigmoid(x), not sigmoid(x) alone (a sigmoid gate is the original GLU): use F.silu", _swiglu_variant("sigmoid")),
        Mistake("the activation is SiLU (F.silu), not ReLU", _swiglu_variant("relu")),
    ],
))


# ----------------------------------------------------------------------------- repeat_kv
def _kv_inputs(B, H_kv, T, D, n_rep):
    return lambda g: (randn(g, B, H_kv, T, D), n_rep)


def _rkv(how):
    def repeat_kv(x, n_rep):
        if how == "tile":  # 0, 1, 2, 0, 1, 2: the heads in the wrong order
            return x.repeat(1, n_rep, 1, 1)
        if how == "flat":
            return x.repeat_interleave(n_rep)
        return x.repeat_interleave(n_rep, dim={"batch": 0, "time": 2, "width": 3}[how])
    return repeat_kv


register(Exercise(
    id="pretrained.repeat_kv",
    signature="repeat_kv(x: Tensor[B, H_kv, T, D], n_rep: int) -> Tensor[B, H_kv * n_rep, T, D]  # head j of the output is kv head j // n_rep",
    reference=attention_ref.repeat_kv,
    points=2,
    probes=[
        Probe("x[2, 3, 5, 4] (B, H_kv, T, D), n_rep=2", _kv_inputs(2, 3, 5, 4, 2), compare=equal()),
        Probe("x[3, 2, 4, 6], n_rep=3", _kv_inputs(3, 2, 4, 6, 3), compare=equal()),
        Probe("multi-query attention: one kv head, x[2, 1, 3, 5], n_rep=4", _kv_inputs(2, 1, 3, 5, 4), compare=equal()),
        Probe("n_rep=1 leaves the heads as they are: x[4, 3, 2, 5]", _kv_inputs(4, 3, 2, 5, 1), compare=equal()),
    ],
    mistakes=[
        Mistake("each kv head is repeated n_rep times in a row (head j reads kv head j // n_rep: 0, 0, 1, 1, 2, 2); "
                "x.repeat tiles the whole head axis (0, 1, 2, 0, 1, 2): use x.repeat_interleave(n_rep, dim=1)", _rkv("tile")),
        Mistake("repeat the head axis, dim=1 of [B, H_kv, T, D], not the batch axis (dim=0)", _rkv("batch")),
        Mistake("repeat the head axis, dim=1 of [B, H_kv, T, D], not the time axis (dim=2)", _rkv("time")),
        Mistake("repeat the head axis, dim=1 of [B, H_kv, T, D], not the head width (dim=3)", _rkv("width")),
        Mistake("without dim=, repeat_interleave flattens the tensor first: pass dim=1, the head axis", _rkv("flat")),
    ],
))


# ----------------------------------------------------------------------------- convert_gpt2_state_dict
def _cfg(V, T, L, H, C) -> dict:
    # plain data: probe inputs cross the grader's sandbox boundary as JSON + tensors
    return dict(vocab_size=V, block_size=T, n_layer=L, n_head=H, n_embd=C)


def _hf_gpt2_state(g, cfg: dict, mask_buffers: bool) -> dict[str, torch.Tensor]:
    """A GPT2LMHeadModel state dict, in its order and layout: Conv1D weights [in, out], lm_head tied
    to wte (an equal tensor), and, like older transformers versions, each block's causal mask."""
    V, T, C = cfg["vocab_size"], cfg["block_size"], cfg["n_embd"]
    wte = randn(g, V, C)
    sd = {"transformer.wte.weight": wte, "transformer.wpe.weight": randn(g, T, C, scale=0.5)}

    def ln(name):
        sd[name + ".weight"], sd[name + ".bias"] = 1.0 + randn(g, C, scale=0.2), randn(g, C, scale=0.1)

    def conv1d(name, n_in, n_out):  # Conv1D: weight [in, out]
        sd[name + ".weight"], sd[name + ".bias"] = randn(g, n_in, n_out, scale=n_in ** -0.5), randn(g, n_out, scale=0.1)

    for i in range(cfg["n_layer"]):
        h = f"transformer.h.{i}"
        ln(f"{h}.ln_1")
        if mask_buffers:  # buffers come before the submodules' parameters in a state dict
            sd[f"{h}.attn.bias"] = torch.ones(T, T, dtype=torch.bool).tril().view(1, 1, T, T)
            sd[f"{h}.attn.masked_bias"] = torch.tensor(-1e4)
        conv1d(f"{h}.attn.c_attn", C, 3 * C)
        conv1d(f"{h}.attn.c_proj", C, C)
        ln(f"{h}.ln_2")
        conv1d(f"{h}.mlp.c_fc", C, 4 * C)
        conv1d(f"{h}.mlp.c_proj", 4 * C, C)
    ln("transformer.ln_f")
    sd["lm_head.weight"] = wte.clone()
    return sd


def _convert_inputs(cfg: dict, B: int, T: int, mask_buffers: bool):
    return lambda g: (_hf_gpt2_state(g, cfg, mask_buffers), cfg, torch.randint(cfg["vocab_size"], (B, T), generator=g))


def _course_gpt(cfg: dict) -> GPT:
    with torch.random.fork_rng(devices=[]):  # its init is overwritten by the load; leave the learner's RNG alone
        torch.manual_seed(0)
        return GPT(GPTConfig(**cfg, activation="gelu_tanh"))  # GPT-2's tanh GELU, biases, tied


def _loaded(fn, hf, cfg, idx) -> dict:
    """Load the learner's dict into a course GPT with strict=True: what fails, and the logits once it loads."""
    out = fn(hf)
    if not isinstance(out, dict):
        raise CheckFailed(f"expected a dict of name -> tensor (what load_state_dict takes), got {type(out).__name__}: {describe(out)}")
    bad = [repr(k) for k, v in out.items() if not isinstance(k, str) or not is_real_tensor(v)]
    if bad:
        raise CheckFailed(f"every key must be a name (str) and every value a torch.Tensor; not so for {', '.join(bad[:3])}")
    model = _course_gpt(cfg)
    want = model.state_dict()
    props = {"missing": [k for k in want if k not in out], "unexpected": sorted(set(out) - set(want)),  # orders that do not depend on the learner's dict
             "wrong shape": [(k, tuple(out[k].shape), tuple(want[k].shape)) for k in want if k in out and out[k].shape != want[k].shape],
             "logits": None}
    if not (props["missing"] or props["unexpected"] or props["wrong shape"]):
        model.load_state_dict(out, strict=True)
        with torch.no_grad():
            props["logits"] = model.eval()(idx)[0]
    return props


def _few(names: list) -> str:
    return ", ".join(names[:3]) + (f" (and {len(names) - 3} more)" if len(names) > 3 else "")


def _loaded_compare(got, expected, args):
    if not isinstance(got, dict) or set(got) != set(expected):
        raise CheckFailed(f"unexpected output {describe(got)}")
    if got["missing"] != expected["missing"]:
        if got["missing"]:
            raise CheckFailed(f"the course GPT needs {len(got['missing'])} key(s) your dict lacks: {_few(got['missing'])}; "
                              "load_state_dict(strict=True) refuses it")
        raise CheckFailed(f"your dict has every key, unlike this mistake (which lacks {_few(expected['missing'])})")
    if got["unexpected"] != expected["unexpected"]:
        if got["unexpected"]:
            raise CheckFailed(f"your dict has {len(got['unexpected'])} key(s) the course GPT does not: {_few(got['unexpected'])}; "
                              "load_state_dict(strict=True) refuses them")
        raise CheckFailed(f"your dict has no extra key, unlike this mistake ({_few(expected['unexpected'])})")
    if list(got["wrong shape"]) != list(expected["wrong shape"]):
        if got["wrong shape"]:
            k, shape, want = got["wrong shape"][0]
            raise CheckFailed(f"{len(got['wrong shape'])} tensor(s) have a shape the course GPT's parameter does not: "
                              f"`{k}` is {tuple(shape)}, the course GPT's is {tuple(want)}")
        raise CheckFailed("your tensors have the course GPT's shapes, unlike this mistake")
    if expected["logits"] is not None:
        # the same weights through the same model: a right dict gives the same numbers bit for bit; 1e-5 leaves room for
        # a different but equal copy (.t() vs .T vs permute), while every wrong weight moves some logit by more than 0.1
        close(1e-5, 1e-5, "logits (the course GPT loaded with your dict)")(got["logits"], expected["logits"])


def _convert(transpose="conv1d", masks="drop", lm_head="keep", rename=True):
    """A wrong conversion: one switch away from the reference."""
    conv1d = (".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight", ".mlp.c_proj.weight")

    def convert_gpt2_state_dict(hf):
        out = {}
        for k, v in hf.items():
            if masks == "drop" and k.endswith((".attn.bias", ".attn.masked_bias")):
                continue
            if masks == "greedy" and k.endswith(("attn.bias", "attn.masked_bias")):  # also drops c_attn.bias
                continue
            if lm_head == "drop" and k == "lm_head.weight":
                continue
            t = {"conv1d": k.endswith(conv1d), "none": False,
                 "no_attn_c_proj": k.endswith(conv1d) and not k.endswith(".attn.c_proj.weight"),  # the square one looks right
                 "no_c_proj": k.endswith((".attn.c_attn.weight", ".mlp.c_fc.weight")),
                 "all_2d": v.dim() == 2,
                 "with_lm_head": k.endswith(conv1d) or k == "lm_head.weight"}[transpose]
            if t:
                v = v.t()
            out[k.replace("transformer.wpe.", "transformer.pos.wpe.") if rename else k] = v
        return out
    return convert_gpt2_state_dict


register(Exercise(
    id="pretrained.convert_gpt2_state_dict",
    signature="convert_gpt2_state_dict(hf: dict[str, Tensor]) -> dict[str, Tensor]  # Hugging Face GPT-2 names and Conv1D layout "
              "-> the course GPT's names and nn.Linear layout; loads with strict=True",
    reference=gpt2_ref.convert_gpt2_state_dict,
    points=3,
    probes=[
        Probe("a 2-layer GPT-2 (V=29, 11 positions, C=12, 3 heads) with an old checkpoint's mask buffers: loads strictly, same logits",
              _convert_inputs(_cfg(29, 11, 2, 3, 12), B=2, T=7, mask_buffers=True), run=_loaded, compare=_loaded_compare),
        Probe("a 1-layer GPT-2 (V=17, 9 positions, C=8, 2 heads) without mask buffers, a full context: loads strictly, same logits",
              _convert_inputs(_cfg(17, 9, 1, 2, 8), B=3, T=9, mask_buffers=False), run=_loaded, compare=_loaded_compare),
    ],
    mistakes=[
        Mistake("GPT-2's Conv1D weights are stored [in, out] and nn.Linear wants [out, in]: transpose (.t()) the weights of "
                "attn.c_attn, attn.c_proj, mlp.c_fc and mlp.c_proj", _convert(transpose="none")),
        Mistake("attn.c_proj.weight is square (C x C), so it loads untransposed without an error, but it is a Conv1D weight like "
                "the others: transpose it too (choose the four by name, not by whether the shape fits)", _convert(transpose="no_attn_c_proj")),
        Mistake("both c_proj weights are Conv1D weights too: transpose attn.c_proj.weight and mlp.c_proj.weight as well",
                _convert(transpose="no_c_proj")),
        Mistake("only the Conv1D weights are stored [in, out]: wte and wpe (nn.Embedding) and lm_head (nn.Linear) already have "
                "PyTorch's layout. Transpose by name, not every 2-D tensor", _convert(transpose="all_2d")),
        Mistake("lm_head is an nn.Linear in Hugging Face's GPT-2 too, stored [V, C] like wte, to which it is tied: leave it as it is",
                _convert(transpose="with_lm_head")),
        Mistake("keep lm_head.weight: it is tied to wte, but the course GPT's state_dict lists the shared matrix under both names, "
                "and strict=True wants both", _convert(lm_head="drop")),
        Mistake("drop the causal-mask buffers (names ending in .attn.bias and .attn.masked_bias): they are not parameters, "
                "and the course GPT builds its own mask", _convert(masks="keep")),
        Mistake("`.attn.c_attn.bias` ends in \"attn.bias\" too, and it is a real parameter: drop only the names ending in "
                "\".attn.bias\" (with the dot) and \".attn.masked_bias\"", _convert(masks="greedy")),
        Mistake("learned positions live at transformer.pos.wpe.weight in the course GPT (transformer.wpe.weight in Hugging Face's): rename them",
                _convert(rename=False)),
    ],
))


# ----------------------------------------------------------------------------- tokens_cost
def _cost_run(fn, n_input, n_output, price_in, price_out):
    v = fn(n_input, n_output, price_in, price_out)
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise CheckFailed(f"tokens_cost returned {type(v).__name__}: {describe(v)}, expected a float (dollars)")
    return float(v)


def _cost_compare(got, expected, args):
    # a handful of float64 operations: rounding is ~1e-16 relative; every known mistake is off by a factor (1000, 4, ...)
    if abs(got - expected) > 1e-12 + 1e-9 * abs(expected):
        raise CheckFailed(f"tokens_cost{args} = {got:.6g}, expected {expected:.6g} dollars")


def _cost(kind):
    def tokens_cost(n_input, n_output, price_in, price_out):
        return {"per_1k": (n_input * price_in + n_output * price_out) / 1_000, "swapped": (n_input * price_out + n_output * price_in) / 1e6,
                "one_price": (n_input + n_output) * price_in / 1e6, "per_token": n_input * price_in + n_output * price_out}[kind]
    return tokens_cost


register(Exercise(
    id="pretrained.tokens_cost",
    signature="tokens_cost(n_input: int, n_output: int, price_in: float, price_out: float) -> float  # dollars; prices per 1,000,000 tokens",
    reference=pricing_ref.tokens_cost,
    points=1,
    probes=[
        Probe("1,200 prompt tokens and 300 generated at $2.50 / $10.00 per million", lambda g: (1_200, 300, 2.5, 10.0),
              run=_cost_run, compare=_cost_compare),
        Probe("a million input tokens, nothing generated, at $3 / $15", lambda g: (1_000_000, 0, 3.0, 15.0), run=_cost_run, compare=_cost_compare),
        Probe("only output: 2,000 generated tokens at $0.15 / $0.60", lambda g: (0, 2_000, 0.15, 0.6), run=_cost_run, compare=_cost_compare),
        Probe("a long chat: 123,456 in, 7,890 out at $1.25 / $5.00", lambda g: (123_456, 7_890, 1.25, 5.0), run=_cost_run, compare=_cost_compare),
    ],
    mistakes=[
        Mistake("prices are per 1,000,000 tokens (per million), not per 1,000: divide by 1_000_000", _cost("per_1k")),
        Mistake("input tokens cost price_in and output tokens price_out; yours are swapped", _cost("swapped")),
        Mistake("generated tokens have their own price: n_output * price_out (usually several times price_in)", _cost("one_price")),
        Mistake("the prices are per million tokens, not per token: divide by 1_000_000", _cost("per_token")),
    ],
))
