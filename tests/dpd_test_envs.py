"""Envs for tests, importable by worker processes as ``dpd_test_envs:<Id>`` (gymnasium imports the module)."""

import gymnasium as gym
import numpy as np


class CrashingEnv(gym.Env):
    """Raises after 300 steps: a trial that fails in the middle of training."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self) -> None:
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(3, np.float32), {}

    def step(self, action):
        self.t += 1
        if self.t > 300:
            raise RuntimeError("simulator exploded")
        return np.zeros(3, np.float32), 1.0, self.t % 50 == 0, False, {}


if "DpdCrash-v0" not in gym.registry:
    gym.register("DpdCrash-v0", entry_point=CrashingEnv)
