"""Hostile input: no data loss, no code execution from a run folder, no process left behind."""

import base64
import json
import os
import pickle
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from dpd import TrainConfig, train
from dpd.cli import main
from dpd.names import CHECKPOINT_FILE, MONITOR_FILE, PROGRESS_FILE

T = ["train", "--env", "CartPole-v1", "--total-steps", "1024", "--set", "eval_freq=512", "--set", "eval_episodes=1",
     "--sequential", "--no-progress"]


class _Evil:
    """Unpickling this creates a file: the proof that code from a run folder ran."""

    def __init__(self, flag):
        self.flag = flag

    def __reduce__(self):
        return (os.system, (f"touch {self.flag}",))


def one_line_error(capsys, code, fragment):
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1, err


def test_overwrite_refuses_a_folder_that_is_not_a_dpd_run(tmp_path, capsys):
    proj = tmp_path / "proj"
    (proj / "src").mkdir(parents=True)
    (proj / "config.yaml").write_text("db: x\n")
    (proj / "thesis.tex").write_text("work")
    one_line_error(capsys, main([*T, "--out", str(proj), "--overwrite"]), "not a dpd run folder")
    assert (proj / "thesis.tex").read_text() == "work" and (proj / "src").is_dir()
    # a real run folder is replaced; one with a foreign file in it is not
    run = tmp_path / "run"
    assert main([*T, "--out", str(run)]) == 0
    assert main([*T, "--out", str(run), "--overwrite"]) == 0
    (run / "notes.txt").write_text("mine")
    capsys.readouterr()
    one_line_error(capsys, main([*T, "--out", str(run), "--overwrite"]), "it holds notes.txt")
    assert (run / "notes.txt").read_text() == "mine"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "run"
    train(TrainConfig(env_id="InvertedPendulum-v5", total_steps=1024, eval_freq=512, eval_episodes=1,
                      algo_kwargs={"n_steps": 256, "batch_size": 64}), run)
    return run


