"""``dpd report SWEEP_DIR [SWEEP_DIR ...]``: learning curves, a Table-1 style table and rliable aggregates, in Markdown + PNG.

Definitions (written into the report too):
- a run's *final* return: its last deterministic evaluation (mean over ``eval_episodes`` episodes);
- *mean* return: the mean of its evaluation returns over the whole run (every evaluation point, step 0 included);
- *max* return: the largest evaluation return of the run;
- pair rows (DPD and the ``independent`` control): each student, the *students' mean*, the *better student* and the
  *worse student* (per run, the student with the higher / lower value of that column);
- *distillation gain*: a DPD variant's statistic minus the independent pair's same statistic (same budget split, no
  distillation); *selection gain*: better student minus students' mean (what picking the better of two learners buys
  without any distillation); both with 95% bootstrap CIs, per task in raw returns and pooled in normalised units;
- aggregates use the final return, normalised per task (``dpd.experiments.scores``), with 95% stratified bootstrap
  CIs (rliable); "DPD (students' mean)" scores a DPD run by the mean of its two students.
Only finished runs enter the statistics; unfinished, failed and missing runs are listed. Several sweep folders
with the same budget, preset and overrides (a study's stages, extra seeds in a folder of their own) make one report.
"""

from __future__ import annotations

import json
import re
import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dpd.config import TrainConfig
from dpd.errors import DPDUserError
from dpd.experiments.scores import REFERENCE_SCORES
from dpd.experiments.sweep import ERROR_FILE, RUNS_DIR, SWEEP_FILE, SweepSpec, expand, trial_status
from dpd.names import PROGRESS_FILE, REPORT_FILE, REPORT_MARKER, Log
from dpd.run_files import (
    CONFIG_FILE,
    EVAL_FILE,
    SUMMARY_FILE,
    atomic_write,
    atomic_write_text,
    read_evaluations,
    read_summary_file,
    read_yaml,
)

REPORT_DIR = "report"


