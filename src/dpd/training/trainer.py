"""Algorithm 1 of the paper, sequential: the thin loop that drives two students (or one vanilla learner).

    for each iteration:
        A.iterate()                 # collect in A's env, SB3 update of A          (lines 3-4)
        A.distill(B.peer_batch())   # B's recent raw states, B's actions/values    (line 5, Eq. 11)
        B.iterate()                                                                 (lines 6-7)
        B.distill(A.peer_batch())   # A already updated in this iteration          (line 8, Eq. 12)
        evaluate / log on schedule

The vanilla baseline runs through the same loop with one learner and no distillation, for the same
TOTAL number of env steps (each DPD student gets half of it).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch as th
from stable_baselines3.common.callbacks import BaseCallback

import dpd
from dpd.config import TrainConfig
from dpd.episodes import EvalResult
from dpd.errors import DPDUserError, TrainingDiverged, TrainingInterrupted
from dpd.objective import DistillStats, dpd_weights
from dpd.students.base import PeerBatch, Student
from dpd.students.factory import build_student, set_torch_threads
from dpd.training import logs
from dpd.training.run_dir import CONFIG_FILE, EVAL_FILE, SUMMARY_FILE, EvalLog, create_run_dir, write_json, write_yaml

CallbackFactory = Callable[[str], BaseCallback | list[BaseCallback] | None]
LogFn = Callable[[str], None]


class DPDTrainer:
    """Owns the learners of one run and runs Algorithm 1 over them.

    :param config: a resolved :class:`TrainConfig` (``config.resolve()``).
    :param run_dir: folder for logs, models and summary (created by :func:`dpd.training.run_dir.create_run_dir`);
        None keeps everything in memory.
    :param callbacks: optional factory ``learner_name -> SB3 callback(s)``, called once per learner.
    :param progress_bar: one rich progress bar over the total env steps.
    :param log: where one-line progress messages go (default: nowhere).
    """

    def __init__(
        self,
        config: TrainConfig,
        run_dir: str | Path | None = None,
        callbacks: CallbackFactory | None = None,
        progress_bar: bool = False,
        log: LogFn | None = None,
        verbose: int = 0,
        resume_state: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.progress_bar = progress_bar
        self.log: LogFn = log or (lambda _msg: None)
        self._resume = resume_state
        set_torch_threads(config.torch_threads)
        kept = logs.keep_rows(self.run_dir, config.learner_names, resume_state["log_rows"]) if (
            resume_state and self.run_dir) else {}
        self.students: list[Student] = [
            build_student(config, i, str(self.run_dir / name) if self.run_dir else None, verbose)
            for i, name in enumerate(config.learner_names)
        ]
        if kept:
            for s, st in zip(self.students, resume_state["students"] if resume_state else [], strict=True):
                logs.restore_rows(s, kept[s.name], int(st["model"]["num_timesteps"]))
        self._callbacks = callbacks
        self._eval_logs = [EvalLog(self.run_dir / s.name / EVAL_FILE) if self.run_dir else None for s in self.students]
        self.evaluations: dict[str, list[dict[str, float]]] = {s.name: [] for s in self.students}
        self.skipped_empty = dict.fromkeys(config.learner_names, 0)
        self._start = time.time()
        self._elapsed_before = 0.0  # wall time of the run before a resume
        self._next_eval = [0] * len(self.students)
        self._next_checkpoint = config.checkpoint_freq
        self._stop_signal: str | None = None
        self._diverged: str | None = None

    @property
    def dpd(self) -> bool:
        return self.config.method == "dpd"

    def total_env_steps(self) -> int:
        return sum(s.num_timesteps for s in self.students)

    # ------------------------------------------------------------------ the loop
    def learn(self) -> dict[str, Any]:
        """Train to the budget; save models and write summary.json (if a run folder is set). Returns the summary."""
        cfg = self.config
        per_learner = cfg.steps_per_learner
        if self._resume is not None:
            self._restore(self._resume)
        else:
            for s in self.students:
                s.setup(per_learner, self._callbacks(s.name) if self._callbacks else None)
            self._start = time.time()
            for i, s in enumerate(self.students):
                self._maybe_evaluate(i)  # the untrained policies: the curves start at step 0
                self._dump(s)
        stopped = False
        with _Progress(self.progress_bar, cfg.total_steps) as bar, _StopSignals(self):
            while not stopped and any(s.num_timesteps < per_learner for s in self.students):
                self._round_boundary()  # checkpoints happen between two rounds of Algorithm 1
                for i, student in enumerate(self.students):
                    if student.num_timesteps >= per_learner:
                        continue
                    if not student.iterate():
                        self.log(f"{student.name}: a callback stopped training at {student.num_timesteps} steps")
                        stopped = True
                        break
                    if self.dpd:
                        self._distill(student, self.students[1 - i])
                    self._maybe_evaluate(i)
                    self._dump(student)
                    bar.update(self.total_env_steps())
        for i in range(len(self.students)):
            self._maybe_evaluate(i, final=True)
        for s in self.students:
            s.finish()
        summary = self.summary(stopped)
        if self.run_dir is not None:
            self.save(self.run_dir)
            write_json(self.run_dir / SUMMARY_FILE, summary)
        return summary

    # ------------------------------------------------------------------ checkpoints
    def _round_boundary(self) -> None:
        total = self.total_env_steps()
        due = self.config.checkpoint_freq > 0 and total >= self._next_checkpoint and total > 0
        if self.run_dir is not None and (due or self._stop_signal or self._diverged):
            self.save_checkpoint()
            while self.config.checkpoint_freq > 0 and self._next_checkpoint <= total:
                self._next_checkpoint += self.config.checkpoint_freq
        if self._diverged:
            raise TrainingDiverged(f"{self._diverged}; stopped at {total} env steps"
                                   + (f", checkpoint in {self.run_dir}" if self.run_dir is not None else ""))
        if self._stop_signal:
            raise TrainingInterrupted(self._stop_signal, total, self.run_dir)

    def checkpoint_state(self) -> dict[str, Any]:
        from dpd.training.checkpoint import rng_state

        students = []
        for s in self.students:
            st = s.state_dict()
            if self.config.checkpoint_replay_buffer and hasattr(s, "replay_buffer_state"):
                st["replay_buffer"] = s.replay_buffer_state()
            students.append(st)
        return {
            "config": self.config.to_dict(),
            "students": students,
            "trainer": {"next_eval": list(self._next_eval), "next_checkpoint": self._next_checkpoint,
                        "evaluations": self.evaluations, "skipped_empty": self.skipped_empty,
                        "elapsed_s": self._elapsed_before + time.time() - self._start},
            "log_rows": logs.count_rows(self.run_dir, self.config.learner_names) if self.run_dir else {},
            "rng": rng_state(),  # last: nothing above draws random numbers
        }

    def save_checkpoint(self) -> Path:
        from dpd.training.checkpoint import CHECKPOINT_FILE, save_checkpoint

        assert self.run_dir is not None
        path = self.run_dir / CHECKPOINT_FILE
        save_checkpoint(path, self.checkpoint_state())
        self.log(f"dpd: checkpoint at {self.total_env_steps()} env steps -> {path}")
        return path

    def _restore(self, state: dict[str, Any]) -> None:
        from dpd.training.checkpoint import set_rng_state

        per_learner = self.config.steps_per_learner
        for s, st in zip(self.students, state["students"], strict=True):
            s.load_model_state(st)
            s.setup(per_learner, self._callbacks(s.name) if self._callbacks else None, resume=True)
            s.load_env_state(st)
            if "replay_buffer" in st and hasattr(s, "load_replay_buffer_state"):
                s.load_replay_buffer_state(st["replay_buffer"])
        t = state["trainer"]
        self._next_eval, self._next_checkpoint = list(t["next_eval"]), int(t["next_checkpoint"])
        self.evaluations = {k: [dict(r) for r in v] for k, v in t["evaluations"].items()}
        self.skipped_empty = dict(t["skipped_empty"])
        self._elapsed_before, self._start = float(t["elapsed_s"]), time.time()
        set_rng_state(state["rng"])
        self.log(f"dpd: resumed at {self.total_env_steps()} env steps")

    def _distill(self, student: Student, peer: Student) -> None:
        batch = peer.peer_batch()
        logger = student.model.logger
        if batch is None:  # the peer has not visited any state yet
            self.skipped_empty[student.name] += 1
            logger.record("distill/skipped_empty", self.skipped_empty[student.name])
            return
        stats = student.distill(batch)
        self._log_distill(student, batch, stats)
        if student.nonfinite_streak >= self.config.max_nonfinite_batches and self._diverged is None:
            self._diverged = (f"{student.name}: {student.nonfinite_streak} distillation batches in a row had a "
                              "non-finite loss (values or actions are NaN/inf)")

    def _log_distill(self, student: Student, batch: PeerBatch, stats: DistillStats | None) -> None:
        logger = student.model.logger
        if stats is not None:
            for key, value in stats.as_dict().items():
                logger.record(f"distill/{key}", value)
        logger.record("distill/skipped_nonfinite", student.distill_skipped_nonfinite)
        logger.record("distill/xi_scale", student.xi_scale())
        # Histogram of the weights over the whole peer window (TensorBoard only): shows saturation at the clip.
        settings = student.distill_settings
        assert settings is not None
        obs = student.normalize_obs(batch.states)
        xi = (th.as_tensor(batch.values) - student.raw_values(obs).cpu()) / student.xi_scale()
        weights, _ = dpd_weights(xi, settings.alpha, settings.weighting, settings.max_log_weight)
        weights = weights[th.isfinite(weights)]
        if weights.numel():
            logger.record("distill/weights", weights, exclude=("stdout", "log", "json", "csv"))

    # ------------------------------------------------------------------ evaluation & logs
    def _maybe_evaluate(self, index: int, final: bool = False) -> EvalResult | None:
        if self.config.eval_freq == 0:
            return None
        student = self.students[index]
        steps = student.num_timesteps
        done = self.evaluations[student.name]
        if final:
            if done and done[-1]["student_steps"] == steps:
                return None
        elif steps < self._next_eval[index]:
            return None
        while self._next_eval[index] <= steps:
            self._next_eval[index] += self.config.eval_freq
        result = student.evaluate(self.config.eval_episodes)
        row = {
            "student_steps": float(steps),
            # The paper's x-axis for DPD: both students' steps (each student's steps x number of learners).
            "total_env_steps": float(steps * len(self.students)),
            "mean_return": result.mean_return,
            "std_return": result.std_return,
            "mean_length": result.mean_length,
            "time_s": self._elapsed_before + time.time() - self._start,
        }
        done.append(row)
        log_file = self._eval_logs[index]
        if log_file is not None:
            log_file.append(row)
        logger = student.model.logger
        logger.record("eval/mean_return", result.mean_return)
        logger.record("eval/std_return", result.std_return)
        logger.record("eval/mean_ep_length", result.mean_length)
        self.log(f"{student.name} {steps:>9d} steps  eval return {result.mean_return:10.2f} ± {result.std_return:.2f}")
        if final:
            self._dump(student)
        return result

    def _dump(self, student: Student) -> None:
        student.model.logger.record("time/total_env_steps", student.num_timesteps * len(self.students))
        student.dump_logs()

    def summary(self, stopped: bool = False) -> dict[str, Any]:
        wall = self._elapsed_before + time.time() - self._start
        learners: dict[str, Any] = {}
        for s in self.students:
            evals = self.evaluations[s.name]
            learners[s.name] = {
                "env_steps": s.num_timesteps,
                "iterations": s.iteration,
                "final_eval_return": evals[-1]["mean_return"] if evals else None,
                "final_eval_std": evals[-1]["std_return"] if evals else None,
                "best_eval_return": max(e["mean_return"] for e in evals) if evals else None,
                "evaluations": len(evals),
                "distill_skipped_empty": self.skipped_empty[s.name],
                "distill_skipped_nonfinite": s.distill_skipped_nonfinite,
            }
        finals = {name: v["final_eval_return"] for name, v in learners.items() if v["final_eval_return"] is not None}
        cfg = self.config
        return {
            "dpd_version": dpd.__version__,
            "status": "stopped_by_callback" if stopped else "finished",
            "env_id": cfg.env_id,
            "algo": cfg.algo,
            "method": cfg.method,
            "seed": cfg.seed,
            "preset": cfg.preset,
            "alpha": cfg.alpha,
            "weighting": cfg.weighting,
            "total_env_steps": self.total_env_steps(),
            "wall_time_s": round(wall, 3),
            "env_steps_per_s": round(self.total_env_steps() / max(wall, 1e-9), 1),
            "best_learner": max(finals, key=lambda k: finals[k]) if finals else None,
            "learners": learners,
        }

    def save(self, run_dir: Path) -> None:
        """Each learner as an SB3 zip (``PPO.load`` opens it) plus its VecNormalize statistics."""
        for s in self.students:
            folder = run_dir / s.name
            folder.mkdir(parents=True, exist_ok=True)
            s.model.save(folder / "model.zip")
            vn = s.vec_normalize
            if vn is not None:
                vn.save(str(folder / "vecnormalize.pkl"))

    def close(self) -> None:
        for log in self._eval_logs:
            if log is not None:
                log.close()
        for s in self.students:
            s.close()


class _StopSignals:
    """The first Ctrl-C / SIGTERM asks the loop to checkpoint and stop at the end of the round; a second Ctrl-C
    interrupts at once. Only in the main thread (signal handlers cannot be set elsewhere)."""

    def __init__(self, trainer: DPDTrainer) -> None:
        self.trainer = trainer
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.trainer._stop_signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.trainer._stop_signal = signal.Signals(signum).name
        self.trainer.log(f"dpd: {self.trainer._stop_signal}: stopping after this round (Ctrl-C again to abort now)")

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


class _Progress:
    """One progress bar over the total env steps (rich), or nothing."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled, self.total = enabled, total
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("env steps"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True
            )
            self._progress.start()
            self._task = self._progress.add_task("train", total=self.total)
        return self

    def update(self, completed: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=completed)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


