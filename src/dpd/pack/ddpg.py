"""DDPG for a pack of N learners of one task in one process, mirroring Stable-Baselines3's DDPG.

SB3's DDPG is its TD3 with ``policy_delay=1``, ``target_policy_noise=0`` and one critic; per gradient step
(``stable_baselines3/td3/td3.py``)::

    target   = r + gamma * (1 - terminated) * Q_targ(s', pi_targ(s'))   # timeouts bootstrap (handle_timeout_termination)
    critic  <- Adam step on mean((Q(s, a) - target)^2)
    actor   <- Adam step on -mean(Q(s, pi(s)))                        # with the critic just updated
    targets <- (1 - tau) * targets + tau * params                     # Polyak, after every gradient step

Collection follows ``OffPolicyAlgorithm``: ``train_freq`` env steps, then ``gradient_steps`` updates once more than
``learning_starts`` steps were taken; before ``learning_starts`` actions are uniform random; Gaussian noise is added
to every action (the random ones too) in the scaled space [-1, 1], then clipped; the env gets the action rescaled to
its bounds and the buffer the scaled one. Observations are normalised like ``VecNormalize`` (running mean / var in
float64 over every observation the learner's env returns, reset ones included, count starting at 1e-4; clip 10,
eps 1e-8); the buffer stores raw observations and a batch is normalised with the statistics current when sampled.

Known differences from SB3 (each also noted where it happens):
  - buffers hold float32 (SB3: the observation space's dtype, float64 for MuJoCo) and a sampled batch is
    normalised in float32 inside jit (SB3: float64 in NumPy, then cast);
  - the next observation of an episode's last step is the env's raw one (SB3 stores
    ``unnormalize(normalize(terminal_obs))``, the same up to rounding unless the clip at 10 bit);
  - random numbers come from ``jax.random`` (minibatch indices) and one NumPy ``Generator`` per learner (uniform
    warm-up actions drawn in [-1, 1] directly, noise), not SB3's global NumPy / torch streams;
  - transitions reach the device buffer once per ``train_freq`` steps (staged on the host), not per step; no update
    happens in between, so sampling is the same;
  - the device buffer may be smaller than ``buffer_size`` (``max_steps``): a buffer that never fills is sampled
    identically (SB3 draws indices in [0, pos) until full).
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections import defaultdict
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import optax

from dpd.errors import DPDUserError
from dpd.pack.batching import dense, per_learner
from dpd.pack.checks import check_config, check_seeds, check_steps, make_envs
from dpd.pack.running import normalized, running_std, running_update

#: an MLP: one (weight (in, out), bias (out,)) per layer; in a pack every leaf has a leading learner axis N
Params = list[tuple[jax.Array, jax.Array]]


@dataclasses.dataclass(frozen=True)
class PackConfig:
    """DDPG hyperparameters; the defaults are dpd's paper preset (``presets/ddpg_paper.yaml``)."""

    net_arch: tuple[int, ...] = (64, 64, 64)
    buffer_size: int = 1_000_000
    batch_size: int = 64
    gamma: float = 0.99
    tau: float = 0.01
    learning_rate: float = 1e-3
    learning_starts: int = 100
    train_freq: int = 100
    gradient_steps: int = 50
    noise_std: float = 0.2
    normalize: bool = True
    clip_obs: float = 10.0
    norm_eps: float = 1e-8


class Learners(NamedTuple):
    """Everything an update changes, each leaf with a leading learner axis N."""

    actor: Params
    critic: Params
    actor_target: Params
    critic_target: Params
    actor_opt: Any
    critic_opt: Any
    key: jax.Array  # (N, 2) PRNG keys: minibatch indices


class Buffers(NamedTuple):
    """Replay buffers of N learners, capacity C: obs / next_obs (N, C, obs_dim), actions (N, C, act_dim) scaled to
    [-1, 1], rewards and terminated (N, C). Observations are stored twice, as SB3 does by default
    (``optimize_memory_usage=False``): with them once, the next observation of a timed-out step would be lost."""

    obs: jax.Array
    next_obs: jax.Array
    actions: jax.Array
    rewards: jax.Array
    terminated: jax.Array


