"""Hardening, round 3: D1-D27 of the hostile pass as strict-xfail tests (D1 is tested elsewhere).

Each test asserts the DESIRED behaviour, so it fails today with an AssertionError that shows the defect. When a
defect is fixed, its test passes and strict xfail turns it red: remove the marker then (and list the case in
docs/bad-input.md). Hangs and memory blow-ups run in a subprocess with a wall-clock timeout and an address-space
limit; signals are sent at a known moment by a patched hook, not after a sleep."""

from __future__ import annotations

import csv
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

from dpd import DPD, DPDUserError, TrainConfig, train
from dpd.cli import main

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
    except BaseException:  # noqa: BLE001 - the defect may be any exception (MemoryError, OverflowError, ...)
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
    except Exception as exc:  # noqa: BLE001
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
                      tensorboard=False, preset="none",
                      algo_kwargs={"n_steps": 128, "batch_size": 64, "n_epochs": 1,
                                   "policy_kwargs": {"net_arch": [16]}}), run)
    return run


CALIBRATE = ["--states", "6", "--rollouts", "2", "--max-rollouts", "4"]


# ---------------------------------------------------------------------- data loss
@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="D3: analyze / calibrate --out replace the user's own analysis.json / figure3.png / calibration files")
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
