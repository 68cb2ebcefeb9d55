"""PPO for a pack of N learners of one task in one process, mirroring Stable-Baselines3's PPO (continuous actions).

One learner is SB3's ``PPO("MlpPolicy", env)`` on a ``VecNormalize``-d single env with dpd's paper preset
(``presets/ppo_paper.yaml``): a diagonal Gaussian policy (state-independent ``log_std``, initialised to 0), policy
net 64-64 tanh, value net 64-64-64 tanh (separate networks, orthogonal init: gain sqrt(2) inside, 0.01 on the action
mean, 1 on the value; biases 0), 2048 steps per rollout, 10 epochs of minibatches of 64, Adam (eps 1e-5, SB3's
default for PPO) at 3e-4 annealed linearly to 0, clip 0.2, gamma 0.99, lambda 0.95, ent_coef 0, vf_coef 0.5,
max_grad_norm 0.5. What one rollout and update compute (``stable_baselines3/common/on_policy_algorithm.py``,
``common/buffers.py``, ``ppo/ppo.py``; shapes per learner: T = n_steps, D obs dims, A action dims)::

    per step:  a ~ N(mu(o), exp(log_std)); the env gets clip(a, low, high), the rollout keeps a (unclipped)
               r = VecNormalize's reward (raw / sqrt(ret_var + 1e-8), clip 10); at a time limit (truncated, not
               terminated) r += gamma * V(normalised terminal observation)  (SB3's timeout bootstrap, GH#633)
    GAE:       delta_t = r_t + gamma * V_{t+1} * (1 - start_{t+1}) - V_t;  A_t = delta_t + gamma*lambda*(1-start_{t+1})*A_{t+1}
               (after the last step: the value of the new observation and 1 - done); returns R = A + V
    n_epochs x (T / batch) minibatches, the order a permutation of the T steps drawn per epoch:
               A_mb normalised by its mean and UNBIASED std (+1e-8); ratio = exp(logp - logp_old)
               loss = -mean(min(A ratio, A clip(ratio, 1-c, 1+c)))
                      + ent_coef * -mean(entropy) + vf_coef * mean((R - V_pred)^2)
               V_pred = V, or V_old + clip(V - V_old, -c_vf, c_vf) with clip_range_vf
               gradients of all parameters (policy, value, log_std) scaled by min(1, max_grad_norm / (norm + 1e-6))
               (torch's clip_grad_norm_), then one Adam step at lr(progress_remaining)

The learning rate follows SB3's schedule: ``progress_remaining = 1 - num_timesteps / total`` taken after each rollout
(``total`` = the env steps the current ``learn`` call ends at), ``lr = learning_rate * progress_remaining`` when
``linear_lr`` (dpd's ``lin_3e-4``), else constant.

The update (:func:`ppo_update`, :func:`ppo_epochs`) is a pure function of one learner, jitted and mapped over the
pack (:func:`dpd.pack.batching.per_learner`); a rollout is collected on the host (the envs are Gymnasium's own, on
the CPU, stepped together) with one jitted call per step acting for all N learners, and goes to the device once per
rollout.

Known differences from SB3 (each also noted where it happens):
  - random numbers: actions are sampled and minibatch permutations drawn with ``jax.random`` (a key per learner),
    SB3 uses torch's and NumPy's global streams: the same laws, other draws (the parity tests pass SB3's
    permutations in through :func:`ppo_epochs`);
  - initial weights are drawn with NumPy (torch's orthogonal law: QR of a standard normal matrix, sign-corrected);
  - a rollout's observations, actions, rewards, values and log-probabilities are float32 (as SB3's RolloutBuffer);
    normalisation statistics are float64 on the host, as VecNormalize; the reward with its timeout bootstrap is
    summed in float64 then cast (SB3: the same);
  - Adam's step is optax's ``scale_by_adam`` (m_hat / (sqrt(v_hat) + eps)), torch's is the same formula arranged
    as lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps): equal up to float32 rounding;
  - ``n_steps`` must be a multiple of ``batch_size`` (SB3 allows a last short minibatch with a warning);
    ``target_kl`` (early stop) and gSDE are not implemented (the paper preset uses neither); only Box actions;
  - no Monitor / logger / callbacks; ``episode_returns`` keeps each learner's raw episode returns.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections import defaultdict
from functools import partial
from typing import Any, NamedTuple

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import optax

from dpd.errors import DPDUserError
from dpd.pack.batching import per_learner
from dpd.pack.checks import check_config, check_seeds, check_steps, make_envs
from dpd.pack.ddpg import Params, mlp, set_slot
from dpd.pack.running import normalized, running_std, running_update

LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))  # torch.distributions.Normal.log_prob's constant, as torch writes it


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """PPO hyperparameters; the defaults are dpd's paper preset (``presets/ppo_paper.yaml``)."""

    pi_arch: tuple[int, ...] = (64, 64)
    vf_arch: tuple[int, ...] = (64, 64, 64)
    n_steps: int = 2048
    batch_size: int = 64
    n_epochs: int = 10
    learning_rate: float = 3e-4
    linear_lr: bool = True  # lin_3e-4: lr x progress_remaining
    clip_range: float = 0.2
    clip_range_vf: float | None = None
    gamma: float = 0.99
    gae_lambda: float = 0.95
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    normalize_advantage: bool = True
    log_std_init: float = 0.0
    adam_eps: float = 1e-5  # SB3's ActorCriticPolicy sets Adam's eps to 1e-5 (torch's default is 1e-8)
    normalize: bool = True  # VecNormalize's observations
    normalize_reward: bool = True  # ... and rewards (the preset's normalize: true covers both)
    clip_obs: float = 10.0
    clip_reward: float = 10.0
    norm_eps: float = 1e-8


