"""Students over SB3's off-policy algorithms (DDPG, TD3, SAC).

One iteration = ``iteration_steps`` env steps of SB3's own ``collect_rollouts`` + ``train`` (exactly what
``OffPolicyAlgorithm.learn`` does, in chunks), then ``distill_ratio`` distillation steps per RL gradient step
taken in it (paper §4.2 / the authors' DDPG: one distillation step per RL step).

- Peer states: the most recent ``distill_window`` transitions of the replay buffer (raw observations: SB3 stores
  the un-normalised ones), wrapping around the ring correctly; not the whole buffer as the authors' code did.
- Value of a state: the value the algorithm's own actor loss maximises, at the student's own deterministic action:
  DDPG/TD3 ``Q1(s, mu(s))``; SAC ``min_i Q_i(s, tanh(mean(s)))``, a SOFT value: it holds ent_coef x the policy's
  future entropy, so SAC's xi is ``own_critic`` (one critic judges both actions; two critics would differ by their
  entropy coefficients) and ``two_critics`` is refused (``ResolvedDistill.validate``).
- Actor: DDPG/TD3 the whole actor MLP; SAC the latent network and the mean head (not the log-std head).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.sac.policies import SACPolicy
from stable_baselines3.td3.policies import TD3Policy

from dpd.students.base import Student
from dpd.students.outputs import deterministic_outputs, q_estimates, value_estimates


class OffPolicyStudent(Student):
    model: OffPolicyAlgorithm

    #: RL gradient steps taken in the last iteration
    last_gradient_steps: int = 0

    def _iterate(self, callback: BaseCallback) -> bool:
        m = self.model
        assert m.env is not None and m.replay_buffer is not None
        start = m.num_timesteps
        self.last_gradient_steps = 0
        while m.num_timesteps - start < self.iteration_steps and m.num_timesteps < self.budget:
            rollout = m.collect_rollouts(
                m.env,
                train_freq=m.train_freq,  # type: ignore[arg-type]
                action_noise=m.action_noise,
                callback=callback,
                learning_starts=m.learning_starts,
                replay_buffer=m.replay_buffer,
                log_interval=None,  # the trainer writes one log row per iteration
            )
            if not rollout.continue_training:
                return False
            if m.num_timesteps > 0 and m.num_timesteps > m.learning_starts:
                steps = m.gradient_steps if m.gradient_steps >= 0 else rollout.episode_timesteps
                if steps > 0:
                    m.train(batch_size=m.batch_size, gradient_steps=steps)
                    self.last_gradient_steps += steps
        return True

    def iteration_gradient_steps(self) -> int | None:
        """The RL gradient steps of the last iteration: a phase is ``distill_ratio`` steps per RL gradient step
        (the paper's one per step; :meth:`dpd.distillation.Distiller.scheduled_steps`)."""
        return self.last_gradient_steps

    def raw_q_values(self, obs: th.Tensor, actions: th.Tensor) -> th.Tensor:
        """(B,) Q(s, a) for actions in the policy's units ([-1, 1]), raw return units."""
        return q_estimates(self.model.policy, obs, actions) * self.reward_scale()

    def recent_states(self) -> np.ndarray:
        """The last ``window`` raw states of the replay buffer (oldest first), across the ring's wrap-around."""
        rb = self.model.replay_buffer
        assert rb is not None
        stored = rb.buffer_size if rb.full else rb.pos
        positions = min(stored, -(-self.recorder.window // rb.n_envs))  # ceil(window / n_envs) rows of n_envs
        idx = np.arange(rb.pos - positions, rb.pos) % rb.buffer_size
        states = rb.observations[idx].reshape(-1, *rb.obs_shape)
        return np.asarray(states[-self.recorder.window :], dtype=np.float32)

    def policy_outputs(self, obs: th.Tensor) -> th.Tensor:
        return deterministic_outputs(self.model.policy, obs)

    def value_estimates(self, obs: th.Tensor) -> th.Tensor:
        # SAC: a soft value (future entropy bonus included): compared only under one critic (own_critic)
        return value_estimates(self.model.policy, obs)

    def shared_optimizer(self) -> th.optim.Optimizer:
        optimizer = self.model.actor.optimizer  # type: ignore[attr-defined]
        assert isinstance(optimizer, th.optim.Optimizer)
        return optimizer

    def actor_parameters(self) -> list[th.nn.Parameter]:
        policy = self.model.policy
        if isinstance(policy, SACPolicy):
            modules: list[th.nn.Module] = [policy.actor.latent_pi, policy.actor.mu]
        else:
            assert isinstance(policy, TD3Policy)
            modules = [policy.actor.mu]
        if not policy.share_features_extractor:
            modules.append(policy.actor.features_extractor)
        return [p for module in modules for p in module.parameters()]

    def dump_logs(self) -> None:
        self.model.dump_logs()

    # the replay buffer is part of a checkpoint only when asked (it is large): without it a resumed run refills it
    _BUFFER_FIELDS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")

    def replay_buffer_state(self) -> dict[str, Any] | None:
        from dpd.state import plain

        rb = self.model.replay_buffer
        assert rb is not None
        return {"pos": rb.pos, "full": rb.full,
                **{k: plain(getattr(rb, k)) for k in self._BUFFER_FIELDS if getattr(rb, k, None) is not None}}

    def load_replay_buffer_state(self, state: dict[str, Any]) -> None:
        from dpd.state import arr

        rb = self.model.replay_buffer
        assert rb is not None
        rb.pos, rb.full = int(state["pos"]), bool(state["full"])
        for k in self._BUFFER_FIELDS:
            if k in state:
                getattr(rb, k)[...] = arr(state[k])
