"""The ``dpd`` command line: parse, call the library, print. User errors: one line on stderr, exit status 2."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from dpd._entry import Terminated, exit_code
from dpd.errors import DPDUserError, TrainingDiverged, machine_error
from dpd.names import (
    ALGO_NAMES,
    BACKENDS,
    BUILTIN_WEIGHTINGS,
    DEFAULT_ALGO,
    DEFAULT_ALPHA,
    DEFAULT_ENGINE,
    DEFAULT_METHOD,
    DEFAULT_PRESET,
    DEFAULT_SEED,
    DEFAULT_TOTAL_STEPS,
    DEFAULT_WEIGHTING,
    DEMO_ENV,
    DEMO_TOTAL_STEPS,
    ENGINES,
    METHODS,
    PRESETS,
    STUDENTS,
    SWEEP_VARIANTS,
    choices,
)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Dual Policy Distillation (Lai et al. 2020) on Stable-Baselines3.",
)


#: --env of the commands that open a run folder
ENV_AGAIN = ("the run's environment again, where its config.yaml names a module (module:...): dpd imports no module"
             " and calls no function a run folder names (or trust the module: DPD_ENV_MODULES=module)")


def _echo(msg: str) -> None:
    typer.echo(msg, err=True)


@app.command()
def train(
    ctx: typer.Context,
    env: Annotated[str | None, typer.Option("--env", help=(
        "Gymnasium id (HalfCheetah-v5, CartPole-v1), module:EnvId-v0 (the module registers it) or"
        " package.module:make_env (a function returning a gym.Env); with --resume: the run's env again"))] = None,
    algo: Annotated[str, typer.Option(help=f"base algorithm: {' | '.join(ALGO_NAMES)}")] = DEFAULT_ALGO,
    total_steps: Annotated[int, typer.Option(help="TOTAL env steps over all learners (DPD: half per student)")
                           ] = DEFAULT_TOTAL_STEPS,
    method: Annotated[str, typer.Option(
        help=f"{choices(METHODS)} (dpd: the pair distils; vanilla: one learner, same total steps; independent: the "
             "pair, never distilled)")] = DEFAULT_METHOD,
    alpha: Annotated[float, typer.Option(help="confidence alpha of the weight exp(alpha * xi)")] = DEFAULT_ALPHA,
    weighting: Annotated[str, typer.Option(help=f"{choices(BUILTIN_WEIGHTINGS)} (exp: the paper's Eq. 11; indicator: "
                                                "Eq. 9; uniform: mutual distillation) or a registered one")
                         ] = DEFAULT_WEIGHTING,
    seed: Annotated[int, typer.Option(help="base seed (student k: seed + 10000 k)")] = DEFAULT_SEED,
    preset: Annotated[str, typer.Option(help=f"{choices(PRESETS)} (zoo: rl-zoo3 tuned; paper: the paper's §4.2; "
                                             "none: SB3 defaults)")] = DEFAULT_PRESET,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="override a config key: key=value, algo.<SB3 arg>=value, algo.policy_kwargs.<arg>=value"),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="run folder (default: runs/<env>_<algo>_<method>_s<seed>_<time>)")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing run folder")] = False,
    parallel: Annotated[
        bool | None,
        typer.Option("--parallel/--sequential",
                     help="each student in its own process / Algorithm 1 exactly (default: parallel on >= 2 cores)"),
    ] = None,
    engine: Annotated[str, typer.Option(help=f"{choices(ENGINES)} (jax: the run's learners as one JAX pack, DDPG;"
                                             " pip install 'dpd[jax]')")] = DEFAULT_ENGINE,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
    verbose: Annotated[int, typer.Option(help="1: print SB3's log tables")] = 0,
    resume: Annotated[Path | None, typer.Option(help="continue this run folder from its last checkpoint")] = None,
) -> None:
    """Train a DPD pair (or the vanilla baseline) and save logs, models and summary.json in the run folder."""
    from dpd.config import TrainConfig, apply_overrides
    from dpd.errors import TrainingInterrupted
    from dpd.training import resume as resume_training
    from dpd.training import train as run_training

    show_bar = progress and sys.stderr.isatty()
    if resume is not None:
        # every option that would change the run: all but these
        given = [p for p in ctx.params if p not in ("progress", "verbose", "resume", "env")
                 and ctx.get_parameter_source(p).name == "COMMANDLINE"]  # type: ignore[union-attr]
        if given:
            flags = ", ".join("--" + g.rstrip("_").replace("_", "-") for g in given)
            raise DPDUserError(f"--resume continues the run's stored config.yaml; drop {flags} (a changed config "
                               "cannot resume a run)")
        try:
            summary = resume_training(resume, env=env, progress_bar=show_bar, log=_echo, verbose=verbose)
        except TrainingInterrupted as exc:
            _echo(f"dpd: interrupted: {exc}")
            _exit_interrupted(exc.signal_name)
        _print_table([(str(resume), summary)])
        return
    if env is None:
        raise DPDUserError("dpd train needs --env ID (or --resume RUN)")
    config = TrainConfig(env_id=env).with_values(algo=algo, method=method, total_steps=total_steps, seed=seed,
                                                 preset=preset, alpha=alpha, weighting=weighting)
    config.engine = engine  # type: ignore[assignment]  # checked against its Literal on resolution
    # a pack steps its learners together in one process: parallel processes do not apply
    config.parallel = parallel if parallel is not None else (engine == "sb3" and _auto_parallel(method))
    config = apply_overrides(config, set_ or [])  # resolved (and validated) by run_training before anything is written
    if out is None:
        out = Path("runs") / f"{config.env_id}_{config.algo}_{config.method}_s{config.seed}_{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        summary = run_training(config, out, overwrite=overwrite, progress_bar=show_bar, log=_echo, verbose=verbose)
    except TrainingInterrupted as exc:
        _echo(f"dpd: interrupted: {exc}")
        _exit_interrupted(exc.signal_name)
    _print_table([(str(out), summary)])


@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="a finished run folder")],
    episodes: Annotated[int, typer.Option(help="deterministic episodes per learner")] = 10,
    seed: Annotated[int, typer.Option(help="seed of the evaluation env")] = 0,
    env: Annotated[str | None, typer.Option("--env", help=ENV_AGAIN)] = None,
    out: Annotated[Path | None, typer.Option(help="the results' JSON file (default: RUN/reevaluation.json); a file"
                                             " that is not an earlier result is never replaced")] = None,
) -> None:
    """Re-evaluate the saved learners of a run (frozen normalisation, deterministic actions)."""
    from dpd.evaluation import evaluate_run

    if episodes <= 0:
        raise DPDUserError(f"--episodes must be positive, got {episodes}")
    results = evaluate_run(run, episodes, seed, env=env, out=out)
    typer.echo(f"{'learner':<10} {'mean return':>12} {'std':>10} {'episodes':>9}")
    for name, r in results["learners"].items():
        typer.echo(f"{name:<10} {r['mean_return']:>12.2f} {r['std_return']:>10.2f} {r['episodes']:>9d}")


@app.command()
def compare(runs: Annotated[list[Path], typer.Argument(help="finished run folders")]) -> None:
    """Print the final evaluation returns of finished runs side by side."""
    from dpd.evaluation import read_summary

    _print_table([(str(r), read_summary(r)) for r in runs])


@app.command()
def demo(
    env: Annotated[str, typer.Option("--env", help="task of the demo (the long version: --env HalfCheetah-v5 "
                                                  "--total-steps 200000)")] = DEMO_ENV,
    total_steps: Annotated[int, typer.Option(help="TOTAL env steps of each run")] = DEMO_TOTAL_STEPS,
    seed: Annotated[int, typer.Option(help="seed of the three runs")] = 0,
    out: Annotated[Path, typer.Option(help="folder holding the three runs")] = Path("runs/demo"),
    overwrite: Annotated[bool, typer.Option(help="replace an earlier demo in --out")] = False,
) -> None:
    """Vanilla PPO, the independent pair and DPD-PPO at the same total env steps, side by side, then a table and
    what the numbers mean."""
    import sys

    from dpd.demo import run_demo, verdict

    status = None
    if sys.stderr.isatty():
        def status(line: str) -> None:  # one line, redrawn in place
            sys.stderr.write("\r" + line + " " * 4)
            sys.stderr.flush()
    results = run_demo(env, total_steps, seed, out, log=_echo, status=status, overwrite=overwrite)
    if status is not None:
        sys.stderr.write("\n")
    _print_table(results)
    for line in verdict(results):
        typer.echo(line)


@app.command()
def sweep(
    env: Annotated[list[str] | None, typer.Option("--env", help="task (repeat for several)")] = None,
    algo: Annotated[list[str] | None, typer.Option("--algo", help=f"{choices(ALGO_NAMES)} (repeat for several)")
                    ] = None,
    method: Annotated[
        list[str] | None, typer.Option("--method", help=f"{choices(SWEEP_VARIANTS)} (repeat for several)")
    ] = None,
    alpha: Annotated[list[float] | None, typer.Option("--alpha", help="alpha of dpd (repeat for several)")] = None,
    seeds: Annotated[int, typer.Option(help="number of seeds: 0 .. N-1")] = 3,
    total_steps: Annotated[int, typer.Option(help="TOTAL env steps of every run")] = DEFAULT_TOTAL_STEPS,
    preset: Annotated[str, typer.Option(help=choices(PRESETS))] = DEFAULT_PRESET,
    set_: Annotated[list[str] | None, typer.Option("--set", help="key=value for every run (as dpd train --set)")] = None,
    config: Annotated[Path | None, typer.Option(help="a sweep YAML file (keys of dpd.experiments.SweepSpec)")] = None,
    backend: Annotated[str, typer.Option(help=f"{choices(BACKENDS)} (local: a process pool; ray: Ray Tune, an extra)")
                       ] = "local",
    workers: Annotated[int | None, typer.Option(help="local backend: parallel runs (default: all cores)")] = None,
    address: Annotated[str | None, typer.Option(help="ray backend: cluster address (default: a local Ray)")] = None,
    out: Annotated[Path, typer.Option(help="sweep folder; run the same command again to resume")] = Path("runs/sweep"),
    engine: Annotated[str | None, typer.Option(help=f"{choices(ENGINES)}: every run's engine (jax: a task's seeds of"
                                                    " one arm train as one pack in one worker; the local backend)")
                      ] = None,
    pack_size: Annotated[int | None, typer.Option(help="engine jax: at most N runs per pack (default: a task's seeds"
                                                       " of one arm, as memory allows); results do not change")] = None,
) -> None:
    """Run a grid of runs (env x algo x method x alpha x seed) at the same total env steps; resumable."""
    from dpd.envs import check_file_env_id
    from dpd.experiments.sweep import SweepSpec, run_sweep
    from dpd.run_files import read_yaml

    if workers is not None and workers < 1:
        raise DPDUserError(f"--workers must be at least 1, got {workers}")
    if pack_size is not None and pack_size < 1:
        raise DPDUserError(f"--pack-size must be at least 1, got {pack_size}")
    cores = os.cpu_count() or 1
    if backend == "local" and workers is not None and workers > cores:  # allowed, but no faster: say so once
        _echo(f"dpd sweep: note: --workers {workers} on {cores} cores: runs share the cores, each slower, the sweep no"
              f" sooner (--workers {cores} does the same work)")

    if config is not None:
        if not config.is_file():
            raise DPDUserError(f"--config {config} is not a file" if config.exists() else f"--config {config} not found")
        data = read_yaml(config)
        if not isinstance(data, dict):
            raise DPDUserError(f"--config {config} is not a YAML mapping")
        spec = SweepSpec.from_dict(data)
        for env_id in spec.envs:  # a sweep file may come from someone else: it names no code that dpd runs
            check_file_env_id(env_id, f"--config {config}", f"--env {env_id} on the command line instead of --config")
    else:
        if not env:
            raise DPDUserError("dpd sweep needs --env (repeatable) or --config FILE")
        if seeds <= 0:
            raise DPDUserError(f"--seeds must be positive, got {seeds}")
        from dpd.experiments.sweep import MAX_TRIALS
        if seeds > MAX_TRIALS:  # before the list of seeds is made
            raise DPDUserError(f"--seeds {seeds:,}: dpd sweep runs at most {MAX_TRIALS:,} trials (each a training run);"
                               " split it into several sweeps")
        given: dict[str, Any] = {"algos": algo, "variants": method, "alphas": alpha}  # not given: SweepSpec's
        spec = SweepSpec(envs=env, total_steps=total_steps, seeds=list(range(seeds)), preset=preset,
                         overrides=set_ or [], **{k: v for k, v in given.items() if v})
    if engine is not None:  # as an override of every run: the sweep file's record says which engine trained it
        spec.overrides = [*spec.overrides, f"engine={engine}"]
    result = run_sweep(spec, out, backend=backend, workers=workers, address=address, on_update=_SweepView(),
                       pack_size=pack_size)
    for name, error in result.failed.items():
        _echo(f"dpd sweep: {name} failed: {error}")
    _echo(f"dpd sweep: {len(result.finished)} finished, {len(result.skipped)} already done, {len(result.failed)} failed"
          f" -> {out}; next: dpd report {out}")
    if result.stopped_by is not None:
        _echo(f"dpd sweep: {result.stopped_by}: stopped; {len(result.interrupted)} running trial(s) checkpointed;"
              f" run the same command again to resume (dpd status {out} shows where it stands)")
        _exit_interrupted(result.stopped_by)
    if result.failed:
        raise typer.Exit(1)


@app.command()
def report(
    sweep_dirs: Annotated[list[Path], typer.Argument(
        help="a sweep folder (finished or still running), or several run with the same budget, preset and overrides",
    )],
    out: Annotated[Path | None, typer.Option(help="report folder (default: SWEEP/report; required for several)")] = None,
) -> None:
    """Write SWEEP/report/report.md: learning curves, a Table-1 style table, IQM and P(improvement) with bootstrap CIs."""
    from dpd.experiments.report import write_report

    path = write_report(sweep_dirs, out)
    typer.echo(str(path))


@app.command()
def status(
    folder: Annotated[Path, typer.Argument(help="a sweep folder (dpd sweep --out) or a run folder")],
    all_trials: Annotated[bool, typer.Option("--all", help="list finished and pending trials too")] = False,
) -> None:
    """Where a sweep or a run stands, read from its folder (nothing written): finished, running (and how far),
    stopped part-way, failed (and why), pending. Safe while the sweep runs."""
    from dpd.experiments.status import STATES, describe, run_state, sweep_state
    from dpd.names import CONFIG_FILE, SWEEP_FILE

    if not folder.is_dir():
        raise DPDUserError(f"{folder} is not a folder; give a dpd sweep --out folder or a run folder")
    if not (folder / SWEEP_FILE).is_file():
        if not (folder / CONFIG_FILE).is_file():
            raise DPDUserError(f"{folder} is neither a sweep folder ({SWEEP_FILE}) nor a run folder ({CONFIG_FILE})")
        t = run_state(folder)
        typer.echo(describe(t))
        if t.state == "unfinished":
            typer.echo(f"next: dpd train --resume {folder}" if t.checkpoint else "next: start it again with --overwrite")
        return
    state = sweep_state(folder)
    counts = ", ".join(f"{state.counts[s]} {s}" for s in STATES if state.counts[s] or s in ("finished", "pending"))
    if state.sweep_pid:
        by = f"a dpd sweep is running it (pid {state.sweep_pid})"
    elif state.counts["running"]:  # a sweep of a dpd version before sweep locks, or trials trained by hand
        by = "its folder is not locked by a dpd sweep, but trials are being trained"
    else:
        by = "no dpd sweep is running it"
    typer.echo(f"{folder}: {len(state.trials)} trials: {counts}; {by}")
    for t in state.trials:
        if all_trials or t.state not in ("finished", "pending"):
            typer.echo("  " + describe(t))
    if state.counts["finished"] == len(state.trials):
        typer.echo(f"next: dpd report {folder}")
    elif state.sweep_pid is None and not state.counts["running"]:
        typer.echo("next: run the same dpd sweep command again (finished trials are skipped, stopped ones resume)")


def _auto_parallel(method: str) -> bool:
    """``dpd train``'s default mode: parallel students where the process may use >= 2 cores (measured: 0.55x the
    wall time of the vanilla baseline on 2 cores, docs/performance.md), else sequential."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return method != "vanilla" and cores >= 2


