"""The pack's distillation phase (dpd.pack.distill) against dpd's torch Distiller, and pack invariance (4c)."""

import numpy as np
import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("optax")

import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from pack_helpers import from_torch, leaves_np, stack  # noqa: E402

from dpd.pack.ddpg import Learners, PackConfig  # noqa: E402
from dpd.pack.distill import DistillSpec, init_state, make_distill_phase, pair_peers  # noqa: E402

pytestmark = pytest.mark.extended  # make test-extended (CI runs it after make test)

OBS_DIM, ACT_DIM, W = 3, 1, 32  # Pendulum-v1; the window = the distillation batch: torch draws a permutation of it


# ---------------------------------------------------------------- parity with dpd's Distiller
def torch_pair(optimizer: str):
    """Two dpd DDPG students (real OffPolicyStudent, VecNormalize, Distiller) with W recorded transitions each, other
    observation statistics each, and a return std of 2 and 0.5 (xi_scale=return_std)."""
    from dpd.config import TrainConfig
    from dpd.students.factory import build_student

    cfg = TrainConfig.from_dict(dict(
        env_id="Pendulum-v1", algo="ddpg", preset="none", total_steps=10_000, iteration_steps=100, normalize=True,
        normalize_reward=False, distill_window=W, distill_batch_size=W, distill_optimizer=optimizer, alpha=2.0,
        algo_kwargs={"buffer_size": 100, "learning_starts": 10, "learning_rate": 1e-3,
                     "policy_kwargs": {"net_arch": [16, 16]}},
    )).resolve()
    students = [build_student(cfg, i, None) for i in range(2)]
    rng = np.random.default_rng(7)
    for i, s in enumerate(students):
        s.setup(cfg.steps_per_learner)
        s.iteration = 1
        rb = s.model.replay_buffer
        for _ in range(W):
            rb.add(rng.normal(0, 2, (1, OBS_DIM)), rng.normal(0, 2, (1, OBS_DIM)), rng.uniform(-1, 1, (1, ACT_DIM)),
                   np.zeros(1), np.zeros(1, bool), [{}])
        rms = s.vec_normalize.obs_rms
        rms.mean, rms.var = rng.normal(0, 0.5, OBS_DIM), rng.uniform(0.5, 3, OBS_DIM)
        s.recorder.ret_rms.var, s.recorder.ret_rms.count = [4.0, 0.25][i], 10.0
    return cfg, students


def pack_of(students, pcfg: PackConfig, tx):
    """The students' weights, buffers and statistics in the pack's layout (learner axis 2)."""
    actor = stack(*(from_torch(s.model.actor.mu) for s in students))
    critic = stack(*(from_torch(s.model.critic.qf0) for s in students))
    opt = jax.vmap(tx.init)
    learners = Learners(actor, critic, actor, critic, opt(actor), opt(critic), jnp.zeros((2, 2), jnp.uint32))
    obs = jnp.asarray(np.stack([s.model.replay_buffer.observations[:W, 0] for s in students]), jnp.float32)
    mean = jnp.asarray(np.stack([s.vec_normalize.obs_rms.mean for s in students]), jnp.float32)
    var = jnp.asarray(np.stack([s.vec_normalize.obs_rms.var for s in students]), jnp.float32)
    xi_div = jnp.asarray([s.distiller.xi_divisor(s) for s in students], jnp.float32)
    return learners, obs, mean, var, xi_div


