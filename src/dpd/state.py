"""A learner's state as plain data (tensors, arrays, numbers, strings, lists, dicts): random generators, gymnasium
envs and SB3 VecEnv stacks captured and restored exactly. Checkpoints (:mod:`dpd.training.checkpoint`) are made of
this; students use it for their own part, so it sits below them.

What makes a restore exact: every source of randomness (Python, NumPy, torch, each env's ``np_random``, the action
spaces) and the state of every environment copy mid-episode (MuJoCo: ``mj_getState(mjSTATE_INTEGRATION)``; other
envs: the plain attributes of the unwrapped env, e.g. CartPole's ``state``; wrappers' step counters).
"""

from __future__ import annotations

import math
import random
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecEnvWrapper, VecMonitor, VecNormalize

from dpd.envs import EnvGuard, RecentStates, mujoco_state, set_mujoco_state
from dpd.internals import (
    ALGORITHM_COUNTERS,
    GENERATOR_ATTRS,
    dummy_vec_env_resets,
    env_generator,
    set_dummy_vec_env_resets,
    set_env_generator,
    space_generator,
    stats_window_size,
    torch_save_params,
)


# ---------------------------------------------------------------------- plain data
def plain(x: Any) -> Any:
    """numpy -> torch tensors (uint32 -> int64), tuples -> lists, recursively: what weights_only loading accepts."""
    if isinstance(x, np.ndarray):
        return th.from_numpy(x.astype(np.int64) if x.dtype == np.uint32 else x.copy())
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    return x


