"""Small-sample statistics: Welch's t interval and the exact permutation p (dpd.experiments.stats)."""

from __future__ import annotations

import numpy as np
import pytest

from dpd.experiments.stats import difference, permutation_p, verdict, welch


def test_the_ppo_studys_stage_4_halfcheetah_verdict_recomputes_from_the_committed_returns() -> None:
    """docs/results/when-dpd-helps/stage4/tables.md, every learner's final return (seeds 3-7): the students' mean of
    the alpha-0.1 arm against the independent pair. Bootstrap said [-955, -94] ("hurts"); Welch and the permutation
    test, right for 5 seeds, do not exclude 0."""
    independent = np.array([(1661 + 2260) / 2, (1652 + 1751) / 2, (3763 + 1493) / 2, (1619 + 1667) / 2,
                            (1693 + 3980) / 2])
    alpha01 = np.array([(1703 + 1686) / 2, (1678 + 1642) / 2, (1946 + 1411) / 2, (1732 + 1224) / 2,
                        (1587 + 1712) / 2])
    d = difference(alpha01, independent)
    assert d.diff == pytest.approx(-521.8)
    assert (round(d.welch_low), round(d.welch_high)) == (-1196, 152)
    assert d.welch_p == pytest.approx(0.099, abs=5e-4)
    assert d.permutation_p == pytest.approx(14 / 252) and d.exact  # 14 of the 252 relabellings are as extreme
    assert verdict(d.welch_low, d.welch_high) == "no measurable effect"


def test_permutation_p_by_hand() -> None:
    # a = {1, 2}, b = {3, 4}: |diff| = 2; of the 6 relabellings, {1,2} and {3,4} reach it
    assert permutation_p(np.array([1.0, 2.0]), np.array([3.0, 4.0])) == (pytest.approx(1 / 3), True)
    p, exact = permutation_p(np.arange(12.0), np.arange(12.0) + 100, seed=1)  # C(24, 12) > 200,000: a draw
    assert not exact and p < 1e-3


def test_welch_matches_scipy_and_handles_small_groups() -> None:
    from scipy import stats

    rng = np.random.default_rng(0)
    a, b = rng.normal(1, 1, 6), rng.normal(0, 3, 9)
    d, lo, hi, p, _ = welch(a, b)
    ref = stats.ttest_ind(a, b, equal_var=False)
    assert p == pytest.approx(ref.pvalue) and lo < d < hi
    ci = ref.confidence_interval(0.95)
    assert (lo, hi) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert np.isnan(welch(a[:1], b)[1])
    assert verdict(1.0, 2.0) == "helps" and verdict(-2.0, -1.0) == "hurts"


# ---------------------------------------------------------------- the hand-written code scipy.stats replaced (reference)
def _welch_by_hand(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float, float, float]:
    import math

    from scipy import stats

    diff = float(a.mean() - b.mean())
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = float(stats.t.ppf(0.975, df)) * se
    return diff, diff - half, diff + half, float(2 * stats.t.sf(abs(diff) / se, df)), float(df)


def _permutation_p_by_hand(a: np.ndarray, b: np.ndarray) -> float:
    """Every relabelling enumerated (the code before scipy.stats.permutation_test)."""
    import itertools

    pooled = np.concatenate([a, b])
    n, k = len(pooled), len(a)
    observed = abs(a.mean() - b.mean())
    idx = np.array(list(itertools.combinations(range(n), k)))
    sums = pooled[idx].sum(axis=1)
    diffs = np.abs(sums / k - (pooled.sum() - sums) / (n - k))
    return float(np.mean(diffs >= observed - 1e-9 * max(1.0, abs(observed))))


def test_scipy_gives_the_hand_written_welch_and_exact_permutation_p_on_random_groups() -> None:
    """scipy.stats (ttest_ind, permutation_test) against the formulas they replaced: continuous values (returns),
    rounded values (many ties) and unequal sizes; the exact p equal, Welch's numbers to the last few bits."""
    rng = np.random.default_rng(2024)
    worst = 0.0
    for trial in range(150):
        n_a, n_b = rng.integers(1 if trial % 5 == 0 else 2, 9, size=2)  # a group of one: dpd's own enumeration
        a, b = rng.normal(rng.uniform(-1, 1) * 500, rng.uniform(1, 900), n_a), rng.normal(0, rng.uniform(1, 900), n_b)
        if trial % 3 == 0:
            a, b = np.round(a / 300), np.round(b / 300)  # few distinct values: ties at the observed difference
        p, exact = permutation_p(a, b)
        assert exact and p == _permutation_p_by_hand(a, b), (a, b)
        if min(n_a, n_b) < 2 or (a.var() == 0 and b.var() == 0):
            continue
        new, old = welch(a, b), _welch_by_hand(a, b)
        assert new[0] == old[0]
        for x, y in zip(new[1:], old[1:], strict=True):
            worst = max(worst, abs(x - y) / max(abs(y), 1e-300))
    assert worst < 1e-12, worst
    print("worst relative difference", worst)


def test_spearman_is_scipys_on_the_finite_pairs_and_nan_where_undefined() -> None:
    from scipy.stats import rankdata

    from dpd.experiments.calibrate import spearman

    rng = np.random.default_rng(3)
    for trial in range(200):
        a = rng.normal(size=rng.integers(4, 300))  # >= 3 finite pairs after a[0] = NaN
        b = a * rng.uniform(-1, 1) + rng.normal(size=len(a))
        if trial % 2:
            a, b = np.round(a), np.round(2 * b)  # ties: average ranks
        a[0] = np.nan
        ok = np.isfinite(a)
        by_hand = np.corrcoef(rankdata(a[ok]), rankdata(b[ok]))[0, 1]  # the formula the scipy call replaced
        assert spearman(a, b) == pytest.approx(by_hand, abs=1e-15)
    assert np.isnan(spearman(np.arange(2.0), np.arange(2.0))) and np.isnan(spearman(np.arange(5.0), np.ones(5)))
