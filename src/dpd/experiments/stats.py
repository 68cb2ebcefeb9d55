"""Small-sample statistics for a difference of two groups' means (a DPD arm against a control, a few seeds each).

Below ~10 seeds per group a percentile bootstrap of the difference is too narrow (it resamples a handful of values
and ignores that their spread is itself uncertain), so a gain resting on few seeds is shown with:

- **Welch's t interval**: ``diff ± t_{0.975, df} * se`` with ``se = sqrt(s_a^2 / n_a + s_b^2 / n_b)`` and the
  Welch-Satterthwaite ``df`` (no equal-variance assumption), and its two-sided p-value
  (``scipy.stats.ttest_ind(equal_var=False)`` and its ``confidence_interval``);
- **an exact permutation p-value**: the share of all C(n_a + n_b, n_a) relabellings of the pooled values whose
  |difference of means| is at least the observed one (two-sided; ``scipy.stats.permutation_test`` on
  |mean(a) - mean(b)|, every relabelling where there are at most 200,000, else a seeded Monte-Carlo draw of 200,000,
  whose p is scipy's (hits + 1) / (draws + 1)).

A verdict rule names its method (:data:`METHODS`); the percentile bootstrap stays beside them.
"""

from __future__ import annotations

import math
import warnings
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
    if a.var(ddof=1) == 0 and b.var(ddof=1) == 0:  # no spread: the difference is exact (scipy says NaN)
        return diff, diff, diff, (1.0 if diff == 0 else 0.0), math.inf
    with warnings.catch_warnings():  # one group constant: scipy warns of "catastrophic cancellation"; the numbers hold
        warnings.simplefilter("ignore", RuntimeWarning)
        test = stats.ttest_ind(a, b, equal_var=False)
        ci = test.confidence_interval(level)
    return diff, float(ci.low), float(ci.high), float(test.pvalue), float(test.df)


def _abs_mean_difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.asarray(np.abs(x.mean(axis=axis) - y.mean(axis=axis)))


def permutation_p(a: np.ndarray, b: np.ndarray, seed: int = 0) -> tuple[float, bool]:
    """(two-sided p of |mean(a) - mean(b)| under relabelling, exact?). NaN where a group is empty."""
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if not len(a) or not len(b):
        return math.nan, True
    if min(len(a), len(b)) == 1:  # scipy wants >= 2 per group; the n relabellings of one value are enumerated here
        one, rest = (a, b) if len(a) == 1 else (b, a)
        pooled = np.concatenate([one, rest])
        observed = abs(one[0] - rest.mean())
        others = (pooled.sum() - pooled) / (len(pooled) - 1)
        return float(np.mean(np.abs(pooled - others) >= observed * (1 - 100 * np.finfo(float).eps))), True
    exact = math.comb(len(a) + len(b), len(a)) <= MAX_EXACT
    test = stats.permutation_test((a, b), _abs_mean_difference, permutation_type="independent", vectorized=True,
                                  n_resamples=MAX_EXACT, alternative="greater", rng=np.random.default_rng(seed))
    return float(test.pvalue), exact


def difference(a: np.ndarray, b: np.ndarray, seed: int = 0) -> Difference:
    d, lo, hi, p, df = welch(a, b)
    perm, exact = permutation_p(a, b, seed)
    return Difference(d, lo, hi, p, df, perm, exact, len(a), len(b))


def verdict(low: float, high: float) -> str:
    """A rule's words for an interval of a gain: ``helps`` (above 0), ``hurts`` (below 0), else no measurable effect."""
    if math.isnan(low) or math.isnan(high):
        return "no interval"
    return "helps" if low > 0 else "hurts" if high < 0 else "no measurable effect"
