import os

import gymnasium as gym
import numpy as np
import pytest
import torch as th

# the studies' shared assertions (study_helpers.assert_same_report) keep pytest's detailed failure diffs
pytest.register_assert_rewrite("study_helpers")
# Tests run in one process next to each other's learners; keep torch on one thread like the trainer does.
th.set_num_threads(1)
os.environ.setdefault("MUJOCO_GL", "disable")


class MultiBinaryActionEnv(gym.Env):
    """A tiny env whose action space no DPD student supports (for bad-input tests)."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = gym.spaces.MultiBinary(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(3, np.float32), {}

    def step(self, action):
        return np.zeros(3, np.float32), 0.0, True, False, {}


if "DpdTestMultiBinary-v0" not in gym.registry:
    gym.register("DpdTestMultiBinary-v0", entry_point=MultiBinaryActionEnv)


@pytest.fixture(autouse=True)
def _no_mujoco_log(tmp_path, monkeypatch):
    """Run every test in its own folder so nothing (e.g. MUJOCO_LOG.TXT) lands in the repo."""
    monkeypatch.chdir(tmp_path)
