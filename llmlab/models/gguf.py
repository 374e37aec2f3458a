"""Reading a GGUF file (llama.cpp's format) into the course's GPT: its metadata becomes a
GPTConfig, its tensors, dequantised to float32 once, a state dict of the course's names.

A GGUF holds key-value metadata (`llama.block_count`, `tokenizer.chat_template`, ...) and
named tensors, most of them quantised in blocks: Q4_1 stores 32 weights as 4-bit integers
with one float16 scale and one offset (w = d * q + m), Q8_0 as 8-bit integers with a scale.
The `gguf` package (llama.cpp's own reader) maps the file into memory and dequantises.

The translation table, GGUF -> llmlab (for N in 0 .. n_layer - 1):

    token_embd                       transformer.wte            (V, C)
    blk.N.attn_norm                  transformer.h.N.ln_1       RMSNorm weight (C,)
    blk.N.attn_q | attn_k | attn_v   transformer.h.N.attn.c_attn, the three stacked by rows:
                                     (H*D + 2*H_kv*D, C), q and k rows un-permuted (below)
    blk.N.attn_output                transformer.h.N.attn.c_proj
    blk.N.ffn_norm                   transformer.h.N.ln_2
    blk.N.ffn_gate | ffn_up          transformer.h.N.mlp.gate_proj | up_proj
    blk.N.ffn_down                   transformer.h.N.mlp.down_proj
    output_norm                      transformer.ln_f
    output (absent when tied)        lm_head

GGUF lists a shape innermost first ([C, V] for token_embd); the dequantised array is already
in PyTorch's order (V, C), and a Linear's weight is (out, in) in both.

RoPE's layout. Hugging Face Llamas rotate halves: pair i of a head is (x[i], x[i + D/2])
(`rotate_half`). llama.cpp rotates adjacent pairs (x[2i], x[2i+1]), so its converter permutes
the rows of each head of attn_q and attn_k: row 2i + s of the file is row s * D/2 + i of the
checkpoint. Both pairings then compute the same function (q.k is a sum over channels, blind to
their order if q and k are permuted alike). `llama_state_dict` undoes the permutation, as
transformers does when it loads a GGUF, and the config says rope_layout="half": the model's
weights as trained and published, row for row what transformers holds. (Rows as stored with
rope_layout="interleaved" is the same model; tests/test_gqa.py proves the two equal.)

Left out on purpose: architectures other than llama (the reader refuses them), RoPE scaling,
writing GGUF files, running the quantised weights as they are (int4 matmuls, llama.cpp's job).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from llmlab.models.gpt import GPTConfig

MAX_ARRAY = 64  # metadata arrays longer than this (the vocabulary, the merges) are not copied by `read_metadata`


def open_gguf(path: str | Path):
    """A `gguf.GGUFReader` on the file (memory-mapped: nothing is read until used)."""
    try:
        import gguf
    except ImportError as e:  # an optional dependency: say how to get it
        raise ImportError("reading GGUF files needs the `gguf` package: pip install 'gguf>=0.10'") from e
    return gguf.GGUFReader(str(path))


def read_metadata(reader) -> dict[str, object]:
    """The file's key-value metadata as Python values: numbers, strings, short lists. Arrays longer
    than MAX_ARRAY (tokenizer.ggml.tokens, .merges, .token_type) are left out; read them from
    `reader.fields` if needed."""
    from gguf import GGUFValueType

    meta: dict[str, object] = {}
    for key, f in reader.fields.items():
        if f.types and f.types[0] == GGUFValueType.ARRAY and len(f.data) > MAX_ARRAY:
            continue
        v = f.contents()
        meta[key] = v.item() if isinstance(v, np.generic) else v
    return meta


def llama_config(meta: dict[str, object], tensor_names: set[str]) -> GPTConfig:
    """The GPTConfig of a llama-architecture GGUF: every size from its metadata, tied when the
    file has no `output.weight` (the output layer then reuses token_embd)."""
    arch = meta.get("general.architecture")
    if arch != "llama":
        raise ValueError(f"general.architecture={arch!r}: this reader knows the 'llama' architecture only")

    def get(key: str, default=None):
        v = meta.get(f"llama.{key}", default)
        if v is None:
            raise ValueError(f"GGUF metadata: llama.{key} is missing; expected it in a llama GGUF")
        return v

    if "llama.rope.scaling.type" in meta and meta["llama.rope.scaling.type"] not in ("none", None):
        raise ValueError(f"llama.rope.scaling.type={meta['llama.rope.scaling.type']!r}: RoPE scaling is left out of the course's RoPE")
    n_head, n_embd = int(get("attention.head_count")), int(get("embedding_length"))
    n_kv_head = int(get("attention.head_count_kv", n_head))
    head_dim = n_embd // n_head
    rope_dim = int(get("rope.dimension_count", head_dim))
    if rope_dim != head_dim:
        raise ValueError(f"llama.rope.dimension_count={rope_dim}: expected the head width {head_dim} (partial RoPE is left out)")
    vocab = meta.get("llama.vocab_size")
    if vocab is None:
        raise ValueError("GGUF metadata: llama.vocab_size is missing")
    return GPTConfig(
        vocab_size=int(vocab),
        block_size=int(get("context_length")),
        n_layer=int(get("block_count")),
        n_head=n_head,
        n_kv_head=n_kv_head,
        n_embd=n_embd,
        bias=False,
        tied="output.weight" not in tensor_names,
        pos_encoding="rope",
        rope_layout="half",  # the q/k rows are un-permuted back to Hugging Face's layout (module docstring)
        rope_base=float(get("rope.freq_base", 10000.0)),
        norm="rmsnorm",
        # stored as float32 (1e-5 reads back as 9.999999747e-06): 7 significant digits are what float32 holds
        norm_eps=float(f"{float(get('attention.layer_norm_rms_epsilon')):.7g}"),
        activation="swiglu",
        mlp_hidden=int(get("feed_forward_length")),
    )


def unpermute_rope_rows(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Undo llama.cpp's permutation of attn_q / attn_k rows: w[n_heads * D, C], each head's rows in
    the order (x[0], x[D/2], x[1], x[D/2 + 1], ...) -> (x[0], x[1], ..., x[D/2], ...), HF's order.

    >>> unpermute_rope_rows(torch.tensor([[0.], [2.], [1.], [3.]]), 1).flatten().tolist()
    [0.0, 1.0, 2.0, 3.0]
    """
    rows, C = w.shape
    D = rows // n_heads
    w = w.reshape(n_heads, D // 2, 2, C)  # (H, D/2, 2, C): file row 2i + s
    return w.transpose(1, 2).reshape(rows, C)  # (H, 2, D/2, C) -> (H*D, C): row s * D/2 + i


def dequantize(tensor) -> torch.Tensor:
    """One `gguf` ReaderTensor -> a float32 torch tensor in PyTorch's order (innermost last)."""
    from gguf.quants import dequantize as gguf_dequantize

    a = gguf_dequantize(tensor.data, tensor.tensor_type)
    if not a.flags.writeable:  # a float32 tensor comes back as a view of the read-only file mapping
        a = a.copy()
    shape = tuple(int(n) for n in reversed(tensor.shape))  # GGUF lists the innermost dimension first
    return torch.from_numpy(a.astype(np.float32, copy=False).reshape(shape))


def llama_state_dict(reader, cfg: GPTConfig) -> dict[str, torch.Tensor]:
    """Every tensor of a llama GGUF, dequantised, under the course GPT's names (the translation
    table above); with cfg.tied there is no lm_head.weight (it is transformer.wte.weight)."""
    raw = {t.name: t for t in reader.tensors}

    def take(name: str) -> torch.Tensor:
        if name not in raw:
            raise ValueError(f"GGUF tensor {name!r} is missing; expected a llama model of {cfg.n_layer} blocks")
        return dequantize(raw.pop(name))

    H, H_kv = cfg.n_head, cfg.n_kv_head or cfg.n_head
    sd = {"transformer.wte.weight": take("token_embd.weight"), "transformer.ln_f.weight": take("output_norm.weight")}
    if not cfg.tied:
        sd["lm_head.weight"] = take("output.weight")
    for i in range(cfg.n_layer):
        b, h = f"blk.{i}.", f"transformer.h.{i}."
        q = unpermute_rope_rows(take(b + "attn_q.weight"), H)  # (H*D, C)
        k = unpermute_rope_rows(take(b + "attn_k.weight"), H_kv)  # (H_kv*D, C)
        sd[h + "attn.c_attn.weight"] = torch.cat([q, k, take(b + "attn_v.weight")], dim=0)  # (H*D + 2*H_kv*D, C)
        sd[h + "attn.c_proj.weight"] = take(b + "attn_output.weight")
        sd[h + "ln_1.weight"] = take(b + "attn_norm.weight")
        sd[h + "ln_2.weight"] = take(b + "ffn_norm.weight")
        sd[h + "mlp.gate_proj.weight"] = take(b + "ffn_gate.weight")
        sd[h + "mlp.up_proj.weight"] = take(b + "ffn_up.weight")
        sd[h + "mlp.down_proj.weight"] = take(b + "ffn_down.weight")
    if raw:  # e.g. rope_freqs (Llama 3's RoPE scaling) or attention biases: the course's GPT would silently differ
        raise ValueError(f"GGUF tensors {', '.join(sorted(raw)[:5])}{' ...' if len(raw) > 5 else ''}: not in the translation table; "
                         "expected only a plain llama model's tensors")
    return sd


def load_gguf(path: str | Path) -> tuple[GPTConfig, dict[str, torch.Tensor], dict[str, object]]:
    """(config, float32 state dict, metadata) of a llama GGUF file: what `GPT(cfg).load_state_dict`
    takes (strict=False when tied: lm_head.weight is wte's)."""
    reader = open_gguf(path)
    meta = read_metadata(reader)
    cfg = llama_config(meta, {t.name for t in reader.tensors})
    return cfg, llama_state_dict(reader, cfg), meta
