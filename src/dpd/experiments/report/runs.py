"""A report's runs: the trials of one or several sweep folders, their state, curves and the pair's log."""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dpd.config import ResolvedConfig
from dpd.errors import DPDUserError
from dpd.experiments.sweep import SweepSpec, expand, trial_status
from dpd.names import (
    CONFIG_FILE,
    ERROR_FILE,
    EVAL_FILE,
    PROGRESS_FILE,
    RUNS_DIR,
    STUDENTS,
    SUMMARY_FILE,
    SWEEP_FILE,
    VANILLA,
    Log,
)
from dpd.run_files import read_evaluations, read_summary_file, read_yaml

#: the table row of vanilla cut at half its budget (the same OWN env steps as each DPD student)
HALF = "at half its steps"


#: the control that every DPD variant is compared with (the pair without distillation)
INDEPENDENT = "independent"


PAIR_STATS = {"students_mean": "students' mean", "better": "better student", "worse": "worse student"}


def file_safe(name: str) -> str:
    """``name`` as one file-name part: an env id such as ``mod:ns/Env-v0`` carries ':' and '/'."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


@dataclass
class Run:
    name: str
    status: str
    env_id: str = ""
    algo: str = ""
    variant: str = ""
    seed: int = 0
    summary: dict[str, Any] = field(default_factory=dict)
    #: learner -> (total_env_steps (K,), mean_return (K,))
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    #: student -> (total_env_steps (K,), the pair's action distance on the peer's window before each phase (K,))
    distances: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    #: student -> distillation optimiser steps it took over the run (the sum of ``distill/phase_steps``)
    distill_steps: dict[str, float] = field(default_factory=dict)
    error: str = ""

    def final_distance(self) -> float:
        """The pair's action distance at its last measurement, mean of both students' (NaN if never measured)."""
        last = [ys[-1] for _, ys in self.distances.values() if len(ys)]
        return float(np.mean(last)) if last else float("nan")

    def metric(self, learner: str, kind: str) -> float:
        """``final`` | ``mean`` | ``max`` evaluation return of one learner (``better``: the better student)."""
        if learner == "better":
            return max(self.metric(s, kind) for s in STUDENTS)
        if learner == "worse":
            return min(self.metric(s, kind) for s in STUDENTS)
        if learner == "students_mean":
            return float(np.mean([self.metric(s, kind) for s in STUDENTS]))
        if learner == HALF:  # vanilla's evaluations up to half its budget: as many own env steps as a DPD student
            x, y = self.curves[VANILLA]
            y = y[x <= x[-1] / 2]
            return float({"final": y[-1], "mean": y.mean(), "max": y.max()}[kind])
        y = self.curves[learner][1]
        return float({"final": y[-1], "mean": y.mean(), "max": y.max()}[kind])


def read_spec(sweep_dir: Path) -> SweepSpec:
    if not (sweep_dir / SWEEP_FILE).is_file():
        raise DPDUserError(f"{sweep_dir} is not a sweep folder (no {SWEEP_FILE}); run dpd sweep first")
    return SweepSpec.from_dict(read_yaml(sweep_dir / SWEEP_FILE))  # a damaged file: one-line DPDUserError


#: what makes runs of two sweeps comparable: the same budget, hyperparameters and evaluation
COMPARABLE = ("total_steps", "preset", "overrides")
#: overrides that change what a run records, not how it trains: two sweeps that differ only in them are comparable
RECORDING_ONLY = ("record_sim_states=",)


def comparable(spec: SweepSpec, key: str) -> Any:
    """``spec``'s value of a :data:`COMPARABLE` key, its overrides without the :data:`RECORDING_ONLY` ones."""
    value = getattr(spec, key)
    if key == "overrides":
        return [o for o in value if not (isinstance(o, str) and o.replace(" ", "").startswith(RECORDING_ONLY))]
    return value


