"""llmlab.nn.positional: closed forms, RoPE's properties (rotation, relative position, offsets),
ALiBi's slopes from the paper, the scheme factory, and a GPT with each scheme.

Tolerances: a float32 angle near 100 rad is rounded by up to ~4e-6 (half an ulp of 100 is
3.8e-6) plus the rounding of base^(-2i/d), so sin/cos of it agree with a float64 closed form
to ~1e-5; we use atol=2e-5 there. Everything else is float32 through a few multiplications
(errors ~1e-6): atol=rtol=1e-5.
"""

from __future__ import annotations

import math

import matplotlib
import pytest
import torch

from llmlab.models.gpt import GPT, GPTConfig
from llmlab.nn import positional as P
from llmlab.nn.attention import MultiHeadAttention

TOL = dict(atol=1e-5, rtol=1e-5)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- sinusoidal
@pytest.mark.parametrize("T, d, base", [(50, 16, 10000.0), (9, 6, 100.0), (100, 10, 7.0)])
def test_sinusoidal_matches_the_closed_form(T, d, base):
    expected = torch.tensor([[math.sin(p / base ** (c / d)) if c % 2 == 0 else math.cos(p / base ** ((c - 1) / d))
                              for c in range(d)] for p in range(T)], dtype=torch.float64)
    torch.testing.assert_close(P.sinusoidal_encoding(T, d, base).double(), expected, atol=2e-5, rtol=0)


def test_sinusoidal_position_zero_and_odd_width():
    assert torch.equal(P.sinusoidal_encoding(1, 6)[0], torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="d=7"):
        P.sinusoidal_encoding(4, 7)


def test_sinusoidal_dot_products_depend_only_on_distance():
    pe = P.sinusoidal_encoding(40, 32).double()
    sim = pe @ pe.T  # (T, T): sum_i cos((p - q) w_i), a function of p - q
    torch.testing.assert_close(sim[5:, 5:], sim[:-5, :-5], **TOL)


def test_sinusoidal_scheme_extrapolates_beyond_its_table():
    s = P.SinusoidalPositions(block_size=8, n_embd=12)
    torch.testing.assert_close(s.embed(6, offset=5), P.sinusoidal_encoding(11, 12)[5:], **TOL)
    torch.testing.assert_close(s.embed(3, offset=2), P.sinusoidal_encoding(5, 12)[2:], **TOL)


