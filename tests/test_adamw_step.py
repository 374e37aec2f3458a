"""`llmlab.train.optim.adamw_step` is `torch.optim.AdamW`: the probes of `training.adamw_step` take
their expected values from it, so this is what makes the exercise's answer torch's AdamW."""

from __future__ import annotations

import pytest
import torch

from llmlab.train.optim import adamw_step

# float64 rounding is ~1e-16 relative; 5 steps of a dozen operations on O(1) values stay below
# 1e-14 (measured: ~2e-16), and rewriting the formula the way torch does (lerp, sqrt(v)/sqrt(bc2))
# only moves the last bits. 1e-12 leaves that a 100x margin and is far below what any change to
# the formula does (eps inside the root, no bias correction, coupled decay: all > 1e-6 here).
ATOL = 1e-12

CASES = {
    "defaults, weight decay": dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1),
    "other betas and eps": dict(lr=3e-2, betas=(0.8, 0.95), eps=1e-3, weight_decay=0.05),
    "no weight decay": dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0),
}


@pytest.mark.parametrize("name", CASES)
def test_five_steps_equal_torch_adamw(name):
    hp = CASES[name]
    g = torch.Generator().manual_seed(0)
    p0 = torch.randn(3, 4, generator=g, dtype=torch.float64)
    grads = [torch.randn(3, 4, generator=g, dtype=torch.float64) * (0.1 + i) for i in range(5)]

    w = torch.nn.Parameter(p0.clone())
    opt = torch.optim.AdamW([w], foreach=False, **hp)
    p, m, v = p0.clone(), torch.zeros_like(p0), torch.zeros_like(p0)
    for t, grad in enumerate(grads, start=1):
        w.grad = grad.clone()
        opt.step()
        inputs = (p, grad, m, v)
        copies = [x.clone() for x in inputs]
        p, m, v = adamw_step(p, grad, m, v, t, **hp)
        assert all(torch.equal(x, c) for x, c in zip(inputs, copies)), "adamw_step changed an input"
        state = opt.state[w]
        assert (p - w.detach()).abs().max().item() < ATOL, f"step {t}: param"
        assert (m - state["exp_avg"]).abs().max().item() < ATOL, f"step {t}: exp_avg"
        assert (v - state["exp_avg_sq"]).abs().max().item() < ATOL, f"step {t}: exp_avg_sq"
    assert (p - p0).abs().max() > 1e-3  # it did move


def test_measured_error_is_at_rounding_level():
    """The margin ATOL claims: over 5 steps the largest difference from torch is ~1e-16, not ~1e-13."""
    hp = CASES["defaults, weight decay"]
    g = torch.Generator().manual_seed(2)
    w = torch.nn.Parameter(torch.randn(3, 4, generator=g, dtype=torch.float64))
    p, m, v = w.detach().clone(), torch.zeros(3, 4, dtype=torch.float64), torch.zeros(3, 4, dtype=torch.float64)
    opt = torch.optim.AdamW([w], foreach=False, **hp)
    worst = 0.0
    for t in range(1, 6):
        grad = torch.randn(3, 4, generator=g, dtype=torch.float64)
        w.grad = grad.clone()
        opt.step()
        p, m, v = adamw_step(p, grad, m, v, t, **hp)
        worst = max(worst, (p - w.detach()).abs().max().item())
    assert worst < ATOL / 100


def test_inputs_are_left_unchanged_and_outputs_are_new():
    g = torch.Generator().manual_seed(1)
    args = [torch.randn(5, generator=g, dtype=torch.float64) for _ in range(2)] + [torch.zeros(5, dtype=torch.float64)] * 2
    before = [a.clone() for a in args]
    out = adamw_step(*args, 1, lr=0.1)
    assert all(torch.equal(a, b) for a, b in zip(args, before))
    assert all(o.data_ptr() != a.data_ptr() for o in out for a in args)
