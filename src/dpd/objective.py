"""The DPD distillation objective (Lai et al. 2020, Eq. 9, 11 and 12) as one pure function.

Nothing here knows about Stable-Baselines3, environments or students: inputs are tensors, the
output is a scalar loss plus statistics. Shapes use B = batch size, A = action dimensions
(continuous) or number of actions (discrete).

For student pi distilling from its peer pi~ on states s drawn from the peer's recent experience:

    xi(s)     = (V_peer(s) - V_self(s)) / scale             (advantage of the peer at s: compute_xi)
    w(s)      = exp(clip(alpha * xi(s), -c, c))             (detached; c = ln 100 by default)
    D(s)      = mean_a (mu_self(s) - mu_peer(s))^2          (continuous: MSE over action dims)
              = KL(pi_peer(.|s) || pi_self(.|s))            (discrete)
    loss      = sum_s w(s) D(s) / sum_s w(s)                (normalize_weights=True, default)
              = mean_s w(s) D(s)                            (normalize_weights=False, Eq. 11 literally)

The weight is large exactly where the PEER is better (xi > 0): "disadvantageous distillation". xi is computed once
per phase (:func:`compute_xi`, by :class:`dpd.distillation.Distiller`) and handed to the weights, the gate and the loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch as th
import torch.nn.functional as F

#: a weighting's name (``exp``, ``indicator``, ``uniform`` or one added with :func:`register_weighting`)
Weighting = str
#: a weighting: (xi (B,) already scaled, alpha, max_log_weight) -> (weights (B,), clipped mask (B,) bool)
WeightFn = Callable[[th.Tensor, float, float], tuple[th.Tensor, th.Tensor]]

#: Default bound on alpha * xi: weights stay within [0.01, 100], as in the authors' code.
DEFAULT_MAX_LOG_WEIGHT = math.log(100.0)


@dataclass(frozen=True)
class DistillStats:
    """Statistics of one distillation loss evaluation (all plain floats, ready for a logger)."""

    loss: float
    weight_mean: float
    weight_max: float
    weight_min: float
    #: fraction of states whose alpha*xi hit the clip bound (saturated soft weighting)
    weight_clip_frac: float
    #: fraction of states where the peer's value is higher (xi > 0)
    peer_better_frac: float
    xi_mean: float
    #: unweighted mean of the distillation distance D(s): the MSE of the two policies' outputs in policy units
    #: (PPO/A2C: Gaussian means, unclamped unless ``distill_distance=clamped_mse``; DDPG/TD3/SAC: actions in
    #: [-1, 1]); KL(peer || student) for discrete actions. Logged as ``pair/action_distance``; not the env-action
    #: distance of ``dpd analyze`` (:func:`dpd.experiments.analyze.env_action_distance`)
    action_distance: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _exp_weights(xi: th.Tensor, alpha: float, max_log_weight: float) -> tuple[th.Tensor, th.Tensor]:
    """Eq. 11/12: exp(alpha * xi), the exponent clipped to [-c, c]."""
    logits = alpha * xi
    clipped = logits.abs() >= max_log_weight
    return th.exp(logits.clamp(-max_log_weight, max_log_weight)), clipped


def _indicator_weights(xi: th.Tensor, alpha: float, max_log_weight: float) -> tuple[th.Tensor, th.Tensor]:
    """Eq. 9: 1 where the peer is better (xi > 0), else 0."""
    return (xi > 0).to(xi.dtype), th.zeros_like(xi, dtype=th.bool)


def _uniform_weights(xi: th.Tensor, alpha: float, max_log_weight: float) -> tuple[th.Tensor, th.Tensor]:
    """Plain mutual distillation: every state counts the same."""
    return th.ones_like(xi), th.zeros_like(xi, dtype=th.bool)


#: The weightings by name: the one registry a new weighting goes into (:func:`register_weighting`); the config's
#: validation and the CLI's help read their names from it.
WEIGHTING_FUNCTIONS: dict[str, WeightFn] = {
    "exp": _exp_weights, "indicator": _indicator_weights, "uniform": _uniform_weights,
}


def register_weighting(name: str, fn: WeightFn) -> None:
    """Add a weighting: ``fn(xi, alpha, max_log_weight) -> (weights, clipped)`` on detached (B,) tensors, weights
    >= 0. Then ``weighting=<name>`` (config, ``--set``, sweep arms) uses it; register it in every process that trains
    (a module the run imports), as with a Gymnasium env."""
    if not name.isidentifier():
        raise ValueError(f"a weighting's name must be an identifier, got {name!r}")
    WEIGHTING_FUNCTIONS[name] = fn


def weighting_names() -> tuple[str, ...]:
    return tuple(WEIGHTING_FUNCTIONS)


def dpd_weights(
    xi: th.Tensor,
    alpha: float,
    weighting: Weighting = "exp",
    max_log_weight: float = DEFAULT_MAX_LOG_WEIGHT,
) -> tuple[th.Tensor, th.Tensor]:
    """Per-state distillation weights from the value advantage of the peer.

    :param xi: (B,) V_peer(s) - V_self(s), already divided by any scale; no gradient is taken.
    :param alpha: confidence in the value estimates (paper: 0.1 .. 10).
    :param weighting: a name of :data:`WEIGHTING_FUNCTIONS`: ``exp`` (Eq. 11/12), ``indicator`` (Eq. 9: 1 where
        xi > 0 else 0), ``uniform`` (plain mutual distillation, all weights 1), or a registered one.
    :param max_log_weight: bound c on |alpha * xi| for ``exp``, so weights lie in [e^-c, e^c].
    :return: (weights (B,), clipped mask (B,) bool) both detached.
    """
    fn = WEIGHTING_FUNCTIONS.get(weighting)
    if fn is None:
        raise ValueError(f"unknown weighting {weighting!r}; choose one of {', '.join(WEIGHTING_FUNCTIONS)}")
    return fn(xi.detach(), alpha, max_log_weight)


def action_distance(student_out: th.Tensor, peer_out: th.Tensor, discrete: bool,
                    bounds: tuple[th.Tensor, th.Tensor] | None = None) -> th.Tensor:
    """Per-state distance D(s) between the student's and the peer's policies.

    :param student_out: (B, A) student's Gaussian means (continuous) or logits (discrete); carries gradient.
    :param peer_out: (B, A) the peer's means or logits on the same states; treated as constants.
    :param discrete: False: squared error averaged over action dims; True: KL(peer || student).
    :param bounds: (low (A,), high (A,)): clamp both means to the action bounds first (``clamped_mse``): two means
        beyond the same bound act alike, and then count as equal; None: the plain MSE (the default).
    :return: (B,) distances.
    """
    peer_out = peer_out.detach()
    if bounds is not None and not discrete:
        low, high = bounds
        student_out = th.maximum(th.minimum(student_out, high), low)
        peer_out = th.maximum(th.minimum(peer_out, high), low)
    if discrete:
        peer_logp = F.log_softmax(peer_out, dim=-1)
        student_logp = F.log_softmax(student_out, dim=-1)
        return (peer_logp.exp() * (peer_logp - student_logp)).sum(dim=-1)
    return (student_out - peer_out).pow(2).mean(dim=-1)


def compute_xi(student_values: th.Tensor, peer_values: th.Tensor, xi_divisor: float = 1.0) -> th.Tensor:
    """xi(s) = (V_peer(s) - V_self(s)) / xi_divisor: how much better the peer is at s, the one place it is computed.

    :param student_values: (B,) V_self(s), in the same (raw return) units as ``peer_values``.
    :param peer_values: (B,) V_peer(s).
    :param xi_divisor: a positive number xi is divided by before alpha is applied (e.g. the std of the discounted
        return, so that alpha keeps the paper's range); 1: raw return units.
    :return: (B,) xi, detached (no gradient reaches a critic).
    """
    if student_values.shape != peer_values.shape or student_values.dim() != 1:
        raise ValueError("student_values and peer_values must both have shape (B,)")
    if not xi_divisor > 0:
        raise ValueError(f"xi_divisor must be positive, got {xi_divisor}")
    return (peer_values.detach() - student_values.detach()) / xi_divisor


def dpd_loss(
    student_out: th.Tensor,
    peer_out: th.Tensor,
    xi: th.Tensor,
    alpha: float,
    *,
    weighting: Weighting = "exp",
    discrete: bool = False,
    max_log_weight: float = DEFAULT_MAX_LOG_WEIGHT,
    normalize_weights: bool = True,
    bounds: tuple[th.Tensor, th.Tensor] | None = None,
) -> tuple[th.Tensor, DistillStats]:
    """The disadvantageous distillation loss of one student toward its peer (Eq. 11/12).

    :param student_out: (B, A) the student's actions (Gaussian mean / deterministic action) or
        logits (discrete) on the peer's states. The only input that carries gradient.
    :param peer_out: (B, A) the peer's actions or logits on the same states (detached here).
    :param xi: (B,) the peer's advantage on the states, already divided by its scale (:func:`compute_xi`;
        detached here).
    :param alpha: confidence level of the value estimates.
    :param weighting: ``exp`` | ``indicator`` | ``uniform``, see :func:`dpd_weights`.
    :param discrete: use KL(peer || student) over logits instead of the squared error.
    :param max_log_weight: clip bound on |alpha * xi|.
    :param normalize_weights: True: sum(w D) / sum(w) (weights normalised over the batch, as the
        authors' code did); False: mean(w D), Eq. 11 literally. With indicator weights that are all
        zero the loss is exactly zero (and has a zero gradient).
    :param bounds: clamp continuous outputs to these action bounds before the distance (see :func:`action_distance`).
    :return: (scalar loss, statistics).
    """
    if student_out.shape != peer_out.shape:
        raise ValueError(f"student_out {tuple(student_out.shape)} and peer_out {tuple(peer_out.shape)} differ")
    if xi.dim() != 1:
        raise ValueError(f"xi must have shape (B,), got {tuple(xi.shape)}")
    if xi.shape[0] != student_out.shape[0]:
        raise ValueError("xi and actions must have the same batch size")

    xi = xi.detach()
    weights, clipped = dpd_weights(xi, alpha, weighting, max_log_weight)
    distance = action_distance(student_out, peer_out, discrete, bounds)
    weighted = (weights * distance).sum()
    if normalize_weights:
        total = weights.sum()
        loss = weighted / total if total > 0 else weighted * 0.0
    else:
        loss = weighted / distance.shape[0]

    stats = DistillStats(
        loss=float(loss.detach()),
        weight_mean=float(weights.mean()),
        weight_max=float(weights.max()),
        weight_min=float(weights.min()),
        weight_clip_frac=float(clipped.float().mean()),
        peer_better_frac=float((xi > 0).float().mean()),
        xi_mean=float(xi.mean()),
        action_distance=float(distance.detach().mean()),
    )
    return loss, stats
