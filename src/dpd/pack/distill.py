"""A pack's distillation phase for DDPG pairs: :class:`dpd.distillation.Distiller` ``.phase`` for every learner of a
:class:`dpd.pack.ddpg.DDPGPack` at once, in one jitted, vmapped call.

Learner i distils from learner ``peers[i]`` (pairs: ``pair_peers(n)`` = 1, 0, 3, 2, ...). Shapes: N learners, W the
window (``distill_window``), B the distillation batch, D obs dims, A action dims. What one phase computes, as dpd's
Distiller does for a DDPG student with ``xi_estimator=two_critics`` (``dpd/distillation.py``,
``dpd/students/off_policy.py``, ``dpd/students/base.py``)::

    states_j   = the last W raw observations of learner j's replay buffer, oldest first  (OffPolicyStudent.recent_states)
    peer batch = (states_j, mu_j(norm_j(states_j)), Q_j(norm_j(s), mu_j(norm_j(s))))      (Student.peer_batch: the peer's
                 deterministic actions and values, each learner in its OWN normalisation; rewards are raw: scale 1)
    for learner i and its peer j = peers[i]:
      obs        = norm_i(states_j)                     (the student's own observation statistics)
      own_values = Q_i(obs, mu_i(obs))                  (once, before the steps: fixed during the phase)
      pair       = dpd_loss on the whole window          (statistics only, no step)
      steps_i times: idx = B states of the window (without replacement where W >= B, else with)
                     loss = dpd_loss(mu_i(obs[idx]), peer_out[idx], own_values[idx], peer_values[idx], alpha,
                                     xi_divisor=xi_divisor_i, ...) * loss_coef
                     skipped where the loss is not finite or every weight is 0, else one Adam step of the actor
                     (optimizer=own: a distillation Adam of its own, lr ``distill_lr``; shared: the actor's DDPG Adam)

``steps`` (N,) is given: the schedule (``distill_ratio`` x the RL gradient steps, carried fractions, the ``adaptive``
strength, the ``advantage`` gate) is the host's, as dpd's Distiller.phase_steps is; the phase returns the pair's
statistics so the host can compute them. A learner whose ``steps`` is 0 leaves the phase unchanged (parameters and
optimiser state). Phases of all learners run on the batches taken BEFORE any of them distils.

Differences from dpd's torch Distiller (DDPG students):
  - only ``xi_estimator=two_critics``, ``distill_gate`` / ``schedule`` on the host, ``distill_target=mean``;
    ``debiased`` and ``own_critic`` are not implemented (refused by :meth:`DistillSpec.from_config`);
  - ordering: every learner distils from its peer's batch taken after both RL updates of the round and before either
    distils: dpd's ``parallel`` mode, not the sequential Algorithm 1 (there B distils from A after A's distillation);
  - the minibatch indices come from ``jax.random`` (a key per learner), not the Distiller's NumPy Generator: the same
    law (uniform without replacement where W >= B, with replacement below), different draws;
  - the window holds W rows always; where a buffer holds fewer than W transitions the missing rows are masked
    (``dpd.pack.objective.dpd_loss``'s ``mask``) and never drawn. The pack's buffers are filled in lock-step, so all
    learners have the same number of valid rows;
  - observations are normalised in float32 inside jit (dpd: VecNormalize in float64, then cast), as the pack's update;
  - ``xi_divisor`` (N,) is an input: the pack does not yet track the running std of the discounted return
    (``RecentStates.return_std``); pass ones for ``xi_scale=none``;
  - a phase takes at most ``spec.max_steps`` steps (the scan's static length; the host keeps ``steps`` within it);
    every learner runs the full scan, steps beyond its own ``steps`` computed and discarded;
  - statistics are averaged over the steps whose loss was finite (as dpd) but returned as device arrays; the counts
    of skipped batches are per phase (dpd keeps running totals and a streak on the Distiller).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dpd.config import ResolvedDistill
from dpd.pack.batching import per_learner
from dpd.pack.ddpg import Learners, PackConfig, Params, actor_fn, q_fn
from dpd.pack.objective import STAT_NAMES, dpd_loss, dpd_weights


@dataclasses.dataclass(frozen=True)
class DistillSpec:
    """The static settings of a pack's distillation (a :class:`ResolvedDistill`'s fields, no defaults of its own)."""

    alpha: float
    weighting: str
    max_log_weight: float
    normalize_weights: bool
    lr: float
    batch_size: int
    window: int
    optimizer: str  # "own" | "shared"
    loss_coef: float
    #: the most steps any learner takes in one phase (the scan's length: a compile-time constant)
    max_steps: int

    @classmethod
    def from_config(cls, cfg: ResolvedDistill, max_steps: int) -> DistillSpec:
        """From a resolved distill block (``TrainConfig.resolve().distill``); refuses what the pack does not implement."""
        if cfg.xi_estimator != "two_critics":
            raise ValueError(f"the pack implements xi_estimator=two_critics only, not {cfg.xi_estimator}")
        if cfg.target != "mean":
            raise ValueError("the pack implements distill_target=mean only (DDPG has no Gaussian to sample)")
        # distance clamped_mse clamps to [-1, 1]: a DDPG actor's tanh output already lies there, so it is mse
        return cls(alpha=cfg.alpha, weighting=cfg.weighting, max_log_weight=cfg.max_log_weight,
                   normalize_weights=cfg.normalize_weights, lr=cfg.lr, batch_size=cfg.batch_size, window=cfg.window,
                   optimizer=cfg.optimizer, loss_coef=cfg.loss_coef, max_steps=max_steps)

    def tx(self, pack_tx: optax.GradientTransformation) -> optax.GradientTransformation:
        """The distillation optimiser: an Adam of its own (torch Adam's defaults, lr ``lr``) or the pack's actor Adam."""
        return optax.adam(self.lr) if self.optimizer == "own" else pack_tx


class DistillState(NamedTuple):
    """Per learner, leading axis N: the own distillation Adam's state (``optimizer=own``; unused for ``shared``) and
    the PRNG key of the distillation minibatches."""

    opt: optax.OptState
    key: jax.Array  # (N, 2)


class PhaseOut(NamedTuple):
    """What one phase did, per learner (leading axis N)."""

    pair: dict[str, jax.Array]  # the pair on the whole window before the steps: each (N,)
    stats: dict[str, jax.Array]  # averaged over the steps with a finite loss: each (N,), NaN where none
    taken: jax.Array  # (N,) optimiser steps taken
    skipped_nonfinite: jax.Array  # (N,)
    skipped_zero_weight: jax.Array  # (N,)
    window_weights: jax.Array  # (N, W) the weights over the window (0 on masked rows)


def pair_peers(n: int) -> np.ndarray:
    """Learner 2k's peer is 2k+1 and back: (n,) int32 (n even)."""
    assert n % 2 == 0, "pairs need an even number of learners"
    return np.arange(n, dtype=np.int32) ^ 1


def init_state(spec: DistillSpec, pack_tx: optax.GradientTransformation, actor: Params, seeds: list[int]
               ) -> DistillState:
    """A fresh state for a pack's (stacked) actor: the own Adam's moments at 0 and one key per learner."""
    opt = jax.vmap(spec.tx(pack_tx).init)(actor)
    return DistillState(opt, jnp.stack([jax.random.PRNGKey(s) for s in seeds]))


def peer_windows(obs: jax.Array, pos: jax.Array, size: jax.Array, window: int) -> tuple[jax.Array, jax.Array]:
    """The last ``window`` rows of every learner's buffer, oldest first: obs (N, C, D) -> (N, W, D) raw states and
    valid (W,) bool (False on the first W - min(size, W) rows, which the buffer does not hold yet)."""
    cap = obs.shape[1]
    rows = (pos - window + jnp.arange(window)) % cap
    valid = jnp.arange(window) >= window - jnp.minimum(size, window)
    return obs[:, rows], valid


def _normalize(pcfg: PackConfig, o: jax.Array, mean: jax.Array, var: jax.Array) -> jax.Array:
    """The pack's VecNormalize-like normalisation (as in its update), float32."""
    if not pcfg.normalize:
        return o
    return jnp.clip((o - mean) / jnp.sqrt(var + pcfg.norm_eps), -pcfg.clip_obs, pcfg.clip_obs)


def _sample(key: jax.Array, valid: jax.Array, batch: int) -> jax.Array:
    """(batch,) window rows: uniform without replacement where the valid rows k >= batch (NumPy's ``choice(k, batch,
    replace=False)``), with replacement below; valid rows are the window's last k."""
    w = valid.shape[0]
    k = valid.sum()
    k_perm, k_repl = jax.random.split(key)
    with_replacement = (w - k) + jax.random.randint(k_repl, (batch,), 0, jnp.maximum(k, 1))
    if w < batch:
        return with_replacement
    order = jnp.argsort(jnp.where(valid, jax.random.uniform(k_perm, (w,)), 2.0))[:batch]  # masked rows sort last
    return jnp.where(k >= batch, order, with_replacement)


def phase_steps(spec: DistillSpec, tx: optax.GradientTransformation, out_fn: Callable[[Params, jax.Array], jax.Array],
                actor: Params, opt: optax.OptState, key: jax.Array, obs: jax.Array, valid: jax.Array,
                own_values: jax.Array, peer_out: jax.Array, peer_values: jax.Array, xi_divisor: jax.Array,
                steps: jax.Array) -> tuple[Params, optax.OptState, jax.Array, PhaseOut]:
    """The phase of ONE learner, whatever its algorithm (vmapped over the pack): obs (W, D) the peer's window in the
    student's own normalisation, own_values / peer_values (W,) raw values (fixed for the phase), peer_out (W, A),
    ``out_fn(actor, obs)`` the student's deterministic outputs (the parameters distillation moves), steps a scalar
    int <= spec.max_steps."""
    def objective(out: jax.Array, rows: jax.Array | slice, mask: jax.Array | None = None
                  ) -> tuple[jax.Array, dict[str, jax.Array]]:
        return dpd_loss(out, peer_out[rows], own_values[rows], peer_values[rows], spec.alpha,
                        weighting=spec.weighting, xi_divisor=xi_divisor, max_log_weight=spec.max_log_weight,
                        normalize_weights=spec.normalize_weights, mask=mask)

    _, pair = objective(out_fn(actor, obs), slice(None), mask=valid)
    window_weights, _ = dpd_weights((peer_values - own_values) / xi_divisor, spec.alpha, spec.weighting,
                                    spec.max_log_weight)
    zero = jnp.zeros((), jnp.float32)

    def step(carry: tuple, t_key: tuple[jax.Array, jax.Array]) -> tuple[tuple, None]:
        actor, opt, sums, collected, taken, nonfinite, zero_weight = carry
        t, k = t_key
        idx = _sample(k, valid, spec.batch_size)

        def loss_fn(a: Params) -> tuple[jax.Array, dict[str, jax.Array]]:
            loss, stats = objective(out_fn(a, obs[idx]), idx)
            return loss * spec.loss_coef, stats

        (_, stats), grad = jax.value_and_grad(loss_fn, has_aux=True)(actor)
        updates, new_opt = tx.update(grad, opt, actor)
        new_actor = optax.apply_updates(actor, updates)
        active = t < steps
        finite = jnp.isfinite(stats["loss"])
        take = active & finite & (stats["weight_max"] > 0)
        actor = jax.tree.map(lambda new, old: jnp.where(take, new, old), new_actor, actor)
        opt = jax.tree.map(lambda new, old: jnp.where(take, new, old), new_opt, opt)
        count = active & finite
        sums = {name: sums[name] + jnp.where(count, stats[name], 0.0) for name in STAT_NAMES}
        return (actor, opt, sums, collected + count, taken + take, nonfinite + (active & ~finite),
                zero_weight + (count & ~take)), None

    keys = jax.random.split(key, spec.max_steps + 1)
    carry = (actor, opt, {name: zero for name in STAT_NAMES}, jnp.int32(0), jnp.int32(0), jnp.int32(0), jnp.int32(0))
    (actor, opt, sums, collected, taken, nonfinite, zero_weight), _ = jax.lax.scan(
        step, carry, (jnp.arange(spec.max_steps), keys[1:]))
    stats = {name: sums[name] / collected for name in STAT_NAMES}  # NaN where no step counted (dpd: None)
    out = PhaseOut(pair, stats, taken, nonfinite, zero_weight, jnp.where(valid, window_weights, 0.0))
    return actor, opt, keys[0], out


def _phase_one(spec: DistillSpec, pcfg: PackConfig, tx: optax.GradientTransformation, actor: Params,
               opt: optax.OptState, critic: Params, key: jax.Array, mean: jax.Array, var: jax.Array,
               states: jax.Array, valid: jax.Array, peer_out: jax.Array, peer_values: jax.Array,
               xi_divisor: jax.Array, steps: jax.Array) -> tuple[Params, optax.OptState, jax.Array, PhaseOut]:
    """The phase of ONE DDPG learner (vmapped over the pack): states (W, D) the peer's raw window, peer_out (W, A),
    peer_values (W,), mean / var (D,) the student's own statistics, steps a scalar int <= spec.max_steps."""
    obs = _normalize(pcfg, states, mean, var)
    own_values = q_fn(critic, obs, actor_fn(actor, obs))  # the critic is not distilled: fixed for the phase
    return phase_steps(spec, tx, actor_fn, actor, opt, key, obs, valid, own_values, peer_out, peer_values,
                       xi_divisor, steps)


def distill_phase(spec: DistillSpec, pcfg: PackConfig, pack_tx: optax.GradientTransformation, learners: Learners,
                  state: DistillState, obs_buffer: jax.Array, pos: jax.Array, size: jax.Array, mean: jax.Array,
                  var: jax.Array, peers: jax.Array, xi_divisor: jax.Array, steps: jax.Array
                  ) -> tuple[Learners, DistillState, PhaseOut]:
    """One distillation phase of every learner toward its peer (``jax.jit`` it with spec, pcfg, pack_tx static:
    :func:`make_distill_phase`).

    :param obs_buffer: (N, C, D) the pack's ``buffers.obs`` (raw observations); pos, size: the pack's ring position
        and fill (shared by all learners).
    :param mean, var: (N, D) each learner's observation statistics; peers: (N,) int the peer of each learner.
    :param xi_divisor: (N,) what each student divides xi by; steps: (N,) int in [0, spec.max_steps].
    :return: the learners with new actors (and, ``optimizer=shared``, new actor Adam states), the new state, and what
        the phase did.
    """
    tx = spec.tx(pack_tx)
    states, valid = peer_windows(obs_buffer, pos, size, spec.window)  # (N, W, D) each learner's own window

    def as_peer(actor: Params, critic: Params, states: jax.Array, mean: jax.Array, var: jax.Array
                ) -> tuple[jax.Array, jax.Array]:
        """Student.peer_batch: (W, A) deterministic actions and (W,) values, in the learner's own normalisation."""
        obs = _normalize(pcfg, states, mean, var)
        out = actor_fn(actor, obs)
        return out, q_fn(critic, obs, out)

    outputs, values = per_learner(as_peer)(learners.actor, learners.critic, states, mean, var)
    opt = state.opt if spec.optimizer == "own" else learners.actor_opt
    phase = per_learner(lambda *a: _phase_one(spec, pcfg, tx, *a),
                        in_axes=(0, 0, 0, 0, 0, 0, 0, None, 0, 0, 0, 0))
    actor, opt, key, out = phase(learners.actor, opt, learners.critic, state.key, mean, var, states[peers], valid,
                                 outputs[peers], values[peers], xi_divisor, steps)
    if spec.optimizer == "own":
        return learners._replace(actor=actor), DistillState(opt, key), out
    return learners._replace(actor=actor, actor_opt=opt), DistillState(state.opt, key), out


#: :func:`distill_phase` jitted, its settings (spec, pcfg, pack_tx) static: one compile per settings and pack size
distill_phase_jit = jax.jit(distill_phase, static_argnums=(0, 1, 2))


def make_distill_phase(spec: DistillSpec, pcfg: PackConfig, pack_tx: optax.GradientTransformation
                       ) -> Callable[..., tuple[Learners, DistillState, PhaseOut]]:
    """:func:`distill_phase` jitted for these settings: ``f(learners, state, obs_buffer, pos, size, mean, var, peers,
    xi_divisor, steps)`` (the same pack_tx object: the same compiled function)."""
    return partial(distill_phase_jit, spec, pcfg, pack_tx)


def ppo_distill_phase(spec: DistillSpec, pcfg: Any, tx: optax.GradientTransformation, policy: Any,
                      state: DistillState, windows: jax.Array, valid: jax.Array, mean: jax.Array, var: jax.Array,
                      scale: jax.Array, peers: jax.Array, xi_divisor: jax.Array, steps: jax.Array
                      ) -> tuple[Any, DistillState, PhaseOut]:
    """One distillation phase of every PPO learner toward its peer (:class:`dpd.pack.ppo.PPOPack`; the own Adam).

    What dpd's Distiller does for an on-policy student (``OnPolicyStudent``): the peer's window of its last W raw
    observations (``RecentStates``), its Gaussian means and its values in raw return units (``V x reward scale``),
    each in the peer's own normalisation; the student's values on them the same way in its own; the phase moves the
    policy-mean network only (``pi``: not ``log_std``, not the value net).

    :param windows: (N, W, D) each learner's raw window, oldest first; valid (W,) its filled rows (lock-step: shared).
    :param mean, var: (N, D) each learner's observation statistics; scale (N,) its reward scale (1 without reward
        normalisation); peers (N,) int; xi_divisor (N,); steps (N,) int in [0, spec.max_steps].
    """
    from dpd.pack.ppo import tanh_mlp

    def norm(o: jax.Array, m: jax.Array, v: jax.Array) -> jax.Array:
        if not pcfg.normalize:
            return o
        return jnp.clip((o - m) / jnp.sqrt(v + pcfg.norm_eps), -pcfg.clip_obs, pcfg.clip_obs)

    def values(pol: Any, obs: jax.Array, s: jax.Array) -> jax.Array:
        return tanh_mlp(pol.vf, obs)[..., 0] * s

    def as_peer(pol: Any, states: jax.Array, m: jax.Array, v: jax.Array, s: jax.Array) -> tuple[jax.Array, jax.Array]:
        obs = norm(states, m, v)
        return tanh_mlp(pol.pi, obs), values(pol, obs, s)

    outputs, peer_values = per_learner(as_peer)(policy, windows, mean, var, scale)

    def one(pol: Any, opt: Any, key: jax.Array, states: jax.Array, m: jax.Array, v: jax.Array, s: jax.Array,
            peer_out: jax.Array, peer_val: jax.Array, divisor: jax.Array, n: jax.Array) -> tuple:
        obs = norm(states, m, v)
        own = values(pol, obs, s)  # the value net is not distilled: fixed for the phase
        return phase_steps(spec, tx, tanh_mlp, pol.pi, opt, key, obs, valid, own, peer_out, peer_val, divisor, n)

    pi, opt, key, out = per_learner(one)(policy, state.opt, state.key, windows[peers], mean, var, scale,
                                         outputs[peers], peer_values[peers], xi_divisor, steps)
    return policy._replace(pi=pi), DistillState(opt, key), out


#: :func:`ppo_distill_phase` jitted, its settings (spec, pcfg, tx) static
ppo_distill_phase_jit = jax.jit(ppo_distill_phase, static_argnums=(0, 1, 2))
