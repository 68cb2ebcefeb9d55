"""Bad input: one line on stderr, exit status 2, nothing written or overwritten."""

import os

import pytest

from dpd.cli import main


def run_cli(capsys, *args):
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


BAD_TRAIN_ARGS = {
    "unknown env id": (["--env", "NoSuchEnv-v0"], "unknown environment id"),
    "unknown preset": (["--env", "CartPole-v1", "--preset", "best"], "unknown preset"),
    "env module not importable": (["--env", "no_such_module_xyz:Foo-v0"], "cannot import 'no_such_module_xyz'"),
    "paper preset for a2c": (["--env", "CartPole-v1", "--algo", "a2c", "--preset", "paper"], "no 'paper' preset"),
    "unknown config key": (["--env", "CartPole-v1", "--set", "alhpa=1"], "unknown config key 'alhpa'"),
    "unknown SB3 argument": (["--env", "CartPole-v1", "--set", "algo.nsteps=8"], "PPO has no argument 'nsteps'"),
    "unknown policy argument": (["--env", "CartPole-v1", "--set", "algo.policy_kwargs.width=8"], "no argument 'width'"),
    "wrong value type": (["--env", "CartPole-v1", "--set", "distill_steps=many"], "distill_steps expects int"),
    "set without =": (["--env", "CartPole-v1", "--set", "alpha"], "expects key=value"),
    "zero steps": (["--env", "CartPole-v1", "--total-steps", "0"], "total_steps must be a positive"),
    "negative steps": (["--env", "CartPole-v1", "--total-steps", "-5"], "total_steps must be a positive"),
    "steps not a number": (["--env", "CartPole-v1", "--total-steps", "lots"], "Invalid value for '--total-steps'"),
    "non-finite alpha": (["--env", "CartPole-v1", "--alpha", "inf"], "alpha must be a finite number"),
    "unknown weighting": (["--env", "CartPole-v1", "--weighting", "soft"], "unknown weighting"),
    "unknown method": (["--env", "CartPole-v1", "--method", "solo"], "unknown method"),
    "unknown algo": (["--env", "CartPole-v1", "--algo", "dqn"], "unknown algo"),
    "unsupported action space": (["--env", "DpdTestMultiBinary-v0"], "MultiBinary action space"),
    "bad schedule": (["--env", "CartPole-v1", "--set", "algo.learning_rate=fast"], "learning_rate must be"),
    "unknown activation": (["--env", "CartPole-v1", "--set", "algo.policy_kwargs.activation_fn=swish"], "activation_fn"),
    "unknown option": (["--env", "CartPole-v1", "--bogus"], "No such option"),
    "snapshots not fractions": (["--env", "CartPole-v1", "--set", "snapshots=[2]"], "snapshots must be a list of fractions"),
}


@pytest.mark.parametrize("case", sorted(BAD_TRAIN_ARGS))
def test_bad_train_input_is_one_line_exit_2_and_writes_nothing(capsys, tmp_path, case):
    args, message = BAD_TRAIN_ARGS[case]
    out = tmp_path / "run"
    code, stdout, stderr = run_cli(capsys, "train", *args, "--out", str(out), "--total-steps", "1000", "--no-progress"
                                   ) if "--total-steps" not in args else run_cli(
        capsys, "train", *args, "--out", str(out), "--no-progress")
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert message in lines[0]
    assert not out.exists()
    assert "Traceback" not in stderr + stdout
    assert not os.path.exists("MUJOCO_LOG.TXT")


