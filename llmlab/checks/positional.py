"""Checks for chapter 04, positions: sinusoidal_encoding and apply_rope.

The probes use widths that are not powers of two (d=10, D=6), a non-default `base` (so a
base that is silently ignored fails), a single position (position 0 must be untouched:
positions start at 0, not 1) and two *properties* of RoPE that any correct rotation has
and most wrong ones lack: every pair keeps its length, and q.k depends only on the
distance between the two positions. The known mistakes are the classic slips: sin and
cos swapped or concatenated instead of interleaved, GPT-NeoX's rotate-half layout, the
exponent i/d instead of 2i/d, and rotations that are not rotations.

Property probes come first: an implementation that breaks one (and is no known mistake) is
told which property it breaks and how to fix it, rather than only that values differ.
"""

from __future__ import annotations

import torch

from llmlab.checks.core import CheckFailed, Exercise, Mistake, Probe, close, keeps_input, randn, register
from llmlab.nn import positional as ref

# Angles reach ~60 rad in these probes; float32 rounds such an angle to ~4e-6, and two
# correct ways of computing base^(-2i/d) (pow vs exp/log) differ by ~1e-7 relatively. Every
# known mistake is off by more than 1e-2, so 1e-4 separates them with a wide margin.
_close = close(atol=1e-4, rtol=1e-4)


# ----------------------------------------------------------------------------- sinusoidal encoding
def reference_sinusoidal_encoding(T: int, d: int, base: float = 10000.0) -> torch.Tensor:
    return ref.sinusoidal_encoding(T, d, base)


