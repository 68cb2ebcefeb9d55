"""What a pair costs on the JAX engine, per learner: env steps/s of a vanilla pack of two runs, one independent pair
and one DPD pair (two learners each), DDPG paper preset (not a test).

Each arm trains at two budgets per learner (``--steps`` and 5x it) in this process, evaluation off; the difference
of the two wall times removes setup and compile, so the rate is that of training alone. Arms interleaved A B C A B C.
Pin it to one core, as every comparison on this machine: ``taskset -c 0``; JAX on one thread (set below).

    taskset -c 0 python benchmarks/pair_cost.py --env HalfCheetah-v5 --steps 5000 --repeats 3 --json pair_cost.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

from throughput import JAX_XLA_FLAGS, _config  # this folder's: one thread for XLA, a benchmark's config

os.environ.setdefault("XLA_FLAGS", JAX_XLA_FLAGS)  # before jax is imported (dpd imports it lazily)

ARMS = ("vanilla", "independent", "dpd")


def wall_s(env: str, arm: str, per_learner: int, scratch: Path) -> float:
    """Seconds to train one pack of two learners: two vanilla runs, or one pair."""
    from dpd.training.together import train_together

    folder = Path(tempfile.mkdtemp(dir=scratch))
    seeds = (0, 1) if arm == "vanilla" else (0,)
    total = per_learner * (1 if arm == "vanilla" else 2)
    runs = [(_config("ddpg", env, arm, total, None, engine="jax", seed=s), folder / f"s{s}", False) for s in seeds]
    start = time.perf_counter()
    outcomes = train_together(runs)
    wall = time.perf_counter() - start
    bad = [o for o in outcomes if not isinstance(o, dict)]
    if bad:
        raise SystemExit(f"{arm}: {bad[0]}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--steps", type=int, default=5000, help="the short budget per learner (the long one: 5x)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="write every repeat's rate to this file")
    args = parser.parse_args()
    rates: dict[str, list[float]] = {arm: [] for arm in ARMS}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            for arm in ARMS:
                short = wall_s(args.env, arm, args.steps, Path(scratch))
                long = wall_s(args.env, arm, 5 * args.steps, Path(scratch))
                # two learners, 4x --steps more each; a difference lost in the setup's noise is no rate
                rates[arm].append(2 * 4 * args.steps / (long - short) if long > short else float("nan"))
                note = "" if long > short else " (the budgets too short to time apart: raise --steps)"
                print(f"{arm} repeat {repeat}: {rates[arm][-1]:,.0f} learner env steps/s{note}", flush=True)
    for arm, r in rates.items():
        print(f"{arm}: median {sorted(r)[len(r) // 2]:,.0f} learner env steps/s over {len(r)} repeats")
    if args.json:
        import dpd

        source = Path(dpd.__file__).resolve().parent  # the dpd that trained: its checkout's commit
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=source).stdout.strip()
        Path(args.json).write_text(json.dumps({"command": ["benchmarks/pair_cost.py", "--env", args.env, "--steps",
                                                           str(args.steps), "--repeats", str(args.repeats)],
                                               "commit": commit, "dpd": str(source), "machine": platform.machine(),
                                               "cores": os.cpu_count(), "uptime": os.popen("uptime").read().strip(),
                                               "rates": rates}, indent=1) + "\n")


if __name__ == "__main__":
    main()
