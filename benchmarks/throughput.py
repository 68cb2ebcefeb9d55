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

With ``--engine jax`` (the paper preset of ``--algo ddpg`` or ``--algo ppo``; needs ``pip install 'dpd[jax]'``) the
variants are instead:
  sb3           stock SB3, one learner, N env steps (the ``vanilla_sb3`` path: dpd's env stack, ``model.learn``;
                PPO rounds N up to whole rollouts of n_steps, and the rate counts the steps taken)
  pack<k>       a JAX pack of k learners (dpd.pack.DDPGPack / PPOPack), N env steps each, for k in ``--pack-sizes``
  env_random    the raw stepping rate of one env with random actions (the limit of any engine on one core)
Each child is pinned to one core (``taskset -c 0``), torch and XLA on one thread, evaluation off; the pack's jit
compile time is measured apart and excluded from its rate. Reported: total env steps/s (all learners together),
ratio to sb3, compile s, peak RSS of the child, and the pack's time split (env, act, update, buffer+norm).

    python benchmarks/throughput.py --engine jax --algo ddpg --env HalfCheetah-v5 --steps 3000 --repeats 2 \
        --json jax_gonogo.json
    python benchmarks/throughput.py --engine jax --algo ppo --env HalfCheetah-v5 --steps 4096 --repeats 2 \
        --json jax_ppo.json

``--n-steps`` shortens PPO's rollouts (both sides; the paper's 2048 by default), for a quick check on a toy task.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

VARIANTS = ("vanilla_sb3", "pair_sb3", "dpd_seq", "dpd_par")


def _config(algo: str, env: str, method: str, total: int, learning_starts: int | None, parallel: bool = False,
            preset: str | None = None, extra: dict[str, Any] | None = None, **fields: Any) -> Any:
    """A benchmark's resolved config: evaluation off, the paper preset for DDPG (else zoo); ``extra`` are the
    algorithm's arguments, ``fields`` any other TrainConfig field (``seed``, ``engine``: benchmarks/pair_cost.py)."""
    from dpd import TrainConfig

    kwargs: dict[str, Any] = dict(extra or {})
    if learning_starts is not None and algo in ("ddpg", "td3", "sac"):
        kwargs["learning_starts"] = learning_starts
    preset = preset or ("paper" if algo == "ddpg" else "zoo")
    # validated by TrainConfig (a bad name is its one-line error); passed as data, as from the command line
    named: dict[str, Any] = {"algo": algo, "method": method, "preset": preset}
    return TrainConfig(env_id=env, total_steps=total, eval_freq=0, algo_kwargs=kwargs, parallel=parallel, **named,
                       **fields).resolve()


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


