"""What every learner keeps beside its model, whatever trains it: the evaluation schedule and its log, the snapshot
schedule, the wall clock, the summary entry and the pair's log keys. :class:`dpd.training.learner.Learner` (an SB3
student) and :class:`dpd.training.pack_learner.PackLearner` (a slot of a JAX pack) both derive from
:class:`LearnerRecord` and answer its four questions: their env steps, one evaluation, their log, their files."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from stable_baselines3.common.logger import Logger

from dpd.config import ResolvedConfig
from dpd.names import EVAL_FILE, MODEL_FILE, SNAPSHOT_DIR, VECNORMALIZE_JSON, VECNORMALIZE_PICKLE, Log
from dpd.run_files import EvalLog, check_evaluation_rows


class LearnerRecord(ABC):
    """The bookkeeping of learner ``config.learner_names[index]`` of a run (folder ``run_dir / name``, or none)."""

    def __init__(self, config: ResolvedConfig, index: int, run_dir: Path | None, log: Any) -> None:
        self.config = config
        self.name = config.learner_names[index]
        self.n_learners = len(config.learner_names)
        self.log = log or (lambda _msg: None)
        self.folder = run_dir / self.name if run_dir is not None else None
        self.eval_log: EvalLog | None = None
        self.evaluations: list[dict[str, float]] = []
        self.skipped_empty = 0
        self.next_eval = 0
        self.snapshots_taken = 0
        #: snapshots of a run without a folder: steps -> files (written by save)
        self.kept_snapshots: dict[int, dict[str, bytes]] = {}
        self._t0 = time.time()
        self.elapsed_before = 0.0

    def open_eval_log(self) -> None:
        """evaluations.csv, appended to (after a resume's logs were cut back to the checkpoint)."""
        if self.folder is not None:
            self.eval_log = EvalLog(self.folder / EVAL_FILE)

    # ------------------------------------------------------------------ what a learner answers
    @property
    @abstractmethod
    def num_timesteps(self) -> int:
        """The learner's own env steps."""

    @property
    @abstractmethod
    def logger(self) -> Logger:
        """The learner's log (progress.csv)."""

    @abstractmethod
    def run_evaluation(self, steps: int) -> tuple[float, float, float]:
        """(mean return, std return, mean length) of ``config.eval_episodes`` deterministic episodes now."""

    @abstractmethod
    def snapshot_files(self) -> dict[str, bytes]:
        """The files of a snapshot (the model and its normalisation, and what else the learner keeps)."""

    @abstractmethod
    def dump(self) -> None:
        """Write the iteration's log row."""

    @abstractmethod
    def counts(self) -> tuple[int, int, int]:
        """(RL iterations, distillation batches skipped for a non-finite loss, for all-zero weights)."""

    # ------------------------------------------------------------------ the shared schedule
    def maybe_evaluate(self, final: bool = False) -> None:
        """Evaluate when the learner's steps reach the next multiple of ``eval_freq`` (``final``: unless it did at
        this very step); append the row to evaluations.csv and the log."""
        cfg = self.config
        if cfg.eval_freq == 0:
            return
        steps = self.num_timesteps
        if final:
            if self.evaluations and self.evaluations[-1]["student_steps"] == steps:
                return
        elif steps < self.next_eval:
            return
        while self.next_eval <= steps:
            self.next_eval += cfg.eval_freq
        mean, std, length = self.run_evaluation(steps)
        row = {
            "student_steps": float(steps),
            # The paper's x-axis for DPD: both students' steps (each student's steps x number of learners).
            "total_env_steps": float(steps * self.n_learners),
            "mean_return": mean,
            "std_return": std,
            "mean_length": length,
            "time_s": self.elapsed(),
        }
        self.evaluations.append(row)
        if self.eval_log is not None:
            self.eval_log.append(row)
        self.logger.record(Log.EVAL_MEAN, mean)
        self.logger.record(Log.EVAL_STD, std)
        self.logger.record(Log.EVAL_LENGTH, length)
        self.log(f"{self.name} {steps:>9d} steps  eval return {mean:10.2f} ± {std:.2f}")
        if final:
            self.dump()

    def maybe_snapshot(self, final: bool = False) -> None:
        """Keep a copy of the learner in ``snapshots/<steps>/`` when its steps reach the next fraction of its budget
        (``config.snapshots``); ``final``: also every fraction not reached (a run stopped early). A run without a
        folder keeps them in memory until the learner's ``save``."""
        fractions = sorted(self.config.snapshots)
        if self.snapshots_taken >= len(fractions):
            return
        steps, budget = self.num_timesteps, self.config.steps_per_learner
        due = sum(1 for fraction in fractions[self.snapshots_taken:] if steps >= fraction * budget or final)
        if due:
            files = self.snapshot_files()
            if self.folder is not None:
                write_files(self.folder / SNAPSHOT_DIR / str(steps), files)
            else:
                self.kept_snapshots[steps] = files
            self.snapshots_taken += due

    def elapsed(self) -> float:
        return self.elapsed_before + time.time() - self._t0

    def log_pair(self, distance: float, xi_mean: float, peer_better: float, steps: int) -> None:
        """The pair on the whole peer window before a phase: comparable between dpd and independent runs."""
        self.logger.record(Log.PAIR_DISTANCE, distance)
        self.logger.record(Log.PAIR_XI_MEAN, xi_mean)
        self.logger.record(Log.PAIR_PEER_BETTER, peer_better)
        self.logger.record(Log.PHASE_STEPS, steps)

    def summary_entry(self) -> dict[str, Any]:
        """The learner's entry of summary.json."""
        iterations, skipped_nonfinite, skipped_zero_weight = self.counts()
        evals = self.evaluations
        return {
            "env_steps": self.num_timesteps,
            "iterations": iterations,
            "final_eval_return": evals[-1]["mean_return"] if evals else None,
            "final_eval_std": evals[-1]["std_return"] if evals else None,
            "best_eval_return": max(e["mean_return"] for e in evals) if evals else None,
            "evaluations": len(evals),
            "distill_skipped_empty": self.skipped_empty,
            "distill_skipped_nonfinite": skipped_nonfinite,
            "distill_skipped_zero_weight": skipped_zero_weight,
        }

    # ------------------------------------------------------------------ checkpoints
    def record_state(self) -> dict[str, Any]:
        """The bookkeeping's part of a checkpoint (key ``learner``)."""
        return {"next_eval": self.next_eval, "skipped_empty": self.skipped_empty, "evaluations": self.evaluations,
                "elapsed_s": self.elapsed(), "snapshots_taken": self.snapshots_taken}

    def load_record(self, b: dict[str, Any]) -> None:
        """:meth:`record_state` back (rows checked: a damaged checkpoint's row is found now, not at the summary)."""
        self.next_eval, self.skipped_empty = int(b["next_eval"]), int(b["skipped_empty"])
        self.snapshots_taken = int(b.get("snapshots_taken", 0))
        self.evaluations = check_evaluation_rows(b["evaluations"])
        self.elapsed_before, self._t0 = float(b["elapsed_s"]), time.time()

    def save_files(self, folder: Path | None, files: dict[str, bytes]) -> None:
        """The learner's final files into ``folder`` (default: its own), and the snapshots a run without a folder
        kept in memory."""
        folder = folder or self.folder
        if folder is None:
            return
        write_files(folder, files)
        for steps, kept in self.kept_snapshots.items():
            write_files(folder / SNAPSHOT_DIR / str(steps), kept)

    def close_record(self) -> None:
        if self.eval_log is not None:
            self.eval_log.close()


def model_files(model: Any, vn: Any) -> dict[str, bytes]:
    """An SB3 model and its VecNormalize (or None) as a learner's files: model.zip, the VecNormalize pickle (for SB3
    users) and its statistics as JSON (what dpd reads)."""
    import io
    import json
    import pickle

    from dpd.envs import normalization_state

    buffer = io.BytesIO()
    model.save(buffer)
    files = {MODEL_FILE: buffer.getvalue()}
    if vn is not None:
        files[VECNORMALIZE_PICKLE] = pickle.dumps(vn)
        files[VECNORMALIZE_JSON] = (json.dumps(normalization_state(vn), indent=2) + "\n").encode()
    return files


def write_files(folder: Path, files: dict[str, bytes]) -> None:
    """Each file to a temporary name, then renamed: a full disk or a kill never leaves a cut-off file."""
    from dpd.run_files import atomic_write

    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        atomic_write(folder / name, lambda fh, data=data: fh.write(data), binary=True)  # type: ignore[misc]


__all__ = ["LearnerRecord", "model_files", "write_files"]
