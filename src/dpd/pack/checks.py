"""What a pack checks before it builds anything: the seeds, the config's counts and rates, the env id, a budget.
Each a one-line :class:`dpd.errors.DPDUserError` naming the fix (the pack is reached from Python today, and will be
from the CLI: the same words either way)."""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any

import gymnasium as gym

from dpd.errors import DPDUserError

#: the fields of PackConfig / PPOConfig that count something or scale a step: they must be positive
POSITIVE_FIELDS = ("batch_size", "buffer_size", "gradient_steps", "train_freq", "n_steps", "n_epochs",
                   "learning_rate", "clip_range", "max_grad_norm", "adam_eps", "clip_obs", "clip_reward", "norm_eps")
#: discount and GAE factors: in (0, 1]
UNIT_FIELDS = ("gamma", "gae_lambda", "tau")


def check_seeds(seeds: list[int]) -> None:
    """One or more distinct non-negative integers (a repeated seed would be a copy of a learner counted twice)."""
    if not seeds or len(set(seeds)) != len(seeds) or not all(
            isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise DPDUserError(f"a pack needs one or more distinct non-negative integer seeds, got {seeds!r}")


def check_config(cfg: Any) -> None:
    """A pack config's counts and rates: positive where they count or scale, factors in (0, 1], all finite."""
    for f in dataclasses.fields(cfg):
        raw = getattr(cfg, f.name)
        if isinstance(raw, bool) or not isinstance(raw, numbers.Real):
            continue
        value = float(raw)
        if not math.isfinite(value) or (f.name in POSITIVE_FIELDS and value <= 0) or (
                f.name in UNIT_FIELDS and not 0 < value <= 1):
            want = "in (0, 1]" if f.name in UNIT_FIELDS else "a positive number" if f.name in POSITIVE_FIELDS \
                else "a finite number"
            raise DPDUserError(f"{type(cfg).__name__}.{f.name} must be {want}, got {raw!r}")


def make_envs(env_id: str, n: int, env_kwargs: dict[str, Any] | None) -> list[gym.Env]:
    """``n`` copies of a Gymnasium id; an id Gymnasium does not know, or arguments it refuses, in one line."""
    envs: list[gym.Env] = []
    try:
        for _ in range(n):
            envs.append(gym.make(env_id, **(env_kwargs or {})))
    except Exception as exc:
        for env in envs:
            env.close()
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise DPDUserError(f"cannot make {env_id!r} for a pack ({type(exc).__name__}: {text}); a pack takes a"
                           " registered Gymnasium id, e.g. HalfCheetah-v5") from None
    return envs


def check_steps(steps: Any) -> int:
    """A budget of env steps per learner: a whole number >= 0."""
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
        raise DPDUserError(f"learn(steps) takes a whole number of env steps per learner, e.g. learn(100_000); got"
                           f" {steps!r}")
    return int(steps)
