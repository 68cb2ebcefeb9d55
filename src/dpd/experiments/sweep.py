"""``dpd sweep``: a grid of runs at one total env-step budget, on a local process pool or a Ray cluster.

The grid is env x algo x variant x seed, where a variant is ``vanilla``, ``independent`` (the pair, never
distilled), a DPD weighting (``dpd`` = exp weighting, for each alpha and each distillation schedule; ``uniform``;
``indicator``), or a named arm of the sweep's ``arms`` (a DPD trial with its own ``--set`` overrides). Every trial is
one call of :func:`run_trial` -> :func:`dpd.training.train`, the same function on both backends. Each trial has its own run
folder under ``SWEEP/runs/``; the state of a trial is read from that folder:

    finished   summary.json exists           (skipped when the sweep is run again)
    failed     error.txt exists              (retried when the sweep is run again)
    unfinished config.yaml but no summary    (started again when the sweep is run again)
    pending    no folder yet
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import itertools
import json
import math
import multiprocessing as mp
import os
import re
import reprlib
import signal
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dpd.config import ResolvedConfig, TrainConfig, apply_overrides, check_known_keys
from dpd.engine import pack_key
from dpd.errors import DPDUserError, machine_error, one_line
from dpd.internals import pool_processes
from dpd.names import (
    BACKENDS,
    CHECKPOINT_FILE,
    CONFIG_FILE,
    DEFAULT_ALGO,
    DEFAULT_ALPHA,
    DEFAULT_PRESET,
    DEFAULT_SCHEDULE,
    ERROR_FILE,
    LOCK_FILE,
    RUNS_DIR,
    STOP_FILE,
    SUMMARY_FILE,
    SWEEP_FILE,
    SWEEP_VARIANTS,
)
from dpd.run_files import Output, RunLock, check_output, check_path_length, read_yaml, run_steps, write_yaml
from dpd.training.signals import ParentWatch, StopSignals

_EXAMPLES = {"envs": "HalfCheetah-v5", "algos": "ppo", "variants": "dpd, vanilla", "schedules": "dense",
             "overrides": "eval_freq=20000"}
_ARM_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,40}$")


@dataclass
class SweepSpec:
    """What a sweep runs. Every trial gets the same ``total_steps`` (the paper's fairness rule)."""

    envs: list[str]
    total_steps: int
    algos: list[str] = field(default_factory=lambda: [DEFAULT_ALGO])
    variants: list[str] = field(default_factory=lambda: ["dpd", "vanilla"])
    alphas: list[float] = field(default_factory=lambda: [DEFAULT_ALPHA])
    #: distillation schedules of the ``dpd`` / ``uniform`` / ``indicator`` variants (``distill_schedule``)
    schedules: list[str] = field(default_factory=lambda: [DEFAULT_SCHEDULE])
    #: named extra variants: arm name -> ``key=value`` overrides on top of a ``dpd`` trial (e.g.
    #: ``{"dense1": ["distill_steps=1"]}``); an arm runs for every alpha and seed
    arms: dict[str, list[str]] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    preset: str = DEFAULT_PRESET
    #: ``key=value`` overrides applied to every trial (as ``dpd train --set``)
    overrides: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> SweepSpec:
        if not isinstance(data, dict):
            raise DPDUserError("a sweep file must be a YAML mapping (envs: [...], total_steps: N, ...)")
        check_known_keys(data, cls, "sweep")
        if "envs" not in data or "total_steps" not in data:
            raise DPDUserError("a sweep file needs at least envs and total_steps")
        spec = cls(**data)
        spec.validate()
        return spec

    def validate(self) -> None:
        """Each key of the right shape (a one-line DPDUserError naming the key otherwise)."""
        def strings(key: str) -> None:
            value = getattr(self, key)
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise DPDUserError(f"sweep key {key} must be a list of strings, e.g. [{_EXAMPLES[key]}]; got {_quote(value)}")

        for key in ("envs", "algos", "variants", "schedules", "overrides"):
            strings(key)
        if not isinstance(self.total_steps, int) or isinstance(self.total_steps, bool) or self.total_steps < 1:
            raise DPDUserError(f"sweep key total_steps must be a positive integer (write 1000000, not 1e6); got"
                               f" {_quote(self.total_steps)}")
        if not isinstance(self.seeds, list) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                                       for v in self.seeds):
            raise DPDUserError(f"sweep key seeds must be a list of non-negative integers, e.g. [0, 1, 2]; got"
                               f" {_quote(self.seeds)}")
        if not isinstance(self.alphas, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                        and math.isfinite(v) for v in self.alphas):
            raise DPDUserError(f"sweep key alphas must be a list of numbers, e.g. [0.1, 1.0]; got {_quote(self.alphas)}")
        if not isinstance(self.preset, str):
            raise DPDUserError(f"sweep key preset must be a string (zoo, paper or none); got {_quote(self.preset)}")
        if not isinstance(self.arms, dict):
            raise DPDUserError(f"sweep key arms must map names to lists of key=value, got {_quote(self.arms)}")
        check_grid_size(self)


