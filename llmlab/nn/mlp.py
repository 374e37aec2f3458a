"""The position-wise feed-forward network of a transformer block: widen, a nonlinearity, narrow.

    "gelu"       c_proj(GELU(c_fc(x)))             GELU exact, x * Phi(x) (Hendrycks & Gimpel 2016)
    "gelu_tanh"  the same with GPT-2's tanh approximation of GELU (what OpenAI's checkpoints used)
    "swiglu"     down_proj(silu(gate_proj(x)) * up_proj(x))        (Shazeer 2020; Llama)

The GELU forms widen C -> 4C -> C. SwiGLU has three matrices instead of two, so Llama narrows
the hidden width to 8/3 C to keep the parameter count (3 * C * 8/3 C = 2 * C * 4C), rounded up
to a multiple of 256 (C = 4096 -> 11008); `swiglu_hidden` rounds to `multiple_of` (8 by
default, so small models stay small). Names follow the checkpoints: GPT-2's `c_fc`/`c_proj`,
Llama's `gate_proj`/`up_proj`/`down_proj`.

Left out on purpose: other GLU variants (GeGLU, ReGLU), mixture-of-experts MLPs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = ("gelu", "gelu_tanh", "swiglu")


def swiglu_hidden(n_embd: int, multiple_of: int = 8) -> int:
    """Llama's hidden width for SwiGLU: 8/3 * n_embd, rounded up to a multiple of `multiple_of`.

    >>> swiglu_hidden(4096, multiple_of=256)   # Llama 7B
    11008
    """
    hidden = int(8 * n_embd / 3)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


class MLP(nn.Module):
    """Position-wise feed-forward: C -> hidden -> C, by default C -> 4C -> GELU -> C (GPT-2)."""

    def __init__(self, n_embd: int, bias: bool = True, dropout: float = 0.0, activation: str = "gelu", hidden: int | None = None):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation={activation!r}: expected one of {', '.join(ACTIVATIONS)}")
        if hidden is not None and (isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1):
            raise ValueError(f"hidden={hidden!r}: expected a positive integer (the MLP's inner width) or None for the default")
        self.activation = activation
        if activation == "swiglu":
            hidden = hidden or swiglu_hidden(n_embd)
            self.gate_proj = nn.Linear(n_embd, hidden, bias=bias)
            self.up_proj = nn.Linear(n_embd, hidden, bias=bias)
            self.down_proj = nn.Linear(hidden, n_embd, bias=bias)
        else:
            hidden = hidden or 4 * n_embd
            self.c_fc = nn.Linear(n_embd, hidden, bias=bias)
            self.gelu = nn.GELU(approximate="tanh" if activation == "gelu_tanh" else "none")
            self.c_proj = nn.Linear(hidden, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation == "swiglu":
            # the gate decides, per hidden unit, how much of up_proj(x) passes
            h = F.silu(self.gate_proj(x)) * self.up_proj(x)  # (B, T, C) -> (B, T, hidden)
            return self.dropout(self.down_proj(h))  # (B, T, hidden) -> (B, T, C)
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))  # (B, T, C) -> (B, T, 4C) -> (B, T, C)
