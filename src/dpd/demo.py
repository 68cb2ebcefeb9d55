"""``dpd demo``: vanilla PPO, the independent pair and DPD-PPO on one task at the same total env steps, side by side.

Three runs, one process each: vanilla (one learner, all the steps), ``independent`` (two students with half the
steps each, never distilled) and ``dpd`` (the same two students, distilling). The independent pair is the control
that separates what distillation does from what picking the better of two learners does.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from concurrent.futures import Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from dpd.config import ResolvedConfig, TrainConfig
from dpd.errors import DPDUserError
from dpd.names import Method
from dpd.training.trainer import LogFn, train

#: the demo's three runs, in the order they are shown
METHODS: tuple[Method, ...] = ("vanilla", "independent", "dpd")
#: seconds between two progress lines when the output is not a terminal (a terminal gets one line, redrawn)
LOG_EVERY_S = 30.0


def _train_one(config: ResolvedConfig, out: str) -> dict[str, Any]:
    # a worker process: 1 torch thread (set by the trainer from config.torch_threads), no progress bar
    return train(config, out, overwrite=True)


def _progress(runs: dict[str, str], total_steps: int, started: float) -> str:
    from dpd.run_files import run_steps

    parts = [f"{m} {min(run_steps(Path(run)) / total_steps, 1.0):4.0%}" for m, run in runs.items()]
    elapsed = int(time.time() - started)
    return f"dpd demo: {' · '.join(parts)} · {elapsed // 60}:{elapsed % 60:02d} elapsed"


def run_demo(env_id: str, total_steps: int, seed: int, out: Path, log: LogFn,
             status: LogFn | None = None, overwrite: bool = False) -> list[tuple[str, dict[str, Any]]]:
    """Run the three methods side by side and return ``[(run folder, summary), ...]``.

    :param status: where the live progress line goes (redrawn in place on a terminal); default: ``log`` every
        ``LOG_EVERY_S`` seconds.
    :param overwrite: replace an earlier demo in ``out`` (else a non-empty ``out`` is refused).
    """
    from dpd.run_files import check_run_dir

    configs = {m: TrainConfig(env_id=env_id, algo="ppo", method=m, total_steps=total_steps, seed=seed).resolve()
               for m in METHODS}
    if out.exists() and not out.is_dir():
        raise DPDUserError(f"--out {out} exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise DPDUserError(f"--out {out} is not empty (an earlier demo?); pass --overwrite to replace it, or choose"
                               " another --out")
        foreign = sorted(p.name for p in out.iterdir() if p.name not in METHODS)
        if foreign:
            raise DPDUserError(f"--out {out} holds {foreign[0]}, which no demo wrote; refusing to overwrite it: choose"
                               " another --out")
    for m in METHODS:
        check_run_dir(out / m, overwrite)  # every run folder checked before any is touched
    log(f"dpd demo: vanilla PPO, the independent pair and DPD-PPO on {env_id}, {total_steps} total env steps each,"
        f" in {out}/ (one process each; a few minutes)")
    runs: dict[str, str] = {m: str(out / m) for m in configs}
    started, last_log = time.time(), 0.0
    with ProcessPoolExecutor(max_workers=len(configs), mp_context=mp.get_context("spawn")) as pool:
        futures: dict[str, Future[dict[str, Any]]] = {m: pool.submit(_train_one, configs[m], runs[m]) for m in configs}
        while True:
            _, pending = wait(list(futures.values()), timeout=1.0)
            line = _progress(runs, total_steps, started)
            if status is not None:
                status(line)
            elif time.time() - last_log >= LOG_EVERY_S:
                log(line)
                last_log = time.time()
            if not pending:
                break
        results = [(runs[m], futures[m].result()) for m in configs]
    for run, summary in results:
        log(f"{run}: {summary['wall_time_s']:.0f} s, {summary['env_steps_per_s']:.0f} env steps/s")
    return results


def verdict(results: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Plain-words closing lines: what this one-seed comparison says, and what it cannot say."""
    finals = {s["method"]: [v["final_eval_return"] for v in s["learners"].values()] for _, s in results}
    if any(x is None for xs in finals.values() for x in xs):
        return ["dpd demo: a run has no evaluation; nothing to compare"]
    van, ind, dpd = finals["vanilla"][0], finals["independent"], finals["dpd"]

    def pair(xs: list[float]) -> str:
        return f"better student {max(xs):.1f}, worse {min(xs):.1f}"

    lines = [
        f"vanilla (one learner, all the steps): {van:.1f}",
        f"independent pair (half the steps each, no distillation): {pair(ind)}",
        f"DPD pair (the same two students, distilling): {pair(dpd)}",
        f"distillation gain (DPD minus independent): better student {max(dpd) - max(ind):+.1f}, worse student "
        f"{min(dpd) - min(ind):+.1f}; selection gain of the independent pair (better minus mean) "
        f"{max(ind) - sum(ind) / 2:+.1f}",
        f"DPD's better student is {_versus(max(dpd), van)} vanilla at the same total env steps.",
        "One seed at a small budget decides nothing: runs differ by seed as much as by method. The measured answer "
        "over seeds, with confidence intervals, is in docs/reproduction.md.",
    ]
    return lines


def _versus(a: float, b: float) -> str:
    return "level with" if a == b else "above" if a > b else "below"