def _sin_wrong(layout="interleaved", base_used=True, start=0, exponent="2i/d", cos_freq="pair", op="divide"):
    """A family of wrong sinusoidal encodings; the defaults give the right one."""

    def sinusoidal_encoding(T, d, base=10000.0):
        b = base if base_used else 10000.0
        pos = torch.arange(start, start + T, dtype=torch.float32)[:, None]  # (T, 1)
        i = torch.arange(d // 2, dtype=torch.float32)  # (d/2,)
        expo = 2 * i / d if exponent == "2i/d" else i / d
        freq = b ** (-expo) if op == "divide" else b ** expo
        ang = pos * freq  # (T, d/2)
        if layout == "concat":
            return torch.cat([ang.sin(), ang.cos()], dim=-1)
        pe = torch.empty(T, d)
        pe[:, 0::2] = ang.sin() if layout == "interleaved" else ang.cos()
        pe[:, 1::2] = ang.cos() if layout == "interleaved" else ang.sin()
        if cos_freq == "own":  # channel 2i+1 computed with its own index: base^(-(2i+1)/d)
            pe[:, 1::2] = (pos * b ** (-(2 * i + 1) / d)).cos()
        return pe

    return sinusoidal_encoding


register(Exercise(
    id="positional.sinusoidal_encoding",
    signature="sinusoidal_encoding(T: int, d: int, base: float = 10000.0) -> Tensor[T, d]  # PE[p, 2i] = sin(p / base^(2i/d)), PE[p, 2i+1] = cos(same)",
    reference=reference_sinusoidal_encoding,
    points=2,
    probes=[
        Probe("position 0 is [0, 1, 0, 1, ...] (positions start at 0)", lambda g: (1, 8), compare=_close,
              hint="the first row is position p = 0: sin(0) = 0 in even channels, cos(0) = 1 in odd ones"),
        Probe("T=7, d=10, default base", lambda g: (7, 10), compare=_close),
        Probe("respects base (base=100, T=9, d=6)", lambda g: (9, 6, 100.0), compare=_close,
              hint="use the `base` argument instead of the constant 10000"),
        Probe("long sequence: T=60, d=16", lambda g: (60, 16), compare=_close),
    ],
    mistakes=[
        Mistake("sin and cos are swapped: even channels 2i hold sin, odd channels 2i+1 hold cos", _sin_wrong(layout="swapped")),
        Mistake("sin and cos must be interleaved (channel 2i sin, 2i+1 cos), not concatenated as [all sines, all cosines]",
                _sin_wrong(layout="concat")),
        Mistake("your function ignores `base` and always uses 10000", _sin_wrong(base_used=False)),
        Mistake("positions start at 0 (torch.arange(T)), not at 1", _sin_wrong(start=1)),
        Mistake("the exponent is 2i/d, where i counts *pairs* (0 .. d/2 - 1); you used i/d", _sin_wrong(exponent="i/d")),
        Mistake("channel 2i+1 uses the same frequency as its partner 2i (base^(-2i/d)), not base^(-(2i+1)/d)",
                _sin_wrong(cos_freq="own")),
        Mistake("divide the position by base^(2i/d) (frequencies fall along the channels); you multiplied",
                _sin_wrong(op="multiply")),
    ],
))


# ----------------------------------------------------------------------------- RoPE
def reference_apply_rope(x: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    return ref.apply_rope(x, base)


def _pair_norms(fn, x, *rest):
    """Length of every (x[2i], x[2i+1]) pair after the rotation: [..., T, D/2]."""
    y = fn(x, *rest)
    if not isinstance(y, torch.Tensor) or y.shape != x.shape:
        raise CheckFailed(f"expected a tensor of the input's shape {tuple(x.shape)}, got {getattr(y, 'shape', type(y).__name__)}")
    return y.unflatten(-1, (x.shape[-1] // 2, 2)).norm(dim=-1)


def _relative_scores(fn, q, k, base):
    """Scores S[m, n] = rope(q)_m . rope(k)_n for one q and one k placed at every position;
    returns S[m+1, n+1] - S[m, n], which is zero when scores depend only on m - n."""
    T = 12
    rq = fn(q.expand(T, -1).clone(), base)  # (T, D): q rotated to positions 0..T-1
    rk = fn(k.expand(T, -1).clone(), base)  # (T, D)
    if not isinstance(rq, torch.Tensor) or rq.shape != (T, q.shape[-1]):
        raise CheckFailed(f"expected a tensor of shape {(T, q.shape[-1])} for an input of that shape, got {getattr(rq, 'shape', type(rq).__name__)}")
    S = rq @ rk.T  # (T, D) @ (D, T) -> (T, T)
    return S[1:, 1:] - S[:-1, :-1]


def _position_zero(fn, x, *rest):
    """What the rotation does at position 0 (it should do nothing)."""
    return fn(x, *rest)[..., 0, :] - x[..., 0, :]


def _rope_wrong(layout="pairs", base_used=True, start=0, exponent="2i/D", direction=1, rotation=True, tiling="interleave", inplace=False, op="divide"):
    """A family of wrong RoPEs; the defaults give the right one."""

    def apply_rope(x, base=10000.0):
        T, D = x.shape[-2], x.shape[-1]
        b = base if base_used else 10000.0
        pos = torch.arange(start, start + T, dtype=torch.float32)  # (T,)
        i = torch.arange(D // 2, dtype=torch.float32)  # (D/2,)
        expo = 2 * i / D if exponent == "2i/D" else i / D
        freq = b ** (-expo) if op == "divide" else b ** expo
        ang = pos[:, None] * freq[None, :] * direction  # (T, D/2)
        cos, sin = ang.cos(), ang.sin()
        if layout == "half":  # GPT-NeoX / Llama-HF: pair channel i with channel i + D/2
            x1, x2 = x[..., : D // 2], x[..., D // 2:]
            return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
        if inplace:  # overwrites x[2i] before x[2i+1] is computed from it
            x1, x2 = x[..., 0::2], x[..., 1::2]
            x[..., 0::2] = x1 * cos - x2 * sin
            x[..., 1::2] = x1 * sin + x2 * cos
            return x
        if tiling == "cat":  # cos/sin tiled [c0..c_{D/2-1}, c0..] while pairs are adjacent
            cos_f, sin_f = torch.cat([cos, cos], -1), torch.cat([sin, sin], -1)
        else:
            cos_f, sin_f = cos.repeat_interleave(2, -1), sin.repeat_interleave(2, -1)  # (T, D)
        partner = torch.stack([-x[..., 1::2], x[..., 0::2]], dim=-1).flatten(-2)  # (-x2, x1) interleaved
        if not rotation:  # forgot to swap in the partner: not a rotation, lengths change
            partner = x
        return x * cos_f + partner * sin_f

    return apply_rope


register(Exercise(
    id="positional.apply_rope",
    signature="apply_rope(x: Tensor[..., T, D], base: float = 10000.0) -> Tensor  # rotate pair (x[2i], x[2i+1]) at position p by p * base^(-2i/D)",
    reference=reference_apply_rope,
    points=3,
    probes=[
        Probe("every pair (x[2i], x[2i+1]) keeps its length", lambda g: (randn(g, 3, 7, 8), 100.0), run=_pair_norms, compare=_close,
              hint="a rotation never changes lengths: each adjacent pair (x[2i], x[2i+1]) must become (x1 cos - x2 sin, x1 sin + x2 cos)"),
        Probe("q.k depends only on the relative position", lambda g: (randn(g, 16), randn(g, 16), 100.0), run=_relative_scores, compare=_close,
              hint="rotate q and k the same way at every position, each pair by exactly p * base^(-2i/D)"),
        Probe("position 0 is not rotated", lambda g: (randn(g, 2, 4, 6),), run=_position_zero, compare=_close,
              hint="positions start at 0 (torch.arange(T)), and a rotation by angle 0 leaves the vector as it is"),
        Probe("x[B=2, H=3, T=5, D=8], default base", lambda g: (randn(g, 2, 3, 5, 8),), compare=_close),
        Probe("respects base (base=100, x[4, 9, 6])", lambda g: (randn(g, 4, 9, 6), 100.0), compare=_close,
              hint="use the `base` argument instead of the constant 10000"),
        Probe("works without batch axes (x[T=20, D=10])", lambda g: (randn(g, 20, 10), 500.0), compare=_close),
        Probe("leaves its input unchanged", lambda g: (randn(g, 3, 6),), **keeps_input("build the rotated tensor as a new one (torch.stack / torch.cat)")),
    ],
    mistakes=[
        Mistake("you rotated the two halves (x[i], x[i + D/2]) as GPT-NeoX's rotate_half does; this exercise pairs *adjacent* "
                "channels (x[2i], x[2i+1]): use x[..., 0::2] and x[..., 1::2]", _rope_wrong(layout="half")),
        Mistake("your function ignores `base` and always uses 10000", _rope_wrong(base_used=False)),
        Mistake("positions start at 0 (torch.arange(T)), not at 1", _rope_wrong(start=1)),
        Mistake("the exponent is 2i/D, where i counts *pairs* (0 .. D/2 - 1); you used i/D", _rope_wrong(exponent="i/D")),
        Mistake("the angle is p * base^(-2i/D) (negative exponent: slower rotations for later pairs); you used base^(+2i/D)",
                _rope_wrong(op="multiply")),
        Mistake("you rotate the wrong way: the pair becomes (x1 cos - x2 sin, x1 sin + x2 cos)", _rope_wrong(direction=-1)),
        Mistake("your result changes lengths, so it is not a rotation: each channel must be mixed with its partner, "
                "(x1 cos - x2 sin, x1 sin + x2 cos), not x * cos + x * sin", _rope_wrong(rotation=False)),
        Mistake("the two channels of a pair must share one angle: repeat cos/sin per pair (repeat_interleave(2, -1)), "
                "not tile them with torch.cat([cos, cos])", _rope_wrong(tiling="cat")),
        Mistake("you overwrote x[..., 0::2] in place and then used it to compute x[..., 1::2]; compute both halves of "
                "each pair from the original values into a new tensor", _rope_wrong(inplace=True)),
    ],
))
