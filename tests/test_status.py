"""``dpd status``: a sweep's (or a run's) state read from its folder, nothing written."""

import os
import shutil
from pathlib import Path

import pytest

from dpd.cli import main
from dpd.run_files import RunLock


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("status") / "sw"
    assert main(["sweep", "--env", "CartPole-v1", "--seeds", "3", "--total-steps", "2048", "--method", "vanilla",
                 "--workers", "1", "--out", str(out), "--set", "eval_freq=0"]) == 0
    return out


def status(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["status", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_finished_sweep_says_so_and_points_to_the_report(finished_sweep, capsys):
    before = _files(finished_sweep)
    code, out, _ = status(capsys, str(finished_sweep))
    assert code == 0
    assert f"{finished_sweep}: 3 trials: 3 finished, 0 pending; no dpd sweep is running it" in out
    assert f"next: dpd report {finished_sweep}" in out and "CartPole" not in out  # finished trials only with --all
    _, out, _ = status(capsys, str(finished_sweep), "--all")
    assert out.count("finished    CartPole-v1__ppo__vanilla__s") == 3
    assert _files(finished_sweep) == before  # read only: no lock file, nothing touched


def test_each_state_of_a_trial_is_told_apart(finished_sweep, tmp_path, capsys):
    sweep = tmp_path / "sw"
    shutil.copytree(finished_sweep, sweep)
    runs = sweep / "runs"
    s0, s1, s2 = (runs / f"CartPole-v1__ppo__vanilla__s{s}" for s in range(3))
    (s0 / "summary.json").unlink()  # stopped part-way, with a checkpoint
    (s0 / "checkpoint.pt").write_bytes(b"")
    (s1 / "summary.json").unlink()  # failed
    (s1 / "error.txt").write_text("Traceback (most recent call last):\n  ...\nValueError: boom\n")
    shutil.rmtree(s2)  # pending
    code, out, _ = status(capsys, str(sweep))
    assert code == 0 and "3 trials: 1 unfinished, 1 failed, 0 finished, 1 pending; no dpd sweep is running it" in out
    assert "unfinished  CartPole-v1__ppo__vanilla__s0  2,048 / 2,048 env steps (100%); resumes from its last" in out
    assert "failed      CartPole-v1__ppo__vanilla__s1  ValueError: boom" in out
    assert "next: run the same dpd sweep command again" in out
    (s0 / "checkpoint.pt").unlink()
    _, out, _ = status(capsys, str(sweep))
    assert "no checkpoint: starts again from 0" in out
    # a process holding the trial's folder: running (its pid); holding the sweep folder: the sweep runs it
    trial_lock, sweep_lock = RunLock(s0).acquire(), RunLock(sweep).acquire()
    try:
        _, out, _ = status(capsys, str(sweep))
    finally:
        trial_lock.release()
        sweep_lock.release()
    assert f"running     CartPole-v1__ppo__vanilla__s0  2,048 / 2,048 env steps (100%), pid {os.getpid()}" in out
    assert f"a dpd sweep is running it (pid {os.getpid()})" in out and "next:" not in out


def test_status_of_a_run_folder_says_finished_or_resume_and_bad_folders_are_one_line(finished_sweep, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_sweep / "runs" / "CartPole-v1__ppo__vanilla__s0", run)
    _, out, _ = status(capsys, str(run))
    assert out.strip() == "finished    run"
    (run / "summary.json").unlink()
    (run / "checkpoint.pt").write_bytes(b"")
    _, out, _ = status(capsys, str(run))
    assert f"next: dpd train --resume {run}" in out
    code, _, err = status(capsys, str(tmp_path / "nope"))
    assert code == 2 and err.strip() == (f"dpd: error: {tmp_path / 'nope'} is not a folder; give a dpd sweep --out"
                                         " folder or a run folder")
    code, _, err = status(capsys, str(tmp_path))
    assert code == 2 and "is neither a sweep folder (sweep.yaml) nor a run folder (config.yaml)" in err


def _progress(path: Path, rows: list[tuple[int, int]], pad: int = 0) -> None:
    """A learner's progress.csv holding (env steps, seconds) rows; ``pad`` characters of filler per row make the
    file longer than the 64 KiB its readers look at."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["time/fps,time/total_timesteps,time/time_elapsed,train/note"]
    lines += [f"0,{steps},{clock},{'x' * pad}" for steps, clock in rows]
    path.write_text("\n".join(lines) + "\n")


def test_progress_speed_reads_the_last_minutes_since_the_last_resume(tmp_path):
    from dpd.run_files import SPEED_WINDOW_S, last_progress_steps, progress_reading, progress_speed

    path = tmp_path / "student0" / "progress.csv"
    # 1,000 steps per 2 s for an hour: 500 env steps/s; the file is ~1 MB, so only its end is read
    _progress(path, [(1000 * k, 2 * k) for k in range(1800)], pad=500)
    assert path.stat().st_size > 10 * 64 * 1024
    assert progress_speed(path) == pytest.approx(500) and last_progress_steps(path) == 1_799_000
    # a stop and a resume from an earlier checkpoint: the clock and steps go back; only the rows after it count,
    # at their own pace (250 env steps/s), not the rows before the stop (which ran further)
    rows = [(1000 * k, 2 * k) for k in range(400)] + [(300_000 + 1000 * k, 600 + 4 * k) for k in range(60)]
    _progress(path, rows)
    assert progress_speed(path) == pytest.approx(250)
    assert progress_reading(path) == (359_000, pytest.approx(250))  # both from one read (dpd status's line)
    # the speed covers the last SPEED_WINDOW_S seconds only: a slow start far back does not count
    rows = [(10 * k, k) for k in range(1000)] + [(10_000 + 2000 * k, 1000 + k) for k in range(1, SPEED_WINDOW_S + 2)]
    _progress(path, rows)
    assert progress_speed(path) == pytest.approx(2000)
    # under SPEED_MIN_S seconds since the (re)start, no rows, or a row still being written: no number, or the one
    # before the unfinished row
    _progress(path, [(0, 0), (1000, 5), (2000, 10)])
    assert progress_speed(path) is None
    _progress(path, [])
    assert progress_speed(path) is None and last_progress_steps(path) is None
    _progress(path, [(1000 * k, 2 * k) for k in range(100)])
    with open(path, "a") as fh:
        fh.write("0,100")  # SB3 mid-write: no clock yet
    assert progress_speed(path) == pytest.approx(500)
    assert progress_speed(tmp_path / "missing.csv") is None


def test_a_running_run_shows_its_speed_and_time_left(finished_sweep, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_sweep / "runs" / "CartPole-v1__ppo__vanilla__s0", run)
    (run / "summary.json").unlink()
    for learner, pace in (("student0", 300), ("student1", 200)):  # a pair: the run's speed is the two together
        _progress(run / learner / "progress.csv", [(pace * 10 * k, 10 * k) for k in range(100)])
    shutil.rmtree(run / "vanilla", ignore_errors=True)
    config = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(config.replace("total_steps: 2048", "total_steps: 5000000"))
    lock = RunLock(run).acquire()
    try:
        _, out, _ = status(capsys, str(run))
    finally:
        lock.release()
    # 495,000 of 5,000,000 env steps at 500 env steps/s: 9,010 s left, said in hours past 90 minutes
    assert out.strip() == (f"running     run  495,000 / 5,000,000 env steps (10%), 500 env steps/s, ~2.5 h left,"
                           f" pid {os.getpid()}")
