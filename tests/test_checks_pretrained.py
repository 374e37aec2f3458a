"""Chapter 09's checks: each passes the reference and the code of solutions/09_pretrained.ipynb,
accepts other right ways to write it, and rejects a bank of wrong implementations written the
way learners write them (not copies of the checks' own `Mistake`s), with the right hint where the
mistake is a known one. The exercise notebook, unsolved, runs to the end saying "not implemented yet"."""

from __future__ import annotations

import einops
import torch
import torch.nn.functional as F
from torch import nn

from _checks import assert_chapter, assert_unsolved_runs, rejects
from llmlab.checks import check, get_exercise, load_all
from llmlab.checks.core import clone_args, make_generator

load_all()
IDS = ["pretrained.SwiGLU", "pretrained.repeat_kv", "pretrained.convert_gpt2_state_dict", "pretrained.tokens_cost"]


def test_chapter_contract():
    assert_chapter(IDS, "09_pretrained.ipynb")


def test_unsolved_exercise_notebook_runs_to_the_end_saying_not_implemented_yet(capsys):
    """Every code cell of exercises/09_pretrained.ipynb (but the Colab install) runs without raising."""
    assert_unsolved_runs(IDS, "09_pretrained.ipynb", capsys, after="same logits: True")


# ----------------------------------------------------------------------------- SwiGLU
def _swiglu(forward, bias=False, names=("gate_proj", "up_proj", "down_proj"), down_in=None):
    class SwiGLU(nn.Module):
        def __init__(self, d_model, d_hidden):
            super().__init__()
            g, u, d = names
            setattr(self, g, nn.Linear(d_model, d_hidden, bias=bias))
            setattr(self, u, nn.Linear(d_model, d_hidden, bias=bias))
            setattr(self, d, nn.Linear(down_in(d_model, d_hidden) if down_in else d_hidden, d_model, bias=bias))

        def forward(self, x):
            return forward(self, x)
    return SwiGLU


def test_swiglu_with_silu_written_out_and_an_activation_module_passes():
    assert check("pretrained.SwiGLU", _swiglu(lambda m, x: m.down_proj(m.gate_proj(x) * torch.sigmoid(m.gate_proj(x)) * m.up_proj(x))), quiet=True)

    class WithModule(nn.Module):
        def __init__(self, d_model, d_hidden):
            super().__init__()
            self.gate_proj, self.up_proj = nn.Linear(d_model, d_hidden, bias=False), nn.Linear(d_model, d_hidden, bias=False)
            self.down_proj, self.act = nn.Linear(d_hidden, d_model, bias=False), nn.SiLU()

        def forward(self, x):
            return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))
    assert check("pretrained.SwiGLU", WithModule, quiet=True)


def test_swiglu_with_the_activation_on_up_proj_is_rejected():
    def forward(m, x):
        gate = m.gate_proj(x)
        up = nn.SiLU()(m.up_proj(x))  # the activation on the wrong branch
        return m.down_proj(gate * up)
    rejects("pretrained.SwiGLU", _swiglu(forward), hint="the SiLU goes on the gate branch")


def test_swiglu_with_an_nn_gelu_is_rejected():
    rejects("pretrained.SwiGLU", _swiglu(lambda m, x: m.down_proj(nn.GELU()(m.gate_proj(x)) * m.up_proj(x))), hint="not GELU")


def test_swiglu_without_the_up_branch_is_rejected():
    rejects("pretrained.SwiGLU", _swiglu(lambda m, x: m.down_proj(F.silu(m.gate_proj(x)))), hint="without the product there is no gating")


def test_swiglu_with_silu_of_the_product_is_rejected():
    rejects("pretrained.SwiGLU", _swiglu(lambda m, x: m.down_proj(F.silu(m.gate_proj(x) * m.up_proj(x)))), hint="not silu(gate * up)")


