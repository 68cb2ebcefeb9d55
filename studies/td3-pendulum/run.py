"""Is DPD-TD3 behind the independent pair on Pendulum? The slow test's setting over seeds, both arms.

The slow TD3 test of tests/test_off_policy.py
(``test_dpd_td3_on_pendulum_stays_within_the_measured_gap_to_the_independent_pair_at_the_same_budget``) trains DPD-TD3
on Pendulum-v1 (24k total env steps: 12k per student, zoo preset, net [64, 64], learning_starts 1000,
evaluation every 4000 of a student's steps, 5 episodes). Its old comment said DPD-TD3 ended at -688 / -712 where
undistilled students solve Pendulum (-150 .. -200) by 8k steps. This runs that setting for ``dpd`` and
``independent`` (the same pair, never distilled) on seeds 0..N-1, one process, one torch thread, and writes every
run's per-learner evaluation curve to a JSON file as it goes (a stopped run resumes: finished runs are kept).

    nice -n 10 .venv/bin/python studies/td3-pendulum/run.py studies/td3-pendulum/result.json --seeds 8 --workers 2
    # the diagnostic arm (distill_gate=advantage) on the seeds where DPD-TD3 fell behind:
    .venv/bin/python studies/td3-pendulum/run.py studies/td3-pendulum/result.json --arms dpd_gate --only-seeds 0,1,6
    # or two halves at once, then merged:
    nice -n 10 .venv/bin/python studies/td3-pendulum/run.py runs/td3-seeds4-7.json --first-seed 4 --seeds 8
    .venv/bin/python studies/td3-pendulum/run.py studies/td3-pendulum/result.json --report --merge runs/td3-seeds4-7.json
    .venv/bin/python studies/td3-pendulum/run.py studies/td3-pendulum/result.json --report

Statistic per run (the test's): the better student's final evaluation return. Rule: DPD's mean minus the
independent pair's, Welch's 95% interval and p, the exact permutation p (``dpd.experiments.stats.difference``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ARMS = ("dpd", "independent")
#: every arm: its method and its settings beyond SETTING (flat names, as ``--set`` takes them). ``dpd_gate``: the
#: diagnostic arm, DPD whose phases are scaled by the share of the peer's window where the peer is estimated better
#: (``distill_gate=advantage``): if distilling toward a worse peer is what breaks the pair, the gate removes it.
ARM_SETTINGS: dict[str, dict[str, Any]] = {"dpd": {"method": "dpd"}, "independent": {"method": "independent"},
                                           "dpd_gate": {"method": "dpd", "distill_gate": "advantage"}}
SETTING: dict[str, Any] = {"env_id": "Pendulum-v1", "algo": "td3", "total_steps": 24_000, "eval_freq": 4000,
                           "eval_episodes": 5, "tensorboard": False,
                           "algo_kwargs": {"learning_starts": 1000, "policy_kwargs": {"net_arch": [64, 64]}}}


def one_run(arm: str, seed: int) -> dict[str, Any]:
    import torch as th

    from dpd import TrainConfig, train
    from dpd.names import EVAL_FILE
    from dpd.run_files import read_evaluations

    th.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        summary = train(TrainConfig(**{**SETTING, "seed": seed}).with_values(**ARM_SETTINGS[arm]), out)
        curves = {name: [(int(row["student_steps"]), float(row["mean_return"]))
                         for row in read_evaluations(out / name / EVAL_FILE)]
                  for name in summary["learners"]}
        logs = {name: _log_columns(out / name / "progress.csv") for name in summary["learners"]}
    return {"method": arm, "seed": seed, "wall_time_s": summary["wall_time_s"],
            "final": {k: v["final_eval_return"] for k, v in summary["learners"].items()}, "curves": curves,
            "logs": logs}


#: the pair's statistics per iteration (both arms measure them; only dpd distils): how far apart the students act
LOG_COLUMNS = ("time/total_env_steps", "pair/action_distance", "pair/xi_mean", "pair/peer_better_frac",
               "distill/phase_steps", "rollout/ep_rew_mean")


def _log_columns(path: Path) -> dict[str, list[float | None]]:
    import csv

    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {k: [float(r[k]) if r.get(k) not in (None, "") else None for r in rows] for k in LOG_COLUMNS}


def _one_run(job: tuple[str, int]) -> dict[str, Any]:
    return one_run(*job)


def report(runs: list[dict[str, Any]]) -> dict[str, Any]:
    from dpd.experiments.stats import difference

    by_arm = {arm: sorted((r for r in runs if r["method"] == arm), key=lambda r: r["seed"]) for arm in ARMS}
    seeds = sorted(set.intersection(*({r["seed"] for r in rs} for rs in by_arm.values())))
    best = {arm: np.array([max(r["final"].values()) for r in rs if r["seed"] in seeds]) for arm, rs in by_arm.items()}
    mean = {arm: np.array([np.mean(list(r["final"].values())) for r in rs if r["seed"] in seeds])
            for arm, rs in by_arm.items()}
    out: dict[str, Any] = {"seeds": seeds}
    extra = {arm: {r["seed"]: round(max(r["final"].values()), 1) for r in runs if r["method"] == arm}
             for arm in ARM_SETTINGS if arm not in ARMS}
    out["other_arms_better_student"] = {arm: dict(sorted(v.items())) for arm, v in extra.items() if v}
    for stat, values in (("better_student", best), ("students_mean", mean)):
        d = difference(values["dpd"], values["independent"])
        out[stat] = {"dpd": values["dpd"].round(1).tolist(), "independent": values["independent"].round(1).tolist(),
                     "dpd_mean": float(values["dpd"].mean()), "independent_mean": float(values["independent"].mean()),
                     "difference": d.diff, "welch_95": [d.welch_low, d.welch_high], "welch_p": d.welch_p, "welch_df": d.df,
                     "permutation_p": d.permutation_p, "permutation_exact": d.exact}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("result", type=Path)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--first-seed", type=int, default=0, help="run seeds first-seed .. seeds-1 only")
    parser.add_argument("--merge", type=Path, nargs="*", default=[],
                        help="add the runs of these result files (another --first-seed's) to RESULT")
    parser.add_argument("--workers", type=int, default=2, help="runs at a time, one process each")
    parser.add_argument("--report", action="store_true", help="only recompute the statistics of the stored runs")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, of {', '.join(ARM_SETTINGS)}")
    parser.add_argument("--only-seeds", default="", help="comma-separated seeds instead of first-seed .. seeds-1")
    args = parser.parse_args()
    data: dict[str, Any] = (json.loads(args.result.read_text()) if args.result.exists()
                            else {"setting": SETTING, "runs": []})
    for other in args.merge:
        data["runs"] += [r for r in json.loads(other.read_text())["runs"]
                         if not any(r["method"] == o["method"] and r["seed"] == o["seed"] for o in data["runs"])]
    if not args.report:
        seeds = ([int(x) for x in args.only_seeds.split(",")] if args.only_seeds
                 else list(range(args.first_seed, args.seeds)))
        arms = [a for a in args.arms.split(",") if a]
        unknown = sorted(set(arms) - set(ARM_SETTINGS))
        if unknown:
            parser.error(f"unknown arm {unknown[0]}; choose from {', '.join(ARM_SETTINGS)}")
        todo = [(arm, seed) for seed in seeds for arm in arms
                if not any(r["method"] == arm and r["seed"] == seed for r in data["runs"])]
        start = time.time()
        # one process per run (spawned: a fresh interpreter, one torch thread), results written as they come
        with multiprocessing.get_context("spawn").Pool(args.workers, maxtasksperchild=1) as pool:
            for run in pool.imap_unordered(_one_run, todo):
                data["runs"].append(run)
                data["report"] = report(data["runs"])
                args.result.write_text(json.dumps(data, indent=1) + "\n")
                print(f"{run['method']} seed {run['seed']}: {run['final']} ({run['wall_time_s']:.0f} s;"
                      f" {time.time() - start:.0f} s since start)", flush=True)
    data["report"] = report(data["runs"])
    args.result.write_text(json.dumps(data, indent=1) + "\n")
    print(json.dumps(data["report"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
