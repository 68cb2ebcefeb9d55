"""``engine="jax"``: the learners of one or more runs as views on one pack, behind the learner interface.

A :class:`PackGroup` holds one :class:`dpd.pack.ddpg.DDPGPack` or :class:`dpd.pack.ppo.PPOPack` for the learners of
K runs that differ only by their seed (``dpd train``: K = 1; ``dpd sweep --engine jax``: the seeds of one task and
arm), and hands out one
:class:`PackLearner` per learner: the :class:`dpd.training.interface.LearnerInterface` the trainer already drives, so
the trainer's loop (Algorithm 1 in dpd's parallel order), its checkpoints, stop handling and summary are the SB3
engine's own. A call that needs the whole pack runs the pack's one vmapped program the first time any view asks for
it in a round, and hands the other views the result:

- ``iterate`` of round r: ``iteration_steps`` env steps and the DDPG updates of every learner (``DDPGPack.learn``),
  or one PPO rollout of ``n_steps`` and its update (``PPOPack.learn``, the learning rate run to the budget);
- ``distill`` / ``measure`` of round r: one distillation phase of every learner toward its peer
  (:mod:`dpd.pack.distill`; the independent pair: zero steps, the pair's statistics only);
- an evaluation at step s: every learner's deterministic episodes, their envs stepped together.

So the runs of a group advance in lock-step (:func:`dpd.training.trainer.learn_together` drives them round by round),
and a learner's numbers never depend on which other runs share its pack, nor how many (each learner has its own
seeds, envs and random streams, and the pack maps one learner's program over its learners, :mod:`dpd.pack.batching`;
tests/test_pack_engine.py checks a run alone against the same run inside a pack, DDPG and PPO, bit for bit).

Each learner writes today's run-folder layout: ``progress.csv`` (SB3's logger, SB3's DDPG or PPO keys plus dpd's),
``evaluations.csv``, and at the end ``model.zip`` (an SB3 DDPG / PPO with the pack's weights copied in, so ``dpd evaluate``
and ``load_learner`` open it as any SB3 run) with ``vecnormalize.json`` / ``.pkl``. What the engine does not write:
``train_episodes.monitor.csv`` and snapshots' ``window.npz`` (``dpd analyze`` / ``calibrate`` are SB3-only).
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import jax
import numpy as np
from stable_baselines3.common.logger import Logger, configure
from stable_baselines3.common.policies import ActorCriticPolicy

from dpd.config import ResolvedConfig
from dpd.distillation import PeerBatch
from dpd.engine import check_supported, pack_key
from dpd.errors import DPDUserError
from dpd.names import Log
from dpd.pack.ddpg import DDPGPack, PackConfig, actor_fn, q_fn
from dpd.pack.distill import (
    DistillSpec,
    DistillState,
    init_state,
    make_distill_phase,
    pair_peers,
    peer_windows,
    ppo_distill_phase_jit,
)
from dpd.pack.ppo import PPOConfig, PPOPack, tanh_mlp
from dpd.schedule import StepCarry
from dpd.training import logs
from dpd.training.record import LearnerRecord, model_files

#: the hidden layers SB3's policies take when policy_kwargs names none (TD3Policy, which DDPG's is, and PPO's
#: ActorCriticPolicy set them in their bodies, not in a signature dpd could read; tests/test_pack_ppo.py and
#: tests/test_pack_engine.py's export checks hold the engine to SB3's networks)
SB3_DDPG_NET_ARCH = [400, 300]
SB3_PPO_NET_ARCH = {"pi": [64, 64], "vf": [64, 64]}


def pack_config(config: ResolvedConfig) -> PackConfig:
    """The DDPG pack's settings from a resolved config (SB3's own defaults, read from its signatures, where the
    config leaves an argument unset; ``noise_std`` is dpd's: no action noise unless set)."""
    arg = config.algo_arg
    pk = arg("policy_kwargs") or {}
    return PackConfig(
        net_arch=tuple(int(x) for x in pk.get("net_arch", SB3_DDPG_NET_ARCH)), buffer_size=int(arg("buffer_size")),
        batch_size=int(arg("batch_size")), gamma=float(arg("gamma")), tau=float(arg("tau")),
        learning_rate=float(arg("learning_rate")), learning_starts=int(arg("learning_starts")),
        train_freq=int(arg("train_freq")), gradient_steps=int(arg("gradient_steps")),
        noise_std=float(config.algo_kwargs.get("noise_std", 0.0)), normalize=bool(config.normalize),
    )  # fmt: skip


