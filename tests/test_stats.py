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
