"""Stage 2's arm, by the rule written down after HalfCheetah seed 0 of stage 1 was looked at, before any other stage-1
result (docs/reproduction.md, section 1).

Rule: the DPD arm with the highest pooled distillation gain on the *students' mean* (normalised scores, both tasks,
stage 1's 3 seeds); if no arm's point estimate is above 0, ``dpd-a1-authors`` (the paper-faithful schedule). The
script reads the aggregates that ``dpd report`` wrote for stage 1, refuses an incomplete stage 1 (a choice made on
part of the seeds is not the pre-registered one), prints every arm's gain and the choice, and with ``--write``
writes the arm's stage-2 sweep (stage 1's settings, only that arm, seeds 3-7), whose runs carry the same labels as
stage 1's so that one ``dpd report`` pools both stages::

    dpd report runs/study-stage1 --out /tmp/stage1
    python studies/when-dpd-helps/choose_stage2.py /tmp/stage1 --write studies/when-dpd-helps/stage2-arm.yaml
    dpd sweep --config studies/when-dpd-helps/stage2-arm.yaml --out runs/study-stage2-ARM --workers 2
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from dpd.errors import DPDUserError
from dpd.experiments.sweep import SweepSpec, expand

HERE = Path(__file__).resolve().parent
STAGE1 = HERE / "stage1.yaml"
STAGE2_SEEDS = [3, 4, 5, 6, 7]
FALLBACK = "dpd-a1-authors"
STATISTIC = " (students' mean)"
CONTROLS = ("vanilla", "independent")


def choose(aggregates: dict[str, Any], envs: list[str], arms: set[str], seeds: int) -> tuple[str, dict[str, float]]:
    """(chosen arm label, pooled students'-mean distillation gain of every DPD arm) from ``aggregates_<algo>.json``.

    Raises DPDUserError unless the aggregates cover ``envs`` with ``seeds`` runs of each of ``arms`` (labels).
    """
    tasks = sorted(aggregates.get("tasks", []))
    if tasks != sorted(envs):
        raise DPDUserError(f"the report covers {tasks}, stage 1 is {sorted(envs)}: report the whole stage-1 folder")
    gains = aggregates["gains"]["distillation"]
    pooled: dict[str, float] = {}
    for group, gain in gains.items():
        if not group.endswith(STATISTIC):
            continue
        arm = group[: -len(STATISTIC)]
        counts = aggregates["runs_per_task"].get(group)
        if counts != seeds:
            raise DPDUserError(f"{arm} has {counts} runs per task, stage 1 has {seeds}: finish stage 1 first "
                               "(the rule is fixed on stage 1's seeds)")
        pooled[arm] = float(gain["pooled"][0])
    if set(pooled) != arms:
        missing = ", ".join(sorted(arms - set(pooled))) or "none"
        raise DPDUserError(f"stage 1's arms missing from the gains: {missing}; finish stage 1 (every arm needs runs "
                           "on every task, and the independent pair too) and report it again")
    best = max(pooled, key=lambda arm: pooled[arm])
    return (best if pooled[best] > 0 else FALLBACK), pooled


def stage2_spec(stage1: SweepSpec, arm: str) -> SweepSpec:
    """Stage 1's sweep cut to the one arm whose runs are labelled ``arm``, on the stage-2 seeds."""
    candidates = [(v, [s]) for v in stage1.variants if v not in CONTROLS and v not in stage1.arms
                  for s in stage1.schedules] + [(v, stage1.schedules[:1]) for v in stage1.variants if v in stage1.arms]
    for variant, schedules in candidates:
        spec = dataclasses.replace(stage1, variants=[variant], schedules=schedules, seeds=list(STAGE2_SEEDS),
                                   arms={k: v for k, v in stage1.arms.items() if k == variant})
        if {trial.label for trial in expand(spec)} == {arm}:
            return spec
    raise DPDUserError(f"no arm of stage 1 is labelled {arm!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, help="the folder `dpd report runs/study-stage1 --out DIR` wrote")
    parser.add_argument("--write", type=Path, help="write the chosen arm's stage-2 sweep YAML here")
    parser.add_argument("--stage1", type=Path, default=STAGE1, help="stage 1's sweep YAML (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        if not args.stage1.is_file():
            raise DPDUserError(f"--stage1 {args.stage1} not found")
        stage1 = SweepSpec.from_dict(yaml.safe_load(args.stage1.read_text()))
        files = sorted(args.report.glob("aggregates_*.json"))
        if len(files) != 1:
            raise DPDUserError(f"{args.report} holds {len(files)} aggregates_*.json files, expected 1: give the "
                               "folder `dpd report runs/study-stage1 --out DIR` wrote")
        arms = {trial.label for trial in expand(stage1)} - set(CONTROLS)
        arm, pooled = choose(json.loads(files[0].read_text()), stage1.envs, arms, len(stage1.seeds))
        for name, gain in sorted(pooled.items(), key=lambda item: -item[1]):
            print(f"{name:24s} pooled distillation gain, students' mean: {gain:+.4f} (normalised)")
        print(f"stage 2 arm: {arm}" + ("" if arm in pooled and pooled[arm] > 0 else " (no gain above 0: the fallback)"))
        if args.write:
            spec = stage2_spec(stage1, arm)
            header = (f"# Stage 2 of \"when does DPD help?\": the arm chosen by choose_stage2.py ({arm}), seeds 3-7,\n"
                      f"# otherwise stage 1's settings:  dpd sweep --config FILE --out runs/study-stage2-{arm}\n")
            args.write.write_text(header + yaml.safe_dump(spec.to_dict(), sort_keys=False))
            print(f"wrote {args.write}")
    except DPDUserError as exc:
        print(f"choose_stage2: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
