"""Re-evaluation of finished runs and reading of their summaries."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from dpd.envs import EnvSource
from dpd.episodes import run_episodes
from dpd.errors import DPDUserError
from dpd.loading import load_learner, read_run_config
from dpd.run_files import SUMMARY_FILE, write_json

REEVALUATION_FILE = "reevaluation.json"


def read_summary(run: str | Path) -> dict[str, Any]:
    path = Path(run) / SUMMARY_FILE
    if not path.is_file():
        raise DPDUserError(f"{run} has no {SUMMARY_FILE}: not a finished dpd run (still running, or stopped early)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DPDUserError(f"{path} is not valid JSON ({exc.msg}); the run folder is damaged") from None
    if not isinstance(data, dict) or "learners" not in data:
        raise DPDUserError(f"{path} is not a dpd summary")
    return data


def evaluate_run(run: str | Path, episodes: int, seed: int = 0, env: EnvSource | None = None) -> dict[str, Any]:
    """Evaluate every saved learner of ``run`` for ``episodes`` deterministic episodes (env seeded with ``seed``);
    also writes ``reevaluation.json`` into the run folder. ``env``: the run's environment again (see
    :func:`dpd.loading.load_learner`)."""
    if seed < 0 or seed > 2**32 - 1:
        raise DPDUserError(f"--seed must be in [0, {2**32 - 1}], got {seed}")
    config = read_run_config(run)
    results: dict[str, Any] = {"episodes": episodes, "seed": seed, "learners": {}}
    for name in config.learner_names:
        model, venv = load_learner(run, name, seed=seed, env=env)
        result = run_episodes(model, venv, episodes)
        venv.close()
        results["learners"][name] = {**asdict(result), "episodes": len(result.returns)}
    write_json(Path(run) / REEVALUATION_FILE, results)
    return results