#: the most trials one sweep may have. Each trial is a training run (minutes to hours) and its own folder, and the
#: grid is expanded (every config resolved, ~0.4 ms a trial) before anything runs: 10,000 trials take ~4 s to
#: check; a bigger grid is a typo (--seeds 1000000) or several sweeps
MAX_TRIALS = 10_000


def _quote(value: Any, width: int = 80) -> str:
    """``repr(value)`` cut to ``width`` characters for a message (a sweep file's list may be long)."""
    short = reprlib.Repr()  # keyword arguments only from Python 3.12
    short.maxlist = short.maxdict = 8
    short.maxstring = short.maxother = width
    text = short.repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def grid_size(spec: SweepSpec) -> int:
    """How many trials ``spec`` has, counted without expanding it."""
    per_variant = 0
    for variant in spec.variants:
        if variant in ("vanilla", "independent"):
            per_variant += 1
        elif variant in spec.arms:
            per_variant += len(spec.alphas)
        else:
            per_variant += len(spec.schedules) * (len(spec.alphas) if variant == "dpd" else 1)
    return len(spec.envs) * len(spec.algos) * len(spec.seeds) * per_variant


def check_grid_size(spec: SweepSpec) -> None:
    """A one-line DPDUserError for a grid of more than MAX_TRIALS trials, before it is expanded."""
    n = grid_size(spec)
    if n > MAX_TRIALS:
        raise DPDUserError(
            f"this sweep has {n:,} trials ({len(spec.envs):,} env(s) x {len(spec.algos):,} algo(s) x"
            f" {len(spec.seeds):,} seed(s) x the variants, alphas and schedules); dpd sweep runs at most {MAX_TRIALS:,}"
            " (each trial is a training run): split it into several sweeps")


@dataclass(frozen=True)
class Trial:
    name: str
    config: ResolvedConfig
    #: the variant's label in folder names and reports (``vanilla``, ``independent``, ``dpd-a1``, an arm's name ...)
    label: str = ""


def variant_label(config: ResolvedConfig) -> str:
    """``vanilla``, ``independent``, ``dpd-a<alpha>[-<schedule>]``, ``uniform[-<schedule>]``, ``indicator[...]``
    (the name used in folders and reports; the ``dense`` schedule is not named)."""
    if config.method in ("vanilla", "independent"):
        return config.method
    d = config.distill
    label = f"dpd-a{d.alpha:g}" if d.weighting == "exp" else d.weighting
    return label if d.schedule == DEFAULT_SCHEDULE else f"{label}-{d.schedule}"


def _variant_configs(spec: SweepSpec, variant: str) -> list[tuple[str, list[str], dict[str, Any]]]:
    """(label suffix, extra overrides, TrainConfig fields) of each trial of one variant at one env/algo/seed."""
    if variant == "vanilla":
        return [("", [], {"method": "vanilla"})]
    if variant == "independent":
        return [("", [], {"method": "independent"})]
    if variant in spec.arms:
        # the alpha in the label wherever it is not the default: an arm run at alpha 0.1 alone must not share its
        # label (and so its report group) with the same arm at alpha 1 from another sweep
        alphas = spec.alphas
        return [(f"-a{a:g}" if len(alphas) > 1 or a != DEFAULT_ALPHA else "", list(spec.arms[variant]), {"alpha": float(a)})
                for a in alphas]
    weighting = "exp" if variant == "dpd" else variant
    alphas = spec.alphas if variant == "dpd" else spec.alphas[:1]  # alpha only matters for exp weighting
    return [("", [], {"alpha": float(a), "weighting": weighting, "distill_schedule": sched})
            for sched in spec.schedules for a in alphas]


