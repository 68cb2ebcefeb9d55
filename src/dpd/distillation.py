"""The distillation phase as one object: a :class:`Distiller` owns everything of it, a student only adapts.

Algorithm 1 line 5/8 for student *i*: on the peer's recent states (a :class:`PeerBatch`), estimate xi once
(:meth:`Distiller.window`: the configured estimator of :mod:`dpd.xi`, the offsets, the divisor, then
:func:`dpd.objective.compute_xi`), weigh the states (:func:`dpd.objective.dpd_weights`), gate and size the phase,
and take gradient steps of the DPD objective (:func:`dpd.objective.dpd_loss`) on the student's actor, all on that
one xi. The Distiller decides everything of a phase from the batch, its config and the student: the number of steps
(on-policy ``steps``; off-policy ``ratio`` x the iteration's RL gradient steps; x the ``adaptive`` strength x the
``advantage`` gate, whole steps from fractional ones), what xi is divided by (``xi_scale``), the ``debiased``
offsets; it owns the optimiser, its random stream and its counters, and RETURNS what a phase did
(:class:`PhaseResult`) for the learner to log. The student is reached only through :class:`Distillable`: its
normalisation, its actions and values on normalised states, its actor, its return scale, its critic's offset and
its iteration's RL gradient steps.

Adding a weighting is :func:`dpd.objective.register_weighting`; an estimator of xi or a gate is one branch of
:meth:`Distiller.window` or :meth:`Distiller.phase_steps` (plus its name in :mod:`dpd.names`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch as th

from dpd.config import ResolvedDistill, require_resolved_distill
from dpd.objective import DistillStats, compute_xi, dpd_loss, dpd_weights
from dpd.schedule import AdaptiveStrength, StepCarry
from dpd.xi import gate_strength

#: logit given to the actions NOT sampled when a discrete peer's sampled action is the target (a one-hot policy)
_ONE_HOT_LOW_LOGIT = -30.0


@dataclass
class PeerBatch:
    """What a peer hands to a student for distillation. N = number of states.

    :param states: (N, *obs_shape) raw observations from the peer's most recent steps.
    :param outputs: (N, A) the peer's deterministic actions (Gaussian means, continuous) or logits (discrete).
    :param values: (N,) the peer's value estimates, in raw (un-normalised) return units.
    """

    states: np.ndarray
    outputs: np.ndarray
    values: np.ndarray
    #: (N, A) the std of the peer's Gaussian policy (continuous on-policy peers; for ``distill_target=sample``)
    action_std: np.ndarray | None = None
    #: ``xi_estimator=debiased``: the peer's critic offset on its own recent states, raw return units
    value_offset: float = 0.0

    def __len__(self) -> int:
        return int(self.states.shape[0])


class Distillable(Protocol):
    """What a Distiller needs of a student (:class:`dpd.students.base.Student` is one)."""

    discrete: bool

    def normalize_obs(self, raw_states: np.ndarray) -> th.Tensor:
        """Raw states -> the tensor the student's networks take (its OWN statistics)."""

    def policy_outputs(self, obs: th.Tensor) -> th.Tensor:
        """(B, A) deterministic actions or logits on normalised obs, WITH gradient."""

    def raw_values(self, obs: th.Tensor) -> th.Tensor:
        """(B,) the critic at the student's own policy, raw return units, no gradient."""

    def raw_q_values(self, obs: th.Tensor, actions: th.Tensor) -> th.Tensor:
        """(B,) the critic's Q(s, a) for actions in policy units, raw return units (off-policy students)."""

    def actor_parameters(self) -> list[th.nn.Parameter]:
        """The parameters distillation may change."""

    def shared_optimizer(self) -> th.optim.Optimizer:
        """The algorithm's own actor optimiser (``distill_optimizer=shared``)."""

    def max_grad_norm(self) -> float | None:
        """The algorithm's own gradient clipping (applied to distillation steps through a shared optimiser)."""

    def set_training_mode(self, mode: bool) -> None:
        """Switch the policy between training and evaluation mode."""

    def action_bounds(self) -> tuple[th.Tensor, th.Tensor] | None:
        """(low, high) of Box actions in the units of :meth:`policy_outputs` (None: discrete actions)."""

    def return_std(self) -> float:
        """The running std of the student's discounted raw return (what ``xi_scale=return_std`` divides xi by)."""

    def critic_offset(self) -> float:
        """The student's critic's offset on its own recent states, raw return units (``xi_estimator=debiased``)."""

    def iteration_gradient_steps(self) -> int | None:
        """The RL gradient steps of the iteration just done where a phase is paced by them (off-policy: a phase is
        ``ratio`` x these); None where a phase has a fixed number of steps (on-policy: ``steps``)."""


