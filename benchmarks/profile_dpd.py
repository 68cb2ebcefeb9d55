"""Where a DPD run's time goes: cProfile of one sequential DPD pair, CPU time per part of an iteration.

    python benchmarks/profile_dpd.py --algo ppo --env HalfCheetah-v5 --steps 10000
    python benchmarks/profile_dpd.py --algo td3 --env HalfCheetah-v5 --steps 3000 --set algo.learning_starts=1000

Prints the CPU seconds (process time, so other load on the machine does not distort the shares) spent in SB3's
own collect / train, in DPD's distillation and peer batches, and in logging; the rest is set-up and glue.
Evaluation is off (eval_freq=0) as in benchmarks/throughput.py.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time

import torch as th

from dpd.config import TrainConfig, apply_overrides
from dpd.names import DEFAULT_ALGO, DEFAULT_PRESET
from dpd.training import train

#: (label, fragments of which one must be in the function's file, function name) of the parts reported
PARTS = [
    ("SB3 collect (env steps + policy)", ("on_policy_algorithm.py", "off_policy_algorithm.py"), "collect_rollouts"),
    ("SB3 train (RL update)", ("stable_baselines3/ppo", "stable_baselines3/a2c", "stable_baselines3/td3",
                               "stable_baselines3/sac"), "train"),
    ("DPD distill (incl. xi / weights)", ("dpd/students/base.py",), "distill"),
    ("DPD peer batch (states + normalise)", ("dpd/students/base.py",), "peer_batch"),
    ("logging (SB3 logger rows)", ("dpd/training/learner.py",), "dump"),
    ("checkpoint / snapshots", ("dpd/training/learner.py",), "maybe_snapshot"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--algo", default=DEFAULT_ALGO)
    ap.add_argument("--env", default="HalfCheetah-v5")
    ap.add_argument("--steps", type=int, default=20_000, help="env steps PER STUDENT")
    ap.add_argument("--preset", default=DEFAULT_PRESET)
    ap.add_argument("--set", action="append", default=[], help="config override key=value (as dpd train --set)")
    args = ap.parse_args()
    th.set_num_threads(1)
    config = TrainConfig(env_id=args.env, algo=args.algo, preset=args.preset, total_steps=2 * args.steps,
                         eval_freq=0, tensorboard=False)
    config = apply_overrides(config, args.set)
    profiler = cProfile.Profile(time.process_time)
    with tempfile.TemporaryDirectory() as tmp:
        profiler.enable()
        train(config, f"{tmp}/run")
        profiler.disable()
    stats = pstats.Stats(profiler)
    total = max(v[3] for v in stats.stats.values())  # type: ignore[attr-defined]
    print(f"{args.algo} {args.env}, 2 x {args.steps} env steps, CPU time {total:.1f} s")
    for label, fragments, name in PARTS:
        cum = sum(v[3] for (file, _line, func), v in stats.stats.items()  # type: ignore[attr-defined]
                  if func == name and any(f in file for f in fragments))
        print(f"  {label:<40} {cum:8.2f} s  {cum / total:6.1%}")


if __name__ == "__main__":
    main()
