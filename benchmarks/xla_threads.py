"""XLA's thread pool with two JAX packs side by side, as ``dpd sweep --workers 2`` runs them (not a test).

Each repeat runs, for each setting, two child processes at once, unpinned (as a sweep's workers), each a DDPG pack
(the paper preset, ``dpd.pack.DDPGPack``) of ``--learners`` learners for ``--steps`` env steps each, evaluation off:

  xla_default   XLA_FLAGS unset: XLA's CPU runtime keeps its Eigen thread pool (a thread per core)
  xla_one       XLA_FLAGS=--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1, what the JAX engine
                sets before it imports JAX (dpd.engine.limit_xla_threads)

Reported: each child's env steps/s (all its learners), their sum, and the ratio xla_one / xla_default within a
repeat (the same minute's load). torch and BLAS are on one thread in both.

    python benchmarks/xla_threads.py --env Walker2d-v5 --learners 3 --steps 20000 --repeats 2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from throughput import JAX_XLA_FLAGS, _timed_pack  # this folder's: the flags, a pack's timed learn

SETTINGS = ("xla_default", "xla_one")


def child(env: str, learners: int, steps: int, learning_starts: int) -> dict[str, Any]:
    """One pack in this process: compile apart, then ``steps`` env steps per learner timed."""
    from dpd.pack import DDPGPack, PackConfig

    start = time.perf_counter()
    pack = DDPGPack(env, list(range(learners)), PackConfig(learning_starts=learning_starts), max_steps=steps)
    return _timed_pack(f"pack{learners}", learners, pack, steps, time.perf_counter() - start)


def side_by_side(setting: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Two children of ``setting`` started together; their rows once both end."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(MUJOCO_GL="disable", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if setting == "xla_one":
        env["XLA_FLAGS"] = JAX_XLA_FLAGS
    cmd = [sys.executable, __file__, "--child", "--env", args.env, "--learners", str(args.learners),
           "--steps", str(args.steps), "--learning-starts", str(args.learning_starts)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    rows = []
    for p in procs:
        out, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"{setting} child failed:\n{err[-3000:]}")
        rows.append(json.loads(out.strip().splitlines()[-1]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Walker2d-v5")
    parser.add_argument("--learners", type=int, default=3, help="learners per pack (each child)")
    parser.add_argument("--steps", type=int, default=20_000, help="env steps per learner")
    parser.add_argument("--learning-starts", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", help="write every repeat's rows to this JSON file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import torch

        torch.set_num_threads(1)
        print(json.dumps(child(args.env, args.learners, args.steps, args.learning_starts)))
        return
    uptime_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    results: dict[str, list[list[dict[str, Any]]]] = {s: [] for s in SETTINGS}
    for r in range(args.repeats):
        for s in SETTINGS:
            rows = side_by_side(s, args)
            results[s].append(rows)
            rates = [x["steps_per_s"] for x in rows]
            print(f"repeat {r} {s:<12} " + " + ".join(f"{x:.0f}" for x in rates) + f" = {sum(rates):.0f} env steps/s",
                  flush=True)
    uptime_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}; two children"
          " side by side, unpinned")
    print(f"load: before {uptime_before}\n      after  {uptime_after}")
    print(f"command: python benchmarks/xla_threads.py {' '.join(sys.argv[1:])}\n")
    print("| repeat | xla_default env steps/s (two packs) | xla_one env steps/s (two packs) | xla_one / xla_default |")
    print("|---|---|---|---|")
    ratios = []
    for r in range(args.repeats):
        d = sum(x["steps_per_s"] for x in results["xla_default"][r])
        o = sum(x["steps_per_s"] for x in results["xla_one"][r])
        ratios.append(o / d)
        print(f"| {r} | {d:.0f} | {o:.0f} | {o / d:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": sys.argv, "machine": platform.machine(), "cores": os.cpu_count(),
                       "python": platform.python_version(), "uptime_before": uptime_before,
                       "uptime_after": uptime_after, "results": results, "ratio_per_repeat": ratios}, f, indent=1)


if __name__ == "__main__":
    main()
