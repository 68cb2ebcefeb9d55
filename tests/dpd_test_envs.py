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


class Corridor(gym.Env):
    """Walk right to the end of a corridor: a user's own env, made by a factory (``dpd_test_envs:make_corridor``)."""

    observation_space = gym.spaces.Box(-2.0, 2.0, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x, self.t = float(self.np_random.uniform(-0.5, 0.5)), 0
        return np.array([self.x, 0.0], np.float32), {}

    def step(self, action):
        self.t += 1
        self.x = float(np.clip(self.x + 0.2 * float(np.clip(action[0], -1, 1)), -2, 2))
        done = self.x >= 1.0
        return np.array([self.x, self.t / 50], np.float32), (1.0 if done else -0.05), done, self.t >= 50, {}


def make_corridor() -> Corridor:
    return Corridor()


class FaultyEnv(gym.Env):
    """Breaks its contract after 100 steps, in the way its ``fault`` says (env faults during a run)."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = gym.spaces.Discrete(2)
    fault = "nan_reward"

    def __init__(self) -> None:
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if self.fault == "old_reset":
            return np.zeros(3, np.float32)
        return np.zeros(3, np.float32), {}

    def step(self, action):
        self.t += 1
        obs, reward = np.zeros(3, np.float32), 1.0
        if self.t > 100:
            if self.fault == "nan_reward":
                reward = float("nan")
            elif self.fault == "wrong_shape":
                obs = np.zeros(4, np.float32)
            elif self.fault == "vector_reward":
                reward = np.ones(2)
            elif self.fault == "string_reward":  # NumPy reads "1.0" as a number without a word
                reward = "1.0"
            elif self.fault == "info_list":
                return obs, reward, self.t % 50 == 0, False, []
        return obs, reward, self.t % 50 == 0, False, {}


for _fault in ("nan_reward", "wrong_shape", "vector_reward", "old_reset", "string_reward", "info_list"):
    _id = "DpdFault" + "".join(p.title() for p in _fault.split("_")) + "-v0"
    if _id not in gym.registry:
        gym.register(_id, entry_point=type(f"Faulty_{_fault}", (FaultyEnv,), {"fault": _fault}))

if "dpdns/Corridor-v0" not in gym.registry:
    gym.register("dpdns/Corridor-v0", entry_point=Corridor, max_episode_steps=50)


def record_call() -> gym.Env:
    """A factory that leaves a mark (the file ``$DPD_TEST_CALLED``) when it is called: the property test of 'a run
    folder is data' names it in a folder's config.yaml and checks that no command calls it."""
    import os
    from pathlib import Path

    mark = os.environ.get("DPD_TEST_CALLED")
    if mark:
        Path(mark).write_text("called")
    return gym.make("CartPole-v1")


class _Hostile(gym.Env):
    """A small env that breaks one rule of the Gymnasium API (the third hostile pass's hostile envs)."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(3, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.zeros(3, np.float32), 1.0, self.t >= 50, False, {}


class CloseRaises(_Hostile):
    def close(self):
        raise RuntimeError("close exploded")


class StringObservations(_Hostile):
    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.array(["a", "b", "c"]), {}


class TerminatedNotABool(_Hostile):
    def step(self, action):
        obs, reward, _, truncated, info = super().step(action)
        return obs, reward, "yes", truncated, info


for _cls in (CloseRaises, StringObservations, TerminatedNotABool):
    if f"Dpd{_cls.__name__}-v0" not in gym.registry:
        gym.register(f"Dpd{_cls.__name__}-v0", entry_point=_cls)
