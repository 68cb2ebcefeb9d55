"""``dpd report``'s Markdown: the tables, the aggregates and the gains, written with the figures into one folder."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dpd.errors import DPDUserError
from dpd.experiments.report.figures import plot_arms, plot_curves
from dpd.experiments.report.runs import HALF, PAIR_STATS, Run, arm_order, file_safe, load_sweeps
from dpd.experiments.report.statistics import BOOTSTRAP_REPS, SMALL_SAMPLE, aggregates, gains
from dpd.names import REPORT_FILE, STUDENTS, VANILLA
from dpd.run_files import atomic_write_text, claim_output, result_output

#: what dpd report writes into its --out: report.md, each task's figures and each algorithm's aggregates (the one
#: overwrite rule, dpd.run_files.check_output: a user's file of these names in --out is never replaced)
OUTPUT = result_output("report", (REPORT_FILE, "curves_*.png", "arms_*.png", "aggregates_*.json"))

REPORT_DIR = "report"


def mean_std(values: list[float]) -> str:
    if not values:
        return "—"
    arr = np.asarray(values)
    return f"{arr.mean():.1f} ± {arr.std(ddof=1) if len(arr) > 1 else 0.0:.1f}"


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


def _json_default(x: Any) -> Any:
    return list(x) if isinstance(x, (tuple, np.ndarray)) else float(x)


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
    claim_output(folder, OUTPUT)
    lines = _header(runs, spec, dirs)
    for algo in sorted({r.algo for r in runs}):
        for env_id in sorted({r.env_id for r in runs if r.algo == algo}):
            lines += _task_section(runs, env_id, algo, folder)
        lines += _aggregate_section(runs, algo, folder)
    lines += _runs_table(runs)
    path = folder / REPORT_FILE
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def _header(runs: list[Run], spec: Any, dirs: list[Path]) -> list[str]:
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
    return lines


def _task_section(runs: list[Run], env_id: str, algo: str, folder: Path) -> list[str]:
    """One task: its curves, the table of final / mean / max returns per arm and learner, the pair's distance."""
    these = [r for r in runs if r.status == "finished" and r.env_id == env_id and r.algo == algo]
    lines = [f"## {env_id} · {algo}", ""]
    if not these:
        return [*lines, "No finished run yet.", ""]
    png = f"curves_{file_safe(env_id)}_{algo}.png"
    plot_curves(these, env_id, algo, folder / png)
    lines += [f"![learning curves]({png})", "",
              "| method | learner | n | final | mean | max |", "|---|---|---|---|---|---|"]
    for variant in arm_order({r.variant for r in these}):
        group = [r for r in these if r.variant == variant]
        learners = [VANILLA, HALF] if variant == "vanilla" else [*STUDENTS, *PAIR_STATS]
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
    return lines


def _aggregate_section(runs: list[Run], algo: str, folder: Path) -> list[str]:
    """IQM / mean aggregates over the tasks, P(improvement), and the gains; writes aggregates_<algo>.json."""
    agg, notes = aggregates(runs, algo)
    lines = [f"## Aggregates across tasks · {algo}", ""]
    if not agg:
        return [*lines, f"Not available: {'; '.join(notes)}.", ""]
    lines += ["Final returns normalised per task as (score − random) / (reference − random):", "",
              "| task | random | reference | source |", "|---|---|---|---|"]
    lines += [f"| {t} | {lo:.2f} | {hi:.2f} | {src} |" for t, (lo, hi, src) in agg["normalisation"].items()]
    lines += ["", f"95% stratified bootstrap CIs ({BOOTSTRAP_REPS} resamples, scipy.stats.bootstrap; IQM and"
              " P(improvement) as rliable defines them).", "",
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
    agg["gains"] = gains(runs, algo)
    lines += _gains_section(agg["gains"], agg["tasks"], algo)
    lines += [f"\nNote: {n}." for n in notes]
    lines.append("")
    atomic_write_text(folder / f"aggregates_{algo}.json", json.dumps(agg, indent=2, default=_json_default) + "\n")
    return lines


def _gains_section(g_all: dict[str, Any], tasks: list[str], algo: str) -> list[str]:
    if not (g_all["distillation"] or g_all["selection"]):
        return []
    lines = ["", f"### Distillation gain and selection gain · {algo}", "",
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
    small = {g: v for g, v in g_all["distillation"].items() if v.get("small_sample")}
    if small:
        lines += ["", f"Below {SMALL_SAMPLE} runs per group a percentile bootstrap is too narrow; the same gains with "
                  "Welch's t 95% interval and the exact permutation p (two-sided; dpd.experiments.stats), the "
                  "method a small-sample verdict names:", "",
                  "| distillation gain of | " + " | ".join(f"{t}: Welch 95% · p_perm" for t in tasks) + " |",
                  "|---|" + "---|" * len(tasks)]
        for g, v in small.items():
            lines.append(f"| {g} | " + " | ".join(_welch_cell(v["small_sample"].get(t)) for t in tasks) + " |")
    lines += ["", "| selection gain of | " + " | ".join(tasks) + " | pooled (normalised) |",
              "|---|" + "---|" * (len(tasks) + 1)]
    for g, v in g_all["selection"].items():
        lines.append(f"| {g} | " + " | ".join(format_interval(v["per_task"][t]) for t in tasks) +
                     f" | {format_interval(v['pooled'], 3)} |")
    return lines


def _welch_cell(d: dict[str, Any] | None) -> str:
    if not d or d["welch_low"] != d["welch_low"]:  # NaN: fewer than 2 runs in a group
        return "—"
    return f"{d['diff']:+.1f} [{d['welch_low']:+.1f}, {d['welch_high']:+.1f}] · {d['permutation_p']:.3f}"


def _runs_table(runs: list[Run]) -> list[str]:
    lines = ["## Runs", "", "| run | state | total env steps | wall time s | env steps/s | final eval (per learner) |",
             "|---|---|---|---|---|---|"]
    for r in runs:
        if r.status == "finished":
            s = r.summary
            finals = ", ".join(f"{k} {v['final_eval_return']:.1f}" if v.get("final_eval_return") is not None
                               else f"{k} —" for k, v in s["learners"].items())
            lines.append(f"| {r.name} | finished | {s.get('total_env_steps', '')} | {s.get('wall_time_s', 0):.0f} | "
                         f"{s.get('env_steps_per_s', 0):.0f} | {finals} |")
        else:
            lines.append(f"| {r.name} | {r.status} | | | | |")
    return lines
