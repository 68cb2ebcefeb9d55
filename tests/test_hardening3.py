"""Hardening, round 3: D1-D27 of the hostile pass as strict-xfail tests (D1 is tested elsewhere).

Each test asserts the DESIRED behaviour, so it fails today with an AssertionError that shows the defect. When a
defect is fixed, its test passes and strict xfail turns it red: remove the marker then (and list the case in
docs/bad-input.md). Hangs and memory blow-ups run in a subprocess with a wall-clock timeout and an address-space
limit; signals are sent at a known moment by a patched hook, not after a sleep."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import multiprocessing as mp
import os
import resource
import shutil
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from stable_baselines3.common.callbacks import BaseCallback

from dpd import DPD, DPDUserError, TrainConfig, train
from dpd.cli import main

pytestmark = pytest.mark.extended  # make test-extended (CI runs it after make test)

REPO = Path(__file__).resolve().parents[1]
CARTPOLE = ["--env", "CartPole-v1", "--total-steps", "1024", "--sequential", "--no-progress", "--set", "eval_freq=512",
            "--set", "eval_episodes=2"]
#: a module-level lambda: pickle cannot find it by name (parallel mode sends callbacks to a second process)
LAMBDA_CALLBACK = lambda name: None  # noqa: E731


def cli(capsys, *args: str) -> tuple[int | None, str]:
    """``dpd ARGS`` in this process: (exit status, stderr); an exception escaping main is (None, its traceback)."""
    import traceback

    try:
        code = main(list(args))
    except BaseException:
        code, tb = None, traceback.format_exc()
        return code, capsys.readouterr().err + tb
    return code, capsys.readouterr().err


def one_line(err: str) -> bool:
    """The error is one line (a run that started also logged its 'dpd: training ...' line before it)."""
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("dpd: error")]
    return len(errors) == 1 and errors[0] == lines[-1] and "Traceback" not in err


def refused(err: str) -> str:
    """For an assert message: the last lines of stderr."""
    return "\n".join(err.strip().splitlines()[-3:])[-1500:]


def api_error(fn) -> tuple[bool, str]:
    """(True, message) where ``fn`` raised DPDUserError; (False, what happened) otherwise."""
    try:
        fn()
    except DPDUserError as exc:
        return True, str(exc)
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"[:1500]
    return False, "accepted (no error)"


def limit_memory(gib: float = 3.0):
    """preexec_fn: an address-space limit, so a runaway child fails instead of eating the machine."""
    def apply() -> None:
        limit = int(gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return apply


def run_dpd(args: list[str], timeout: float, cwd: Path, gib: float = 3.0) -> tuple[int | None, str, float]:
    """``dpd ARGS`` in a subprocess under a memory limit: (exit status or None when killed at ``timeout``, stderr,
    seconds)."""
    started = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "dpd.cli", *args], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, preexec_fn=limit_memory(gib))
    try:
        _, err = proc.communicate(timeout=timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        code = None
    return code, err, time.time() - started


def copy_run(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    return to


@pytest.fixture(scope="module")
def cartpole_pair(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished DPD pair on CartPole (1024 total steps, snapshots at 10/50/100%)."""
    run = tmp_path_factory.mktemp("h3") / "pair"
    assert main(["train", *CARTPOLE, "--out", str(run)]) == 0
    return run