JAX_XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def run_jax_variant(variant: str, env: str, steps: int, learning_starts: int, full: bool, algo: str = "ddpg",
                    n_steps: int | None = None) -> dict:
    """Runs inside a child process of ``--engine jax``: sb3, pack<k> or env_random (see the module docstring)."""
    if variant == "env_random":
        import gymnasium as gym

        e = gym.make(env)
        e.reset(seed=0)
        e.action_space.seed(0)
        n = max(4 * steps, 10_000)
        start = time.perf_counter()
        for _ in range(n):
            _, _, term, trunc, _ = e.step(e.action_space.sample())
            if term or trunc:
                e.reset()
        wall = time.perf_counter() - start
        return {"variant": variant, "learners": 1, "wall_s": wall, "env_steps": n, "steps_per_s": n / wall,
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if variant == "sb3":
        import torch

        torch.set_num_threads(1)
        from dpd.students.factory import build_student

        extra = {"n_steps": n_steps} if n_steps and algo == "ppo" else None
        cfg = _config(algo, env, "vanilla", steps, learning_starts if algo == "ddpg" else None, preset="paper",
                      extra=extra)
        model = build_student(cfg, 0, None).model
        start = time.perf_counter()
        model.learn(steps)  # stock SB3
        wall = time.perf_counter() - start
        if full:
            _fill(model)
        taken = int(model.num_timesteps)  # PPO: whole rollouts
        return {"variant": variant, "learners": 1, "wall_s": wall, "env_steps": taken, "steps_per_s": taken / wall,
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    os.environ["XLA_FLAGS"] = JAX_XLA_FLAGS  # before jax is imported (the parent sets it too)
    if algo == "ppo":
        return _run_ppo_pack(variant, env, steps, n_steps)
    from dpd.pack import DDPGPack, PackConfig

    k = int(variant.removeprefix("pack"))
    start = time.perf_counter()
    pack = DDPGPack(env, list(range(k)), PackConfig(learning_starts=learning_starts), max_steps=None if full else steps)
    result = _timed_pack(variant, k, pack, steps, time.perf_counter() - start)
    assert pack.last_losses is not None and bool(__import__("numpy").isfinite(pack.last_losses).all())
    return {**result, "buffer_capacity": pack.capacity, "buffer_mib": sum(x.nbytes for x in pack.buffers) / 2**20}


def _timed_pack(variant: str, k: int, pack: Any, steps: int, setup_s: float) -> dict:
    """Compile (apart), learn ``steps`` env steps per learner timed, close: the row both engines' packs share."""
    compile_s = pack.compile()  # the first jitted calls (update, write; PPO also act), excluded from the rate
    start = time.perf_counter()
    pack.learn(steps)
    wall = time.perf_counter() - start
    pack.close()
    profile = dict(pack.profile)
    profile["other"] = wall - sum(profile.values())
    taken = k * pack.num_timesteps  # PPO: whole rollouts, so possibly more than steps
    return {"variant": variant, "learners": k, "wall_s": wall, "env_steps": taken, "steps_per_s": taken / wall,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "compile_s": compile_s,
            "setup_s": setup_s, "profile_s": profile}


def _run_ppo_pack(variant: str, env: str, steps: int, n_steps: int | None) -> dict:
    """A PPO pack (the paper preset) in this child: ``steps`` env steps per learner, whole rollouts."""
    import dataclasses

    import numpy as np

    from dpd.pack import PPOConfig, PPOPack

    k = int(variant.removeprefix("pack"))
    cfg = PPOConfig() if not n_steps else dataclasses.replace(PPOConfig(), n_steps=n_steps)
    start = time.perf_counter()
    pack = PPOPack(env, list(range(k)), cfg)
    result = _timed_pack(variant, k, pack, steps, time.perf_counter() - start)
    assert pack.last_stats is not None and bool(np.isfinite(pack.last_stats).all())
    return result


def main_jax(args: argparse.Namespace) -> None:
    """``--engine jax``: stock SB3 against JAX packs (DDPG or PPO), each variant a fresh process pinned to core 0."""
    if args.algo not in ("ddpg", "ppo"):
        raise SystemExit("--engine jax: --algo ddpg or --algo ppo (the paper presets)")
    sizes = [int(x) for x in args.pack_sizes.split(",") if x]
    variants = ["sb3", *(f"pack{k}" for k in sizes), "env_random"]
    child_env = {**os.environ, "XLA_FLAGS": JAX_XLA_FLAGS, "MUJOCO_GL": "disable", "OMP_NUM_THREADS": "1",
                 "MKL_NUM_THREADS": "1"}
    uptime_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    results: dict[str, list[dict]] = {v: [] for v in variants}
    for r in range(args.repeats):
        for v in variants:
            cmd = ["taskset", "-c", "0", sys.executable, __file__, "--engine", "jax", "--child", v, "--env", args.env,
                   "--steps", str(args.steps), "--learning-starts", str(args.learning_starts), "--algo", args.algo]
            if args.n_steps:
                cmd += ["--n-steps", str(args.n_steps)]
            if args.full_buffers:
                cmd.append("--full-buffers")
            done = subprocess.run(cmd, capture_output=True, text=True, env=child_env)
            if done.returncode != 0:
                raise SystemExit(f"{v} failed:\n{done.stderr[-3000:]}")
            res = json.loads(done.stdout.strip().splitlines()[-1])
            results[v].append(res)
            print(f"repeat {r} {v:<10} {res['wall_s']:7.1f} s {res['steps_per_s']:8.0f} env steps/s "
                  f"{res['peak_rss_mib']:7.0f} MiB" + (f" compile {res['compile_s']:.1f} s" if "compile_s" in res else ""),
                  flush=True)
    uptime_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    best = {v: max(results[v], key=lambda x: x["steps_per_s"]) for v in variants}
    sb3 = best["sb3"]["steps_per_s"]
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}; children "
          "pinned to core 0")
    print(f"load: before {uptime_before}\n      after  {uptime_after}")
    print(f"command: python benchmarks/throughput.py {' '.join(sys.argv[1:])}\n")
    # a ratio within one repeat compares runs seconds apart (the same load); best / best may mix two loads
    same = {v: [x["steps_per_s"] / s["steps_per_s"] for x, s in zip(results[v], results["sb3"], strict=True)]
            for v in variants}
    print("| variant | learners | env steps (all learners) | env steps/s per repeat | best env steps/s | x SB3 per repeat "
          "(same repeat) | x SB3 median | x SB3 (best / best) | compile s | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for v in variants:
        b, per = best[v], " / ".join(f"{x['steps_per_s']:.0f}" for x in results[v])
        per_ratio = " / ".join(f"{x:.2f}" for x in same[v])
        ratio = f"{b['steps_per_s'] / sb3:.2f}"
        comp = " / ".join(f"{x['compile_s']:.1f}" for x in results[v]) if "compile_s" in b else "-"
        print(f"| {v} | {b['learners']} | {b['env_steps']} | {per} | {b['steps_per_s']:.0f} | {per_ratio} | "
              f"{statistics.median(same[v]):.2f} | {ratio} | {comp} | {max(x['peak_rss_mib'] for x in results[v]):.0f} |")
    packs = [v for v in variants if v.startswith("pack")]
    parts = ["env", "act", "update", "buffer+norm", "other"]
    print("\nprofile of the pack (best repeat): seconds (share of the timed learn)\n")
    print("| variant | wall s | " + " | ".join(parts) + " |")
    print("|---|---|" + "---|" * len(parts))
    for v in packs:
        b = best[v]
        cells = [f"{b['profile_s'].get(p, 0.0):.2f} ({100 * b['profile_s'].get(p, 0.0) / b['wall_s']:.0f}%)" for p in parts]
        print(f"| {v} | {b['wall_s']:.2f} | " + " | ".join(cells) + " |")
    top = max(packs, key=lambda v: statistics.median(same[v])) if packs else None
    if top:
        ratio = statistics.median(same[top])
        print(f"\nbest pack: {top}, median over repeats of (pack / sb3 in the same repeat) {ratio:.2f}x stock SB3 -> "
              f"{'GO' if ratio >= 5 else 'NO-GO'} (threshold 5x)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": sys.argv, "algo": args.algo, "machine": platform.machine(), "cores": os.cpu_count(),
                       "python": platform.python_version(), "uptime_before": uptime_before, "uptime_after": uptime_after,
                       "results": results, "best": best, "ratio_same_repeat": same}, f, indent=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", default="ppo")
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--engine", choices=("sb3", "jax"), default="sb3",
                        help="sb3: the DPD variants above; jax: stock SB3 DDPG or PPO against JAX packs")
    parser.add_argument("--steps", type=int, help="N: env steps per DPD student / per learner "
                        "(default 20000 with --engine sb3, 3000 with --engine jax)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--learning-starts", type=int, help="off-policy warm-up (short, so the timing covers "
                        "training; default 1000 with --engine sb3, the paper preset's 100 with --engine jax)")
    parser.add_argument("--full-buffers", action="store_true", help="fill replay buffers before reading peak RSS")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of the variants")
    parser.add_argument("--preset", help="zoo | paper (default: paper for ddpg, zoo otherwise)")
    parser.add_argument("--pack-sizes", default="1,8,16", help="--engine jax: learners per pack, comma-separated")
    parser.add_argument("--json", help="--engine jax: write every repeat's numbers to this JSON file")
    parser.add_argument("--n-steps", type=int, help="--engine jax --algo ppo: rollout length of both sides "
                        "(default: the paper preset's 2048)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    jax_engine = args.engine == "jax"
    if args.steps is None:
        args.steps = 3000 if jax_engine else 20_000
    if args.learning_starts is None:
        args.learning_starts = 100 if jax_engine else 1000
    if jax_engine:
        if args.child:
            print(json.dumps(run_jax_variant(args.child, args.env, args.steps, args.learning_starts, args.full_buffers,
                                             args.algo, args.n_steps)))
        else:
            main_jax(args)
        return
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