# ----------------------------------------------------------------------------- RoPE
def rope_complex(x: torch.Tensor, base: float) -> torch.Tensor:
    """An independent oracle: pair (x[2i], x[2i+1]) is the complex number x[2i] + i x[2i+1],
    and rotating it by theta is multiplying by e^(i theta)."""
    T, D = x.shape[-2:]
    z = torch.view_as_complex(x.double().unflatten(-1, (D // 2, 2)).contiguous())  # (..., T, D/2)
    theta = torch.arange(T, dtype=torch.float64)[:, None] * base ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)
    return torch.view_as_real(z * torch.polar(torch.ones_like(theta), theta)).flatten(-2)


@pytest.mark.parametrize("shape, base", [((2, 3, 17, 8), 10000.0), ((30, 6), 100.0)])
def test_rope_matches_complex_multiplication(shape, base):
    x = torch.randn(*shape, generator=gen(1))
    torch.testing.assert_close(P.apply_rope(x, base).double(), rope_complex(x, base), atol=2e-5, rtol=1e-5)


def test_rope_preserves_norms_of_every_pair_and_position_zero():
    x = torch.randn(4, 25, 16, generator=gen(2))
    y = P.apply_rope(x)
    torch.testing.assert_close(y.unflatten(-1, (8, 2)).norm(dim=-1), x.unflatten(-1, (8, 2)).norm(dim=-1), **TOL)
    assert torch.equal(y[:, 0], x[:, 0])  # angle 0: cos = 1, sin = 0 exactly
    assert y.dtype == x.dtype and P.apply_rope(x.double()).dtype == torch.float64


@pytest.mark.parametrize("base", [10000.0, 50.0])
def test_rope_scores_depend_only_on_relative_position(base):
    g = gen(3)
    q, k = torch.randn(32, generator=g), torch.randn(32, generator=g)
    T = 40
    rq = P.apply_rope(q.expand(T, 32).contiguous(), base)  # q placed at every position
    rk = P.apply_rope(k.expand(T, 32).contiguous(), base)
    S = rq @ rk.T  # S[m, n] = score of a query at m and a key at n
    for shift in (1, 7, 20):
        torch.testing.assert_close(S[shift:, shift:], S[:-shift, :-shift], atol=5e-5, rtol=1e-5)  # sums of 32 products of O(1)
    assert not torch.allclose(S[0, 1:], S[0, :-1])  # ...and it does depend on m - n


def test_rope_offset_equals_slicing_a_longer_sequence():
    x = torch.randn(2, 5, 8, generator=gen(4))
    longer = torch.cat([torch.randn(2, 9, 8, generator=gen(5)), x], dim=1)  # x sits at positions 9..13
    torch.testing.assert_close(P.apply_rope(x, offset=9), P.apply_rope(longer)[:, 9:], **TOL)


def test_rope_is_rotate_half_on_a_permuted_basis():
    """The GPT-NeoX layout pairs channel i with i + D/2; permuting channels maps one onto the other."""
    D = 8
    x = torch.randn(6, D, generator=gen(6))
    theta = P.rope_angles(6, D)
    x1, x2 = x[:, : D // 2], x[:, D // 2:]
    half = torch.cat([x1 * theta.cos() - x2 * theta.sin(), x1 * theta.sin() + x2 * theta.cos()], dim=-1)
    perm = torch.stack([torch.arange(D // 2), torch.arange(D // 2) + D // 2], dim=-1).flatten()  # 0, 4, 1, 5, ...
    torch.testing.assert_close(P.apply_rope(x[:, perm]), half[:, perm], **TOL)
    assert not torch.allclose(P.apply_rope(x), half)


def test_rope_odd_width_is_refused():
    with pytest.raises(ValueError, match=r"even last dimension.*\(3, 5\)"):
        P.apply_rope(torch.randn(3, 5))


# ----------------------------------------------------------------------------- ALiBi
def test_alibi_slopes_for_eight_heads_are_powers_of_two():
    torch.testing.assert_close(P.alibi_slopes(8), torch.tensor([2.0 ** -i for i in range(1, 9)]), **TOL)
    torch.testing.assert_close(P.alibi_slopes(16), torch.tensor([2.0 ** (-i / 2) for i in range(1, 17)]), **TOL)


@pytest.mark.parametrize("n", [6, 12])
def test_alibi_slopes_for_other_head_counts_interleave_the_two_nearest_powers(n):
    # Press et al.'s reference code: slopes of the power of two below, then every other slope of twice that
    closest = 2 ** math.floor(math.log2(n))
    low = [2 ** (-8 * (i + 1) / closest) for i in range(closest)]
    high = [2 ** (-8 * (i + 1) / (2 * closest)) for i in range(2 * closest)][0::2][: n - closest]
    got = P.alibi_slopes(n)
    assert got.shape == (n,)
    torch.testing.assert_close(got, torch.tensor(low + high), **TOL)
    if n == 6:
        torch.testing.assert_close(got, torch.tensor([2.0 ** -2, 2.0 ** -4, 2.0 ** -6, 2.0 ** -8, 2.0 ** -1, 2.0 ** -3]), **TOL)


def test_alibi_bias_is_minus_slope_times_distance():
    a = P.ALiBi(4)
    b = a.attn_bias(3, 5, offset=2)  # queries at positions 2, 3, 4 of 5 keys
    assert b.shape == (4, 3, 5)
    slopes = P.alibi_slopes(4)
    for h in range(4):
        for i in range(3):
            for j in range(5):
                assert math.isclose(b[h, i, j].item(), -slopes[h].item() * abs(i + 2 - j), rel_tol=1e-6, abs_tol=1e-7)


# ----------------------------------------------------------------------------- the factory and the GPT
def test_make_positional_kinds_and_errors():
    kw = dict(block_size=8, n_embd=12, n_head=3)
    kinds = {k: type(P.make_positional(k, **kw)) for k in ("learned", "sinusoidal", "rope", "alibi")}
    assert kinds == {"learned": P.LearnedPositions, "sinusoidal": P.SinusoidalPositions, "rope": P.RoPE, "alibi": P.ALiBi}
    with pytest.raises(ValueError, match=r"pos_encoding='absolute': expected one of 'learned', 'sinusoidal', 'rope', 'alibi'"):
        P.make_positional("absolute", **kw)
    with pytest.raises(ValueError, match="block_size=8"):
        P.make_positional("learned", **kw).embed(5, offset=4)


def test_learned_positions_are_trainable_and_others_have_no_parameters():
    kw = dict(block_size=8, n_embd=12, n_head=3)
    assert sum(p.numel() for p in P.make_positional("learned", **kw).parameters()) == 8 * 12
    for k in ("sinusoidal", "rope", "alibi"):
        assert list(P.make_positional(k, **kw).parameters()) == []


@pytest.mark.parametrize("pos", ["learned", "sinusoidal", "rope", "alibi"])
def test_gpt_with_each_scheme_runs_and_learns_a_step(pos):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=23, block_size=12, n_layer=2, n_head=2, n_embd=16, pos_encoding=pos))
    idx = torch.randint(23, (3, 12), generator=gen(7))
    logits, loss = model(idx, idx)
    assert logits.shape == (3, 12, 23) and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_attention_without_positions_is_permutation_equivariant():
    torch.manual_seed(0)
    attn = MultiHeadAttention(16, 4, causal=False).eval()
    x = torch.randn(2, 9, 16, generator=gen(8))
    perm = torch.randperm(9, generator=gen(9))
    with torch.no_grad():
        torch.testing.assert_close(attn(x[:, perm]), attn(x)[:, perm], **TOL)
        rope = P.RoPE()  # with positions, shuffling the tokens changes more than their order
        assert not torch.allclose(attn(x[:, perm], rope), attn(x, rope)[:, perm], atol=1e-3)


# ----------------------------------------------------------------------------- pictures
def test_plots_have_labelled_axes():
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from llmlab.viz import positional as V

    for fig in (V.plot_overview(), V.plot_alibi()):
        assert all(a.get_title() for a in fig.axes if a.get_label() != "<colorbar>")
    ax = V.plot_rope_angles(T=16, D=8)
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    plt.close("all")


def test_rope_scores_curves_coincide_across_offsets():
    from llmlab.viz.positional import rope_scores

    s = rope_scores(D=16, max_distance=10, offsets=(0, 13, 40))
    torch.testing.assert_close(s[13], s[0], atol=5e-5, rtol=1e-5)
    torch.testing.assert_close(s[40], s[0], atol=5e-5, rtol=1e-5)


def test_rope_tables_give_the_same_numbers_as_computing_the_angles():
    """The model's RoPE precomputes its rotations for block_size positions and rotates as complex
    numbers (fast KV-cache steps); it must agree with apply_rope inside the table and past its
    end. 2e-6: a complex product rounds differently from the written-out one, by an ulp or two
    of values ~3 (float32 ulp there: 2.4e-7); any wrong angle or pairing is off by > 1e-2."""
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 3, 5, 8, generator=g), torch.randn(2, 3, 5, 8, generator=g)
    rope = P.make_positional("rope", block_size=16, n_embd=24, n_head=3)  # head width 8
    for offset in (0, 7, 11, 14):  # 14 + 5 > 16: past the table
        rq, rk = rope.rotate(q, k, offset=offset)
        torch.testing.assert_close(rq, P.apply_rope(q, offset=offset), atol=2e-6, rtol=0)
        torch.testing.assert_close(rk, P.apply_rope(k, offset=offset), atol=2e-6, rtol=0)
    assert "cis" not in rope.state_dict()  # checkpoints do not carry the table


@pytest.mark.parametrize("layout", ["interleaved", "half"])
def test_rope_table_survives_a_change_of_dtype(layout):
    """Module.to(dtype) casts buffers, a complex one to real (losing the sines): the table is kept
    out of that, so a bfloat16 model still rotates. 2e-2: q is rounded to bfloat16 (8 bits of
    mantissa; values below 4 here, where an ulp is 1.6e-2) before and after the rotation (measured: 1e-2);
    dropping the sines is off by ~1."""
    rope = P.make_positional("rope", block_size=16, n_embd=24, n_head=3, layout=layout)
    rope.to(torch.bfloat16)
    assert rope.cis.dtype == torch.complex64
    q = torch.randn(2, 3, 5, 8, generator=torch.Generator().manual_seed(3))
    rq, _ = rope.rotate(q.bfloat16(), q.bfloat16(), offset=4)
    assert rq.dtype == torch.bfloat16
    torch.testing.assert_close(rq.float(), P.apply_rope(q, offset=4, layout=layout), atol=2e-2, rtol=0)


@pytest.mark.parametrize("layout", ["interleaved", "half"])
def test_rope_scores_depend_only_on_relative_position_in_both_layouts(layout):
    g = torch.Generator().manual_seed(4)
    q, k = torch.randn(1, 8, generator=g), torch.randn(1, 8, generator=g)

    def score(m: int, n: int) -> torch.Tensor:
        return (P.apply_rope(q, offset=m, layout=layout) * P.apply_rope(k, offset=n, layout=layout)).sum()

    # float32 on O(1) values: 1e-5 is a few ulps of the sum of 8 products
    torch.testing.assert_close(score(7, 3), score(4, 0), atol=1e-5, rtol=0)
    torch.testing.assert_close(score(12, 9), score(3, 0), atol=1e-5, rtol=0)


def test_half_layout_pairs_channel_i_with_i_plus_half():
    x = torch.zeros(1, 8)
    x[0, 1] = 1.0  # channel 1 pairs with channel 5 in the "half" layout, with channel 0 in the interleaved one
    half = P.apply_rope(x, offset=1, layout="half")
    assert set(half.nonzero()[:, 1].tolist()) == {1, 5}
    assert set(P.apply_rope(x, offset=1).nonzero()[:, 1].tolist()) == {0, 1}
    with pytest.raises(ValueError, match="layout='both'"):
        P.apply_rope(x, layout="both")