@pytest.fixture(scope="module")
def pendulum_pair(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished PPO pair on InvertedPendulum (MuJoCo: its windows carry simulator states), one snapshot."""
    run = tmp_path_factory.mktemp("h3cal") / "pair"
    train(TrainConfig(env_id="InvertedPendulum-v5", algo="ppo", total_steps=512, eval_freq=0, snapshots=[1.0],
                      tensorboard=False, preset="none", record_sim_states=True,
                      algo_kwargs={"n_steps": 128, "batch_size": 64, "n_epochs": 1,
                                   "policy_kwargs": {"net_arch": [16]}}), run)
    return run


CALIBRATE = ["--states", "6", "--rollouts", "2", "--max-rollouts", "4"]


# ---------------------------------------------------------------------- data loss
@pytest.mark.parametrize("command, mine", [("analyze", "analysis.json"), ("analyze", "figure3.png"),
                                           ("calibrate", "calibration.json"), ("calibrate", "calibration.md")])
def test_d3_analyze_and_calibrate_refuse_to_replace_a_users_file_in_out(cartpole_pair, pendulum_pair, tmp_path,
                                                                         capsys, command, mine):
    folder = tmp_path / "mydocs"
    folder.mkdir()
    (folder / mine).write_text("my own notes")
    if command == "analyze":
        code, err = cli(capsys, "analyze", str(cartpole_pair), "--states", "10", "--out", str(folder))
    else:
        code, err = cli(capsys, "calibrate", str(pendulum_pair), *CALIBRATE, "--out", str(folder))
    kept = (folder / mine).read_bytes() == b"my own notes"
    assert kept, f"the user's {mine} was replaced by dpd {command} (exit {code})"
    assert code == 2 and one_line(err), refused(err)


#: a child ``dpd`` whose first learner receives SIGNAL as its final evaluation starts (after the last iteration)
SIGNAL_IN_FINAL_EVALUATION = """
import os, signal, sys
from dpd.training.learner import Learner

finish = Learner.finish

def finish_after_a_signal(self):
    if self.name == "student0":
        os.kill(os.getpid(), getattr(signal, os.environ["DPD_TEST_SIGNAL"]))
    return finish(self)

Learner.finish = finish_after_a_signal
from dpd.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_d2_a_signal_during_the_final_evaluation_leaves_a_finished_or_resumable_run(tmp_path, capsys, sig):
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", SIGNAL_IN_FINAL_EVALUATION, "train", *CARTPOLE, "--out", str(run)],
                          cwd=tmp_path, env={**os.environ, "DPD_TEST_SIGNAL": sig}, capture_output=True, text=True,
                          timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    finished = (run / "summary.json").is_file()
    resumed = ""
    if not finished:
        code, err = cli(capsys, "train", "--resume", str(run), "--no-progress")
        finished, resumed = code == 0 and (run / "summary.json").is_file(), f"; --resume: exit {code}: {refused(err)}"
    assert finished, (f"{sig} in the final evaluation: exit {proc.returncode}, left {sorted(p.name for p in run.iterdir())}"
                      f", said {lines[-1:]}{resumed}")
    assert proc.returncode in (0, {"SIGINT": 130, "SIGTERM": 143}[sig]) and lines and lines[-1].startswith("dpd") and (
        "Traceback" not in proc.stderr), (
        f"exit {proc.returncode}, said {lines[-2:]}")


# ---------------------------------------------------------------------- wrong results
def test_d4_analyze_against_vanilla_runs_of_another_budget_is_refused_or_compares_equal_total_steps(
        cartpole_pair, tmp_path, capsys):
    vanilla = []
    for seed in (0, 1):  # half the DPD run's budget: their snapshots sit at half its total env steps
        run = tmp_path / f"vanilla{seed}"
        train(TrainConfig(env_id="CartPole-v1", method="vanilla", total_steps=512, seed=seed, eval_freq=0,
                          tensorboard=False), run)
        vanilla.append(str(run))
    out = tmp_path / "an"
    code, err = cli(capsys, "analyze", str(cartpole_pair), "--against", *vanilla, "--states", "10", "--out", str(out))
    if code == 2 and one_line(err):
        return  # refused: fine
    assert code == 0, refused(err)
    stages = json.loads((out / "analysis.json").read_text())["stages"]
    compared = [(st["total_env_steps"], st["vanilla_steps"]) for st in stages]
    assert all(v == [total, total] for total, v in compared), f"(DPD total env steps, vanilla steps): {compared}"


def test_d5_an_episode_train_freq_keeps_the_pair_within_the_budget(tmp_path):
    total = 1000
    config = TrainConfig(env_id="Pendulum-v1", algo="td3", total_steps=total, iteration_steps=200, eval_freq=0,
                         preset="none", snapshots=[], tensorboard=False,
                         algo_kwargs={"learning_starts": 100, "gradient_steps": 2, "batch_size": 32,
                                      "train_freq": (1, "episode"), "policy_kwargs": {"net_arch": [16]}})
    try:
        summary = train(config, tmp_path / "run")
    except DPDUserError:
        return  # refused like a step train_freq that would overshoot: fine
    steps = {name: s["env_steps"] for name, s in summary["learners"].items()}
    assert sum(steps.values()) <= total * 1.05, (
        f"total_steps {total}: the pair trained {steps} = {sum(steps.values())} env steps (vanilla trains {total})")


def test_d6_summary_counts_the_steps_taken_before_a_callback_stopped_the_run(tmp_path):
    from stable_baselines3.common.callbacks import BaseCallback

    class StopEarly(BaseCallback):
        def _on_step(self) -> bool:
            return self.num_timesteps < 100

    run = tmp_path / "run"
    train(TrainConfig(env_id="Pendulum-v1", algo="td3", total_steps=1000, iteration_steps=200, eval_freq=0,
                      preset="none", snapshots=[], tensorboard=False,
                      algo_kwargs={"learning_starts": 50, "gradient_steps": 2, "batch_size": 32,
                                   "policy_kwargs": {"net_arch": [16]}}),
          run, callbacks=lambda name: StopEarly())
    summary = json.loads((run / "summary.json").read_text())
    taken = {name: s["env_steps"] for name, s in summary["learners"].items()}
    assert summary["status"] == "stopped_by_callback"
    assert summary["total_env_steps"] == sum(taken.values()), (
        f"summary.json: total_env_steps {summary['total_env_steps']}, the learners took {taken}")


def test_d7_saving_after_a_failed_learn_is_refused_or_writes_a_summary(tmp_path):
    from stable_baselines3.common.callbacks import BaseCallback

    class Boom(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps > 100:
                raise RuntimeError("boom")
            return True

    model = DPD("ppo", "CartPole-v1", eval_freq=0, snapshots=[], tensorboard=False)
    with pytest.raises(RuntimeError, match="boom"):
        model.learn(1024, callback=lambda name: Boom())
    ok, _ = api_error(lambda: model.save(tmp_path / "saved"))
    if ok:
        return  # refused: fine
    summary = json.loads((tmp_path / "saved" / "summary.json").read_text())
    assert isinstance(summary, dict), f"save() after a failed learn() wrote summary.json = {summary!r}"


#: README, "Exactness": the wall-clock columns that naturally differ between a resumed and an uninterrupted run
WALL_CLOCK = {"time/fps", "time/time_elapsed"}


def test_d8_a_resumed_runs_progress_csv_equals_an_uninterrupted_runs(tmp_path):
    from stop_helpers import SignalAt

    from dpd.errors import TrainingInterrupted
    from dpd.training import resume

    def config() -> TrainConfig:
        return TrainConfig(env_id="CartPole-v1", total_steps=2048, eval_freq=512, eval_episodes=2, parallel=False,
                           tensorboard=False)

    a, b = tmp_path / "a", tmp_path / "b"
    train(config(), a)
    with pytest.raises(TrainingInterrupted):
        train(config(), b, callbacks=lambda name: SignalAt(600, signal.SIGTERM) if name == "student0" else None)
    resume(b)
    differ = []
    for name in ("student0", "student1"):
        tables = []
        for run in (a, b):
            with open(run / name / "progress.csv", newline="") as fh:
                reader = csv.reader(fh)
                header = next(reader)
                keep = [i for i, column in enumerate(header) if column not in WALL_CLOCK]
                tables.append([[header[i] for i in keep]] + [[row[i] for i in keep] for row in reader])
        ta, tb = tables
        if ta[0] != tb[0]:
            differ.append(f"{name}: column order {ta[0]} vs {tb[0]}")
        else:
            differ += [f"{name} row {r}: {ta[0][c]} {x!r} vs {y!r}"
                       for r, (ra, rb) in enumerate(zip(ta[1:], tb[1:], strict=False))
                       for c, (x, y) in enumerate(zip(ra, rb, strict=False)) if x != y]
            if len(ta) != len(tb):
                differ.append(f"{name}: {len(ta) - 1} rows vs {len(tb) - 1}")
    assert not differ, "uninterrupted vs resumed progress.csv: " + "; ".join(differ[:6])


# ---------------------------------------------------------------------- hangs and memory
def alias_bomb(key: str) -> str:
    """A sweep file of ~350 bytes whose ``key`` expands to 9**9 (387 million) items."""
    items, previous = ["&a [x,x,x,x,x,x,x,x,x]" if key == "envs" else "&a [1,1,1,1,1,1,1,1,1]"], "a"
    for name in "bcdefghi":
        items.append(f"&{name} [" + ",".join([f"*{previous}"] * 9) + "]")
        previous = name
    return f"total_steps: 1024\n{key}: [{', '.join(items)}]\n"


@pytest.mark.parametrize("key", ["envs", "seeds"])
def test_d9_a_yaml_alias_bomb_in_a_sweep_file_is_refused_quickly(tmp_path, key):
    bomb = tmp_path / "sweep.yaml"
    bomb.write_text(alias_bomb(key) if key == "envs" else "envs: [CartPole-v1]\n" + alias_bomb(key))
    assert len(bomb.read_bytes()) < 400
    code, err, seconds = run_dpd(["sweep", "--config", str(bomb), "--out", str(tmp_path / "sw")], timeout=60,
                                 cwd=tmp_path)
    assert code is not None, f"still running after {seconds:.0f} s (killed); stderr: {err[-300:]!r}"
    assert code == 2 and one_line(err), f"exit {code}: {refused(err)[-500:]}"


def test_d10_a_sweep_of_a_million_seeds_is_refused_or_starts_within_seconds(tmp_path):
    out = tmp_path / "sw"
    proc = subprocess.Popen([sys.executable, "-m", "dpd.cli", "sweep", "--env", "CartPole-v1", "--total-steps", "1024",
                             "--seeds", "1000000", "--workers", "1", "--set", "eval_freq=0", "--out", str(out)],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=limit_memory(4))
    try:
        _, err = proc.communicate(timeout=45)  # a loaded machine starts python slowly; the defect took minutes
        finished = True
    except subprocess.TimeoutExpired:
        finished = False
        proc.send_signal(signal.SIGINT)  # a sweep that started: stop it cleanly
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    if finished:
        assert proc.returncode == 2 and one_line(err), f"exit {proc.returncode}: {refused(err)}"
    else:  # started: said so and wrote its sweep folder within the 12 s
        assert (out / "sweep.yaml").is_file() and "dpd sweep:" in err, (
            f"after 12 s: nothing written to {out} (exists: {out.exists()}), stderr {err[-300:]!r}")


# ---------------------------------------------------------------------- tracebacks -> one line
@pytest.mark.parametrize("where", ["config.yaml", "progress.csv"])
def test_d11_status_of_a_run_with_an_infinite_number_is_one_line_or_a_status(cartpole_pair, tmp_path, capsys, where):
    run = copy_run(cartpole_pair, tmp_path / "run")
    (run / "summary.json").unlink()  # a run stopped part-way
    if where == "config.yaml":
        config = (run / "config.yaml").read_text()
        (run / "config.yaml").write_text("\n".join("total_steps: .inf" if line.startswith("total_steps:") else line
                                                   for line in config.splitlines()) + "\n")
    else:
        path = run / "student0" / "progress.csv"
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        rows[-1]["time/total_timesteps"] = "inf"
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        path.write_text(buffer.getvalue())
    code, err = cli(capsys, "status", str(run))
    assert code in (0, 2) and "Traceback" not in err, f"exit {code}: {refused(err)}"
    assert code == 0 or one_line(err), refused(err)


def damage_windows(run: Path, case: str) -> None:
    """Edit both students' recorded windows (window.npz) of a calibration run the way ``case`` says."""
    for window in sorted(run.glob("student*/snapshots/*/window.npz")):
        with np.load(window) as data:
            w = {k: data[k] for k in data.files}
        if case == "huge_header":  # states.npy's header claims 10**12 rows; the data are the 257 real ones
            buffer = io.BytesIO()
            np.save(buffer, w.pop("states"))
            rows = len(np.load(window)["states"])
            raw = buffer.getvalue().replace(f"({rows}, ".encode(), b"(1000000000000, ", 1)
            np.savez(window, **w)
            with zipfile.ZipFile(window, "a") as z:
                z.writestr("states.npy", raw)
            continue
        if case == "sim_states_width":
            w["sim_states"] = w["sim_states"][:, :5]
        elif case == "states_width":
            w["states"] = w["states"][:, :2]
        elif case == "gamma_1":
            w["gamma"] = np.array(1.0)
        elif case == "gamma_vector":
            w["gamma"] = np.array([0.99, 0.9])
        elif case == "nan_sim_states":
            w["sim_states"] = np.full_like(w["sim_states"], np.nan)
        elif case in ("0_states", "2_states"):
            n = int(case[0])
            w = {k: (v[:n] if v.ndim else v) for k, v in w.items()}
        elif case == "nan_states":
            w["states"] = np.full_like(w["states"], np.nan)
        np.savez(window, **w)


@pytest.mark.parametrize("case", ["huge_header", "sim_states_width", "states_width", "gamma_1", "gamma_vector",
                                  "nan_sim_states"])
def test_d12_calibrate_on_a_damaged_window_is_one_line(pendulum_pair, tmp_path, capsys, case):
    run = copy_run(pendulum_pair, tmp_path / "run")
    damage_windows(run, case)
    code, err = cli(capsys, "calibrate", str(run), *CALIBRATE)
    assert code == 2 and one_line(err), f"exit {code}: {refused(err)}"


@pytest.mark.parametrize("case", ["0_states", "2_states", "nan_states"])
def test_d26_calibrate_on_too_few_or_nan_states_is_one_line(pendulum_pair, tmp_path, capsys, case):
    run = copy_run(pendulum_pair, tmp_path / "run")
    damage_windows(run, case)
    code, err = cli(capsys, "calibrate", str(run), *CALIBRATE)
    written = run / "calibration" / "calibration.json"
    assert code == 2 and one_line(err), (
        f"exit {code}" + (f", calibration.json pooled: {json.loads(written.read_text())['pooled']}"
                          if written.is_file() else "") + f"; {refused(err)}")


def _sgd_policy_kwargs(out: Path) -> None:
    import torch

    DPD("ppo", "CartPole-v1", policy_kwargs={"optimizer_class": torch.optim.SGD}, eval_freq=0, run_dir=out).learn(512)


def _callable_learning_rate(out: Path) -> None:
    DPD("ppo", "CartPole-v1", learning_rate=lambda progress: 1e-3, eval_freq=0, run_dir=out).learn(512)


def _train_with_sgd(out: Path) -> None:
    import torch

    train(TrainConfig(env_id="CartPole-v1", total_steps=512, eval_freq=0,
                      algo_kwargs={"policy_kwargs": {"optimizer_class": torch.optim.SGD}}), out)


@pytest.mark.parametrize("make", [_sgd_policy_kwargs, _callable_learning_rate, _train_with_sgd],
                         ids=["DPD_optimizer_class", "DPD_callable_learning_rate", "train_optimizer_class"])
def test_d13_arguments_a_config_file_cannot_store_are_one_line_and_make_no_folder(tmp_path, make):
    out = tmp_path / "run"
    ok, said = api_error(lambda: make(out))
    assert ok and "\n" not in said, said
    assert not out.exists(), f"left behind: {sorted(p.name for p in out.iterdir())}"


def test_d14_an_env_factory_whose_spaces_change_between_calls_is_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "shifting_envs.py").write_text(textwrap.dedent("""
        import gymnasium as gym
        import numpy as np

        calls = [0]

        def make_env():
            calls[0] += 1
            env = gym.make("Pendulum-v1")
            if calls[0] % 2 == 0:  # every other copy observes twice as much
                space = gym.spaces.Box(-np.inf, np.inf, (6,), np.float32)
                env = gym.wrappers.TransformObservation(env, lambda o: np.concatenate([o, o]), space)
            return env
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    code, err = cli(capsys, "train", "--env", "shifting_envs:make_env", "--total-steps", "4096", "--sequential",
                    "--no-progress", "--set", "eval_freq=0", "--out", str(tmp_path / "run"))
    assert code == 2 and one_line(err), f"exit {code}, {len(err.splitlines())} lines: {refused(err)}"


def test_d15_a_distill_window_too_large_for_memory_is_one_line_and_makes_no_folder(tmp_path, capsys):
    out = tmp_path / "run"
    code, err = cli(capsys, "train", *CARTPOLE, "--set", "distill_window=1e11", "--out", str(out))
    assert code == 2 and one_line(err), f"exit {code}: {refused(err)}"
    assert not out.exists(), f"left behind: {sorted(p.name for p in out.iterdir())}"


def test_d16_a_stop_file_that_is_a_folder_is_one_line(tmp_path, capsys):
    from dpd.experiments.sweep import SweepSpec, prepare_sweep_dir
    from dpd.names import RUNS_DIR, STOP_FILE

    spec_file = tmp_path / "sweep.yaml"
    spec_file.write_text("envs: [CartPole-v1]\ntotal_steps: 512\nvariants: [vanilla]\nseeds: [0]\n"
                         "overrides: [eval_freq=0]\n")
    out = tmp_path / "sw"
    prepare_sweep_dir(out, SweepSpec.from_dict(yaml.safe_load(spec_file.read_text())))
    (out / RUNS_DIR / STOP_FILE).mkdir()
    code, err = cli(capsys, "sweep", "--config", str(spec_file), "--out", str(out), "--workers", "1")
    assert code in (0, 2) and "Traceback" not in err, f"exit {code}: {refused(err)}"
    assert code == 0 or one_line(err), refused(err)


@pytest.mark.parametrize("args", [
    ["--env", "CartPole-v1", "--set", "algo.batch_size=1"],
    ["--env", "CartPole-v1", "--set", "algo.policy_kwargs.squash_output=true"],
    ["--env", "Pendulum-v1", "--algo", "td3", "--set", "algo.train_freq=[1,episode]"],
], ids=["batch_size_1", "squash_output", "train_freq_list"])  # fmt: skip
def test_d18_arguments_sb3_refuses_leave_no_run_folder(tmp_path, capsys, args):
    out = tmp_path / "run"
    code, err = cli(capsys, "train", *args, "--total-steps", "2048", "--sequential", "--no-progress",
                    "--set", "eval_freq=0", "--out", str(out))
    assert code == 2 and one_line(err), refused(err)
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*")) if out.exists() else []
    assert not left, f"{refused(err)}; left in --out: {left}"


def restore_archive(tmp_path: Path, members: dict[str, bytes], target: Path) -> subprocess.CompletedProcess:
    """``studies/why-and-ddpg/archive.py restore`` of a tar.gz holding ``members``, into ``target``."""
    archive = tmp_path / "study.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return subprocess.run([sys.executable, str(REPO / "studies" / "why-and-ddpg" / "archive.py"), "restore",
                           str(archive), str(target)], capture_output=True, text=True, timeout=60, cwd=tmp_path)


@pytest.mark.studies  # studies/why-and-ddpg/archive.py: make test-studies
def test_d17_archive_restore_of_an_over_long_member_name_is_refused_and_writes_nothing(tmp_path):
    target = tmp_path / "runs"
    done = restore_archive(tmp_path, {"sw/sweep.yaml": b"envs: [CartPole-v1]\n",
                                      f"sw/runs/{'r' * 300}/summary.json": b"{}"}, target)
    written = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()) if target.exists() else []
    assert not written and "Traceback" not in done.stderr, (
        f"exit {done.returncode}, written {written}; {done.stderr.strip().splitlines()[-1:]}")


@pytest.mark.studies  # studies/why-and-ddpg/archive.py: make test-studies
def test_d20_archive_restore_never_writes_through_a_symlink_in_the_target(tmp_path):
    target = tmp_path / "runs"
    (target / "sw").mkdir(parents=True)
    outside = tmp_path / "elsewhere" / "victim.txt"
    outside.parent.mkdir()
    (target / "sw" / "sweep.yaml").symlink_to(outside)  # dangling: exists() says False
    done = restore_archive(tmp_path, {"sw/sweep.yaml": b"envs: [CartPole-v1]\n"}, target)
    assert not outside.exists(), f"exit {done.returncode}: restore wrote {outside} through the link: {outside.read_text()!r}"


# ---------------------------------------------------------------------- unclear messages, the Python API
def test_d21_evaluate_has_the_out_option_its_message_suggests_and_never_replaces_a_users_file(cartpole_pair, tmp_path,
                                                                                            capsys):
    run = copy_run(cartpole_pair, tmp_path / "run")
    (run / "reevaluation.json").mkdir()  # where evaluate writes its results: not writable as a file
    code, err = cli(capsys, "evaluate", str(run), "--episodes", "1")
    assert code == 2 and one_line(err) and "pass --out FILE" in err, refused(err)
    elsewhere = tmp_path / "results.json"
    assert cli(capsys, "evaluate", str(run), "--episodes", "1", "--out", str(elsewhere))[0] == 0  # the suggestion works
    assert json.loads(elsewhere.read_text())["episodes"] == 1
    assert cli(capsys, "evaluate", str(run), "--episodes", "1", "--out", str(elsewhere))[0] == 0  # its own: again
    mine = tmp_path / "mine.json"
    mine.write_text('{"my": "notes"}')
    code, err = cli(capsys, "evaluate", str(run), "--episodes", "1", "--out", str(mine))
    assert code == 2 and one_line(err) and mine.read_text() == '{"my": "notes"}', refused(err)


@pytest.mark.parametrize("where", ["DPD", "TrainConfig"])
def test_d22_the_api_accepts_numpy_numbers(where):
    if where == "DPD":
        _, said = api_error(lambda: DPD("ppo", "CartPole-v1", seed=np.int64(3), n_steps=np.int64(64)))
    else:
        _, said = api_error(lambda: TrainConfig(env_id="CartPole-v1", seed=np.int64(3), total_steps=np.int64(2048)
                                                 ).resolve())
    assert said == "accepted (no error)", said


@pytest.mark.parametrize("steps", [float("nan"), float("inf"), 1024.7, "1024"], ids=["nan", "inf", "fraction", "str"])
def test_d23_learn_refuses_a_step_count_that_is_not_a_positive_integer(steps):
    model = DPD("ppo", "CartPole-v1", eval_freq=0, snapshots=[], tensorboard=False)
    ok, said = api_error(lambda: model.learn(steps))
    assert ok, f"learn({steps!r}): {said}"


def _out_words() -> None:
    Path("taken").mkdir()
    Path("taken", "notes.txt").write_text("mine")
    DPD("ppo", "CartPole-v1", eval_freq=0, run_dir="taken").learn(512)


def _unknown_learner() -> None:
    DPD("ppo", "CartPole-v1").predict(np.zeros(4, np.float32), learner="bogus")


def _policy_kwargs_not_a_dict() -> None:
    DPD("ppo", "CartPole-v1", policy_kwargs="notadict")


def _lambda_callback_in_parallel() -> None:
    model = DPD("ppo", "CartPole-v1", eval_freq=0, parallel=True, snapshots=[], tensorboard=False)
    try:
        model.learn(512, callback=LAMBDA_CALLBACK)
    finally:
        model.close()


@pytest.mark.parametrize("fn", [_out_words, _unknown_learner, _policy_kwargs_not_a_dict, _lambda_callback_in_parallel],
                         ids=["run_dir_not_empty", "predict_bogus_learner", "policy_kwargs_str", "lambda_parallel"])
def test_d24_api_errors_are_dpd_user_errors_in_the_apis_own_words(fn):
    ok, said = api_error(fn)
    assert ok, said
    assert "--" not in said, f"a command-line option in a Python API message: {said}"


def test_d25_loading_a_run_with_the_wrong_env_is_one_line(cartpole_pair):
    ok, said = api_error(lambda: DPD.load(cartpole_pair, env="Acrobot-v1"))
    assert ok and "\n" not in said, f"{len(said.splitlines())} lines: {said[:600]}"


def test_d27_an_env_id_with_a_bidi_control_character_is_escaped(tmp_path, capsys):
    code, err = cli(capsys, "train", "--env", "Cart\u202ePole-v1", "--out", str(tmp_path / "run"))
    assert code == 2 and one_line(err), refused(err)
    assert "\u202e" not in err, f"raw U+202E in: {err.strip()!r}"


class _FailingCallback(BaseCallback):
    def _on_step(self) -> bool:
        raise RuntimeError("student1's callback failed")


def fail_in_student1(name: str) -> BaseCallback | None:
    """A picklable callback factory (parallel mode sends it to student1's process)."""
    return _FailingCallback() if name == "student1" else None


def test_d19_a_failing_parallel_learn_leaves_no_process():
    model = DPD("ppo", "CartPole-v1", eval_freq=0, parallel=True, snapshots=[], tensorboard=False)
    try:
        with pytest.raises(Exception, match="student1's callback failed"):
            model.learn(1024, callback=fail_in_student1)
        deadline = time.time() + 1
        while mp.active_children() and time.time() < deadline:
            time.sleep(0.1)
        alive = [f"{p.name} (pid {p.pid})" for p in mp.active_children()]
    finally:
        model.close()  # the test's own cleanup: never leave the worker behind
    assert not alive, f"after learn() raised: still running {alive}"


# ---------------------------------------------------------------------- further hostile attempts (the closing note's)
@pytest.mark.parametrize("env_id, message, folder_left", [
    ("dpd_test_envs:DpdCloseRaises-v0", "raised RuntimeError in close(): close exploded", False),  # was a traceback
    ("dpd_test_envs:DpdStringObservations-v0", "observation of dtype <U1", False),  # was a traceback, folder left
    ("dpd_test_envs:DpdTerminatedNotABool-v0", "terminated='yes'", True),  # was accepted: every step ended an episode
])  # fmt: skip
def test_an_env_that_breaks_the_gymnasium_api_is_one_line(tmp_path, monkeypatch, capsys, env_id, message, folder_left):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    out = tmp_path / "run"
    code, err = cli(capsys, "train", "--env", env_id, "--total-steps", "1024", "--sequential", "--no-progress",
                    "--set", "eval_freq=0", "--set", "algo.n_steps=256", "--set", "algo.batch_size=64", "--out", str(out))
    assert code == 2 and one_line(err) and message in err, refused(err)
    assert out.exists() == folder_left  # a fault met only while training is recorded in RUN/error.txt (row 66)


# ---------------------------------------------------------------------- property 5 over generated values
def test_the_api_takes_any_python_or_numpy_number_or_refuses_in_one_line():
    """Generated values for learn()'s budget and for TrainConfig's int and float fields (Python and numpy numbers,
    bools, nan, inf, strings, huge values): each is accepted as a plain Python number of the field's type, or refused
    with a one-line DPDUserError; never another exception."""
    pytest.importorskip("hypothesis")
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from dpd.api import _budget

    numpy_ints = st.integers(-(2**31), 2**31 - 1).flatmap(
        lambda v: st.sampled_from([np.int32(v), np.int64(v), np.uint32(abs(v))]))
    numpy_floats = st.floats(allow_nan=True, allow_infinity=True, width=32).map(np.float32)
    values = st.one_of(st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.booleans(), numpy_ints,
                       numpy_floats, st.text(max_size=5), st.none(), st.just(np.bool_(True)))

    def one_line_or(kind: type, call):
        try:
            out = call()
        except DPDUserError as exc:
            assert "\n" not in str(exc)
            return None
        assert type(out) is kind, f"{out!r} stored as {type(out).__name__}"
        return out

    @settings(max_examples=400, deadline=None, derandomize=True)
    @given(values, st.sampled_from(["seed", "eval_episodes", "alpha", "distill_lr"]))
    def check(value, field):
        steps = one_line_or(int, lambda: _budget(value))
        if steps is not None:
            assert steps >= 1 and steps == value
        kind = float if field in ("alpha", "distill_lr") else int
        config = one_line_or(TrainConfig, lambda: TrainConfig(env_id="CartPole-v1").with_values(**{field: value}))
        if config is not None:
            stored = config.distill.alpha if field == "alpha" else (
                config.distill.lr if field == "distill_lr" else getattr(config, field))
            assert stored is None or type(stored) is kind, f"{field}={value!r} stored as {stored!r}"

    check()


# ---------------------------------------------------------------------- property 2 over generated moments
LIFECYCLE = ["--env", "CartPole-v1", "--total-steps", "4096", "--sequential", "--no-progress", "--set", "eval_freq=1024",
             "--set", "eval_episodes=3", "--set", "checkpoint_freq=1024", "--set", "algo.n_steps=256",
             "--set", "algo.batch_size=64"]


def test_a_signal_at_generated_moments_of_a_run_leaves_it_finished_or_resumable(tmp_path, capsys):
    """Property 2 over the whole lifecycle: SIGINT or SIGTERM at moments drawn over an uninterrupted run's wall time
    (imports, setup, rounds, checkpoints, the final evaluation and save). Each stop says so in one line and exits
    130 after SIGINT, 143 after SIGTERM (or the run ended first: 0); the folder is then finished, or resumable
    (--resume finishes it), or the stop
    came before anything could be resumed and the message says to start again, which works."""
    script = Path(sys.executable).parent / "dpd"  # the console script a user runs (its handlers come first)
    command = [str(script) if script.exists() else "dpd", "train", *LIFECYCLE]
    start = time.time()
    assert subprocess.run([*command, "--out", str(tmp_path / "whole")], cwd=tmp_path, capture_output=True,
                          timeout=300).returncode == 0
    duration = time.time() - start
    rng = np.random.default_rng(0)
    moments = sorted(rng.uniform(0.05, 1.0, size=6) * duration)
    for k, delay in enumerate(moments):
        sig = signal.SIGINT if k % 2 == 0 else signal.SIGTERM
        out = tmp_path / f"run{k}"
        proc = subprocess.Popen([*command, "--out", str(out)], cwd=tmp_path, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=300)
        lines = [line for line in err.splitlines() if line.strip()]
        said = f"{sig.name} at {delay:.1f} s of {duration:.1f}: exit {proc.returncode}, said {lines[-1:]}"
        assert proc.returncode in (0, 128 + sig) and "Traceback" not in err, said  # 130 SIGINT, 143 SIGTERM
        if proc.returncode == 0 or (out / "summary.json").is_file():
            assert (out / "summary.json").is_file(), said
            continue
        assert lines and lines[-1].startswith("dpd: interrupted"), said
        if "resume with" in lines[-1]:
            code, again = cli(capsys, "train", "--resume", str(out), "--no-progress")
            assert code == 0 and (out / "summary.json").is_file(), f"{said}; --resume: {refused(again)}"
        else:  # stopped before its first step: nothing to resume, the same command starts it again
            code, again = cli(capsys, "train", *LIFECYCLE, "--out", str(out), "--overwrite")
            assert code == 0 and (out / "summary.json").is_file(), f"{said}; again: {refused(again)}"


# ---------------------------------------------------------------------- property 3 over generated SB3 arguments
class _WouldTrain(Exception):
    """Raised where training would start: the config passed every check."""


def test_generated_sb3_arguments_are_refused_before_any_folder_or_build_a_run(tmp_path, monkeypatch):
    """Property 3 over generated argument sets (valid and not: sizes of 0, 1 and odd, negative or huge rates, bad
    types, empty or odd networks): either a one-line DPDUserError and no run folder, or the learners are built and
    training would start (the folder exists then). Never another exception, never a half-made folder."""
    pytest.importorskip("hypothesis")
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from dpd.training import trainer

    monkeypatch.setattr(trainer.DPDTrainer, "learn", lambda self: (_ for _ in ()).throw(_WouldTrain()))
    anything = st.one_of(st.integers(-3, 4096), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                         st.text(max_size=4), st.none(), st.lists(st.integers(-1, 64), max_size=3))
    args = st.fixed_dictionaries({}, optional={
        "n_steps": st.one_of(st.integers(-2, 600), anything), "batch_size": st.one_of(st.integers(-2, 600), anything),
        "learning_rate": st.one_of(st.floats(-1, 1), anything), "gamma": st.one_of(st.floats(-0.5, 1.5), anything),
        "n_epochs": st.one_of(st.integers(-1, 20), anything), "clip_range": st.one_of(st.floats(-1, 2), anything),
        "ent_coef": anything, "policy_kwargs": st.one_of(
            st.fixed_dictionaries({"net_arch": st.lists(st.integers(-4, 64), max_size=3)}), anything)})
    counter = iter(range(10**6))

    outcomes = {"refused": 0, "built": 0}

    @settings(max_examples=120, deadline=None, derandomize=True)
    @given(args)
    def check(algo_kwargs):
        out = tmp_path / f"run{next(counter)}"
        config = TrainConfig(env_id="CartPole-v1", total_steps=4096, eval_freq=0, snapshots=[], parallel=False)
        try:
            train(dataclasses.replace(config, algo_kwargs=algo_kwargs), out)
        except DPDUserError as exc:
            assert "\n" not in str(exc)
            assert not out.exists(), f"{algo_kwargs}: refused ({exc}) but left {sorted(p.name for p in out.iterdir())}"
            outcomes["refused"] += 1
        except _WouldTrain:
            assert (out / "config.yaml").is_file()
            outcomes["built"] += 1

    check()
    assert outcomes["refused"] and outcomes["built"], outcomes  # both sides of the property were exercised


# ---------------------------------------------------------------------- a full disk during a sweep's trial
@pytest.mark.parametrize("error_file_fails", [False, True], ids=["error_txt_written", "error_txt_fails_too"])
def test_a_sweep_trial_on_a_full_disk_fails_in_one_line_naming_the_file_and_the_fix(tmp_path, monkeypatch,
                                                                                    error_file_fails):
    import errno

    import dpd.training
    from dpd.experiments.sweep import run_trial, trial_status

    run_dir = tmp_path / "trial"
    target = str(run_dir / "student1" / "model.zip")

    def full_disk(*_args, **_kwargs):
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text("{}\n")
        raise OSError(errno.ENOSPC, "No space left on device", target)

    monkeypatch.setattr(dpd.training, "train", full_disk)
    if error_file_fails:  # the disk takes not even error.txt: the worker must still report, not die
        real_write = Path.write_text

        def write_text(self, *args, **kwargs):
            if self.name == "error.txt":
                raise OSError(errno.ENOSPC, "No space left on device", str(self))
            return real_write(self, *args, **kwargs)

        monkeypatch.setattr(Path, "write_text", write_text)
    config = TrainConfig(algo="ppo", env_id="CartPole-v1", method="dpd", total_steps=4096).to_dict()
    outcome = run_trial(config, str(run_dir))
    assert outcome["status"] == "failed"
    line = outcome["error"]
    assert "\n" not in line and "Errno" not in line and "Traceback" not in line
    assert f"cannot write {target}: No space left on device" in line and "run the same sweep command again" in line
    # either way the trial is retried by the next sweep (failed, or unfinished without a checkpoint)
    assert trial_status(run_dir) == ("unfinished" if error_file_fails else "failed")


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder this process cannot write: a read-only tmpfs where we are root (root ignores permission bits),
    else a folder with mode 0555."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() == 0:
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
                          capture_output=True).returncode != 0:
            pytest.skip("root without mount: no read-only folder to test with")
        yield folder
        subprocess.run(["umount", str(folder)], capture_output=True)
    else:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)


@pytest.mark.parametrize("kind", ["analyze", "calibrate", "report", "run", "sweep"])
def test_every_out_under_a_read_only_folder_is_refused_before_any_work(read_only_folder, kind):
    from output_helpers import all_outputs

    from dpd.run_files import check_output

    out = read_only_folder / "results"
    with pytest.raises(DPDUserError, match=r"cannot write to --out .*results: .*ro is not writable; choose another"):
        check_output(out, all_outputs()[kind], overwrite=True)
    assert not out.exists()


def test_a_run_lock_on_a_read_only_folder_or_through_a_link_says_which_in_one_line(read_only_folder, tmp_path):
    from dpd.run_files import RunLock

    with pytest.raises(DPDUserError, match=r"cannot lock .*\.lock: .*; dpd writes into the folder it runs in: copy it"):
        RunLock(read_only_folder).acquire()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".lock").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(DPDUserError, match=r"cannot lock .*\.lock: it is a symbolic link; remove it"):
        RunLock(tmp_path / "run").acquire()
    assert not (tmp_path / "elsewhere").exists()
