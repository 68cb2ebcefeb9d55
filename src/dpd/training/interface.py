"""The learner interface: what the trainer calls on each learner of a run, typed (mypy checks every call).

Two implementations today: :class:`dpd.training.learner.Learner` (a Student plus its evaluation schedule, logs and
checkpoint part, in this process) and :class:`dpd.training.parallel.RemoteLearner` (the same Learner in a process of
its own, behind a pipe: a typed proxy with these very methods). The trainer (:mod:`dpd.training.trainer`, Algorithm
1) sees only this interface.

An engine that trains learners another way (the JAX pack, :mod:`dpd.pack`: N learners of one task stepped together
in one process) plugs in behind the same interface: one object per learner (views on one shared pack are fine), each
method with the meaning documented here. What crosses between two learners is only a :class:`PeerBatch` of plain
NumPy arrays, so a peer may be of any engine. Contract of every call:

- it draws random numbers only from the learner's own stream (a learner's results never depend on its peer's draws
  or on the order of the calls made on other learners; :class:`dpd.state.RandomStream` does this for a Learner);
- it returns plain data (numbers, dicts of plain data, a PeerBatch), so that a learner can live in another process;
- a user's fault (a bad environment) is a :class:`dpd.errors.DPDUserError` with a one-line message.

:func:`dpd.training.parallel.begin` and :func:`dpd.training.parallel.collect` call a method of several learners at
once (a remote learner works while this process does its own part); called directly, a method just runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from dpd.distillation import PeerBatch


class LearnerInterface(Protocol):
    """One learner of a run, as the trainer drives it (Algorithm 1: iterate, distil toward the peer's batch)."""

    #: the learner's name (``dpd.names.STUDENTS`` or ``dpd.names.VANILLA``): its folder and its summary entry
    name: str

    def setup(self) -> int:
        """Start (evaluating the untrained policy at step 0) or continue from the resume state given at
        construction. Returns the learner's env steps."""

    def iterate(self) -> bool:
        """One RL iteration: collect experience in the own env, then the algorithm's update. False: a callback
        asked to stop."""

    def distill_due(self) -> bool:
        """Whether a distillation phase (the independent pair: a measurement) follows this iteration."""

    def peer_batch(self) -> PeerBatch | None:
        """This learner's recent raw states with its own outputs and raw values on them, for its peer; None before
        its first iteration."""

    def distill(self, batch: PeerBatch | None) -> int:
        """One distillation phase toward the peer's batch (None: the peer has not collected yet; skipped and
        counted), logged. Returns the current streak of batches skipped for a non-finite loss."""

    def measure(self, batch: PeerBatch | None) -> int:
        """The independent control: log the pair's statistics on the peer's batch, take no step. Returns 0."""

    def after_iteration(self) -> int:
        """Evaluate and keep a snapshot if due, write the iteration's log row. Returns the learner's env steps."""

    def finish(self) -> dict[str, Any]:
        """Final evaluation and snapshots, end of the callbacks. Returns the learner's summary entry."""

    def save(self, folder: Path | None = None) -> None:
        """The learner's files (the SB3 model zip, its normalisation) into ``folder`` (default: its own)."""

    def state(self) -> dict[str, Any]:
        """This learner's part of a checkpoint, its own random stream included, as plain data."""

    def close(self) -> None:
        """Close the learner's files, environments and (remote) process."""
