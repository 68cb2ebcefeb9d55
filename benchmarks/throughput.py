"""Wall time, env steps/s and peak memory of DPD against stock Stable-Baselines3 (not a test).

Variants, each run in a fresh process (so its peak RSS is its own), interleaved A B C A B C ...:
  vanilla_sb3   stock SB3 ``model.learn(2N)``: one learner, the fair baseline's budget
  pair_sb3      two stock SB3 learners back to back, N steps each (what DPD does, minus distillation)
  dpd_seq       the DPD pair, sequential Algorithm 1, N steps per student (2N in total)
  dpd_par       the DPD pair, parallel mode (student1 in a second process), N steps per student
Evaluation is off in every variant. Ratios printed:
  P1 = dpd_par / vanilla_sb3  (wall time of DPD against the baseline it is compared with; the limit is 0.5)
  P2 = dpd_seq / pair_sb3     (the overhead DPD adds: distillation, peer batches, logging)
  mem = peak RSS of dpd_seq / peak RSS of vanilla_sb3 (one learner); dpd_par sums its two processes
With --full-buffers (off-policy) the replay buffers are also filled completely before the peak RSS is read, so
the memory column is that of a run at its default buffer size when the buffers are full.

    python benchmarks/throughput.py --algo td3 --env HalfCheetah-v5 --steps 3000 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any

VARIANTS = ("vanilla_sb3", "pair_sb3", "dpd_seq", "dpd_par")


def _config(algo: str, env: str, method: str, total: int, learning_starts: int | None, parallel: bool = False,
            preset: str | None = None) -> Any:
    from dpd import TrainConfig

    kwargs: dict[str, Any] = {}
    if learning_starts is not None and algo in ("ddpg", "td3", "sac"):
        kwargs["learning_starts"] = learning_starts
    preset = preset or ("paper" if algo == "ddpg" else "zoo")
    return TrainConfig(env_id=env, algo=algo, method=method, total_steps=total, eval_freq=0, preset=preset,
                       algo_kwargs=kwargs, parallel=parallel).resolve()


def _fill(model: Any) -> None:
    rb = getattr(model, "replay_buffer", None)
    if rb is not None:  # touch every page of the replay buffer, as a full buffer would
        for name in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts"):
            arr = getattr(rb, name, None)
            if arr is not None:
                arr.fill(1)


def run_variant(variant: str, algo: str, env: str, steps: int, learning_starts: int | None, full: bool,
                preset: str | None = None) -> dict:
    """Runs inside the child process."""
    import torch

    torch.set_num_threads(1)
    from dpd.students.factory import build_student
    from dpd.training.trainer import DPDTrainer

    start = time.perf_counter()
    extra_mib = 0.0
    if variant in ("dpd_seq", "dpd_par"):
        cfg = _config(algo, env, "dpd", 2 * steps, learning_starts, parallel=variant == "dpd_par", preset=preset)
        with tempfile.TemporaryDirectory() as tmp:
            trainer = DPDTrainer(cfg, tmp)
            trainer.learn()
            wall = time.perf_counter() - start
            if full and variant == "dpd_seq":
                for s in trainer.students:
                    _fill(s.model)
            trainer.close()
            if variant == "dpd_par":  # student1's process (reaped by close): its peak, added to this process's
                extra_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    else:
        cfg = _config(algo, env, "vanilla", 2 * steps, learning_starts, preset=preset)
        n_learners, budget = (1, 2 * steps) if variant == "vanilla_sb3" else (2, steps)
        models = []
        for _ in range(n_learners):
            # the same env stack as dpd's learners, so that only the algorithm layer differs
            model = build_student(cfg, 0, None).model
            model.learn(budget)  # stock SB3
            models.append(model)
        wall = time.perf_counter() - start
        if full:
            for m in models:
                _fill(m)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 + extra_mib
    return {"variant": variant, "wall_s": wall, "env_steps": 2 * steps, "steps_per_s": 2 * steps / wall,
            "peak_rss_mib": peak_mib}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", default="ppo")
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--steps", type=int, default=20_000, help="N: env steps per DPD student")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--learning-starts", type=int, default=1000,
                        help="off-policy warm-up (short, so the timing covers training)")
    parser.add_argument("--full-buffers", action="store_true", help="fill replay buffers before reading peak RSS")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of the variants")
    parser.add_argument("--preset", help="zoo | paper (default: paper for ddpg, zoo otherwise)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_variant(args.child, args.algo, args.env, args.steps, args.learning_starts,
                                     args.full_buffers, args.preset)))
        return
    variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    results: dict[str, list[dict]] = {v: [] for v in variants}
    for r in range(args.repeats):
        for v in variants:
            cmd = [sys.executable, __file__, "--child", v, "--algo", args.algo, "--env", args.env, "--steps",
                   str(args.steps), "--learning-starts", str(args.learning_starts)]
            if args.full_buffers:
                cmd.append("--full-buffers")
            if args.preset:
                cmd += ["--preset", args.preset]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            results[v].append(json.loads(out))
            print(f"repeat {r} {v:<12} {results[v][-1]['wall_s']:8.1f} s {results[v][-1]['steps_per_s']:8.0f} steps/s "
                  f"{results[v][-1]['peak_rss_mib']:8.0f} MiB", flush=True)
    best = {v: min(results[v], key=lambda x: x["wall_s"]) for v in variants}
    print(f"\nmachine: {platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores, "
          f"python {platform.python_version()}")
    print(f"command: python benchmarks/throughput.py {' '.join(sys.argv[1:])}")
    print("| variant | env steps | wall s (best of repeats) | env steps/s | peak RSS MiB |")
    print("|---|---|---|---|---|")
    for v in variants:
        b = best[v]
        print(f"| {v} | {b['env_steps']} | {b['wall_s']:.1f} | {b['steps_per_s']:.0f} | {b['peak_rss_mib']:.0f} |")
    ratios = {"P1 = dpd_par / vanilla_sb3": ("dpd_par", "vanilla_sb3", "wall_s"),
              "P2 = dpd_seq / pair_sb3": ("dpd_seq", "pair_sb3", "wall_s"),
              "mem = dpd_seq / vanilla_sb3": ("dpd_seq", "vanilla_sb3", "peak_rss_mib"),
              "mem = dpd_par / vanilla_sb3": ("dpd_par", "vanilla_sb3", "peak_rss_mib")}
    print()
    for label, (num, den, key) in ratios.items():
        if num in best and den in best:
            print(f"{label} = {best[num][key] / best[den][key]:.3f}")


if __name__ == "__main__":
    main()
