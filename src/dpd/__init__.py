"""dpd: Dual Policy Distillation (Lai, Zha, Li, Hu, IJCAI 2020) on Stable-Baselines3."""

__version__ = "0.1.0"

from dpd.config import TrainConfig
from dpd.errors import DPDUserError, TrainingDiverged, TrainingInterrupted
from dpd.loading import load_learner
from dpd.objective import DistillStats, dpd_loss
from dpd.training import DPDTrainer, resume, train

__all__ = [
    "DPDTrainer", "DPDUserError", "DistillStats", "TrainConfig", "TrainingDiverged", "TrainingInterrupted",
    "__version__", "dpd_loss", "load_learner", "resume", "train",
]
