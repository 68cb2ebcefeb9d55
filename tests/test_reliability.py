"""Checkpoints, exact resume, crash safety, determinism, the non-finite guard and safe loading."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch as th
from stable_baselines3 import PPO, TD3
from stop_helpers import SignalAt

from dpd import TrainConfig, train
from dpd.cli import main
from dpd.errors import DPDUserError, TrainingDiverged, TrainingInterrupted
from dpd.names import CHECKPOINT_FILE
from dpd.training import resume
from dpd.training.checkpoint import load_checkpoint, save_checkpoint

pytestmark = pytest.mark.extended  # make test-extended (CI runs it after make test)

CARTPOLE = ["--env", "CartPole-v1", "--total-steps", "12288", "--set", "checkpoint_freq=2048", "--set", "eval_freq=2048",
            "--set", "eval_episodes=2", "--no-progress"]


def rows(path: Path) -> list[dict]:
    return list(csv.DictReader(path.read_text().splitlines()))


def assert_same_run(a: Path, b: Path, cls=PPO, learners=("student0", "student1")):
    """Bitwise-equal parameters, and logs with the same rows (no duplicated or missing ones)."""
    for name in learners:
        pa = cls.load(a / name / "model.zip", device="cpu").policy.state_dict()
        pb = cls.load(b / name / "model.zip", device="cpu").policy.state_dict()
        assert pa.keys() == pb.keys() and all(th.equal(pa[k], pb[k]) for k in pa), f"{name}: parameters differ"
        ra, rb = (rows(x / name / "progress.csv") for x in (a, b))
        keys = ("time/total_timesteps", "train/loss", "train/actor_loss", "distill/loss", "eval/mean_return")
        assert [[r.get(k) for k in keys] for r in ra] == [[r.get(k) for k in keys] for r in rb]
        ea, eb = ([row.split(",")[:3] for row in (x / name / "evaluations.csv").read_text().splitlines()] for x in (a, b))
        assert ea == eb
        ma, mb = ([row.split(",")[:2] for row in (x / name / "train_episodes.monitor.csv").read_text().splitlines()[1:]]
                  for x in (a, b))
        assert ma == mb


def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert subprocess.run([sys.executable, "-m", "dpd.cli", "train", *CARTPOLE, "--out", str(a)],
                          capture_output=True).returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "dpd.cli", "train", *CARTPOLE, "--out", str(b)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (b / CHECKPOINT_FILE).exists() and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(1.0)  # somewhere after the first checkpoint, mid-iteration
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (b / "summary.json").exists()
    assert main(["train", "--resume", str(b), "--no-progress"]) == 0
    assert_same_run(a, b)
    # finished (uninterrupted, or resumed): no checkpoint left, the models and logs are the run
    assert not (a / CHECKPOINT_FILE).exists() and not (b / CHECKPOINT_FILE).exists()


@pytest.mark.parametrize("case", ["mujoco_ppo", "td3_replay"])
def test_sigterm_checkpoints_and_resume_is_exact(tmp_path, case):
    if case == "mujoco_ppo":  # MuJoCo physics mid-episode, VecNormalize statistics
        cfg, cls = TrainConfig(env_id="InvertedPendulum-v5", total_steps=4096, eval_freq=1024, eval_episodes=2), PPO
    else:  # off-policy: replay buffers in the checkpoint, action noise, TD3's delayed updates
        cfg = TrainConfig(env_id="Pendulum-v1", algo="td3", total_steps=3000, iteration_steps=250, eval_freq=1000,
                          eval_episodes=1, checkpoint_replay_buffer=True,
                          algo_kwargs={"learning_starts": 200, "buffer_size": 5000, "noise_std": 0.1,
                                       "policy_kwargs": {"net_arch": [32, 32]}})
        cls = TD3
    train(cfg, tmp_path / "a")
    state = {}

    def factory(name):
        return SignalAt(900, signal.SIGTERM) if name == "student1" else None

    with pytest.raises(TrainingInterrupted, match="resume with"):
        train(cfg, tmp_path / "b", callbacks=factory)
    state["ckpt"] = load_checkpoint(tmp_path / "b" / CHECKPOINT_FILE)
    assert 0 < sum(s["model"]["num_timesteps"] for s in state["ckpt"]["students"]) < cfg.total_steps
    resume(tmp_path / "b")
    assert_same_run(tmp_path / "a", tmp_path / "b", cls)


def test_the_same_seed_trains_the_same_run_and_another_seed_a_different_one(tmp_path):
    cfg = TrainConfig(env_id="CartPole-v1", total_steps=4096, eval_freq=1024, eval_episodes=2, seed=3)
    s1, s2 = train(cfg, tmp_path / "a"), train(cfg, tmp_path / "b")
    assert s1["learners"] == s2["learners"]
    assert_same_run(tmp_path / "a", tmp_path / "b")
    s3 = train(TrainConfig(**{**cfg.to_dict(), "seed": 4}), tmp_path / "c")
    assert s3["learners"] != s1["learners"]


def test_a_crash_while_writing_leaves_the_previous_checkpoint_valid(tmp_path):
    path = tmp_path / CHECKPOINT_FILE
    save_checkpoint(path, {"config": {"a": 1}, "x": th.ones(3)})
    before = path.read_bytes()

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(path, {"config": {"a": 2}, "x": th.zeros(10**6), "boom": Unpicklable()})
    assert path.read_bytes() == before and load_checkpoint(path)["config"] == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_FILE]  # no temporary file left behind
    (tmp_path / f".{CHECKPOINT_FILE}.123.tmp").write_bytes(b"half a checkp")  # what a SIGKILL mid-write leaves
    assert load_checkpoint(path)["config"] == {"a": 1}


class Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_malicious_checkpoint_is_refused_and_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / CHECKPOINT_FILE
    th.save({"format": "dpd-checkpoint-1", "payload": Evil()}, path)
    with pytest.raises(DPDUserError, match="not a readable dpd checkpoint"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("content", [b"", b"garbage" * 10, b"PK\x03\x04 truncated zip"])
def test_corrupt_or_foreign_checkpoints_give_one_line_errors(tmp_path, content):
    path = tmp_path / CHECKPOINT_FILE
    path.write_bytes(content)
    with pytest.raises(DPDUserError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    th.save({"something": "else"}, path)
    with pytest.raises(DPDUserError, match="not a dpd checkpoint"):
        load_checkpoint(path)


def test_non_finite_distillation_is_skipped_counted_and_stops_the_run(tmp_path, monkeypatch):
    from dpd.students.on_policy import OnPolicyStudent

    original = OnPolicyStudent.value_estimates

    def nan_values(self, obs):
        return original(self, obs) * float("nan")

    monkeypatch.setattr(OnPolicyStudent, "value_estimates", nan_values)
    cfg = TrainConfig(env_id="CartPole-v1", total_steps=20_000, eval_freq=10_000, eval_episodes=1,
                      max_nonfinite_batches=25)
    with pytest.raises(TrainingDiverged, match="non-finite"):
        train(cfg, tmp_path / "run")
    ckpt = load_checkpoint(tmp_path / "run" / CHECKPOINT_FILE)
    assert ckpt["students"][0]["student"]["skipped_nonfinite"] >= 20
    progress = rows(tmp_path / "run" / "student0" / "progress.csv")
    assert float(progress[-1]["distill/skipped_nonfinite"]) >= 20
    assert not (tmp_path / "run" / "summary.json").exists()


def test_two_processes_cannot_write_the_same_run(tmp_path, capsys):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "dpd.cli", "train", "--env", "CartPole-v1", "--total-steps", "200000",
                             "--out", str(out), "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while not (out / "config.yaml").exists() and time.time() < deadline:
            time.sleep(0.05)
        code = main(["train", "--env", "CartPole-v1", "--total-steps", "1000", "--out", str(out), "--overwrite"])
        err = capsys.readouterr().err
        assert code == 2 and "being written by another dpd process" in err and len(err.strip().splitlines()) == 1
        assert proc.poll() is None  # the first run was not disturbed
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("setup,args,message", [
    ("none", ["--resume", "{run}"], "no such run folder"),
    ("empty", ["--resume", "{run}"], "not a dpd run folder"),
    ("finished", ["--resume", "{run}"], "nothing to resume"),
    ("no_checkpoint", ["--resume", "{run}"], "no checkpoint"),
    ("corrupt", ["--resume", "{run}"], "not a readable dpd checkpoint"),
    ("no_checkpoint", ["--resume", "{run}", "--alpha", "3"], "drop --alpha"),
])  # fmt: skip
def test_a_bad_resume_is_one_line_exit_2_and_changes_no_file(tmp_path, capsys, setup, args, message):
    run = tmp_path / "run"
    if setup != "none":
        run.mkdir()
    if setup in ("finished", "no_checkpoint", "corrupt"):
        train(TrainConfig(env_id="CartPole-v1", total_steps=512, eval_freq=10_000, eval_episodes=1), run,
              overwrite=True)
        if setup != "finished":
            (run / "summary.json").unlink()
        if setup == "corrupt":
            (run / CHECKPOINT_FILE).write_bytes(b"\x80\x04 not really")
    before = sorted(p.name for p in run.rglob("*")) if run.exists() else []
    code = main(["train", *[a.format(run=run) for a in args]])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert (sorted(p.name for p in run.rglob("*")) if run.exists() else []) == before


def test_the_learners_random_state_includes_the_cuda_generators_where_cuda_is_in_use(monkeypatch):
    """With device=cuda two students in one process would share the CUDA generators and a resume would not be exact:
    rng_state captures them (checked here with a stand-in: the test machines have no GPU)."""
    import torch as th

    from dpd.state import rng_state, set_rng_state

    cuda = {"state": [th.tensor([1, 2, 3], dtype=th.uint8)]}
    monkeypatch.setattr(th.cuda, "is_available", lambda: True)
    monkeypatch.setattr(th.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(th.cuda, "get_rng_state_all", lambda: [s.clone() for s in cuda["state"]])
    monkeypatch.setattr(th.cuda, "set_rng_state_all", lambda states: cuda.__setitem__("state", list(states)))
    saved = rng_state()
    assert "cuda" in saved and th.equal(saved["cuda"][0], th.tensor([1, 2, 3], dtype=th.uint8))
    cuda["state"] = [th.tensor([9, 9, 9], dtype=th.uint8)]  # another learner drew meanwhile
    set_rng_state(saved)
    assert th.equal(cuda["state"][0], th.tensor([1, 2, 3], dtype=th.uint8))


def test_a_run_whose_config_and_checkpoint_hold_the_flat_keys_of_older_versions_resumes(tmp_path):
    """config.yaml and checkpoint.pt written before the distill block (flat alpha, distill_lr, ...) resume."""
    import torch as th
    import yaml

    from dpd.config import ALIAS_OF
    from dpd.training import resume

    run = tmp_path / "run"
    cfg = TrainConfig(env_id="CartPole-v1", total_steps=4096, eval_freq=1024, eval_episodes=1, n_envs=1,
                      checkpoint_freq=1024, tensorboard=False, algo_kwargs={"n_steps": 256})
    with pytest.raises(TrainingInterrupted):  # stopped after its checkpoints (a finished run keeps none)
        train(cfg, run, callbacks=lambda name: SignalAt(1500, signal.SIGTERM) if name == "student0" else None)

    def flat(d):
        out = {k: v for k, v in d.items() if k != "distill"}
        out.update({ALIAS_OF[k]: v for k, v in d["distill"].items()})
        return out

    config = yaml.safe_load((run / "config.yaml").read_text())
    (run / "config.yaml").write_text(yaml.safe_dump(flat(config)))
    state = th.load(run / "checkpoint.pt", weights_only=False)
    state["config"] = flat(state["config"])
    th.save(state, run / "checkpoint.pt")
    summary = resume(run)
    assert summary["status"] == "finished" and summary["total_env_steps"] >= 4096


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_setup_stops_in_one_line_and_saves_nothing_new(tmp_path, monkeypatch, sig):
    """Ctrl-C / SIGTERM while the learners set up (the first evaluation can take a while) stops with a one-line
    message (it was a silent exit 130: typer turned the KeyboardInterrupt into a quiet Exit). A fresh run has nothing
    to resume and says to start again; a resumed run keeps the checkpoint it came from, byte for byte, and resumes
    from it again to the same result as an uninterrupted run."""
    from dpd.training.learner import Learner

    def config() -> TrainConfig:
        return TrainConfig(env_id="CartPole-v1", total_steps=12288, eval_freq=2048, eval_episodes=2,
                           checkpoint_freq=2048, parallel=False)

    a, b = tmp_path / "a", tmp_path / "b"
    train(config(), a)
    original = Learner.setup

    def signal_once_in_setup() -> None:
        sent: list[int] = []

        def setup_then_signal(self: Learner) -> int:
            steps = original(self)
            if not sent:
                sent.append(sig)
                os.kill(os.getpid(), sig)
            return steps

        monkeypatch.setattr(Learner, "setup", setup_then_signal)

    signal_once_in_setup()
    said: list[str] = []
    with pytest.raises(TrainingInterrupted, match="before the first env step: nothing to resume; run the same command"
                       ) as stopped:
        train(config(), b, log=said.append)
    assert not (b / CHECKPOINT_FILE).exists() and not (b / "summary.json").exists()
    assert not stopped.value.resumable and any("stopping once set up" in line for line in said), said
    monkeypatch.setattr(Learner, "setup", original)
    # start again; stop it after its first checkpoint; a signal while the resume sets up leaves that checkpoint alone
    with pytest.raises(TrainingInterrupted, match="checkpoint written"):
        train(config(), b, overwrite=True,
              callbacks=lambda name: SignalAt(3000, signal.SIGTERM) if name == "student0" else None)
    before = (b / CHECKPOINT_FILE).read_bytes()
    signal_once_in_setup()
    with pytest.raises(TrainingInterrupted, match=r"while setting up; the checkpoint at \d+ env steps is unchanged"
                       ) as stopped:
        resume(b)
    assert stopped.value.resumable
    assert (b / CHECKPOINT_FILE).read_bytes() == before
    monkeypatch.setattr(Learner, "setup", original)
    assert main(["train", "--resume", str(b), "--no-progress"]) == 0
    assert_same_run(a, b)


def test_a_sweep_trial_stopped_while_setting_up_counts_as_not_started(tmp_path, monkeypatch):
    """A sweep stopped while a fresh trial sets up has nothing of it to resume: the trial reports ``not_started``
    (not "checkpointed"), so the sweep's count of checkpointed trials is true; the next sweep starts it afresh."""
    from dpd.experiments.sweep import SweepResult, record_outcome, run_trial
    from dpd.training.learner import Learner

    original = Learner.setup

    def setup_then_signal(self: Learner) -> int:
        steps = original(self)
        monkeypatch.setattr(Learner, "setup", original)
        os.kill(os.getpid(), signal.SIGTERM)
        return steps

    monkeypatch.setattr(Learner, "setup", setup_then_signal)
    config = TrainConfig(env_id="CartPole-v1", total_steps=4096, eval_freq=0, checkpoint_freq=2048, parallel=False)
    outcome = run_trial(config.to_dict(), str(tmp_path / "t"))
    assert outcome["status"] == "not_started" and "nothing to resume" in outcome["error"]
    result = SweepResult(finished=[], failed={}, skipped=[])
    record_outcome(result, "t", outcome)
    assert not result.interrupted and not result.failed and not result.finished
    assert run_trial(config.to_dict(), str(tmp_path / "t"))["status"] == "finished"  # the next sweep: from scratch