@app.command()
def analyze(
    run: Annotated[Path, typer.Argument(help="a finished DPD run folder (with snapshots)")],
    against: Annotated[
        tuple[Path, Path] | None,
        typer.Option(help="two finished vanilla runs (same env and algo): their action distance, for comparison"),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="output folder (default: RUN/analysis)")] = None,
    states: Annotated[int, typer.Option(help="states drawn from a rollout of the better student")] = 100,
    value_states: Annotated[int, typer.Option(help="of those, how many the value plot shows")] = 10,
    seed: Annotated[int, typer.Option(help="seed of the rollout and of the state draw")] = 0,
    env: Annotated[str | None, typer.Option("--env", help=ENV_AGAIN)] = None,
) -> None:
    """Figure 3 of the paper: each student's values and the two students' action distance at early / middle /
    late snapshots (vs two vanilla runs with --against). Writes analysis.json and figure3.png."""
    from dpd.experiments.analyze import analyze as run_analysis

    result = run_analysis(run, against, out, n_states=states, n_value_states=value_states, seed=seed, env=env)
    has_vanilla = against is not None
    typer.echo(f"{'total env steps':>16} {'mean V student0':>16} {'mean V student1':>16} {'s0 higher':>10} "
               f"{'dist DPD':>9}" + (f" {'dist vanilla':>13}" if has_vanilla else ""))
    for st in result["stages"]:
        typer.echo(f"{st['total_env_steps']:>16,} {st['mean_value'][STUDENTS[0]]:>16.2f} "
                   f"{st['mean_value'][STUDENTS[1]]:>16.2f} {st['share_student0_higher']:>10.0%} "
                   f"{st['mean_env_action_distance_dpd']:>9.3f}"
                   + (f" {st['mean_env_action_distance_vanilla']:>13.3f}" if has_vanilla else ""))
    for path in result["files"]:
        typer.echo(path)


