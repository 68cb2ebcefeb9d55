"""One learner of a run: a Student plus its run-time bookkeeping (evaluation schedule and log, log rows, counters).

:class:`Learner` implements the learner interface (:class:`dpd.training.interface.LearnerInterface`) that the trainer
calls; the parallel trainer drives the very same class inside a worker process (:mod:`dpd.training.parallel`), so
both modes share every line of per-learner logic. Every method of the interface runs inside the learner's own
random stream (:func:`_in_own_stream`, the one place a learner's stream is swapped in and out).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger

from dpd.config import ResolvedConfig, require_resolved
from dpd.distillation import PhaseResult
from dpd.names import WINDOW_FILE, Log
from dpd.state import RandomStream, check_like
from dpd.students.base import PeerBatch, Student
from dpd.students.evaluator import Evaluator
from dpd.students.factory import build_student, eval_seed
from dpd.training import logs
from dpd.training.record import LearnerRecord, model_files

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


class Learner(LearnerRecord):
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
        super().__init__(require_resolved(config, "Learner"), index, run_dir, log)
        folder = self.folder
        kept = logs.keep_rows(run_dir / self.name, resume_state["log_rows"]) if (
            resume_state is not None and run_dir is not None) else None
        #: this learner's own stream of the global generators: it starts where SB3's constructor seeds them
        self.random = RandomStream()
        with self.random:
            self.student: Student = build_student(config, index, str(folder) if folder else None, verbose)
        if kept is not None and resume_state is not None:
            logs.restore_rows(self.student, kept, int(resume_state["model"]["num_timesteps"]), folder)
        self.evaluator = Evaluator(config.env_id, eval_seed(config, index))
        self._callbacks = callbacks
        self._resume = resume_state
        self.open_eval_log()

    @property
    def num_timesteps(self) -> int:
        return self.student.num_timesteps

    @property
    def logger(self) -> Logger:
        return self.student.model.logger

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
        self.load_record(st["learner"])
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
        """The pair on the whole peer window before the phase, and what sized the phase."""
        logger = self.logger
        self.log_pair(result.pair.action_distance, result.pair.xi_mean, result.pair.peer_better_frac, result.steps)
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
    def run_evaluation(self, steps: int) -> tuple[float, float, float]:
        result = self.evaluator.evaluate(self.student.model, self.student.train_env, self.config.eval_episodes)
        return result.mean_return, result.std_return, result.mean_length

    def dump(self) -> None:
        self.student.model.logger.record(Log.TOTAL_STEPS, self.num_timesteps * self.n_learners)
        self.student.dump_logs()

    def counts(self) -> tuple[int, int, int]:
        distiller = self.student.distiller
        if distiller is None:
            return self.student.iteration, 0, 0
        return self.student.iteration, distiller.skipped_nonfinite, distiller.skipped_zero_weight

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
        st["learner"] = self.record_state()
        st["log_rows"] = logs.count_rows(self.folder) if self.folder else {}
        st["rng"] = rng_state()  # the learner's own stream (swapped in: this is a method of the interface)
        return st

    @_in_own_stream
    def save(self, folder: Path | None = None) -> None:
        """The learner as an SB3 zip (``PPO.load`` opens it) plus its VecNormalize statistics, into ``folder``
        (default: the learner's folder); snapshots kept in memory (a run without a folder) go with it."""
        self.save_files(folder, self._files(window=False))

    def _files(self, window: bool) -> dict[str, bytes]:
        """The learner's files as bytes: model.zip, the VecNormalize pickle (for SB3 users) and its JSON (what dpd
        reads), and with ``window`` its recent-state window (window.npz: what the calibration of xi restores)."""
        import io

        import numpy as np

        files = model_files(self.student.model, self.student.vec_normalize)
        if window:
            recorder = self.student.recorder
            arrays: dict[str, np.ndarray] = {**recorder.recent_window(), "return_std": np.asarray(recorder.return_std),
                                             "gamma": np.asarray(recorder.gamma)}
            buffer = io.BytesIO()
            np.savez(buffer, **arrays)  # type: ignore[arg-type]
            files[WINDOW_FILE] = buffer.getvalue()
        return files

    def snapshot_files(self) -> dict[str, bytes]:
        return self._files(window=True)

    def close(self) -> None:
        self.close_record()
        self.evaluator.close()
        self.student.close()
