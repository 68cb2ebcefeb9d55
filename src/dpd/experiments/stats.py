"""Small-sample statistics for a difference of two groups' means (a DPD arm against a control, a few seeds each).

Below ~10 seeds per group a percentile bootstrap of the difference is too narrow (it resamples a handful of values
and ignores that their spread is itself uncertain), so a gain resting on few seeds is shown with:

- **Welch's t interval**: ``diff ± t_{0.975, df} * se`` with ``se = sqrt(s_a^2 / n_a + s_b^2 / n_b)`` and the
  Welch-Satterthwaite ``df`` (no equal-variance assumption), and its two-sided p-value;
- **an exact permutation p-value**: the share of all C(n_a + n_b, n_a) relabellings of the pooled values whose
  |difference of means| is at least the observed one (two-sided; a seeded Monte-Carlo draw of 200,000 relabellings
  where there are more than that).

A verdict rule names its method (:data:`METHODS`); the percentile bootstrap stays beside them.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

#: the interval methods a verdict rule may name
METHODS = ("welch", "bootstrap")
#: exact enumeration up to this many relabellings, a Monte-Carlo draw of this many above it
MAX_EXACT = 200_000


@dataclass(frozen=True)
class Difference:
    """mean(a) - mean(b) with Welch's interval and p, and the permutation p."""

    diff: float
    welch_low: float
    welch_high: float
    welch_p: float
    df: float
    permutation_p: float
    #: True where the permutation p enumerated every relabelling
    exact: bool
    n_a: int
    n_b: int


def welch(a: np.ndarray, b: np.ndarray, level: float = 0.95) -> tuple[float, float, float, float, float]:
    """(difference, low, high, two-sided p, df) of Welch's t for mean(a) - mean(b); NaN where a group has < 2."""
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = float(a.mean() - b.mean()) if len(a) and len(b) else math.nan
    if len(a) < 2 or len(b) < 2:
        return diff, math.nan, math.nan, math.nan, math.nan
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return diff, diff, diff, (1.0 if diff == 0 else 0.0), math.inf
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    p = float(2 * stats.t.sf(abs(diff) / se, df))
    return diff, diff - half, diff + half, p, float(df)


def permutation_p(a: np.ndarray, b: np.ndarray, seed: int = 0) -> tuple[float, bool]:
    """(two-sided p of |mean(a) - mean(b)| under relabelling, exact?). NaN where a group is empty."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if not len(a) or not len(b):
        return math.nan, True
    pooled = np.concatenate([a, b])
    n, k = len(pooled), len(a)
    observed = abs(a.mean() - b.mean())
    total = pooled.sum()
    tolerance = 1e-9 * max(1.0, abs(observed))
    if math.comb(n, k) <= MAX_EXACT:
        idx = np.array(list(itertools.combinations(range(n), k)))
        sums = pooled[idx].sum(axis=1)
        exact = True
    else:
        rng = np.random.default_rng(seed)
        idx = np.argsort(rng.random((MAX_EXACT, n)), axis=1)[:, :k]
        sums = pooled[idx].sum(axis=1)
        exact = False
    diffs = np.abs(sums / k - (total - sums) / (n - k))
    return float(np.mean(diffs >= observed - tolerance)), exact


def difference(a: np.ndarray, b: np.ndarray, seed: int = 0) -> Difference:
    d, lo, hi, p, df = welch(a, b)
    perm, exact = permutation_p(a, b, seed)
    return Difference(d, lo, hi, p, df, perm, exact, len(a), len(b))


def verdict(low: float, high: float) -> str:
    """A rule's words for an interval of a gain: ``helps`` (above 0), ``hurts`` (below 0), else no measurable effect."""
    if math.isnan(low) or math.isnan(high):
        return "no interval"
    return "helps" if low > 0 else "hurts" if high < 0 else "no measurable effect"