def typed_scalars(x: Any) -> Any:
    """As :func:`plain`, but a numpy scalar becomes a 0-d tensor of its dtype (not a Python number):
    :func:`numpy_scalars` gives it back exactly, type included."""
    if isinstance(x, np.generic) and x.dtype != np.uint32:
        return th.from_numpy(np.asarray(x).reshape(()).copy())
    if isinstance(x, dict):
        return {k: typed_scalars(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [typed_scalars(v) for v in x]
    return plain(x)


def numpy_scalars(x: Any) -> Any:
    """The inverse of :func:`typed_scalars` (a 0-d tensor -> the numpy scalar of its dtype)."""
    if isinstance(x, th.Tensor) and x.dim() == 0:
        return x.numpy()[()]
    if isinstance(x, dict):
        return {k: numpy_scalars(v) for k, v in x.items()}
    if isinstance(x, list):
        return [numpy_scalars(v) for v in x]
    return x


def arr(x: Any, dtype: Any = None) -> np.ndarray:
    a = x.numpy() if isinstance(x, th.Tensor) else np.asarray(x)
    return a.astype(dtype) if dtype is not None else a.copy()


def check_like(reference: Any, value: Any, where: str = "", shapes: bool = True) -> None:
    """Raise ValueError naming the first place where ``value`` (a learner's state read from a checkpoint) does not
    have the structure of ``reference`` (the same learner's state, freshly built): a checkpoint is data, damaged
    anywhere, and a value of the wrong kind would otherwise surface much later, deep inside SB3 or an env.

    Compared: mappings (every key of the reference present; extra keys allowed), sequences (item by item where the
    lengths agree; else each item against the reference's first), arrays and tensors (kind, dtype, and shape where
    ``shapes``), booleans, numbers, strings. Not compared: what a fresh learner does not have yet (a None, an empty
    list or mapping: the last observation, an optimiser's per-parameter state, an empty array), except that the items
    of such a collection must be alike one another (every parameter's Adam moments: the same keys and kinds); a
    number may be a 0-d array or tensor, or None (a seed consumed by its reset), but not NaN or infinite where the
    fresh one is finite."""
    def fail(what: str) -> None:
        raise ValueError(f"{where or 'the state'}: {what}")

    if reference is None:
        return
    if _scalar(reference) and (_scalar(value) or value is None):  # a running statistic is a 0-d tensor at first,
        # a float later; a seed waiting for the next reset is None once used
        if value is not None and math.isfinite(float(reference)) and not math.isfinite(float(value)):
            fail(f"{float(value)} where a finite number belongs")  # e.g. an optimiser's step count
        return
    if isinstance(reference, dict):
        if not isinstance(value, dict):
            fail(f"a {type(value).__name__} where a mapping belongs")
        if not reference:  # filled during training: its items alike one another
            _alike(list(value.items()), where)
            return
        for key, ref in reference.items():
            if key not in value:
                fail(f"{key!r} is missing")
            check_like(ref, value[key], f"{where}.{key}", shapes)
    elif isinstance(reference, list | tuple):
        if not isinstance(value, list | tuple):
            fail(f"a {type(value).__name__} where a sequence belongs")
        if len(reference) == len(value):
            for i, (ref, item) in enumerate(zip(reference, value, strict=True)):
                check_like(ref, item, f"{where}[{i}]", shapes)
        elif not reference:  # filled during training (the episode-info buffer): its items alike one another
            _alike(list(enumerate(value)), where)
        else:  # grown during training (the evaluation rows): each item alike the fresh one's first
            for i, item in enumerate(value):
                check_like(reference[0], item, f"{where}[{i}]", shapes=False)
    elif isinstance(reference, th.Tensor | np.ndarray):
        if type(value) is not type(reference):
            fail(f"a {type(value).__name__} where a {type(reference).__name__} belongs")
        if not math.prod(reference.shape):  # an empty placeholder until the first reset: its dtype and shape too
            return
        if value.dtype != reference.dtype:
            fail(f"a {type(value).__name__} of {getattr(value, 'dtype', '-')} where a {type(reference).__name__} of"
                 f" {reference.dtype} belongs")
        if shapes and tuple(value.shape) != tuple(reference.shape):
            fail(f"shape {tuple(value.shape)} where {tuple(reference.shape)} belongs")
    elif isinstance(reference, bool):
        if not isinstance(value, bool | np.bool_):
            fail(f"{type(value).__name__} where a boolean belongs")
    elif isinstance(reference, int | float | np.number):
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            fail(f"{type(value).__name__} where a number belongs")
    elif isinstance(reference, str) and not isinstance(value, str):
        fail(f"{type(value).__name__} where a string belongs")


def _alike(items: list[tuple[Any, Any]], where: str) -> None:
    """Items of a collection a fresh learner has empty: each alike the first, both ways (keys, kinds; not shapes)."""
    for key, item in items[1:]:
        check_like(items[0][1], item, f"{where}.{key}", shapes=False)
        check_like(item, items[0][1], f"{where}.{items[0][0]}", shapes=False)


def _scalar(x: Any) -> bool:
    """A number, or an array or tensor holding one number."""
    if isinstance(x, th.Tensor | np.ndarray):
        return x.ndim == 0
    return isinstance(x, int | float | np.number) and not isinstance(x, bool)


def gen_state(gen: np.random.Generator) -> dict[str, Any]:
    return plain(gen.bit_generator.state)


def set_gen_state(gen: np.random.Generator, state: dict[str, Any]) -> None:
    gen.bit_generator.state = state


# ---------------------------------------------------------------------- global RNG
def rng_state() -> dict[str, Any]:
    """The process's global generators: Python's, NumPy's, torch's CPU one and, where CUDA is in use (initialised),
    every CUDA device's (a run with ``device=cuda`` draws dropout-free but sampling noise there)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": plain(random.getstate()), "numpy": [name, plain(keys), pos, has_gauss, cached],
             "torch": th.get_rng_state()}
    if th.cuda.is_available() and th.cuda.is_initialized():
        state["cuda"] = th.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, arr(keys, np.uint32), pos, has_gauss, cached))
    th.set_rng_state(state["torch"])
    if "cuda" in state and th.cuda.is_available():
        th.cuda.set_rng_state_all(state["cuda"])


class RandomStream:
    """One learner's own stream of the process's global generators (Python, NumPy, torch CPU and CUDA), as a
    context: ``with stream:`` swaps the stream in (the caller's global state is kept aside) and, on leaving, swaps
    it out again (the stream keeps where it got to; the caller's state is put back).

    Why: SB3 draws from the global generators (minibatch order, action sampling) and its constructor reseeds them,
    so two students in one process would otherwise share one stream and a student's rollouts would depend on its
    peer's draws. Inside its stream a student draws exactly what it would draw alone (and in its own process in
    parallel mode). The first entry of a stream without a ``state`` starts from the global state as it is: a
    learner is built inside its stream, so the stream starts where SB3's constructor seeded it.

    Nested entries of the same stream are one (the outermost swaps); another stream may be entered inside this one.
    """

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        #: the stream's state (as :func:`rng_state` gives it) while it is swapped out; None: not started yet
        self.state = state
        self._outside: dict[str, Any] | None = None
        self._depth = 0

    def __enter__(self) -> RandomStream:
        self._depth += 1
        if self._depth == 1:
            self._outside = rng_state()
            if self.state is not None:
                set_rng_state(self.state)
        return self

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0:
            assert self._outside is not None
            self.state = rng_state()
            set_rng_state(self._outside)
            self._outside = None


# ---------------------------------------------------------------------- single gym env
_SIMPLE = (int, float, bool, str, type(None))


def _simple_attrs(obj: Any) -> dict[str, Any]:
    out = {}
    for key, value in vars(obj).items():
        if key in GENERATOR_ATTRS or key in ("spec", "metadata", "render_mode") or key in CONSTANT_ATTRS:
            continue
        if _is_plain(value):
            out[key] = plain(value)
    return out


def _is_plain(value: Any) -> bool:
    if isinstance(value, np.ndarray):
        return value.dtype != object
    return isinstance(value, _SIMPLE) or (isinstance(value, tuple) and all(isinstance(v, _SIMPLE) for v in value))


def gym_env_state(env: gym.Env) -> dict[str, Any]:
    """State of one (wrapped) gymnasium env: wrappers' counters, the env's attributes, its RNG, MuJoCo physics."""
    layers = []
    layer: Any = env
    while isinstance(layer, gym.Wrapper):
        if not isinstance(layer, EnvGuard):  # it holds nothing to restore (and checkpoints from before it align)
            layers.append(_simple_attrs(layer))
        layer = layer.env
    unwrapped = layer
    state: dict[str, Any] = {"wrappers": layers, "attrs": _simple_attrs(unwrapped)}
    if env_generator(unwrapped) is not None:
        state["np_random"] = gen_state(env_generator(unwrapped))
    sim = mujoco_state(env)
    if sim is not None:
        state["mujoco"] = plain(sim)
    for space in ("action_space", "observation_space"):
        gen = space_generator(getattr(env, space))
        if gen is not None:
            state[space] = gen_state(gen)
    return state


#: a wrapper's attributes fixed at construction (its spaces, metadata): not state; a checkpoint written before they
#: were left out still holds them, and they are not restored (a damaged one would replace a space)
CONSTANT_ATTRS = frozenset({"_observation_space", "_action_space", "_metadata", "_reward_range", "_cached_spec"})


def _restore_attrs(obj: Any, attrs: dict[str, Any]) -> None:
    for key, value in attrs.items():
        if key in CONSTANT_ATTRS:
            continue
        current = getattr(obj, key, None)
        if value is None and isinstance(current, int | float) and not isinstance(current, bool):
            raise ValueError(f"{type(obj).__name__}.{key} is None where a number belongs")  # e.g. a monitor's t_start
        if isinstance(value, th.Tensor):
            value = arr(value, current.dtype if isinstance(current, np.ndarray) else None)
        elif isinstance(value, list) and isinstance(current, tuple):
            value = tuple(value)
        setattr(obj, key, value)


def set_gym_env_state(env: gym.Env, state: dict[str, Any]) -> None:
    layer: Any = env
    for attrs in state["wrappers"]:
        while isinstance(layer, EnvGuard):
            layer = layer.env
        _restore_attrs(layer, attrs)
        layer = layer.env
    while isinstance(layer, gym.Wrapper):
        layer = layer.env
    _restore_attrs(layer, state["attrs"])
    if "np_random" in state:
        set_env_generator(layer, np.random.Generator(np.random.PCG64()))
        set_gen_state(env_generator(layer), state["np_random"])
    if "mujoco" in state:
        set_mujoco_state(env, arr(state["mujoco"]))
    for space in ("action_space", "observation_space"):
        if space in state:
            sp = getattr(env, space)
            sp.seed(0)  # creates the generator; its state is then overwritten
            set_gen_state(space_generator(sp), state[space])


# ---------------------------------------------------------------------- VecEnv stacks
def vec_env_state(venv: VecEnv) -> dict[str, Any]:
    """State of our VecEnv stacks: VecNormalize, RecentStates, VecMonitor, DummyVecEnv (and each sub-env)."""
    state: dict[str, Any] = {}
    layer: Any = venv
    while True:
        if isinstance(layer, VecNormalize):
            assert isinstance(layer.obs_rms, RunningMeanStd), "dict observations are not supported"
            state["vecnormalize"] = plain({
                "obs": [layer.obs_rms.mean, layer.obs_rms.var, layer.obs_rms.count],
                "ret": [layer.ret_rms.mean, layer.ret_rms.var, layer.ret_rms.count],
                "returns": layer.returns,
                "old_obs": getattr(layer, "old_obs", np.zeros(0)), "old_reward": getattr(layer, "old_reward", np.zeros(0)),
            })  # fmt: skip
        elif isinstance(layer, RecentStates):
            state["recent"] = plain(layer.get_state())
        elif isinstance(layer, VecMonitor):
            state["monitor"] = plain({"returns": layer.episode_returns, "lengths": layer.episode_lengths,
                                      "count": layer.episode_count})
        elif isinstance(layer, DummyVecEnv):
            seeds, options = dummy_vec_env_resets(layer)
            state["dummy"] = {"seeds": seeds, "options": plain(options),
                              "envs": [gym_env_state(e) for e in layer.envs]}
        if not isinstance(layer, VecEnvWrapper):
            return state
        layer = layer.venv


def set_vec_env_state(venv: VecEnv, state: dict[str, Any]) -> None:
    layer: Any = venv
    while True:
        if isinstance(layer, VecNormalize):
            assert isinstance(layer.obs_rms, RunningMeanStd), "dict observations are not supported"
            s = state["vecnormalize"]
            layer.obs_rms.mean, layer.obs_rms.var, layer.obs_rms.count = arr(s["obs"][0]), arr(s["obs"][1]), s["obs"][2]
            layer.ret_rms.mean, layer.ret_rms.var, layer.ret_rms.count = arr(s["ret"][0]), arr(s["ret"][1]), s["ret"][2]
            layer.returns = arr(s["returns"])
            if s["old_obs"].numel():
                layer.old_obs, layer.old_reward = arr(s["old_obs"]), arr(s["old_reward"])
        elif isinstance(layer, RecentStates):
            s = state["recent"]
            layer.set_state({k: arr(v) if isinstance(v, th.Tensor) else v for k, v in s.items()})
        elif isinstance(layer, VecMonitor):
            s = state["monitor"]
            layer.episode_returns, layer.episode_lengths = arr(s["returns"]), arr(s["lengths"])
            layer.episode_count = s["count"]
        elif isinstance(layer, DummyVecEnv):
            s = state["dummy"]
            for key in ("seeds", "options", "envs"):  # one per env copy: a shorter list would fail at a reset
                if not isinstance(s[key], list) or len(s[key]) != layer.num_envs:
                    raise ValueError(f"dummy.{key} holds {len(s[key]) if isinstance(s[key], list) else s[key]!r}"
                                     f" entries for {layer.num_envs} env copies")
            set_dummy_vec_env_resets(layer, s["seeds"], s["options"])
            for env, env_state in zip(layer.envs, s["envs"], strict=True):
                set_gym_env_state(env, env_state)
        if not isinstance(layer, VecEnvWrapper):
            return
        layer = layer.venv


# ---------------------------------------------------------------------- an SB3 algorithm
#: the counters and last observations of an SB3 algorithm that a continued run needs
_ALGORITHM_ATTRS = ALGORITHM_COUNTERS


def algorithm_state(model: BaseAlgorithm) -> dict[str, Any]:
    """An SB3 algorithm's networks, optimisers, torch variables, counters and episode buffers, as plain data."""
    from stable_baselines3.common.save_util import recursive_getattr

    modules, variables = torch_save_params(model)
    return {
        "torch": {name: recursive_getattr(model, name).state_dict() for name in modules},
        "torch_variables": {name: recursive_getattr(model, name).detach().clone() for name in variables},
        "model": plain({k: getattr(model, k, None) for k in _ALGORITHM_ATTRS}),
        # numpy scalars kept as 0-d tensors of their dtype: SB3 averages these buffers into progress.csv, and a float32
        # return turned into a Python float averages to another number (a resumed run's rows must equal the original)
        "ep_info_buffer": typed_scalars(list(model.ep_info_buffer or [])),
        "ep_success_buffer": typed_scalars(list(model.ep_success_buffer or [])),
    }


def load_algorithm_state(model: BaseAlgorithm, state: dict[str, Any]) -> None:
    """Restore :func:`algorithm_state`'s networks, optimisers, variables and counters (before SB3's learn setup)."""
    from stable_baselines3.common.save_util import recursive_getattr

    for name, sd in state["torch"].items():
        if isinstance(sd, dict) and "param_groups" in sd:  # an optimiser: its counters must be counts
            check_optimizer_state(sd, name)
        recursive_getattr(model, name).load_state_dict(sd)
    for name, value in state["torch_variables"].items():
        with th.no_grad():
            recursive_getattr(model, name).copy_(value)
    for key, value in state["model"].items():
        if hasattr(model, key):
            setattr(model, key, arr(value) if isinstance(value, th.Tensor) else value)


def check_optimizer_state(sd: dict[str, Any], name: str) -> None:
    """Raise ValueError where a torch optimiser's saved state holds a step count that is not a whole number >= 0
    (a damaged checkpoint: Adam's bias correction divides by 1 - beta^step, zero at step 0 and wrong below it, and the
    error would surface at the first update, deep inside torch)."""
    for key, per_param in (sd.get("state") or {}).items():
        step = per_param.get("step") if isinstance(per_param, dict) else None
        if step is None:
            continue
        value = float(step.item() if isinstance(step, th.Tensor) and step.numel() == 1 else step) \
            if isinstance(step, int | float | th.Tensor) and not isinstance(step, bool) else float("nan")
        if not (math.isfinite(value) and value >= 0 and value == int(value)):
            raise ValueError(f"{name}: parameter {key}'s step count is {step!r}, not a whole number >= 0")


def load_episode_buffers(model: BaseAlgorithm, state: dict[str, Any]) -> None:
    """Restore the episode-statistics buffers (after SB3's learn setup, which resets them)."""
    from collections import deque

    model.ep_info_buffer = deque(numpy_scalars(state["ep_info_buffer"]), maxlen=stats_window_size(model))
    model.ep_success_buffer = deque(numpy_scalars(state["ep_success_buffer"]), maxlen=stats_window_size(model))