@app.command()
def calibrate(
    run: Annotated[Path, typer.Argument(help="a finished pair run (dpd or independent) of a MuJoCo task, with snapshots")],
    states: Annotated[int, typer.Option(help="states per window, drawn from the peer's recorded window")] = 200,
    rollouts: Annotated[int, typer.Option(help="Monte-Carlo rollouts per policy and state (stochastic policies)")] = 16,
    max_rollouts: Annotated[int, typer.Option(help="K is raised up to this where under half the states are resolved")
                            ] = 64,
    snapshot: Annotated[int | None, typer.Option(help="only the snapshot at this many student steps")] = None,
    out: Annotated[Path | None, typer.Option(help="output folder (default: RUN/calibration)")] = None,
    seed: Annotated[int, typer.Option(help="seed of the state draw and the rollouts' action noise")] = 0,
    env: Annotated[str | None, typer.Option("--env", help=ENV_AGAIN)] = None,
) -> None:
    """Is xi informative? Each estimator of xi (two_critics, debiased, own_critic off-policy) and each critic
    against Monte-Carlo truth from restored simulator states, at every snapshot (a MuJoCo pair trained with
    --set record_sim_states=true). Writes calibration.json, .md, .png and the per-state arrays."""
    import torch

    from dpd.experiments.calibrate import calibrate as run_calibration

    torch.set_num_threads(1)  # batched forward passes of small MLPs: one thread (two side by side: no oversubscription)
    result = run_calibration(run, out, n_states=states, rollouts=rollouts, max_rollouts=max_rollouts,
                             snapshot=snapshot, seed=seed, log=lambda m: typer.echo(m, err=True), env=env)
    typer.echo(f"{'estimator':<12} {'sign agreement':>15} {'resolved':>10} {'rho':>6} {'weight on worse':>16}")
    for name, p in result["pooled"].items():
        typer.echo(f"{name:<12} {p['sign_agreement']:>15.3f} {p['resolved']:>10} {p['spearman']:>6.2f} "
                   f"{p['weight_on_truly_worse']:>16.2f}")
    for path in result["files"]:
        typer.echo(path)