@dataclass(frozen=True)
class PhaseResult:
    """What one distillation phase (or the independent pair's measurement) did."""

    #: the pair on the whole peer window before the phase: action distance, xi, share where the peer is better
    pair: DistillStats
    #: averaged over the gradient steps taken; None where none was taken (a measurement, or every batch skipped)
    stats: DistillStats | None
    #: gradient steps taken
    steps: int
    #: (N,) the weights over the whole peer window (TensorBoard's histogram)
    window_weights: th.Tensor
    #: what xi was divided by before alpha
    xi_divisor: float
    #: ``adaptive``: the strength this phase got (None: another schedule)
    strength: float | None = None
    #: ``distill_gate=advantage``: the share of the phase's steps it allowed (None: no gate)
    gate: float | None = None
    #: ``xi_estimator=debiased``: (own, peer) critic offsets subtracted (None: another estimator)
    offsets: tuple[float, float] | None = None
    #: the Distiller's running totals after the phase
    skipped_nonfinite: int = 0
    skipped_zero_weight: int = 0
    nonfinite_streak: int = 0


@dataclass
class _Window:
    """The peer's window in the student's terms (tensors), as the objective takes it. N = states of the window."""

    #: (N, *obs_shape) the peer's states, normalised with the student's own statistics
    obs: th.Tensor
    #: (N, A) the peer's outputs
    peer_out: th.Tensor
    #: (N,) xi = (V_peer - V_self) / divisor under the configured estimator: the phase's one xi
    xi: th.Tensor
    #: what xi was divided by
    divisor: float
    #: ``debiased``: the (own, peer) offsets subtracted; None: another estimator
    offsets: tuple[float, float] | None


