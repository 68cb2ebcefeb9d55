"""Training: Algorithm 1 over students, evaluation schedule, logs, run folder."""

from dpd.training.trainer import DPDTrainer, train

__all__ = ["DPDTrainer", "train"]
