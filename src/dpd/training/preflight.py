"""Property 3 of docs/bad-input.md: nothing touches disk before it is valid.

``check_buildable(config)`` runs before a run folder is made (``dpd train``, a sweep's trial, ``DPD(run_dir=...)``)
and refuses, in one line, everything that would otherwise fail after the folder exists and leave it half-made:

- a config value config.yaml cannot store (a class, a callable: a run folder holds data, never code);
- arrays that cannot fit in this machine's memory (the recent-state window and the replay buffer of every learner,
  sized from the env's spaces and the config, against the physical memory);
- an env factory whose spaces differ from one call to the next (each learner makes several copies), an env whose
  first reset fails or returns what a policy cannot take, an env whose close() raises;
- anything SB3's constructor or the env refuses: one learner is built in memory, with no files, and dropped.

The build leaves the process's random state as it found it, so the run that follows trains exactly as without it.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from dpd.config import ALGOS, ResolvedConfig
from dpd.envs import EnvGuard, close_checked, make_env, mujoco_state
from dpd.errors import DPDUserError
from dpd.run_files import physical_memory

_STORABLE = (str, int, float, bool, type(None))


def check_buildable(config: ResolvedConfig) -> None:
    """Raise a one-line :class:`DPDUserError` for anything that would fail once the run folder is made."""
    check_storable(config.to_dict())
    observation_space, action_space, sim_size = _stable_spaces(config.env_id)
    if config.engine == "jax":
        from dpd.engine import check_spaces

        check_spaces(config, observation_space, action_space)
    check_memory(config, observation_space, action_space, sim_size)
    _build_in_memory(config)


def run_bytes(config: ResolvedConfig) -> int:
    """The bytes one run's large arrays take (:func:`check_memory`, from one instance of its env): what a sweep sizes
    its JAX packs by; a one-line DPDUserError where one run alone exceeds the machine's memory."""
    observation_space, action_space, sim_size = _one_instance(config.env_id)
    return check_memory(config, observation_space, action_space, sim_size)


def _one_instance(env_id: str, reset: bool = False) -> tuple[gym.Space, gym.Space, int]:
    """(observation space, action space, MuJoCo state size or 0) of one new instance of ``env_id``, reset once under
    :class:`EnvGuard` if ``reset``, then closed (a close() that raises is one line)."""
    env = make_env(env_id)
    try:
        spaces = env.observation_space, env.action_space  # as made, before any reset
        state = mujoco_state(env)
        if reset:
            EnvGuard(env, env_id).reset(seed=0)
        return *spaces, 0 if state is None else len(state)
    finally:
        close_checked(env, env_id)


def check_storable(value: Any, key: str = "") -> None:
    """``value`` (a config as a dict) holds only what YAML stores as plain data: numbers, strings, booleans, None,
    lists and string-keyed dicts of them."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise DPDUserError(f"{key or 'the config'} has a key {k!r} that is not a string; config.yaml stores"
                                   " string keys only")
            check_storable(v, f"{key}.{k}" if key else k)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_storable(v, f"{key}[{i}]")
    elif not isinstance(value, _STORABLE):
        what = getattr(value, "__qualname__", None) or type(value).__name__
        raise DPDUserError(f"{key}: {what} cannot be stored in config.yaml, which holds data only (numbers, strings,"
                           " lists), never code; use a value dpd names (e.g. learning_rate=3e-4 or 'lin_3e-4',"
                           " activation_fn='relu') or leave it at SB3's default")


def _stable_spaces(env_id: str) -> tuple[gym.Space, gym.Space, int]:
    """(observation space, action space, MuJoCo state size or 0) of ``env_id``, checked equal over two calls (a
    learner makes several copies; one of another shape fails deep inside a matrix product); the second instance is
    reset once under :class:`EnvGuard` (a reset that fails or returns what a policy cannot take is one line here,
    not a traceback inside the run) and every instance's close() must not raise."""
    first, second = _one_instance(env_id), _one_instance(env_id, reset=True)
    spaces = [first[:2], second[:2]]
    sim_size = second[2]
    if spaces[0] != spaces[1]:
        raise DPDUserError(f"environment {env_id!r} returns envs with different spaces on different calls"
                           f" (observations {spaces[0][0]} then {spaces[1][0]}, actions {spaces[0][1]} then"
                           f" {spaces[1][1]}); every copy a learner makes must have the same spaces")
    return spaces[0][0], spaces[0][1], sim_size


def check_memory(config: ResolvedConfig, observation_space: gym.Space, action_space: gym.Space, sim_size: int,
                 available: int | None = None) -> int:
    """The bytes the run's large arrays take (every learner's recent-state window and, off-policy, replay
    buffer), or a one-line DPDUserError where they exceed ``available`` (default: the physical memory)."""
    obs = int(np.prod(observation_space.shape or (1,)))
    act = int(np.prod(action_space.shape or (1,)))
    window = config.distill.window
    # RecentStates: float32 states, float64 rewards and env indices, two bool flags, float64 MuJoCo states if recorded
    window_bytes = window * (4 * obs + 8 + 8 + 2 + 8 * (sim_size if config.record_sim_states else 0))
    buffer_bytes = 0
    if ALGOS[config.algo][1] == "off_policy":
        size = int(config.algo_arg("buffer_size"))  # SB3's own default, not a copy of it
        # SB3's ReplayBuffer: float32 observations and next observations, actions, rewards, dones, timeouts
        buffer_bytes = size * (4 * (2 * obs + act) + 4 + 4 + 4)
    learners = len(config.learner_names)
    total = learners * (window_bytes + buffer_bytes)
    limit = physical_memory() if available is None else available
    if total > limit:
        gib = 1 << 30
        raise DPDUserError(
            f"this run's arrays need {total / gib:.1f} GiB ({learners} learner(s): state window of {window} states"
            f" {window_bytes / gib:.2f} GiB" + (f", replay buffer {buffer_bytes / gib:.2f} GiB" if buffer_bytes else "")
            + f" each), more than this machine's {limit / gib:.1f} GiB of memory; lower distill.window"
            + (" or algo.buffer_size" if buffer_bytes else ""))
    return total


def _build_in_memory(config: ResolvedConfig) -> None:
    """Build learner 0 with no files (SB3's constructor checks its arguments; the env is made as training makes
    it) and drop it; the global random state is put back as it was."""
    from dpd.state import RandomStream
    from dpd.students.factory import build_student

    try:
        with RandomStream():  # a stream of its own, dropped with the student: the process's state stays as it was
            student = build_student(config, 0, None)
    except DPDUserError:
        raise
    except MemoryError as exc:
        raise DPDUserError(f"this run does not fit in memory ({exc}); lower distill.window or algo.buffer_size"
                           ) from None
    except Exception as exc:  # SB3 or the env refusing what dpd's own checks let through
        first = (str(exc).strip().splitlines() or [""])[0]
        raise DPDUserError(f"{ALGOS[config.algo][0].__name__} cannot be built with this config: {type(exc).__name__}:"
                           f" {first}") from None
    env = student.model.get_env()
    if env is not None:
        env.close()