def ppo_config(config: ResolvedConfig) -> PPOConfig:
    """The PPO pack's settings from a resolved config (SB3's PPO defaults where the config leaves an argument unset;
    ``learning_rate`` a number or dpd's ``lin_<rate>``)."""
    arg = config.algo_arg
    pk = arg("policy_kwargs") or {}
    arch = pk.get("net_arch", SB3_PPO_NET_ARCH)
    pi, vf = (arch["pi"], arch["vf"]) if isinstance(arch, dict) else (arch, arch)
    lr = arg("learning_rate")
    linear = isinstance(lr, str) and lr.startswith("lin_")
    log_std_init = inspect.signature(ActorCriticPolicy.__init__).parameters["log_std_init"].default
    return PPOConfig(
        pi_arch=tuple(int(x) for x in pi), vf_arch=tuple(int(x) for x in vf), n_steps=int(arg("n_steps")),
        batch_size=int(arg("batch_size")), n_epochs=int(arg("n_epochs")),
        learning_rate=float(lr[4:]) if linear else float(lr), linear_lr=linear,
        clip_range=float(arg("clip_range")), gamma=float(arg("gamma")),
        gae_lambda=float(arg("gae_lambda")), ent_coef=float(arg("ent_coef")),
        vf_coef=float(arg("vf_coef")), max_grad_norm=float(arg("max_grad_norm")),
        log_std_init=float(pk.get("log_std_init", log_std_init)), normalize=bool(config.normalize),
        normalize_reward=bool(config.normalize and config.normalize_reward),
    )  # fmt: skip


