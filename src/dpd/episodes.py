"""Deterministic evaluation episodes of one SB3 model (shared by training-time and saved-run evaluation)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecEnv


@dataclass(frozen=True)
class EvalResult:
    """Returns are raw (un-normalised) episode returns."""

    mean_return: float
    std_return: float
    mean_length: float
    returns: list[float]


def run_episodes(model: BaseAlgorithm, env: VecEnv, n_episodes: int) -> EvalResult:
    """``n_episodes`` whole episodes with deterministic actions (the Gaussian mean / the argmax)."""
    returns, lengths = evaluate_policy(model, env, n_eval_episodes=n_episodes, deterministic=True,
                                       return_episode_rewards=True)
    r = np.asarray(returns, dtype=float)
    return EvalResult(float(r.mean()), float(r.std()), float(np.mean(lengths)), [float(x) for x in r])
