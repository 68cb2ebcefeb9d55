"""Parallel mode: one process per student; learns like sequential, shuts down cleanly, resumes exactly."""

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dpd import TrainConfig, train
from dpd.cli import main
from dpd.errors import DPDUserError
from dpd.names import CHECKPOINT_FILE

pytestmark = pytest.mark.extended  # make test-extended (CI runs it after make test)

PARALLEL = ["--env", "CartPole-v1", "--total-steps", "12288", "--set", "checkpoint_freq=2048", "--set",
            "eval_freq=2048", "--set", "eval_episodes=2", "--no-progress", "--parallel"]


def children_of(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return {int(x) for x in out.split()}


def alive(pids: set[int]) -> set[int]:
    return {p for p in pids if Path(f"/proc/{p}").exists() and "Z" not in Path(f"/proc/{p}/stat").read_text().split()[2]}


@pytest.mark.slow  # a learning threshold on one seed: `make slow`
def test_parallel_dpd_ppo_learns_cartpole():
    summary = train(TrainConfig(env_id="CartPole-v1", total_steps=60_000, seed=0, eval_freq=10_000, parallel=True))
    finals = [v["final_eval_return"] for v in summary["learners"].values()]
    assert summary["parallel"] is True
    assert min(finals) >= 250 and sum(finals) / 2 >= 350, summary["learners"]  # the sequential test's threshold
    assert not mp.active_children()


@pytest.mark.parametrize("env_id,error", [
    ("dpd_test_envs:DpdCrashStudent1-v0", DPDUserError),  # student1, in the second process: one line here too
    ("dpd_test_envs:DpdCrash-v0", DPDUserError),  # both; student0, in the main process, fails first
])  # fmt: skip
def test_a_failing_student_stops_the_run_and_leaves_no_process(tmp_path, env_id, error):
    sys.path.insert(0, str(Path(__file__).parent))  # dpd_test_envs, importable by the second process too
    cfg = TrainConfig(env_id=env_id, total_steps=4000, eval_freq=0, parallel=True)
    with pytest.raises(error, match="simulator exploded"):
        train(cfg, tmp_path / "run")
    assert not mp.active_children()
    assert not (tmp_path / "run" / "summary.json").exists()


def test_ctrl_c_checkpoints_stops_both_processes_and_resume_finishes(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "dpd.cli", "train", *PARALLEL, "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    workers: set[int] = set()
    # after the first checkpoint: training is under way (a Ctrl-C while the learners set up is its own case,
    # tests/test_reliability.py: it stops in one line and has nothing to resume)
    while time.time() < deadline and not (out / CHECKPOINT_FILE).exists():
        workers |= children_of(proc.pid)
        time.sleep(0.05)
    workers |= children_of(proc.pid)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "checkpoint written; resume with: dpd train --resume" in err
    time.sleep(0.5)
    assert workers and not alive(workers), "worker processes outlived the run"
    assert (out / CHECKPOINT_FILE).is_file() and not (out / "summary.json").exists()
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert (out / "summary.json").is_file()


def test_sigkill_then_resume_in_parallel_mode_equals_an_uninterrupted_run(tmp_path):
    from test_reliability import assert_same_run

    a, b = tmp_path / "a", tmp_path / "b"
    assert subprocess.run([sys.executable, "-m", "dpd.cli", "train", *PARALLEL, "--out", str(a)],
                          capture_output=True).returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "dpd.cli", "train", *PARALLEL, "--out", str(b)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while not (b / CHECKPOINT_FILE).exists() and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGKILL)  # the parent and both workers
    proc.wait()
    assert main(["train", "--resume", str(b), "--no-progress"]) == 0
    assert_same_run(a, b)