def train(
    config: TrainConfig,
    out: str | Path | None = None,
    *,
    overwrite: bool = False,
    callbacks: CallbackFactory | None = None,
    progress_bar: bool = False,
    log: LogFn | None = None,
    verbose: int = 0,
) -> dict[str, Any]:
    """Train a DPD pair (``config.method == "dpd"``) or the vanilla baseline, and return the run summary.

    The config is resolved and validated first; nothing is written before that succeeds. With ``out``, the
    run folder receives ``config.yaml``, per-learner logs and models, and finally ``summary.json``.
    Raises :class:`TrainingInterrupted` after Ctrl-C / SIGTERM (a checkpoint is written first, see :func:`resume`).
    """
    resolved = config.resolve()
    lock = None
    run_dir = None
    if out is not None:
        run_dir, lock = create_run_dir(out, overwrite)
        write_yaml(run_dir / CONFIG_FILE, resolved.to_dict())
    if log is not None:
        where = f" -> {run_dir}" if run_dir is not None else ""
        log(f"dpd: training {resolved.method} {resolved.algo} on {resolved.env_id}, {resolved.total_steps} env steps{where}")
    try:
        trainer = DPDTrainer(resolved, run_dir, callbacks=callbacks, progress_bar=progress_bar, log=log,
                             verbose=verbose)
        try:
            return trainer.learn()
        finally:
            trainer.close()
    finally:
        if lock is not None:
            lock.release()


