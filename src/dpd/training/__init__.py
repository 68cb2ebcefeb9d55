"""Training: Algorithm 1 over students, evaluation schedule, logs, run folder."""

from dpd.errors import TrainingDiverged, TrainingInterrupted
from dpd.training.trainer import DPDTrainer, resume, train

__all__ = ["DPDTrainer", "TrainingDiverged", "TrainingInterrupted", "resume", "train"]
