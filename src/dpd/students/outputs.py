"""What a policy outputs on a batch of NORMALISED observations: its deterministic action (or logits) and its value.

One definition for both students (distillation and xi) and the analysis of saved models (`dpd analyze`).
"""

from __future__ import annotations

import torch as th
from stable_baselines3.common.distributions import CategoricalDistribution, DiagGaussianDistribution
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.sac.policies import SACPolicy
from stable_baselines3.td3.policies import TD3Policy


def deterministic_outputs(policy: BasePolicy, obs: th.Tensor) -> th.Tensor:
    """(B, A) deterministic actions (continuous, in the policy's own action units) or (B, n) logits (discrete).

    PPO/A2C: the Gaussian mean (not a sample, not clipped); TD3/DDPG: mu(s) in [-1, 1] (tanh output);
    SAC: tanh(mean) in [-1, 1]. Differentiable (distillation needs the gradient).
    """
    if isinstance(policy, ActorCriticPolicy):
        dist = policy.get_distribution(obs)
        if isinstance(dist, DiagGaussianDistribution):
            return dist.distribution.mean
        if isinstance(dist, CategoricalDistribution):
            return dist.distribution.logits
        raise TypeError(f"distillation does not support {type(dist).__name__} policies")
    if isinstance(policy, SACPolicy):
        return policy.actor(obs, deterministic=True)
    if isinstance(policy, TD3Policy):
        return policy.actor(obs)
    raise TypeError(f"dpd does not support {type(policy).__name__}")


def value_estimates(policy: BasePolicy, obs: th.Tensor) -> th.Tensor:
    """(B,) value estimates in the model's own (possibly reward-normalised) units, without gradient.

    PPO/A2C: the critic V(s); TD3/DDPG: Q1(s, mu(s)); SAC: min_i Q_i(s, tanh(mean)), a soft Q (it holds ent_coef x
    the policy's future entropy: two SAC students' values differ by their entropy coefficients, so SAC's xi judges
    both actions with one critic, ``xi_estimator=own_critic``).
    """
    with th.no_grad():
        if isinstance(policy, ActorCriticPolicy):
            return policy.predict_values(obs).squeeze(-1)
        if isinstance(policy, SACPolicy):
            q = th.cat(policy.critic(obs, policy.actor(obs, deterministic=True)), dim=1)
            return q.min(dim=1).values
        if isinstance(policy, TD3Policy):
            return policy.critic.q1_forward(obs, policy.actor(obs)).squeeze(-1)
    raise TypeError(f"dpd does not support {type(policy).__name__}")


def q_estimates(policy: BasePolicy, obs: th.Tensor, actions: th.Tensor) -> th.Tensor:
    """(B,) an off-policy critic's Q(s, a) on NORMALISED obs and actions in the policy's own units ([-1, 1], as
    :func:`deterministic_outputs` gives them), in the model's own units, without gradient. DDPG/TD3: Q1 (the one
    its actor maximises); SAC: min_i Q_i (as :func:`value_estimates`). ``Q(s, mu(s))`` equals ``value_estimates``."""
    with th.no_grad():
        if isinstance(policy, SACPolicy):
            return th.cat(policy.critic(obs, actions), dim=1).min(dim=1).values
        if isinstance(policy, TD3Policy):
            return policy.critic.q1_forward(obs, actions).squeeze(-1)
    raise TypeError(f"{type(policy).__name__} has no Q critic (own_critic needs an off-policy algorithm)")
