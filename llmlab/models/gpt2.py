"""Loading OpenAI's GPT-2 into the course's GPT: one translation table from Hugging Face's names.

The course GPT was written with GPT-2's names (`wte`, `c_attn`, `c_proj`, `c_fc`, `ln_f`), so
loading a checkpoint is a short translation, not a port. Three things differ:

* learned positions live at `transformer.pos.wpe.weight` (the course keeps them in a positional
  module, llmlab.nn.positional), not at `transformer.wpe.weight`;
* OpenAI wrote its linear layers as `Conv1D`, whose weight is stored `[in, out]`; `nn.Linear`
  stores `[out, in]`. Every Conv1D weight (c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj) is
  transposed. The subtle one is attn.c_proj: it is square (C x C), so forgetting it raises no
  shape error, the model loads and is quietly wrong; only comparing logits catches it;
* older versions of transformers saved each block's causal mask (`attn.bias`, a [1, 1, T, T]
  buffer) and a constant (`attn.masked_bias`) with the weights. They are not parameters; the
  course GPT builds its mask itself, so they are dropped. Careful: `attn.c_attn.bias` also ends in
  "attn.bias"; only the name `<block>.attn.bias` itself is the mask.

    >>> from transformers import GPT2LMHeadModel                # doctest: +SKIP
    >>> gpt = from_hf_gpt2(GPT2LMHeadModel.from_pretrained("gpt2"))   # or load_gpt2("gpt2")

`lm_head.weight` stays: GPT-2 ties it to `wte`, and the course GPT's state_dict lists the tied
matrix under both names, as Hugging Face's does, so `load_state_dict(strict=True)` wants both.

Left out on purpose: other architectures (Llama's names and RoPE layout need their own table),
OpenAI's original TensorFlow checkpoints, quantised weights. transformers is imported only by
`load_gpt2`, and only when it is called.
"""

from __future__ import annotations

import torch
from torch import nn

from llmlab.models.gpt import GPT, GPTConfig

# The one translation table where a name changes (everything else keeps its Hugging Face name).
RENAMES = {"transformer.wpe.weight": "transformer.pos.wpe.weight"}
# Conv1D weights, stored [in, out]: transposed to nn.Linear's [out, in].
CONV1D = (".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight", ".mlp.c_proj.weight")
# The causal-mask buffers older transformers versions saved with every block: not parameters.
MASK_BUFFERS = (".attn.bias", ".attn.masked_bias")  # the leading dot: ".attn.c_attn.bias" must not match
# GPT-2's activation names in a Hugging Face config -> the course MLP's
ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh", "gelu": "gelu"}


def convert_gpt2_state_dict(hf: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A `GPT2LMHeadModel` state dict -> one the course GPT loads with `strict=True`.

    Renames `transformer.wpe` -> `transformer.pos.wpe`, transposes the Conv1D weights ([in, out] ->
    [out, in]) and drops the mask buffers; embeddings, norms, biases and lm_head pass unchanged.

    >>> hf = {"transformer.h.0.attn.c_attn.weight": torch.zeros(4, 12), "transformer.h.0.attn.bias": torch.ones(1, 1, 8, 8)}
    >>> {k: tuple(v.shape) for k, v in convert_gpt2_state_dict(hf).items()}
    {'transformer.h.0.attn.c_attn.weight': (12, 4)}
    """
    out = {}
    for name, t in hf.items():
        if not (name.startswith("transformer.") or name == "lm_head.weight"):
            raise ValueError(f"hf: {name!r} is not a GPT2LMHeadModel name (expected 'transformer.…' or 'lm_head.weight')")
        if name.endswith(MASK_BUFFERS):
            continue
        if name.endswith(CONV1D):
            t = t.t().contiguous()  # Conv1D [in, out] -> nn.Linear [out, in]
        out[RENAMES.get(name, name)] = t
    return out


def gpt2_config(hf_config) -> GPTConfig:
    """The course GPTConfig of a Hugging Face `GPT2Config` (or its `to_dict()`): GPT-2 is a pre-LN GPT
    with learned positions, biases, tied embeddings, LayerNorm eps 1e-5 and the tanh GELU. Dropout is 0
    (the loaded model is for inference). Settings the course GPT cannot follow raise a ValueError."""
    get = hf_config.get if isinstance(hf_config, dict) else lambda k, default=None: getattr(hf_config, k, default)
    if get("model_type", "gpt2") != "gpt2":
        raise ValueError(f"hf_config: model_type={get('model_type')!r}, expected 'gpt2'")
    act = get("activation_function", "gelu_new")
    if act not in ACTIVATIONS:
        raise ValueError(f"hf_config.activation_function={act!r}: expected one of {', '.join(ACTIVATIONS)}")
    eps = get("layer_norm_epsilon", 1e-5)
    if eps != 1e-5:  # the course's LayerNorm uses 1e-5, as GPT-2
        raise ValueError(f"hf_config.layer_norm_epsilon={eps!r}: the course GPT's LayerNorm uses 1e-5")
    unsupported = {"scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False, "add_cross_attention": False}
    for key, want in unsupported.items():
        if get(key, want) != want:
            raise ValueError(f"hf_config.{key}={get(key)!r}: the course GPT supports only {want}")
    n_inner = get("n_inner")
    return GPTConfig(vocab_size=get("vocab_size"), block_size=get("n_positions"), n_layer=get("n_layer"), n_head=get("n_head"),
                     n_embd=get("n_embd"), dropout=0.0, bias=True, tied=bool(get("tie_word_embeddings", True)),
                     activation=ACTIVATIONS[act], mlp_hidden=n_inner if n_inner and n_inner != 4 * get("n_embd") else None)


def from_hf_gpt2(hf_model: nn.Module) -> GPT:
    """The course GPT with a `GPT2LMHeadModel`'s weights, in eval mode: same tokens, same logits."""
    model = GPT(gpt2_config(hf_model.config))
    model.load_state_dict(convert_gpt2_state_dict(hf_model.state_dict()), strict=True)
    return model.eval()


def load_gpt2(name: str = "gpt2", *, cache_dir: str | None = None, local_files_only: bool = False) -> GPT:
    """OpenAI's GPT-2 ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", or a local folder) as a course GPT.

    Needs transformers, and the Hugging Face Hub or a copy in its cache (`local_files_only=True`: the
    cache only, never the network). The tests never call it: they build a small random GPT-2 offline."""
    try:
        from transformers import GPT2LMHeadModel
    except ImportError as e:
        raise ImportError("load_gpt2 needs transformers: pip install 'llmlab[lab]' (or pip install transformers)") from e
    try:
        hf = GPT2LMHeadModel.from_pretrained(name, cache_dir=cache_dir, local_files_only=local_files_only)
    except OSError as e:
        where = "its local cache (local_files_only=True)" if local_files_only else "the Hugging Face Hub or its local cache"
        raise OSError(f"name={name!r}: could not load GPT-2 weights from {where}. Offline? Download them once with a network, "
                      f"then pass local_files_only=True. ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e
    return from_hf_gpt2(hf)


__all__ = ["convert_gpt2_state_dict", "gpt2_config", "from_hf_gpt2", "load_gpt2", "RENAMES", "CONV1D", "MASK_BUFFERS"]