def _poison_zip(path, key, flag):
    with zipfile.ZipFile(path) as zf:
        entries = {n: zf.read(n) for n in zf.namelist()}
    data = json.loads(entries["data"])
    data[key] = {":type:": "<class 'x'>", ":serialized:": base64.b64encode(pickle.dumps(_Evil(flag))).decode()}
    entries["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(path, "w") as zf:
        for n, b in entries.items():
            zf.writestr(n, b)


@pytest.mark.parametrize("target", ["vecnormalize.pkl", "lr_schedule", "policy_class", "observation_space"])
def test_opening_a_run_folder_executes_no_code_from_it(finished_run, tmp_path, capsys, target):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    flag = tmp_path / "pwned"
    for learner in ("student0", "student1"):
        if target == "vecnormalize.pkl":
            (run / learner / "vecnormalize.pkl").write_bytes(pickle.dumps(_Evil(flag)))
        else:
            _poison_zip(run / learner / "model.zip", target, flag)
    code = main(["evaluate", str(run), "--episodes", "1"])
    err = capsys.readouterr().err
    assert not flag.exists(), "code from the run folder ran"
    if target == "policy_class":  # not replaceable: refused in one line
        assert code == 2 and "does not open" in err and len(err.strip().splitlines()) == 1, err
    else:  # never unpickled: schedules become constants, spaces come from the env, normalisation from JSON
        assert code == 0, err


def test_a_run_folder_with_only_sb3s_pickle_is_refused_not_unpickled(finished_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "student0" / "vecnormalize.json").unlink()
    one_line_error(capsys, main(["evaluate", str(run), "--episodes", "1"]), "does not unpickle")


def _checkpointed_run(tmp_path):
    from stable_baselines3.common.callbacks import BaseCallback

    class Stop(BaseCallback):
        def _on_step(self):
            if self.num_timesteps >= 1536:
                os.kill(os.getpid(), signal.SIGTERM)
            return True

    run = tmp_path / "ck"
    cfg = TrainConfig(env_id="CartPole-v1", total_steps=8192, eval_freq=512, eval_episodes=1,
                      algo_kwargs={"n_steps": 256, "batch_size": 64})
    from dpd.errors import TrainingInterrupted

    with pytest.raises(TrainingInterrupted):
        train(cfg, run, callbacks=lambda name: Stop() if name == "student0" else None)
    assert (run / CHECKPOINT_FILE).is_file()
    return run


def test_lock_file_as_a_symlink_is_never_written_through(tmp_path, capsys):
    run = _checkpointed_run(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (run / ".lock").unlink(missing_ok=True)
    (run / ".lock").symlink_to(victim)
    capsys.readouterr()
    one_line_error(capsys, main(["train", "--resume", str(run), "--no-progress"]), "symbolic link")
    assert victim.read_text() == "precious"
    one_line_error(capsys, main([*T, "--out", str(run), "--overwrite"]), "symbolic link")
    assert victim.read_text() == "precious"


def test_a_resume_stopped_while_starting_loses_no_log_row(tmp_path, monkeypatch):
    from dpd.training import logs, resume

    run = _checkpointed_run(tmp_path)
    before = {f: (run / "student0" / f).read_text().splitlines() for f in (PROGRESS_FILE, MONITOR_FILE)}

    def killed(*args, **kwargs):  # the new writers have emptied the logs; the process dies right here
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(logs, "restore_rows", killed)
        with pytest.raises(KeyboardInterrupt):
            resume(run)
    assert len((run / "student0" / PROGRESS_FILE).read_text().splitlines()) <= 1  # emptied by SB3's writer
    summary = resume(run)
    assert summary["status"] == "finished"
    after = {f: (run / "student0" / f).read_text().splitlines() for f in (PROGRESS_FILE, MONITOR_FILE)}
    for f in after:  # every row kept at the checkpoint is still there, in order, followed by the new ones
        kept = before[f][: len(after[f])]
        assert after[f][: len(kept)] == kept or f == PROGRESS_FILE  # progress.csv's header may gain columns
        assert len(after[f]) > len(before[f]) - 5
    assert not list(run.rglob("*.kept"))


def test_a_failed_save_leaves_no_cut_off_model(tmp_path, monkeypatch):
    from stable_baselines3 import PPO

    from dpd.errors import DPDUserError  # noqa: F401 - the run fails with the OSError itself

    run = tmp_path / "run"
    train(TrainConfig(env_id="CartPole-v1", total_steps=1024, eval_freq=0, n_envs=1, algo_kwargs={"n_steps": 256}),
          run)
    good = (run / "student1" / "model.zip").read_bytes()
    real_save = PPO.save

    def disk_full(self, path, *a, **k):
        path.write(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(PPO, "save", disk_full)
    from dpd.state import RandomStream
    from dpd.training.learner import Learner

    learner = Learner.__new__(Learner)
    learner.student = type("S", (), {"model": PPO("MlpPolicy", "CartPole-v1"), "vec_normalize": None})()
    learner.folder = run / "student1"
    learner.random = RandomStream()  # the learner's own stream (its constructor makes it)
    with pytest.raises(OSError):
        learner.save()
    monkeypatch.setattr(PPO, "save", real_save)
    assert (run / "student1" / "model.zip").read_bytes() == good
    assert not [p for p in (run / "student1").iterdir() if p.name.endswith(".tmp")]


def test_a_killed_sweep_leaves_no_worker_behind(tmp_path):
    out = tmp_path / "sw"
    proc = subprocess.Popen([sys.executable, "-m", "dpd.cli", "sweep", "--env", "CartPole-v1", "--seeds", "2",
                             "--total-steps", "200000", "--workers", "2", "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120

    def set_up() -> int:  # trials whose learners have all had their first evaluation, the end of a trial's setup
        def evaluated(run: Path) -> bool:
            logs = [run / name / "evaluations.csv" for name in ("vanilla", "student0", "student1") if (run / name).is_dir()]
            return bool(logs) and all(log.is_file() and len(log.read_text().splitlines()) >= 2 for log in logs)

        return sum(evaluated(run) for run in out.glob("runs/*") if (run / "config.yaml").is_file())

    while time.time() < deadline and set_up() < 2:
        time.sleep(0.2)
    time.sleep(1.0)  # into the first round (a stop while setting up has nothing to checkpoint: test_reliability)
    children = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert len(children) >= 3  # the sweep, two workers (and the resource tracker)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 60
    left = children
    while time.time() < deadline and left:
        time.sleep(0.5)
        left = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert not left, f"processes left behind: {left}"
    # the running trials checkpointed on the way out: the same command resumes them
    assert len(list(out.glob(f"runs/*/{CHECKPOINT_FILE}"))) == 2


@pytest.mark.parametrize("extra, message", [
    (["--seed", "-1"], "seed must be in"),
    (["--seed", "5000000000"], "seed must be in"),
    (["--set", "algo.n_steps=0"], "algo.n_steps must be in"),
    (["--set", "algo.learning_rate=-1"], "algo.learning_rate must be in"),
    (["--set", "algo.n_steps=[1,2]"], "algo.n_steps expects int"),
    (["--set", "algo.policy_kwargs.net_arch=hello"], "net_arch must be a list"),
    (["--set", "device=bogus"], "not a torch device"),
    (["--set", "algo.n_epochs={a: 1}"], "algo.n_epochs expects int"),
    (["--set", "algo.n_epochs="], "algo.n_epochs expects int"),
    (["--set", "algo.n_epochs=true"], "algo.n_epochs expects int"),
    (["--set", "max_log_weight=1e308"], "max_log_weight must be in"),
    (["--env", ":CartPole-v1"], "is not a module name"),
    (["--env", "..evil:CartPole-v1"], "is not a module name"),
])  # fmt: skip
def test_values_that_crashed_mid_run_are_one_line_errors_before_any_folder(tmp_path, capsys, extra, message):
    out = tmp_path / "run"
    one_line_error(capsys, main([*T, *extra, "--out", str(out)]), message)
    assert not out.exists()


def test_an_over_long_out_name_and_an_analyze_out_that_is_a_file(tmp_path, capsys):
    one_line_error(capsys, main([*T, "--out", str(tmp_path / ("x" * 300))]), "at most 255")
    a_file = tmp_path / "f"
    a_file.write_text("x")
    one_line_error(capsys, main(["analyze", str(tmp_path), "--out", str(a_file)]), "is not a folder")


def test_module_prefixed_env_gets_the_tasks_preset():
    assert TrainConfig(env_id="json:CartPole-v1").resolve().n_envs == TrainConfig(env_id="CartPole-v1").resolve().n_envs


def test_non_finite_observations_name_the_env(tmp_path, capsys):
    code = main(["train", "--env", "dpd_test_envs:DpdNaN-v0", "--total-steps", "1024", "--sequential", "--no-progress",
                 "--set", "eval_freq=0", "--set", "algo.n_steps=256", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "DpdNaN-v0 returned a non-finite observation" in err, err


@pytest.mark.parametrize("text, message", [
    ("envs: [CartPole-v1\n", "not valid YAML"),
    ("!!python/object/apply:os.system ['touch pwned']\n", "not valid YAML"),
    ("envs: [CartPole-v1]\ntotal_steps: 1e3\n", "total_steps must be a positive integer"),
    ("envs: [CartPole-v1]\ntotal_steps: 1000\nseeds: 3\n", "seeds must be a list"),
    ("envs: [CartPole-v1]\ntotal_steps: 1000\nalphas: [big]\n", "alphas must be a list of numbers"),
    ("- a\n- b\n", "is not a YAML mapping"),
])  # fmt: skip
def test_bad_sweep_files_are_one_line_errors_that_create_nothing(tmp_path, capsys, text, message):
    cfg = tmp_path / "sweep.yaml"
    cfg.write_text(text)
    one_line_error(capsys, main(["sweep", "--config", str(cfg), "--out", str(tmp_path / "sw")]), message)
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "sw").exists()


@pytest.mark.parametrize("workers", ["0", "-1"])
def test_sweep_workers_must_be_positive(tmp_path, capsys, workers):
    one_line_error(capsys, main(["sweep", "--env", "CartPole-v1", "--workers", workers, "--out", str(tmp_path / "s")]),
                   "--workers must be at least 1")


@pytest.mark.parametrize("damage, message", [
    ("empty_error", None),
    ("cut_summary", "is damaged"),
    ("bad_sweep_yaml", "not valid YAML"),
])  # fmt: skip
def test_report_on_a_damaged_sweep(tmp_path, capsys, damage, message):
    from dpd.experiments.sweep import RUNS_DIR, SweepSpec, expand

    spec = SweepSpec(envs=["CartPole-v1"], total_steps=2048, seeds=[0], variants=["vanilla"],
                     overrides=["eval_freq=1024", "eval_episodes=1"])
    sweep = tmp_path / "sw"
    from dpd.experiments.sweep import run_sweep

    run_sweep(spec, sweep, workers=1)
    run = sweep / RUNS_DIR / expand(spec)[0].name
    if damage == "empty_error":
        (run / "summary.json").unlink()
        (run / "error.txt").write_text("")
    elif damage == "cut_summary":
        (run / "summary.json").write_text('{"learners": {"van')
    else:
        (sweep / "sweep.yaml").write_text("envs: [\n")
    code = main(["report", str(sweep)])
    if message is None:
        assert code == 0 and "(no error text)" in (sweep / "report" / "report.md").read_text()
    else:
        one_line_error(capsys, code, message)


def test_resume_removes_stale_temporary_files(tmp_path):
    from dpd.training import resume

    run = _checkpointed_run(tmp_path)
    stale = run / ".checkpoint.pt.abc123.tmp"
    stale.write_bytes(b"half")
    resume(run)
    assert not stale.exists()
