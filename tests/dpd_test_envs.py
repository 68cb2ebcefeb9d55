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


class CrashingForStudent1Env(CrashingEnv):
    """Raises after 300 steps only in the copies seeded for student1 (seed >= 10000): a failure in parallel mode's
    second process while student0, in the main process, runs on."""

    crashes = False

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self.crashes = seed >= 10_000
        return super().reset(seed=seed, options=options)

    def step(self, action):
        if not self.crashes:
            self.t = 0
        return super().step(action)


if "DpdCrashStudent1-v0" not in gym.registry:
    gym.register("DpdCrashStudent1-v0", entry_point=CrashingForStudent1Env)


class NaNObservationEnv(CrashingEnv):
    """Returns a NaN observation after 100 steps (a broken simulator)."""

    def step(self, action):
        self.t += 1
        obs = np.full(3, np.nan if self.t > 100 else 0.0, np.float32)
        return obs, 1.0, False, False, {}


if "DpdNaN-v0" not in gym.registry:
    gym.register("DpdNaN-v0", entry_point=NaNObservationEnv)
