"""``dpd demo``: DPD-PPO and vanilla PPO on one task at the same total env steps, one process each."""

from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from dpd.config import TrainConfig
from dpd.training.trainer import LogFn, train


def _train_one(config: TrainConfig, out: str) -> dict[str, Any]:
    # a worker process: 1 torch thread (set by the trainer from config.torch_threads), no progress bar
    return train(config, out, overwrite=True)


def run_demo(env_id: str, total_steps: int, seed: int, out: Path, log: LogFn) -> list[tuple[str, dict[str, Any]]]:
    """Run both methods side by side (2 processes) and return ``[(run folder, summary), ...]``."""
    configs = {m: TrainConfig(env_id=env_id, algo="ppo", method=m, total_steps=total_steps, seed=seed).resolve()
               for m in ("dpd", "vanilla")}
    log(f"dpd demo: DPD-PPO and vanilla PPO on {env_id}, {total_steps} total env steps each, in {out}/")
    runs = {m: str(out / m) for m in configs}
    with ProcessPoolExecutor(max_workers=2, mp_context=mp.get_context("spawn")) as pool:
        futures = {m: pool.submit(_train_one, configs[m], runs[m]) for m in configs}
        results = [(runs[m], futures[m].result()) for m in configs]
    for run, summary in results:
        log(f"{run}: {summary['wall_time_s']:.0f} s, {summary['env_steps_per_s']:.0f} env steps/s")
    return results
