"""dpd: Dual Policy Distillation (Lai, Zha, Li, Hu, IJCAI 2020) on Stable-Baselines3.

``import dpd`` is light and changes nothing in the process (no torch import, no warning filters, thread counts,
signal handlers or MuJoCo hooks): each name below is imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: name -> the module that defines it
_EXPORTS = {
    "DPD": "dpd.api", "DPDTrainer": "dpd.training", "DPDUserError": "dpd.errors", "DistillConfig": "dpd.config",
    "DistillStats": "dpd.objective", "TrainConfig": "dpd.config", "TrainingDiverged": "dpd.errors",
    "TrainingInterrupted": "dpd.errors", "compute_xi": "dpd.objective", "dpd_loss": "dpd.objective",
    "load_learner": "dpd.loading",
    "register_weighting": "dpd.objective", "resume": "dpd.training", "train": "dpd.training",
    "ResolvedConfig": "dpd.config", "ResolvedDistill": "dpd.config",
}  # fmt: skip

__all__ = [
    "DPD", "DPDTrainer", "DPDUserError", "DistillConfig", "DistillStats", "ResolvedConfig", "ResolvedDistill",
    "TrainConfig", "TrainingDiverged", "TrainingInterrupted", "__version__", "compute_xi", "dpd_loss", "load_learner",
    "register_weighting", "resume", "train",
]  # fmt: skip


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dpd' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:
    from dpd.api import DPD
    from dpd.config import DistillConfig, ResolvedConfig, ResolvedDistill, TrainConfig
    from dpd.errors import DPDUserError, TrainingDiverged, TrainingInterrupted
    from dpd.loading import load_learner
    from dpd.objective import DistillStats, compute_xi, dpd_loss, register_weighting
    from dpd.training import DPDTrainer, resume, train
