"""Several runs trained as one JAX pack (``engine="jax"``): ``dpd sweep --engine jax`` hands each task-and-arm's seeds
here, and they train in one process, their learners stepped together (:class:`dpd.training.pack_learner.PackGroup`,
:func:`dpd.training.trainer.learn_together`).

Each run keeps its own folder, lock, checkpoints and summary, exactly as if trained alone (``dpd train --engine jax``
of the same config writes the same numbers, bit for bit: a learner's results depend neither on its pack-mates nor on
the pack's size, :mod:`dpd.pack.batching`). Runs that resume go
together where their checkpoints are at the same step (the usual case: a sweep stopped at one moment), and a fresh
run never joins a resumed one (a pack steps all its learners in lock-step from one step count); those packs train
one after the other, and a stop (Ctrl-C / SIGTERM) ends the call: the pack it reached checkpoints as one run would,
and no later pack starts (their runs keep the checkpoints they had).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dpd.config import ResolvedConfig
from dpd.errors import DPDUserError, TrainingInterrupted
from dpd.names import ERROR_FILE
from dpd.run_files import RunLock, atomic_write_text
from dpd.training.signals import StopSignals
from dpd.training.trainer import DPDTrainer, learn_together, new_run_folder, open_checkpoint, pack_stop_announcer

LogFn = Callable[[str], None]
#: what happened to one run: its summary, or the exception that ended it
Outcome = dict[str, Any] | Exception


def train_together(runs: list[tuple[ResolvedConfig, Path, bool]], log: LogFn | None = None) -> list[Outcome]:
    """Train (``resume`` False: a new folder, replacing an unfinished one) or resume (True) each ``(config, run_dir,
    resume)``; the configs differ only by seed. Returns one outcome per run, in order; one run's failure to open
    (a damaged checkpoint) is its own outcome, a failure of a pack is every one of its runs'."""
    outcomes: dict[int, Outcome] = {}
    fresh = [k for k, (_, _, resume) in enumerate(runs) if not resume]
    opened: dict[int, tuple[ResolvedConfig, dict[str, Any], RunLock]] = {}
    for k, (config, run_dir, resume) in enumerate(runs):
        if resume:
            try:
                opened[k] = open_checkpoint(run_dir, env=config.env_id)  # the sweep named the env: trusted
            except Exception as exc:
                outcomes[k] = exc
    by_step: dict[Any, list[int]] = defaultdict(list)
    for k, (_, state, _) in opened.items():
        by_step[_learner_steps(state)].append(k)
    groups = ([fresh] if fresh else []) + list(by_step.values())
    # One stop handler for the whole call: a signal while a pack trains, or between two packs, must also keep the
    # later packs from starting (each would set up, load its replay buffers and compile before it heard the stop).
    with StopSignals(pack_stop_announcer(log or (lambda _msg: None))) as signals:
        for group in groups:
            stopped = signals.name or next((o.signal_name for o in outcomes.values()
                                            if isinstance(o, TrainingInterrupted)), None)
            if stopped is not None:  # only resumed runs come after the first pack: their checkpoints stand
                for k in group:
                    _, state, lock = opened[k]
                    lock.release()
                    steps = (_learner_steps(state) or 0) * len(state["students"])
                    outcomes[k] = TrainingInterrupted(stopped, steps, runs[k][1], during_setup=True)
                continue
            outcomes.update(_train_group(runs, group, opened, log, signals))
    return [outcomes[k] for k in range(len(runs))]


def _learner_steps(state: dict[str, Any]) -> int | None:
    """The env steps each learner of a run's checkpoint has taken (its pack's step count); None if it does not say."""
    first = state["students"][0]
    return first.get("pack", {}).get("pack", {}).get("num_timesteps") if isinstance(first, dict) else None


def _train_group(runs: list[tuple[ResolvedConfig, Path, bool]], group: list[int],
                 opened: dict[int, tuple[ResolvedConfig, dict[str, Any], RunLock]], log: LogFn | None,
                 signals: StopSignals) -> dict[int, Outcome]:
    from dpd.training.pack_learner import PackGroup

    locks: dict[int, RunLock] = {k: opened[k][2] for k in group if k in opened}
    trainers: list[DPDTrainer] = []
    configs: list[ResolvedConfig] = []
    dirs: list[Path] = []
    states: list[dict[str, Any] | None] = []
    built = False
    try:
        for k in group:
            config, run_dir, resume = runs[k]
            if resume:
                config, state, _ = opened[k]
                states.append(state)
            else:
                run_dir, locks[k] = new_run_folder(config, run_dir, overwrite=True)
                states.append(None)
            configs.append(config)
            dirs.append(run_dir)
        try:
            pack = PackGroup(configs, dirs, states, log=log)
        except BaseException:
            for k in group:  # nothing trained: a replaced unfinished run comes back
                if not runs[k][2] and k in locks:
                    locks[k].restore_replaced()
            raise
        built = True
        for k in group:
            if not runs[k][2]:
                locks[k].keep_new()
        per_run = pack.per_run
        for j, (cfg, folder, resume_state) in enumerate(zip(configs, dirs, states, strict=True)):
            trainers.append(DPDTrainer(cfg, folder, log=log, resume_state=resume_state,
                                       learners=list(pack.views[j * per_run:(j + 1) * per_run])))
        results = learn_together(trainers, log, signals)
        return dict(zip(group, results, strict=True))
    except Exception as exc:
        if isinstance(exc, DPDUserError) and built:  # an env fault mid-run: each folder says so (a sweep retries it next time)
            for run_dir in dirs:
                if run_dir.is_dir():
                    atomic_write_text(run_dir / ERROR_FILE, f"{exc}\n")
        return dict.fromkeys(group, exc)
    finally:
        for trainer in trainers:
            trainer.close()
        for lock in locks.values():
            lock.release()


__all__ = ["Outcome", "train_together"]
