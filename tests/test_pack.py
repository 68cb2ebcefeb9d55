"""dpd.pack (the JAX engine's DDPG pack) on a tiny CPU budget."""

import os
import subprocess
import sys

import numpy as np
import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("optax")

from dpd.pack import DDPGPack, PackConfig  # noqa: E402

TINY = PackConfig(net_arch=(32, 32), batch_size=32, learning_starts=50, train_freq=50, gradient_steps=10)


def leaves(tree) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.fixture(scope="module")
def trained():
    assert TINY.net_arch == (32, 32)
    pack = DDPGPack("Pendulum-v1", [0, 1, 2], TINY, max_steps=300)
    before = leaves(pack.learners)
    pack.learn(300)
    yield pack, before
    pack.close()


def test_a_pack_trains_every_learner_and_stays_finite(trained):
    pack, before = trained
    after = leaves(pack.learners)
    assert pack.num_timesteps == 300 and pack.size == 300
    assert all(np.isfinite(x).all() for x in after)
    assert pack.last_losses is not None and pack.last_losses.shape == (3, 10, 2) and np.isfinite(pack.last_losses).all()
    n_nets = 4 * 2 * 3  # actor, critic and their targets: 3 layers of (weight, bias) each
    assert all(not np.allclose(b, a) for b, a in zip(before[:n_nets], after[:n_nets], strict=True))
    w = np.asarray(pack.learners.actor[0][0])  # (N, obs_dim, 32)
    assert not np.allclose(w[0], w[1]) and not np.allclose(w[1], w[2])  # different seeds, different learners
    acts = pack.act(pack.obs)
    assert acts.shape == (3, 1) and np.all(np.abs(acts) <= 1)
    assert all(len(r) == 1 for r in pack.episode_returns)  # Pendulum: 200 steps per episode


def test_the_buffer_holds_scaled_actions_raw_observations_and_no_terminal_flag_at_a_timeout(trained):
    pack = trained[0]
    acts = np.asarray(pack.buffers.actions)[:, :300]
    assert np.all(np.abs(acts) <= 1) and acts.std() > 0.1
    assert not np.asarray(pack.buffers.terminated).any()  # Pendulum only times out: every step bootstraps
    obs, nxt = np.asarray(pack.buffers.obs)[:, :300], np.asarray(pack.buffers.next_obs)[:, :300]
    assert np.allclose(obs[:, 1:150], nxt[:, :149])  # raw (unnormalised) observations, chained within an episode
    assert np.allclose(np.linalg.norm(obs[:, :, :2], axis=-1), 1, atol=1e-5)  # cos, sin: raw


def test_the_normaliser_is_sb3s_running_mean_std(trained):
    """VecNormalize's statistics: the reset observation, then every observation the env returns (a reset one where
    an episode ended, which is the next row's obs in the buffer), replayed into SB3's RunningMeanStd."""
    from stable_baselines3.common.running_mean_std import RunningMeanStd

    pack = trained[0]
    obs = np.asarray(pack.buffers.obs)[:, :300].astype(np.float64)
    for i in range(3):
        rms = RunningMeanStd(shape=(3,))
        for o in [*obs[i], pack.obs[i]]:
            rms.update(o[None])
        assert np.allclose(pack.mean[i], rms.mean, atol=1e-6) and np.allclose(pack.var[i], rms.var, rtol=1e-5)


def test_a_learner_does_not_depend_on_its_pack(trained):
    """Learner seed 1 alone and beside seeds 0 and 2: the same warm-up transitions, the same parameters up to
    rounding."""
    pack = trained[0]
    alone = DDPGPack("Pendulum-v1", [1], TINY, max_steps=300)
    alone.learn(300)
    alone.close()
    assert np.array_equal(np.asarray(alone.buffers.actions)[0, :50], np.asarray(pack.buffers.actions)[1, :50])
    for a, p in zip(leaves(alone.learners.actor), leaves(pack.learners.actor), strict=True):
        assert np.allclose(a[0], p[1], atol=1e-4)


def test_import_dpd_does_not_import_jax():
    code = "import sys, dpd, dpd.api, dpd.cli; assert 'jax' not in sys.modules, 'jax imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ})
    assert done.returncode == 0, done.stderr[-2000:]
