"""End to end: Algorithm 1 learns, the run folder holds every promised file, the Python API works."""

import csv
import json
import os

import numpy as np
import pytest
import torch as th
import yaml
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from dpd import TrainConfig, load_learner, train
from dpd.cli import main
from dpd.run_files import read_evaluations


@pytest.mark.slow  # a learning threshold on one seed: `make slow`
def test_dpd_ppo_learns_cartpole():
    summary = train(TrainConfig(env_id="CartPole-v1", total_steps=60_000, seed=0, eval_freq=10_000))
    finals = [v["final_eval_return"] for v in summary["learners"].values()]
    # a random policy scores ~20, the maximum is 500
    assert min(finals) >= 250 and np.mean(finals) >= 350, summary["learners"]
    assert all(v["env_steps"] >= 30_000 for v in summary["learners"].values())


PROGRESS_KEYS = [
    "rollout/ep_rew_mean", "train/loss", "eval/mean_return", "time/total_env_steps",
    "distill/loss", "distill/weight_mean", "distill/weight_max", "distill/weight_clip_frac",
    "distill/peer_better_frac", "distill/xi_mean", "distill/action_distance", "distill/xi_scale",
]  # fmt: skip


def test_dpd_train_writes_every_promised_file(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--env", "InvertedPendulum-v5", "--total-steps", "2048", "--seed", "3", "--out", str(out),
                 "--set", "eval_freq=512", "--set", "eval_episodes=2", "--set", "tensorboard=true", "--no-progress"])
    assert code == 0
    assert "student0" in capsys.readouterr().out  # the final table
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["env_id"] == "InvertedPendulum-v5" and config["normalize"] is True and config["distill"]["lr"] == 1e-5
    assert TrainConfig.from_dict(config).resolve().to_dict() == config  # the stored config is complete
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["method"] == "dpd" and summary["total_env_steps"] >= 2048
    import torch

    # where it ran: long runs of one config drift apart across CPUs (torch's kernels follow the CPU's capability)
    assert summary["platform"]["torch"] == torch.__version__ and summary["platform"]["mujoco"] is not None
    assert summary["platform"]["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    for name in ("student0", "student1"):
        folder = out / name
        learner = summary["learners"][name]
        assert learner["env_steps"] >= 1024 and learner["final_eval_return"] is not None
        model = PPO.load(folder / "model.zip", device="cpu")  # a plain SB3 zip
        stats = VecNormalize.load(str(folder / "vecnormalize.pkl"), DummyVecEnv([lambda: __import__("gymnasium").make(
            "InvertedPendulum-v5")]))
        obs = stats.normalize_obs(np.zeros((1, 4), dtype=np.float32))
        assert model.predict(obs, deterministic=True)[0].shape == (1, 1)
        header = (folder / "progress.csv").read_text().splitlines()[0].split(",")
        assert set(PROGRESS_KEYS) <= set(header), set(PROGRESS_KEYS) - set(header)
        evals = read_evaluations(folder / "evaluations.csv")
        assert evals[0]["student_steps"] == 0 and evals[-1]["student_steps"] == learner["env_steps"]
        assert evals[-1]["total_env_steps"] == 2 * learner["env_steps"]
        assert any(p.name.startswith("events.out.tfevents") and p.stat().st_size > 0 for p in folder.iterdir())
        assert (folder / "train_episodes.monitor.csv").read_text().count("\n") > 2
    assert not os.path.exists("MUJOCO_LOG.TXT")

    # dpd evaluate re-evaluates the saved students
    assert main(["evaluate", str(out), "--episodes", "2"]) == 0
    reeval = json.loads((out / "reevaluation.json").read_text())
    assert set(reeval["learners"]) == {"student0", "student1"}
    model, env = load_learner(out, "student1")
    assert isinstance(env, VecNormalize) and not env.training and not env.norm_reward
    action, _ = model.predict(env.reset(), deterministic=True)
    assert action.shape == (1, 1)


def test_vanilla_trains_one_learner_for_the_same_total_steps(tmp_path):
    out = tmp_path / "vanilla"
    summary = train(TrainConfig(env_id="CartPole-v1", method="vanilla", algo="a2c", total_steps=3000, eval_freq=1000,
                                eval_episodes=2), out)
    assert list(summary["learners"]) == ["vanilla"]
    assert summary["learners"]["vanilla"]["env_steps"] >= 3000
    assert A2C.load(out / "vanilla" / "model.zip").num_timesteps >= 3000
    assert "distill/loss" not in (out / "vanilla" / "progress.csv").read_text().splitlines()[0]


def test_first_distillation_of_student0_is_skipped_as_in_algorithm1():
    summary = train(TrainConfig(env_id="CartPole-v1", total_steps=2048, eval_freq=10_000, eval_episodes=1))
    # student0 distills before student1 has collected anything; student1 always finds student0's window full
    assert summary["learners"]["student0"]["distill_skipped_empty"] == 1
    assert summary["learners"]["student1"]["distill_skipped_empty"] == 0


class StopAfter(BaseCallback):
    def __init__(self, steps):
        super().__init__()
        self.steps = steps
        self.calls = 0

    def _on_step(self) -> bool:
        self.calls += 1
        return self.num_timesteps < self.steps


def test_sb3_callbacks_run_per_learner_and_can_stop_training():
    made = {}

    def factory(name):
        made[name] = StopAfter(600 if name == "student1" else 10**9)
        return made[name]

    summary = train(TrainConfig(env_id="CartPole-v1", total_steps=20_000, eval_freq=10_000, eval_episodes=1),
                    callbacks=factory)
    assert summary["status"] == "stopped_by_callback"
    assert made["student0"].calls > 0 and made["student1"].num_timesteps >= 600
    assert summary["total_env_steps"] < 20_000


def assert_distilled(config, out, **train_kwargs):
    """Train ``config`` as DPD and as the independent pair (the same students, never distilled) into ``out``; assert
    that each DPD student took distillation steps (its log's distill/phase_steps) and that distillation moved its
    actor (its final actor differs from the independent pair's). Returns DPD's summary."""
    summary = train(config, out / "dpd", **train_kwargs)
    train(config.with_values(method="independent"), out / "independent")
    for name in ("student0", "student1"):
        with open(out / "dpd" / name / "progress.csv", newline="") as fh:
            steps = [float(row["distill/phase_steps"] or 0) for row in csv.DictReader(fh)]
        assert sum(steps) > 0, (name, steps)
        cls = {"ppo": PPO, "a2c": A2C}[config.algo]
        actors = [{k: v for k, v in cls.load(out / run / name / "model.zip", device="cpu").policy.state_dict().items()
                   if k.startswith(("mlp_extractor.policy_net", "action_net"))} for run in ("dpd", "independent")]
        assert actors[0].keys() == actors[1].keys() and actors[0]
        assert any(not th.equal(actors[0][k], actors[1][k]) for k in actors[0]), f"{name}'s actor never moved"
    return summary


@pytest.mark.parametrize("weighting", ["indicator", "uniform"])
def test_ablation_weightings_take_distillation_steps_that_move_the_actor(weighting, tmp_path):
    config = TrainConfig(env_id="CartPole-v1", total_steps=1024, eval_freq=10_000,
                         eval_episodes=1).with_values(weighting=weighting)
    summary = assert_distilled(config, tmp_path)
    assert summary["weighting"] == weighting and summary["status"] == "finished"


def test_a_dpd_a2c_pair_takes_distillation_steps_that_move_the_actor(tmp_path):
    config = TrainConfig(env_id="CartPole-v1", algo="a2c", total_steps=2000, eval_freq=10_000, eval_episodes=1)
    summary = assert_distilled(config, tmp_path)
    assert summary["status"] == "finished" and summary["learners"]["student1"]["distill_skipped_empty"] == 0


def test_a_run_with_the_progress_bar_drives_it_to_the_total_and_distills(tmp_path, monkeypatch):
    from dpd.training.trainer import _Progress

    shown = []
    update = _Progress.update
    monkeypatch.setattr(_Progress, "update",
                        lambda self, completed: (self.enabled and shown.append(completed), update(self, completed)))
    config = TrainConfig(env_id="CartPole-v1", total_steps=1024, eval_freq=10_000, eval_episodes=1)
    summary = assert_distilled(config, tmp_path, progress_bar=True)
    assert summary["status"] == "finished" and shown and shown[-1] == summary["total_env_steps"] == 1024


def test_a_learner_draws_from_its_own_random_stream_whatever_the_process_draws_between_calls():
    """Every method of the learner interface runs inside the learner's own random stream: two learners of one config
    end equal although the process's generators were reseeded before each call of one of them, and a call leaves
    the process's generators as they were."""
    import numpy as np
    import torch as th

    from dpd.training.interface import LearnerInterface
    from dpd.training.learner import Learner

    methods = [name for name in vars(LearnerInterface) if not name.startswith("_") and name not in ("name", "close")]
    assert len(methods) == 10 and all(hasattr(getattr(Learner, m), "__wrapped__") for m in methods), methods
    cfg = TrainConfig(env_id="CartPole-v1", total_steps=1024, eval_freq=0, tensorboard=False, snapshots=[],
                      algo_kwargs={"n_steps": 64, "batch_size": 32, "n_epochs": 1}).resolve()
    alone, disturbed = Learner(cfg, 0, None), Learner(cfg, 0, None)
    alone.setup()
    disturbed.setup()
    for k in range(3):
        assert alone.iterate() is True
        th.manual_seed(123 + k)
        np.random.seed(123 + k)
        torch_before, numpy_before = th.get_rng_state(), np.random.get_state()[1].copy()
        assert disturbed.iterate() is True  # PPO sampled actions and shuffled minibatches: from its own stream
        assert th.equal(th.get_rng_state(), torch_before) and (np.random.get_state()[1] == numpy_before).all()
    mine, theirs = alone.student.model.policy.state_dict(), disturbed.student.model.policy.state_dict()
    assert all(th.equal(mine[k], theirs[k]) for k in mine)
    alone.close()
    disturbed.close()


def test_a_random_stream_swaps_in_once_when_nested_and_keeps_another_stream_apart():
    import random

    from dpd.state import RandomStream

    def first(seed: int, n: int) -> list[float]:
        r = random.Random(seed)
        return [r.random() for _ in range(n)]

    random.seed(0)
    a, b = RandomStream(), RandomStream()
    with a:  # a stream without a state starts from the global state as it is
        x1 = random.random()
        with a:  # nested: still a's stream, no second swap
            x2 = random.random()
        with b:  # another stream inside this one
            random.seed(99)
            y1 = random.random()
        x3 = random.random()
    assert [x1, x2, x3] == first(0, 3)  # b's draws did not touch a's stream
    assert random.random() == first(0, 1)[0]  # the caller's state came back as it was before `with a`
    with b:
        y2 = random.random()
    assert [y1, y2] == first(99, 2)  # b continued where it stopped
