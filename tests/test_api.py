"""The SB3-shaped API (``DPD``) and environment factories: a user's own env class, from Python and the CLI."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import PPO

from dpd import DPD, DPDUserError
from dpd.evaluation import evaluate_run

TINY = {"n_steps": 64, "batch_size": 32, "n_epochs": 1, "eval_freq": 128, "eval_episodes": 2, "preset": "none"}


class Line(gym.Env):
    """A user's env class, defined here: push a point to the right."""

    observation_space = gym.spaces.Box(-3.0, 3.0, (1,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x, self.t = 0.0, 0
        return np.array([self.x], np.float32), {}

    def step(self, action):
        self.t += 1
        self.x = float(np.clip(self.x + 0.3 * float(np.clip(action[0], -1, 1)), -3, 3))
        return np.array([self.x], np.float32), self.x, False, self.t >= 30, {}


def make_line() -> Line:
    return Line()


def test_dpd_on_a_users_env_class_trains_saves_loads_and_evaluates(tmp_path: Path) -> None:
    made = []

    def counting() -> Line:
        made.append(1)
        return Line()

    model = DPD("ppo", make_line, alpha=1.0, seed=3, policy_kwargs={"net_arch": [16], "activation_fn": th.nn.Tanh},
                **TINY)
    assert model.learn(512) is model
    assert len(model.students) == 2 and all(isinstance(m, PPO) for m in model.students)
    assert model.summary is not None and model.summary["total_env_steps"] >= 512
    run = model.save(tmp_path / "run")
    assert (run / "student0" / "model.zip").is_file() and (run / "summary.json").is_file()
    assert PPO.load(run / "student1" / "model.zip", device="cpu").policy is not None  # plain SB3 reads it
    # a module-level factory is stored by name; this test module is imported, so it opens without env=
    loaded = DPD.load(run)
    action, _ = loaded.predict(np.array([[0.5]], np.float32))
    assert action.shape == (1, 1)
    results = evaluate_run(run, 2, env=counting)  # each learner's evaluation env from the factory again
    assert set(results["learners"]) == {"student0", "student1"} and len(made) >= 2
    # trained in memory, its snapshots were kept and saved with it: dpd analyze reads the folder
    from dpd.experiments.analyze import analyze

    assert [s["student_steps"] for s in analyze(run, n_states=5, n_value_states=2)["stages"]] == [64, 128, 256]
    with pytest.raises(DPDUserError, match="trained"):
        model.learn(64)
    model.close()


def test_a_lambda_env_is_not_stored_and_loading_says_how_to_pass_it_again(tmp_path: Path, monkeypatch) -> None:
    model = DPD("ppo", lambda: Line(), method="vanilla", **TINY).learn(256)
    run = model.save(tmp_path / "lam")
    assert "env_id: unstored:" in (run / "config.yaml").read_text()
    monkeypatch.setattr("dpd.envs._FACTORIES", {})  # another process: it never saw the lambda
    with pytest.raises(DPDUserError, match="pass it again"):
        DPD.load(run)
    again = DPD.load(run, env=lambda: Line())
    assert again.predict(np.zeros((1, 1), np.float32))[0].shape == (1, 1)


class NotAnEnv:
    pass


def raising() -> gym.Env:
    raise ValueError("no licence for the simulator")


def scalar_obs() -> gym.Env:
    env = Line()
    env.observation_space = gym.spaces.Box(-1.0, 1.0, (), np.float32)
    return env


def unbounded_actions() -> gym.Env:
    env = Line()
    env.action_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    return env


def no_actions() -> gym.Env:
    env = Line()
    env.action_space = gym.spaces.Box(-1.0, 1.0, (0,), np.float32)
    return env


@pytest.mark.parametrize("factory, message", [
    (raising, "raised ValueError: no licence"),
    (lambda: NotAnEnv(), "returned a NotAnEnv, not a gymnasium.Env"),
    (scalar_obs, "observations of shape ()"),
    (unbounded_actions, "infinite action bounds"),
    (no_actions, "actions of shape (0,)"),
    (42, "callable that returns a gym.Env"),
])  # fmt: skip
def test_bad_env_factories_are_one_line_errors(factory, message: str) -> None:
    with pytest.raises(DPDUserError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        DPD("ppo", factory, **TINY)
    assert "\n" not in str(info.value)


def test_the_cli_trains_on_a_factory_named_module_colon_function(tmp_path: Path, capsys) -> None:
    from dpd.cli import main

    out = tmp_path / "run"
    code = main(["train", "--env", "dpd_test_envs:make_corridor", "--total-steps", "256", "--sequential",
                 "--no-progress", "--preset", "none", "--set", "algo.n_steps=64", "--set", "algo.batch_size=32",
                 "--set", "eval_freq=0", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert "env_id: dpd_test_envs:make_corridor" in (out / "config.yaml").read_text()
    code = main(["train", "--env", "dpd_test_envs:no_such_factory", "--total-steps", "256", "--out",
                 str(tmp_path / "x")])
    assert code == 2 and "unknown environment id" in capsys.readouterr().err
