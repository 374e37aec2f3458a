"""Positional encodings: attention alone cannot tell "dog bites man" from "man bites dog".

Four schemes, selectable with `GPTConfig.pos_encoding`:

* "learned"     a trainable vector per position, added to the token embedding (GPT-2).
* "sinusoidal"  fixed sines and cosines of geometric frequencies, added (Vaswani et al. 2017):
                PE[p, 2i] = sin(p / base^(2i/d)),  PE[p, 2i+1] = cos(p / base^(2i/d)).
* "rope"        rotate each pair (q[2i], q[2i+1]) (and k) by the angle p * base^(-2i/D)
                (Su et al. 2021, RoFormer); q.k then depends only on the *relative* position.
                `layout` says which channels make a pair: "interleaved" (x[2i], x[2i+1]), the
                paper's and this course's, or "half" (x[i], x[i + D/2]), GPT-NeoX's and Hugging
                Face Llama's `rotate_half`. Same rotation, pairs taken from a permuted basis.
* "alibi"       no embedding at all: subtract slope_h * distance from head h's scores
                (Press et al. 2022); extrapolates to longer contexts.

Every scheme answers the same three questions, so attention needs no flags:
`embed(T, offset)` (added to the input, or None), `rotate(q, k, offset)` and
`attn_bias(Tq, Tk, offset)` (added to the scores, or None).

Left out on purpose: RoPE scaling for longer contexts (NTK, YaRN, Llama 3's), partial rotary
dimensions (GPT-NeoX's rotary_pct), learned relative biases (T5).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_encoding(T: int, d: int, base: float = 10000.0) -> torch.Tensor:
    """Tensor[T, d] with PE[p, 2i] = sin(p / base^(2i/d)) and PE[p, 2i+1] = cos(same): interleaved."""
    if d % 2:
        raise ValueError(f"d={d}: sinusoidal encodings need an even width")
    pos = torch.arange(T, dtype=torch.float32)[:, None]  # (T, 1)
    inv_freq = base ** (-torch.arange(0, d, 2, dtype=torch.float32) / d)  # (d/2,)
    angles = pos * inv_freq[None, :]  # (T, d/2)
    pe = torch.empty(T, d)
    pe[:, 0::2] = angles.sin()
    pe[:, 1::2] = angles.cos()
    return pe


def rope_angles(T: int, D: int, base: float = 10000.0, offset: int = 0, device=None) -> torch.Tensor:
    """angles[p, i] = (offset + p) * base^(-2i/D): Tensor[T, D/2]."""
    pos = torch.arange(offset, offset + T, dtype=torch.float32, device=device)  # (T,)
    inv_freq = base ** (-torch.arange(0, D, 2, dtype=torch.float32, device=device) / D)  # (D/2,)
    return pos[:, None] * inv_freq[None, :]  # (T, D/2)


ROPE_LAYOUTS = ("interleaved", "half")  # which channels RoPE pairs: (x[2i], x[2i+1]) or (x[i], x[i + D/2])


def apply_rope(x: torch.Tensor, base: float = 10000.0, offset: int = 0, layout: str = "interleaved") -> torch.Tensor:
    """Rotate each pair (x[..., 2i], x[..., 2i+1]) at position p by p * base^(-2i/D).

    x: [..., T, D] -> same shape and dtype. Pairs are *adjacent* channels (the paper's
    form); layout="half" rotates the two halves instead, pair i = (x[i], x[i + D/2]) (GPT-NeoX's
    and Hugging Face Llama's "rotate_half"): the same idea on a permuted basis, different numbers.
    """
    T, D = x.shape[-2], x.shape[-1]
    if D % 2:
        raise ValueError(f"x: RoPE needs an even last dimension, got shape {tuple(x.shape)}")
    if layout not in ROPE_LAYOUTS:
        raise ValueError(f"layout={layout!r}: expected one of {', '.join(ROPE_LAYOUTS)}")
    theta = rope_angles(T, D, base, offset, x.device)  # (T, D/2)
    rotate = rotate_pairs if layout == "interleaved" else rotate_halves
    return rotate(x, theta.cos(), theta.sin())


def rotate_pairs(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [..., T, D], cos and sin: [T, D/2] -> x with pair i at row p rotated by the angle of (p, i)."""
    D = x.shape[-1]
    xf = x.float().unflatten(-1, (D // 2, 2))  # (..., T, D/2, 2)
    x1, x2 = xf[..., 0], xf[..., 1]  # (..., T, D/2) each
    out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)  # (..., T, D/2, 2)
    return out.flatten(-2).to(x.dtype)  # (..., T, D)


def rotate_halves(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """`rotate_pairs` with pair i = (x[..., i], x[..., i + D/2]): the "half" layout. Written as
    Hugging Face's x * cos + rotate_half(x) * sin, with rotate_half(x) = cat(-x2, x1)."""
    D = x.shape[-1]
    x1, x2 = x.float()[..., : D // 2], x.float()[..., D // 2 :]  # (..., T, D/2) each
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).to(x.dtype)  # (..., T, D)


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """The geometric slopes of ALiBi: 2^(-8/H), 2^(-16/H), ... (H a power of two). For other H, as the
    paper's reference code: the slopes of the largest power of two below H, then every other slope of
    twice that many heads (concatenated, not interleaved): 6 heads -> 2^-2, 2^-4, 2^-6, 2^-8, 2^-1, 2^-3."""
    def pow2(n: int) -> list[float]:
        start = 2 ** (-8 / n)
        return [start ** (i + 1) for i in range(n)]

    if math.log2(n_heads).is_integer():
        return torch.tensor(pow2(n_heads))
    closest = 2 ** math.floor(math.log2(n_heads))
    return torch.tensor(pow2(closest) + pow2(2 * closest)[0::2][: n_heads - closest])


POS_ENCODINGS = ("learned", "sinusoidal", "rope", "alibi")  # the names make_positional knows


class PositionalScheme(nn.Module):
    """The do-nothing scheme; subclasses override what they change."""

    def embed(self, T: int, offset: int = 0) -> torch.Tensor | None:
        return None

    def rotate(self, q: torch.Tensor, k: torch.Tensor, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        return q, k

    def attn_bias(self, Tq: int, Tk: int, offset: int = 0) -> torch.Tensor | None:
        return None


class LearnedPositions(PositionalScheme):
    def __init__(self, block_size: int, n_embd: int):
        super().__init__()
        self.wpe = nn.Embedding(block_size, n_embd)

    def embed(self, T: int, offset: int = 0) -> torch.Tensor:
        if offset + T > self.wpe.num_embeddings:
            raise ValueError(f"sequence of {offset + T} positions is longer than block_size={self.wpe.num_embeddings} (learned positions cannot extrapolate)")
        pos = torch.arange(offset, offset + T, device=self.wpe.weight.device)  # (T,)
        return self.wpe(pos)  # (T, C)


class SinusoidalPositions(PositionalScheme):
    def __init__(self, block_size: int, n_embd: int, base: float = 10000.0):
        super().__init__()
        self.n_embd, self.base = n_embd, base
        self.register_buffer("pe", sinusoidal_encoding(block_size, n_embd, base), persistent=False)  # (block_size, C)

    def embed(self, T: int, offset: int = 0) -> torch.Tensor:
        if offset + T > self.pe.size(0):  # beyond the table: compute, sinusoids extrapolate
            return sinusoidal_encoding(offset + T, self.n_embd, self.base)[offset:].to(self.pe.device)
        return self.pe[offset : offset + T]


class RoPE(PositionalScheme):
    """RoPE for the model: the rotations e^(i·angle) for `block_size` positions of a head of
    width `head_dim` are computed once, and q and k are rotated together as complex numbers
    (pair (x[2i], x[2i+1]) = x[2i] + i·x[2i+1], or (x[i], x[i + D/2]) with layout="half";
    rotating it is one complex product). Same maths as `apply_rope`, a third of the operations:
    generating with a KV cache rotates one position per step, where recomputing the angles each
    time cost more than the attention. Past the table (or without one) it falls back to
    `apply_rope`. q and k may have different numbers of heads (grouped-query attention)."""

    def __init__(self, base: float = 10000.0, block_size: int = 0, head_dim: int = 0, layout: str = "interleaved"):
        super().__init__()
        if layout not in ROPE_LAYOUTS:
            raise ValueError(f"layout={layout!r}: expected one of {', '.join(ROPE_LAYOUTS)}")
        self.base, self.layout = base, layout
        theta = rope_angles(block_size, head_dim, base, device="cpu") if block_size and head_dim else torch.zeros(0, 0, device="cpu")  # (P, D/2)
        # A plain attribute, not a buffer: Module.to(dtype) casts every floating and complex buffer, a
        # complex one to real (dropping the sines), and the table must stay complex64 whatever the
        # model's dtype. It follows q to its device when used; checkpoints do not carry it.
        self.cis = torch.polar(torch.ones_like(theta), theta)  # (P, D/2) complex

    def rotate(self, q, k, offset: int = 0):
        T, D = q.shape[-2], q.shape[-1]
        if offset + T > self.cis.size(0) or 2 * self.cis.size(1) != D or q.shape[:-3] != k.shape[:-3] or q.shape[-2:] != k.shape[-2:]:
            return apply_rope(q, self.base, offset, self.layout), apply_rope(k, self.base, offset, self.layout)
        if self.cis.device != q.device:
            self.cis = self.cis.to(q.device)
        cis = self.cis[offset : offset + T]  # (T, D/2)
        if q.shape == k.shape:  # one product for both: (2, ..., H, T, D)
            out = self._turn(torch.stack([q, k]), cis).to(q.dtype)
            return out[0], out[1]
        H = q.size(-3)  # grouped-query attention: fewer key heads, so join along the heads
        out = self._turn(torch.cat([q, k], dim=-3), cis).to(q.dtype)  # (..., H + H_kv, T, D)
        return out[..., :H, :, :], out[..., H:, :, :]

    def _turn(self, x: torch.Tensor, cis: torch.Tensor) -> torch.Tensor:
        """x[..., T, D] -> x rotated in float32: its pairs as complex numbers, times cis[T, D/2]."""
        D = x.shape[-1]
        x = x.float()
        if self.layout == "interleaved":
            z = torch.view_as_complex(x.unflatten(-1, (D // 2, 2)).contiguous())  # (..., T, D/2)
            return torch.view_as_real(z * cis).flatten(-2)  # (..., T, D/2, 2) -> (..., T, D)
        z = torch.complex(x[..., : D // 2], x[..., D // 2 :])  # (..., T, D/2): real = first half, imag = second
        z = z * cis
        return torch.cat([z.real, z.imag], dim=-1)  # (..., T, D)


class ALiBi(PositionalScheme):
    def __init__(self, n_heads: int):
        super().__init__()
        self.register_buffer("slopes", alibi_slopes(n_heads), persistent=False)  # (H,)

    def attn_bias(self, Tq: int, Tk: int, offset: int = 0) -> torch.Tensor:
        qpos = torch.arange(offset, offset + Tq, device=self.slopes.device)  # (Tq,)
        kpos = torch.arange(Tk, device=self.slopes.device)  # (Tk,)
        dist = (qpos[:, None] - kpos[None, :]).abs().float()  # (Tq, Tk)
        return -self.slopes[:, None, None] * dist + 0.0  # (H, Tq, Tk); + 0.0 turns -0.0 on the diagonal into 0.0


def make_positional(kind: str, *, block_size: int, n_embd: int, n_head: int, base: float = 10000.0, layout: str = "interleaved") -> PositionalScheme:
    """The scheme a config names; `layout` is RoPE's pairing (ROPE_LAYOUTS), ignored by the others."""
    if kind == "learned":
        return LearnedPositions(block_size, n_embd)
    if kind == "sinusoidal":
        return SinusoidalPositions(block_size, n_embd, base)
    if kind == "rope":
        return RoPE(base, block_size, n_embd // n_head, layout)
    if kind == "alibi":
        return ALiBi(n_head)
    raise ValueError(f"pos_encoding={kind!r}: expected one of 'learned', 'sinusoidal', 'rope', 'alibi'")