def expand(spec: SweepSpec, check_env: bool = True) -> list[Trial]:
    """All trials of the grid, validated (a bad entry is a user error before anything runs). Ordered task by task,
    and within a task seed by seed: a sweep cut short has whole seeds of every variant of its first tasks rather
    than every seed of a few variants."""
    for name, overrides in spec.arms.items():
        if not isinstance(name, str) or not _ARM_NAME.match(name) or name in SWEEP_VARIANTS:
            raise DPDUserError(f"arm name {_quote(name)}: use letters, digits, '_', '.', '-' (not a built-in variant)")
        if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
            raise DPDUserError(f"arm {_quote(name)}: give a list of key=value strings, e.g. [distill_steps=1]")
    for variant in spec.variants:
        if variant not in SWEEP_VARIANTS and variant not in spec.arms:
            known = _quote(", ".join(SWEEP_VARIANTS + tuple(spec.arms)), 200)
            raise DPDUserError(f"unknown sweep variant {_quote(variant)}; choose from: {known}")
    if not spec.envs or not spec.seeds or not spec.algos or not spec.variants or not spec.schedules:
        raise DPDUserError("a sweep needs at least one env, algo, variant, schedule and seed")
    if len(set(spec.seeds)) != len(spec.seeds):
        raise DPDUserError(f"seeds must be distinct, got {_quote(spec.seeds)}")
    check_grid_size(spec)
    trials: dict[str, Trial] = {}
    checked: set[tuple[str, str]] = set()
    for env, algo, seed, variant in itertools.product(spec.envs, spec.algos, spec.seeds, spec.variants):
        for suffix, extra, fields in _variant_configs(spec, variant):
            base = TrainConfig(env_id=env).with_values(algo=algo, total_steps=spec.total_steps, seed=seed,
                                                       preset=spec.preset, alpha=float(spec.alphas[0]))
            asked = apply_overrides(base.with_values(**fields), [*spec.overrides, *extra])
            config = asked.resolve(check_env=check_env and (env, algo) not in checked)
            checked.add((env, algo))
            label = f"{variant}{suffix}" if variant in spec.arms else variant_label(config)
            name = f"{env.replace(':', '_')}__{algo}__{label}__s{seed}"
            if name in trials:
                raise DPDUserError(f"two trials of this sweep would share the folder {name} (alphas or arms that "
                                   "print alike?); make them distinct")
            trials[name] = Trial(name, config, label)
    return list(trials.values())


# ---------------------------------------------------------------------- the trial function (both backends)
def run_trial(config_dict: dict[str, Any], run_dir: str) -> dict[str, Any]:
    """Train one trial into ``run_dir``; on failure write ``error.txt`` there and return the error.

    A trial stopped by SIGTERM / Ctrl-C (e.g. a sweep cut at a deadline) leaves its checkpoint; the next run of
    the sweep resumes it from there (``resume``) instead of starting it again. Runs in a worker process (pool)
    or a Ray worker: one torch thread (``config.torch_threads``).
    """
    from dpd.training import resume, train

    path = Path(run_dir)
    before = _before_trial(path)
    if before is not None:
        return before
    try:
        config = TrainConfig.from_dict(config_dict)  # a trial's resolved config, or any config: train resolves it
        if (path / CHECKPOINT_FILE).is_file() and _same_trial(path, config):
            summary = resume(path, env=config.env_id)  # the sweep file named the env: trusted
        else:  # an unfinished earlier attempt without a checkpoint starts again from scratch
            summary = train(config, path, overwrite=True)
        return _outcome(path, summary)
    except Exception as exc:  # a failed trial is reported, never fatal for the sweep; a stop: its checkpoint
        return _outcome(path, exc)


