"""Hardening, round 2: each case of the hostile pass (data loss, code execution, wrong results, tracebacks, unclear
messages, hygiene) as it behaves now. docs/bad-input.md lists them with these tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from dpd import DPDUserError, TrainConfig, train
from dpd.cli import main

CARTPOLE = ["--env", "CartPole-v1", "--total-steps", "1024", "--sequential", "--no-progress", "--set", "eval_freq=512",
            "--set", "eval_episodes=2"]


def cli(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    err = capsys.readouterr().err
    return code, err


def one_line(err: str) -> bool:
    """The error is one line (a run that started also logged its 'dpd: training ...' line before it)."""
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("dpd: error")]
    return len(errors) == 1 and errors[0] == lines[-1] and "Traceback" not in err


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("h2") / "run"
    assert main(["train", *CARTPOLE, "--out", str(run)]) == 0
    return run


def copy_run(run: Path, to: Path) -> Path:
    import shutil

    shutil.copytree(run, to)
    return to


# ---------------------------------------------------------------------- data loss
def test_d1_a_second_sweep_on_the_same_folder_is_refused_and_a_finished_trial_is_never_trained_again(tmp_path):
    from dpd.experiments.sweep import SweepSpec, run_sweep, run_trial
    from dpd.run_files import RunLock

    spec = SweepSpec(envs=["CartPole-v1"], total_steps=1024, seeds=[0], variants=["vanilla"], overrides=["eval_freq=0"])
    out = tmp_path / "sw"
    out.mkdir()
    held = RunLock(out).acquire()  # another dpd sweep is running this folder
    try:
        with pytest.raises(DPDUserError, match="being run by another dpd sweep"):
            run_sweep(spec, out, workers=1)
    finally:
        held.release()
    result = run_sweep(spec, out, workers=1)
    (trial,) = result.finished
    run_dir = out / "runs" / trial
    stamp = (run_dir / "summary.json").stat().st_mtime_ns
    outcome = run_trial(TrainConfig.from_dict(yaml.safe_load((run_dir / "config.yaml").read_text())).to_dict(),
                        str(run_dir))
    assert outcome["status"] == "finished" and (run_dir / "summary.json").stat().st_mtime_ns == stamp


@pytest.mark.parametrize("planted", ["student0/NOTES.md", "analysis/fig.svg", "student1/snapshots/x.txt"])
def test_d2_overwrite_never_deletes_a_users_file_inside_a_run(cartpole_run, tmp_path, capsys, planted):
    run = copy_run(cartpole_run, tmp_path / "run")
    (run / planted).parent.mkdir(parents=True, exist_ok=True)
    (run / planted).write_text("mine")
    code, err = cli(capsys, "train", *CARTPOLE, "--out", str(run), "--overwrite")
    assert code == 2 and one_line(err) and "refusing to overwrite" in err
    assert (run / planted).read_text() == "mine" and (run / "summary.json").is_file()


def test_d5_an_overwrite_that_fails_before_training_gives_the_old_run_back(cartpole_run, tmp_path, capsys):
    run = copy_run(cartpole_run, tmp_path / "run")
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    # passes dpd's checks, refused by SB3's constructor (PPO needs minibatches of at least 2)
    code, err = cli(capsys, "train", *CARTPOLE, "--set", "algo.batch_size=1", "--out", str(run), "--overwrite")
    assert code == 2 and one_line(err)
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run.replaced")]


def test_d4_a_report_never_replaces_a_report_md_dpd_did_not_write(tmp_path, capsys):
    from dpd.experiments.sweep import SweepSpec, run_sweep

    run_sweep(SweepSpec(envs=["CartPole-v1"], total_steps=1024, seeds=[0], variants=["vanilla"],
                        overrides=["eval_freq=512", "eval_episodes=1"]), tmp_path / "sw", workers=1)
    mine = tmp_path / "mydocs"
    mine.mkdir()
    (mine / "report.md").write_text("my notes")
    code, err = cli(capsys, "report", str(tmp_path / "sw"), "--out", str(mine))
    assert code == 2 and one_line(err) and (mine / "report.md").read_text() == "my notes"
    assert cli(capsys, "report", str(tmp_path / "sw"), "--out", str(tmp_path / "fresh"))[0] == 0
    assert cli(capsys, "report", str(tmp_path / "sw"), "--out", str(tmp_path / "fresh"))[0] == 0  # dpd's own: again


# ---------------------------------------------------------------------- code execution
def test_c1_opening_a_run_folder_never_imports_a_module_it_names(cartpole_run, tmp_path, monkeypatch, capsys):
    run = copy_run(cartpole_run, tmp_path / "strange_run")
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["env_id"] = "strange_run.evil:CartPole-v1"
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (run / "__init__.py").write_text("")
    (run / "evil.py").write_text(f"open({str(tmp_path / 'pwned')!r}, 'w').write('x')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # the notebook case: the working folder is on sys.path
    from dpd.loading import load_learner

    with pytest.raises(DPDUserError, match="imports no module"):
        load_learner(run, "student0")
    code, err = cli(capsys, "evaluate", str(run), "--episodes", "1")
    assert code == 2 and one_line(err)
    assert not (tmp_path / "pwned").exists() and "strange_run.evil" not in sys.modules
    # passing the environment again is the user's say-so
    _model, env = load_learner(run, "student0", env="CartPole-v1")
    env.close()


# ---------------------------------------------------------------------- wrong results
def test_w1_evaluate_seed_sets_the_episodes_and_is_recorded(cartpole_run, tmp_path, capsys):
    run = copy_run(cartpole_run, tmp_path / "run")
    from dpd.evaluation import evaluate_run

    returns = {s: evaluate_run(run, 4, seed=s)["learners"]["student0"]["returns"] for s in (1, 2, 3)}
    assert len({tuple(r) for r in returns.values()}) > 1  # were identical: SB3's load re-seeded with the training seed
    assert json.loads((run / "reevaluation.json").read_text())["seed"] == 3
    code, err = cli(capsys, "evaluate", str(run), "--seed", "-1")
    assert code == 2 and one_line(err) and "--seed" in err


@pytest.mark.parametrize("field, value", [("normalize", "no"), ("parallel", "false"), ("total_steps", "many"),
                                          ("eval_episodes", 2.5), ("snapshots", "half")])
def test_w2_trainconfig_checks_its_fields_on_construction(field, value):
    with pytest.raises(DPDUserError, match=f"{field} expects"):
        TrainConfig(env_id="CartPole-v1", **{field: value})


def test_w3_a_budget_that_rounding_would_overshoot_is_refused(tmp_path, capsys):
    code, err = cli(capsys, "demo", "--env", "Pendulum-v1", "--total-steps", "512", "--out", str(tmp_path / "dm"))
    assert code == 2 and one_line(err) and "use total_steps" in err and not (tmp_path / "dm").exists()
    cfg = TrainConfig(env_id="HalfCheetah-v5", total_steps=1_000_000, preset="paper").resolve(check_env=False)
    assert cfg.total_steps == 1_000_000  # the study's budget: rounding adds 0.35% to a student's share, accepted


# ---------------------------------------------------------------------- tracebacks -> one line
@pytest.mark.parametrize("env_id, words", [
    ("dpd_test_envs:DpdFaultNanReward-v0", "non-finite reward"),
    ("dpd_test_envs:DpdFaultWrongShape-v0", "observation of shape (4,)"),
    ("dpd_test_envs:DpdFaultVectorReward-v0", "reward of shape (2,)"),
    ("dpd_test_envs:DpdFaultOldReset-v0", "reset()"),
    ("dpd_test_envs:DpdFaultStringReward-v0", "reward of type str ('1.0')"),
    ("dpd_test_envs:DpdFaultInfoList-v0", "info of type list"),
    ("dpd_test_envs:DpdCrash-v0", "raised RuntimeError in step(): simulator exploded"),
])  # fmt: skip
def test_t2_an_env_fault_during_a_run_is_one_line_naming_the_env_and_step(tmp_path, capsys, env_id, words):
    out = tmp_path / "run"
    code, err = cli(capsys, "train", "--env", env_id, "--total-steps", "1024", "--sequential", "--no-progress",
                    "--preset", "none", "--set", "algo.n_steps=128", "--set", "algo.batch_size=64", "--out", str(out))
    assert code == 2 and one_line(err), err
    assert words in err and env_id in err and ("step" in err or "reset" in err)
    if "reset()" not in words:
        assert (out / "error.txt").is_file()


def test_t3_an_env_module_that_raises_anything_at_import_is_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "broken_envs.py").write_text("raise ValueError('no licence server')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    code, err = cli(capsys, "train", "--env", "broken_envs:Foo-v0", "--out", str(tmp_path / "r"))
    assert code == 2 and one_line(err) and "ValueError: no licence server" in err and not (tmp_path / "r").exists()


@pytest.mark.parametrize("content", [b"\x00\xff\xfe binary", b"[1, 2, 3]", b'{"method": "dpd", "learners": {"s": {}}}',
                                     b"[" * 100_000 + b"]" * 100_000])
def test_t4_a_damaged_summary_is_one_line_for_compare_report_and_analyze(cartpole_run, tmp_path, capsys, content):
    run = copy_run(cartpole_run, tmp_path / "run")
    (run / "summary.json").write_bytes(content)
    for args in (["compare", str(run)], ["analyze", str(run)]):
        code, err = cli(capsys, *args)
        assert code == 2 and one_line(err), (args, err)


@pytest.mark.parametrize("content", [b"\x00\xff garbage", b"a,b\n1,2\n", b"student_steps,total_env_steps\nx,y\n"])
def test_t4_a_garbled_evaluation_log_is_one_line(cartpole_run, tmp_path, capsys, content):
    from dpd.experiments.sweep import SweepSpec, run_sweep

    sweep = tmp_path / "sw"
    run_sweep(SweepSpec(envs=["CartPole-v1"], total_steps=1024, seeds=[0], variants=["vanilla"],
                        overrides=["eval_freq=512", "eval_episodes=1"]), sweep, workers=1)
    (log,) = sweep.glob("runs/*/vanilla/evaluations.csv")
    log.write_bytes(content)
    code, err = cli(capsys, "report", str(sweep))
    assert code == 2 and one_line(err) and "damaged" in err
    log.unlink()
    code, err = cli(capsys, "report", str(sweep))
    assert code == 2 and one_line(err) and "missing" in err


@pytest.mark.parametrize("edit", [{"obs_rms": {"var": "nan"}}, {"obs_rms": {"var": -1.0}}, {"clip_obs": -5.0}])
def test_t4_u5_damaged_normalisation_statistics_are_refused(tmp_path, capsys, edit):
    run = tmp_path / "run"
    train(TrainConfig(env_id="CartPole-v1", total_steps=1024, eval_freq=0, normalize=True, snapshots=[],
                      tensorboard=False), run)
    path = run / "student0" / "vecnormalize.json"
    state = json.loads(path.read_text())
    for key, value in edit.items():
        if isinstance(value, dict):
            state[key] = {**state[key], **{k: [float(v)] * len(state[key][k]) for k, v in value.items()}}
        else:
            state[key] = value
    path.write_text(json.dumps(state).replace("NaN", "NaN"))
    code, err = cli(capsys, "evaluate", str(run), "--episodes", "1")
    assert code == 2 and one_line(err) and "normalisation statistics unreadable" in err


def test_t4_a_binary_evaluation_log_on_resume_and_a_deeply_nested_config_are_one_line(cartpole_run, tmp_path, capsys):
    from stop_helpers import SignalAt

    from dpd.errors import TrainingInterrupted

    run = tmp_path / "run"
    cfg = TrainConfig(env_id="CartPole-v1", total_steps=4096, eval_freq=512, eval_episodes=2, parallel=False,
                      checkpoint_freq=1024)
    with pytest.raises(TrainingInterrupted):  # stopped after its checkpoints (a finished run keeps none)
        train(cfg, run, callbacks=lambda name: SignalAt(1500, signal.SIGTERM) if name == "student0" else None)
    (run / "student0" / "evaluations.csv").write_bytes(b"\x00\xff\xfe\x00")
    code, err = cli(capsys, "train", "--resume", str(run))
    assert code == 2 and one_line(err) and "not a text log" in err
    nested = copy_run(cartpole_run, tmp_path / "nested")
    (nested / "config.yaml").write_text("a: " + "[" * 20_000 + "]" * 20_000 + "\n")
    code, err = cli(capsys, "evaluate", str(nested))
    assert code == 2 and one_line(err)


def test_t5_report_of_a_sweep_on_a_namespaced_env(tmp_path, capsys):
    from dpd.experiments.sweep import SweepSpec, run_sweep

    sweep = tmp_path / "sw"
    run_sweep(SweepSpec(envs=["dpd_test_envs:dpdns/Corridor-v0"], total_steps=512, seeds=[0], variants=["vanilla"],
                        preset="none", overrides=["eval_freq=256", "eval_episodes=1", "algo.n_steps=128",
                                                  "algo.batch_size=64"]), sweep, workers=1)
    code, err = cli(capsys, "report", str(sweep))
    assert code == 0, err
    assert list((sweep / "report").glob("curves_dpd_test_envs_dpdns_Corridor-v0_ppo.png"))


def test_t6_an_out_longer_than_the_systems_path_limit_creates_nothing(tmp_path, capsys):
    deep = tmp_path / "/".join(["d" * 200] * 21)  # ~4,200 bytes
    code, err = cli(capsys, "train", *CARTPOLE, "--out", str(deep))
    assert code == 2 and one_line(err) and "limit" in err and not (tmp_path / ("d" * 200)).exists()


@pytest.mark.parametrize("delay", [0.4, 1.5])  # after the interpreter has started: from then on dpd handles it
def test_t7_ctrl_c_in_the_first_seconds_is_a_quiet_exit_130(tmp_path, delay):
    script = Path(sys.executable).parent / "dpd"
    proc = subprocess.Popen([str(script), "train", *CARTPOLE, "--out", str(tmp_path / "r")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode in (130, 0) and "Traceback" not in err, err  # 0: it finished first (a fast machine)


def test_t8_analyze_refuses_a_negative_seed_and_draws_whatever_mplbackend_says(cartpole_run, tmp_path, capsys, monkeypatch):
    code, err = cli(capsys, "analyze", str(cartpole_run), "--seed", "-5", "--out", str(tmp_path / "a"))
    assert code == 2 and one_line(err) and "--seed" in err
    monkeypatch.setenv("MPLBACKEND", "bogus")
    code, err = cli(capsys, "analyze", str(cartpole_run), "--out", str(tmp_path / "b"), "--states", "20")
    assert code == 0, err
    assert (tmp_path / "b" / "figure3.png").is_file() and os.environ["MPLBACKEND"] == "bogus"


# ---------------------------------------------------------------------- unclear messages
def test_u1_a_ray_address_that_does_not_answer_is_one_line_in_seconds(tmp_path, capsys):
    pytest.importorskip("ray")
    started = time.time()
    code, err = cli(capsys, "sweep", "--env", "CartPole-v1", "--backend", "ray", "--address", "127.0.0.1:1",
                    "--out", str(tmp_path / "sw"))
    assert code == 2 and one_line(err) and "127.0.0.1:1" in err and time.time() - started < 30
    assert not (tmp_path / "sw").exists()


def test_u1_the_ray_backend_without_ray_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    code, err = cli(capsys, "sweep", "--env", "CartPole-v1", "--backend", "ray", "--out", str(tmp_path / "sw"))
    assert code == 2 and one_line(err) and "pip install 'dpd[ray]'" in err and not (tmp_path / "sw").exists()


def test_u2_resume_of_a_run_stopped_before_its_first_checkpoint_says_start_again(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".dpd-run").touch()
    (run / "config.yaml").write_text(yaml.safe_dump(TrainConfig(env_id="CartPole-v1").resolve().to_dict()))
    code, err = cli(capsys, "train", "--resume", str(run))
    assert code == 2 and one_line(err) and "nothing to resume: start it again" in err


def test_u3_evaluate_checks_it_can_write_before_running_episodes(cartpole_run, tmp_path, capsys, monkeypatch):
    import dpd.evaluation as evaluation

    calls = []
    monkeypatch.setattr(evaluation, "load_learner", lambda *a, **k: calls.append(1))
    monkeypatch.setattr(evaluation, "writable", lambda folder: False)  # a read-only folder (tests run as root)
    code, err = cli(capsys, "evaluate", str(cartpole_run))
    assert code == 2 and one_line(err) and "--out" in err and not calls


def test_u4_a_model_that_does_not_fit_its_env_is_one_line(cartpole_run, tmp_path, capsys):
    run = copy_run(cartpole_run, tmp_path / "run")
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["env_id"] = "Acrobot-v1"
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    code, err = cli(capsys, "evaluate", str(run), "--episodes", "1")
    assert code == 2 and one_line(err)


# ---------------------------------------------------------------------- hygiene
def test_h1_a_run_leaves_nothing_in_the_temp_folder(tmp_path, monkeypatch):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    train(TrainConfig(env_id="CartPole-v1", total_steps=1024, eval_freq=512, eval_episodes=1, tensorboard=False))
    train(TrainConfig(env_id="Pendulum-v1", algo="td3", total_steps=600, eval_freq=0, preset="none",
                      algo_kwargs={"learning_starts": 100, "train_freq": 100, "gradient_steps": 5}))
    assert list(scratch.iterdir()) == []


def test_an_sb3_constructor_refusing_its_arguments_is_one_line(tmp_path, capsys):
    code, err = cli(capsys, "train", *CARTPOLE, "--set", "algo.batch_size=1", "--out", str(tmp_path / "r"))
    assert code == 2 and one_line(err) and "PPO" in err


def test_numbers_that_must_not_matter_do_not(tmp_path):
    """A guard against the guards: an env that behaves keeps training exactly as before (EnvGuard passes values
    through untouched)."""
    a = train(TrainConfig(env_id="CartPole-v1", total_steps=1024, eval_freq=512, eval_episodes=2, seed=5,
                          tensorboard=False))
    b = train(TrainConfig(env_id="CartPole-v1", total_steps=1024, eval_freq=512, eval_episodes=2, seed=5,
                          tensorboard=False))
    assert a["learners"] == {k: {**v} for k, v in b["learners"].items()}
    assert np.isfinite(a["learners"]["student0"]["final_eval_return"])
