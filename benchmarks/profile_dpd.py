"""Where a DPD run's time goes (issue 6): cProfile of one sequential DPD pair, CPU time per part of an iteration.

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
from dpd.training import train

#: (label, file fragment, function name) of the parts reported
PARTS = [
    ("SB3 collect (env steps + policy)", "algorithm.py", "collect_rollouts"),
    ("SB3 train (RL update)", "", "train"),
    ("DPD distill (incl. xi / weights)", "students/base.py", "distill"),
    ("DPD peer batch (states + normalise)", "students/base.py", "peer_batch"),
    ("logging (SB3 logger rows)", "training/learner.py", "dump"),
    ("checkpoint / snapshots", "training/learner.py", "maybe_snapshot"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--algo", default="ppo")
    ap.add_argument("--env", default="HalfCheetah-v5")
    ap.add_argument("--steps", type=int, default=20_000, help="env steps PER STUDENT")
    ap.add_argument("--preset", default="zoo")
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
    for label, fragment, name in PARTS:
        cum = sum(v[3] for (file, _line, func), v in stats.stats.items()  # type: ignore[attr-defined]
                  if func == name and fragment in file and ("stable_baselines3" in file or "dpd" in file))
        if name == "train":  # SB3's algorithm train() only (not dpd.training.train)
            cum = sum(v[3] for (file, _line, func), v in stats.stats.items()  # type: ignore[attr-defined]
                      if func == "train" and "stable_baselines3" in file and ("ppo" in file or "a2c" in file
                                                                             or "td3" in file or "sac" in file))
        print(f"  {label:<40} {cum:8.2f} s  {cum / total:6.1%}")


if __name__ == "__main__":
    main()
