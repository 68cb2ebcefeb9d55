"""One learner of a run: a Student plus its run-time bookkeeping (evaluation schedule and log, log rows, counters).

:class:`Learner` implements the learner interface (:class:`dpd.training.interface.LearnerInterface`) that the trainer
calls; the parallel trainer drives the very same class inside a worker process (:mod:`dpd.training.parallel`), so
both modes share every line of per-learner logic. Every method of the interface runs inside the learner's own
random stream (:func:`_in_own_stream`, the one place a learner's stream is swapped in and out).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import torch as th
from stable_baselines3.common.callbacks import BaseCallback

from dpd.config import ResolvedConfig, require_resolved
from dpd.distillation import PhaseResult
from dpd.names import EVAL_FILE, MODEL_FILE, SNAPSHOT_DIR, VECNORMALIZE_JSON, VECNORMALIZE_PICKLE, WINDOW_FILE, Log
from dpd.run_files import EvalLog, check_evaluation_rows
from dpd.state import RandomStream, check_like
from dpd.students.base import PeerBatch, Student
from dpd.students.evaluator import Evaluator
from dpd.students.factory import build_student, eval_seed
from dpd.training import logs

CallbackFactory = Callable[[str], BaseCallback | list[BaseCallback] | None]
LogFn = Callable[[str], None]

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _in_own_stream(method: Callable[Concatenate[Learner, _P], _R]) -> Callable[Concatenate[Learner, _P], _R]:
    """A method of the learner interface, run inside the learner's own random stream (:class:`RandomStream`): it
    draws exactly what the learner would draw alone, whatever ran before it in this process. Typed: a call of the
    wrapped method is checked as a call of the method."""

    @functools.wraps(method)
    def in_own_stream(self: Learner, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self.random:
            return method(self, *args, **kwargs)

    return in_own_stream


class Learner:
    """Learner ``index`` of ``config`` (``names.STUDENTS[index]``, or ``names.VANILLA``): the learner interface
    (:class:`dpd.training.interface.LearnerInterface`) over one Student, each of its methods inside the learner's own
    random stream.

    :param resume_state: this learner's part of a checkpoint (its logs are then cut back to the checkpoint).
    """

    def __init__(
        self,
        config: ResolvedConfig,
        index: int,
        run_dir: Path | None,
        verbose: int = 0,
        resume_state: dict[str, Any] | None = None,
        callbacks: CallbackFactory | None = None,
        log: LogFn | None = None,
    ) -> None:
        self.config = require_resolved(config, "Learner")
        self.name = config.learner_names[index]
        self.n_learners = len(config.learner_names)
        self.log: LogFn = log or (lambda _msg: None)
        folder = run_dir / self.name if run_dir is not None else None
        kept = logs.keep_rows(run_dir / self.name, resume_state["log_rows"]) if (
            resume_state is not None and run_dir is not None) else None
        #: this learner's own stream of the global generators: it starts where SB3's constructor seeds them
        self.random = RandomStream()
        with self.random:
            self.student: Student = build_student(config, index, str(folder) if folder else None, verbose)
        if kept is not None and resume_state is not None:
            logs.restore_rows(self.student, kept, int(resume_state["model"]["num_timesteps"]), folder)
        self.folder = folder
        self.evaluator = Evaluator(config.env_id, eval_seed(config, index))
        self._callbacks = callbacks
        self._resume = resume_state
        self.eval_log = EvalLog(folder / EVAL_FILE) if folder is not None else None
        self.evaluations: list[dict[str, float]] = []
        self.skipped_empty = 0
        self.next_eval = 0
        self.snapshots_taken = 0
        #: snapshots of a run without a folder: steps -> files (written by save)
        self.kept_snapshots: dict[int, dict[str, bytes]] = {}
        self._t0 = time.time()
        self.elapsed_before = 0.0

    @property
    def num_timesteps(self) -> int:
        return self.student.num_timesteps

    # ------------------------------------------------------------------ lifecycle
    @_in_own_stream
    def setup(self) -> int:
        """Start (evaluating the untrained policy at step 0), or continue from the resume state. Returns steps."""
        s, per_learner = self.student, self.config.steps_per_learner
        callback = self._callbacks(self.name) if self._callbacks else None
        if self._resume is None:
            s.setup(per_learner, callback)
            self.maybe_evaluate()
            self.dump()
            return s.num_timesteps
        st = self._resume
        # damage of any kind found now, not in a later round; the replay buffer not copied for the comparison (a
        # fresh one is as large as the run's: gigabytes for Humanoid): a wrong one fails its own load, in one line
        check_like(self._state(replay_buffer=False), st, self.name)
        s.load_model_state(st)
        s.setup(per_learner, callback, resume=True)
        s.load_env_state(st)
        self.evaluator.load_state(st, s.train_env)
        if st.get("replay_buffer") is not None:
            s.load_replay_buffer_state(st["replay_buffer"])
        b = st["learner"]
        self.next_eval, self.skipped_empty = int(b["next_eval"]), int(b["skipped_empty"])
        self.snapshots_taken = int(b.get("snapshots_taken", 0))
        self.evaluations = check_evaluation_rows(b["evaluations"])
        self.elapsed_before, self._t0 = float(b["elapsed_s"]), time.time()
        if "rng" in st:  # the learner's own stream as it was (kept by the stream when this method returns)
            from dpd.state import set_rng_state

            set_rng_state(st["rng"])
        self._resume = None
        return s.num_timesteps

    @_in_own_stream
    def iterate(self) -> bool:
        """Collect + RL update; False: a callback asked to stop."""
        ok = self.student.iterate()
        if not ok:
            self.log(f"{self.name}: a callback stopped training at {self.num_timesteps} steps")
        return ok

    @_in_own_stream
    def peer_batch(self) -> PeerBatch | None:
        return self.student.peer_batch()

    @_in_own_stream
    def distill_due(self) -> bool:
        """Whether a distillation phase (independent pair: a measurement) follows this iteration."""
        return self.student.distill_due()

    @_in_own_stream
    def distill(self, batch: PeerBatch | None) -> int:
        """Distill toward the peer's batch (None: the peer has not collected yet, skipped and counted).
        Returns the current streak of non-finite distillation batches."""
        logger = self.student.model.logger
        if batch is None:
            self.skipped_empty += 1
            logger.record(Log.SKIPPED_EMPTY, self.skipped_empty)
            distiller = self.student.distiller
            return distiller.nonfinite_streak if distiller is not None else 0
        result = self.student.distill(batch)
        self._log_pair(result)
        self._log_distill(result)
        return result.nonfinite_streak

    @_in_own_stream
    def measure(self, batch: PeerBatch | None) -> int:
        """The ``independent`` control: log the pair's statistics on the peer's batch, take no step."""
        if batch is not None:
            self._log_pair(self.student.measure(batch))
        return 0

    def _log_pair(self, result: PhaseResult) -> None:
        """The pair on the whole peer window before the phase: comparable between dpd and independent runs."""
        logger = self.student.model.logger
        logger.record(Log.PAIR_DISTANCE, result.pair.action_distance)
        logger.record(Log.PAIR_XI_MEAN, result.pair.xi_mean)
        logger.record(Log.PAIR_PEER_BETTER, result.pair.peer_better_frac)
        logger.record(Log.PHASE_STEPS, result.steps)
        if result.strength is not None:
            logger.record(Log.STRENGTH, result.strength)
        if result.gate is not None:
            logger.record(Log.GATE, result.gate)
        if result.offsets is not None:
            logger.record(Log.OFFSET_OWN, result.offsets[0])
            logger.record(Log.OFFSET_PEER, result.offsets[1])

    def _log_distill(self, result: PhaseResult) -> None:
        logger = self.student.model.logger
        if result.stats is not None:
            for key, value in result.stats.as_dict().items():
                logger.record(Log.DISTILL + key, value)
        logger.record(Log.SKIPPED_NONFINITE, result.skipped_nonfinite)
        logger.record(Log.SKIPPED_ZERO_WEIGHT, result.skipped_zero_weight)
        logger.record(Log.XI_SCALE, result.xi_divisor)
        # Histogram of the weights over the whole peer window (TensorBoard only): shows saturation at the clip.
        weights = result.window_weights.cpu()
        weights = weights[th.isfinite(weights)]
        if weights.numel():
            logger.record(Log.WEIGHTS, weights, exclude=("stdout", "log", "json", "csv"))

    @_in_own_stream
    def after_iteration(self) -> int:
        """Evaluate if due, keep a snapshot if due, write the iteration's log row. Returns steps."""
        self.maybe_evaluate()
        self.maybe_snapshot()
        self.dump()
        return self.num_timesteps

    @_in_own_stream
    def finish(self) -> dict[str, Any]:
        """Final evaluation (unless one ran at this step), end callbacks; returns the summary entry."""
        self.maybe_evaluate(final=True)
        self.maybe_snapshot(final=True)
        self.student.finish()
        return self.summary_entry()

    # ------------------------------------------------------------------ evaluation & logs
    def maybe_evaluate(self, final: bool = False) -> None:
        cfg, student = self.config, self.student
        if cfg.eval_freq == 0:
            return
        steps = student.num_timesteps
        if final:
            if self.evaluations and self.evaluations[-1]["student_steps"] == steps:
                return
        elif steps < self.next_eval:
            return
        while self.next_eval <= steps:
            self.next_eval += cfg.eval_freq
        result = self.evaluator.evaluate(student.model, student.train_env, cfg.eval_episodes)
        row = {
            "student_steps": float(steps),
            # The paper's x-axis for DPD: both students' steps (each student's steps x number of learners).
            "total_env_steps": float(steps * self.n_learners),
            "mean_return": result.mean_return,
            "std_return": result.std_return,
            "mean_length": result.mean_length,
            "time_s": self.elapsed(),
        }
        self.evaluations.append(row)
        if self.eval_log is not None:
            self.eval_log.append(row)
        logger = student.model.logger
        logger.record(Log.EVAL_MEAN, result.mean_return)
        logger.record(Log.EVAL_STD, result.std_return)
        logger.record(Log.EVAL_LENGTH, result.mean_length)
        self.log(f"{self.name} {steps:>9d} steps  eval return {result.mean_return:10.2f} ± {result.std_return:.2f}")
        if final:
            self.dump()

    def dump(self) -> None:
        self.student.model.logger.record(Log.TOTAL_STEPS, self.num_timesteps * self.n_learners)
        self.student.dump_logs()

    def elapsed(self) -> float:
        return self.elapsed_before + time.time() - self._t0

    def summary_entry(self) -> dict[str, Any]:
        evals = self.evaluations
        distiller = self.student.distiller
        return {
            "env_steps": self.num_timesteps,
            "iterations": self.student.iteration,
            "final_eval_return": evals[-1]["mean_return"] if evals else None,
            "final_eval_std": evals[-1]["std_return"] if evals else None,
            "best_eval_return": max(e["mean_return"] for e in evals) if evals else None,
            "evaluations": len(evals),
            "distill_skipped_empty": self.skipped_empty,
            "distill_skipped_nonfinite": distiller.skipped_nonfinite if distiller is not None else 0,
            "distill_skipped_zero_weight": distiller.skipped_zero_weight if distiller is not None else 0,
        }

    # ------------------------------------------------------------------ checkpoints and saving
    @_in_own_stream
    def state(self) -> dict[str, Any]:
        """This learner's part of a checkpoint (plain data), its own random state included."""
        return self._state(replay_buffer=self.config.checkpoint_replay_buffer)

    def _state(self, replay_buffer: bool) -> dict[str, Any]:
        from dpd.state import rng_state

        s = self.student
        st = {**s.state_dict(), **self.evaluator.state()}
        if replay_buffer:
            st["replay_buffer"] = s.replay_buffer_state()
        st["learner"] = {"next_eval": self.next_eval, "skipped_empty": self.skipped_empty,
                         "evaluations": self.evaluations, "elapsed_s": self.elapsed(),
                         "snapshots_taken": self.snapshots_taken}
        st["log_rows"] = logs.count_rows(self.folder) if self.folder else {}
        st["rng"] = rng_state()  # the learner's own stream (swapped in: this is a method of the interface)
        return st

    @_in_own_stream
    def save(self, folder: Path | None = None) -> None:
        """The learner as an SB3 zip (``PPO.load`` opens it) plus its VecNormalize statistics, into ``folder``
        (default: the learner's folder); snapshots kept in memory (a run without a folder) go with it."""
        folder = folder or self.folder
        if folder is None:
            return
        self._write(folder, self._files(window=False))
        for steps, files in self.kept_snapshots.items():
            self._write(folder / SNAPSHOT_DIR / str(steps), files)

    def _files(self, window: bool) -> dict[str, bytes]:
        """The learner's files as bytes: model.zip, the VecNormalize pickle (for SB3 users) and its JSON (what dpd
        reads), and with ``window`` its recent-state window (window.npz: what the calibration of xi restores)."""
        import io
        import json
        import pickle

        import numpy as np

        from dpd.envs import normalization_state

        buffer = io.BytesIO()
        self.student.model.save(buffer)
        files = {MODEL_FILE: buffer.getvalue()}
        vn = self.student.vec_normalize
        if vn is not None:
            files[VECNORMALIZE_PICKLE] = pickle.dumps(vn)
            files[VECNORMALIZE_JSON] = (json.dumps(normalization_state(vn), indent=2) + "\n").encode()
        if window:
            recorder = self.student.recorder
            arrays: dict[str, np.ndarray] = {**recorder.recent_window(), "return_std": np.asarray(recorder.return_std),
                                             "gamma": np.asarray(recorder.gamma)}
            buffer = io.BytesIO()
            np.savez(buffer, **arrays)  # type: ignore[arg-type]
            files[WINDOW_FILE] = buffer.getvalue()
        return files

    @staticmethod
    def _write(folder: Path, files: dict[str, bytes]) -> None:
        from dpd.run_files import atomic_write

        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            # each to a temporary name, then renamed: a full disk or a kill never leaves a cut-off file
            atomic_write(folder / name, lambda fh, data=data: fh.write(data), binary=True)  # type: ignore[misc]

    def maybe_snapshot(self, final: bool = False) -> None:
        """Keep a copy of the learner (model, normalisation, recent-state window) in ``snapshots/<steps>/`` when its
        steps reach the next fraction of its budget (``config.snapshots``); ``final``: also every fraction not
        reached (a run stopped early). A run without a folder keeps them in memory until :meth:`save`."""
        fractions = sorted(self.config.snapshots)
        if self.snapshots_taken >= len(fractions):
            return
        steps, budget = self.num_timesteps, self.config.steps_per_learner
        due = sum(1 for fraction in fractions[self.snapshots_taken:] if steps >= fraction * budget or final)
        if due:
            files = self._files(window=True)
            if self.folder is not None:
                self._write(self.folder / SNAPSHOT_DIR / str(steps), files)
            else:
                self.kept_snapshots[steps] = files
            self.snapshots_taken += due

    def close(self) -> None:
        if self.eval_log is not None:
            self.eval_log.close()
        self.evaluator.close()
        self.student.close()
