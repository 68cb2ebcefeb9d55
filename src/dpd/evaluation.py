"""Re-evaluation of finished runs and reading of their summaries."""

from __future__ import annotations

import glob
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from dpd.envs import EnvSource
from dpd.episodes import run_episodes
from dpd.errors import DPDUserError
from dpd.loading import load_learner, read_run_config
from dpd.names import REEVALUATION_FILE, SUMMARY_FILE
from dpd.run_files import check_output, read_json, read_summary_file, result_output, write_json


def read_summary(run: str | Path) -> dict[str, Any]:
    path = Path(run) / SUMMARY_FILE
    if not path.is_file():
        raise DPDUserError(f"{run} has no {SUMMARY_FILE}: not a finished dpd run (still running, or stopped early)")
    return read_summary_file(path)


def writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


def _is_reevaluation(path: Path) -> bool:
    """Whether ``path`` holds what :func:`evaluate_run` writes (so writing it again replaces dpd's own file)."""
    try:
        data = read_json(path)  # bounded: a user's huge file or a FIFO by that name is not read without end
    except DPDUserError:
        return False
    return isinstance(data, dict) and set(data) == {"episodes", "seed", "learners"}


def evaluate_run(run: str | Path, episodes: int, seed: int = 0, env: EnvSource | None = None,
                 out: str | Path | None = None) -> dict[str, Any]:
    """Evaluate every saved learner of ``run`` for ``episodes`` deterministic episodes (env seeded with ``seed``);
    writes the results to ``out`` (default: ``RUN/reevaluation.json``), checked writable before any episode runs.
    ``env``: the run's environment again (see :func:`dpd.loading.load_learner`)."""
    if seed < 0 or seed > 2**32 - 1:
        raise DPDUserError(f"--seed must be in [0, {2**32 - 1}], got {seed}")
    config = read_run_config(run)
    target = Path(out) if out is not None else Path(run) / REEVALUATION_FILE
    folder = target.parent
    if out is not None:  # the one overwrite rule (dpd.run_files.check_output): a user's own file is never replaced
        check_output(folder, result_output("evaluate", (glob.escape(target.name),), ours=_is_reevaluation))
    if target.is_dir() or not folder.is_dir() or not writable(folder):
        raise DPDUserError(f"cannot write {target} ({folder} is not a writable folder); pass --out FILE to write the"
                           " results elsewhere")
    results: dict[str, Any] = {"episodes": episodes, "seed": seed, "learners": {}}
    for name in config.learner_names:
        model, venv = load_learner(run, name, seed=seed, env=env)
        result = run_episodes(model, venv, episodes)
        venv.close()
        results["learners"][name] = {**asdict(result), "episodes": len(result.returns)}
    write_json(target, results)
    return results