def test_swiglu_with_biases_is_rejected_by_name():
    e = rejects("pretrained.SwiGLU", _swiglu(lambda m, x: m.down_proj(F.silu(m.gate_proj(x)) * m.up_proj(x)), bias=True))
    assert "parameter(s) the course's does not: gate_proj.bias" in e.message


def test_swiglu_with_llamas_original_names_is_rejected_by_name():
    e = rejects("pretrained.SwiGLU", _swiglu(lambda m, x: m.w2(F.silu(m.w1(x)) * m.w3(x)), names=("w1", "w3", "w2")))
    assert "no parameter `gate_proj.weight`" in e.message and "gate_proj = nn.Linear(d_model, d_hidden, bias=False)" in e.message


def test_swiglu_with_down_proj_the_wrong_way_round_is_rejected():
    e = rejects("pretrained.SwiGLU", _swiglu(lambda m, x: m.down_proj(F.silu(m.gate_proj(x)) * m.up_proj(x)), down_in=lambda c, h: c))
    assert "`down_proj.weight` has shape" in e.message


# ----------------------------------------------------------------------------- repeat_kv
def test_repeat_kv_probes_have_every_dimension_different():
    ex = get_exercise("pretrained.repeat_kv")
    for i, probe in enumerate(ex.probes):
        x, n_rep = probe.inputs(make_generator(i))
        dims = [d for d in x.shape if d != 1]  # the multi-query probe has H_kv = 1 on purpose
        assert len(set(dims)) == len(dims), (probe.name, tuple(x.shape))


