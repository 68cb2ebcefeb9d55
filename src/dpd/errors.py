"""Errors that reach the user. The CLI prints them as one line: DPDUserError exits with status 2 (bad input),
TrainingInterrupted with 130 (Ctrl-C / SIGTERM, after a checkpoint), TrainingDiverged with 1."""

from __future__ import annotations

from pathlib import Path


class DPDUserError(ValueError):
    """Bad input from the user (config, command line, run folder). The message names the fix."""


class TrainingInterrupted(Exception):
    """Ctrl-C or SIGTERM: a checkpoint was written (with a run folder) and the run stopped between two rounds."""

    def __init__(self, signal_name: str, env_steps: int, run_dir: Path | None) -> None:
        where = f"; resume with: dpd train --resume {run_dir}" if run_dir is not None else ""
        super().__init__(f"{signal_name} at {env_steps} env steps, checkpoint written{where}" if run_dir is not None
                         else f"{signal_name} at {env_steps} env steps (no run folder, nothing saved)")
        self.env_steps = env_steps


class TrainingDiverged(RuntimeError):
    """Distillation kept producing non-finite losses; the run stopped between two rounds (checkpoint written)."""