class Distiller:
    """The distillation phases of one student (see the module docstring).

    :param config: the run's resolved distillation settings.
    :param student: the student it distils (its actor parameters, or its shared optimiser, are taken here).
    :param active: False: the ``independent`` control, which measures the pair and never takes a step.
    :param seed: seed of the Distiller's own generator (minibatches, sampled targets).
    """

    def __init__(self, config: ResolvedDistill, student: Distillable, active: bool, seed: int) -> None:
        self.config = require_resolved_distill(config, "Distiller")
        self.active = active
        self.rng = np.random.default_rng(seed)
        self.optimizer: th.optim.Optimizer | None = None
        if active:
            self.optimizer = (th.optim.Adam(student.actor_parameters(), lr=config.lr) if config.optimizer == "own"
                              else student.shared_optimizer())
        self.adaptive = (AdaptiveStrength(config.adaptive_low, config.adaptive_high) if config.schedule == "adaptive"
                         else None)
        self.carry = StepCarry()
        self.skipped_nonfinite = 0
        #: batches whose weights were all zero (no optimiser step: Adam's momentum would still move the actor)
        self.skipped_zero_weight = 0
        #: consecutive batches skipped for a non-finite loss (reset by any finite one)
        self.nonfinite_streak = 0

    def due(self, iteration: int) -> bool:
        """Whether a phase (or a measurement) follows RL iteration ``iteration``."""
        return iteration % self.config.every == 0

    # ------------------------------------------------------------------ what a phase is sized and scaled by
    def scheduled_steps(self, student: Distillable) -> float:
        """The schedule's gradient steps for a phase after the student's current iteration, before the adaptive
        strength and the gate: on-policy ``steps``; off-policy ``ratio`` x the iteration's RL gradient steps (a
        fraction, not rounded: :class:`dpd.schedule.StepCarry` carries fractions across phases)."""
        rl_steps = student.iteration_gradient_steps()
        if rl_steps is None:
            return self.config.steps
        return self.config.ratio * rl_steps

    def xi_divisor(self, student: Distillable) -> float:
        """What xi is divided by before alpha: the student's return std (``xi_scale=return_std``) or 1 (``none``)."""
        return student.return_std() if self.config.xi_scale == "return_std" else 1.0

    # ------------------------------------------------------------------ xi on the peer's window
    def window(self, student: Distillable, batch: PeerBatch) -> _Window:
        """The peer's window in the student's terms, with xi under the configured estimator, computed once."""
        obs = student.normalize_obs(batch.states)
        peer_out = th.as_tensor(batch.outputs, device=obs.device)
        offsets = None
        if self.config.xi_estimator == "own_critic":  # one critic judges both actions: its offset cancels
            peer_values = student.raw_q_values(obs, peer_out.to(th.float32))
            own_values = student.raw_values(obs)
        else:
            peer_values = th.as_tensor(batch.values, device=obs.device, dtype=th.float32)
            own_values = student.raw_values(obs)  # fixed during a phase: the critic is not distilled
            if self.config.xi_estimator == "debiased":  # each critic less its offset on its own recent returns
                offsets = (student.critic_offset(), float(batch.value_offset))
                own_values, peer_values = own_values - offsets[0], peer_values - offsets[1]
        divisor = self.xi_divisor(student)
        return _Window(obs, peer_out, compute_xi(own_values, peer_values, divisor), divisor, offsets)

    def _pair(self, student: Distillable, w: _Window) -> tuple[DistillStats, th.Tensor]:
        """The pair's statistics and the weights on the whole window (no step)."""
        c = self.config
        with th.no_grad():
            _, pair = dpd_loss(student.policy_outputs(w.obs), w.peer_out, w.xi, c.alpha, weighting=c.weighting,
                               discrete=student.discrete, max_log_weight=c.max_log_weight,
                               normalize_weights=c.normalize_weights, bounds=self._bounds(student))
        weights, _ = dpd_weights(w.xi, c.alpha, c.weighting, c.max_log_weight)
        return pair, weights

    def _result(self, pair: DistillStats, weights: th.Tensor, w: _Window, stats: DistillStats | None = None,
                steps: int = 0, strength: float | None = None, gate: float | None = None) -> PhaseResult:
        return PhaseResult(pair, stats, steps, weights, w.divisor, strength, gate, w.offsets, self.skipped_nonfinite,
                           self.skipped_zero_weight, self.nonfinite_streak)

    def measure(self, student: Distillable, batch: PeerBatch) -> PhaseResult:
        """The pair on the peer's window, with no step (the ``independent`` control)."""
        w = self.window(student, batch)
        pair, weights = self._pair(student, w)
        return self._result(pair, weights, w)

    # ------------------------------------------------------------------ one phase
    def phase_steps(self, student: Distillable, pair: DistillStats, w: _Window
                    ) -> tuple[int, float | None, float | None]:
        """Whole gradient steps of this phase: :meth:`scheduled_steps` x the adaptive strength x the gate (the
        share of the window where xi > 0); fractions carried to the next phase. Returns (steps, strength or None,
        gate or None)."""
        strength = self.adaptive.update(pair.action_distance) if self.adaptive is not None else None
        gate = gate_strength(w.xi.cpu().numpy()) if self.config.gate == "advantage" else None
        factor = (strength if strength is not None else 1.0) * (gate if gate is not None else 1.0)
        return self.carry.take(self.scheduled_steps(student) * factor), strength, gate

    def phase(self, student: Distillable, batch: PeerBatch, steps: int | None = None) -> PhaseResult:
        """One distillation phase toward the peer's batch.

        :param steps: exactly this many gradient steps (tests, tools); None: as the schedule says
            (:meth:`phase_steps`).
        """
        c = self.config
        assert self.active and self.optimizer is not None, "this learner does not distill (vanilla or independent)"
        w = self.window(student, batch)
        pair, weights = self._pair(student, w)
        strength = gate = None
        if steps is None:
            steps, strength, gate = self.phase_steps(student, pair, w)
        n = len(batch)
        bounds = self._bounds(student)
        actor = student.actor_parameters()
        max_grad_norm = student.max_grad_norm() if c.optimizer == "shared" else None
        collected: list[DistillStats] = []
        taken = 0
        student.set_training_mode(True)
        for _ in range(steps):
            idx = th.as_tensor(self.rng.choice(n, size=c.batch_size, replace=n < c.batch_size))
            loss, stats = dpd_loss(
                student.policy_outputs(w.obs[idx]),
                self._targets(w.peer_out, batch, idx, student.discrete),
                w.xi[idx],
                c.alpha,
                weighting=c.weighting,
                discrete=student.discrete,
                max_log_weight=c.max_log_weight,
                normalize_weights=c.normalize_weights,
                bounds=bounds,
            )
            if not math.isfinite(stats.loss):
                self.skipped_nonfinite += 1  # never let a non-finite loss reach the optimiser
                self.nonfinite_streak += 1
                continue
            self.nonfinite_streak = 0
            collected.append(stats)
            if stats.weight_max <= 0:  # all weights zero (indicator, peer worse everywhere): nothing to learn, and
                self.skipped_zero_weight += 1  # a step would still move the actor by Adam's momentum
                continue
            self.optimizer.zero_grad()
            (loss * float(c.loss_coef if c.loss_coef is not None else 1.0)).backward()
            if max_grad_norm is not None:  # the algorithm's own clipping, as its own steps get
                th.nn.utils.clip_grad_norm_(actor, max_grad_norm)
            self.optimizer.step()
            taken += 1
        student.set_training_mode(False)
        averaged = None
        if collected:
            keys = DistillStats.__dataclass_fields__
            averaged = DistillStats(**{k: float(np.mean([getattr(s, k) for s in collected])) for k in keys})
        return self._result(pair, weights, w, averaged, taken, strength, gate)

    def _bounds(self, student: Distillable) -> tuple[th.Tensor, th.Tensor] | None:
        return student.action_bounds() if self.config.distance == "clamped_mse" else None

    def _targets(self, peer_out: th.Tensor, batch: PeerBatch, idx: th.Tensor, discrete: bool) -> th.Tensor:
        """(B, A) what the student regresses on: the peer's outputs, or an action sampled from the peer's policy
        (``distill_target=sample``; drawn with this Distiller's own generator)."""
        out = peer_out[idx]
        if self.config.target != "sample":
            return out
        if discrete:  # a sampled action as a one-hot policy (KL to it = the student's NLL of that action)
            probs = th.softmax(out.double(), dim=-1).cpu().numpy()
            picks = [self.rng.choice(probs.shape[1], p=p / p.sum()) for p in probs]
            onehot = th.full_like(out, _ONE_HOT_LOW_LOGIT)
            onehot[th.arange(len(picks)), th.as_tensor(picks)] = 0.0
            return onehot
        assert batch.action_std is not None, "distill_target=sample needs a Gaussian peer"
        std = th.as_tensor(batch.action_std, device=out.device)[idx]
        noise = th.as_tensor(self.rng.standard_normal(out.shape), dtype=out.dtype, device=out.device)
        return out + std * noise

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Counters, sampler, carried fraction, adaptive strength and (own) optimiser, as plain data."""
        from dpd.state import gen_state

        return {"rng": gen_state(self.rng), "skipped_nonfinite": self.skipped_nonfinite,
                "skipped_zero_weight": self.skipped_zero_weight, "step_carry": self.carry.carry,
                "adaptive": self.adaptive.state() if self.adaptive is not None else None,
                # a shared optimiser is the model's own and is saved with it
                "optimizer": self.optimizer.state_dict() if self.optimizer is not None and
                self.config.optimizer == "own" else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from dpd.state import set_gen_state

        set_gen_state(self.rng, state["rng"])
        self.skipped_nonfinite = int(state.get("skipped_nonfinite", 0))
        self.skipped_zero_weight = int(state.get("skipped_zero_weight", 0))
        self.carry.carry = float(state.get("step_carry", 0.0))
        if self.adaptive is not None and state.get("adaptive") is not None:
            self.adaptive.load(state["adaptive"])
        if self.optimizer is not None and self.config.optimizer == "own" and state.get("optimizer") is not None:
            from dpd.state import check_optimizer_state

            check_optimizer_state(state["optimizer"], "the distillation optimiser")
            self.optimizer.load_state_dict(state["optimizer"])
