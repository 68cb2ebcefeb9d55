"""A report's statistics: bootstrap intervals on their own random streams, IQM / mean aggregates over tasks with
stratified-bootstrap intervals and P(improvement) (the definitions of rliable, Agarwal et al. 2021), and the
distillation and selection gains (with Welch's t interval and the exact permutation p where a group has fewer than
:data:`SMALL_SAMPLE` seeds).

Every interval is one bootstrap, :func:`percentile_interval` (``scipy.stats.bootstrap``): each sample resampled on
its own, in order, from the estimate's own stream."""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np

from dpd.experiments.report.runs import INDEPENDENT, PAIR_STATS, Run
from dpd.experiments.scores import REFERENCE_SCORES
from dpd.experiments.stats import difference
from dpd.names import STUDENTS, VANILLA

BOOTSTRAP_REPS = 2000

#: below this many runs per group a gain also gets Welch's interval and the permutation p (dpd.experiments.stats)
SMALL_SAMPLE = 10


def stream_seed(*key: str) -> int:
    """The seed of one estimate's bootstrap, fixed by what it estimates (e.g. algo, task, group, statistic). Every
    CI draws from its own stream: adding runs of another group or task never moves it (one generator shared in
    sequence did, by a few units of return)."""
    return zlib.crc32("|".join(key).encode())


def stream(*key: str) -> np.random.Generator:
    """A generator on :func:`stream_seed` ``(*key)``."""
    return np.random.default_rng(stream_seed(*key))


def percentile_interval(samples: tuple[np.ndarray, ...], statistic: Callable[..., Any], rng: np.random.Generator,
                        reps: int = BOOTSTRAP_REPS) -> tuple[float, float]:
    """95% percentile bootstrap interval of ``statistic(*samples, axis=-1)`` (vectorised over resamples): scipy's
    ``bootstrap``, each sample (>= 2 values) resampled independently with ``rng``. The interval is read from scipy's
    bootstrap distribution with ``np.percentile`` at 2.5 and 97.5: scipy's own quantile at ``(1 - 0.95) / 2`` differs
    in the 13th significant digit, and this way the committed study numbers recompute bit for bit."""
    from scipy import stats

    res = stats.bootstrap(samples, statistic, n_resamples=reps, vectorized=True, method="percentile", rng=rng)
    dist = res.bootstrap_distribution
    return float(np.percentile(dist, 2.5)), float(np.percentile(dist, 97.5))


def _mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.asarray(x.mean(axis=axis))


def _mean_difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.asarray(x.mean(axis=axis) - y.mean(axis=axis))


def bootstrap_ci(values: np.ndarray, rng: np.random.Generator, reps: int = BOOTSTRAP_REPS) -> tuple[float, float]:
    """95% percentile bootstrap CI of the mean of ``values`` (1-D, NaNs dropped)."""
    v = values[~np.isnan(values)]
    if len(v) < 2:
        return (float(v[0]), float(v[0])) if len(v) else (np.nan, np.nan)
    return percentile_interval((v,), _mean, rng, reps)


def mean_ci(a: np.ndarray, rng: np.random.Generator) -> tuple[float, float, float]:
    """mean(a) and its 95% bootstrap CI (NaN CI below 2 values, all NaN when empty)."""
    if len(a) == 0:
        return np.nan, np.nan, np.nan
    lo, hi = bootstrap_ci(a, rng) if len(a) >= 2 else (np.nan, np.nan)
    return float(a.mean()), lo, hi


def normalizer(task: str, finals: list[float]) -> tuple[float, float, str]:
    if task in REFERENCE_SCORES:
        return REFERENCE_SCORES[task]
    lo, hi = (min(finals), max(finals)) if finals else (0.0, 1.0)
    return lo, hi if hi > lo else lo + 1.0, "min-max of this sweep's final returns"


