"""Per-learner running statistics of a pack, as SB3's ``RunningMeanStd`` keeps them for ``VecNormalize``."""

from __future__ import annotations

import numpy as np


def running_update(mean: np.ndarray, var: np.ndarray, count: float, x: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, float]:
    """``RunningMeanStd.update_from_moments`` with one sample per learner (batch count 1, batch variance 0), in
    float64: mean and var (N, ...) and the shared count (starting at 1e-4, as SB3's) after ``x`` (N, ...).
    Returns (mean, var, count)."""
    delta, total = x - mean, count + 1
    return mean + delta / total, (var * count + np.square(delta) * count / total) / total, total


def normalized(x: np.ndarray, mean: np.ndarray, var: np.ndarray, eps: float, clip: float) -> np.ndarray:
    """``VecNormalize.normalize_obs`` per learner, in float64: ``clip((x - mean) / sqrt(var + eps), -clip, clip)``,
    float32 as SB3's policy takes it; x, mean, var (N, ...)."""
    return np.clip((x - mean) / np.sqrt(var + eps), -clip, clip).astype(np.float32)


def running_std(var: np.ndarray, count: float) -> np.ndarray:
    """``RecentStates.return_std`` per learner: sqrt(var + 1e-8), or 1.0 before any data (count <= 1)."""
    return np.sqrt(var + 1e-8) if count > 1 else np.ones_like(var)
