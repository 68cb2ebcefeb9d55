"""A report's statistics: bootstrap intervals on their own random streams, rliable aggregates, and the distillation
and selection gains (with Welch's t interval and the exact permutation p where a group has fewer than
:data:`SMALL_SAMPLE` seeds)."""

from __future__ import annotations

import zlib
from collections import defaultdict
from typing import Any

import numpy as np

from dpd.experiments.report.runs import INDEPENDENT, PAIR_STATS, Run
from dpd.experiments.scores import REFERENCE_SCORES
from dpd.experiments.stats import difference

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


def bootstrap_ci(values: np.ndarray, rng: np.random.Generator, reps: int = BOOTSTRAP_REPS) -> tuple[float, float]:
    """95% percentile bootstrap CI of the mean of ``values`` (1-D, NaNs dropped)."""
    v = values[~np.isnan(values)]
    if len(v) < 2:
        return (float(v[0]), float(v[0])) if len(v) else (np.nan, np.nan)
    means = rng.choice(v, size=(reps, len(v)), replace=True).mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


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
    """rliable IQM / mean of normalised final returns with stratified-bootstrap CIs, and P(DPD > vanilla); each
    estimate on its own random stream (:func:`stream_seed`)."""
    import warnings

    from rliable import library as rly
    from rliable import metrics

    warnings.filterwarnings("ignore", message="random_state is deprecated", category=FutureWarning)

    notes: list[str] = []
    done = [r for r in runs if r.status == "finished" and r.algo == algo]
    tasks = sorted({r.env_id for r in done})
    groups: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in done:
        if r.variant == "vanilla":
            groups["vanilla"][r.env_id].append(r.metric("vanilla", "final"))
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

    def agg(x: np.ndarray) -> np.ndarray:
        return np.array([iqm(x), metrics.aggregate_mean(x)])

    result: dict[str, Any] = {"tasks": tasks, "runs_per_task": n_of, "normalisation": norms, "groups": {}}
    # a bootstrap needs >= 2 runs per task; a group with one gets its point estimate and no interval (None)
    boot = {g: s for g, s in scores.items() if n_of[g] >= 2}
    point: dict[str, Any] = {}
    ci: dict[str, Any] = {}
    for g, s in boot.items():
        p, c = rly.get_interval_estimates({g: s}, agg, reps=BOOTSTRAP_REPS,
                                          random_state=np.random.RandomState(stream_seed(algo, "aggregate", g)))
        point[g], ci[g] = p[g], c[g]
    for g, s in scores.items():
        if g not in boot:
            point[g] = agg(s)
    for g in scores:  # an interval is None where there is none (one run per task)
        result["groups"][g] = {
            "iqm": float(point[g][0]), "iqm_ci": [float(ci[g][0][0]), float(ci[g][1][0])] if g in boot else None,
            "mean": float(point[g][1]), "mean_ci": [float(ci[g][0][1]), float(ci[g][1][1])] if g in boot else None}

    def improvement(g: str, other: str) -> dict[str, Any]:
        if g in boot and other in boot:
            p, c = rly.get_interval_estimates({g: (scores[g], scores[other])}, probability_of_improvement,
                                              reps=BOOTSTRAP_REPS,
                                              random_state=np.random.RandomState(stream_seed(algo, "P", g, other)))
            lo, hi = np.asarray(c[g], dtype=float).ravel()
            return {"p": float(np.asarray(p[g]).ravel()[0]), "ci": [lo, hi]}
        return {"p": probability_of_improvement(scores[g], scores[other]), "ci": None}

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


def iqm(scores: np.ndarray) -> float:
    """rliable's ``metrics.aggregate_iqm`` (scipy's 25% ``trim_mean`` over all runs and tasks), the same steps
    without scipy's per-call argument handling, which dominated the bootstrap's time."""
    a = np.asarray(scores, dtype=float).ravel()
    low = int(0.25 * a.size)
    high = a.size - low
    return float(np.mean(np.partition(a, (low, high - 1))[low:high]))


def probability_of_improvement(scores_x: np.ndarray, scores_y: np.ndarray) -> float:
    """rliable's ``metrics.probability_of_improvement``: per task P(X > Y) with ties counted 1/2 (the Mann-Whitney
    U over n_x * n_y), averaged over tasks. Same numbers, computed with one array comparison instead of a scipy call
    per task: inside the 2,000-resample bootstrap that call was 3/4 of ``dpd report``'s time.

    scores_x: (n_x, tasks), scores_y: (n_y, tasks)."""
    x, y = scores_x[:, None, :], scores_y[None, :, :]
    per_task = (x > y).mean(axis=(0, 1)) + 0.5 * (x == y).mean(axis=(0, 1))
    same = [np.array_equal(scores_x[:, t], scores_y[:, t]) for t in range(scores_x.shape[1])]
    return float(np.mean(np.where(same, 0.5, per_task)))


def difference_ci(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> tuple[float, float, float]:
    """mean(a) - mean(b) and its 95% bootstrap CI (a and b resampled independently)."""
    if len(a) == 0 or len(b) == 0:
        return np.nan, np.nan, np.nan
    d = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return d, np.nan, np.nan
    boot = (rng.choice(a, (BOOTSTRAP_REPS, len(a))).mean(1) - rng.choice(b, (BOOTSTRAP_REPS, len(b))).mean(1))
    return d, float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))


def gains(runs: list[Run], algo: str) -> dict[str, Any]:
    """Distillation gain of every DPD variant over the independent pair (students' mean, better, worse student) and
    the selection gain (better student minus students' mean) of every pair variant: per task in raw final returns,
    pooled over tasks in normalised units (the mean over tasks of the per-task differences; stratified bootstrap).
    A gain compares the two groups on the seeds both have on that task (all runs of both where they share none);
    ``runs[task]`` = [the arm's runs, the independent pair's runs, whether they are the shared seeds]."""
    done = [r for r in runs if r.status == "finished" and r.algo == algo and r.variant != "vanilla"]
    tasks = sorted({r.env_id for r in done})
    finals = [r.metric(s, "final") for r in runs if r.status == "finished" and r.algo == algo
              for s in (["vanilla"] if r.variant == "vanilla" else ["student0", "student1"])]
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
        boot = np.mean([(rng.choice(a, (BOOTSTRAP_REPS, len(a))).mean(1) - rng.choice(b, (BOOTSTRAP_REPS, len(b)))
                         .mean(1)) / scale[t] for t, (a, b) in usable.items()], axis=0)
        return point, float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))

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
