"""Every access dpd makes to private parts of Stable-Baselines3, Gymnasium and the standard library, in one place.

dpd drives SB3's training loop itself (Algorithm 1 alternates two learners inside one ``learn``), captures SB3's and
Gymnasium's state exactly for checkpoints, and watches a process pool's workers. Each needs a name SB3 / Gymnasium /
``concurrent.futures`` does not promise to keep. They are all here, so that an upgrade is checked in one file:
:data:`CHECKED_SB3` names the SB3 versions these accesses were read against (the range ``pyproject.toml`` allows),
and ``tests/test_architecture.py`` fails with a clear message on any other, and on a private access elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

#: the SB3 minor versions whose private API this module was checked against (pyproject: >=2.7,<2.10)
CHECKED_SB3 = ("2.7", "2.8", "2.9")
#: an SB3 algorithm's counters and last observations that a continued run needs (restored by name)
ALGORITHM_COUNTERS = ("num_timesteps", "_n_updates", "_episode_num", "_current_progress_remaining", "_last_obs",
                      "_last_episode_starts", "_last_original_obs")
#: the attributes holding an env's or a space's random generator (captured through the functions below, not as data)
GENERATOR_ATTRS = frozenset({"_np_random", "_np_random_seed"})
#: the private names accessed below (the architecture test looks for them everywhere else)
PRIVATE_NAMES = frozenset({
    "_setup_learn", "_update_current_progress_remaining", "_get_torch_save_params", "_stats_window_size",
    "_np_random", "_seeds", "_options", "_processes", "_get_obs", *[n for n in ALGORITHM_COUNTERS if n.startswith("_")],
})  # fmt: skip


def sb3_version_checked() -> tuple[bool, str]:
    """(whether the installed SB3 is one of :data:`CHECKED_SB3`, its version)."""
    import stable_baselines3

    version = stable_baselines3.__version__
    return ".".join(version.split(".")[:2]) in CHECKED_SB3, version


# ---------------------------------------------------------------------- SB3 algorithms
def setup_learn(model: Any, total_timesteps: int, callback: Any, reset_num_timesteps: bool, name: str) -> Any:
    """SB3's ``_setup_learn`` (what ``learn`` does before its loop): returns the wrapped callback."""
    _, wrapped = model._setup_learn(total_timesteps, callback, reset_num_timesteps, name, False)
    return wrapped


def update_progress(model: Any, num_timesteps: int, total_timesteps: int) -> None:
    """SB3's progress-remaining update (its learning-rate and clip-range schedules read it)."""
    model._update_current_progress_remaining(num_timesteps, total_timesteps)


def torch_save_params(model: Any) -> tuple[list[str], list[str]]:
    """The names of an algorithm's torch modules (with optimisers) and torch variables, as SB3's ``save`` uses."""
    modules, variables = model._get_torch_save_params()
    return list(modules), list(variables)


def stats_window_size(model: Any) -> int:
    return int(model._stats_window_size)


# ---------------------------------------------------------------------- Gymnasium envs and spaces
def env_generator(env: Any) -> Any:
    """An unwrapped env's random generator (None before its first seeded reset)."""
    return getattr(env, "_np_random", None)


def set_env_generator(env: Any, generator: Any) -> None:
    env._np_random = generator


def space_generator(space: Any) -> Any:
    return getattr(space, "_np_random", None)


def mujoco_observation(env: Any) -> Any:
    """A Gymnasium MuJoCo env's observation of its current simulator state (after the state was set directly)."""
    return env.unwrapped._get_obs()


# ---------------------------------------------------------------------- SB3 VecEnvs
def dummy_vec_env_resets(venv: Any) -> tuple[list[Any], list[Any]]:
    """A DummyVecEnv's pending reset seeds and options (used at its next reset)."""
    return list(venv._seeds), list(venv._options)


def set_dummy_vec_env_resets(venv: Any, seeds: Iterable[Any], options: Iterable[Any]) -> None:
    venv._seeds, venv._options = list(seeds), list(options)


# ---------------------------------------------------------------------- the standard library
def pool_processes(pool: Any) -> list[Any]:
    """The worker processes of a ``concurrent.futures.ProcessPoolExecutor`` (empty where it has none yet)."""
    return list((getattr(pool, "_processes", None) or {}).values())