def test_repeat_kv_written_other_right_ways_passes():
    def with_einops(x, n_rep):
        return einops.repeat(x, "b h t d -> b (h r) t d", r=n_rep)

    def with_a_loop(x, n_rep):
        return torch.cat([x[:, i : i + 1] for i in range(x.size(1)) for _ in range(n_rep)], dim=1)

    def with_an_index(x, n_rep):
        return x[:, torch.arange(x.size(1) * n_rep) // n_rep]

    def with_stack(x, n_rep):
        return torch.stack([x] * n_rep, dim=2).flatten(1, 2)  # (B, H_kv, n_rep, T, D) -> (B, H_kv * n_rep, T, D)

    for fn in (with_einops, with_a_loop, with_an_index, with_stack):
        assert check("pretrained.repeat_kv", fn, quiet=True), fn.__name__


def test_repeat_kv_concatenating_copies_is_rejected():
    rejects("pretrained.repeat_kv", lambda x, n_rep: torch.cat([x] * n_rep, dim=1), hint="x.repeat tiles the whole head axis")


def test_repeat_kv_expanding_a_new_axis_before_the_heads_is_rejected():
    def repeat_kv(x, n_rep):
        B, H, T, D = x.shape
        return x[:, None].expand(B, n_rep, H, T, D).reshape(B, n_rep * H, T, D)
    rejects("pretrained.repeat_kv", repeat_kv, hint="x.repeat tiles the whole head axis")


def test_repeat_kv_einops_with_the_groups_outside_is_rejected():
    rejects("pretrained.repeat_kv", lambda x, n_rep: einops.repeat(x, "b h t d -> b (r h) t d", r=n_rep), hint="x.repeat tiles")


def test_repeat_kv_on_the_time_axis_is_rejected():
    rejects("pretrained.repeat_kv", lambda x, n_rep: torch.repeat_interleave(x, n_rep, dim=-2), hint="not the time axis (dim=2)")


def test_repeat_kv_that_swaps_heads_and_time_is_rejected():
    rejects("pretrained.repeat_kv", lambda x, n_rep: x.repeat_interleave(n_rep, dim=1).transpose(1, 2), hint=None)


# ----------------------------------------------------------------------------- convert_gpt2_state_dict
def _nanogpt_style(hf):
    """nanoGPT's from_pretrained: a list of the Conv1D weights, mask buffers filtered by suffix."""
    transposed = ["attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight"]
    keys = [k for k in hf if not k.endswith(".attn.masked_bias") and not k.endswith(".attn.bias")]
    sd = {}
    for k in keys:
        new = "transformer.pos.wpe.weight" if k == "transformer.wpe.weight" else k
        sd[new] = hf[k].T if any(k.endswith(w) for w in transposed) else hf[k]
    return sd


def test_convert_written_other_right_ways_passes():
    import re

    def with_a_regex(hf):
        out = {}
        for k, v in hf.items():
            if re.search(r"\.attn\.(masked_)?bias$", k):
                continue
            if re.search(r"\.(c_attn|c_proj|c_fc)\.weight$", k):
                v = v.permute(1, 0).contiguous()
            out[re.sub(r"^transformer\.wpe\.", "transformer.pos.wpe.", k)] = v
        return out

    def popping_from_a_copy(hf):
        sd = dict(hf)
        for k in [k for k in sd if k.split(".")[-2:] in (["attn", "bias"], ["attn", "masked_bias"])]:
            del sd[k]
        sd["transformer.pos.wpe.weight"] = sd.pop("transformer.wpe.weight")
        for k in sd:
            if k.endswith("weight") and any(p in k for p in ("c_attn", "c_proj", "c_fc")):
                sd[k] = sd[k].t()
        return sd

    for fn in (_nanogpt_style, with_a_regex, popping_from_a_copy):
        assert check("pretrained.convert_gpt2_state_dict", fn, quiet=True), fn.__name__


def test_convert_forgetting_the_square_c_proj_is_caught_only_by_the_logits():
    def convert(hf):  # transposes the Conv1D weights it lists, but the list misses attn.c_proj
        out = {}
        for k, v in hf.items():
            if k.endswith((".attn.bias", ".attn.masked_bias")):
                continue
            if "c_attn.weight" in k or "mlp.c_fc.weight" in k or "mlp.c_proj.weight" in k:
                v = v.t()
            out[k.replace(".wpe.", ".pos.wpe.")] = v
        return out
    e = rejects("pretrained.convert_gpt2_state_dict", convert, hint="attn.c_proj.weight is square")
    assert "logits" in e.message  # every name and shape was right: it loaded, strictly


def test_convert_transposing_every_matrix_but_the_embeddings_is_rejected():
    def convert(hf):
        out = {}
        for k, v in hf.items():
            if k.endswith((".attn.bias", ".attn.masked_bias")):
                continue
            if v.ndim == 2 and "wte" not in k and "wpe" not in k:  # lm_head too
                v = v.t()
            out[k.replace("transformer.wpe", "transformer.pos.wpe")] = v
        return out
    rejects("pretrained.convert_gpt2_state_dict", convert, hint="lm_head is an nn.Linear in Hugging Face's GPT-2 too")


def test_convert_transposing_every_matrix_is_rejected():
    def convert(hf):
        out = {}
        for k, v in hf.items():
            if "attn.masked_bias" in k or k.endswith(".attn.bias"):
                continue
            out[k.replace("transformer.wpe", "transformer.pos.wpe")] = v.t() if len(v.shape) == 2 else v
        return out
    rejects("pretrained.convert_gpt2_state_dict", convert, hint="Transpose by name, not every 2-D tensor")


def test_convert_filtering_the_mask_by_a_substring_is_rejected():
    def convert(hf):  # "attn.bias" in "….attn.c_attn.bias" too, and it misses masked_bias
        out = {}
        for k, v in hf.items():
            if "attn.bias" in k:
                continue
            if k.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight")):
                v = v.t()
            out[k.replace("wpe", "pos.wpe")] = v
        return out
    e = rejects("pretrained.convert_gpt2_state_dict", convert, hint=None)
    assert "lacks" in e.message and "c_attn.bias" in e.message


def test_convert_filtering_the_mask_without_the_dot_is_rejected():
    def convert(hf):
        return {k.replace("wpe", "pos.wpe"): (v.t() if k.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight")) else v)
                for k, v in hf.items() if not k.endswith(("attn.bias", "masked_bias"))}
    rejects("pretrained.convert_gpt2_state_dict", convert, hint="ends in \"attn.bias\" too")


def test_convert_keeping_the_mask_buffers_is_rejected():
    def convert(hf):
        return {k.replace("wpe", "pos.wpe"): (v.t() if k.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight")) else v) for k, v in hf.items()}
    e = rejects("pretrained.convert_gpt2_state_dict", convert, hint="drop the causal-mask buffers")
    assert "transformer.h.0.attn.bias" in e.message


def test_convert_dropping_the_tied_lm_head_is_rejected():
    def convert(hf):
        sd = _nanogpt_style(hf)
        del sd["lm_head.weight"]  # "it is the same matrix as wte anyway"
        return sd
    rejects("pretrained.convert_gpt2_state_dict", convert, hint="keep lm_head.weight")


def test_convert_returning_only_what_changed_is_rejected():
    def convert(hf):
        return {k: v.t() for k, v in hf.items() if k.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight"))}
    e = rejects("pretrained.convert_gpt2_state_dict", convert, hint=None)
    assert "lacks" in e.message and "transformer.wte.weight" in e.message


def test_convert_returning_a_list_is_rejected():
    e = rejects("pretrained.convert_gpt2_state_dict", lambda hf: list(_nanogpt_style(hf).items()))
    assert "expected a dict of name -> tensor" in e.message


def test_convert_outputs_are_plain_data_for_the_grader():
    """What the probe runs on the student's side crosses the sandbox boundary; a mistake's output must
    still match itself after the trip, or the grader could not recognise it."""
    from llmlab.grading import serialize

    ex = get_exercise("pretrained.convert_gpt2_state_dict")
    for i, probe in enumerate(ex.probes):
        args = probe.inputs(make_generator(i))
        for impl in [ex.reference] + [m.impl for m in ex.mistakes]:
            out = probe.run(impl, *clone_args(args))
            probe.compare(serialize.loads(*serialize.dumps(out)), out, serialize.loads(*serialize.dumps(args)))


# ----------------------------------------------------------------------------- tokens_cost
def test_tokens_cost_written_other_right_ways_passes():
    assert check("pretrained.tokens_cost", lambda n_input, n_output, price_in, price_out: n_input / 1e6 * price_in + n_output / 1e6 * price_out,
                 quiet=True)
    assert check("pretrained.tokens_cost", lambda n_input, n_output, price_in, price_out: (n_input * price_in + n_output * price_out) * 1e-6,
                 quiet=True)


def test_tokens_cost_per_thousand_is_rejected():
    rejects("pretrained.tokens_cost", lambda n_in, n_out, p_in, p_out: n_in / 1000 * p_in + n_out / 1000 * p_out, hint="not per 1,000")


def test_tokens_cost_with_swapped_prices_is_rejected():
    def tokens_cost(n_input, n_output, price_in, price_out):
        prices = {"output": price_in, "input": price_out}  # mixed up
        return (n_input * prices["input"] + n_output * prices["output"]) / 1e6
    rejects("pretrained.tokens_cost", tokens_cost, hint="yours are swapped")


def test_tokens_cost_ignoring_the_output_price_is_rejected():
    rejects("pretrained.tokens_cost", lambda n_in, n_out, p_in, p_out: (n_in + n_out) * p_in / 1_000_000, hint="their own price")


def test_tokens_cost_rounded_to_cents_is_rejected():
    rejects("pretrained.tokens_cost", lambda n_in, n_out, p_in, p_out: round((n_in * p_in + n_out * p_out) / 1e6, 2), hint=None)


def test_tokens_cost_returning_a_string_is_rejected():
    e = rejects("pretrained.tokens_cost", lambda n_in, n_out, p_in, p_out: f"${(n_in * p_in + n_out * p_out) / 1e6:.4f}")
    assert "returned str" in e.message