def _before_trial(path: Path) -> dict[str, Any] | None:
    """A trial's outcome without training it (the sweep is stopping; it finished meanwhile), or None: it trains
    (an earlier failure forgotten)."""
    if (path.parent / STOP_FILE).is_file():  # the sweep is stopping: do not start (the next sweep runs it)
        return {"status": "not_started", "error": "not started: the sweep was stopping"}
    if (path / SUMMARY_FILE).is_file():  # finished meanwhile (never train a finished trial again)
        try:
            return {"status": "finished", "summary": json.loads((path / SUMMARY_FILE).read_text())}
        except (OSError, ValueError):
            pass
    (path / ERROR_FILE).unlink(missing_ok=True)  # a retry: forget the earlier failure
    return None


def _outcome(path: Path, result: dict[str, Any] | Exception) -> dict[str, Any]:
    """A trained trial's outcome from its summary or the exception that ended it."""
    from dpd.errors import TrainingInterrupted

    if isinstance(result, dict):
        return {"status": "finished", "summary": result}
    if isinstance(result, TrainingInterrupted):  # checkpoint written: "unfinished", resumed next time
        if result.finished:  # the stop came in the last phase, which ran to its end
            return {"status": "finished", "summary": json.loads((path / SUMMARY_FILE).read_text())}
        if not result.resumable:  # stopped while setting up, before its first step: the next sweep starts it afresh
            return {"status": "not_started", "error": str(result)}
        return {"status": "interrupted", "error": str(result)}
    return _failed(path, result)


def run_pack_trials(config_dicts: list[dict[str, Any]], run_dirs: list[str]) -> list[dict[str, Any]]:
    """:func:`run_trial` for trials that train as one JAX pack (``engine=jax``; configs equal but for the seed): the
    same outcomes, one per trial, the trials trained together (:func:`dpd.training.together.train_together`)."""
    from dpd.training.together import train_together

    outcomes: dict[int, dict[str, Any]] = {}
    runs = []
    for k, (config_dict, run_dir) in enumerate(zip(config_dicts, run_dirs, strict=True)):
        path = Path(run_dir)
        before = _before_trial(path)
        if before is not None:
            outcomes[k] = before
            continue
        try:
            config = TrainConfig.from_dict(config_dict).resolve(check_env=False)
        except Exception as exc:
            outcomes[k] = _failed(path, exc)
            continue
        runs.append((k, config, path, (path / CHECKPOINT_FILE).is_file() and _same_trial(path, config)))
    if runs:
        results = train_together([(config, path, resume) for _, config, path, resume in runs])
        for (k, _, path, _), result in zip(runs, results, strict=True):
            outcomes[k] = _outcome(path, result)
    return [outcomes[k] for k in range(len(config_dicts))]


def run_group(config_dicts: list[dict[str, Any]], run_dirs: list[str]) -> list[dict[str, Any]]:
    """One group of :func:`pack_groups` (either backend): :func:`run_trial` for a trial alone, :func:`run_pack_trials`
    for a JAX pack's; one outcome per trial."""
    if len(run_dirs) == 1 and config_dicts[0].get("engine", "sb3") != "jax":
        return [run_trial(config_dicts[0], run_dirs[0])]
    return run_pack_trials(config_dicts, run_dirs)


