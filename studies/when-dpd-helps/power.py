"""How many seeds resolve what: the smallest difference of means a two-sample t-test finds with 80% power (two-sided,
5%), and the power at a given difference, for a per-seed std measured in stage 1.

    python studies/when-dpd-helps/power.py --std 82.7 --seeds 3 8 12 20 --effect 104

82.7: the root mean square of the std over seeds of the students' mean of the independent, dense, authors and
adaptive arms on HalfCheetah-v5 (stage 1: 66.3, 99.1, 61.7, 96.7); 104: the paper's HalfCheetah margin (Table 1).
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import stats


def power(effect: float, std: float, seeds: int, alpha: float = 0.05) -> float:
    """Power of a two-sided two-sample t-test with ``seeds`` runs per group to find a difference ``effect``."""
    df = 2 * seeds - 2
    nc = effect / (std * np.sqrt(2 / seeds))
    t = stats.t.ppf(1 - alpha / 2, df)
    # the wrong-sign tail underflows to NaN in scipy's nct for a large noncentrality (many seeds); it is ~0 there
    wrong_sign = float(np.nan_to_num(stats.nct.cdf(-t, df, nc), nan=0.0))
    return float(stats.nct.sf(t, df, nc)) + wrong_sign


def minimum_detectable(std: float, seeds: int, target: float = 0.8) -> float:
    """The smallest difference found with power ``target`` (power grows with the difference: one root, found for
    any std; a search in steps of one unit of return took std-many power evaluations)."""
    from scipy.optimize import brentq

    high = std  # doubled until the power reaches the target: a bracket short of where nct's lower tail underflows
    while power(high, std, seeds) < target:
        high *= 2.0
    return float(brentq(lambda effect: power(effect, std, seeds) - target, 0.0, high))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--std", type=float, required=True, help="std over seeds of one group's final return")
    parser.add_argument("--seeds", type=int, nargs="+", default=[3, 8, 12, 20], help="runs per group")
    parser.add_argument("--effect", type=float, help="also print the power at this difference")
    args = parser.parse_args()
    for n in args.seeds:
        line = f"{n:3d} seeds per group: 80% power at a difference of {minimum_detectable(args.std, n):.0f}"
        if args.effect is not None:
            line += f"; power at {args.effect:g}: {power(args.effect, args.std, n):.2f}"
        print(line)


if __name__ == "__main__":
    main()