class _SweepView:
    """One status line whenever it changes: done / running / failed, the running runs' steps, and the time left at
    the rate this sweep has trained so far (after its first minute; a resumed sweep counts from where it resumed)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._last = ""
        self._clock = clock
        self._start: tuple[float, int] | None = None  # (time, env steps done) at the first snapshot

    def __call__(self, snap: dict[str, Any]) -> None:
        running = snap["running"]
        steps = sum(running.values())
        # finished and failed runs count with their whole budget: what is left is the other runs' steps
        trained = (snap["done"] + snap["failed"]) * snap["budget"] + steps
        now = self._clock()
        if self._start is None:
            self._start = (now, trained)
        line = (f"dpd sweep: {snap['done']}/{snap['total']} done, {len(running)} running, {snap['failed']} failed"
                + (f"; running runs at {steps / max(1, len(running) * snap['budget']):.0%} of their steps" if running
                   else ""))
        elapsed, progress = now - self._start[0], trained - self._start[1]
        if running and elapsed >= 60 and progress > 0:
            line += f"; {_duration((snap['total'] * snap['budget'] - trained) * elapsed / progress)} left at this rate"
        if line != self._last:
            _echo(line)
            self._last = line


def _duration(seconds: float) -> str:
    """``~3.2 h`` from an hour up, else ``~12 min`` (at least 1)."""
    return f"~{seconds / 3600:.1f} h" if seconds >= 3600 else f"~{max(1, round(seconds / 60))} min"


def _print_table(rows: list[tuple[str, dict[str, Any]]]) -> None:
    typer.echo(f"{'run':<40} {'method':<11} {'learner':<9} {'env steps':>10} {'final eval':>11} {'best eval':>10}")
    for run, s in rows:
        for name, learner in s["learners"].items():
            final, best = (_number(learner.get(k)) for k in ("final_eval_return", "best_eval_return"))
            method = s.get("method", "?")
            typer.echo(f"{_short(run):<40} {method:<11} {name:<9} {learner['env_steps']:>10d} {final:>11} {best:>10}")


def _number(x: float | None) -> str:
    """A return for the table; ``—`` where there is none (evaluation off: eval_freq=0)."""
    return "—" if x is None else f"{x:.1f}"


def _short(text: str, width: int = 40) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1) :]


#: a command said why it stops with 130 (a run's checkpoint, a sweep's state); main() adds nothing then
_interrupt_reported = False


def _exit_interrupted(signal_name: str | None) -> NoReturn:
    """Exit 130 (Ctrl-C) or 143 (SIGTERM) after the command printed its own one-line account of the stop."""
    global _interrupt_reported
    _interrupt_reported = True
    raise typer.Exit(exit_code(signal_name))


def main(argv: list[str] | None = None) -> int:
    """Entry point: returns the exit status (0 ok, 2 user error, 130 interrupted by Ctrl-C, 143 by SIGTERM)."""
    global _interrupt_reported
    _interrupt_reported = False
    try:
        result = app(args=argv, prog_name="dpd", standalone_mode=False)
        code = int(result) if isinstance(result, int) else 0
        if code in (130, 143) and not _interrupt_reported:  # typer turns a Ctrl-C it catches into a silent 130
            _echo("dpd: interrupted")
            return exit_code()
        return code
    except typer.Exit as exc:
        return int(exc.exit_code)
    except (KeyboardInterrupt, typer.Abort) as exc:
        _echo("dpd: interrupted")
        return exit_code("SIGTERM" if isinstance(exc, Terminated) else None)  # click's Abort: exit_code() reads it
    except typer.TyperException as exc:  # usage errors of the command line (typer's click)
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError":
            _echo(ctx.get_help() if ctx is not None else "usage: dpd COMMAND [OPTIONS] (see dpd --help)")
            return 2
        cmd = ctx.command_path if ctx is not None else "dpd"
        _echo(f"{cmd}: error: {exc.format_message()} (see {cmd} --help)")
        return 2
    except DPDUserError as exc:
        _echo(f"dpd: error: {exc}")  # one printable line already (DPDUserError folds its message)
        return 2
    except TrainingDiverged as exc:
        _echo(f"dpd: training stopped: {exc}")
        return 1
    except OSError as exc:  # the machine, not the code: say which file and why, in one line
        line = machine_error(exc)
        if line is None:
            raise
        _echo(f"dpd: error: {line}; free space or choose another --out (files written so far are complete: writes"
              " are atomic)")
        return 2


if __name__ == "__main__":  # python -m dpd.cli: the console script's signal handling too
    from dpd._entry import main as entry_main

    entry_main()