def pack_groups(trials: list[Trial], limits: dict[str, int] | None = None) -> list[list[Trial]]:
    """The trials as the pool runs them: each ``engine=sb3`` trial alone; ``engine=jax`` trials that differ only by
    their seed together (one pack: a task's seeds of one arm), in the order of their first trial. ``limits`` (pack key
    -> most runs in one pack, :func:`pack_limits`): a larger group is cut into near-equal packs (a run's numbers do
    not depend on its pack-mates)."""
    groups: dict[str, list[Trial]] = {}
    for t in trials:
        if t.config.engine != "jax":
            groups[t.name] = [t]
            continue
        groups.setdefault("jax:" + pack_key(t.config), []).append(t)
    out = []
    for key, group in groups.items():
        limit = (limits or {}).get(key.removeprefix("jax:"), len(group))
        parts = -(-len(group) // limit)
        size, extra = divmod(len(group), parts)  # near-equal: the first ``extra`` packs take one run more
        starts = [k * size + min(k, extra) for k in range(parts + 1)]
        out += [group[starts[k]:starts[k + 1]] for k in range(parts)]
    return out


def pack_limits(trials: list[Trial], concurrent: int, pack_size: int | None = None) -> dict[str, int]:
    """Pack key -> the most runs one JAX pack of ``trials`` may hold: ``pack_size`` if given, and so that
    ``concurrent`` packs at once keep their arrays (every learner's replay buffer and state window,
    :func:`dpd.training.preflight.run_bytes`) within this machine's memory; only groups that must be cut are named.
    Before anything is written: a one-line DPDUserError where not even one run per pack fits."""
    from dpd.run_files import physical_memory
    from dpd.training.preflight import run_bytes

    limits: dict[str, int] = {}
    memory = physical_memory()
    for group in pack_groups(trials):
        config = group[0].config
        if config.engine != "jax" or len(group) == 1:
            continue
        per_run = run_bytes(config)
        fit = memory // (concurrent * max(per_run, 1))
        if fit < 1:
            gib = 1 << 30
            raise DPDUserError(f"{concurrent} packs at once of even one {config.env_id} run each need"
                               f" {concurrent * per_run / gib:.1f} GiB of buffers and windows, more than this machine's"
                               f" {memory / gib:.1f} GiB; use fewer --workers or a smaller algo.buffer_size")
        fit = min(fit, pack_size or fit)
        if fit < len(group):
            limits[pack_key(config)] = fit
    return limits


def _failed(path: Path, exc: Exception) -> dict[str, Any]:
    """A failed trial's outcome, its traceback kept in ``error.txt`` where the disk still takes it (a full disk
    must not turn one failed trial into a dead worker: the trial then stays ``unfinished`` and is retried)."""
    machine = machine_error(exc)
    if machine is not None:  # the machine's fault: what to do, not a traceback
        line = f"{machine}; free space, then run the same sweep command again (it retries this trial)"
    elif isinstance(exc, DPDUserError):
        line = str(exc)  # one line naming the fix already
    else:
        line = one_line(f"{type(exc).__name__}: {exc}")
    with contextlib.suppress(OSError):
        path.mkdir(parents=True, exist_ok=True)
        (path / ERROR_FILE).write_text("".join(traceback.format_exception(exc)) if machine is None else line + "\n")
    return {"status": "failed", "error": line}


def _same_trial(path: Path, config: TrainConfig | ResolvedConfig) -> bool:
    """Whether the run folder holds this very trial (its stored resolved config equals the trial's)."""
    try:
        # through from_dict: a config written before a key existed reads as that key's default
        stored = TrainConfig.from_dict(read_yaml(path / CONFIG_FILE)).resolve(check_env=False).to_dict()
        return bool(stored == config.resolve(check_env=False).to_dict())
    except (OSError, DPDUserError, ValueError):
        return False


def trial_status(run_dir: Path) -> str:
    """``finished`` | ``failed`` | ``unfinished`` | ``pending`` (see the module docstring)."""
    if (run_dir / SUMMARY_FILE).is_file():
        return "finished"
    if (run_dir / ERROR_FILE).is_file():
        return "failed"
    if (run_dir / CONFIG_FILE).is_file():
        return "unfinished"
    return "pending"


# ---------------------------------------------------------------------- the sweep folder
#: a sweep folder: sweep.yaml marks it; an earlier sweep there is resumed (the one overwrite rule,
#: dpd.run_files.check_output)
SWEEP_OUTPUT = Output("sweep", SWEEP_FILE, (), "resume")


def prepare_sweep_dir(out: Path, spec: SweepSpec) -> None:
    """Create the sweep folder, or check that an existing one holds the same sweep (then it is resumed)."""
    check_output(out, SWEEP_OUTPUT)
    sweep_file = out / SWEEP_FILE
    if sweep_file.is_file():
        try:
            stored = SweepSpec.from_dict(read_yaml(sweep_file)).to_dict()  # an older file: the new keys' defaults
        except (DPDUserError, TypeError):
            stored = None
        if stored != spec.to_dict():
            raise DPDUserError(
                f"{out} holds a different sweep ({sweep_file}); run the same command to resume it, or choose another --out"
            )
        return
    try:
        (out / RUNS_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DPDUserError(f"cannot write to --out {out}: {exc.strerror or exc}") from None
    write_yaml(sweep_file, spec.to_dict())


Reporter = Callable[[dict[str, Any]], None]


@dataclass
class SweepResult:
    finished: list[str]
    failed: dict[str, str]
    skipped: list[str]
    #: trials stopped by Ctrl-C / SIGTERM after a checkpoint (resumed when the sweep is run again)
    interrupted: list[str] = field(default_factory=list)
    #: the signal that stopped the sweep early, if any
    stopped_by: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def run_sweep(
    spec: SweepSpec,
    out: str | Path,
    *,
    backend: str = "local",
    workers: int | None = None,
    address: str | None = None,
    on_update: Reporter | None = None,
    pack_size: int | None = None,
) -> SweepResult:
    """Run (or resume) a sweep. Finished trials are skipped; failed and unfinished ones run again.

    :param backend: ``local`` (process pool, ``workers`` processes, default: all cores) or ``ray``.
    :param address: Ray cluster address (``auto``, ``ray://host:10001``); None starts a local Ray instance.
    :param on_update: called with a status snapshot (counts, running trials' steps) every second or so.
    :param pack_size: ``engine=jax``: at most this many runs per pack (default: a task's seeds of one arm, as memory
        allows): smaller packs finish sooner (e.g. within a machine's session), a run's numbers do not change.
    """
    if backend not in BACKENDS:
        raise DPDUserError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    trials = expand(spec)
    if backend == "ray":
        check_ray(address)  # before anything is written
    out = Path(out)
    check_path_length(out)
    if pack_size is not None and not any(t.config.engine == "jax" for t in trials):
        raise DPDUserError("--pack-size sizes the JAX engine's packs; add --engine jax, or drop --pack-size")
    workers = workers or os.cpu_count() or 1
    # JAX packs cut to fit this machine's memory, before anything is written (on Ray: one pack at a time per machine
    # like this one)
    limits = pack_limits(trials, workers if backend == "local" else 1, pack_size)
    with sweep_lock(out):
        return _run_locked(spec, trials, out, backend, workers, address, on_update, limits)


@contextlib.contextmanager
def sweep_lock(out: Path) -> Any:
    """The sweep folder, locked for this process: a second ``dpd sweep`` on the same folder is refused in one line
    (it would train trials the first one is training, and the two would report different counts)."""
    existed = out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DPDUserError(f"cannot write to --out {out}: {exc.strerror or exc}") from None
    try:
        lock = RunLock(out).acquire()
    except DPDUserError:
        raise DPDUserError(f"{out} is being run by another dpd sweep; wait for it (or stop it) and run the same command"
                           " again") from None
    try:
        yield lock
    finally:
        lock.release()
        if not existed and not any(p for p in out.iterdir() if p.name != LOCK_FILE):
            (out / LOCK_FILE).unlink(missing_ok=True)  # a sweep refused before it wrote anything leaves nothing
            out.rmdir()


def _clear_stop_file(path: Path) -> None:
    """Remove the sweep's stop file; a folder or anything else by that name is not dpd's: one line."""
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise DPDUserError(f"{path} is not a file: dpd keeps its stop file there; remove it and run the same command")
    path.unlink(missing_ok=True)


def _run_locked(spec: SweepSpec, trials: list[Trial], out: Path, backend: str, workers: int, address: str | None,
                on_update: Reporter | None, limits: dict[str, int]) -> SweepResult:
    prepare_sweep_dir(out, spec)
    runs = out / RUNS_DIR
    _clear_stop_file(runs / STOP_FILE)  # left by a stopped earlier run of this sweep
    skipped = [t.name for t in trials if trial_status(runs / t.name) == "finished"]
    todo = [t for t in trials if t.name not in skipped]
    result = SweepResult(finished=[], failed={}, skipped=skipped)
    if not todo:
        return result
    groups = pack_groups(todo, limits)  # a trial alone, or a JAX pack's trials together
    if backend == "local":
        _run_local(groups, runs, workers, result, on_update, len(trials))
    else:
        _run_ray(groups, runs, address, result, on_update, len(trials))
    return result


def _snapshot(runs: Path, running: list[str], result: SweepResult, total: int, budget: int) -> dict[str, Any]:
    return {
        "total": total,
        "done": len(result.finished) + len(result.skipped),
        "failed": len(result.failed),
        "running": {name: run_steps(runs / name) for name in running},
        "budget": budget,
    }


_WATCH: ParentWatch | None = None


def record_outcome(result: SweepResult, name: str, outcome: dict[str, Any]) -> None:
    """File one trial's outcome (what :func:`run_trial` returned) in ``result``: the one path both backends take."""
    status = outcome.get("status")
    if status == "finished":
        result.finished.append(name)
    elif status == "interrupted":  # checkpointed: resumed when the sweep runs again
        result.interrupted.append(name)
    elif status == "not_started":  # pending, as the trials the pool never handed out
        pass
    else:
        result.failed[name] = str(outcome.get("error") or "unknown error")


def _worker_init(parent_pid: int) -> None:
    """Pool workers ignore Ctrl-C / SIGTERM between trials; during a trial the trainer handles them (checkpoint,
    stop at the end of the round). The sweep's main process forwards SIGTERM to them (see :class:`_StopSweep`).
    A worker whose sweep process died (e.g. SIGKILL) stops too (:class:`ParentWatch`)."""
    global _WATCH
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _WATCH = ParentWatch(parent_pid)


def _pool_trial(config_dicts: list[dict[str, Any]], run_dirs: list[str]) -> list[dict[str, Any]]:
    """:func:`run_trial` (one trial) or :func:`run_pack_trials` (a pack's) in a pool worker, marked busy for the
    parent watch."""
    if _WATCH is not None:
        if _WATCH.orphaned:  # the sweep process died: start nothing (the next sweep runs it)
            return [{"status": "not_started", "error": "not started: the sweep process is gone"}] * len(run_dirs)
        _WATCH.busy = True
    try:
        return run_group(config_dicts, run_dirs)
    finally:
        if _WATCH is not None:
            _WATCH.busy = False


class _StopSweep:
    """What a sweep does on the first Ctrl-C / SIGTERM (see :class:`StopSignals`): start no more trials (the stop
    file tells trials the pool already queued not to start), ask the running ones to checkpoint and stop (SIGTERM
    to each worker), and wait for them."""

    def __init__(self, pool: ProcessPoolExecutor, stop_file: Path) -> None:
        self.pool = pool
        self.stop_file = stop_file

    def __call__(self, _signal_name: str) -> None:
        with contextlib.suppress(OSError):
            self.stop_file.touch()
        self.forward()

    def forward(self) -> None:
        """SIGTERM to every worker. Sent again each second while trials run: a trial listens only once its
        trainer runs."""
        for proc in pool_processes(self.pool):
            with contextlib.suppress(ProcessLookupError, AttributeError):
                os.kill(proc.pid, signal.SIGTERM)


def _run_local(groups: list[list[Trial]], runs: Path, workers: int, result: SweepResult, on_update: Reporter | None,
               total: int) -> None:
    budget = groups[0][0].config.total_steps
    n_workers = min(workers, len(groups))
    with ProcessPoolExecutor(max_workers=n_workers, mp_context=mp.get_context("spawn"),
                             initializer=_worker_init, initargs=(os.getpid(),)) as pool:
        stop = _StopSweep(pool, runs / STOP_FILE)
        with StopSignals(stop) as signals:
            futures: dict[Future[list[dict[str, Any]]], list[str]] = {
                pool.submit(_pool_trial, [t.config.to_dict() for t in g], [str(runs / t.name) for t in g]):
                    [t.name for t in g] for g in groups
            }
            order = {f: i for i, f in enumerate(futures)}  # submission order
            pending = set(futures)
            while pending:
                if signals.name is not None:  # trials not started yet stay pending (they run next time)
                    pending = {f for f in pending if not f.cancel()}
                    stop.forward()
                done, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
                for fut in done:
                    names = futures[fut]
                    try:
                        outcomes = fut.result()
                    except Exception as exc:  # the worker process itself died
                        outcomes = [{"status": "failed", "error": f"worker died: {type(exc).__name__}: {exc}"}] * len(names)
                        for name in names:
                            (runs / name).mkdir(parents=True, exist_ok=True)
                            (runs / name / ERROR_FILE).write_text(outcomes[0]["error"] + "\n")
                    for name, outcome in zip(names, outcomes, strict=True):
                        record_outcome(result, name, outcome)
                if on_update is not None:
                    # the pool marks a trial "running" once it is in the queue that feeds the workers, which holds
                    # one more than there are workers; they take it in submission order, so the first n_workers of
                    # the "running" trials are the ones in a worker (a queued one that resumes has a run folder too)
                    started = sorted((f for f in pending if f.running()), key=order.__getitem__)[:n_workers]
                    running = [name for f in started for name in futures[f] if trial_status(runs / name) == "unfinished"]
                    on_update(_snapshot(runs, running, result, total, budget))
            result.stopped_by = signals.name
    _clear_stop_file(runs / STOP_FILE)  # every queued trial has returned


def check_ray(address: str | None, timeout: float = 5.0) -> None:
    """One line, before anything is written, where the ray backend cannot work: Ray Tune is not installed, or a
    ``host:port`` / ``ray://host:port`` address does not answer within ``timeout`` seconds (Ray itself would retry
    for many minutes)."""
    try:
        import ray  # noqa: F401
        from ray import tune  # noqa: F401
    except ImportError:
        raise DPDUserError("the ray backend needs Ray Tune, an optional extra: pip install 'dpd[ray]'") from None
    if address is None or address == "auto":
        return
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise DPDUserError(f"--address {address}: use auto, host:port or ray://host:port")
    import socket

    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise DPDUserError(f"no Ray cluster answers at {address} ({exc.strerror or exc}); start one (ray start --head)"
                           " or drop --address for a local Ray") from None


def _ray_trainable(config: dict[str, Any]) -> None:
    """One Ray Tune trial: a group of :func:`pack_groups` (a trial alone, or a JAX pack's trials together on one
    worker), its outcomes reported as one metrics dict."""
    from ray import tune

    cell = config["cell"]
    outcomes = run_group(cell["trials"], cell["run_dirs"])
    tune.report({"statuses": [o["status"] for o in outcomes], "errors": [o.get("error", "") for o in outcomes],
                 "env_steps": sum((o.get("summary") or {}).get("total_env_steps", 0) for o in outcomes)})


def ray_outcomes(grid: Any) -> list[tuple[str, dict[str, Any]]]:
    """(trial name, outcome as run_trial returned it) of every trial of a Ray Tune result grid (a grid trial is a
    group of trials: one, or a JAX pack's). A group that reported nothing failed inside Ray itself: each of its
    trials is failed with Ray's error."""
    out = []
    for i in range(len(grid)):
        res = grid[i]
        names = [Path(run_dir).name for run_dir in (res.config or {})["cell"]["run_dirs"]]
        metrics = res.metrics or {}
        statuses, errors = metrics.get("statuses") or [], metrics.get("errors") or []
        if res.error is None and len(statuses) == len(names):
            out += [(name, {"status": status, "error": error})
                    for name, status, error in zip(names, statuses, errors, strict=True)]
        else:
            out += [(name, {"status": "failed", "error": str(res.error or "the trial reported nothing")})
                    for name in names]
    return out


def _run_ray(groups: list[list[Trial]], runs: Path, address: str | None, result: SweepResult, on_update: Reporter | None,
             total: int) -> None:
    # dpd's status line is the output: no Ray status box, no TensorBoard hint (Tune's own loggers are off; every
    # run writes its own logs into its run folder)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    try:
        import ray
        from ray import tune
    except ImportError:
        raise DPDUserError("the ray backend needs Ray Tune: pip install 'dpd[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    # one grid cell per group of pending trials (a trial alone, a JAX pack's trials together): their full configs
    # and run folders (absolute: workers may run elsewhere, so on a cluster the sweep folder must be on shared storage)
    cells = [{"trials": [t.config.to_dict() for t in group], "run_dirs": [str((runs / t.name).resolve()) for t in group]}
             for group in groups]
    tuner = tune.Tuner(
        tune.with_resources(_ray_trainable, {"cpu": 1}),
        param_space={"cell": tune.grid_search(cells)},
        run_config=tune.RunConfig(storage_path=str((runs.parent / "ray").resolve()), name="sweep", verbose=0),
    )
    with contextlib.redirect_stdout(io.StringIO()):  # what Ray still prints about the experiment
        grid = tuner.fit()
    for name, outcome in ray_outcomes(grid):
        record_outcome(result, name, outcome)
    if on_update is not None:
        on_update(_snapshot(runs, [], result, total, groups[0][0].config.total_steps))