def load_sweeps(sweep_dirs: Sequence[Path]) -> tuple[list[Run], SweepSpec]:
    """The runs of one or several sweep folders as one list (in folder order), and the first folder's spec.

    The folders must agree on ``COMPARABLE`` (one-line DPDUserError naming the key otherwise) and no trial may be in
    two of them: the same run counted twice would shrink every interval. A trial still *pending* (no folder) in one
    sweep and trained in another enters once, from the other: one sweep's trials split across two folders (two
    machines, or two cores, each training part of them) are reported as the one sweep they are."""
    specs = [read_spec(d) for d in sweep_dirs]
    for d, spec in zip(sweep_dirs[1:], specs[1:], strict=True):
        for key in COMPARABLE:
            if comparable(spec, key) != comparable(specs[0], key):
                raise DPDUserError(f"{d} and {sweep_dirs[0]} differ in {key} ({getattr(spec, key)!r} vs "
                                   f"{getattr(specs[0], key)!r}); report only sweeps run with the same {key}")
    runs: dict[str, Run] = {}  # in folder order (a pending placeholder keeps its place when a folder fills it)
    where: dict[str, Path] = {}
    for d, spec in zip(sweep_dirs, specs, strict=True):
        for run in load_runs(d, spec):
            seen = runs.get(run.name)
            if seen is not None and run.status == "pending":
                continue
            if seen is not None and seen.status != "pending":
                raise DPDUserError(f"{run.name} is in both {where[run.name]} and {d}; a run may enter a report once")
            where[run.name] = d
            runs[run.name] = run
    return list(runs.values()), specs[0]


def load_runs(sweep_dir: Path, spec: SweepSpec | None = None) -> list[Run]:
    """Every trial of the sweep (from sweep.yaml, unless its ``spec`` was read already) with its state; finished
    ones with their curves."""
    spec = spec or read_spec(sweep_dir)
    runs: list[Run] = []
    for trial in expand(spec, check_env=False):  # a report reads folders: it never imports an env's module
        folder = sweep_dir / RUNS_DIR / trial.name
        run = Run(trial.name, trial_status(folder), trial.config.env_id, trial.config.algo,
                  trial.label, trial.config.seed)
        if run.status == "failed":
            lines = (folder / ERROR_FILE).read_text(errors="replace").strip().splitlines()
            run.error = lines[-1] if lines else "(no error text)"
        if run.status == "finished":
            try:
                config = ResolvedConfig.from_dict(read_yaml(folder / CONFIG_FILE), what=str(folder / CONFIG_FILE))
                run.summary = read_summary_file(folder / SUMMARY_FILE)
                rows_of = {learner: read_evaluations(folder / learner / EVAL_FILE) for learner in config.learner_names}
            except (DPDUserError, OSError) as exc:
                raise DPDUserError(f"{folder} is damaged ({exc}); delete that run folder and run the sweep again to redo"
                                   " it") from None
            for learner in config.learner_names:
                rows = rows_of[learner]
                if not rows:
                    raise DPDUserError(f"{folder / learner / EVAL_FILE} has no evaluation; was eval_freq 0?")
                run.curves[learner] = (np.array([r["total_env_steps"] for r in rows]),
                                       np.array([r["mean_return"] for r in rows]))
                if learner != VANILLA:
                    xs, ys, steps = _pair_log(folder / learner / PROGRESS_FILE)
                    run.distances[learner], run.distill_steps[learner] = (xs, ys), steps
        runs.append(run)
    return runs


def _pair_log(progress: Path) -> tuple[np.ndarray, np.ndarray, float]:
    """(total env steps, pair/action_distance) of the rows of a student's progress.csv that carry a distance, and
    the distillation optimiser steps the student took (the sum of ``distill/phase_steps``)."""
    xs, ys, steps = [], [], 0.0
    try:
        with open(progress, newline="") as fh:
            for row in csv.DictReader(fh):
                d, x, n = row.get(Log.PAIR_DISTANCE), row.get(Log.TOTAL_STEPS), row.get(Log.PHASE_STEPS)
                if d and x:
                    xs.append(float(x))
                    ys.append(float(d))
                steps += float(n) if n else 0.0
    except (OSError, ValueError, csv.Error):
        pass
    return np.array(xs), np.array(ys), steps


def arm_order(variants: set[str]) -> list[str]:
    """Arms in the order tables and figures show them: vanilla, the independent pair, then the DPD arms by name."""
    first = {"vanilla": 0, INDEPENDENT: 1}
    return sorted(variants, key=lambda v: (first.get(v, 2), v))
