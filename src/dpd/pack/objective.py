"""The DPD objective in JAX: :func:`dpd.objective.dpd_loss` as a pure, jittable function (for the pack).

Same arguments, same meaning, same numbers (``tests/test_pack_objective.py`` checks the loss, every statistic and the
gradient against the torch function to relative 1e-5 in float32). Shapes: B = batch size, A = action dimensions
(continuous) or number of actions (discrete)::

    xi(s)  = (V_peer(s) - V_self(s)) / xi_divisor                       (no gradient)
    w(s)   = exp(clip(alpha * xi(s), -c, c)) | 1[xi(s) > 0] | 1           (exp | indicator | uniform; no gradient)
    D(s)   = mean_a (mu_self(s) - mu_peer(s))^2                           (continuous; both clamped to ``bounds`` first
                                                                           where given: ``clamped_mse``)
           = KL(pi_peer(.|s) || pi_self(.|s))                             (discrete, over logits)
    loss   = sum_s w D / sum_s w   (0 where sum_s w = 0)  |  mean_s w D   (normalize_weights True | False)

Differences from the torch function:
  - the statistics are a dict of 0-d arrays (the fields of :class:`dpd.objective.DistillStats`), not floats: the
    function is traced under jit / vmap, nothing leaves the device;
  - ``weighting`` is one of the built-ins (``exp``, ``indicator``, ``uniform``); a weighting registered with
    :func:`dpd.objective.register_weighting` is a torch function and is refused here;
  - the shape checks raise at trace time; ``xi_divisor`` may be a traced array (one per learner under vmap) and is
    then not checked to be positive (a Python number still is);
  - ``mask`` (B,) bool, an addition: rows where it is False count nowhere (not in the loss, the weights' sum or any
    statistic), so that a batch of fixed shape can hold fewer states (a peer window not yet full). ``None``: every
    row counts, exactly the torch function.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dpd.objective import DEFAULT_MAX_LOG_WEIGHT

#: the weightings this module computes (the torch module's built-ins)
WEIGHTINGS: tuple[str, ...] = ("exp", "indicator", "uniform")
#: the statistics :func:`dpd_loss` returns: :class:`dpd.objective.DistillStats`'s fields, in its order
STAT_NAMES: tuple[str, ...] = ("loss", "weight_mean", "weight_max", "weight_min", "weight_clip_frac",
                               "peer_better_frac", "xi_mean", "action_distance")


def dpd_weights(xi: jax.Array, alpha: float | jax.Array, weighting: str = "exp",
                max_log_weight: float = DEFAULT_MAX_LOG_WEIGHT) -> tuple[jax.Array, jax.Array]:
    """Per-state weights from xi (B,) already divided by its scale: (weights (B,), clipped (B,) bool), no gradient.
    ``exp``: exp(alpha xi) with the exponent clipped to [-c, c] (clipped where |alpha xi| >= c); ``indicator``:
    1 where xi > 0; ``uniform``: 1."""
    xi = jax.lax.stop_gradient(xi)
    if weighting == "exp":
        logits = alpha * xi
        return jnp.exp(jnp.clip(logits, -max_log_weight, max_log_weight)), jnp.abs(logits) >= max_log_weight
    if weighting == "indicator":
        return (xi > 0).astype(xi.dtype), jnp.zeros(xi.shape, bool)
    if weighting == "uniform":
        return jnp.ones_like(xi), jnp.zeros(xi.shape, bool)
    raise ValueError(f"the JAX objective has no weighting {weighting!r}; it has {', '.join(WEIGHTINGS)}")


def action_distance(student_out: jax.Array, peer_out: jax.Array, discrete: bool,
                    bounds: tuple[jax.Array, jax.Array] | None = None) -> jax.Array:
    """D(s) (B,) between the student's outputs (B, A; the gradient flows here) and the peer's (B, A; constants):
    the squared error averaged over action dims (both clamped to ``bounds`` = (low (A,), high (A,)) first where
    given), or KL(peer || student) over logits where ``discrete``."""
    peer_out = jax.lax.stop_gradient(peer_out)
    if bounds is not None and not discrete:
        low, high = bounds
        student_out = jnp.maximum(jnp.minimum(student_out, high), low)
        peer_out = jnp.maximum(jnp.minimum(peer_out, high), low)
    if discrete:
        peer_logp = jax.nn.log_softmax(peer_out, axis=-1)
        student_logp = jax.nn.log_softmax(student_out, axis=-1)
        return (jnp.exp(peer_logp) * (peer_logp - student_logp)).sum(axis=-1)
    return ((student_out - peer_out) ** 2).mean(axis=-1)


def dpd_loss(
    student_out: jax.Array,
    peer_out: jax.Array,
    student_values: jax.Array,
    peer_values: jax.Array,
    alpha: float | jax.Array,
    *,
    weighting: str = "exp",
    discrete: bool = False,
    xi_divisor: float | jax.Array = 1.0,
    max_log_weight: float = DEFAULT_MAX_LOG_WEIGHT,
    normalize_weights: bool = True,
    bounds: tuple[jax.Array, jax.Array] | None = None,
    mask: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The disadvantageous distillation loss of one student toward its peer (Eq. 11/12); see
    :func:`dpd.objective.dpd_loss` for every argument. ``weighting``, ``discrete``, ``normalize_weights``,
    ``max_log_weight`` and ``bounds``' presence are static (Python values); ``alpha`` and ``xi_divisor`` may be traced.

    :param student_out: (B, A) the only input that carries gradient.
    :param peer_out: (B, A); student_values, peer_values: (B,) raw return units (no gradient).
    :param mask: (B,) bool, rows that count (None: all); see the module docstring.
    :return: (scalar loss, {name: 0-d array} for each of :data:`STAT_NAMES`).
    """
    if student_out.shape != peer_out.shape:
        raise ValueError(f"student_out {tuple(student_out.shape)} and peer_out {tuple(peer_out.shape)} differ")
    if student_values.shape != peer_values.shape or student_values.ndim != 1:
        raise ValueError("student_values and peer_values must both have shape (B,)")
    if student_values.shape[0] != student_out.shape[0]:
        raise ValueError("values and actions must have the same batch size")
    if isinstance(xi_divisor, (int, float)) and not xi_divisor > 0:
        raise ValueError(f"xi_divisor must be positive, got {xi_divisor}")

    n_rows = student_values.shape[0]
    valid = jnp.ones(n_rows, bool) if mask is None else mask
    count = valid.sum().astype(student_out.dtype) if mask is not None else float(n_rows)

    def mean(x: jax.Array) -> jax.Array:
        return jnp.where(valid, x, 0).astype(student_out.dtype).sum() / count

    xi = (jax.lax.stop_gradient(peer_values) - jax.lax.stop_gradient(student_values)) / xi_divisor
    weights, clipped = dpd_weights(xi, alpha, weighting, max_log_weight)
    weights = jnp.where(valid, weights, 0.0)
    distance = action_distance(student_out, peer_out, discrete, bounds)
    weighted = jnp.where(valid, weights * distance, 0.0).sum()
    if normalize_weights:
        total = weights.sum()
        # a total of 0 (indicator weights, peer worse everywhere): loss 0 and gradient 0, never 0/0
        loss = jnp.where(total > 0, weighted / jnp.where(total > 0, total, 1.0), weighted * 0.0)
    else:
        loss = weighted / count

    stats = {
        "loss": jax.lax.stop_gradient(loss),
        "weight_mean": mean(weights),
        "weight_max": jnp.where(valid, weights, -jnp.inf).max(),
        "weight_min": jnp.where(valid, weights, jnp.inf).min(),
        "weight_clip_frac": mean(clipped),
        "peer_better_frac": mean(xi > 0),
        "xi_mean": mean(xi),
        "action_distance": mean(jax.lax.stop_gradient(distance)),
    }
    return loss, stats
