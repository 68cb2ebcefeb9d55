"""Students: adapters from stock SB3 algorithms to the narrow interface the DPD loop needs."""

from dpd.distillation import PeerBatch, PhaseResult
from dpd.episodes import EvalResult
from dpd.students.base import Student
from dpd.students.off_policy import OffPolicyStudent
from dpd.students.on_policy import OnPolicyStudent

__all__ = ["EvalResult", "OffPolicyStudent", "OnPolicyStudent", "PeerBatch", "PhaseResult", "Student"]
