"""What LoRA saves, in closed form: trainable parameters, adapter bytes and optimizer memory (lesson 14).

A LoRA adapter on an nn.Linear(in, out) trains r * (in + out) numbers (A: [r, in], B: [out, r]) instead
of in * out. Everything else follows from that count:

    trainable      N = sum over the wrapped layers of r * (in + out)   (+ whatever else trains, e.g. a new head)
    adapter file   8 + header + 4 N bytes          safetensors: a u64 header length, a JSON header, then float32 data
    AdamW state    8 N bytes + 4 per tensor        exp_avg and exp_avg_sq per number; a float32 step count per tensor
    gradients      4 N bytes                       one float32 per trainable number, during backward

`linear_shapes(cfg, ...)` lists every Linear of a GPT-2-style model (fused c_attn as the course and
nanoGPT write it, or three separate q/k/v layers as LLMs-from-scratch does); `lora_trainable` sums
r * (in + out) over them. `classifier_size` is the GPT-2 trunk plus a K-class head instead of the LM
head. From the configuration alone that reproduces LLMs-from-scratch's appendix E (Raschka 2024):
GPT-2 small with a 2-class head has 124,441,346 parameters; r = 16 on every Linear, the head's
included, with q, k, v separate, trains 2,666,528 (tests/test_lora_experiments.py).

Left out on purpose: quantised bases (QLoRA's 4-bit weights), activation memory (it depends on the
batch and sequence, not on the method: the backward still runs through every frozen layer below an
adapter), and the optimizers other than AdamW.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from llmlab.models.gpt import GPTConfig, count_parameters

# LLMs-from-scratch's GPT_CONFIG_124M (ch. 4; qkv_bias=True when OpenAI's weights are loaded, ch. 5)
GPT2_SMALL = GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768, bias=True)


def linear_shapes(cfg: GPTConfig, n_classes: int | None = None, separate_qkv: bool = False) -> dict[str, tuple[int, int]]:
    """name -> (in_features, out_features) of every nn.Linear of a GPT-2-style model (GELU MLP, no
    grouped-query attention): per block the attention (c_attn [C -> 3C], or W_query, W_key, W_value
    [C -> C] each when `separate_qkv`) and its c_proj, the MLP's c_fc and c_proj; then the output layer,
    `head` [C -> n_classes] when n_classes is given, else `lm_head` [C -> V]."""
    if cfg.activation == "swiglu" or (cfg.n_kv_head not in (None, cfg.n_head)):
        raise ValueError(f"cfg: expected a GPT-2-style config (GELU MLP, n_kv_head None), got activation={cfg.activation!r}, "
                         f"n_kv_head={cfg.n_kv_head!r}")
    if n_classes is not None and (isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2):
        raise ValueError(f"n_classes={n_classes!r}: expected None (the LM head) or an integer >= 2")
    C, hidden = cfg.n_embd, cfg.mlp_hidden or 4 * cfg.n_embd
    out: dict[str, tuple[int, int]] = {}
    for i in range(cfg.n_layer):
        if separate_qkv:
            for name in ("W_query", "W_key", "W_value"):
                out[f"h.{i}.attn.{name}"] = (C, C)
        else:
            out[f"h.{i}.attn.c_attn"] = (C, 3 * C)  # q, k, v in one matmul
        out[f"h.{i}.attn.c_proj"] = (C, C)
        out[f"h.{i}.mlp.c_fc"] = (C, hidden)
        out[f"h.{i}.mlp.c_proj"] = (hidden, C)
    out["head" if n_classes else "lm_head"] = (C, n_classes or cfg.vocab_size)
    return out


def lora_trainable(shapes: dict[str, tuple[int, int]], r: int, targets: tuple[str, ...] | None = None) -> int:
    """sum of r * (in + out) over the layers whose name ends with one of `targets` (None: all of them)."""
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ValueError(f"r={r!r}: expected a positive integer rank")
    chosen = [s for name, s in shapes.items() if targets is None or name.endswith(tuple(targets))]
    if not chosen:
        raise ValueError(f"targets={targets!r}: no layer name ends with one of them (names look like {next(iter(shapes))!r})")
    return sum(r * (i + o) for i, o in chosen)


def classifier_size(cfg: GPTConfig, n_classes: int) -> int:
    """Parameters of the GPT-2 trunk (embeddings, blocks, final norm) plus a K-class head with bias,
    in place of the LM head (which, tied, adds nothing to count_parameters): trunk + C K + K."""
    trunk = count_parameters(cfg.vocab_size, cfg.block_size, cfg.n_layer, cfg.n_embd, tied=True, bias=cfg.bias)
    return trunk + cfg.n_embd * n_classes + n_classes


def save_adapter(tensors: dict[str, torch.Tensor], path: str | Path) -> dict[str, int]:
    """Write the tensors with safetensors; -> {"bytes": file size, "payload": data bytes, "header": JSON header bytes}.
    The file is exactly 8 + header + payload bytes (the first 8 hold the header's length)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path))
    size = path.stat().st_size
    with open(path, "rb") as f:
        header = int.from_bytes(f.read(8), "little")
    payload = sum(v.numel() * v.element_size() for v in tensors.values())
    if size != 8 + header + payload:
        raise RuntimeError(f"{path}: {size} bytes, expected 8 + {header} + {payload}; not a plain safetensors file?")
    return {"bytes": size, "payload": payload, "header": header}


def adamw_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes the optimizer keeps between steps, measured: every tensor in its state (after one step)."""
    return sum(v.numel() * v.element_size() for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v))


def adamw_bytes(n_trainable: int, n_tensors: int) -> int:
    """AdamW's state in closed form, float32: exp_avg and exp_avg_sq (8 bytes a number) and a float32
    step count per parameter tensor (4 bytes each; torch keeps it as a tensor)."""
    return 8 * n_trainable + 4 * n_tensors


def trainable_tensors(model: nn.Module) -> int:
    return sum(1 for p in model.parameters() if p.requires_grad)