class PackGroup:
    """The pack behind the learners of ``configs`` (runs equal but for their seeds), and its per-round results.

    :param run_dirs: each run's folder (None: in memory); :param resume_states: each run's checkpoint (its
        ``students`` list restores its learners; all at the same step) or None.
    """

    def __init__(self, configs: Sequence[ResolvedConfig], run_dirs: Sequence[Path | None],
                 resume_states: Sequence[dict[str, Any] | None] | None = None, log: Any = None) -> None:
        if not configs:
            raise ValueError("a pack group needs at least one run")
        cfg = configs[0]
        for c in configs:
            check_supported(c)
            if pack_key(c) != pack_key(cfg):
                raise DPDUserError("the runs of one pack must differ only by their seed")
        if len({c.seed for c in configs}) != len(configs):
            raise DPDUserError("the runs of one pack need distinct seeds")
        self.config = cfg
        names = cfg.learner_names
        self.per_run = len(names)
        seeds = [c.learner_seed(i) for c in configs for i in range(self.per_run)]
        if len(set(seeds)) != len(seeds):
            raise DPDUserError(f"the runs' learner seeds collide ({seeds}); give seeds that differ by less than 10000")
        self.ppo = cfg.algo == "ppo"
        pack: Any = (PPOPack(cfg.env_id, seeds, ppo_config(cfg), window=cfg.distill.window) if self.ppo else
                     DDPGPack(cfg.env_id, seeds, pack_config(cfg), max_steps=cfg.steps_per_learner))
        self.pack = pack
        self.n = self.pack.n
        self.iteration = 0  # RL iterations every learner has completed (lock-step)
        self.pair = cfg.method != "vanilla"
        self._phase: tuple[int, dict[str, np.ndarray]] | None = None  # (iteration, per-learner results)
        self._evaluation: tuple[int, list[dict[str, float]]] | None = None
        self.distill_spec: DistillSpec | None = None
        if self.pair:
            pcfg = self.pack.cfg
            if cfg.method != "dpd":  # the independent pair only measures: an empty scan (every learner runs the
                max_steps = 0        # full scan and discards the steps past its own, so this one cost as much as dpd's)
            elif self.ppo:  # on-policy: a phase is ``distill.steps`` steps
                max_steps = cfg.distill.steps
            else:  # the longest phase: ratio x the RL gradient steps of one iteration, plus the carried fraction
                rl_steps = math.ceil(cfg.iteration_steps / pcfg.train_freq) * pcfg.gradient_steps
                max_steps = max(1, math.ceil(cfg.distill.ratio * rl_steps) + 1)
            self.distill_spec = DistillSpec.from_config(cfg.distill, max_steps=max_steps)
            self.peers = pair_peers(self.n)
            actor, pack_tx = (self.pack.policy.pi, None) if self.ppo else (self.pack.learners.actor, self.pack.tx)
            self.distill_state: DistillState = init_state(self.distill_spec, pack_tx, actor,  # type: ignore[arg-type]
                                                          [s + 7_919 for s in seeds])
            self._distill: Callable[..., Any]
            if self.ppo:
                self._distill = partial(ppo_distill_phase_jit, self.distill_spec, pcfg, self.distill_spec.tx(None))  # type: ignore[arg-type]
            else:
                self._distill = make_distill_phase(self.distill_spec, pcfg, self.pack.tx)
            self.carries = [StepCarry() for _ in seeds]
            self.skipped_nonfinite = np.zeros(self.n, np.int64)
            self.skipped_zero_weight = np.zeros(self.n, np.int64)
            self.nonfinite_streak = np.zeros(self.n, np.int64)
        self.evaluator = _PackEvaluator(cfg, [c for c in configs for _ in range(self.per_run)],
                                        [i for _ in configs for i in range(self.per_run)], self.eval_actions)
        self._peer_fn = jax.jit(lambda a, c, o: (actor_fn(a, o), q_fn(c, o, actor_fn(a, o))))
        self.views: list[PackLearner] = []
        states = resume_states or [None] * len(configs)
        for k, (config, run_dir, state) in enumerate(zip(configs, run_dirs, states, strict=True)):
            for i in range(self.per_run):
                slot = k * self.per_run + i
                own = state["students"][i] if state is not None else None
                self.views.append(PackLearner(self, slot, config, i, run_dir, own, log))
        self._open = len(self.views)

    # ------------------------------------------------------------------ whole-pack steps, once per round
    def restore(self) -> None:
        """Every view's checkpoint into the pack (all views resume, or none)."""
        resumed = [v for v in self.views if v.resume is not None]
        if not resumed:
            return
        if len(resumed) != len(self.views):
            raise DPDUserError("the runs of one pack resume together: every run needs a checkpoint")
        for v in self.views:  # tensors (a checkpoint's plain data) back to NumPy arrays
            v.resume = _as_numpy(v.resume)
        first = resumed[0].resume
        assert first is not None
        for v in self.views:
            assert v.resume is not None
            if v.resume["pack"]["pack"] != first["pack"]["pack"] or v.resume["iteration"] != first["iteration"]:
                # a sweep groups checkpoints by their step: learners that disagree here come from a damaged one (a
                # ValueError: the checkpoint's one line, naming the file)
                raise ValueError(f"{v.name}'s pack counters or iteration differ from its pack-mates' (a damaged"
                                 " checkpoint, or runs stopped at different steps)")
            self.pack.load_learner_state(v.slot, v.resume["pack"])
        self.iteration = int(first["iteration"])
        if self.pair:
            opt_leaves, treedef = jax.tree.flatten(self.distill_state.opt)
            keys = np.array(self.distill_state.key)
            for v in self.views:
                assert v.resume is not None
                d = v.resume["distill"]
                for leaf_index, leaf in enumerate(d["opt"]):
                    opt_leaves[leaf_index] = opt_leaves[leaf_index].at[v.slot].set(leaf)
                keys[v.slot] = np.asarray(d["key"]).astype(keys.dtype)
                self.carries[v.slot].carry = float(d["carry"])
                self.skipped_nonfinite[v.slot] = int(d["skipped_nonfinite"])
                self.skipped_zero_weight[v.slot] = int(d["skipped_zero_weight"])
                self.nonfinite_streak[v.slot] = int(d["nonfinite_streak"])
            self.distill_state = DistillState(jax.tree.unflatten(treedef, opt_leaves), jax.numpy.asarray(keys))
        for v in self.views:
            assert v.resume is not None
            self.evaluator.load_state(v.slot, v.resume["eval_env"])

    def iterate(self, target: int) -> None:
        """Iteration ``target`` (1-based) of every learner: run it if it is the next one, else it ran already."""
        if target == self.iteration:
            return
        if target != self.iteration + 1:
            raise RuntimeError(f"pack out of lock-step: iteration {target} asked, {self.iteration} done")
        budget = self.config.steps_per_learner
        if self.ppo:  # one rollout and its update; the learning rate runs to the learner's budget
            self.pack.learn(self.pack.cfg.n_steps, total=budget)
        else:
            steps = min(self.config.iteration_steps, budget - self.pack.num_timesteps)
            if steps > 0:
                self.pack.learn(steps)
        self.iteration = target

    def phase(self, iteration: int) -> dict[str, np.ndarray]:
        """The distillation phase (dpd) or measurement (independent) after ``iteration``, for every learner."""
        if self._phase is not None and self._phase[0] == iteration:
            return self._phase[1]
        assert self.pair and self.distill_spec is not None
        cfg = self.config
        pack = self.pack
        if cfg.method == "dpd":
            scheduled = cfg.distill.steps if self.ppo else cfg.distill.ratio * pack.last_gradient_steps
            steps = np.array([carry.take(scheduled) for carry in self.carries], np.int32)
        else:
            steps = np.zeros(self.n, np.int32)
        divisor = (pack.return_std() if cfg.distill.xi_scale == "return_std" else np.ones(self.n)).astype(np.float32)
        if self.ppo:
            windows, valid = pack.recent_windows()
            pack.policy, self.distill_state, out = self._distill(
                pack.policy, self.distill_state, windows, valid, pack.obs_mean.astype(np.float32),
                pack.obs_var.astype(np.float32), pack.reward_scale().astype(np.float32), self.peers, divisor, steps)
        else:
            mean, var = pack._stats()
            pack.learners, self.distill_state, out = self._distill(
                pack.learners, self.distill_state, pack.buffers.obs, np.int32(pack.pos), np.int32(pack.size), mean,
                var, self.peers, divisor, steps)
        res: dict[str, np.ndarray] = {f"pair/{k}": np.asarray(v) for k, v in out.pair.items()}
        res.update({f"stats/{k}": np.asarray(v) for k, v in out.stats.items()})
        taken, nonfinite = np.asarray(out.taken), np.asarray(out.skipped_nonfinite)
        zero = np.asarray(out.skipped_zero_weight)
        self.skipped_nonfinite += nonfinite
        self.skipped_zero_weight += zero
        # the streak: a phase with any finite batch ends it; an all-non-finite one extends it (dpd counts per batch)
        finite_any = (steps - nonfinite) > 0
        self.nonfinite_streak = np.where(finite_any, 0, self.nonfinite_streak + nonfinite)
        res.update(steps=steps, taken=taken, divisor=divisor, skipped_nonfinite=self.skipped_nonfinite.copy(),
                   skipped_zero_weight=self.skipped_zero_weight.copy(), streak=self.nonfinite_streak.copy())
        self._phase = (iteration, res)
        return res

    def peer_batch(self, slot: int) -> PeerBatch:
        """Learner ``slot``'s recent raw states with its actions and raw values (the interface's PeerBatch)."""
        pack, spec = self.pack, self.distill_spec
        if self.ppo:
            raw = pack.recent_states(slot)
            pi, vf = (jax.tree.map(lambda x: x[slot], p) for p in (pack.policy.pi, pack.policy.vf))
            obs = pack.normalize_one(slot, raw)
            values = np.asarray(tanh_mlp(vf, obs))[:, 0] * float(pack.reward_scale()[slot])
            return PeerBatch(raw, np.asarray(tanh_mlp(pi, obs)), values)
        window = spec.window if spec is not None else self.config.distill.window
        states, valid = peer_windows(pack.buffers.obs[slot : slot + 1], jax.numpy.int32(pack.pos),
                                     jax.numpy.int32(pack.size), window)
        raw = np.asarray(states[0])[np.asarray(valid)]
        params = jax.tree.map(lambda x: x[slot], (pack.learners.actor, pack.learners.critic))
        out, values = self._peer_fn(*params, pack.normalize_one(slot, raw))
        return PeerBatch(raw, np.asarray(out), np.asarray(values))

    def eval_actions(self, raw: np.ndarray) -> np.ndarray:
        """Every learner's deterministic action for its raw observation (N, D), in the env's units: PPO's Gaussian
        mean clipped to the bounds (SB3's predict), DDPG's tanh output rescaled to them."""
        pack = self.pack
        if self.ppo:
            return np.clip(pack.act(pack.normalize(raw)), pack.low, pack.high)
        return pack.low + 0.5 * (np.clip(pack.act(raw), -1.0, 1.0) + 1.0) * (pack.high - pack.low)

    def evaluation(self, steps: int, episodes: int) -> list[dict[str, float]]:
        """Every learner's evaluation at ``steps`` (run once, for all learners together)."""
        if self._evaluation is None or self._evaluation[0] != steps:
            self._evaluation = (steps, self.evaluator.evaluate(episodes))
        return self._evaluation[1]

    def release(self) -> None:
        """A view is closed; the last one closes the pack and its envs."""
        self._open -= 1
        if self._open == 0:
            self.pack.close()
            self.evaluator.close()