def resume(
    run: str | Path,
    *,
    callbacks: CallbackFactory | None = None,
    progress_bar: bool = False,
    log: LogFn | None = None,
    verbose: int = 0,
) -> dict[str, Any]:
    """Continue a run from its last checkpoint (``RUN/checkpoint.pt``) to its budget; returns the summary."""
    from dpd.loading import read_run_config
    from dpd.training.checkpoint import CHECKPOINT_FILE, load_checkpoint
    from dpd.training.run_dir import RunLock

    run_dir = Path(run)
    if not run_dir.is_dir():
        raise DPDUserError(f"--resume {run_dir}: no such run folder")
    config = read_run_config(run_dir)
    if (run_dir / SUMMARY_FILE).is_file():
        raise DPDUserError(f"{run_dir} has finished (summary.json exists); nothing to resume")
    lock = RunLock(run_dir).acquire()
    try:
        state = load_checkpoint(run_dir / CHECKPOINT_FILE)
        if state.get("config") != config.to_dict():
            raise DPDUserError(f"{run_dir}: checkpoint.pt and config.yaml disagree; the run folder was edited")
        resolved = config.resolve()
        trainer = DPDTrainer(resolved, run_dir, callbacks=callbacks, progress_bar=progress_bar, log=log,
                             verbose=verbose, resume_state=state)
        try:
            return trainer.learn()
        finally:
            trainer.close()
    finally:
        lock.release()


__all__ = ["DPDTrainer", "TrainingDiverged", "TrainingInterrupted", "resume", "train"]
