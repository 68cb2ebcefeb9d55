"""Which engine trains a run, and what the JAX engine implements: checked when a config is resolved, without
importing JAX (``import dpd`` never does; :mod:`dpd.pack` needs ``pip install 'dpd[jax]'``)."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from dpd.errors import DPDUserError

if TYPE_CHECKING:
    from dpd.config import ResolvedConfig

#: what the JAX engine implements today; anything else is refused in one line naming ``engine=sb3``
ENGINE_ALGOS = ("ddpg",)


def check_supported(config: ResolvedConfig) -> None:
    """One line where ``config`` asks the JAX engine for something it does not implement (before anything is built)."""
    if importlib.util.find_spec("jax") is None or importlib.util.find_spec("optax") is None:
        raise DPDUserError("engine=jax needs JAX: pip install 'dpd[jax]'")

    def refuse(what: str) -> DPDUserError:
        return DPDUserError(f"engine=jax does not implement {what} yet; use engine=sb3 (the default) for this run")

    if config.algo not in ENGINE_ALGOS:
        raise refuse(f"algo={config.algo} (it trains {', '.join(ENGINE_ALGOS)})")
    if config.n_envs != 1:
        raise refuse("n_envs > 1")
    if config.normalize_reward:
        raise refuse("normalize_reward=true")
    if config.device != "cpu":
        raise refuse(f"device={config.device}")
    if config.record_sim_states:
        raise refuse("record_sim_states (dpd calibrate is SB3-only)")
    if config.tensorboard:
        raise refuse("tensorboard (progress.csv is written)")
    kw = config.algo_kwargs
    known = {"batch_size", "buffer_size", "gamma", "gradient_steps", "learning_rate", "learning_starts", "noise_std",
             "policy_kwargs", "tau", "train_freq"}
    extra = sorted(set(kw) - known)
    if extra:
        raise refuse(f"the DDPG argument(s) {', '.join(extra)}")
    pk = kw.get("policy_kwargs") or {}
    if set(pk) - {"net_arch", "activation_fn"} or pk.get("activation_fn", "relu") not in ("relu", "ReLU"):
        raise refuse(f"policy_kwargs {pk} (it takes net_arch and activation_fn=relu)")
    if not isinstance(pk.get("net_arch", [400, 300]), list):
        raise refuse("a net_arch other than one list of layer sizes")
    if not isinstance(kw.get("train_freq", 1), int) or not isinstance(kw.get("gradient_steps", 1), int) or \
            kw.get("gradient_steps", 1) < 0:
        raise refuse("train_freq in episodes or gradient_steps=-1 (whole numbers of steps only)")
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



__all__ = ["ENGINE_ALGOS", "check_supported"]
