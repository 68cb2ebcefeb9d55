"""A student: one stock SB3 algorithm, its own environments and recent-state window, and its Distiller.

The only thing that crosses between two students is a :class:`PeerBatch` of plain arrays: the peer's
recent RAW states, and the peer's own actions and values on them (computed by the peer with its own
networks and its own normalisation). The student's :class:`dpd.distillation.Distiller` then evaluates the
student's OWN actions (with gradient) and values (without) on the same raw states, normalised with the student's
OWN statistics, and takes steps of the DPD objective (:func:`dpd.objective.dpd_loss`).

A Student steps SB3 (collect + update), answers for its units (normalisation, raw return values) and hands out its
peer batch; the distillation phase is the Distiller's, evaluation the Learner's (:class:`dpd.episodes.Evaluator`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from dpd.config import ResolvedDistill
from dpd.distillation import Distiller, PeerBatch, PhaseResult
from dpd.envs import RecentStates, normalize_raw, return_scale
from dpd.internals import setup_learn
from dpd.xi import critic_offset, horizon, window_returns

__all__ = ["PeerBatch", "PhaseResult", "Student"]


class Student(ABC):
    """Base class of the per-algorithm adapters. Subclasses answer three questions about their SB3 model:
    how to run one iteration (collect + RL update), what its actions and values are on normalised
    observations, and which parameters form its actor."""

    def __init__(
        self,
        name: str,
        model: BaseAlgorithm,
        recorder: RecentStates,
        distill: ResolvedDistill | None,
        seed: int,
        iteration_steps: int = 1000,
        active: bool = True,
    ) -> None:
        """:param distill: the run's distillation settings (None: a vanilla learner, no peer).
        :param seed: seed of the Distiller's own generator.
        :param active: False: the ``independent`` control (the pair is measured, never distilled)."""
        self.name = name
        #: off-policy: env steps of one iteration (on-policy: one SB3 rollout, this is unused)
        self.iteration_steps = iteration_steps
        self.model = model
        self.recorder = recorder
        self.discrete = isinstance(model.action_space, spaces.Discrete)
        self.iteration = 0
        self.budget = 0  # this learner's own env steps (TrainConfig.total_steps is over all learners)
        self._callback: BaseCallback | None = None
        self.distiller = Distiller(distill, self, active, seed) if distill is not None else None

    # ------------------------------------------------------------------ subclass interface
    @abstractmethod
    def _iterate(self, callback: BaseCallback) -> bool:
        """Collect experience and do the RL update; False when a callback asked to stop."""

    @abstractmethod
    def policy_outputs(self, obs: th.Tensor) -> th.Tensor:
        """(B, A) deterministic actions (continuous) or logits (discrete) on NORMALISED obs, with gradient."""

    @abstractmethod
    def value_estimates(self, obs: th.Tensor) -> th.Tensor:
        """(B,) value estimates on NORMALISED obs in the model's own units (no gradient needed)."""

    @abstractmethod
    def actor_parameters(self) -> list[th.nn.Parameter]:
        """The parameters distillation may change (the actor's mean/logit network only)."""

    @abstractmethod
    def dump_logs(self) -> None:
        """Write one log row (SB3's own rollout/time keys plus whatever was recorded since the last row)."""

    @abstractmethod
    def shared_optimizer(self) -> th.optim.Optimizer:
        """The algorithm's own optimiser over the actor (``distill_optimizer=shared``)."""

    def action_std(self, obs: th.Tensor) -> th.Tensor | None:
        """(B, A) the std of a Gaussian policy's actions on NORMALISED obs; None where there is none."""
        return None

    def recent_states(self) -> np.ndarray:
        """(N, *obs_shape) the raw states of this student's most recent ``distill_window`` env steps."""
        return self.recorder.recent_states()

    def iteration_gradient_steps(self) -> int | None:
        """None: an on-policy phase has a fixed number of steps (the off-policy student counts its RL steps)."""
        return None

    def distill_due(self) -> bool:
        """Whether a distillation phase (or, for the independent pair, a measurement) follows this iteration."""
        return self.distiller is not None and self.distiller.due(self.iteration)

    def max_grad_norm(self) -> float | None:
        return getattr(self.model, "max_grad_norm", None)

    def set_training_mode(self, mode: bool) -> None:
        self.model.policy.set_training_mode(mode)

    def action_bounds(self) -> tuple[th.Tensor, th.Tensor] | None:
        """(low, high) of Box actions in the units of :meth:`policy_outputs`: env units for a Gaussian policy, [-1, 1]
        for the squashed actors of DDPG/TD3/SAC; None for discrete actions."""
        space = self.model.action_space
        if not isinstance(space, spaces.Box):
            return None
        if getattr(self.model.policy, "squash_output", False) or not hasattr(self.model.policy, "log_std"):
            low, high = -np.ones(space.shape), np.ones(space.shape)
        else:
            low, high = space.low, space.high
        device = self.model.device
        return (th.as_tensor(low, dtype=th.float32, device=device), th.as_tensor(high, dtype=th.float32, device=device))

    def raw_q_values(self, obs: th.Tensor, actions: th.Tensor) -> th.Tensor:
        """(B,) Q(s, a) in raw return units; only students with a Q critic (off-policy) have it."""
        raise TypeError(f"{type(self.model).__name__} has no Q critic (xi_estimator=own_critic is off-policy only)")

    # ------------------------------------------------------------------ environment & units
    @property
    def train_env(self) -> VecEnv:
        env = self.model.get_env()
        assert env is not None
        return env

    @property
    def vec_normalize(self) -> VecNormalize | None:
        return self.model.get_vec_normalize_env()

    @property
    def num_timesteps(self) -> int:
        return int(self.model.num_timesteps)

    def normalize_obs(self, raw_states: np.ndarray) -> th.Tensor:
        """Raw states -> the tensor this student's networks expect, using the student's OWN statistics."""
        return th.as_tensor(normalize_raw(self.vec_normalize, raw_states), device=self.model.device)

    def reward_scale(self) -> float:
        """Factor from the model's value units to raw return units (VecNormalize divides rewards by it)."""
        return return_scale(self.vec_normalize)

    def raw_values(self, obs: th.Tensor) -> th.Tensor:
        """(B,) value estimates in raw return units (reward normalisation undone)."""
        with th.no_grad():
            return self.value_estimates(obs) * self.reward_scale()

    def return_std(self) -> float:
        """The running std of this student's discounted raw return (kept by its :class:`RecentStates`)."""
        return self.recorder.return_std

    def critic_offset(self) -> float:
        """This critic's offset on its own recent states: mean(V(s) - G(s)) over the window's states whose
        discounted return was collected in full (:func:`dpd.xi.window_returns`; 0 where none was)."""
        w = self.recorder.recent_window()
        if not len(w["states"]):
            return 0.0
        returns, complete = window_returns(w["rewards"], w["dones"], w["timeouts"], w["env_index"],
                                           self.recorder.gamma, horizon(self.recorder.gamma))
        values = self.raw_values(self.normalize_obs(w["states"])).cpu().numpy().astype(np.float64)
        return critic_offset(values, returns, complete)[0]

    # ------------------------------------------------------------------ Algorithm 1 steps
    def setup(
        self, budget: int, callback: BaseCallback | list[BaseCallback] | None = None, resume: bool = False
    ) -> None:
        """Prepare SB3's learning state for a ``budget`` of this learner's own env steps.

        :param resume: the model's counters and last observation were restored from a checkpoint: keep them
            (SB3's ``reset_num_timesteps=False``: no env reset, the step counter continues).
        """
        self.budget = budget
        m = self.model
        remaining = budget - m.num_timesteps if resume else budget
        self._callback = setup_learn(m, remaining, callback, not resume, self.name)
        self._callback.on_training_start(locals(), globals())

    def iterate(self) -> bool:
        """One iteration: collect experience in the own env, then the RL update. False: a callback stopped it."""
        assert self._callback is not None, "call setup() first"
        if not self._iterate(self._callback):
            return False
        self.iteration += 1
        return True

    def finish(self) -> None:
        if self._callback is not None:
            self._callback.on_training_end()

    def peer_batch(self) -> PeerBatch | None:
        """This student's recent raw states with its own deterministic outputs and raw values on them.
        None until this student has completed an iteration (its window then holds real experience)."""
        states = self.recent_states()
        if self.iteration == 0 or len(states) == 0:
            return None
        obs = self.normalize_obs(states)
        # both students share the distillation settings: what the peer's Distiller will need, and only that
        wanted = self.distiller.config if self.distiller is not None else None
        with th.no_grad():
            outputs = self.policy_outputs(obs)
            std = self.action_std(obs) if wanted is not None and wanted.target == "sample" else None
        values = self.raw_values(obs)
        debiased = wanted is not None and wanted.xi_estimator == "debiased"
        return PeerBatch(states=states, outputs=outputs.cpu().numpy(), values=values.cpu().numpy(),
                         action_std=std.cpu().numpy() if std is not None else None,
                         value_offset=self.critic_offset() if debiased else 0.0)

    def measure(self, batch: PeerBatch) -> PhaseResult:
        """The pair's statistics on the peer's window, with no distillation (the ``independent`` control)."""
        assert self.distiller is not None, "a vanilla learner has no peer"
        return self.distiller.measure(self, batch)

    def distill(self, batch: PeerBatch, steps: int | None = None) -> PhaseResult:
        """One distillation phase toward the peer's batch (:meth:`dpd.distillation.Distiller.phase`).

        :param steps: None: the schedule's steps for this phase (x the adaptive strength, x the gate); a number:
            exactly that many.
        """
        assert self.distiller is not None, "a vanilla learner has no peer"
        return self.distiller.phase(self, batch, steps)

    def close(self) -> None:
        self.train_env.close()

    # ------------------------------------------------------------------ checkpoints
    def replay_buffer_state(self) -> dict[str, Any] | None:
        """The replay buffer as plain data (off-policy students); None: this student has none."""
        return None

    def load_replay_buffer_state(self, state: dict[str, Any]) -> None:  # noqa: B027 - a hook, empty by default
        """Restore what :meth:`replay_buffer_state` returned (nothing to do without a replay buffer)."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this student exactly, as plain data: the SB3 algorithm and the training
        environments (:mod:`dpd.state`) plus the iteration counter and the Distiller's state."""
        from dpd.state import algorithm_state, vec_env_state

        distiller = self.distiller.state_dict() if self.distiller is not None else None
        own: dict[str, Any] = {"iteration": self.iteration}
        if distiller is not None:  # the keys checkpoints have always had
            own.update(rng=distiller["rng"], skipped_nonfinite=distiller["skipped_nonfinite"],
                       skipped_zero_weight=distiller["skipped_zero_weight"], step_carry=distiller["step_carry"],
                       adaptive=distiller["adaptive"])
        return {
            **algorithm_state(self.model),
            "distill_optimizer": distiller["optimizer"] if distiller is not None else None,
            "student": own,
            "train_env": vec_env_state(self.train_env),
        }

    def load_model_state(self, state: dict[str, Any]) -> None:
        """First half of a restore, BEFORE :meth:`setup`: networks, optimisers, counters, last observation."""
        from dpd.state import load_algorithm_state

        load_algorithm_state(self.model, state)

    def load_env_state(self, state: dict[str, Any]) -> None:
        """Second half, AFTER :meth:`setup`: episode buffers, the training environments, the Distiller."""
        from dpd.state import load_episode_buffers, set_vec_env_state

        load_episode_buffers(self.model, state)
        set_vec_env_state(self.train_env, state["train_env"])
        own = state["student"]
        self.iteration = own["iteration"]
        if self.distiller is not None and "rng" in own:
            self.distiller.load_state_dict({**own, "optimizer": state.get("distill_optimizer")})