def file_safe(name: str) -> str:
    """``name`` as one file-name part: an env id such as ``mod:ns/Env-v0`` carries ':' and '/'."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)
BOOTSTRAP_REPS = 2000
#: the table row of vanilla cut at half its budget (the same OWN env steps as each DPD student)
HALF = "at half its steps"
#: the control that every DPD variant is compared with (the pair without distillation)
INDEPENDENT = "independent"
PAIR_STATS = {"students_mean": "students' mean", "better": "better student", "worse": "worse student"}


@dataclass
class Run:
    name: str
    status: str
    env_id: str = ""
    algo: str = ""
    variant: str = ""
    seed: int = 0
    summary: dict[str, Any] = field(default_factory=dict)
    #: learner -> (total_env_steps (K,), mean_return (K,))
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    #: student -> (total_env_steps (K,), the pair's action distance on the peer's window before each phase (K,))
    distances: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    #: student -> distillation optimiser steps it took over the run (the sum of ``distill/phase_steps``)
    distill_steps: dict[str, float] = field(default_factory=dict)
    error: str = ""

    def final_distance(self) -> float:
        """The pair's action distance at its last measurement, mean of both students' (NaN if never measured)."""
        last = [ys[-1] for _, ys in self.distances.values() if len(ys)]
        return float(np.mean(last)) if last else float("nan")

    def metric(self, learner: str, kind: str) -> float:
        """``final`` | ``mean`` | ``max`` evaluation return of one learner (``better``: the better student)."""
        if learner == "better":
            return max(self.metric(s, kind) for s in ("student0", "student1"))
        if learner == "worse":
            return min(self.metric(s, kind) for s in ("student0", "student1"))
        if learner == "students_mean":
            return float(np.mean([self.metric(s, kind) for s in ("student0", "student1")]))
        if learner == HALF:  # vanilla's evaluations up to half its budget: as many own env steps as a DPD student
            x, y = self.curves["vanilla"]
            y = y[x <= x[-1] / 2]
            return float({"final": y[-1], "mean": y.mean(), "max": y.max()}[kind])
        y = self.curves[learner][1]
        return float({"final": y[-1], "mean": y.mean(), "max": y.max()}[kind])


def read_spec(sweep_dir: Path) -> SweepSpec:
    if not (sweep_dir / SWEEP_FILE).is_file():
        raise DPDUserError(f"{sweep_dir} is not a sweep folder (no {SWEEP_FILE}); run dpd sweep first")
    return SweepSpec.from_dict(read_yaml(sweep_dir / SWEEP_FILE))  # a damaged file: one-line DPDUserError


#: what makes runs of two sweeps comparable: the same budget, hyperparameters and evaluation
COMPARABLE = ("total_steps", "preset", "overrides")


def load_sweeps(sweep_dirs: Sequence[Path]) -> tuple[list[Run], SweepSpec]:
    """The runs of one or several sweep folders as one list (in folder order), and the first folder's spec.

    The folders must agree on ``COMPARABLE`` (one-line DPDUserError naming the key otherwise) and no trial may be in
    two of them: the same run counted twice would shrink every interval."""
    specs = [read_spec(d) for d in sweep_dirs]
    for d, spec in zip(sweep_dirs[1:], specs[1:], strict=True):
        for key in COMPARABLE:
            if getattr(spec, key) != getattr(specs[0], key):
                raise DPDUserError(f"{d} and {sweep_dirs[0]} differ in {key} ({getattr(spec, key)!r} vs "
                                   f"{getattr(specs[0], key)!r}); report only sweeps run with the same {key}")
    runs: list[Run] = []
    where: dict[str, Path] = {}
    for d, spec in zip(sweep_dirs, specs, strict=True):
        for run in load_runs(d, spec):
            if run.name in where:
                raise DPDUserError(f"{run.name} is in both {where[run.name]} and {d}; a run may enter a report once")
            where[run.name] = d
            runs.append(run)
    return runs, specs[0]


def load_runs(sweep_dir: Path, spec: SweepSpec | None = None) -> list[Run]:
    """Every trial of the sweep (from sweep.yaml, unless its ``spec`` was read already) with its state; finished
    ones with their curves."""
    spec = spec or read_spec(sweep_dir)
    runs: list[Run] = []
    for trial in expand(spec, check_env=False):  # a report reads folders: it never imports an env's module
        folder = sweep_dir / RUNS_DIR / trial.name
        run = Run(trial.name, trial_status(folder), trial.config.env_id, trial.config.algo,
                  trial.label, trial.config.seed)
        if run.status == "failed":
            lines = (folder / ERROR_FILE).read_text(errors="replace").strip().splitlines()
            run.error = lines[-1] if lines else "(no error text)"
        if run.status == "finished":
            try:
                config = TrainConfig.from_dict(read_yaml(folder / CONFIG_FILE))
                run.summary = read_summary_file(folder / SUMMARY_FILE)
                rows_of = {learner: read_evaluations(folder / learner / EVAL_FILE) for learner in config.learner_names}
            except (DPDUserError, OSError) as exc:
                raise DPDUserError(f"{folder} is damaged ({exc}); delete that run folder and run the sweep again to redo"
                                   " it") from None
            for learner in config.learner_names:
                rows = rows_of[learner]
                if not rows:
                    raise DPDUserError(f"{folder / learner / EVAL_FILE} has no evaluation; was eval_freq 0?")
                run.curves[learner] = (np.array([r["total_env_steps"] for r in rows]),
                                       np.array([r["mean_return"] for r in rows]))
                if learner != "vanilla":
                    xs, ys, steps = _pair_log(folder / learner / PROGRESS_FILE)
                    run.distances[learner], run.distill_steps[learner] = (xs, ys), steps
        runs.append(run)
    return runs


def _pair_log(progress: Path) -> tuple[np.ndarray, np.ndarray, float]:
    """(total env steps, pair/action_distance) of the rows of a student's progress.csv that carry a distance, and
    the distillation optimiser steps the student took (the sum of ``distill/phase_steps``)."""
    import csv

    xs, ys, steps = [], [], 0.0
    try:
        with open(progress, newline="") as fh:
            for row in csv.DictReader(fh):
                d, x, n = row.get(Log.PAIR_DISTANCE), row.get(Log.TOTAL_STEPS), row.get(Log.PHASE_STEPS)
                if d and x:
                    xs.append(float(x))
                    ys.append(float(d))
                steps += float(n) if n else 0.0
    except (OSError, ValueError, csv.Error):
        pass
    return np.array(xs), np.array(ys), steps


# ---------------------------------------------------------------------- statistics
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


def mean_std(values: list[float]) -> str:
    if not values:
        return "—"
    arr = np.asarray(values)
    return f"{arr.mean():.1f} ± {arr.std(ddof=1) if len(arr) > 1 else 0.0:.1f}"


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


def _diff_ci(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> tuple[float, float, float]:
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
                    "per_task": {t: _diff_ci(a, b, stream(*key, t)) for t, (a, b) in pairs.items()},
                    "pooled": pooled(pairs, stream(*key, "pooled")),
                    "runs": {t: [len(a), len(b), shared[t] is not None] for t, (a, b) in pairs.items()}}
        sel = {t: (values(v, t, "better") - values(v, t, "students_mean"), np.zeros(1)) for t in tasks}
        out["selection"][v] = {"per_task": {t: mean_ci(a, stream(algo, "selection", v, t)) for t, (a, _) in sel.items()},
                               "pooled": pooled({t: (a, np.zeros(len(a))) for t, (a, _) in sel.items()},
                                                stream(algo, "selection", v, "pooled"))}
    return out


def mean_ci(a: np.ndarray, rng: np.random.Generator) -> tuple[float, float, float]:
    """mean(a) and its 95% bootstrap CI (NaN CI below 2 values, all NaN when empty)."""
    if len(a) == 0:
        return np.nan, np.nan, np.nan
    lo, hi = bootstrap_ci(a, rng) if len(a) >= 2 else (np.nan, np.nan)
    return float(a.mean()), lo, hi


def _runs_cell(mine: int, theirs: int, shared: bool) -> str:
    """``8`` (the seeds both groups have), or ``3 vs 8 (no shared seed)``."""
    return f"{mine}" if shared else f"{mine} vs {theirs} (no shared seed)"


def _estimate(point: float, ci: list[float] | None) -> str:
    """``point [lo, hi]`` of an aggregate, or the point alone where a group has one run per task."""
    return f"{point:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{point:.3f} (no CI: 1 run)"


def _versus_zero(v: tuple[float, ...]) -> str:
    """Where a ``(point, lo, hi)`` interval lies against 0: a gain is only called one when its CI excludes 0."""
    _, lo, hi = v
    if np.isnan(lo):
        return "no CI"
    return "above 0: a gain" if lo > 0 else "below 0: a loss" if hi < 0 else "spans 0: no measurable effect"


def format_interval(v: Sequence[float], digits: int = 1) -> str:
    """``point [lo, hi]`` (``—`` when there is no value; no interval below 2 runs per group)."""
    point, lo, hi = v
    if np.isnan(point):
        return "—"
    if np.isnan(lo):
        return f"{point:+.{digits}f} (no CI: < 2 runs)"
    return f"{point:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"


def pair_end_cells(group: list[Run]) -> tuple[str, str, str]:
    """A pair arm's end of training, as table cells: the pair's action distance at the end per seed
    (``s0: 0.306 / s1: 0.0412``), its mean over seeds, and the distillation optimiser steps per student (the mean;
    the range beside it only where the students differ by more than 1%: a phase skipped here and there is not news)."""
    group = sorted(group, key=lambda r: r.seed)
    distances = np.array([r.final_distance() for r in group])
    per_seed = " / ".join(f"s{r.seed}: {d:.3g}" for r, d in zip(group, distances, strict=True))
    mean = f"{np.nanmean(distances):.3g}" if not np.isnan(distances).all() else "—"
    steps = [n for r in group for n in r.distill_steps.values()]
    span = f"{np.mean(steps):,.0f}" + (f" ({min(steps):,.0f}-{max(steps):,.0f})"
                                        if max(steps) - min(steps) > 0.01 * np.mean(steps) else "")
    return per_seed, mean, span


# ---------------------------------------------------------------------- figures
def plot_curves(runs: list[Run], env_id: str, algo: str, path: Path) -> None:
    from dpd.figures import pyplot

    plt = pyplot()

    lines: dict[str, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
    for r in runs:
        if r.status != "finished" or r.env_id != env_id or r.algo != algo:
            continue
        for learner, curve in r.curves.items():
            label = "vanilla" if learner == "vanilla" else f"{r.variant} {learner}"
            lines[label].append(curve)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label in sorted(lines):
        curves = lines[label]
        grid, ys = _on_grid(curves)
        mean = np.nanmean(ys, axis=0)
        rng = stream(algo, "curve", env_id, label)
        lo_hi = np.array([bootstrap_ci(ys[:, j], rng) for j in range(len(grid))])
        ax.plot(grid, mean, label=f"{label} (n={len(curves)})", linestyle="-" if label == "vanilla" else "--")
        ax.fill_between(grid, lo_hi[:, 0], lo_hi[:, 1], alpha=0.2)
    _finish(fig, ax, path, "total env steps (DPD: both students' steps)", "deterministic evaluation return",
            f"{env_id} · {algo} · mean and 95% bootstrap CI over seeds")


def _on_grid(curves: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Curves (x, y) on the union of their x: (grid (G,), values (n_curves, G), NaN outside each curve's range)."""
    grid = np.unique(np.concatenate([x for x, _ in curves]))
    ys = np.array([np.where((grid >= x[0]) & (grid <= x[-1]), np.interp(grid, x, y), np.nan) for x, y in curves])
    return grid, ys