def test_a_ctrl_c_that_typer_swallows_still_says_interrupted(monkeypatch, capsys):
    """A KeyboardInterrupt outside the trainer's own handling (e.g. while the envs are built): typer makes it a
    silent Exit(130); the command line says so in one line."""
    import dpd.cli as cli

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("dpd.training.train", interrupted)
    assert cli.main(["train", "--env", "CartPole-v1", "--total-steps", "2048", "--no-progress"]) == 130
    assert capsys.readouterr().err.strip().splitlines() == ["dpd: interrupted"]


def test_check_like_names_the_first_place_a_damaged_state_differs_from_a_fresh_one():
    import numpy as np
    import torch as th

    from dpd.state import check_like

    fresh = {"torch": {"policy": {"w": th.zeros(2, 3)}, "opt": {"state": {}}}, "count": 0, "obs": np.zeros(0),
             "name": "x", "flag": True, "seeds": [1, 2], "rng": (3, (1, 2), None)}
    trained = {"torch": {"policy": {"w": th.ones(2, 3)}, "opt": {"state": {0: {"step": th.tensor(3.0), "m": th.ones(2)},
                                                                         1: {"step": th.tensor(3.0), "m": th.ones(5)}}}},
               "count": th.tensor(4.0), "obs": np.ones((1, 4)), "name": "y", "flag": False, "seeds": [None, None],
               "rng": (3, (5, 6), 0.5), "extra": 1}
    check_like(fresh, trained, "s")  # a clean trained state passes: placeholders, 0-d tensors, consumed seeds
    bad = [({"torch": {"policy": {}}}, "'w' is missing"),
           ({"torch": {"policy": {"w": th.zeros(3, 2)}}}, "shape"),
           ({"torch": {"policy": {"w": th.zeros(2, 3, dtype=th.float64)}}}, "float64"),
           ({"torch": {"policy": {"w": [1, 2]}}}, "list where a Tensor"),
           ({"torch": {"opt": {"state": {0: {"step": th.tensor(3.0), "m": th.ones(2)}, 1: {"step": th.tensor(1.0)}}}}},
            "'m' is missing"),
           ({"count": "many"}, "str where a number"),
           ({"flag": 1}, "int where a boolean"),
           ({"rng": (3, ("a", 2), None)}, r"rng\[1\]\[0\]")]
    for change, message in bad:
        damaged = {**trained, **{k: ({**trained[k], **v} if k == "torch" else v) for k, v in change.items()}}
        if "torch" in change and "opt" in change["torch"]:
            damaged["torch"] = {**trained["torch"], "opt": change["torch"]["opt"]}
        with pytest.raises(ValueError, match=message):
            check_like(fresh, damaged, "s")


def test_check_like_refuses_a_non_finite_number_where_a_fresh_learner_has_a_finite_one():
    import torch as th

    from dpd.state import check_like

    check_like({"step": th.tensor(0.0)}, {"step": th.tensor(5.0)})
    for bad in (th.tensor(float("nan")), float("inf")):
        with pytest.raises(ValueError, match="where a finite number belongs"):
            check_like({"step": th.tensor(0.0)}, {"step": bad}, "s")
