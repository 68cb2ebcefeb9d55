"""What recording MuJoCo simulator states costs (``record_sim_states``; not a test).

Each variant runs in a fresh process pinned to one core (``taskset -c 0``), one torch thread, evaluation off,
interleaved on / off / on / off ... so that both see the same load. Variants, each with the recording on and off:
  env   dpd's training env stack alone (DummyVecEnv -> VecMonitor -> RecentStates -> VecNormalize) stepped with
        random actions: the recording's cost with nothing else around it (its upper bound as a share)
  ppo   stock SB3 PPO ``model.learn(N)`` (paper preset) on that env stack, as one DPD student trains
  ddpg  stock SB3 DDPG ``model.learn(N)`` (paper preset) on that env stack
  probe one call of the function that reads a MuJoCo state (``dpd.envs.mujoco_state``), timed in a loop of
        ``--steps`` calls, beside one raw ``env.step``: the recording's cost per env step (one call per step and sub-env)
Reported per repeat: env steps per second of the child's CPU time (user + system: what the recording costs, little
moved by other processes on a shared machine) and per second of wall time (moved by them), and off / on, the
speed-up of not recording, per repeat (the two runs seconds apart) and its median over repeats.

    python benchmarks/sim_states.py --env HalfCheetah-v5 --steps 20000 --ppo-steps 8192 --ddpg-steps 3000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any

KINDS = ("env", "ppo", "ddpg")


def _config(algo: str, env: str, record: bool) -> Any:
    from dpd import TrainConfig

    named: dict[str, Any] = {"algo": algo}  # a name from the command line, validated by TrainConfig
    return TrainConfig(env_id=env, method="vanilla", total_steps=1_000_000, eval_freq=0, preset="paper",
                       record_sim_states=record, **named).resolve()


def run_probe(env_id: str, calls: int) -> dict[str, Any]:
    """CPU microseconds of one ``mujoco_state`` call and of one raw ``env.step`` (random actions)."""
    import gymnasium as gym

    from dpd.envs import mujoco_state

    env = gym.make(env_id)
    env.reset(seed=0)
    env.action_space.seed(0)
    actions = [env.action_space.sample() for _ in range(1000)]
    start = time.process_time()
    for _ in range(calls):
        mujoco_state(env)
    read_us = 1e6 * (time.process_time() - start) / calls
    start = time.process_time()
    for k in range(calls):
        _, _, term, trunc, _ = env.step(actions[k % 1000])
        if term or trunc:
            env.reset()
    step_us = 1e6 * (time.process_time() - start) / calls
    return {"kind": "probe", "read_us": read_us, "step_us": step_us}


def run_child(kind: str, env: str, steps: int, record: bool) -> dict[str, Any]:
    if kind == "probe":
        return run_probe(env, steps)
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from dpd.students.factory import build_student

    cfg = _config("ppo" if kind == "env" else kind, env, record)
    student = build_student(cfg, 0, None)
    assert (student.recorder._sim is not None) == record  # the switch did what it says
    model = student.model
    start, cpu_start = time.perf_counter(), time.process_time()
    if kind == "env":
        venv = model.get_env()
        assert venv is not None
        venv.reset()
        rng = np.random.default_rng(0)
        low, high = venv.action_space.low, venv.action_space.high  # type: ignore[attr-defined]
        for _ in range(steps):
            venv.step(rng.uniform(low, high, size=(venv.num_envs, *low.shape)))
    else:
        model.learn(steps)  # stock SB3
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return {"kind": kind, "record": record, "wall_s": wall, "cpu_s": cpu, "steps_per_s": steps / wall,
            "steps_per_cpu_s": steps / cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--steps", type=int, default=20_000, help="env steps of the env variant")
    parser.add_argument("--ppo-steps", type=int, default=8_192, help="env steps of the ppo variant (2048-step rollouts)")
    parser.add_argument("--ddpg-steps", type=int, default=3_000, help="env steps of the ddpg variant (slower: "
                        "50 gradient steps per 100 env steps)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated subset of env, ppo, ddpg")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--record", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args.child, args.env, args.steps, args.record)))
        return
    kinds = [k for k in args.kinds.split(",") if k]
    if set(kinds) - set(KINDS):
        parser.error(f"--kinds: choose from {', '.join(KINDS)}")
    probes: list[dict[str, Any]] = []
    child_env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MUJOCO_GL": "disable"}
    uptime = [subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()]
    rates: dict[tuple[str, bool], list[dict[str, Any]]] = {(k, r): [] for k in kinds for r in (True, False)}
    for rep in range(args.repeats):
        cmd = ["taskset", "-c", "0", sys.executable, __file__, "--child", "probe", "--env", args.env, "--steps",
               str(args.steps)]
        done = subprocess.run(cmd, capture_output=True, text=True, env=child_env)
        if done.returncode != 0:
            raise SystemExit(f"probe failed:\n{done.stderr[-3000:]}")
        probes.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"repeat {rep} probe one mujoco_state {probes[-1]['read_us']:.2f} us, one raw env.step "
              f"{probes[-1]['step_us']:.1f} us (CPU)", flush=True)
        for kind in kinds:
            for record in (True, False):
                steps = {"env": args.steps, "ppo": args.ppo_steps, "ddpg": args.ddpg_steps}[kind]
                cmd = ["taskset", "-c", "0", sys.executable, __file__, "--child", kind, "--env", args.env,
                       "--steps", str(steps)] + (["--record"] if record else [])
                done = subprocess.run(cmd, capture_output=True, text=True, env=child_env)
                if done.returncode != 0:
                    raise SystemExit(f"{kind} record={record} failed:\n{done.stderr[-3000:]}")
                res = json.loads(done.stdout.strip().splitlines()[-1])
                rates[(kind, record)].append(res)
                print(f"repeat {rep} {kind:<5} record={record!s:<5} wall {res['wall_s']:7.1f} s cpu {res['cpu_s']:7.1f} s "
                      f"{res['steps_per_cpu_s']:8.0f} env steps/cpu-s {res['steps_per_s']:8.0f} env steps/s", flush=True)
    uptime.append(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python "
          f"{platform.python_version()}; children pinned to core 0, one torch thread")
    print(f"load: before {uptime[0]}\n      after  {uptime[1]}")
    print(f"command: python benchmarks/sim_states.py {' '.join(sys.argv[1:])}\n")
    read = statistics.median(p["read_us"] for p in probes)
    per_repeat = " / ".join(f"{p['read_us']:.2f}" for p in probes)
    print(f"one mujoco_state call: {per_repeat} CPU us per repeat (median {read:.2f}); one raw env.step: "
          f"{statistics.median(p['step_us'] for p in probes):.1f} us\n")
    print("| variant | env steps | clock | recording on: env steps/s per repeat | off: per repeat | off / on per repeat"
          " | off / on median | the probe's share: one read per step x off's median CPU rate |")
    print("|---|---|---|---|---|---|---|---|")
    for kind in kinds:
        steps = {"env": args.steps, "ppo": args.ppo_steps, "ddpg": args.ddpg_steps}[kind]
        for clock, key in (("CPU", "steps_per_cpu_s"), ("wall", "steps_per_s")):
            on, off = [x[key] for x in rates[(kind, True)]], [x[key] for x in rates[(kind, False)]]
            ratios = [b / a for a, b in zip(on, off, strict=True)]
            share = f"{100 * read * 1e-6 * statistics.median(off):.1f}%" if clock == "CPU" else ""
            cells = [" / ".join(f"{x:.0f}" for x in on), " / ".join(f"{x:.0f}" for x in off),
                     " / ".join(f"{x:.3f}" for x in ratios), f"{statistics.median(ratios):.3f}", share]
            print(f"| {kind} | {steps} | {clock} | " + " | ".join(cells) + " |")

if __name__ == "__main__":
    main()