def _finish(fig: Any, ax: Any, path: Path, xlabel: str, ylabel: str, title: str) -> None:
    import matplotlib.pyplot as plt

    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    # a report rewritten while someone reads it: the old figure or the new one
    atomic_write(path, lambda fh: fig.savefig(fh, dpi=110, format="png"), binary=True)
    plt.close(fig)


def arm_order(variants: set[str]) -> list[str]:
    """Arms in the order tables and figures show them: vanilla, the independent pair, then the DPD arms by name."""
    first = {"vanilla": 0, INDEPENDENT: 1}
    return sorted(variants, key=lambda v: (first.get(v, 2), v))


def _json_default(x: Any) -> Any:
    return list(x) if isinstance(x, (tuple, np.ndarray)) else float(x)


def plot_arms(runs: list[Run], env_id: str, algo: str, path: Path) -> None:
    """Each arm's return (top; pairs: the students' mean) over the pair's action distance (bottom, log scale), one
    colour per arm, both against total env steps: how alike distillation keeps the students, beside what it earns.
    Means over seeds (distance: and over both students' measurements)."""
    from dpd.figures import pyplot

    plt = pyplot()

    variants = arm_order({r.variant for r in runs})
    colours = {v: f"C{i}" for i, v in enumerate(variants)}
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6.4), sharex=True)
    for variant in variants:
        group = [r for r in runs if r.variant == variant]
        if variant == "vanilla":
            curves = [r.curves["vanilla"] for r in group]
        else:  # a run's students' mean: its two students' curves on one grid, averaged
            curves = []
            for r in group:
                grid, ys = _on_grid([r.curves[s] for s in ("student0", "student1")])
                curves.append((grid, np.nanmean(ys, axis=0)))
        grid, ys = _on_grid(curves)
        style = "-" if variant in ("vanilla", INDEPENDENT) else "--"
        top.plot(grid, np.nanmean(ys, axis=0), color=colours[variant], linestyle=style,
                 label=f"{variant}{'' if variant == 'vanilla' else ': students mean'} (n={len(group)})")
        distances = [c for r in group for c in r.distances.values() if len(c[0])]
        if distances:
            grid, ys = _on_grid(distances)
            bottom.plot(grid, np.nanmean(ys, axis=0), color=colours[variant], linestyle=style, label=variant)
    top.set_ylabel("deterministic evaluation return")
    top.set_title(f"{env_id} · {algo} · means over seeds", fontsize=10)
    top.legend(fontsize=8)
    top.grid(alpha=0.3)
    bottom.set_yscale("log")
    _finish(fig, bottom, path, "total env steps (a pair: both students' steps)", "pair action distance (log)", "")