def test_non_empty_out_without_overwrite_is_refused_and_untouched(capsys, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("precious: true\n")
    code, _, stderr = run_cli(capsys, "train", "--env", "CartPole-v1", "--total-steps", "1000", "--out", str(out))
    assert code == 2 and "is not a dpd run folder" in stderr and len(stderr.strip().splitlines()) == 1
    assert (out / "config.yaml").read_text() == "precious: true\n" and len(list(out.iterdir())) == 1
    # a run of dpd's there: the fix is --overwrite
    assert run_cli(capsys, "train", "--env", "CartPole-v1", "--total-steps", "1000", "--out", str(tmp_path / "r"))[0] == 0
    code, _, stderr = run_cli(capsys, "train", "--env", "CartPole-v1", "--total-steps", "1000", "--out", str(tmp_path / "r"))
    assert code == 2 and "is not empty (an earlier run); pass --overwrite to replace it" in stderr


def test_overwrite_refuses_a_folder_that_is_not_a_run(capsys, tmp_path):
    out = tmp_path / "home"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    code, _, stderr = run_cli(capsys, "train", "--env", "CartPole-v1", "--total-steps", "1000", "--out", str(out),
                              "--overwrite")
    assert code == 2 and "is not a dpd run folder" in stderr
    assert (out / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("where", ["file_parent", "proc"])
def test_unwritable_out_is_refused(capsys, tmp_path, where):
    if where == "file_parent":
        blocker = tmp_path / "a_file"
        blocker.write_text("x")
        out = blocker / "run"
    else:
        out = "/proc/dpd-run"
    code, _, stderr = run_cli(capsys, "train", "--env", "CartPole-v1", "--total-steps", "1000", "--out", str(out))
    assert code == 2 and "cannot write to --out" in stderr and len(stderr.strip().splitlines()) == 1


def test_out_that_is_a_file_is_refused(capsys, tmp_path):
    out = tmp_path / "file"
    out.write_text("x")
    code, _, stderr = run_cli(capsys, "train", "--env", "CartPole-v1", "--out", str(out))
    assert code == 2 and "is not a folder" in stderr and out.read_text() == "x"


@pytest.mark.parametrize("command", [["evaluate"], ["compare"]])
def test_commands_on_a_folder_that_is_not_a_run(capsys, tmp_path, command):
    code, _, stderr = run_cli(capsys, *command, str(tmp_path))
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and "dpd: error:" in stderr


def test_no_arguments_prints_help_and_exits_2(capfd):
    code = main([])
    captured = capfd.readouterr()
    assert code == 2 and "train" in captured.out + captured.err


def test_disk_full_is_one_line_and_leaves_no_half_written_file(capsys, tmp_path, monkeypatch):
    import errno

    import dpd.run_files as run_dir

    real_replace = run_dir.os.replace

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device", str(dst))

    monkeypatch.setattr(run_dir.os, "replace", full)
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--env", "CartPole-v1", "--total-steps", "1000", "--out", str(out))
    monkeypatch.setattr(run_dir.os, "replace", real_replace)
    assert code == 2 and "No space left on device" in err and len(err.strip().splitlines()) == 1
    assert not (out / "config.yaml").exists() and not list(out.glob(".config.yaml.*"))


def test_a_disk_that_fills_mid_write_names_the_file(tmp_path):
    """The write itself fails (an OSError without a file name, as a real full disk gives): the error names the file
    it was for (the message said 'cannot write a file'), and no temporary is left."""
    import errno

    from dpd.run_files import atomic_write

    def full(_fh) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    target = tmp_path / "summary.json"
    with pytest.raises(OSError) as info:
        atomic_write(target, full)
    assert info.value.filename == str(target) and not list(tmp_path.iterdir())


def test_python_api_raises_the_same_one_line_errors():
    from dpd import DPDUserError, TrainConfig

    with pytest.raises(DPDUserError, match="unknown environment id"):
        TrainConfig(env_id="Nope-v0").resolve()
    with pytest.raises(DPDUserError, match="alpha must be a finite number"):
        TrainConfig(env_id="CartPole-v1").with_values(alpha=float("nan")).resolve()
    with pytest.raises(DPDUserError, match="unknown config key"):
        TrainConfig.from_dict({"env_id": "CartPole-v1", "lr": 1})


def test_sweep_status_line_says_how_long_is_left_at_the_sweeps_own_rate(capsys):
    from dpd.cli import _SweepView

    now = [0.0]
    view = _SweepView(clock=lambda: now[0])

    def lines(done, running, failed=0):
        view({"total": 4, "done": done, "failed": failed, "running": running, "budget": 100})
        return capsys.readouterr().err.strip().splitlines()

    # resumed with 1 run already done and one at 20 steps: the rate counts from here, so no time yet
    assert lines(1, {"a": 20}) == ["dpd sweep: 1/4 done, 1 running, 0 failed; running runs at 20% of their steps"]
    now[0] = 30.0  # under a minute: still no estimate
    assert lines(1, {"a": 30}) == ["dpd sweep: 1/4 done, 1 running, 0 failed; running runs at 30% of their steps"]
    now[0] = 100.0  # 50 steps in 100 s; left: 400 - (100 + 70) = 230 steps -> 460 s
    assert lines(1, {"a": 70})[0].endswith("running runs at 70% of their steps; ~8 min left at this rate")
    now[0] = 200.0  # a run finished and another started: 2 * 100 + 20 = 220 trained, 100 in 200 s; 180 left -> 360 s
    assert lines(2, {"b": 20})[0].endswith("; ~6 min left at this rate")
    now[0] = 200.5
    assert lines(2, {"b": 20}) == []  # nothing changed: no new line
    from dpd.cli import _duration

    assert (_duration(59), _duration(3 * 3600 + 720)) == ("~1 min", "~3.2 h")


def test_help_texts_list_every_choice_validation_accepts(capsys):
    """Help texts come from the same tuples validation uses (dpd.names): a new choice cannot be left out of --help."""
    from dpd.names import ALGO_NAMES, BACKENDS, BUILTIN_WEIGHTINGS, METHODS, PRESETS, SWEEP_VARIANTS

    def help_of(command):
        assert main([command, "--help"]) == 0
        return " ".join(capsys.readouterr().out.split())

    train_help, sweep_help = help_of("train"), help_of("sweep")
    for name in (*ALGO_NAMES, *METHODS, *PRESETS, *BUILTIN_WEIGHTINGS):
        assert name in train_help, name
    for name in (*ALGO_NAMES, *SWEEP_VARIANTS, *BACKENDS, *PRESETS):
        assert name in sweep_help, name


def test_more_sweep_workers_than_cores_is_allowed_with_a_note(capsys, monkeypatch, tmp_path):
    """--workers above the core count runs (a user may mean it) but says once that it buys no speed."""
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    code, _, err = run_cli(capsys, "sweep", "--workers", "8", "--out", str(tmp_path / "sw"))  # no --env: stops early
    assert "note: --workers 8 on 2 cores" in err and "--workers 2 does the same work" in err and code == 2
    code, _, err = run_cli(capsys, "sweep", "--workers", "2", "--out", str(tmp_path / "sw"))
    assert "note:" not in err and code == 2
