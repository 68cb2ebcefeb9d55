"""The per-task table of docs/reproduction.md section 1, computed from the sweep folders and their report (nothing
typed in by hand).

    dpd report runs/study-stage1 --out docs/results/when-dpd-helps/stage1
    python studies/when-dpd-helps/study_table.py docs/results/when-dpd-helps/stage1 runs/study-stage1

Per task and arm: final return (mean over seeds) of the students' mean, the better and the worse student; the
distillation gain over the independent pair (students' mean with its 95% CI, and the worse student's) and the
selection gain with its CI, both as the report computed them (read from its aggregates_ppo.json, so the intervals are
the report's); the distillation optimiser steps per student; the pair's action distance at the end, per seed.

Then, per task, a secondary view the report does not give: every DPD arm against the independent pair *of the same
seed* (both pairs start from the same two networks): the per-seed difference of the students' mean, how many seeds
DPD won, and the paired mean with a 95% bootstrap CI over seeds, for the final return and the mean return over
training. The study's verdict rests on the report's unpaired interval (pre-registered); the paired one shows whether a
gain is consistent across seeds.

Last, per task, every learner's final return seed by seed (vanilla's one learner, each pair's two students): the raw
numbers under the means, where a heavy tail (a seed escaping a plateau) shows.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from dpd.experiments.report import (
    HALF,
    Run,
    arm_order,
    format_interval,
    load_sweeps,
    mean_ci,
    pair_end_cells,
    stream,
)


def learner_cell(runs: list[Run], arm: str, seed: int) -> str:
    """``1803`` (vanilla), ``1482 / 1763`` (a pair's students), or empty where the arm has no run of that seed."""
    run = next((r for r in runs if r.variant == arm and r.seed == seed), None)
    if run is None:
        return ""
    learners = ["vanilla"] if arm == "vanilla" else ["student0", "student1"]
    return " / ".join(f"{run.metric(learner, 'final'):.0f}" for learner in learners)


def paired_rows(runs: list[Run], task: str, kind: str = "final") -> list[str]:
    """Table rows: each DPD arm's students' mean minus the independent pair's on the same seed (seeds both have);
    ``kind``: ``final`` return or ``mean`` over training."""
    independent = {r.seed: r.metric("students_mean", kind) for r in runs if r.variant == "independent"}
    label = "final" if kind == "final" else "mean over training"
    rows = []
    for arm in arm_order({r.variant for r in runs}):
        if arm in ("vanilla", "independent"):
            continue
        mine = {r.seed: r.metric("students_mean", kind) for r in runs if r.variant == arm}
        seeds = sorted(set(mine) & set(independent))
        if not seeds:
            continue
        diffs = np.array([mine[s] - independent[s] for s in seeds])
        interval = format_interval(mean_ci(diffs, stream("study_table", "paired", task, arm, kind)), 0)
        per_seed = " / ".join(f"s{s}: {d:+.0f}" for s, d in zip(seeds, diffs, strict=True))
        won = f"{int((diffs > 0).sum())} of {len(seeds)}"
        rows.append(f"| {arm} | {label} | {len(seeds)} | {per_seed} | {won} | {interval} |")
    return rows


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    report, sweeps = Path(argv[0]), [Path(a) for a in argv[1:]]
    agg = json.loads((report / "aggregates_ppo.json").read_text())
    runs = [r for r in load_sweeps(sweeps)[0] if r.status == "finished" and r.algo == "ppo"]
    stale = sorted({r.env_id for r in runs} - set(agg.get("tasks", [])))
    if stale:
        print(f"study_table: {report} has no aggregates for {', '.join(stale)}: run dpd report on these sweeps again"
              " (the report is older than the runs)", file=sys.stderr)
        return 2
    for task in sorted({r.env_id for r in runs}):
        these = [r for r in runs if r.env_id == task]
        print(f"\n#### {task}\n")
        print("| arm | runs | students' mean | better student | worse student | distillation gain vs independent: "
              "students' mean [95% CI] / worse student | selection gain (better − mean) [95% CI] | distillation "
              "optimiser steps per student | pair action distance at the end, per seed |")
        print("|---|---|---|---|---|---|---|---|---|")
        for arm in arm_order({r.variant for r in these}):
            group = [r for r in these if r.variant == arm]
            if arm == "vanilla":
                for learner, name in (("vanilla", "vanilla (all steps)"), (HALF, f"vanilla {HALF}")):
                    mean = np.mean([r.metric(learner, "final") for r in group])
                    print(f"| {name} | {len(group)} | {mean:.0f} (one learner) | | | | | 0 | — |")
                continue
            stat = {s: np.mean([r.metric(s, "final") for r in group]) for s in ("students_mean", "better", "worse")}
            if arm == "independent":
                gain = "—"
            else:
                d = agg["gains"]["distillation"]
                mean_gain, worse_gain = (d[f"{arm} ({s})"]["per_task"][task] for s in ("students' mean", "worse student"))
                gain = f"{format_interval(mean_gain, 0)} / {worse_gain[0]:+.0f}"
                mine, _, shared = d[f"{arm} (students' mean)"].get("runs", {}).get(task, [len(group), 0, True])
                if shared and mine != len(group):  # the report compares the seeds both groups have
                    gain += f" (on the {mine} seeds both have)"
            selection = format_interval(agg["gains"]["selection"][arm]["per_task"][task], 0)
            distance, _, span = pair_end_cells(group)  # the report's own cells
            print(f"| {arm} | {len(group)} | {stat['students_mean']:.0f} | {stat['better']:.0f} | {stat['worse']:.0f} | "
                  f"{gain} | {selection} | {span} | {distance} |")
        rows = paired_rows(these, task) + paired_rows(these, task, "mean")
        if rows:
            print(f"\nSeed by seed against the independent pair ({task}, students' mean):\n")
            print("| arm | return | seeds | DPD minus independent, per seed | seeds DPD won "
                  "| paired mean [95% CI over seeds] |")
            print("|---|---|---|---|---|---|")
            print("\n".join(rows))
        print(f"\nEvery learner's final return, seed by seed ({task}; a pair: student0 / student1):\n")
        seeds = sorted({r.seed for r in these})
        print("| arm | " + " | ".join(f"s{s}" for s in seeds) + " |")
        print("|---|" + "---|" * len(seeds))
        for arm in arm_order({r.variant for r in these}):
            print(f"| {arm} | " + " | ".join(learner_cell(these, arm, s) for s in seeds) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