# ---------------------------------------------------------------------- the report
def write_report(sweep_dirs: str | Path | Sequence[str | Path], out: str | Path | None = None) -> Path:
    """Write ``report.md`` (+ PNG curves, aggregates.json) into ``out`` and return the Markdown path.

    ``sweep_dirs``: one sweep folder (``out`` defaults to ``SWEEP/report``) or several comparable ones (``out``
    required), reported as one sweep."""
    dirs = [Path(sweep_dirs)] if isinstance(sweep_dirs, (str, Path)) else [Path(d) for d in sweep_dirs]
    if not dirs:
        raise DPDUserError("name at least one sweep folder")
    if out is None and len(dirs) > 1:
        raise DPDUserError("several sweep folders make one report: say where it goes with --out DIR")
    runs, spec = load_sweeps(dirs)
    folder = Path(out) if out is not None else dirs[0] / REPORT_DIR
    if folder.exists() and not folder.is_dir():
        raise DPDUserError(f"{folder} is a file; --out needs a folder")
    if (folder / REPORT_FILE).exists() and not (folder / REPORT_MARKER).is_file():
        raise DPDUserError(f"{folder} holds a {REPORT_FILE} that dpd did not write; choose another --out")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / REPORT_MARKER).touch()
    done = [r for r in runs if r.status == "finished"]
    lines = [
        f"# Sweep report: {' + '.join(d.name for d in dirs)}",
        "",
        f"Every run: **{spec.total_steps:,} total env steps** (a DPD student gets half, vanilla all), preset "
        f"`{spec.preset}`, overrides `{' '.join(spec.overrides) or 'none'}`. {len(done)} of {len(runs)} runs finished"
        + (f" (sweep folders: {', '.join(f'`{d}`' for d in dirs)})." if len(dirs) > 1 else "."),
        "",
        "Definitions: *final* = a run's last deterministic evaluation; *mean* = the mean of its evaluation returns over "
        "the whole run; *max* = its largest evaluation return; values are mean ± std over seeds. Pair rows (DPD and the "
        "independent pair) show each student, the students' mean, the *better* and the *worse* student (per run, the "
        "student with the higher / lower value of that column; *better* is optimistic: picking it is selection). "
        f"*vanilla {HALF}* = vanilla's evaluations up to half its budget, i.e. with as much of its own experience as "
        "each DPD student (its last evaluation at or below half its steps).",
        "",
    ]
    missing = [r for r in runs if r.status != "finished"]
    if missing:
        lines += ["## Missing from the statistics", "", "| run | state | error |", "|---|---|---|"]
        lines += [f"| {r.name} | {r.status} | {r.error.replace('|', '/')} |" for r in missing]
        lines.append("")
    for algo in sorted({r.algo for r in runs}):
        for env_id in sorted({r.env_id for r in runs if r.algo == algo}):
            these = [r for r in done if r.env_id == env_id and r.algo == algo]
            lines += [f"## {env_id} · {algo}", ""]
            if not these:
                lines += ["No finished run yet.", ""]
                continue
            png = f"curves_{file_safe(env_id)}_{algo}.png"
            plot_curves(these, env_id, algo, folder / png)
            lines += [f"![learning curves]({png})", "",
                      "| method | learner | n | final | mean | max |", "|---|---|---|---|---|---|"]
            for variant in arm_order({r.variant for r in these}):
                group = [r for r in these if r.variant == variant]
                learners = ["vanilla", HALF] if variant == "vanilla" else ["student0", "student1", *PAIR_STATS]
                for learner in learners:
                    cells = [mean_std([r.metric(learner, k) for r in group]) for k in ("final", "mean", "max")]
                    name = PAIR_STATS.get(learner, learner).removesuffix(" student")
                    lines.append(f"| {variant} | {name} | {len(group)} | " + " | ".join(cells) + " |")
            lines.append("")
            if any(len(c[0]) for r in these for c in r.distances.values()):
                png = f"arms_{file_safe(env_id)}_{algo}.png"
                plot_arms(these, env_id, algo, folder / png)
                lines += [f"![returns and pair action distance per arm]({png})", "",
                          "Top: each arm's return (a pair: its students' mean), mean over seeds. Bottom: the pair's "
                          "action distance (mean squared difference of the two students' actions on the peer's recent "
                          "states, before each distillation phase; `pair/action_distance`), mean over seeds and both "
                          "students. The independent pair shows how far two learners drift apart on their own.", "",
                          "| method | n | pair action distance at the end, per seed | mean | distillation optimiser "
                          "steps per student |", "|---|---|---|---|---|"]
                for variant in arm_order({r.variant for r in these} - {"vanilla"}):
                    group = [r for r in these if r.variant == variant]
                    lines.append(f"| {variant} | {len(group)} | " + " | ".join(pair_end_cells(group)) + " |")
                lines.append("")
        agg, notes = aggregates(runs, algo)
        lines += [f"## Aggregates across tasks · {algo}", ""]
        if not agg:
            lines += [f"Not available: {'; '.join(notes)}.", ""]
            continue
        lines += ["Final returns normalised per task as (score − random) / (reference − random):", "",
                  "| task | random | reference | source |", "|---|---|---|---|"]
        lines += [f"| {t} | {lo:.2f} | {hi:.2f} | {src} |" for t, (lo, hi, src) in agg["normalisation"].items()]
        lines += ["", f"95% stratified bootstrap CIs ({BOOTSTRAP_REPS} resamples, rliable).", "",
                  "| group | runs per task | IQM [95% CI] | mean [95% CI] |", "|---|---|---|---|"]
        for g, v in agg["groups"].items():
            lines.append(f"| {g} | {agg['runs_per_task'][g]} | {_estimate(v['iqm'], v['iqm_ci'])} | "
                         f"{_estimate(v['mean'], v['mean_ci'])} |")
        if agg["probability_of_improvement"]:
            over = agg.get("probability_over_independent", {})
            lines += ["", "| group | P(group > vanilla) [95% CI] | P(group > independent, same statistic) [95% CI] |",
                      "|---|---|---|"]
            for g, v in agg["probability_of_improvement"].items():
                o = over.get(g)
                other = _estimate(o["p"], o["ci"]) if o else "—"
                lines.append(f"| {g} | {_estimate(v['p'], v['ci'])} | {other} |")
        g_all = gains(runs, algo)
        agg["gains"] = g_all
        if g_all["distillation"] or g_all["selection"]:
            tasks = agg["tasks"]
            lines += ["", f"### Distillation gain and selection gain · {algo}", "",
                      "Final returns; per task the difference of means in raw return, pooled the mean, over the tasks "
                      "where both groups have runs, of the normalised difference; 95% bootstrap CIs. *Distillation "
                      "gain* = DPD variant minus the independent pair (same statistic); *selection gain* = better "
                      "student minus students' mean.", "",
                      "Each gain compares the two groups on the seeds both have on that task (the same two starting "
                      "networks; control seeds added later leave it where it was), on all runs of both where they "
                      "share no seed; *runs* gives the count per task (arm vs independent pair where they differ).", "",
                      "| distillation gain of | " + " | ".join(tasks) + " | pooled (normalised) | pooled 95% CI | runs |",
                      "|---|" + "---|" * (len(tasks) + 3)]
            for g, v in g_all["distillation"].items():
                lines.append(f"| {g} | " + " | ".join(format_interval(v["per_task"][t]) for t in tasks) +
                             f" | {format_interval(v['pooled'], 3)} | {_versus_zero(v['pooled'])} | "
                             + " / ".join(_runs_cell(*v["runs"][t]) for t in tasks) + " |")
            lines += ["", "| selection gain of | " + " | ".join(tasks) + " | pooled (normalised) |",
                      "|---|" + "---|" * (len(tasks) + 1)]
            for g, v in g_all["selection"].items():
                lines.append(f"| {g} | " + " | ".join(format_interval(v["per_task"][t]) for t in tasks) +
                             f" | {format_interval(v['pooled'], 3)} |")
        lines += [f"\nNote: {n}." for n in notes]
        lines.append("")
        atomic_write_text(folder / f"aggregates_{algo}.json", json.dumps(agg, indent=2, default=_json_default) + "\n")
    lines += ["## Runs", "", "| run | state | total env steps | wall time s | env steps/s | final eval (per learner) |",
              "|---|---|---|---|---|---|"]
    for r in runs:
        if r.status == "finished":
            s = r.summary
            finals = ", ".join(f"{k} {v['final_eval_return']:.1f}" for k, v in s["learners"].items())
            lines.append(f"| {r.name} | finished | {s['total_env_steps']} | {s['wall_time_s']:.0f} | "
                         f"{s['env_steps_per_s']:.0f} | {finals} |")
        else:
            lines.append(f"| {r.name} | {r.status} | | | | |")
    path = folder / REPORT_FILE
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
