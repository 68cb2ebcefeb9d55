"""Which engine trains a run, and what the JAX engine implements: checked when a config is resolved, without
importing JAX (``import dpd`` never does; :mod:`dpd.pack` needs ``pip install 'dpd[jax]'``)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dpd.errors import DPDUserError

if TYPE_CHECKING:
    from dpd.config import ResolvedConfig

#: what the JAX engine implements today; anything else is refused in one line naming ``engine=sb3``
ENGINE_ALGOS = ("ddpg", "ppo")


def pack_key(config: ResolvedConfig) -> str:
    """What the runs of one pack share: the config without its seed, as sorted JSON (runs with the same key can
    train as one pack: a sweep groups them by it, and a pack refuses runs whose keys differ)."""
    import json

    fields = config.to_dict()
    fields.pop("seed")
    return json.dumps(fields, sort_keys=True, default=str)


def _refuse(what: str) -> DPDUserError:
    return DPDUserError(f"engine=jax does not implement {what} yet; use engine=sb3 (the default) for this run")


def check_supported(config: ResolvedConfig) -> None:
    """One line where ``config`` asks the JAX engine for something it does not implement (before anything is built)."""
    if importlib.util.find_spec("jax") is None or importlib.util.find_spec("optax") is None:
        raise DPDUserError("engine=jax needs JAX: pip install 'dpd[jax]'")
    refuse = _refuse

    if config.algo not in ENGINE_ALGOS:
        raise refuse(f"algo={config.algo} (it trains {', '.join(ENGINE_ALGOS)})")
    if config.n_envs != 1:
        raise refuse("n_envs > 1")
    if config.normalize_reward and config.algo == "ddpg":
        raise refuse("normalize_reward=true for DDPG")
    if config.device != "cpu":
        raise refuse(f"device={config.device}")
    if config.record_sim_states:
        raise refuse("record_sim_states (dpd calibrate is SB3-only)")
    if config.tensorboard:
        raise refuse("tensorboard (progress.csv is written)")
    kw = config.algo_kwargs
    pk = kw.get("policy_kwargs") or {}
    if config.algo == "ddpg":
        _check_ddpg(kw, pk, refuse)
    else:
        _check_ppo(kw, pk, refuse)
    if config.method != "vanilla":
        d = config.distill
        if d.xi_estimator != "two_critics":
            raise refuse(f"xi_estimator={d.xi_estimator}")
        if d.gate != "none":
            raise refuse(f"distill_gate={d.gate}")
        if d.schedule == "adaptive":
            raise refuse("distill_schedule=adaptive")
        if d.weighting not in ("exp", "indicator", "uniform"):
            raise refuse(f"the registered weighting {d.weighting!r}")
        if d.distance != "mse":
            raise refuse(f"distill_distance={d.distance}")
        if config.algo == "ppo" and d.optimizer != "own":
            raise refuse("distill_optimizer=shared for PPO")
        if d.target != "mean":
            raise refuse(f"distill_target={d.target}")


def _check_ddpg(kw: dict[str, Any], pk: dict[str, Any], refuse: Callable[[str], DPDUserError]) -> None:
    known = {"batch_size", "buffer_size", "gamma", "gradient_steps", "learning_rate", "learning_starts", "noise_std",
             "policy_kwargs", "tau", "train_freq"}
    extra = sorted(set(kw) - known)
    if extra:
        raise refuse(f"the DDPG argument(s) {', '.join(extra)}")
    if set(pk) - {"net_arch", "activation_fn"} or pk.get("activation_fn", "relu") not in ("relu", "ReLU"):
        raise refuse(f"policy_kwargs {pk} (it takes net_arch and activation_fn=relu)")
    if not isinstance(pk.get("net_arch", [400, 300]), list):
        raise refuse("a net_arch other than one list of layer sizes")
    if not isinstance(kw.get("train_freq", 1), int) or not isinstance(kw.get("gradient_steps", 1), int) or \
            kw.get("gradient_steps", 1) < 0:
        raise refuse("train_freq in episodes or gradient_steps=-1 (whole numbers of steps only)")


def _check_ppo(kw: dict[str, Any], pk: dict[str, Any], refuse: Callable[[str], DPDUserError]) -> None:
    known = {"n_steps", "batch_size", "n_epochs", "learning_rate", "clip_range", "gamma", "gae_lambda", "ent_coef",
             "vf_coef", "max_grad_norm", "policy_kwargs"}
    extra = sorted(set(kw) - known)
    if extra:
        raise refuse(f"the PPO argument(s) {', '.join(extra)}")
    if set(pk) - {"net_arch", "activation_fn", "log_std_init"} or pk.get("activation_fn", "tanh") not in ("tanh",
                                                                                                         "Tanh"):
        raise refuse(f"policy_kwargs {pk} (it takes net_arch, log_std_init and activation_fn=tanh)")
    lr = kw.get("learning_rate", 3e-4)
    if isinstance(lr, str) and not lr.startswith("lin_"):
        raise refuse(f"learning_rate={lr} (a number or lin_<rate>)")
    if isinstance(kw.get("clip_range", 0.2), str):
        raise refuse("a clip_range schedule")
    if int(kw.get("n_steps", 2048)) % int(kw.get("batch_size", 64)):
        raise refuse("n_steps that batch_size does not divide (SB3's short last minibatch)")



def check_spaces(config: ResolvedConfig, observation_space: Any, action_space: Any) -> None:
    """One line where the env cannot be a pack's (before the run folder is made: the pack itself would refuse only
    after): Box observations; Box actions (DDPG: with finite bounds); an id Gymnasium itself makes (a pack makes its
    envs with ``gymnasium.make``, not a factory's module)."""
    import gymnasium as gym
    import numpy as np

    refuse = _refuse

    if not isinstance(observation_space, gym.spaces.Box):
        raise refuse(f"{type(observation_space).__name__} observations ({config.env_id}; a pack takes a Box)")
    if not isinstance(action_space, gym.spaces.Box):
        raise refuse(f"{type(action_space).__name__} actions ({config.env_id}; a pack takes continuous actions, a Box)")
    if config.algo == "ddpg" and not (np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high))):
        raise refuse(f"unbounded actions for DDPG ({config.env_id})")
    try:
        gym.make(config.env_id).close()
    except Exception:
        raise refuse(f"the env {config.env_id!r} (a pack makes its envs with gymnasium.make: a registered id, e.g."
                     " HalfCheetah-v5)") from None


__all__ = ["ENGINE_ALGOS", "check_spaces", "check_supported", "pack_key"]