def aggregates(runs: list[Run], algo: str) -> tuple[dict[str, Any], list[str]]:
    """IQM / mean of normalised final returns with stratified-bootstrap CIs (runs resampled within each task), and
    P(DPD > vanilla); each estimate on its own random stream (:func:`stream_seed`)."""
    notes: list[str] = []
    done = [r for r in runs if r.status == "finished" and r.algo == algo]
    tasks = sorted({r.env_id for r in done})
    groups: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in done:
        if r.variant == "vanilla":
            groups["vanilla"][r.env_id].append(r.metric(VANILLA, "final"))
        else:
            for stat, label in PAIR_STATS.items():
                groups[f"{r.variant} ({label})"][r.env_id].append(r.metric(stat, "final"))
    norms = {t: normalizer(t, [x for g in groups.values() for x in g.get(t, [])]) for t in tasks}
    complete = {g: d for g, d in groups.items() if all(d.get(t) for t in tasks)}
    if not tasks or not complete:
        return {}, ["no group has finished runs on every task"]
    # each group keeps all its runs (extra seeds of the controls count); within a group every task needs as many
    n_of = {g: min(len(d[t]) for t in tasks) for g, d in complete.items()}
    uneven = [g for g, d in complete.items() if any(len(d[t]) != n_of[g] for t in tasks)]
    if uneven:
        notes.append(f"runs per task differ within {', '.join(uneven)}; the first runs of each task enter its aggregates"
                     " (as many as its task with the fewest)")
    scores = {g: np.array([[(d[t][i] - norms[t][0]) / (norms[t][1] - norms[t][0]) for t in tasks]
                           for i in range(n_of[g])]) for g, d in complete.items()}

    def columns(s: np.ndarray) -> tuple[np.ndarray, ...]:
        """A (runs, tasks) score matrix as one sample per task: the bootstrap resamples runs within each task."""
        return tuple(s[:, t] for t in range(s.shape[1]))

    def iqm_of(*cols: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.asarray(iqm(np.stack(cols, axis=-1), runs_axes=2))

    def mean_of(*cols: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.asarray(np.mean([c.mean(axis=-1) for c in cols], axis=0))

    result: dict[str, Any] = {"tasks": tasks, "runs_per_task": n_of, "normalisation": norms, "groups": {}}
    # a bootstrap needs >= 2 runs per task; a group with one gets its point estimate and no interval (None)
    boot = {g for g in scores if n_of[g] >= 2}
    for g, s in scores.items():
        entry: dict[str, Any] = {"iqm": iqm(s), "iqm_ci": None, "mean": float(np.mean(s.mean(axis=0))), "mean_ci": None}
        if g in boot:
            # one stream per group, drawn in this order: the IQM's resamples, then the mean's
            rng = np.random.default_rng(stream_seed(algo, "aggregate", g))
            entry["iqm_ci"] = list(percentile_interval(columns(s), iqm_of, rng))
            entry["mean_ci"] = list(percentile_interval(columns(s), mean_of, rng))
        result["groups"][g] = entry

    def improvement(g: str, other: str) -> dict[str, Any]:
        x, y = scores[g], scores[other]
        if g in boot and other in boot:
            def p_of(*cols: np.ndarray, axis: int = -1) -> np.ndarray:
                tasks_n = x.shape[1]
                return np.asarray(probability_of_improvement(np.stack(cols[:tasks_n], axis=-1),
                                                             np.stack(cols[tasks_n:], axis=-1)))

            rng = np.random.default_rng(stream_seed(algo, "P", g, other))
            lo, hi = percentile_interval(columns(x) + columns(y), p_of, rng)
            return {"p": float(probability_of_improvement(x, y)), "ci": [lo, hi]}
        return {"p": float(probability_of_improvement(x, y)), "ci": None}

    result["probability_of_improvement"] = {}
    result["probability_over_independent"] = {}
    for g in scores:
        if g != "vanilla" and "vanilla" in scores:
            result["probability_of_improvement"][g] = improvement(g, "vanilla")
        if not g.startswith(f"{INDEPENDENT} ") and g != "vanilla":
            same = f"{INDEPENDENT} {g[g.index('('):]}"  # the independent pair's same statistic
            if same in scores:
                result["probability_over_independent"][g] = improvement(g, same)
    return result, notes


def iqm(scores: np.ndarray, runs_axes: int | None = None) -> Any:
    """The interquartile mean (rliable's ``aggregate_iqm``): ``scipy.stats.trim_mean`` cutting 25% at each end, over
    every run and task. ``runs_axes=k``: over the last k axes only (a stack of bootstrap resamples at once)."""
    from scipy import stats

    a = np.asarray(scores, dtype=float)
    if runs_axes is None:
        return float(stats.trim_mean(a.ravel(), 0.25))
    return stats.trim_mean(a.reshape(*a.shape[:a.ndim - runs_axes], -1), 0.25, axis=-1)


def probability_of_improvement(scores_x: np.ndarray, scores_y: np.ndarray) -> Any:
    """rliable's ``metrics.probability_of_improvement``: per task P(X > Y) with ties counted 1/2 (the Mann-Whitney
    U over n_x * n_y), averaged over tasks; one array comparison for every task (and every bootstrap resample: any
    leading axes are kept).

    scores_x: (..., n_x, tasks), scores_y: (..., n_y, tasks)."""
    x, y = scores_x[..., :, None, :], scores_y[..., None, :, :]
    per_task = (x > y).mean(axis=(-3, -2)) + 0.5 * (x == y).mean(axis=(-3, -2))
    same = (np.all(scores_x == scores_y, axis=-2) if scores_x.shape == scores_y.shape
            else np.zeros(per_task.shape, dtype=bool))
    return np.mean(np.where(same, 0.5, per_task), axis=-1)


def difference_ci(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> tuple[float, float, float]:
    """mean(a) - mean(b) and its 95% bootstrap CI (a and b resampled independently)."""
    if len(a) == 0 or len(b) == 0:
        return np.nan, np.nan, np.nan
    d = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return d, np.nan, np.nan
    return (d, *percentile_interval((a, b), _mean_difference, rng))


def gains(runs: list[Run], algo: str) -> dict[str, Any]:
    """Distillation gain of every DPD variant over the independent pair (students' mean, better, worse student) and
    the selection gain (better student minus students' mean) of every pair variant: per task in raw final returns,
    pooled over tasks in normalised units (the mean over tasks of the per-task differences; stratified bootstrap).
    A gain compares the two groups on the seeds both have on that task (all runs of both where they share none);
    ``runs[task]`` = [the arm's runs, the independent pair's runs, whether they are the shared seeds]."""
    done = [r for r in runs if r.status == "finished" and r.algo == algo and r.variant != "vanilla"]
    tasks = sorted({r.env_id for r in done})
    finals = [r.metric(s, "final") for r in runs if r.status == "finished" and r.algo == algo
              for s in ([VANILLA] if r.variant == "vanilla" else STUDENTS)]
    norms = {t: normalizer(t, finals) for t in tasks}
    out: dict[str, Any] = {"distillation": {}, "selection": {}}

    def values(variant: str, task: str, stat: str, seeds: set[int] | None = None) -> np.ndarray:
        return np.array([r.metric(stat, "final") for r in done if r.variant == variant and r.env_id == task
                         and (seeds is None or r.seed in seeds)])

    def shared_seeds(variant: str, task: str) -> set[int] | None:
        """The seeds both the arm and the independent pair have on ``task`` (None where they share none: then all
        runs of both). Arms share the students' seeds by design, so a seed is the same two starting networks in
        both; and a later stage adding control seeds leaves an earlier arm's gain where it was."""
        mine, theirs = ({r.seed for r in done if r.variant == v and r.env_id == task} for v in (variant, INDEPENDENT))
        return (mine & theirs) or None

    def pooled(pairs: dict[str, tuple[np.ndarray, np.ndarray]], rng: np.random.Generator) -> tuple[float, float, float]:
        """Mean over tasks of normalised mean(a) - mean(b), with a stratified bootstrap CI."""
        usable = {t: ab for t, ab in pairs.items() if len(ab[0]) and len(ab[1])}
        if not usable:
            return np.nan, np.nan, np.nan
        scale = {t: norms[t][1] - norms[t][0] for t in usable}
        point = float(np.mean([(a.mean() - b.mean()) / scale[t] for t, (a, b) in usable.items()]))
        if any(len(a) < 2 or len(b) < 2 for a, b in usable.values()):
            return point, np.nan, np.nan
        scales = [scale[t] for t in usable]

        def pooled_gain(*samples: np.ndarray, axis: int = -1) -> np.ndarray:  # samples: a, b of each task in turn
            return np.asarray(np.mean([(samples[2 * i].mean(axis=-1) - samples[2 * i + 1].mean(axis=-1)) / sc
                                       for i, sc in enumerate(scales)], axis=0))

        return (point, *percentile_interval(tuple(x for ab in usable.values() for x in ab), pooled_gain, rng))

    variants = sorted({r.variant for r in done})
    for v in variants:
        if v != INDEPENDENT and INDEPENDENT in variants:
            shared = {t: shared_seeds(v, t) for t in tasks}
            for stat in PAIR_STATS:
                pairs = {t: (values(v, t, stat, shared[t]), values(INDEPENDENT, t, stat, shared[t])) for t in tasks}
                key = (algo, "distillation", v, stat)
                out["distillation"][f"{v} ({PAIR_STATS[stat]})"] = {
                    "per_task": {t: difference_ci(a, b, stream(*key, t)) for t, (a, b) in pairs.items()},
                    "pooled": pooled(pairs, stream(*key, "pooled")),
                    "runs": {t: [len(a), len(b), shared[t] is not None] for t, (a, b) in pairs.items()},
                    # few seeds: Welch's t interval and the exact permutation p beside the bootstrap
                    "small_sample": {t: difference(a, b, seed=stream_seed(*key, t, "perm")).__dict__
                                     for t, (a, b) in pairs.items()
                                     if len(a) and len(b) and min(len(a), len(b)) < SMALL_SAMPLE}}
        sel = {t: (values(v, t, "better") - values(v, t, "students_mean"), np.zeros(1)) for t in tasks}
        out["selection"][v] = {"per_task": {t: mean_ci(a, stream(algo, "selection", v, t)) for t, (a, _) in sel.items()},
                               "pooled": pooled({t: (a, np.zeros(len(a))) for t, (a, _) in sel.items()},
                                                stream(algo, "selection", v, "pooled"))}
    return out