class Policy(NamedTuple):
    """One ActorCriticPolicy (or N stacked on a leading axis): pi the mean-action MLP (tanh inside, linear out),
    vf the value MLP (tanh inside, linear out to 1), log_std (A,)."""

    pi: Params
    vf: Params
    log_std: jax.Array


class Rollout(NamedTuple):
    """One learner's rollout of T steps (a pack's: a leading N axis). obs (T, D) normalised as the policy saw them,
    actions (T, A) unclipped samples, rewards (T,) normalised (timeout bootstrap included), episode_starts (T,)
    1.0 where obs is an episode's first, values (T,) and log_probs (T,) of the policy that acted."""

    obs: jax.Array
    actions: jax.Array
    rewards: jax.Array
    episode_starts: jax.Array
    values: jax.Array
    log_probs: jax.Array


def init_orthogonal(rng: np.random.Generator, sizes: list[int], gain_hidden: float,
                    gain_out: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """SB3's ``ortho_init``: torch's ``orthogonal_`` (QR of a standard normal (out, in) matrix, columns times the
    sign of R's diagonal) times the gain, biases 0. NumPy on the host; weights (in, out) float32."""
    params = []
    layers = list(itertools.pairwise(sizes))
    for k, (fan_in, fan_out) in enumerate(layers):
        rows, cols = fan_out, fan_in  # torch's weight is (out, in)
        flat = rng.standard_normal((rows, cols))
        if rows < cols:
            flat = flat.T
        q, r = np.linalg.qr(flat)
        q = q * np.sign(np.diag(r))
        if rows < cols:
            q = q.T
        gain = gain_out if k == len(layers) - 1 else gain_hidden
        params.append(((gain * q).T.astype(np.float32), np.zeros(fan_out, np.float32)))
    return params


def tanh_mlp(params: Params, x: jax.Array) -> jax.Array:
    """tanh between layers, linear output; x (..., in) -> (..., out)."""
    return mlp(params, x, jnp.tanh)


def value_fn(policy: Policy, obs: jax.Array) -> jax.Array:
    """V(obs); (..., D) normalised -> (...)."""
    return tanh_mlp(policy.vf, obs)[..., 0]


def log_prob_fn(mean: jax.Array, log_std: jax.Array, actions: jax.Array) -> jax.Array:
    """Diagonal Gaussian log-density summed over the action dims, written as torch's Normal.log_prob; (..., A) -> (...)."""
    std = jnp.ones_like(mean) * jnp.exp(log_std)
    return jnp.sum(-((actions - mean) ** 2) / (2 * std**2) - jnp.log(std) - LOG_SQRT_2PI, axis=-1)


def entropy_fn(log_std: jax.Array, batch_shape: tuple[int, ...]) -> jax.Array:
    """torch's Normal.entropy (0.5 + 0.5 log(2 pi) + log std) summed over the action dims, one per batch row."""
    ent = 0.5 + 0.5 * math.log(2 * math.pi) + log_std
    return jnp.broadcast_to(jnp.sum(ent), batch_shape)


def act_fn(policy: Policy, obs: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """One learner's step: obs (D,) normalised -> (action (A,) sampled, value (), log_prob (), next key)."""
    key, sub = jax.random.split(key)
    mean = tanh_mlp(policy.pi, obs)
    action = mean + jnp.exp(policy.log_std) * jax.random.normal(sub, mean.shape)
    return action, value_fn(policy, obs), log_prob_fn(mean, policy.log_std, action), key


def gae(rollout: Rollout, last_value: jax.Array, last_done: jax.Array, gamma: float,
        lam: float) -> tuple[jax.Array, jax.Array]:
    """SB3's ``RolloutBuffer.compute_returns_and_advantage`` for one learner: (advantages (T,), returns (T,)).

    last_value: V of the observation after the rollout; last_done: 1.0 if the rollout's last step ended an episode."""
    next_non_terminal = jnp.concatenate([1.0 - rollout.episode_starts[1:], (1.0 - last_done)[None]])
    next_values = jnp.concatenate([rollout.values[1:], last_value[None]])
    deltas = rollout.rewards + gamma * next_values * next_non_terminal - rollout.values

    def back(carry: jax.Array, x: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        delta, nnt = x
        carry = delta + gamma * lam * nnt * carry
        return carry, carry

    _, adv = jax.lax.scan(back, jnp.zeros(()), (deltas, next_non_terminal), reverse=True)
    return adv, adv + rollout.values


class Batch(NamedTuple):
    """A minibatch (B rows) as SB3's RolloutBufferSamples: obs (B, D), actions (B, A), old_values, old_log_prob,
    advantages, returns (B,)."""

    obs: jax.Array
    actions: jax.Array
    old_values: jax.Array
    old_log_prob: jax.Array
    advantages: jax.Array
    returns: jax.Array


def ppo_loss(cfg: PPOConfig, policy: Policy, mb: Batch, clip_range: jax.Array) -> tuple[jax.Array, jax.Array]:
    """PPO.train's loss on one minibatch. Returns (loss, stats (5,): policy loss, value loss, entropy loss, clip
    fraction, approx KL)."""
    mean = tanh_mlp(policy.pi, mb.obs)
    log_prob = log_prob_fn(mean, policy.log_std, mb.actions)
    values = value_fn(policy, mb.obs)
    adv = mb.advantages
    if cfg.normalize_advantage and adv.shape[0] > 1:  # SB3: not for minibatches of 1 (GH#325)
        adv = (adv - adv.mean()) / (jnp.std(adv, ddof=1) + 1e-8)  # torch's std is the unbiased one
    ratio = jnp.exp(log_prob - mb.old_log_prob)
    policy_loss = -jnp.mean(jnp.minimum(adv * ratio, adv * jnp.clip(ratio, 1 - clip_range, 1 + clip_range)))
    if cfg.clip_range_vf is None:
        values_pred = values
    else:  # SB3: relative to the rollout's values (depends on the reward scale)
        values_pred = mb.old_values + jnp.clip(values - mb.old_values, -cfg.clip_range_vf, cfg.clip_range_vf)
    value_loss = jnp.mean((mb.returns - values_pred) ** 2)
    entropy_loss = -jnp.mean(entropy_fn(policy.log_std, log_prob.shape))
    loss = policy_loss + cfg.ent_coef * entropy_loss + cfg.vf_coef * value_loss
    log_ratio = jax.lax.stop_gradient(log_prob - mb.old_log_prob)
    stats = jnp.stack([policy_loss, value_loss, entropy_loss,
                       jnp.mean((jnp.abs(ratio - 1) > clip_range).astype(jnp.float32)),
                       jnp.mean((jnp.exp(log_ratio) - 1) - log_ratio)])
    return loss, jax.lax.stop_gradient(stats)


def clip_grad_norm(grads: Any, max_norm: float) -> Any:
    """torch's ``clip_grad_norm_``: every gradient times min(1, max_norm / (global L2 norm + 1e-6)) (always
    multiplied, as torch does; optax's clip_by_global_norm has no 1e-6 and skips the product below the bound)."""
    leaves = jax.tree.leaves(grads)
    norm = jnp.linalg.norm(jnp.stack([jnp.linalg.norm(g.ravel()) for g in leaves]))
    coef = jnp.minimum(max_norm / (norm + 1e-6), 1.0)
    return jax.tree.map(lambda g: g * coef, grads)


def make_adam(cfg: PPOConfig) -> optax.GradientTransformation:
    """Adam's direction (betas 0.9, 0.999, eps ``cfg.adam_eps`` outside the sqrt, like torch); the learning rate is
    applied by the update, as it changes with progress."""
    return optax.scale_by_adam(b1=0.9, b2=0.999, eps=cfg.adam_eps)


def ppo_epochs(cfg: PPOConfig, adam: optax.GradientTransformation, policy: Policy, opt_state: Any, rollout: Rollout,
               last_value: jax.Array, last_done: jax.Array, lr: jax.Array, clip_range: jax.Array,
               perms: jax.Array) -> tuple[Policy, Any, jax.Array]:
    """GAE then PPO.train for ONE learner, with the minibatch order given: perms (n_epochs, T), each row a
    permutation of range(T) (SB3's ``np.random.permutation`` per epoch, in its ``RolloutBuffer.get``).

    Returns (policy, opt_state, stats (n_epochs * T / batch, 5): per minibatch, see :func:`ppo_loss`)."""
    advantages, returns = gae(rollout, last_value, last_done, cfg.gamma, cfg.gae_lambda)
    n_steps = rollout.rewards.shape[0]
    n_mb = n_steps // cfg.batch_size
    idx = perms.reshape(perms.shape[0] * n_mb, cfg.batch_size)  # minibatch k of epoch e is row e * n_mb + k

    def step(carry: tuple[Policy, Any], rows: jax.Array) -> tuple[tuple[Policy, Any], jax.Array]:
        pol, opt = carry
        mb = Batch(rollout.obs[rows], rollout.actions[rows], rollout.values[rows], rollout.log_probs[rows],
                   advantages[rows], returns[rows])
        grads, stats = jax.grad(partial(ppo_loss, cfg), has_aux=True)(pol, mb, clip_range)
        grads = clip_grad_norm(grads, cfg.max_grad_norm)
        direction, opt = adam.update(grads, opt, pol)
        pol = jax.tree.map(lambda p, d: p - lr * d, pol, direction)
        return (pol, opt), stats

    (policy, opt_state), stats = jax.lax.scan(step, (policy, opt_state), idx)
    return policy, opt_state, stats


def ppo_update(cfg: PPOConfig, adam: optax.GradientTransformation, policy: Policy, opt_state: Any, rollout: Rollout,
               last_value: jax.Array, last_done: jax.Array, lr: jax.Array, clip_range: jax.Array,
               key: jax.Array) -> tuple[Policy, Any, jax.Array, jax.Array]:
    """:func:`ppo_epochs` with the epochs' permutations drawn from ``key`` (one learner; vmapped over the pack).
    Returns (policy, opt_state, stats, next key)."""
    n_steps = rollout.rewards.shape[0]
    key, *keys = jax.random.split(key, cfg.n_epochs + 1)
    perms = jnp.stack([jax.random.permutation(k, n_steps) for k in keys])
    policy, opt_state, stats = ppo_epochs(cfg, adam, policy, opt_state, rollout, last_value, last_done, lr,
                                          clip_range, perms)
    return policy, opt_state, stats, key


class PPOPack:
    """N PPO learners of one Gymnasium task (continuous actions), one per seed, trained together in this process.

    ``learn(steps)`` gives every learner ``steps`` env steps, rounded up to whole rollouts as SB3 does. ``profile``
    holds the seconds spent in env stepping, acting, updates and normalisation / staging; ``compile_s`` the jit
    compile time (``compile()``, called by the first ``learn`` if not before). Per learner, VecNormalize's
    statistics: ``obs_mean`` / ``obs_var`` (N, D), ``ret_var`` (N,) and the running discounted returns."""

    def __init__(self, env_id: str, seeds: list[int], cfg: PPOConfig | None = None,
                 env_kwargs: dict[str, Any] | None = None, window: int = 1000) -> None:
        """:param window: the most recent raw observations each learner keeps (``distill_window``: the states its peer
            distils on, as dpd's ``RecentStates`` keeps them: reset observations included)."""
        self.cfg = cfg = cfg or PPOConfig()
        check_seeds(seeds)
        check_config(cfg)
        if cfg.n_steps % cfg.batch_size:
            raise DPDUserError(f"the PPO pack needs n_steps ({cfg.n_steps}) to be a multiple of batch_size "
                               f"({cfg.batch_size})")
        self.n = n = len(seeds)
        self.envs = make_envs(env_id, n, env_kwargs)
        space = self.envs[0].action_space
        if not isinstance(space, gym.spaces.Box):
            for env in self.envs:
                env.close()
            raise DPDUserError(f"{env_id} has {space}; the PPO pack needs continuous actions (a Box)")
        self.low, self.high = space.low.astype(np.float64), space.high.astype(np.float64)
        self.obs_dim = int(np.prod(self.envs[0].observation_space.shape or ()))
        self.act_dim = int(np.prod(space.shape))
        self.adam = make_adam(cfg)

        def stacked(sizes: list[int], gain_out: float, stream: int) -> Params:
            nets = [init_orthogonal(np.random.default_rng([s, stream]), sizes, math.sqrt(2), gain_out) for s in seeds]
            return [tuple(jnp.asarray(np.stack(x)) for x in zip(*layers, strict=True))  # type: ignore[misc]
                    for layers in zip(*nets, strict=True)]

        self.policy = Policy(stacked([self.obs_dim, *cfg.pi_arch, self.act_dim], 0.01, 1),
                             stacked([self.obs_dim, *cfg.vf_arch, 1], 1.0, 2),
                             jnp.full((n, self.act_dim), cfg.log_std_init, jnp.float32))
        self.opt_state = jax.vmap(self.adam.init)(self.policy)
        keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
        self.act_keys, self.update_keys = keys, jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
        self.num_timesteps = 0
        # VecNormalize's RunningMeanStd per learner, float64 on the host (count starts at 1e-4; the pack's envs step
        # in lock-step, so one count serves all learners)
        self.obs_mean, self.obs_var, self.obs_count = np.zeros((n, self.obs_dim)), np.ones((n, self.obs_dim)), 1e-4
        self.ret_mean, self.ret_var, self.ret_count = np.zeros(n), np.ones(n), 1e-4
        self.returns = np.zeros(n)  # VecNormalize.returns: the discounted return so far, per learner
        # dpd's RecentStates per learner: the last ``window`` raw observations and the running std of the discounted
        # raw return (what xi_scale=return_std divides by), whether or not rewards are normalised
        self.window = int(window)
        self.recent = np.zeros((n, self.window, self.obs_dim), np.float32)
        self.recent_next = self.recent_count = 0
        self.raw_ret_mean, self.raw_ret_var, self.raw_ret_count = np.zeros(n), np.ones(n), 1e-4
        self.raw_returns = np.zeros(n)
        self.episode_lengths: list[list[int]] = [[] for _ in seeds]
        self._ep_length = np.zeros(n, dtype=np.int64)
        raw = np.stack([env.reset(seed=s)[0] for env, s in zip(self.envs, seeds, strict=True)]).reshape(n, -1)
        self._record(raw)
        self._update_obs_rms(raw.astype(np.float64))  # VecNormalize.reset counts the first observations
        self.obs = self.normalize(raw)  # what the policy sees next (normalised with the statistics of that step)
        self.episode_starts = np.ones(n, np.float32)  # SB3's _last_episode_starts
        self.episode_returns: list[list[float]] = [[] for _ in seeds]
        self._ep_return = np.zeros(n)
        self.profile: dict[str, float] = defaultdict(float)
        self.compile_s: float | None = None
        self.last_stats: np.ndarray | None = None  # (N, n_epochs * minibatches, 5) of the last update
        self._total = 0
        # per_learner, not vmap: a learner's numbers do not depend on its pack's size (batching.py)
        self._act = jax.jit(per_learner(act_fn))
        self._value = jax.jit(per_learner(value_fn))
        self._mean = jax.jit(per_learner(tanh_mlp))  # the deterministic actions (act)
        self._update = jax.jit(per_learner(partial(ppo_update, cfg, self.adam),
                                           in_axes=(0, 0, 0, 0, 0, None, None, 0)), donate_argnums=(0, 1))

    def _record(self, raw: np.ndarray) -> None:
        """RecentStates._record: every learner's new raw observation (N, D) into its window."""
        self.recent[:, self.recent_next] = raw
        self.recent_next = (self.recent_next + 1) % self.window
        self.recent_count = min(self.recent_count + 1, self.window)

    def recent_states(self, i: int) -> np.ndarray:
        """Learner ``i``'s last ``min(count, window)`` raw observations, oldest first (RecentStates.recent_states)."""
        ring = self.recent[i]
        if self.recent_count < self.window:
            return ring[: self.recent_count].copy()
        return np.concatenate([ring[self.recent_next:], ring[: self.recent_next]])

    def recent_windows(self) -> tuple[np.ndarray, np.ndarray]:
        """Every learner's window, oldest first, (N, W, D) raw, and valid (W,) (False on rows not yet filled)."""
        order = (self.recent_next + np.arange(self.window)) % self.window
        valid = np.arange(self.window) >= self.window - self.recent_count
        return self.recent[:, order], valid

    def return_std(self) -> np.ndarray:
        """(N,) RecentStates.return_std: the running std of each learner's discounted raw return (1.0 before data)."""
        return running_std(self.raw_ret_var, self.raw_ret_count)

    def reward_scale(self) -> np.ndarray:
        """(N,) what a value is multiplied by to be in raw return units (dpd.envs.return_scale)."""
        if not self.cfg.normalize_reward:
            return np.ones(self.n)
        return np.sqrt(self.ret_var + self.cfg.norm_eps)

    def normalize_one(self, i: int, raw: np.ndarray) -> np.ndarray:
        """Learner ``i``'s normalisation of raw observations (B, D) -> float32."""
        if not self.cfg.normalize:
            return raw.astype(np.float32)
        return normalized(raw, self.obs_mean[i], self.obs_var[i], self.cfg.norm_eps, self.cfg.clip_obs)

    def _update_obs_rms(self, obs: np.ndarray) -> None:
        self.obs_mean, self.obs_var, self.obs_count = running_update(self.obs_mean, self.obs_var, self.obs_count, obs)

    def _update_ret_rms(self, ret: np.ndarray) -> None:
        self.ret_mean, self.ret_var, self.ret_count = running_update(self.ret_mean, self.ret_var, self.ret_count, ret)

    def normalize(self, raw: np.ndarray) -> np.ndarray:
        """VecNormalize.normalize_obs per learner in float64, then float32 as SB3's policy takes it: (N, D) -> (N, D)."""
        if not self.cfg.normalize:
            return raw.astype(np.float32)
        return normalized(raw, self.obs_mean, self.obs_var, self.cfg.norm_eps, self.cfg.clip_obs)

    def _normalize_reward(self, rewards: np.ndarray) -> np.ndarray:
        """VecNormalize: update the discounted return's statistics, then reward / sqrt(var + eps), clipped."""
        if not self.cfg.normalize_reward:
            return rewards
        self.returns = self.returns * self.cfg.gamma + rewards
        self._update_ret_rms(self.returns)
        return np.clip(rewards / np.sqrt(self.ret_var + self.cfg.norm_eps), -self.cfg.clip_reward, self.cfg.clip_reward)

    def compile(self) -> float:
        """Compiles acting, the value function and the update (the update on a copy: it donates its inputs)."""
        start = time.perf_counter()
        n, t = self.n, self.cfg.n_steps
        zeros = jnp.zeros((n, self.obs_dim))
        jax.block_until_ready(self._act(self.policy, zeros, self.act_keys))
        jax.block_until_ready(self._value(self.policy, zeros))
        rollout = Rollout(jnp.zeros((n, t, self.obs_dim)), jnp.zeros((n, t, self.act_dim)), jnp.zeros((n, t)),
                          jnp.zeros((n, t)), jnp.zeros((n, t)), jnp.zeros((n, t)))
        copy = partial(jax.tree.map, jnp.copy)
        out = self._update(copy(self.policy), copy(self.opt_state), rollout, jnp.zeros(n), jnp.zeros(n),
                           jnp.float32(0.0), jnp.float32(self.cfg.clip_range), self.update_keys)
        jax.block_until_ready(out)
        self.compile_s = time.perf_counter() - start
        return self.compile_s

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic (mean) actions of all learners, unclipped: (N, D) normalised observations -> (N, A)."""
        return np.asarray(self._mean(self.policy.pi, jnp.asarray(obs)))

    def collect(self) -> tuple[Rollout, np.ndarray, np.ndarray]:
        """One rollout of ``n_steps`` per learner (SB3's ``collect_rollouts``). Returns the rollout (on the device,
        leaves (N, T, ...)), the last observation's values (N,) and dones (N,)."""
        cfg, prof, n, t = self.cfg, self.profile, self.n, self.cfg.n_steps
        st = {"obs": np.zeros((n, t, self.obs_dim), np.float32), "actions": np.zeros((n, t, self.act_dim), np.float32),
              "rewards": np.zeros((n, t), np.float32), "episode_starts": np.zeros((n, t), np.float32),
              "values": np.zeros((n, t), np.float32), "log_probs": np.zeros((n, t), np.float32)}
        dones = np.zeros(n, bool)
        for k in range(t):
            t0 = time.perf_counter()
            out = self._act(self.policy, jnp.asarray(self.obs), self.act_keys)
            actions, values, log_probs, self.act_keys = out
            actions, values, log_probs = np.asarray(actions), np.asarray(values), np.asarray(log_probs)
            clipped = np.clip(actions, self.low, self.high)  # the env gets it clipped, the rollout keeps it raw
            t1 = time.perf_counter()
            prof["act"] += t1 - t0
            results = [env.step(a) for env, a in zip(self.envs, clipped, strict=True)]
            raw = np.stack([r[0] for r in results]).reshape(n, -1).astype(np.float64)
            terminal = raw.copy()  # DummyVecEnv's info["terminal_observation"]
            dones = np.array([r[2] or r[3] for r in results])
            for i in np.flatnonzero(dones):
                raw[i] = np.asarray(self.envs[i].reset()[0]).reshape(-1)
            t2 = time.perf_counter()
            prof["env"] += t2 - t1
            rewards = np.array([r[1] for r in results], np.float64)
            self._ep_return += rewards
            self._ep_length += 1
            self.raw_returns = self.raw_returns * cfg.gamma + rewards
            self.raw_ret_mean, self.raw_ret_var, self.raw_ret_count = running_update(
                self.raw_ret_mean, self.raw_ret_var, self.raw_ret_count, self.raw_returns)
            self.raw_returns[dones] = 0.0
            self._record(raw)
            for i in np.flatnonzero(dones):
                self.episode_returns[i].append(float(self._ep_return[i]))
                self.episode_lengths[i].append(int(self._ep_length[i]))
                self._ep_return[i], self._ep_length[i] = 0.0, 0
            if cfg.normalize:
                self._update_obs_rms(raw)
            new_obs = self.normalize(raw)
            norm_rewards = self._normalize_reward(rewards)
            # SB3's timeout bootstrap (TimeLimit.truncated: truncated and not terminated), the terminal observation
            # normalised with the statistics just updated (VecNormalize normalises infos' terminal_observation)
            timeouts = np.array([r[3] and not r[2] for r in results])
            if timeouts.any():
                t_val = np.asarray(self._value(self.policy, jnp.asarray(self.normalize(terminal))))
                norm_rewards = norm_rewards + cfg.gamma * np.where(timeouts, t_val, 0.0)
            self.returns[dones] = 0.0
            st["obs"][:, k], st["actions"][:, k], st["rewards"][:, k] = self.obs, actions, norm_rewards
            st["episode_starts"][:, k], st["values"][:, k], st["log_probs"][:, k] = self.episode_starts, values, log_probs
            self.obs, self.episode_starts = new_obs, dones.astype(np.float32)
            self.num_timesteps += 1
            prof["buffer+norm"] += time.perf_counter() - t2
        t0 = time.perf_counter()
        last_values = np.asarray(self._value(self.policy, jnp.asarray(self.obs)))
        rollout = Rollout(**{k: jnp.asarray(v) for k, v in st.items()})
        prof["act"] += time.perf_counter() - t0
        return rollout, last_values, dones.astype(np.float32)

    def learn(self, steps: int, total: int | None = None) -> PPOPack:
        """``steps`` more env steps for every learner (whole rollouts), with SB3's collect / train loop.

        :param total: the env steps the learning-rate schedule runs to (SB3's ``_total_timesteps``; default: where
            this call ends). dpd's learners pass their budget, as a Student's ``update_progress`` does."""
        steps = check_steps(steps)
        if self.compile_s is None:
            self.compile()
        cfg = self.cfg
        end = self.num_timesteps + steps
        self._total = total if total is not None else end  # SB3's _total_timesteps: progress is measured to it
        while self.num_timesteps < end:
            rollout, last_values, dones = self.collect()
            progress = 1.0 - self.num_timesteps / self._total  # SB3: updated after the rollout, read by train()
            lr = cfg.learning_rate * progress if cfg.linear_lr else cfg.learning_rate
            t0 = time.perf_counter()
            self.policy, self.opt_state, stats, self.update_keys = self._update(
                self.policy, self.opt_state, rollout, jnp.asarray(last_values), jnp.asarray(dones),
                jnp.float32(lr), jnp.float32(cfg.clip_range), self.update_keys)
            self.last_stats = np.asarray(stats)  # waits for the update
            self.profile["update"] += time.perf_counter() - t0
        return self

    # ------------------------------------------------------------------ one learner's state (checkpoints)
    def learner_state(self, i: int, replay_buffer: bool = False) -> dict[str, Any]:
        """Learner ``i``'s part of the pack as plain NumPy data (networks, Adam, keys, statistics, window, env and
        episode counters; ``replay_buffer`` is for the DDPG pack's signature: PPO keeps no buffer between rollouts)."""
        from dpd.state import gym_env_state

        take = partial(jax.tree.map, lambda x: np.asarray(x[i]))
        return {
            "pack": {"num_timesteps": self.num_timesteps, "obs_count": self.obs_count, "ret_count": self.ret_count,
                     "raw_ret_count": self.raw_ret_count, "recent_next": self.recent_next,
                     "recent_count": self.recent_count},
            "policy": take(self.policy._asdict()), "opt_state": take(self.opt_state),
            "act_key": np.asarray(self.act_keys[i]), "update_key": np.asarray(self.update_keys[i]),
            "obs_mean": self.obs_mean[i].copy(), "obs_var": self.obs_var[i].copy(), "ret_mean": float(self.ret_mean[i]),
            "ret_var": float(self.ret_var[i]), "returns": float(self.returns[i]),
            "raw_ret_mean": float(self.raw_ret_mean[i]), "raw_ret_var": float(self.raw_ret_var[i]),
            "raw_returns": float(self.raw_returns[i]), "recent": self.recent[i].copy(), "obs": self.obs[i].copy(),
            "episode_start": float(self.episode_starts[i]), "ep_return": float(self._ep_return[i]),
            "ep_length": int(self._ep_length[i]), "episode_returns": list(self.episode_returns[i]),
            "episode_lengths": list(self.episode_lengths[i]), "env": gym_env_state(self.envs[i]),
        }

    def load_learner_state(self, i: int, state: dict[str, Any]) -> None:
        """Restore :meth:`learner_state` into slot ``i`` (every slot restored from states alike)."""
        from dpd.state import set_gym_env_state

        pack = state["pack"]
        self.num_timesteps = int(pack["num_timesteps"])
        self.obs_count, self.ret_count = float(pack["obs_count"]), float(pack["ret_count"])
        self.raw_ret_count = float(pack["raw_ret_count"])
        self.recent_next, self.recent_count = int(pack["recent_next"]), int(pack["recent_count"])
        self.policy = Policy(**set_slot(self.policy._asdict(), state["policy"], i))
        self.opt_state = set_slot(self.opt_state, state["opt_state"], i)
        self.act_keys = self.act_keys.at[i].set(jnp.asarray(np.asarray(state["act_key"]).astype(np.uint32)))
        self.update_keys = self.update_keys.at[i].set(jnp.asarray(np.asarray(state["update_key"]).astype(np.uint32)))
        self.obs_mean[i], self.obs_var[i] = state["obs_mean"], state["obs_var"]
        self.ret_mean[i], self.ret_var[i], self.returns[i] = state["ret_mean"], state["ret_var"], state["returns"]
        self.raw_ret_mean[i], self.raw_ret_var[i] = state["raw_ret_mean"], state["raw_ret_var"]
        self.raw_returns[i], self.recent[i], self.obs[i] = state["raw_returns"], state["recent"], state["obs"]
        self.episode_starts[i], self._ep_return[i] = state["episode_start"], state["ep_return"]
        self._ep_length[i] = state["ep_length"]
        self.episode_returns[i] = [float(x) for x in state["episode_returns"]]
        self.episode_lengths[i] = [int(x) for x in state["episode_lengths"]]
        set_gym_env_state(self.envs[i], state["env"])

    def close(self) -> None:
        for env in self.envs:
            env.close()

