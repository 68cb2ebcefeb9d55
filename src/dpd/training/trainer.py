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

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dpd.config import ResolvedConfig, TrainConfig, require_resolved
from dpd.envs import EnvSource, check_env_id, provide_env_factory
from dpd.errors import DPDUserError, TrainingDiverged, TrainingInterrupted
from dpd.names import CHECKPOINT_FILE, CONFIG_FILE, ERROR_FILE, SUMMARY_FILE
from dpd.run_files import (
    CLI_WORDS,
    OutWords,
    RunLock,
    atomic_write_text,
    check_run_dir,
    create_run_dir,
    write_json,
    write_yaml,
)
from dpd.students.base import Student
from dpd.students.factory import set_torch_threads
from dpd.training.interface import LearnerInterface
from dpd.training.learner import CallbackFactory, Learner, LogFn
from dpd.training.parallel import RemoteLearner, begin, collect
from dpd.training.preflight import check_buildable
from dpd.training.signals import StopSignals


def _version() -> str:
    """dpd's version from the installed package's metadata (the package root is a layer above this one)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dpd")
    except PackageNotFoundError:
        return "unknown"


def platform_info(engine: str = "sb3") -> dict[str, Any]:
    """What a run's numbers depend on beyond its config: library versions and the CPU's vector unit. Two runs of the
    same config and code are byte-identical on one machine, but over 1M steps they can drift apart across CPUs
    (torch picks its kernels by the CPU's capability, e.g. AVX2 or AVX512; rounding differs in the last bits and a
    long run amplifies it), so a summary records where it ran. ``engine="jax"``: JAX's libraries too (XLA compiles
    the run's arithmetic), the backend and device it compiled for (``cpu``, ``gpu``: a GPU's kernels round
    differently from the CPU's, docs/performance.md) and the XLA_FLAGS it ran under."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    import torch as th

    libs: dict[str, str | None] = {}
    names = ("torch", "numpy", "gymnasium", "mujoco", "stable_baselines3")
    for name in names + (("jax", "jaxlib", "optax") if engine == "jax" else ()):
        try:
            libs[name] = version(name.replace("_", "-"))
        except PackageNotFoundError:
            libs[name] = None
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    info = {"python": platform.python_version(), **libs, "cpu": cpu,
            "torch_cpu_capability": th.backends.cpu.get_cpu_capability(), "torch_threads": th.get_num_threads()}
    if engine == "jax":
        import jax

        info["jax_backend"] = jax.default_backend()
        info["jax_device"] = jax.devices()[0].device_kind
        info["xla_flags"] = os.environ.get("XLA_FLAGS", "")
    return info


