"""Intervals for the course's measurements: every headline number comes with one.

* `wilson_interval(k, n)`: the Wilson score interval of a proportion k / n (Wilson 1927; Newcombe 1998
  compares it with six others and recommends it). Unlike the textbook p ± z sqrt(p (1 - p) / n), it
  never leaves [0, 1] and is not empty at k = 0 or k = n: "0 of 20 wrong" still allows up to 16 %.
* `bootstrap_ci(per_item, stat)`: the percentile bootstrap (Efron 1979) of any statistic of the test
  items, e.g. a corpus BLEU (Koehn 2004) over test sentences, resampling the items with replacement.

No torch and no llmlab imports: any layer may use it.

Left out on purpose: BCa and studentised bootstraps, paired tests between two systems, multiple-comparison
corrections.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """(low, high) of the Wilson score interval for k successes in n trials (95 % for z = 1.96).

    >>> [round(v, 4) for v in wilson_interval(81, 263)]   # Newcombe (1998), Table I, example (a)
    [0.2553, 0.3662]
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r}: expected a positive number of trials")
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= n:
        raise ValueError(f"k={k!r}: expected a whole number of successes between 0 and n={n}")
    if not z > 0:
        raise ValueError(f"z={z!r}: expected a positive normal quantile (1.96 for 95 %)")
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_ci(per_item, stat: Callable[[np.ndarray], float], n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float, float]:
    """(value, low, high): `stat` of the rows of `per_item` [N, ...], and the percentile interval of
    `stat` over `n_boot` resamples of the N rows with replacement, from a generator seeded with `seed`."""
    per_item = np.asarray(per_item)
    if per_item.ndim == 0 or len(per_item) == 0:
        raise ValueError("per_item: expected at least one row (one per test item)")
    if not 0 < level < 1:
        raise ValueError(f"level={level!r}: expected a probability between 0 and 1, e.g. 0.95")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(per_item), size=(n_boot, len(per_item)))
    boots = np.array([stat(per_item[i]) for i in idx])
    a = (1 - level) / 2
    return float(stat(per_item)), float(np.quantile(boots, a)), float(np.quantile(boots, 1 - a))
