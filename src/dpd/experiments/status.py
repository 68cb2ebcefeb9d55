"""``dpd status``: where a sweep (or one run) stands, read from its folder without touching it.

For a long sweep running in the background: which trials are finished, which are being trained right now (their run
folder's lock is held) and how far, which stopped part-way (a checkpoint to resume from, or none), which failed and
why, and how many wait. Nothing is written, nothing is locked; it works while the sweep runs and after it stopped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from dpd.errors import DPDUserError, one_line
from dpd.names import CHECKPOINT_FILE, CONFIG_FILE, ERROR_FILE, RUNS_DIR, SUMMARY_FILE, SWEEP_FILE
from dpd.run_files import learner_progress_files, lock_holder, progress_reading, read_yaml

#: the order states are listed and counted in
STATES = ("running", "unfinished", "failed", "finished", "pending")


@dataclass(frozen=True)
class TrialState:
    """One trial (or run) of a sweep, as its folder says."""

    name: str
    #: one of :data:`STATES`; ``unfinished``: stopped part-way (no process holds it)
    state: str
    #: env steps its learners' progress.csv files report (a stopped run resumes from its last checkpoint, which may
    #: be up to one checkpoint interval earlier)
    steps: int
    budget: int
    checkpoint: bool = False
    #: the pid holding the run folder (``running``)
    pid: str | None = None
    #: the last line of error.txt (``failed``: a traceback's last line names the error)
    error: str = ""
    #: env steps per second over the last minutes, its learners together (``running``; None until measurable)
    speed: float | None = None


@dataclass
class SweepState:
    folder: Path
    trials: list[TrialState]
    #: the pid of the ``dpd sweep`` holding the sweep folder, None where none runs it now
    sweep_pid: str | None = None
    counts: dict[str, int] = field(default_factory=dict)


def run_state(run_dir: Path, name: str | None = None, budget: int | None = None) -> TrialState:
    """The state of one run folder (a sweep's trial, or a ``dpd train`` run)."""
    name = name or run_dir.name
    if budget is None:
        budget = _stored_budget(run_dir)
    if not run_dir.is_dir():
        return TrialState(name, "pending", 0, budget)
    readings = [progress_reading(p) for p in learner_progress_files(run_dir)]  # one read a learner
    steps = sum(s or 0 for s, _ in readings)
    checkpoint = (run_dir / CHECKPOINT_FILE).is_file()
    if (run_dir / SUMMARY_FILE).is_file():
        return TrialState(name, "finished", max(steps, budget), budget)
    pid = lock_holder(run_dir)
    if pid is not None:
        return TrialState(name, "running", steps, budget, checkpoint, pid, speed=_speed(readings))
    if (run_dir / ERROR_FILE).is_file():
        lines = _tail(run_dir / ERROR_FILE).strip().splitlines()
        return TrialState(name, "failed", steps, budget, checkpoint, error=one_line(lines[-1][-500:]) if lines else "")
    if not (run_dir / CONFIG_FILE).is_file():
        return TrialState(name, "pending", 0, budget)
    return TrialState(name, "unfinished", steps, budget, checkpoint)


def _speed(readings: list[tuple[int | None, float | None]]) -> float | None:
    """A running run's env steps per second, its learners' speeds summed (they train side by side); None where one
    of them has none yet. ``readings``: each learner's :func:`~dpd.run_files.progress_reading`."""
    speeds = [speed for _, speed in readings]
    if not speeds or any(v is None for v in speeds):
        return None
    return sum(v for v in speeds if v is not None)


def _left(seconds: float) -> str:
    """A duration to come, rounded as a person would say it: ``~40 min``, ``~3.4 h``."""
    return f"~{seconds / 60:.0f} min" if seconds < 5400 else f"~{seconds / 3600:.1f} h"


def _tail(path: Path, size: int = 64 * 1024) -> str:
    """The last ``size`` bytes of a text file (an error.txt may hold a long traceback), '' where unreadable."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, os.fstat(fh.fileno()).st_size - size))
            return fh.read(size).decode("utf-8", errors="replace")
    except OSError:
        return ""


def _stored_budget(run_dir: Path) -> int:
    """config.yaml's total_steps, or 0 (shown as unknown) where the file is missing, damaged or holds no positive
    whole number there (``.inf``, ``-1``, ``1e400``, a list: the folder was edited)."""
    try:
        data = read_yaml(run_dir / CONFIG_FILE)
    except DPDUserError:
        return 0
    value = data.get("total_steps") if isinstance(data, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63 else 0


def sweep_state(folder: Path) -> SweepState:
    """Every trial of the sweep in ``folder`` (its sweep.yaml says which), in the sweep's own order."""
    from dpd.experiments.sweep import SweepSpec, expand

    if not (folder / SWEEP_FILE).is_file():
        raise DPDUserError(f"{folder} holds no sweep ({SWEEP_FILE} missing); give the --out folder of a dpd sweep,"
                           " or a run folder")
    trials = expand(SweepSpec.from_dict(read_yaml(folder / SWEEP_FILE)), check_env=False)
    states = [run_state(folder / RUNS_DIR / t.name, t.name, t.config.total_steps) for t in trials]
    counts = {s: sum(t.state == s for t in states) for s in STATES}
    return SweepState(folder, states, lock_holder(folder), counts)


def describe(t: TrialState) -> str:
    """One line for a trial that is not simply finished or pending."""
    share = f" ({t.steps / t.budget:.0%})" if t.budget else ""
    where = f"{t.steps:,} / {t.budget:,} env steps{share}"
    if t.state == "running":
        pace = ""
        if t.speed:  # None or 0: not measurable yet (its first minutes, or a clock that has not moved)
            pace = f", {t.speed:,.0f} env steps/s"
            if t.budget > t.steps:
                pace += f", {_left((t.budget - t.steps) / t.speed)} left"
        return f"running     {t.name}  {where}{pace}, pid {t.pid}"
    if t.state == "failed":
        return f"failed      {t.name}  {t.error}"
    if t.state == "unfinished":
        resume = ("resumes from its last checkpoint" if t.checkpoint else
                  "no checkpoint: starts again from 0")
        return f"unfinished  {t.name}  {where}; {resume}"
    return f"{t.state:<11} {t.name}"