def init_mlp(rng: np.random.Generator, sizes: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """torch's default ``nn.Linear`` init (SB3's TD3 policy keeps it): weight and bias ~ U(-1/sqrt(in), 1/sqrt(in)).
    NumPy on the host (no compile); weights (in, out) float32."""
    params = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        bound = 1.0 / np.sqrt(fan_in)
        params.append((rng.uniform(-bound, bound, (fan_in, fan_out)).astype(np.float32),
                       rng.uniform(-bound, bound, (fan_out,)).astype(np.float32)))
    return params


def mlp(params: Params, x: jax.Array, activation: Callable[[jax.Array], jax.Array] = jax.nn.relu) -> jax.Array:
    """``activation`` between layers (ReLU, DDPG's; PPO's tanh: ``pack.ppo.tanh_mlp``), linear output;
    x (..., in) -> (..., out)."""
    for w, b in params[:-1]:
        x = activation(dense(x, w, b))
    w, b = params[-1]
    return dense(x, w, b)


def actor_fn(actor: Params, obs: jax.Array) -> jax.Array:
    """Deterministic action in [-1, 1] (tanh output); obs (..., obs_dim) normalised -> (..., act_dim)."""
    return jnp.tanh(mlp(actor, obs))


def q_fn(critic: Params, obs: jax.Array, act: jax.Array) -> jax.Array:
    """Q(s, a) on concat(obs, act) like SB3's ContinuousCritic; (B, obs_dim), (B, act_dim) -> (B,)."""
    return mlp(critic, jnp.concatenate([obs, act], axis=-1))[..., 0]


def _polyak(target: Params, params: Params, tau: float) -> Params:
    return jax.tree.map(lambda t, p: (1.0 - tau) * t + tau * p, target, params)


def _update_one(cfg: PackConfig, tx: optax.GradientTransformation, ln: Learners, buf: Buffers, size: jax.Array,
                mean: jax.Array, var: jax.Array, learner: jax.Array) -> tuple[Learners, jax.Array]:
    """``cfg.gradient_steps`` SB3 TD3/DDPG gradient steps of ONE learner (mapped over the pack: :func:`_update_pack`).

    buf: the whole pack's buffers (N, C, ...), of which this learner reads its own rows ``learner``; size: filled
    rows (indices drawn in [0, size)); mean, var (obs_dim,). Returns the new state and (gradient_steps, 2) critic /
    actor losses."""

    def norm(o: jax.Array) -> jax.Array:
        if not cfg.normalize:
            return o
        return jnp.clip((o - mean) / jnp.sqrt(var + cfg.norm_eps), -cfg.clip_obs, cfg.clip_obs)

    def step(ln: Learners, key: jax.Array) -> tuple[Learners, jax.Array]:
        idx = jax.random.randint(key, (cfg.batch_size,), 0, size)  # uniform with replacement, like SB3
        obs, next_obs = norm(buf.obs[learner, idx]), norm(buf.next_obs[learner, idx])
        # target_policy_noise = 0: SB3 still clamps to [-1, 1], a no-op after tanh
        next_q = q_fn(ln.critic_target, next_obs, actor_fn(ln.actor_target, next_obs))
        target = buf.rewards[learner, idx] + (1.0 - buf.terminated[learner, idx]) * cfg.gamma * next_q

        def critic_loss(c: Params) -> jax.Array:
            return jnp.mean((q_fn(c, obs, buf.actions[learner, idx]) - target) ** 2)

        c_loss, c_grad = jax.value_and_grad(critic_loss)(ln.critic)
        c_upd, critic_opt = tx.update(c_grad, ln.critic_opt, ln.critic)
        critic = optax.apply_updates(ln.critic, c_upd)

        def actor_loss(a: Params) -> jax.Array:
            return -jnp.mean(q_fn(critic, obs, actor_fn(a, obs)))

        a_loss, a_grad = jax.value_and_grad(actor_loss)(ln.actor)
        a_upd, actor_opt = tx.update(a_grad, ln.actor_opt, ln.actor)
        actor = optax.apply_updates(ln.actor, a_upd)
        new = Learners(actor, critic, _polyak(ln.actor_target, actor, cfg.tau),
                       _polyak(ln.critic_target, critic, cfg.tau), actor_opt, critic_opt, ln.key)
        return new, jnp.stack([c_loss, a_loss])

    key, *keys = jax.random.split(ln.key, cfg.gradient_steps + 1)
    ln, losses = jax.lax.scan(step, ln, jnp.stack(keys))
    return ln._replace(key=key), losses


def _update_pack(cfg: PackConfig, tx: optax.GradientTransformation, ln: Learners, buf: Buffers, size: jax.Array,
                 mean: jax.Array, var: jax.Array) -> tuple[Learners, jax.Array]:
    """:func:`_update_one` of every learner: ln, mean, var stacked per learner (N, ...), buf the pack's (N, C, ...).

    The buffers go in whole, shared, and each learner gathers its own minibatch rows from them. Mapped per learner
    instead (``in_axes`` 0), the map sliced each learner's buffer out, and XLA copied that whole buffer on every call:
    ~170 MB per Walker2d learner at 1e6 transitions, which made a pack of 3's updates ~4x slower than with small
    buffers (a pack of 1's slice is free). The same rows, the same arithmetic: the numbers do not change."""
    learners = jnp.arange(buf.rewards.shape[0])
    fn = per_learner(partial(_update_one, cfg, tx), in_axes=(0, None, None, 0, 0, 0))
    return fn(ln, buf, size, mean, var, learners)  # type: ignore[no-any-return]


def set_slot(whole: Any, part: Any, i: int) -> Any:
    """``whole`` (a pytree of arrays with a leading learner axis) with slot ``i`` set from ``part``, matched leaf by
    leaf (a checkpoint holds tuples and named tuples as lists)."""
    leaves, treedef = jax.tree.flatten(whole)
    parts = jax.tree.leaves(part)
    if len(parts) != len(leaves):
        raise ValueError(f"{len(parts)} arrays where the pack has {len(leaves)}")
    return jax.tree.unflatten(treedef, [w.at[i].set(jnp.asarray(np.asarray(p).astype(w.dtype)))
                                        for w, p in zip(leaves, parts, strict=True)])


def host_actor(params: list[tuple[np.ndarray, np.ndarray]], obs: np.ndarray) -> np.ndarray:
    """:func:`actor_fn` of N stacked actors in NumPy (float32): params [(W (N, in, out), b (N, out))], obs (N, in)."""
    x = obs.astype(np.float32)
    for k, (w, b) in enumerate(params):
        x = np.einsum("ni,nio->no", x, w) + b
        x = np.maximum(x, 0.0) if k < len(params) - 1 else np.tanh(x)
    return x


def noisy_action(scaled: np.ndarray, noise: np.ndarray, low: np.ndarray,
                 high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SB3's ``OffPolicyAlgorithm._sample_action`` with ``NormalActionNoise``: the noise (drawn as noise_std x a
    standard normal) added in the scaled space and clipped to [-1, 1] (what the buffer stores), then rescaled to the
    env's bounds (what the env gets, ``policy.unscale_action``). scaled, noise (..., A); low, high (A,)."""
    buffer_action = np.clip(scaled + noise, -1.0, 1.0)
    return buffer_action, low + 0.5 * (buffer_action + 1.0) * (high - low)


def _write(buf: Buffers, chunk: Buffers, pos: jax.Array, n: jax.Array) -> Buffers:
    """Writes the first n of a staged chunk's T steps (chunk leaves (N, T, ...)) at rows pos, pos+1, ... mod C;
    the rest of the chunk is dropped (index C is out of range)."""
    cap, steps = buf.rewards.shape[1], chunk.rewards.shape[1]
    rows = (pos + jnp.arange(steps)) % cap
    rows = jnp.where(jnp.arange(steps) < n, rows, cap)
    return jax.tree.map(lambda b, c: b.at[:, rows].set(c, mode="drop"), buf, chunk)


class DDPGPack:
    """N DDPG learners of one Gymnasium task, one per seed, trained together in this process.

    ``learn(steps)`` gives every learner ``steps`` env steps. ``profile`` holds the seconds spent in env stepping,
    acting, updates and buffer / normalisation work; ``compile_s`` the jit compile time (``compile()``, called by
    the first ``learn`` if not before)."""

    def buffer_bytes(self) -> int:
        """The pack's replay buffers in bytes (float32 observations stored twice, actions, reward, done, timeout)."""
        return self.n * self.capacity * 4 * (2 * self.obs_dim + self.act_dim + 3)

    def _check_memory(self, env_id: str) -> None:
        from dpd.run_files import physical_memory

        need, have = self.buffer_bytes(), physical_memory()
        if need > have:
            for env in self.envs:
                env.close()
            gib = 1 << 30
            raise DPDUserError(f"a pack of {self.n} learners on {env_id} needs {need / gib:.1f} GiB of replay buffers"
                               f" ({self.capacity} transitions each), more than this machine's {have / gib:.1f} GiB;"
                               " use fewer learners per pack or a smaller buffer_size")

    def __init__(self, env_id: str, seeds: list[int], cfg: PackConfig | None = None, max_steps: int | None = None,
                 env_kwargs: dict[str, Any] | None = None) -> None:
        self.cfg = cfg = cfg or PackConfig()
        check_seeds(seeds)
        check_config(cfg)
        self.n = n = len(seeds)
        self.envs = make_envs(env_id, n, env_kwargs)
        space = self.envs[0].action_space
        if not (isinstance(space, gym.spaces.Box) and np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
            for env in self.envs:
                env.close()
            raise DPDUserError(f"{env_id} has {space}; DDPG needs continuous actions with finite bounds (a Box)")
        self.low, self.high = space.low.astype(np.float64), space.high.astype(np.float64)
        self.obs_dim = int(np.prod(self.envs[0].observation_space.shape or ()))
        self.act_dim = int(np.prod(space.shape))
        self.rngs = [np.random.default_rng(s) for s in seeds]  # warm-up actions and noise, one stream per learner
        self.capacity = min(cfg.buffer_size, max_steps) if max_steps else cfg.buffer_size
        self._check_memory(env_id)
        self.tx = optax.adam(cfg.learning_rate)  # torch Adam's defaults: betas (0.9, 0.999), eps 1e-8 outside the sqrt

        def stacked(sizes: list[int]) -> Params:  # one network per learner, stacked on axis 0
            nets = [init_mlp(np.random.default_rng([seed, 1]), sizes) for seed in seeds]
            return [tuple(jnp.asarray(np.stack(x)) for x in zip(*layers, strict=True))  # type: ignore[misc]
                    for layers in zip(*nets, strict=True)]

        actor = stacked([self.obs_dim, *cfg.net_arch, self.act_dim])
        critic = stacked([self.obs_dim + self.act_dim, *cfg.net_arch, 1])
        copy = partial(jax.tree.map, jnp.copy)  # targets in buffers of their own: the update donates them all
        opt_init = jax.vmap(self.tx.init)
        self.learners = Learners(actor, critic, copy(actor), copy(critic), opt_init(actor), opt_init(critic),
                                 jnp.stack([jax.random.PRNGKey(s) for s in seeds]))
        cap = self.capacity
        self.buffers = Buffers(jnp.zeros((n, cap, self.obs_dim)), jnp.zeros((n, cap, self.obs_dim)),
                               jnp.zeros((n, cap, self.act_dim)), jnp.zeros((n, cap)), jnp.zeros((n, cap)))
        self.pos = self.size = self.num_timesteps = 0
        # VecNormalize's RunningMeanStd per learner, float64 on the host: (N, obs_dim) mean and var, count
        self.mean, self.var, self.count = np.zeros((n, self.obs_dim)), np.ones((n, self.obs_dim)), 1e-4
        obs = np.stack([env.reset(seed=s)[0] for env, s in zip(self.envs, seeds, strict=True)]).reshape(n, -1)
        self.obs = obs.astype(np.float64)
        self._update_rms(self.obs)  # VecNormalize.reset updates the statistics with the first observations
        self.episode_returns: list[list[float]] = [[] for _ in seeds]
        self.episode_lengths: list[list[int]] = [[] for _ in seeds]
        self._ep_return = np.zeros(n)
        self._ep_length = np.zeros(n, dtype=np.int64)
        # the running std of each learner's discounted raw return (dpd.envs.RecentStates.return_std: what
        # xi_scale=return_std divides xi by), float64 on the host, shape (N,), count shared
        self.ret_mean, self.ret_var, self.ret_count = np.zeros(n), np.ones(n), 1e-4
        self._returns = np.zeros(n)
        #: gradient steps (updates of each learner) taken by the last ``learn`` call and in all
        self.last_gradient_steps = 0
        self.gradient_steps = 0
        self.profile: dict[str, float] = defaultdict(float)
        self.compile_s: float | None = None
        self.last_losses: np.ndarray | None = None  # (N, gradient_steps, 2) critic / actor losses of the last round
        # act()'s host copy of the actors, with the array it was taken from (JAX arrays are immutable: new parameters
        # are new arrays, whoever set them: an update, a distillation phase, a checkpoint's restore)
        self._host_actor: tuple[jax.Array, list[tuple[np.ndarray, np.ndarray]]] | None = None
        # per_learner, not vmap: a learner's update runs the same arithmetic whatever its pack's size (batching.py)
        self._update = jax.jit(partial(_update_pack, cfg, self.tx), donate_argnums=(0,))
        self._write = jax.jit(_write, donate_argnums=(0,))
        self._stage = self._new_stage()

    def _new_stage(self) -> dict[str, np.ndarray]:
        n, t = self.n, self.cfg.train_freq
        return {"obs": np.zeros((n, t, self.obs_dim), np.float32), "next_obs": np.zeros((n, t, self.obs_dim), np.float32),
                "actions": np.zeros((n, t, self.act_dim), np.float32), "rewards": np.zeros((n, t), np.float32),
                "terminated": np.zeros((n, t), np.float32)}

    def _update_rms(self, obs: np.ndarray) -> None:
        self.mean, self.var, self.count = running_update(self.mean, self.var, self.count, obs)

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        """VecNormalize.normalize_obs per learner: (N, obs_dim) raw float64 -> float32."""
        if not self.cfg.normalize:
            return obs.astype(np.float32)
        return normalized(obs, self.mean, self.var, self.cfg.norm_eps, self.cfg.clip_obs)

    def normalize_one(self, i: int, obs: np.ndarray) -> np.ndarray:
        """Learner ``i``'s normalisation of its raw observations (B, obs_dim) -> float32."""
        if not self.cfg.normalize:
            return obs.astype(np.float32)
        return normalized(obs, self.mean[i], self.var[i], self.cfg.norm_eps, self.cfg.clip_obs)

    def _stats(self) -> tuple[jax.Array, jax.Array]:
        return jnp.asarray(self.mean, jnp.float32), jnp.asarray(self.var, jnp.float32)

    def compile(self) -> float:
        """Compiles (and runs once) the buffer write (of nothing: n=0, on the buffers themselves, no copy of them)
        and the update (on a copy of the learners, whose result is dropped); returns the seconds. Acting is NumPy on
        a host copy of the actors (:meth:`act`): nothing to compile."""
        start = time.perf_counter()
        stage = Buffers(**{k: jnp.asarray(v) for k, v in self._stage.items()})
        self.buffers = self._write(self.buffers, stage, jnp.int32(self.pos), jnp.int32(0))
        out = self._update(jax.tree.map(jnp.copy, self.learners), self.buffers, jnp.int32(max(self.size, 1)),
                           *self._stats())
        jax.block_until_ready(out)
        self.compile_s = time.perf_counter() - start
        return self.compile_s

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic actions of all learners, (N, obs_dim) raw observations -> (N, act_dim) scaled to [-1, 1].

        Computed with NumPy on a host copy of the actors (taken after each update): a jitted call costs ~0.1-0.3 ms
        of dispatch, more than the whole forward pass of N small MLPs, and acting happens at every env step."""
        actor = self.learners.actor
        if self._host_actor is None or self._host_actor[0] is not actor[0][0]:  # new parameters: a new copy
            self._host_actor = (actor[0][0], [(np.asarray(w), np.asarray(b)) for w, b in actor])
        return host_actor(self._host_actor[1], self.normalize(obs))

    def learn(self, steps: int) -> DDPGPack:
        """``steps`` more env steps for every learner, with SB3's collect / train schedule."""
        steps = check_steps(steps)
        if self.compile_s is None:
            self.compile()
        cfg, prof, t_freq = self.cfg, self.profile, self.cfg.train_freq
        assert self.capacity == cfg.buffer_size or self.num_timesteps + steps <= self.capacity, "max_steps exceeded"
        end = self.num_timesteps + steps
        self.last_gradient_steps = 0
        while self.num_timesteps < end:
            round_steps = min(t_freq, end - self.num_timesteps)
            t0 = time.perf_counter()  # the round's noise (and warm-up actions), per learner's own stream
            noise = np.stack([r.normal(0.0, cfg.noise_std, (round_steps, self.act_dim)) for r in self.rngs], 1)
            uniform = np.stack([r.uniform(-1.0, 1.0, (round_steps, self.act_dim)) for r in self.rngs], 1)
            prof["buffer+norm"] += time.perf_counter() - t0
            for k in range(round_steps):
                t0 = time.perf_counter()
                # warm-up: SB3 samples action_space in [low, high] and scales it: the same law as uniform in [-1, 1]
                scaled = uniform[k] if self.num_timesteps < cfg.learning_starts else self.act(self.obs)
                scaled, actions = noisy_action(scaled, noise[k], self.low, self.high)
                t1 = time.perf_counter()
                prof["act"] += t1 - t0
                results = [env.step(a) for env, a in zip(self.envs, actions, strict=True)]
                new_obs = np.stack([r[0] for r in results]).reshape(self.n, -1).astype(np.float64)
                next_obs = new_obs.copy()
                for i, (_, _, term, trunc, _) in enumerate(results):
                    if term or trunc:  # DummyVecEnv's auto-reset: the buffer keeps the last obs, the learner the new
                        new_obs[i] = np.asarray(self.envs[i].reset()[0]).reshape(-1)
                t2 = time.perf_counter()
                prof["env"] += t2 - t1
                rewards = np.array([r[1] for r in results])
                st = self._stage
                st["obs"][:, k], st["next_obs"][:, k], st["actions"][:, k] = self.obs, next_obs, scaled
                st["rewards"][:, k], st["terminated"][:, k] = rewards, [r[2] for r in results]
                self._ep_return += rewards
                self._ep_length += 1
                self._returns = self._returns * cfg.gamma + rewards
                self.ret_mean, self.ret_var, self.ret_count = running_update(
                    self.ret_mean, self.ret_var, self.ret_count, self._returns)
                for i, r in enumerate(results):
                    if r[2] or r[3]:
                        self.episode_returns[i].append(float(self._ep_return[i]))
                        self.episode_lengths[i].append(int(self._ep_length[i]))
                        self._ep_return[i], self._ep_length[i], self._returns[i] = 0.0, 0, 0.0
                self._update_rms(new_obs)
                self.obs = new_obs
                self.num_timesteps += 1
                prof["buffer+norm"] += time.perf_counter() - t2
            t0 = time.perf_counter()
            chunk = Buffers(**{k: jnp.asarray(v) for k, v in self._stage.items()})
            self.buffers = self._write(self.buffers, chunk, jnp.int32(self.pos), jnp.int32(round_steps))
            self.pos = (self.pos + round_steps) % self.capacity
            self.size = min(self.size + round_steps, self.capacity)
            jax.block_until_ready(self.buffers)
            t1 = time.perf_counter()
            prof["buffer+norm"] += t1 - t0
            if self.num_timesteps > cfg.learning_starts:  # SB3 trains after a rollout once past learning_starts
                self.learners, losses = self._update(self.learners, self.buffers, jnp.int32(self.size), *self._stats())
                self.last_losses = np.asarray(losses)  # waits for the update
                self.last_gradient_steps += cfg.gradient_steps
                self.gradient_steps += cfg.gradient_steps
                prof["update"] += time.perf_counter() - t1
        return self

    def return_std(self) -> np.ndarray:
        """(N,) each learner's running std of its discounted raw return (1.0 before any data), as
        ``RecentStates.return_std``."""
        return running_std(self.ret_var, self.ret_count)

    # ------------------------------------------------------------------ one learner's state (checkpoints)
    def learner_state(self, i: int, replay_buffer: bool) -> dict[str, Any]:
        """Learner ``i``'s part of the pack as plain NumPy data: networks, optimisers, keys, statistics, its env and
        random streams, and with ``replay_buffer`` its filled buffer rows. :meth:`load_learner_state` restores it into
        any pack slot of the same config whose counters (``pack``) are equal."""
        from dpd.state import gen_state, gym_env_state

        take = partial(jax.tree.map, lambda x: np.asarray(x[i]))
        state: dict[str, Any] = {
            "pack": {"pos": self.pos, "size": self.size, "num_timesteps": self.num_timesteps, "count": self.count,
                     "ret_count": self.ret_count, "gradient_steps": self.gradient_steps},
            "learners": take(self.learners._asdict()),
            "mean": self.mean[i].copy(), "var": self.var[i].copy(), "ret_mean": float(self.ret_mean[i]),
            "ret_var": float(self.ret_var[i]), "returns": float(self._returns[i]), "obs": self.obs[i].copy(),
            "ep_return": float(self._ep_return[i]), "ep_length": int(self._ep_length[i]),
            "episode_returns": list(self.episode_returns[i]), "episode_lengths": list(self.episode_lengths[i]),
            "rng": gen_state(self.rngs[i]), "env": gym_env_state(self.envs[i]), "replay_buffer": None,
        }
        if replay_buffer:
            state["replay_buffer"] = {k: np.asarray(v[i, : self.size]) for k, v in self.buffers._asdict().items()}
        return state

    def load_learner_state(self, i: int, state: dict[str, Any]) -> None:
        """Restore :meth:`learner_state` into slot ``i`` (every slot of a pack is restored from states alike)."""
        from dpd.state import set_gen_state, set_gym_env_state

        pack = state["pack"]
        self.pos, self.size, self.num_timesteps = int(pack["pos"]), int(pack["size"]), int(pack["num_timesteps"])
        self.count, self.ret_count = float(pack["count"]), float(pack["ret_count"])
        self.gradient_steps = int(pack["gradient_steps"])

        fields = self.learners._asdict()
        self.learners = Learners(**{k: set_slot(fields[k], state["learners"][k], i) for k in fields})
        self.mean[i], self.var[i] = state["mean"], state["var"]
        self.ret_mean[i], self.ret_var[i], self._returns[i] = state["ret_mean"], state["ret_var"], state["returns"]
        self.obs[i] = state["obs"]
        self._ep_return[i], self._ep_length[i] = state["ep_return"], state["ep_length"]
        self.episode_returns[i] = [float(x) for x in state["episode_returns"]]
        self.episode_lengths[i] = [int(x) for x in state["episode_lengths"]]
        set_gen_state(self.rngs[i], state["rng"])
        set_gym_env_state(self.envs[i], state["env"])
        rows = state.get("replay_buffer")
        if rows is not None:
            buf = self.buffers._asdict()
            self.buffers = Buffers(**{k: buf[k].at[i, : self.size].set(jnp.asarray(rows[k], buf[k].dtype))
                                      for k in buf})

    def close(self) -> None:
        for env in self.envs:
            env.close()
