"""Students over SB3's on-policy algorithms (PPO, A2C): Algorithm 1 lines 3-4 are SB3's own
``collect_rollouts`` and ``train``; the actor is the policy-mean (or logit) network."""

from __future__ import annotations

import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy

from dpd.internals import update_progress
from dpd.students.base import Student
from dpd.students.outputs import deterministic_outputs, value_estimates


class OnPolicyStudent(Student):
    model: OnPolicyAlgorithm

    @property
    def policy(self) -> ActorCriticPolicy:
        policy = self.model.policy
        assert isinstance(policy, ActorCriticPolicy)
        return policy

    def _iterate(self, callback: BaseCallback) -> bool:
        m = self.model
        assert m.env is not None
        if not m.collect_rollouts(m.env, callback, m.rollout_buffer, n_rollout_steps=m.n_steps):
            return False
        update_progress(m, m.num_timesteps, self.budget)
        m.train()
        return True

    def policy_outputs(self, obs: th.Tensor) -> th.Tensor:
        return deterministic_outputs(self.policy, obs)

    def action_std(self, obs: th.Tensor) -> th.Tensor | None:
        if self.discrete or not hasattr(self.policy, "log_std"):
            return None
        # SB3's diagonal Gaussian: one std per action dim, the same in every state
        return self.policy.log_std.exp().expand(obs.shape[0], -1)

    def shared_optimizer(self) -> th.optim.Optimizer:
        return self.policy.optimizer

    def value_estimates(self, obs: th.Tensor) -> th.Tensor:
        return value_estimates(self.policy, obs)

    def actor_parameters(self) -> list[th.nn.Parameter]:
        # Policy-mean network only: the value net and log_std are left to the RL objective. A features
        # extractor shared with the critic is left alone too (it would move the critic).
        p = self.policy
        modules: list[th.nn.Module] = [p.mlp_extractor.policy_net, p.action_net]
        if not p.share_features_extractor:
            modules.append(p.pi_features_extractor)
        return [param for module in modules for param in module.parameters()]

    def dump_logs(self) -> None:
        self.model.dump_logs(self.iteration)
