"""A student: one stock SB3 algorithm, its own environments, its recent-state window and its distillation optimiser.

The only thing that crosses between two students is a :class:`PeerBatch` of plain arrays: the peer's
recent RAW states, and the peer's own actions and values on them (computed by the peer with its own
networks and its own normalisation). The student then evaluates its OWN actions (with gradient) and
values (without) on the same raw states, normalising them with its OWN statistics, and takes
distillation steps on the DPD objective (:func:`dpd.objective.dpd_loss`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from dpd.envs import RecentStates, make_eval_env, normalize_raw, return_scale, sync_normalization
from dpd.episodes import EvalResult, run_episodes
from dpd.objective import DistillStats, Weighting, dpd_loss, dpd_weights
from dpd.schedule import AdaptiveStrength, StepCarry

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

    def __len__(self) -> int:
        return int(self.states.shape[0])


@dataclass(frozen=True)
class DistillSettings:
    """The distillation hyperparameters a student needs (taken from :class:`dpd.config.TrainConfig`)."""

    alpha: float
    weighting: Weighting
    xi_scale: str  # "return_std" | "none"
    max_log_weight: float
    normalize_weights: bool
    lr: float
    batch_size: int
    #: on-policy: distillation steps per phase
    steps: int
    #: off-policy: distillation steps per RL gradient step of the iteration
    ratio: float
    #: False: the ``independent`` control: the pair is measured (action distance, xi) but never distilled
    active: bool = True
    #: RL iterations from one distillation phase to the next
    every: int = 1
    #: ``mean`` | ``sample`` (regress on an action sampled from the peer's policy)
    target: str = "mean"
    #: ``own`` Adam | ``shared``: the algorithm's own actor optimiser
    optimizer: str = "own"
    #: factor on the loss
    loss_coef: float = 1.0
    #: ``adaptive`` schedule: (low, high) band of the pair's action distance; None: fixed steps
    adaptive_band: tuple[float, float] | None = None


class Student(ABC):
    """Base class of the per-algorithm adapters. Subclasses answer three questions about their SB3 model:
    how to run one iteration (collect + RL update), what its actions and values are on normalised
    observations, and which parameters form its actor."""

    def __init__(
        self,
        name: str,
        model: BaseAlgorithm,
        recorder: RecentStates,
        eval_env_id: str,
        eval_seed: int,
        distill: DistillSettings | None,
        seed: int,
        iteration_steps: int = 1000,
    ) -> None:
        self.name = name
        #: off-policy: env steps of one iteration (on-policy: one SB3 rollout, this is unused)
        self.iteration_steps = iteration_steps
        self.model = model
        self.recorder = recorder
        self.distill_settings = distill
        self.discrete = isinstance(model.action_space, spaces.Discrete)
        self.iteration = 0
        self.budget = 0  # this learner's own env steps (TrainConfig.total_steps is over all learners)
        self._callback: BaseCallback | None = None
        self._rng = np.random.default_rng(seed)
        self._eval_env_id, self._eval_seed = eval_env_id, eval_seed
        self._eval_env: VecEnv | None = None
        self.optimizer: th.optim.Optimizer | None = None
        if distill is not None and distill.active:
            self.optimizer = (th.optim.Adam(self.actor_parameters(), lr=distill.lr) if distill.optimizer == "own"
                              else self.shared_optimizer())
        self.adaptive: AdaptiveStrength | None = None
        if distill is not None and distill.adaptive_band is not None:
            self.adaptive = AdaptiveStrength(*distill.adaptive_band)
        self._step_carry = StepCarry()
        #: statistics of the pair on the whole peer window before the last phase (action distance, xi, weights)
        self.pair_stats: DistillStats | None = None
        #: distillation gradient steps taken in the last phase
        self.last_phase_steps = 0
        self.distill_skipped_nonfinite = 0
        #: distillation batches whose weights were all zero (no optimiser step: Adam's momentum would still move)
        self.distill_skipped_zero_weight = 0
        #: (N,) the weights exp(alpha * xi) over the peer window of the last distillation (for logging)
        self.window_weights: th.Tensor | None = None
        #: consecutive distillation batches skipped for a non-finite loss (reset by any finite one)
        self.nonfinite_streak = 0

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

    def distill_steps_this_iteration(self) -> int:
        """How many distillation steps a phase after the current iteration takes (before any adaptive strength)."""
        assert self.distill_settings is not None
        return self.distill_settings.steps

    def distill_due(self) -> bool:
        """Whether a distillation phase (or, for the independent pair, a measurement) follows this iteration."""
        return self.distill_settings is not None and self.iteration % self.distill_settings.every == 0

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

    def xi_divisor(self) -> float:
        """What xi is divided by before alpha: the return std (config ``xi_scale=return_std``) or 1 (``none``)."""
        assert self.distill_settings is not None
        return self.recorder.return_std if self.distill_settings.xi_scale == "return_std" else 1.0

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
        _, self._callback = m._setup_learn(remaining, callback, not resume, self.name, False)
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
        with th.no_grad():
            outputs = self.policy_outputs(obs)
            # only the sampled target needs it (both students share the setting); not sent otherwise
            wants_std = self.distill_settings is not None and self.distill_settings.target == "sample"
            std = self.action_std(obs) if wants_std else None
        values = self.raw_values(obs)
        return PeerBatch(states=states, outputs=outputs.cpu().numpy(), values=values.cpu().numpy(),
                         action_std=std.cpu().numpy() if std is not None else None)

    def _window(self, batch: PeerBatch) -> tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor, float]:
        """The peer's window in this student's terms: (normalised obs, peer outputs, own raw values, peer raw
        values, xi scale); the pair's statistics on the whole window go to ``pair_stats``/``window_weights``."""
        settings = self.distill_settings
        assert settings is not None, "this learner has no peer (vanilla)"
        obs_all = self.normalize_obs(batch.states)
        peer_out = th.as_tensor(batch.outputs, device=obs_all.device)
        peer_values = th.as_tensor(batch.values, device=obs_all.device, dtype=th.float32)
        own_values = self.raw_values(obs_all)  # fixed during a phase: the critic is not distilled
        scale = self.xi_divisor()
        with th.no_grad():
            _, self.pair_stats = dpd_loss(
                self.policy_outputs(obs_all), peer_out, own_values, peer_values, settings.alpha,
                weighting=settings.weighting, discrete=self.discrete, xi_divisor=scale,
                max_log_weight=settings.max_log_weight, normalize_weights=settings.normalize_weights,
            )
        self.window_weights, _ = dpd_weights((peer_values - own_values) / scale, settings.alpha, settings.weighting,
                                             settings.max_log_weight)
        return obs_all, peer_out, own_values, peer_values, scale

    def measure(self, batch: PeerBatch) -> DistillStats:
        """The pair's statistics on the peer's window, with no distillation (the ``independent`` control)."""
        self._window(batch)
        assert self.pair_stats is not None
        self.last_phase_steps = 0
        return self.pair_stats

    def _targets(self, peer_out: th.Tensor, batch: PeerBatch, idx: th.Tensor) -> th.Tensor:
        """(B, A) what the student regresses on: the peer's outputs, or an action sampled from the peer's policy
        (``distill_target=sample``; drawn with this student's own generator)."""
        assert self.distill_settings is not None
        out = peer_out[idx]
        if self.distill_settings.target != "sample":
            return out
        if self.discrete:  # a sampled action as a one-hot policy (KL to it = the student's NLL of that action)
            probs = th.softmax(out.double(), dim=-1).cpu().numpy()
            picks = [self._rng.choice(probs.shape[1], p=p / p.sum()) for p in probs]
            onehot = th.full_like(out, _ONE_HOT_LOW_LOGIT)
            onehot[th.arange(len(picks)), th.as_tensor(picks)] = 0.0
            return onehot
        assert batch.action_std is not None, "distill_target=sample needs a Gaussian peer"
        std = th.as_tensor(batch.action_std, device=out.device)[idx]
        noise = th.as_tensor(self._rng.standard_normal(out.shape), dtype=out.dtype, device=out.device)
        return out + std * noise

    def distill(self, batch: PeerBatch, steps: int | None = None) -> DistillStats | None:
        """One distillation phase: gradient steps of the DPD objective toward the peer on the peer's states.

        :param steps: None: the schedule's steps for this phase (:meth:`distill_steps_this_iteration`, times the
            ``adaptive`` strength); a number: exactly that many.
        :return: the statistics averaged over the steps taken (None if none was taken).
        """
        settings = self.distill_settings
        assert settings is not None and settings.active and self.optimizer is not None, \
            "this learner does not distill (vanilla or independent)"
        obs_all, peer_out, own_values, peer_values, scale = self._window(batch)
        assert self.pair_stats is not None
        if steps is None:
            strength = self.adaptive.update(self.pair_stats.action_distance) if self.adaptive is not None else 1.0
            steps = self._step_carry.take(self.distill_steps_this_iteration() * strength)
        n = len(batch)
        actor = self.actor_parameters()
        max_grad_norm = getattr(self.model, "max_grad_norm", None) if settings.optimizer == "shared" else None
        collected: list[DistillStats] = []
        self.last_phase_steps = 0
        self.model.policy.set_training_mode(True)
        for _ in range(steps):
            idx = th.as_tensor(self._rng.choice(n, size=settings.batch_size, replace=n < settings.batch_size))
            loss, stats = dpd_loss(
                self.policy_outputs(obs_all[idx]),
                self._targets(peer_out, batch, idx),
                own_values[idx],
                peer_values[idx],
                settings.alpha,
                weighting=settings.weighting,
                discrete=self.discrete,
                xi_divisor=scale,
                max_log_weight=settings.max_log_weight,
                normalize_weights=settings.normalize_weights,
            )
            if not math.isfinite(stats.loss):
                self.distill_skipped_nonfinite += 1  # never let a non-finite loss reach the optimiser
                self.nonfinite_streak += 1
                continue
            self.nonfinite_streak = 0
            collected.append(stats)
            if stats.weight_max <= 0:  # all weights zero (indicator, peer worse everywhere): nothing to learn, and
                self.distill_skipped_zero_weight += 1  # a step would still move the actor by Adam's momentum
                continue
            self.optimizer.zero_grad()
            (loss * settings.loss_coef).backward()
            if max_grad_norm is not None:  # the algorithm's own clipping, as its own steps get
                th.nn.utils.clip_grad_norm_(actor, max_grad_norm)
            self.optimizer.step()
            self.last_phase_steps += 1
        self.model.policy.set_training_mode(False)
        if not collected:
            return None
        keys = DistillStats.__dataclass_fields__
        return DistillStats(**{k: float(np.mean([getattr(s, k) for s in collected])) for k in keys})

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, n_episodes: int) -> EvalResult:
        """Deterministic episodes on the student's own eval env, with normalisation frozen at its current stats."""
        if self._eval_env is None:
            # up to 5 env copies: episodes run side by side, deterministic split of the episodes among copies
            self._eval_env = make_eval_env(self._eval_env_id, self._eval_seed, self.train_env, min(n_episodes, 5))
        sync_normalization(self.train_env, self._eval_env)
        return run_episodes(self.model, self._eval_env, n_episodes)

    def close(self) -> None:
        if self._eval_env is not None:
            self._eval_env.close()
        self.train_env.close()

    # ------------------------------------------------------------------ checkpoints
    def replay_buffer_state(self) -> dict[str, Any] | None:
        """The replay buffer as plain data (off-policy students); None: this student has none."""
        return None

    def load_replay_buffer_state(self, state: dict[str, Any]) -> None:  # noqa: B027 - a hook, empty by default
        """Restore what :meth:`replay_buffer_state` returned (nothing to do without a replay buffer)."""

    def _own_optimizer(self) -> bool:
        return self.optimizer is not None and self.distill_settings is not None and \
            self.distill_settings.optimizer == "own"

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this student exactly, as plain data: the SB3 algorithm and the
        environments (:mod:`dpd.state`) plus this student's own counters, sampler and distillation optimiser."""
        from dpd.state import algorithm_state, gen_state, vec_env_state

        return {
            **algorithm_state(self.model),
            # a shared optimiser is the model's own and is saved with it
            "distill_optimizer": self.optimizer.state_dict() if self.optimizer is not None and self._own_optimizer()
            else None,
            "student": {"iteration": self.iteration, "rng": gen_state(self._rng),
                        "skipped_nonfinite": self.distill_skipped_nonfinite,
                        "skipped_zero_weight": self.distill_skipped_zero_weight,
                        "step_carry": self._step_carry.carry,
                        "adaptive": self.adaptive.state() if self.adaptive is not None else None},
            "train_env": vec_env_state(self.train_env),
            "eval_env": vec_env_state(self._eval_env) if self._eval_env is not None else None,
            "eval_env_copies": self._eval_env.num_envs if self._eval_env is not None else 0,
        }

    def load_model_state(self, state: dict[str, Any]) -> None:
        """First half of a restore, BEFORE :meth:`setup`: networks, optimisers, counters, last observation."""
        from dpd.state import load_algorithm_state

        load_algorithm_state(self.model, state)
        if self._own_optimizer() and state["distill_optimizer"] is not None:
            assert self.optimizer is not None
            self.optimizer.load_state_dict(state["distill_optimizer"])

    def load_env_state(self, state: dict[str, Any]) -> None:
        """Second half, AFTER :meth:`setup`: episode buffers, environments (train and eval), sampler RNG."""
        from dpd.state import load_episode_buffers, set_gen_state, set_vec_env_state

        load_episode_buffers(self.model, state)
        set_vec_env_state(self.train_env, state["train_env"])
        if state["eval_env"] is not None:
            self._eval_env = make_eval_env(self._eval_env_id, self._eval_seed, self.train_env, state["eval_env_copies"])
            set_vec_env_state(self._eval_env, state["eval_env"])
        own = state["student"]
        self.iteration = own["iteration"]
        self.distill_skipped_nonfinite = own["skipped_nonfinite"]
        self.distill_skipped_zero_weight = own.get("skipped_zero_weight", 0)
        self._step_carry.carry = float(own.get("step_carry", 0.0))
        if self.adaptive is not None and own.get("adaptive") is not None:
            self.adaptive.load(own["adaptive"])
        set_gen_state(self._rng, own["rng"])
