"""dpd: Dual Policy Distillation (Lai, Zha, Li, Hu, IJCAI 2020) on Stable-Baselines3."""

__version__ = "0.1.0"

from dpd.config import TrainConfig  # noqa: E402
from dpd.errors import DPDUserError  # noqa: E402
from dpd.loading import load_learner  # noqa: E402
from dpd.objective import DistillStats, dpd_loss  # noqa: E402
from dpd.training import DPDTrainer, train  # noqa: E402

__all__ = ["DPDTrainer", "DPDUserError", "DistillStats", "TrainConfig", "__version__", "dpd_loss", "load_learner", "train"]