class DPDTrainer:
    """Owns the learners of one run and runs Algorithm 1 over them, in one process or one process per learner.

    Sequential (``config.parallel`` false) is Algorithm 1 exactly::

        A.iterate(); A.distill(B.peer_batch()); B.iterate(); B.distill(A.peer_batch())

    Parallel runs student1 in a process of its own (student0 stays in this one) and each round as::

        A.iterate() || B.iterate();  then  A.distill(B.peer_batch()) || B.distill(A.peer_batch())

    so both students distill from the peer's batch taken right after the peer's RL update of the same round.
    The difference from Algorithm 1: there, A distills from B's policy of the previous round (B has not iterated
    yet) and B from A's policy after A's update AND A's distillation of this round.

    :param config: a :class:`ResolvedConfig` (``config.resolve()``); anything else is a one-line DPDUserError.
    :param run_dir: folder for logs, models and summary (created by :func:`dpd.run_files.create_run_dir`);
        None keeps everything in memory.
    :param callbacks: optional factory ``learner_name -> SB3 callback(s)``, called once per learner (parallel mode:
        a picklable, module-level function).
    :param progress_bar: one rich progress bar over the total env steps.
    :param log: where one-line progress messages go (default: nowhere).
    :param resume_state: a checkpoint (:func:`dpd.training.checkpoint.load_checkpoint`) to continue from.
    """

    def __init__(
        self,
        config: ResolvedConfig,
        run_dir: str | Path | None = None,
        callbacks: CallbackFactory | None = None,
        progress_bar: bool = False,
        log: LogFn | None = None,
        verbose: int = 0,
        resume_state: dict[str, Any] | None = None,
        learners: list[LearnerInterface] | None = None,
    ) -> None:
        self.config = require_resolved(config, "DPDTrainer")
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.progress_bar = progress_bar
        self.log: LogFn = log or (lambda _msg: None)
        # a pack runs every learner's iteration at once: dpd's parallel order, whatever config.parallel says
        self.parallel = bool(config.parallel) or config.engine == "jax"
        set_torch_threads(config.torch_threads)
        states = resume_state["students"] if resume_state is not None else [None] * len(config.learner_names)
        if not isinstance(states, list) or len(states) != len(config.learner_names):
            raise ValueError(f"the checkpoint holds {len(states) if isinstance(states, list) else 'no list of'}"
                             f" learners' states for {len(config.learner_names)} learners")
        # Parallel: student0 in this process, every other student in a process of its own (one process less to
        # start and to hold in memory than one per student, and the parent would otherwise only wait).
        built: list[LearnerInterface | None] = [None] * len(states)
        #: the learners, each called through the learner interface (a Learner here, a RemoteLearner's process, a
        #: view on a JAX pack)
        self.learners: list[LearnerInterface] = []
        if config.engine == "jax" and callbacks is not None:
            raise DPDUserError("engine=jax takes no SB3 callbacks (its learners are not SB3 models while they train);"
                               " drop callback=, or use engine=sb3")
        if learners is None and config.engine == "jax":  # one run alone: a pack of its own learners
            from dpd.training.pack_learner import PackGroup

            learners = list[LearnerInterface](PackGroup([config], [self.run_dir], [resume_state], log=self.log).views)
        if learners is not None:  # built by the caller (the runs of one pack: learn_together)
            states, built = [], []
            self.learners = list(learners)
        try:
            for i, state in enumerate(states):
                if self.parallel and i > 0:  # started first, so that it builds while this process builds student0
                    built[i] = RemoteLearner(config, i, self.run_dir, verbose, state, callbacks, log=self.log,
                                             wait=False)
            for i, state in enumerate(states):
                if built[i] is None:
                    built[i] = Learner(config, i, self.run_dir, verbose, state, callbacks, log=self.log)
            self.learners = self.learners or [learner for learner in built if learner is not None]
            for learner in built:
                if isinstance(learner, RemoteLearner):
                    learner.recv()  # built (or failed)
        except BaseException:
            for learner in built:
                if learner is not None:
                    learner.close()
            raise
        self._steps = [0] * len(self.learners)
        self.stopped = False  # a callback stopped training
        self._resume = resume_state
        self._start = time.time()
        self._elapsed_before = 0.0  # wall time of the run before a resume
        self._next_checkpoint = config.checkpoint_freq
        self._stop_signal: str | None = None
        self._setting_up = False  # True while the learners set up (a stop then ends the run before its first round)
        self._diverged: str | None = None

    def _restoring(self) -> contextlib.AbstractContextManager[None]:
        """Errors while the learners take their state from a checkpoint are the checkpoint's (one line)."""
        if self._resume is None or self.run_dir is None:
            return contextlib.nullcontext()
        return _checkpoint_errors(self.run_dir)

    @property
    def dpd(self) -> bool:
        return self.config.method == "dpd"

    @property
    def pair(self) -> bool:
        """Two students (dpd or the independent control): the pair is distilled or measured after iterations."""
        return self.config.method != "vanilla"

    @property
    def students(self) -> list[Student]:
        """The Student objects (sequential mode only: in parallel mode student1 lives in another process)."""
        local = [learner for learner in self.learners if isinstance(learner, Learner)]
        if len(local) != len(self.learners):
            raise RuntimeError(f"in parallel mode {self.learners[-1].name} lives in its own process")
        return [learner.student for learner in local]

    def total_env_steps(self) -> int:
        return sum(self._steps)

    # ------------------------------------------------------------------ the loop
    def learn(self) -> dict[str, Any]:
        """Train to the budget; save models and write summary.json (if a run folder is set). Returns the summary."""
        # one stop handler from setup on: Ctrl-C / SIGTERM during setup (the first evaluation can take a while) stops
        # before the first round with its one-line message and saves nothing new (a fresh run has not stepped yet; a
        # resumed one keeps the checkpoint it came from); later, at the next round boundary, after a checkpoint
        with StopSignals(self._on_stop_signal):
            self._setup()
            with _Progress(self.progress_bar, self.config.total_steps) as bar:
                while self._running():
                    self._round_boundary()  # checkpoints happen between two rounds of Algorithm 1
                    self.stopped = self._parallel_round() if self.parallel else self._sequential_round(bar)
                    bar.update(self.total_env_steps())
        # the last phase (final evaluation, models, summary.json) runs to its end: a stop request now is honoured
        # after it, so the run is finished rather than lost (no checkpoint covers this phase); Ctrl-C twice aborts
        with StopSignals(self._on_stop_while_finishing) as finishing:
            summary = self._finish()
        if finishing.name is not None:
            raise TrainingInterrupted(finishing.name, summary["total_env_steps"], self.run_dir, finished=True)
        return summary

    def _setup(self) -> None:
        """The learners start (or take their checkpoint's state); a stop asked meanwhile ends the run here."""
        self._setting_up = True
        with self._restoring():
            self._steps = collect([begin(learner.setup) for learner in self.learners])  # a resumed one: its own stream
            if self._resume is not None:
                from dpd.state import set_rng_state

                self._elapsed_before = float(self._resume["trainer"]["elapsed_s"])
                self._next_checkpoint = int(self._resume["trainer"]["next_checkpoint"])
                set_rng_state(self._resume["rng"])  # the process's own, as it was (no learner draws from it)
        if self._resume is not None:
            self.log(f"dpd: resumed at {self.total_env_steps()} env steps")
        if self._stop_signal:
            raise TrainingInterrupted(self._stop_signal, self.total_env_steps(), self.run_dir, during_setup=True)
        self._setting_up = False
        self._start = time.time()

    def _running(self) -> bool:
        """Whether another round is due (no callback stopped training, some learner is short of its budget)."""
        return not self.stopped and any(steps < self.config.steps_per_learner for steps in self._steps)

    def _finish(self) -> dict[str, Any]:
        """Final evaluations, models, summary.json; the checkpoint goes (a finished run is not resumed)."""
        entries = collect([begin(learner.finish) for learner in self.learners])
        summary = self.summary(dict(zip(self.config.learner_names, entries, strict=True)), self.stopped)
        if self.run_dir is not None:
            collect([begin(learner.save) for learner in self.learners])
            write_json(self.run_dir / SUMMARY_FILE, summary)
            # a finished run cannot be resumed, and its models are saved: its last checkpoint is dead weight
            # (with the replay buffers, ~600 MB per DDPG pair). After summary.json: a kill in between leaves a
            # finished run
            (self.run_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
        return summary

    def _sequential_round(self, bar: _Progress) -> bool:
        """Algorithm 1, lines 3-8. Returns True when a callback stopped training."""
        per_learner = self.config.steps_per_learner
        for i, learner in enumerate(self.learners):
            if self._steps[i] >= per_learner:  # its steps as setup / its last iteration returned them
                continue
            if not learner.iterate():
                return True
            if self.pair and learner.distill_due():
                batch = self.learners[1 - i].peer_batch()
                phase = learner.distill if self.dpd else learner.measure
                self._check_streak(learner.name, phase(batch))
            self._steps[i] = learner.after_iteration()
            bar.update(self.total_env_steps())
        return False

    def _parallel_round(self) -> bool:
        """Both learners iterate at the same time, then distill at the same time (see the class docstring)."""
        per_learner = self.config.steps_per_learner
        learners = self.learners
        active = [i for i, steps in enumerate(self._steps) if steps < per_learner]
        if not all(collect([begin(learners[i].iterate) for i in active])):
            return True
        if self.pair:
            dues = collect([begin(learners[i].distill_due) for i in active])
            due = [i for i, d in zip(active, dues, strict=True) if d]
            peers = sorted({1 - i for i in due})
            batches = dict(zip(peers, collect([begin(learners[i].peer_batch) for i in peers]), strict=True))
            streaks = collect([begin(learners[i].distill if self.dpd else learners[i].measure, batches[1 - i])
                               for i in due])
            for i, streak in zip(due, streaks, strict=True):
                self._check_streak(learners[i].name, streak)
        for i, steps in zip(active, collect([begin(learners[i].after_iteration) for i in active]), strict=True):
            self._steps[i] = steps
        return False

    def _check_streak(self, name: str, streak: int) -> None:
        if streak >= self.config.max_nonfinite_batches and self._diverged is None:
            self._diverged = (f"{name}: {streak} distillation batches in a row had a non-finite loss "
                              "(values or actions are NaN/inf)")

    # ------------------------------------------------------------------ checkpoints
    def _round_boundary(self) -> None:
        total = self.total_env_steps()
        due = self.config.checkpoint_freq > 0 and total >= self._next_checkpoint and total > 0
        if self.run_dir is not None and (due or self._stop_signal or self._diverged):
            while self.config.checkpoint_freq > 0 and self._next_checkpoint <= total:
                self._next_checkpoint += self.config.checkpoint_freq
            self.save_checkpoint()
        if self._diverged:
            raise TrainingDiverged(f"{self._diverged}; stopped at {total} env steps"
                                   + (f", checkpoint in {self.run_dir}" if self.run_dir is not None else ""))
        if self._stop_signal:
            raise TrainingInterrupted(self._stop_signal, total, self.run_dir)

    def checkpoint_state(self) -> dict[str, Any]:
        from dpd.state import rng_state

        return {
            "config": self.config.to_dict(),
            "students": collect([begin(learner.state) for learner in self.learners]),
            "trainer": {"next_checkpoint": self._next_checkpoint,
                        "elapsed_s": self._elapsed_before + time.time() - self._start},
            "rng": rng_state(),  # last: nothing above draws random numbers
        }

    def _on_stop_signal(self, name: str) -> None:
        """The first Ctrl-C / SIGTERM: checkpoint and stop at the end of this round (see StopSignals)."""
        self._stop_signal = name
        when = "once set up" if self._setting_up else "after this round"
        self.log(f"dpd: {name}: stopping {when} (Ctrl-C again to abort now)")

    def _on_stop_while_finishing(self, name: str) -> None:
        self.log(f"dpd: {name}: finishing first (final evaluation, models, summary), then stopping (Ctrl-C again to"
                 " abort now)")

    def save_checkpoint(self) -> Path:
        from dpd.training.checkpoint import save_checkpoint

        assert self.run_dir is not None
        path = self.run_dir / CHECKPOINT_FILE
        save_checkpoint(path, self.checkpoint_state())
        self.log(f"dpd: checkpoint at {self.total_env_steps()} env steps -> {path}")
        return path

    # ------------------------------------------------------------------ results
    def summary(self, learners: dict[str, Any], stopped: bool = False) -> dict[str, Any]:
        wall = self._elapsed_before + time.time() - self._start
        # the learners' own counts: a callback may stop one in the middle of a round, after the trainer last counted
        total = sum(int(v["env_steps"]) for v in learners.values())
        finals = {name: v["final_eval_return"] for name, v in learners.items() if v["final_eval_return"] is not None}
        cfg = self.config
        return {
            "dpd_version": _version(),
            "status": "stopped_by_callback" if stopped else "finished",
            "env_id": cfg.env_id,
            "algo": cfg.algo,
            "method": cfg.method,
            "parallel": self.parallel,
            "engine": cfg.engine,
            "seed": cfg.seed,
            "preset": cfg.preset,
            "alpha": cfg.distill.alpha,
            "weighting": cfg.distill.weighting,
            "distill_schedule": cfg.distill.schedule,
            "total_env_steps": total,
            "wall_time_s": round(wall, 3),
            "env_steps_per_s": round(total / max(wall, 1e-9), 1),
            "best_learner": max(finals, key=lambda k: finals[k]) if finals else None,
            "learners": learners,
            "platform": platform_info(cfg.engine),
        }

    def close(self) -> None:
        for learner in self.learners:
            learner.close()


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


def learn_together(trainers: list[DPDTrainer], log: LogFn | None = None, signals: StopSignals | None = None
                   ) -> list[dict[str, Any] | Exception]:
    """The runs whose learners share one JAX pack (:class:`dpd.training.pack_learner.PackGroup`), trained round by round in
    lock-step: round r of every run before round r + 1 of any (the pack steps all its learners at once). Each run
    keeps its own checkpoints, stop handling and summary, as :meth:`DPDTrainer.learn`. Returns, per run, its summary
    or the exception that ended it (:class:`TrainingInterrupted` after a stop: every run checkpointed first;
    :class:`TrainingDiverged`); an error of the pack itself (an env fault) ends them all and is raised.

    ``signals``: a caller's own stop handler, already entered (:func:`dpd.training.together.train_together`, which
    must know of a stop to start no further pack); one that came before this call stops every run before its first
    round. Without it, this call handles Ctrl-C / SIGTERM itself."""
    say: LogFn = log or (lambda _msg: None)
    if signals is None:
        with StopSignals(pack_stop_announcer(say)) as own:
            return learn_together(trainers, log, own)
    outcomes: list[dict[str, Any] | Exception | None] = [None] * len(trainers)
    # A stop is read from `signals` at round boundaries, never handed to the trainers at once: a signal that lands
    # while the first run's round steps the whole pack would let the later runs checkpoint at the round before it,
    # beside a pack already a round on (their checkpoints at different steps, and their pack state ahead of their
    # counters). Every run sees it at the same boundary.
    for trainer in trainers:
        trainer._setup()
    active = list(range(len(trainers)))
    if signals.name is not None:  # a stop during setup ends every run before its first round, as for one run
        outcomes = [TrainingInterrupted(signals.name, t.total_env_steps(), t.run_dir, during_setup=True)
                    for t in trainers]
        active = []
    while active:
        if signals.name is not None:
            for trainer in trainers:
                trainer._stop_signal = signals.name
        for k in list(active):
            trainer = trainers[k]
            if not trainer._running():
                active.remove(k)
                continue
            try:
                trainer._round_boundary()
            except (TrainingInterrupted, TrainingDiverged) as exc:
                outcomes[k] = exc
                active.remove(k)
                continue
            trainer.stopped = trainer._parallel_round()
    with StopSignals(lambda name: say(f"dpd: {name}: finishing the pack's runs first (Ctrl-C again to abort now)")
                     ) as finishing:
        for k, trainer in enumerate(trainers):
            if outcomes[k] is None:
                outcomes[k] = trainer._finish()
    results: list[dict[str, Any] | Exception] = []
    for k, outcome in enumerate(outcomes):
        assert outcome is not None
        if finishing.name is not None and isinstance(outcome, dict):
            outcome = TrainingInterrupted(finishing.name, outcome["total_env_steps"], trainers[k].run_dir,
                                          finished=True)
        results.append(outcome)
    return results


def pack_stop_announcer(say: LogFn) -> Callable[[str], None]:
    """What a pack's runs say on the first Ctrl-C / SIGTERM (they stop together at the end of the round)."""
    return lambda name: say(f"dpd: {name}: stopping the pack's runs after this round (Ctrl-C again to abort now)")


def new_run_folder(config: ResolvedConfig, out: str | Path, overwrite: bool, words: OutWords = CLI_WORDS
                   ) -> tuple[Path, RunLock]:
    """The run folder of a resolved ``config``, locked, with its config.yaml: the cheap refusals first (a taken
    ``out``), then everything the build can refuse (:func:`check_buildable`), and only then the folder: nothing
    touches disk before it is valid. :func:`train` (and through it ``DPD.learn``) starts here."""
    check_run_dir(out, overwrite, words)
    check_buildable(config)
    run_dir, lock = create_run_dir(out, overwrite, words)
    write_yaml(run_dir / CONFIG_FILE, config.to_dict())
    return run_dir, lock


def train(
    config: TrainConfig | ResolvedConfig,
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
    return _lifecycle(config, out, overwrite, callbacks, progress_bar, log, verbose, CLI_WORDS, keep=False)[1]


def train_and_keep(
    config: TrainConfig | ResolvedConfig,
    out: str | Path | None,
    *,
    overwrite: bool = False,
    callbacks: CallbackFactory | None = None,
    progress_bar: bool = False,
    words: OutWords = CLI_WORDS,
) -> tuple[DPDTrainer, dict[str, Any]]:
    """:func:`train`'s lifecycle, the trainer (its learners, for ``predict`` and ``save``) handed back open: the
    caller closes it. ``DPD.learn`` trains through here, so a run folder is made, filled and summarised once, by
    one code path. On failure the trainer is closed here."""
    return _lifecycle(config, out, overwrite, callbacks, progress_bar, None, 0, words, keep=True)


def _lifecycle(config: TrainConfig | ResolvedConfig, out: str | Path | None, overwrite: bool,
               callbacks: CallbackFactory | None, progress_bar: bool, log: LogFn | None, verbose: int,
               words: OutWords, keep: bool) -> tuple[DPDTrainer, dict[str, Any]]:
    """Resolve, make the folder (:func:`new_run_folder`), build, learn (summary.json written by
    :meth:`DPDTrainer.learn`, once), close unless ``keep`` (or on failure), release the folder."""
    resolved = config.resolve()
    lock = None
    run_dir = None
    if out is not None:
        run_dir, lock = new_run_folder(resolved, out, overwrite, words)
    if log is not None:
        where = f" -> {run_dir}" if run_dir is not None else ""
        mode = " (students in parallel processes; --sequential: Algorithm 1's exact order)" if (
            resolved.parallel and resolved.method != "vanilla") else ""
        log(f"dpd: training {resolved.method} {resolved.algo} on {resolved.env_id}, {resolved.total_steps} env steps"
            f"{where}{mode}")
    try:
        try:
            trainer = DPDTrainer(resolved, run_dir, callbacks=callbacks, progress_bar=progress_bar, log=log,
                                 verbose=verbose)
        except BaseException:
            if lock is not None:  # nothing trained: an --overwrite'n run comes back
                lock.restore_replaced()
            raise
        if lock is not None:
            lock.keep_new()  # built: the envs, models and loggers of this config exist; the replaced run goes
        closed = True
        try:
            summary = trainer.learn()
            closed = not keep
            return trainer, summary
        except DPDUserError as exc:  # an env fault mid-run: the folder says so (a sweep retries it next time)
            if run_dir is not None:
                atomic_write_text(run_dir / ERROR_FILE, f"{exc}\n")
            raise
        finally:
            if closed:
                trainer.close()
    finally:
        if lock is not None:
            lock.release()


def resume(
    run: str | Path,
    *,
    env: EnvSource | None = None,
    callbacks: CallbackFactory | None = None,
    progress_bar: bool = False,
    log: LogFn | None = None,
    verbose: int = 0,
) -> dict[str, Any]:
    """Continue a run from its last checkpoint (``RUN/checkpoint.pt``) to its budget; returns the summary.

    :param env: the run's environment again: its id (it must be the stored one), or the factory it was trained
        with. Needed where the stored id names a module that a run folder may not import by itself, or a factory
        that cannot be found by name (:func:`dpd.envs.make_env`)."""
    run_dir = Path(run)
    resolved, state, lock = open_checkpoint(run_dir, env)
    try:
        with _checkpoint_errors(run_dir):
            trainer = DPDTrainer(resolved, run_dir, callbacks=callbacks, progress_bar=progress_bar, log=log,
                                 verbose=verbose, resume_state=state)
        try:
            return trainer.learn()
        finally:
            trainer.close()
    finally:
        lock.release()


def _checkpoint_errors(run_dir: Path) -> contextlib.AbstractContextManager[None]:
    from dpd.training.checkpoint import restoring

    return restoring(run_dir / CHECKPOINT_FILE)  # a damaged checkpoint: one line naming it


def open_checkpoint(run_dir: Path, env: EnvSource | None = None) -> tuple[ResolvedConfig, dict[str, Any], RunLock]:
    """A run folder to resume, checked and locked: (its resolved config, its checkpoint, the lock; the caller
    releases it). One line for a folder that is not a run, has finished, was edited, or names another env."""
    from dpd.config import read_run_config
    from dpd.run_files import refuse_links, remove_stale_temporaries
    from dpd.training.checkpoint import load_checkpoint

    if not run_dir.is_dir():
        raise DPDUserError(f"--resume {run_dir}: no such run folder")
    config = read_run_config(run_dir)
    if (run_dir / SUMMARY_FILE).is_file():
        raise DPDUserError(f"{run_dir} has finished (summary.json exists); nothing to resume")
    if isinstance(env, str) and env != config.env_id:
        raise DPDUserError(f"--env {env}: {run_dir} was trained on {config.env_id}; a resume continues the same run")
    if env is not None and not isinstance(env, str):
        provide_env_factory(config.env_id, env)
    check_env_id(config.env_id, trust=env is not None).close()  # a module named by the folder: only when passed again
    refuse_links(run_dir)
    lock = RunLock(run_dir).acquire()
    try:
        remove_stale_temporaries(run_dir)
        state = load_checkpoint(run_dir / CHECKPOINT_FILE)
        stored = state.get("config")
        resolved = config.resolve()
        with _checkpoint_errors(run_dir):
            # a checkpoint written before the distill block holds the flat keys: compare as configs, not as dicts
            try:
                same = isinstance(stored, dict) and TrainConfig.from_dict(stored).to_dict() == config.to_dict()
            except DPDUserError:  # the checkpoint's copy of the config is damaged
                same = False
            if not same:
                raise DPDUserError(f"{run_dir}: checkpoint.pt and config.yaml disagree; the run folder was edited")
    except BaseException:
        lock.release()
        raise
    return resolved, state, lock


__all__ = ["DPDTrainer", "TrainingDiverged", "TrainingInterrupted", "learn_together", "resume", "train",
           "train_and_keep"]
