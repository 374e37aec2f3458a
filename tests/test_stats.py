"""llmlab.stats: the Wilson interval against the published values of Newcombe (1998), and the
bootstrap's coverage and determinism."""

from __future__ import annotations

import numpy as np
import pytest

from llmlab.stats import bootstrap_ci, wilson_interval


@pytest.mark.parametrize("k, n, low, high", [
    (81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718),  # Newcombe 1998, Table I
])
def test_wilson_equals_newcombes_published_values(k, n, low, high):
    lo, hi = wilson_interval(k, n)
    assert (round(lo, 4), round(hi, 4)) == (low, high)


def test_wilson_stays_in_range_and_is_not_empty_at_the_ends():
    for n in (1, 5, 40):
        for k in range(n + 1):
            lo, hi = wilson_interval(k, n)
            assert 0.0 <= lo < hi <= 1.0 and lo <= k / n <= hi
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 10)[1] > 0.2  # the normal approximation would say [0, 0]


def test_bootstrap_is_deterministic_and_covers_the_mean():
    x = np.random.default_rng(0).normal(2.0, 1.0, size=400)
    v, lo, hi = bootstrap_ci(x, np.mean, n_boot=500, seed=1)
    assert (v, lo, hi) == bootstrap_ci(x, np.mean, n_boot=500, seed=1)
    assert lo < v < hi and v == pytest.approx(x.mean())
    se = x.std(ddof=1) / np.sqrt(len(x))
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.2)  # the percentile interval of a mean: about ±1.96 standard errors


def test_bad_arguments_name_the_parameter():
    with pytest.raises(ValueError, match="k=11: expected a whole number of successes between 0 and n=10"):
        wilson_interval(11, 10)
    with pytest.raises(ValueError, match="n=0: expected a positive number of trials"):
        wilson_interval(0, 0)
    with pytest.raises(ValueError, match="per_item: expected at least one row"):
        bootstrap_ci([], np.mean)