def _as_numpy(x: Any) -> Any:
    """The inverse of :func:`dpd.state.plain` for a pack learner's state: tensors -> NumPy arrays, recursively."""
    import torch as th

    if isinstance(x, th.Tensor):
        return x.numpy()
    if isinstance(x, dict):
        return {k: _as_numpy(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_as_numpy(v) for v in x]
    return x


class _PackEvaluator:
    """Deterministic evaluation episodes of every learner of a pack, their envs stepped together, actions from one
    vmapped call; each learner's env seeded with dpd's evaluation seed (``eval_seed``) at its first reset and
    continuing from there, its observations normalised with the learner's statistics of that moment (frozen)."""

    def __init__(self, config: ResolvedConfig, configs: list[ResolvedConfig], indices: list[int],
                 act: Callable[[np.ndarray], np.ndarray]) -> None:
        from dpd.pack.checks import make_envs
        from dpd.students.factory import eval_seed

        self.act = act
        self.seeds = [eval_seed(c, i) for c, i in zip(configs, indices, strict=True)]
        self.envs = make_envs(config.env_id, len(self.seeds), None)
        self.seeded = [False] * len(self.seeds)

    def _reset(self, i: int) -> np.ndarray:
        obs, _ = self.envs[i].reset(seed=self.seeds[i]) if not self.seeded[i] else self.envs[i].reset()
        self.seeded[i] = True
        return np.asarray(obs, np.float64).reshape(-1)

    def evaluate(self, episodes: int) -> list[dict[str, float]]:
        n = len(self.envs)
        returns: list[list[float]] = [[] for _ in range(n)]
        lengths: list[list[int]] = [[] for _ in range(n)]
        obs = np.stack([self._reset(i) for i in range(n)])
        ep_ret, ep_len = np.zeros(n), np.zeros(n, np.int64)
        running = np.ones(n, bool)
        while running.any():
            actions = self.act(obs)
            for i in map(int, np.flatnonzero(running)):
                o, r, term, trunc, _ = self.envs[i].step(actions[i])
                ep_ret[i] += float(r)
                ep_len[i] += 1
                obs[i] = np.asarray(o, np.float64).reshape(-1)
                if term or trunc:
                    returns[i].append(float(ep_ret[i]))
                    lengths[i].append(int(ep_len[i]))
                    ep_ret[i], ep_len[i] = 0.0, 0
                    if len(returns[i]) < episodes:
                        obs[i] = self._reset(i)
                    else:
                        running[i] = False
        return [{"mean_return": float(np.mean(r)), "std_return": float(np.std(r)), "mean_length": float(np.mean(ln))}
                for r, ln in zip(returns, lengths, strict=True)]

    def state(self, i: int) -> dict[str, Any]:
        from dpd.state import gym_env_state

        return {"env": gym_env_state(self.envs[i]), "seeded": self.seeded[i]}

    def load_state(self, i: int, state: dict[str, Any]) -> None:
        from dpd.state import set_gym_env_state

        self.seeded[i] = bool(state["seeded"])
        if self.seeded[i]:
            set_gym_env_state(self.envs[i], state["env"])

    def close(self) -> None:
        for env in self.envs:
            env.close()


class PackLearner(LearnerRecord):
    """One learner of a :class:`PackGroup`: the learner interface (:class:`dpd.training.interface.LearnerInterface`)
    over slot ``slot`` of the group's pack, with the run-time bookkeeping of :class:`dpd.training.learner.Learner`
    (evaluation schedule and log, log rows, snapshots, summary entry)."""

    def __init__(self, group: PackGroup, slot: int, config: ResolvedConfig, index: int, run_dir: Path | None,
                 resume_state: dict[str, Any] | None, log: Any) -> None:
        super().__init__(config, index, run_dir, log)
        self.group, self.slot = group, slot
        self.resume = resume_state
        kept = logs.keep_rows(self.folder, resume_state["log_rows"]) if (
            resume_state is not None and self.folder is not None) else None
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._logger: Logger = configure(str(self.folder), ["csv"])
            if kept is not None:
                logs.restore_logger_rows(self._logger, kept, self.folder)
        else:
            self._logger = Logger(folder=None, output_formats=[])
        self.open_eval_log()
        self.iteration = 0
        self._steps_at_t0 = 0

    @property
    def num_timesteps(self) -> int:
        return self.group.pack.num_timesteps

    @property
    def logger(self) -> Logger:
        return self._logger

    # ------------------------------------------------------------------ the learner interface
    def setup(self) -> int:
        if self.slot == 0:
            self.group.restore()  # the first view restores every view's checkpoint into the pack
        st = self.resume
        if st is None:
            self.maybe_evaluate()
            self.dump()
            return self.num_timesteps
        self.iteration = int(st["iteration"])
        self.load_record(st["learner"])
        self._steps_at_t0 = self.num_timesteps
        self.resume = None
        return self.num_timesteps

    def iterate(self) -> bool:
        self.group.iterate(self.iteration + 1)
        self.iteration += 1
        return True

    def distill_due(self) -> bool:
        return self.group.pair and self.iteration % self.config.distill.every == 0

    def peer_batch(self) -> PeerBatch | None:
        return self.group.peer_batch(self.slot) if self.iteration > 0 else None

    def distill(self, batch: PeerBatch | None) -> int:
        """The pack's phase for this learner (the pack distils every learner toward its peer slot, from its own device
        buffers: ``batch``, the peer's PeerBatch, only says the peer has collected)."""
        if batch is None:
            self.skipped_empty += 1
            self.logger.record(Log.SKIPPED_EMPTY, self.skipped_empty)
            return 0
        res = self.group.phase(self.iteration)
        self._log_pair(res)
        i = self.slot
        for key, value in res.items():
            if key.startswith("stats/") and np.isfinite(value[i]):
                self.logger.record(Log.DISTILL + key[len("stats/"):], float(value[i]))
        self.logger.record(Log.SKIPPED_NONFINITE, int(res["skipped_nonfinite"][i]))
        self.logger.record(Log.SKIPPED_ZERO_WEIGHT, int(res["skipped_zero_weight"][i]))
        self.logger.record(Log.XI_SCALE, float(res["divisor"][i]))
        return int(res["streak"][i])

    def measure(self, batch: PeerBatch | None) -> int:
        if batch is not None:
            self._log_pair(self.group.phase(self.iteration))
        return 0

    def _log_pair(self, res: dict[str, np.ndarray]) -> None:
        i = self.slot
        self.log_pair(float(res["pair/action_distance"][i]), float(res["pair/xi_mean"][i]),
                      float(res["pair/peer_better_frac"][i]), int(res["steps"][i]))

    def after_iteration(self) -> int:
        self.maybe_evaluate()
        self.maybe_snapshot()
        self.dump()
        return self.num_timesteps

    def finish(self) -> dict[str, Any]:
        self.maybe_evaluate(final=True)
        self.maybe_snapshot(final=True)
        return self.summary_entry()

    # ------------------------------------------------------------------ evaluation & logs
    def run_evaluation(self, steps: int) -> tuple[float, float, float]:
        result = self.group.evaluation(steps, self.config.eval_episodes)[self.slot]
        return result["mean_return"], result["std_return"], result["mean_length"]

    def dump(self) -> None:
        """The iteration's row: SB3 DDPG's own keys (what its logger would show) and dpd's."""
        pack, i, lg = self.group.pack, self.slot, self.logger
        steps = pack.num_timesteps
        returns, lengths = pack.episode_returns[i][-100:], pack.episode_lengths[i][-100:]
        lg.record("time/episodes", len(pack.episode_returns[i]))
        lg.record("time/fps", int((steps - self._steps_at_t0) / max(time.time() - self._t0, 1e-9)))
        lg.record("time/time_elapsed", int(self.elapsed()))
        lg.record("time/total_timesteps", steps)
        if returns:
            lg.record("rollout/ep_rew_mean", float(np.mean(returns)))
            lg.record("rollout/ep_len_mean", float(np.mean(lengths)))
        if self.group.ppo and pack.last_stats is not None and self.iteration > 0:
            stats = pack.last_stats[i]  # (minibatches, 5): policy, value, entropy losses, clip fraction, approx KL
            for k, key in enumerate(("policy_gradient_loss", "value_loss", "entropy_loss", "clip_fraction",
                                     "approx_kl")):
                lg.record(f"train/{key}", float(np.mean(stats[:, k])))
            cfg = pack.cfg
            progress = 1.0 - steps / self.config.steps_per_learner
            lg.record("train/learning_rate", cfg.learning_rate * (progress if cfg.linear_lr else 1.0))
            lg.record("train/n_updates", self.iteration * cfg.n_epochs)
            lg.record("train/std", float(np.mean(np.exp(np.asarray(pack.policy.log_std[i])))))
        elif not self.group.ppo and pack.last_losses is not None and self.iteration > 0:
            lg.record("train/critic_loss", float(np.mean(pack.last_losses[i, :, 0])))
            lg.record("train/actor_loss", float(np.mean(pack.last_losses[i, :, 1])))
            lg.record("train/learning_rate", pack.cfg.learning_rate)
            lg.record("train/n_updates", pack.gradient_steps)
        lg.record(Log.TOTAL_STEPS, steps * self.n_learners)
        lg.dump(step=steps)

    def counts(self) -> tuple[int, int, int]:
        group = self.group
        if not group.pair:
            return self.iteration, 0, 0
        return self.iteration, int(group.skipped_nonfinite[self.slot]), int(group.skipped_zero_weight[self.slot])

    # ------------------------------------------------------------------ checkpoints and files
    def state(self) -> dict[str, Any]:
        """This learner's part of a checkpoint: its slot of the pack (networks, optimisers, keys, statistics, env,
        streams and, with ``checkpoint_replay_buffer``, its buffer rows), its distillation state and bookkeeping, as
        plain data (:func:`dpd.state.plain`: what ``torch.load(weights_only=True)`` reads)."""
        from dpd.state import plain

        group, i = self.group, self.slot
        st: dict[str, Any] = {
            "engine": "jax", "iteration": self.iteration,
            "pack": group.pack.learner_state(i, replay_buffer=self.config.checkpoint_replay_buffer),
            "eval_env": group.evaluator.state(i),
            "learner": self.record_state(),
            "log_rows": logs.count_rows(self.folder) if self.folder else {},
        }
        if group.pair:
            st["distill"] = {"opt": [np.asarray(leaf[i]) for leaf in jax.tree.leaves(group.distill_state.opt)],
                             "key": np.asarray(group.distill_state.key[i]), "carry": group.carries[i].carry,
                             "skipped_nonfinite": int(group.skipped_nonfinite[i]),
                             "skipped_zero_weight": int(group.skipped_zero_weight[i]),
                             "nonfinite_streak": int(group.nonfinite_streak[i])}
        return plain(st)  # type: ignore[no-any-return]

    def save(self, folder: Path | None = None) -> None:
        self.save_files(folder, self.snapshot_files())

    def snapshot_files(self) -> dict[str, bytes]:
        """model.zip (an SB3 DDPG / PPO holding this learner's weights) and its normalisation (pickle and JSON); no
        window.npz (dpd analyze / calibrate are SB3-only)."""
        model, vn = export_sb3(self.config, self.group.pack, self.slot)
        files = model_files(model, vn)
        model.env.close()
        return files

    def close(self) -> None:
        self.close_record()
        self._logger.close()
        self.group.release()


def export_sb3(config: ResolvedConfig, pack: Any, slot: int) -> tuple[Any, Any]:
    """Learner ``slot`` of ``pack`` as an SB3 DDPG (actor, critic and both targets copied in; ``num_timesteps`` set)
    on a 1-env VecEnv of the task, with its VecNormalize (statistics copied in, frozen) or None. The optimisers'
    states and the replay buffer are not carried over (the model is for acting; a pack resumes from its checkpoint)."""
    import torch as th
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from dpd.config import ALGOS, build_algo_kwargs
    from dpd.envs import env_factory
    from dpd.students.factory import algo_gamma

    venv: Any = DummyVecEnv([env_factory(config.env_id)])  # type: ignore[list-item]
    vn = None
    if config.normalize:
        vn = VecNormalize(venv, gamma=algo_gamma(config), norm_reward=False, training=False)
        rms: Any = vn.obs_rms  # a Box's RunningMeanStd
        if isinstance(pack, PPOPack):
            rms.mean, rms.var, rms.count = pack.obs_mean[slot].copy(), pack.obs_var[slot].copy(), float(pack.obs_count)
            vn.norm_reward = bool(pack.cfg.normalize_reward)
            vn.ret_rms.mean, vn.ret_rms.var = np.asarray(pack.ret_mean[slot]), np.asarray(pack.ret_var[slot])
            vn.ret_rms.count = float(pack.ret_count)
        else:
            rms.mean, rms.var, rms.count = pack.mean[slot].copy(), pack.var[slot].copy(), float(pack.count)
        venv = vn
    kwargs = build_algo_kwargs(config, pack.act_dim)
    cls: Any = ALGOS[config.algo][0]
    weights: dict[str, th.Tensor] = {}

    def put(prefix: str, w: Any, b: Any) -> None:  # a Linear: torch keeps (out, in)
        weights[f"{prefix}.weight"] = th.as_tensor(np.asarray(w).T.copy())
        weights[f"{prefix}.bias"] = th.as_tensor(np.asarray(b).copy())

    if isinstance(pack, PPOPack):
        model: Any = cls("MlpPolicy", venv, seed=config.seed, device="cpu", **kwargs)
        pol = jax.tree.map(lambda x: np.asarray(x[slot]), pack.policy)
        for j, (w, b) in enumerate(pol.pi[:-1]):  # nn.Sequential: Linear, Tanh, ...: the k-th Linear at index 2k
            put(f"mlp_extractor.policy_net.{2 * j}", w, b)
        put("action_net", *pol.pi[-1])
        for j, (w, b) in enumerate(pol.vf[:-1]):
            put(f"mlp_extractor.value_net.{2 * j}", w, b)
        put("value_net", *pol.vf[-1])
        weights["log_std"] = th.as_tensor(np.asarray(pol.log_std).copy())
        model.policy.load_state_dict(weights, strict=True)
        model.num_timesteps = pack.num_timesteps
        return model, vn
    buffer_size = kwargs.pop("buffer_size", 1_000_000)
    model = cls("MlpPolicy", venv, seed=config.seed, device="cpu", buffer_size=1, **kwargs)
    model.buffer_size = buffer_size
    model.num_timesteps = pack.num_timesteps
    ln = jax.tree.map(lambda x: np.asarray(x[slot]), pack.learners)
    for prefix, layers in (("actor.mu", ln.actor), ("actor_target.mu", ln.actor_target),
                           ("critic.qf0", ln.critic), ("critic_target.qf0", ln.critic_target)):
        for j, (w, b) in enumerate(layers):  # nn.Sequential: Linear, ReLU, ... : the k-th Linear at index 2k
            put(f"{prefix}.{2 * j}", w, b)
    model.policy.load_state_dict(weights, strict=True)
    return model, vn


__all__ = ["PackGroup", "PackLearner", "export_sb3", "pack_config", "ppo_config"]
