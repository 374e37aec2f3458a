"""llmlab.nn.embeddings against independent oracles (torch.nn.functional, naive loops, an
eigen-decomposition), the bigram model fitted two ways, and the pictures of chapter 02."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from llmlab.nn import embeddings as E
from llmlab.viz import embeddings as ve


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- one_hot_embedding
@pytest.mark.parametrize("shape, V, C, dtype", [((2, 5), 11, 3, torch.float32), ((7,), 4, 9, torch.float64), ((2, 3, 4), 6, 5, torch.float32),
                                                ((), 3, 2, torch.float32)])
def test_one_hot_embedding_is_a_lookup(shape, V, C, dtype):
    g = gen(0)
    ids = torch.randint(V, shape, generator=g)
    w = torch.randn(V, C, generator=g, dtype=dtype)
    out = E.one_hot_embedding(ids, w)
    assert out.shape == (*shape, C) and out.dtype == dtype
    # one-hot rows pick exactly one weight each (products with 0 and 1 are exact): no tolerance needed
    torch.testing.assert_close(out, F.embedding(ids, w), atol=0, rtol=0)


def test_one_hot_embedding_gradient_matches_f_embedding():
    g = gen(1)
    ids = torch.randint(6, (3, 4), generator=g)
    up = torch.randn(3, 4, 5, generator=g)
    w1 = torch.randn(6, 5, generator=g, requires_grad=True)
    w2 = w1.detach().clone().requires_grad_(True)
    (E.one_hot_embedding(ids, w1) * up).sum().backward()
    (F.embedding(ids, w2) * up).sum().backward()
    # both sum the same few upstream values per row, possibly in another order: float32 rounding ~1e-7
    torch.testing.assert_close(w1.grad, w2.grad, atol=1e-6, rtol=1e-6)


# ----------------------------------------------------------------------------- cosine_similarity
@pytest.mark.parametrize("sa, sb", [((3, 5, 7), (3, 5, 7)), ((4, 1, 6), (1, 5, 6)), ((9,), (2, 9))])
def test_cosine_similarity_matches_torch(sa, sb):
    g = gen(2)
    a, b = torch.randn(*sa, generator=g) * 3, torch.randn(*sb, generator=g) * 0.5
    # a few float32 operations on values of size ~1: agreement to ~1e-7, tolerance 1e-6
    torch.testing.assert_close(E.cosine_similarity(a, b), F.cosine_similarity(a, b, dim=-1), atol=1e-6, rtol=1e-6)


def test_cosine_similarity_of_a_zero_vector_is_zero_and_range_is_bounded():
    a = torch.zeros(2, 4)
    b = torch.randn(2, 4, generator=gen(3))
    assert torch.equal(E.cosine_similarity(a, b), torch.zeros(2))
    x = torch.randn(50, 8, generator=gen(4))
    c = E.cosine_similarity(x[:, None, :], x[None, :, :])  # (50, 50)
    assert c.abs().max() <= 1 + 1e-6
    # each vector with itself: exactly 1 up to float32 rounding of the norm
    torch.testing.assert_close(c.diagonal(), torch.ones(50), atol=1e-6, rtol=0)
    torch.testing.assert_close(E.cosine_similarity(x, -2 * x), -torch.ones(50), atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------- cross_entropy
@pytest.mark.parametrize("N, V, scale, shift", [(6, 11, 2.0, 0.0), (13, 5, 1.0, 0.0), (1, 4, 1.0, 0.0), (6, 11, 100.0, 1000.0), (6, 11, 30.0, -1000.0)])
def test_cross_entropy_matches_torch_value_and_gradient(N, V, scale, shift):
    g = gen(5)
    z1 = (torch.randn(N, V, generator=g) * scale + shift).requires_grad_(True)
    z2 = z1.detach().clone().requires_grad_(True)
    y = torch.randint(V, (N,), generator=g)
    l1, l2 = E.cross_entropy(z1, y), F.cross_entropy(z2, y)
    assert l1.shape == () and torch.isfinite(l1)
    # the loss can be ~100 for the spread-out logits: relative 1e-5 is float32 rounding there
    torch.testing.assert_close(l1, l2, atol=1e-5, rtol=1e-5)
    l1.backward()
    l2.backward()
    # gradients are probabilities / N, in [0, 1]: absolute 1e-6 is float32 rounding
    torch.testing.assert_close(z1.grad, z2.grad, atol=1e-6, rtol=1e-5)


def test_cross_entropy_of_uniform_logits_is_log_v():
    z = torch.zeros(4, 7)
    y = torch.tensor([0, 3, 6, 2])
    torch.testing.assert_close(E.cross_entropy(z, y), torch.tensor(7.0).log(), atol=1e-6, rtol=0)


def test_cross_entropy_names_wrong_shapes():
    with pytest.raises(ValueError, match=r"\(N, V\)"):
        E.cross_entropy(torch.zeros(2, 3, 4), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(3,\)"):
        E.cross_entropy(torch.zeros(2, 3), torch.zeros(3, dtype=torch.long))


# ----------------------------------------------------------------------------- bigram: counting
def test_bigram_counts_match_a_naive_counter():
    ids = torch.randint(5, (300,), generator=gen(6))
    N = E.bigram_counts(ids, 7)  # vocab larger than the ids used: rows 5, 6 stay empty
    assert N.shape == (7, 7) and N.dtype == torch.long and N.sum() == 299
    naive = Counter(zip(ids.tolist(), ids[1:].tolist()))
    assert all(N[i, j] == naive[(i, j)] for i in range(7) for j in range(7))


def test_bigram_counts_reject_bad_ids():
    with pytest.raises(ValueError, match="vocab_size=3"):
        E.bigram_counts(torch.tensor([0, 1, 5]), 3)
    with pytest.raises(ValueError, match="1-D"):
        E.bigram_counts(torch.zeros(2, 2, dtype=torch.long), 3)


def test_bigram_log_probs_are_normalised_and_smoothing_matters():
    N = torch.tensor([[3, 0, 1], [0, 0, 0], [2, 2, 0]])
    lp = E.bigram_log_probs(N, smoothing=1.0)
    # each row is a distribution: logsumexp = 0 up to float32 rounding
    torch.testing.assert_close(lp.logsumexp(dim=1), torch.zeros(3), atol=1e-6, rtol=0)
    torch.testing.assert_close(lp[0].exp(), torch.tensor([4 / 7, 1 / 7, 2 / 7]), atol=1e-6, rtol=0)
    torch.testing.assert_close(lp[1].exp(), torch.full((3,), 1 / 3), atol=1e-6, rtol=0)  # an unseen row: uniform
    assert E.bigram_log_probs(N, smoothing=0.0)[0, 1] == float("-inf")
    with pytest.raises(ValueError, match="smoothing=-1"):
        E.bigram_log_probs(N, smoothing=-1)


# ----------------------------------------------------------------------------- bigram: gradient descent
def test_gradient_descent_reaches_the_counting_solution():
    """The full-table bigram's best cross-entropy is the entropy of the counted bigrams:
    gradient descent on our cross_entropy must get there."""
    torch.manual_seed(0)
    V = 5
    ids = torch.randint(V, (400,), generator=gen(7))
    x, y = ids[:-1], ids[1:]
    best = -E.bigram_log_probs(E.bigram_counts(ids, V), smoothing=0.0)[x, y].mean()
    model = E.BigramModel(V)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(600):
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() >= best.item() - 1e-5  # the counts are the optimum: never below it (float32 slack)
    assert loss.item() - best.item() < 1e-4  # and 600 full-batch Adam steps on 25 logits converge (observed ~1e-7)
    # the learned softmax rows are the counted frequencies (observed max difference ~1e-7; 1e-3 allows Adam's jitter)
    probs = F.softmax(model.wte.weight.detach(), dim=1)
    torch.testing.assert_close(probs, E.bigram_log_probs(E.bigram_counts(ids, V), 0.0).exp(), atol=1e-3, rtol=0)


def test_bigram_model_shapes_and_loss():
    g = gen(8)
    for n_embd in (None, 4):
        m = E.BigramModel(9, n_embd)
        idx = torch.randint(9, (2, 6), generator=g)
        logits, loss = m(idx)
        assert logits.shape == (2, 6, 9) and loss is None
        _, loss = m(idx, idx.roll(1, dims=1))
        ref = F.cross_entropy(logits.reshape(-1, 9), idx.roll(1, dims=1).reshape(-1))
        torch.testing.assert_close(loss, ref, atol=1e-6, rtol=1e-6)  # float32 rounding of a loss ~2
        assert m.embeddings.shape == (9, n_embd or 9) and not m.embeddings.requires_grad
    assert E.BigramModel(9).lm_head is None
    m = E.BigramModel(9)
    assert torch.equal(m(torch.tensor([3]))[0][0], m.wte.weight[3])  # logits = a row of the table, nothing else
    with pytest.raises(ValueError, match="targets"):
        m(torch.zeros(2, 3, dtype=torch.long), torch.zeros(6, dtype=torch.long))
    with pytest.raises(ValueError, match="n_embd=0"):
        E.BigramModel(9, 0)


# ----------------------------------------------------------------------------- geometry
def test_nearest_neighbours_known_answer():
    emb = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0], [10.0, 1.0]])
    idx, sim = E.nearest_neighbours(emb, 0, k=3)
    assert idx.tolist() == [4, 1, 2]  # length does not matter, direction does; itself left out
    torch.testing.assert_close(sim, F.cosine_similarity(emb[[4, 1, 2]], emb[0:1], dim=-1), atol=1e-6, rtol=0)
    idx, _ = E.nearest_neighbours(emb, torch.tensor([-1.0, 0.05]), k=1)
    assert idx.tolist() == [3]
    idx, _ = E.nearest_neighbours(emb, 0, k=2, exclude=4)
    assert idx.tolist() == [1, 2]
    with pytest.raises(ValueError, match="k=5"):
        E.nearest_neighbours(emb, 0, k=5)
    with pytest.raises(ValueError, match="query=7"):
        E.nearest_neighbours(emb, 7)


def test_project_2d_matches_an_eigendecomposition():
    g = gen(9)
    x = torch.randn(40, 6, generator=g, dtype=torch.float64) * torch.tensor([5.0, 3.0, 1.0, 0.5, 0.2, 0.1], dtype=torch.float64)
    x = x @ torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))[0] + 7.0  # rotate and shift
    p = E.project_2d(x)
    xc = x - x.mean(0)
    evals, evecs = torch.linalg.eigh(xc.T @ xc)  # ascending
    oracle = xc @ evecs[:, [-1, -2]]
    # the same directions up to sign; float64 throughout, so 1e-9 is generous
    torch.testing.assert_close(p.abs(), oracle.abs(), atol=1e-9, rtol=1e-9)
    assert p[:, 0].var() > p[:, 1].var()
    torch.testing.assert_close(E.project_2d(x + 100.0), p, atol=1e-9, rtol=1e-9)  # centring removes any shift
    assert torch.equal(E.project_2d(x), p)  # deterministic, sign included
    with pytest.raises(ValueError, match="C >= 2"):
        E.project_2d(torch.zeros(5, 1))


# ----------------------------------------------------------------------------- pictures
def test_plots_and_explorer():
    import matplotlib.pyplot as plt

    labels = list("abcde01 .")
    emb = torch.randn(len(labels), 4, generator=gen(10))
    figs = [ve.plot_projection(E.project_2d(emb), labels), ve.plot_neighbours(emb, labels, ["a", "0"], k=3),
            ve.plot_bigram(torch.randint(5, (len(labels), len(labels)), generator=gen(11)), labels)]
    for fig in figs:
        ax = fig.axes[0]
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
        w, h = fig.get_size_inches()
        assert w <= 8 and h <= 4
        plt.close(fig)
    box = ve.neighbourhood_explorer(emb, labels, start="b", k=3)
    (pick, kk), out = box.children[0].children, box.children[1]
    assert pick.value == 1 and out.value.count("<tr>") == 3
    kk.value = 5
    assert out.value.count("<tr>") == 5
    first = E.nearest_neighbours(emb, 1, k=1)[0].item()
    assert f">{labels[first]}<" in out.value.split("<tr>")[1]
    assert [ve.char_group(c) for c in "aB7 .x"] == ["vowel", "upper", "digit", "space", "punctuation", "consonant"]