@pytest.mark.parametrize("optimizer, steps", [("own", 1), ("own", 5), ("shared", 5)])
def test_a_phase_equals_dpds_distiller_on_sb3_ddpg(optimizer, steps):
    """From the same weights on the same recorded states: the JAX phase's actor after ``steps`` steps equals dpd's
    Distiller.phase on SB3 DDPG students (each with its own statistics), pair statistics too; learner 1 with
    ``steps`` 0 leaves the phase unchanged, its Adam state included."""
    cfg, students = torch_pair(optimizer)
    d = cfg.distill
    assert d.lr == 1e-4 and d.batch_size == W and d.optimizer == optimizer and d.xi_estimator == "two_critics"
    pcfg = PackConfig(net_arch=(16, 16), learning_rate=1e-3, batch_size=W)
    pack_tx = optax.adam(pcfg.learning_rate)
    spec = DistillSpec.from_config(d, max_steps=5)
    learners, obs, mean, var, xi_div = pack_of(students, pcfg, pack_tx)
    state = init_state(spec, pack_tx, learners.actor, [0, 1])
    before = leaves_np((learners.actor, learners.actor_opt, state.opt))
    phase = make_distill_phase(spec, pcfg, pack_tx)
    new, new_state, out = phase(learners, state, obs, jnp.int32(W), jnp.int32(W), mean, var,
                                jnp.asarray(pair_peers(2)), xi_div, jnp.asarray([steps, 0]))

    batches = [s.peer_batch() for s in students]  # both taken before either distils, as in the pack
    result = students[0].distill(batches[1], steps=steps)
    assert result.steps == steps and int(out.taken[0]) == steps and int(out.taken[1]) == 0
    for mine, theirs in zip(leaves_np(new.actor), leaves_np(from_torch(students[0].model.actor.mu)), strict=True):
        np.testing.assert_allclose(mine[0], theirs[0], rtol=0, atol=1e-5)
    moved = max(np.abs(a[0] - b[0]).max() for a, b in zip(leaves_np(new.actor), before, strict=False))
    assert moved > 1e-4  # the phase moved learner 0 (by far more than the tolerance)
    for name, theirs in result.pair.as_dict().items():
        np.testing.assert_allclose(float(out.pair[name][0]), theirs, rtol=1e-4, atol=1e-6, err_msg=name)
    assert result.stats is not None
    for name, theirs in result.stats.as_dict().items():
        np.testing.assert_allclose(float(out.stats[name][0]), theirs, rtol=1e-4, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(np.asarray(out.window_weights[0]), result.window_weights.numpy(), rtol=1e-5)
    after = leaves_np((new.actor, new.actor_opt, new_state.opt))
    for a, b in zip(after, before, strict=True):
        np.testing.assert_array_equal(a[1], b[1])  # steps 0: learner 1 bitwise unchanged


# ---------------------------------------------------------------- PPO: parity with dpd's Distiller
def ppo_pair():
    """Two dpd PPO students (OnPolicyStudent, VecNormalize with reward normalisation, Distiller) with W recorded raw
    states each, other observation and reward statistics each, return stds 2 and 0.5."""
    from dpd.config import TrainConfig
    from dpd.students.factory import build_student

    cfg = TrainConfig.from_dict(dict(
        env_id="Pendulum-v1", algo="ppo", preset="none", total_steps=10_000, normalize=True, normalize_reward=True,
        distill_window=W, distill_batch_size=W, alpha=2.0, distill_lr=1e-3,
        algo_kwargs={"n_steps": 64, "batch_size": 32, "policy_kwargs": {"net_arch": {"pi": [16, 16], "vf": [16]}}},
    )).resolve()
    students = [build_student(cfg, i, None) for i in range(2)]
    rng = np.random.default_rng(11)
    for i, s in enumerate(students):
        s.setup(cfg.steps_per_learner)
        s.iteration = 1
        rec = s.recorder
        rec._states[:W] = rng.normal(0, 2, (W, OBS_DIM))
        rec._count, rec._next = W, 0
        rms = s.vec_normalize.obs_rms
        rms.mean, rms.var = rng.normal(0, 0.5, OBS_DIM), rng.uniform(0.5, 3, OBS_DIM)
        s.vec_normalize.ret_rms.var = np.asarray([9.0, 0.5][i])
        rec.ret_rms.var, rec.ret_rms.count = [4.0, 0.25][i], 10.0
        with torch_no_grad():  # a non-zero mean head, so the two policies differ
            for p in s.policy.action_net.parameters():
                p.add_(torch_tensor(rng.normal(0, 0.3, tuple(p.shape))))
    return cfg, students


def torch_no_grad():
    import torch

    return torch.no_grad()


def torch_tensor(x):
    import torch

    return torch.as_tensor(x, dtype=torch.float32)


@pytest.mark.parametrize("steps", [1, 4])
def test_a_ppo_phase_equals_dpds_distiller_on_sb3_ppo(steps):
    """From the same weights on the same recorded states: the JAX PPO phase's policy-mean network after ``steps``
    steps equals dpd's Distiller.phase on SB3 PPO students (values in raw units through each one's reward scale,
    xi divided by each one's return std); the value net and log_std never move; learner 1 with 0 steps unchanged."""
    from dpd.pack.distill import ppo_distill_phase_jit
    from dpd.pack.ppo import Policy, PPOConfig

    cfg, students = ppo_pair()
    d = cfg.distill
    assert d.batch_size == W and d.optimizer == "own" and d.target == "mean"
    spec = DistillSpec.from_config(d, max_steps=4)
    pi = stack(*(from_torch([*s.policy.mlp_extractor.policy_net, s.policy.action_net]) for s in students))
    vf = stack(*(from_torch([*s.policy.mlp_extractor.value_net, s.policy.value_net]) for s in students))
    log_std = jnp.stack([jnp.asarray(s.policy.log_std.detach().numpy()) for s in students])
    policy = Policy(pi, vf, log_std)
    state = init_state(spec, None, pi, [0, 1])  # type: ignore[arg-type]
    windows = jnp.asarray(np.stack([s.recorder.recent_states() for s in students]), jnp.float32)
    mean = jnp.asarray(np.stack([s.vec_normalize.obs_rms.mean for s in students]), jnp.float32)
    var = jnp.asarray(np.stack([s.vec_normalize.obs_rms.var for s in students]), jnp.float32)
    scale = jnp.asarray([s.reward_scale() for s in students], jnp.float32)
    xi_div = jnp.asarray([s.distiller.xi_divisor(s) for s in students], jnp.float32)
    pcfg = PPOConfig(normalize=True, norm_eps=1e-8, clip_obs=10.0)
    before = leaves_np(policy)
    new, _, out = ppo_distill_phase_jit(spec, pcfg, spec.tx(None), policy, state, windows, jnp.ones(W, bool), mean,
                                        var, scale, jnp.asarray(pair_peers(2)), xi_div, jnp.asarray([steps, 0]))
    batches = [s.peer_batch() for s in students]
    result = students[0].distill(batches[1], steps=steps)
    assert int(out.taken[0]) == steps == result.steps
    theirs = from_torch([*students[0].policy.mlp_extractor.policy_net, students[0].policy.action_net])
    for mine, t in zip(leaves_np(new.pi), leaves_np(theirs), strict=True):
        np.testing.assert_allclose(mine[0], t[0], rtol=0, atol=2e-5)
    for name, value in result.pair.as_dict().items():
        np.testing.assert_allclose(float(out.pair[name][0]), value, rtol=1e-4, atol=1e-6, err_msg=name)
    after = leaves_np(new)
    n_pi = len(leaves_np(policy.pi))
    moved = max(np.abs(a[0] - b[0]).max() for a, b in zip(after[:n_pi], before[:n_pi], strict=True))
    assert moved > 1e-4
    for a, b in zip(after[n_pi:], before[n_pi:], strict=True):
        np.testing.assert_array_equal(a, b)  # the value net and log_std: untouched
    for a, b in zip(after, before, strict=True):
        np.testing.assert_array_equal(a[1], b[1])  # steps 0: learner 1 bitwise unchanged
