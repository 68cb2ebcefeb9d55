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


def test_gradient_steps_are_sb3s_ddpg_steps():
    """Parity: from the same weights, on a buffer of one transition (every index SB3 or the pack draws is 0), three
    gradient steps of SB3's DDPG (critic, actor, Polyak) and of the pack end at the same parameters."""
    from pack_helpers import from_torch
    from stable_baselines3 import DDPG
    from stable_baselines3.common.logger import configure

    arch, obs_dim, act_dim = [8, 8], 3, 1
    model = DDPG("MlpPolicy", "Pendulum-v1", learning_rate=1e-3, buffer_size=10, batch_size=4, tau=0.01, gamma=0.99,
                 learning_starts=0, policy_kwargs={"net_arch": arch}, seed=0, device="cpu")
    cfg = PackConfig(net_arch=tuple(arch), batch_size=4, gradient_steps=3, normalize=False)
    pack = DDPGPack("Pendulum-v1", [0], cfg, max_steps=10)
    rng = np.random.default_rng(0)
    obs, nxt = rng.normal(size=(1, obs_dim)), rng.normal(size=(1, obs_dim))
    act, rew = rng.uniform(-1, 1, size=(1, act_dim)), np.array([0.7])
    model.replay_buffer.add(obs, nxt, act, rew, np.array([False]), [{}])

    nets = [from_torch(m) for m in (model.actor.mu, model.critic.qf0, model.actor_target.mu, model.critic_target.qf0)]
    learners = pack.learners._replace(actor=nets[0], critic=nets[1], actor_target=nets[2], critic_target=nets[3])
    learners = learners._replace(actor_opt=jax.vmap(pack.tx.init)(nets[0]), critic_opt=jax.vmap(pack.tx.init)(nets[1]))
    f32 = np.float32
    chunk = {"obs": obs[None].astype(f32), "next_obs": nxt[None].astype(f32), "actions": act[None].astype(f32),
             "rewards": rew[None].astype(f32), "terminated": np.zeros((1, 1), f32)}
    from dpd.pack.ddpg import Buffers

    buffers = pack._write(pack.buffers, Buffers(**{k: jax.numpy.asarray(v) for k, v in chunk.items()}),
                          jax.numpy.int32(0), jax.numpy.int32(1))
    w0 = np.asarray(nets[0][0][0])[0]  # the update donates (deletes) its input
    learners, _ = pack._update(learners, buffers, jax.numpy.int32(1), *pack._stats())
    model.set_logger(configure(None, []))
    model.train(gradient_steps=3, batch_size=4)
    pack.close()
    assert not np.allclose(w0, np.asarray(model.actor.mu[0].weight.detach().numpy().T))  # it moved
    after = [from_torch(m) for m in (model.actor.mu, model.critic.qf0, model.actor_target.mu, model.critic_target.qf0)]
    for mine, theirs in zip([learners.actor, learners.critic, learners.actor_target, learners.critic_target], after,
                            strict=True):
        for a, b in zip(leaves(mine), leaves(theirs), strict=True):
            assert np.allclose(a, b, atol=1e-6), np.abs(a - b).max()


@pytest.mark.parametrize("seeds, env_id, message", [
    ([], "Pendulum-v1", "one or more distinct"),
    ([0, 0], "Pendulum-v1", "one or more distinct"),  # a copy of a learner counted as a second seed
    ([0], "CartPole-v1", "DDPG needs continuous actions"),
])  # fmt: skip
def test_a_pack_refuses_what_it_cannot_train_in_one_line(seeds, env_id, message):
    from dpd import DPDUserError
    from dpd.pack import DDPGPack

    with pytest.raises(DPDUserError, match=message):
        DDPGPack(env_id, seeds)


def test_a_pack_past_the_machines_memory_is_refused(monkeypatch):
    import dpd.run_files
    from dpd import DPDUserError
    from dpd.pack import DDPGPack, PackConfig

    monkeypatch.setattr(dpd.run_files, "physical_memory", lambda: 1 << 20)  # a 1 MiB machine
    with pytest.raises(DPDUserError, match=r"needs .* GiB of replay buffers"):
        DDPGPack("Pendulum-v1", [0, 1], PackConfig(buffer_size=100_000))


def test_importing_the_pack_without_jax_names_the_extra():
    import subprocess
    import sys

    code = "import sys; sys.modules['jax'] = None; import dpd.pack"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "pip install 'dpd[jax]'" in proc.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("seed, noise_std", [(0, None), (1, None), (2, None), (3, 1.5)])  # None: the preset's 0.2
def test_action_noise_is_sb3s_normal_action_noise(seed, noise_std):
    """4b: given the same standard-normal draw, the pack's noisy clipped action (buffer and env sides) equals SB3's
    ``_sample_action`` with the ``NormalActionNoise`` dpd builds from the preset; the pack's noise is noise_std x a
    standard normal of its learner's Generator, and its noise_std is the preset's (std 1.5: the clip at 1 bites)."""
    from stable_baselines3 import DDPG
    from stable_baselines3.common.noise import NormalActionNoise

    from dpd.config import load_preset
    from dpd.pack.ddpg import noisy_action

    preset_std = load_preset("ddpg", "paper", "HalfCheetah-v5")["noise_std"]
    assert PackConfig().noise_std == preset_std
    std = preset_std if noise_std is None else noise_std
    model = DDPG("MlpPolicy", "Pendulum-v1", learning_starts=0, policy_kwargs={"net_arch": [8]}, seed=seed,
                 device="cpu")
    model._last_obs = model.env.reset()
    noise = NormalActionNoise(np.zeros(1), std * np.ones(1))
    scaled = model.policy.scale_action(model.predict(model._last_obs, deterministic=True)[0])
    np.random.seed(seed)
    z = np.random.standard_normal(1)  # the draw NormalActionNoise makes next (np.random.normal: mu + sigma * gauss)
    np.random.seed(seed)
    env_action, buffer_action = model._sample_action(0, noise, n_envs=1)
    low, high = model.action_space.low.astype(np.float64), model.action_space.high.astype(np.float64)
    mine_buffer, mine_env = noisy_action(scaled, std * z, low, high)
    assert np.allclose(mine_buffer, buffer_action, atol=1e-6) and np.allclose(mine_env, env_action, atol=1e-5)
    if noise_std is not None:
        assert np.abs(buffer_action).max() == 1.0  # the clip bit
    gen_a, gen_b = np.random.default_rng(seed), np.random.default_rng(seed)  # the pack's draw: r.normal(0, std, ...)
    assert np.allclose(gen_a.normal(0.0, std, (5, 1)), std * gen_b.standard_normal((5, 1)), rtol=0, atol=1e-15)


@pytest.mark.parametrize("make, words", [
    (lambda p: p.PPOPack("NoSuchEnv-v9", [0]), r"cannot make 'NoSuchEnv-v9' for a pack \(NameNotFound"),
    (lambda p: p.DDPGPack("NoSuchEnv-v9", [0]), "cannot make 'NoSuchEnv-v9' for a pack"),
    (lambda p: p.PPOPack("Pendulum-v1", [0], p.PPOConfig(n_steps=0)), "PPOConfig.n_steps must be a positive number"),
    (lambda p: p.DDPGPack("Pendulum-v1", [0], p.PackConfig(batch_size=0)), "PackConfig.batch_size must be a positive"),
    (lambda p: p.DDPGPack("Pendulum-v1", [0], p.PackConfig(gamma=1.5)), r"PackConfig.gamma must be in \(0, 1\]"),
    (lambda p: p.DDPGPack("Pendulum-v1", [0], p.PackConfig(learning_rate=float("nan"))), "learning_rate must be a"),
    (lambda p: p.DDPGPack("Pendulum-v1", [0]).learn(-5), r"learn\(steps\) takes a whole number .* got -5"),
    (lambda p: p.PPOPack("Pendulum-v1", [0]).learn(float("nan")), r"learn\(steps\) takes a whole number .* got nan"),
])  # fmt: skip
def test_a_pack_refuses_a_bad_env_config_or_budget_in_one_line(make, words):
    import dpd.pack as pack
    from dpd.errors import DPDUserError

    with pytest.raises(DPDUserError, match=words) as caught:
        make(pack)
    assert "\n" not in str(caught.value)


def test_per_learner_maps_like_vmap_with_shared_arguments_and_refuses_other_axes():
    """dpd.pack.batching.per_learner: vmap's results for in_axes of 0 and None (pytrees included), one line for what
    it does not map."""
    import jax.numpy as jnp

    from dpd.pack.batching import per_learner

    def f(params, shared, x):
        return {"y": params["w"] * shared + x, "s": jnp.sum(x)}

    params = {"w": jnp.arange(6.0).reshape(3, 2)}
    x = jnp.ones((3, 2)) * jnp.arange(3.0)[:, None]
    mapped = jax.jit(per_learner(f, in_axes=(0, None, 0)))(params, jnp.float32(2.0), x)
    vmapped = jax.vmap(f, in_axes=(0, None, 0))(params, jnp.float32(2.0), x)
    for a, b in zip(leaves(mapped), leaves(vmapped), strict=True):
        assert a.shape == b.shape and np.array_equal(a, b)
    assert leaves(mapped)[0].tolist() == [0.0, 2.0, 4.0]  # the sums: x's rows are 0, 1, 2 twice
    for axes, words in (((1, None, 0), "axis 0 or nothing"), ((None, None, None), "at least one"),
                        ((0, 0), "2 entries for 3")):
        with pytest.raises(ValueError, match=words):
            per_learner(f, in_axes=axes)(params, jnp.float32(2.0), x)


def test_per_learner_loops_on_the_cpu_and_batches_on_an_accelerator(monkeypatch):
    """The CPU: one learner's program in a loop (lax.map: a scan in the jaxpr), the same arithmetic whatever the
    pack's size; any other backend: vmap (batched, no loop), for the accelerator's parallelism."""
    import jax.numpy as jnp

    from dpd.pack.batching import per_learner

    def f(w, x):
        return jnp.tanh(x @ w)

    w, x = jnp.ones((4, 3, 2)), jnp.ones((4, 5, 3))
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")  # wherever the suite runs (a GPU machine too)
    assert "scan[" in str(jax.make_jaxpr(per_learner(f))(w, x))
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    batched = jax.make_jaxpr(per_learner(f))(w, x)
    assert "scan[" not in str(batched) and str(batched) == str(jax.make_jaxpr(jax.vmap(f))(w, x))


@pytest.mark.parametrize("net", ["ddpg", "ppo"])
def test_every_matrix_product_of_a_packs_networks_is_full_float32_forward_and_backward(net):
    """A GPU's default float32 product is TF32 (10-bit mantissa), SB3's (torch's) is float32: measured on an H200,
    the pack then left the parity tests' tolerance (dpd.pack.batching.dense). So every product of the networks, and
    of their gradients, asks for HIGHEST precision; on the CPU that changes no number."""
    import jax.numpy as jnp

    from dpd.pack.ddpg import mlp
    from dpd.pack.ppo import tanh_mlp

    fn = mlp if net == "ddpg" else tanh_mlp
    params = [(jnp.ones((3, 4)), jnp.zeros(4)), (jnp.ones((4, 2)), jnp.zeros(2))]
    jaxpr = str(jax.make_jaxpr(jax.grad(lambda p, x: fn(p, x).sum()))(params, jnp.ones((5, 3))))
    dots = jaxpr.count("dot_general[")
    assert dots == 2 + 3  # two layers forward; backward each layer's weight gradient and the hidden layer's input's
    assert jaxpr.count("precision=(Precision.HIGHEST, Precision.HIGHEST)") == dots


def test_an_update_needs_no_scratch_memory_that_grows_with_the_buffers():
    """The update reads each learner's minibatch from the pack's buffers in place: its scratch memory (XLA's temp
    allocation of the compiled update) is the same at 20,000 and 80,000 transitions per learner. Sliced per learner,
    it held a copy of a learner's whole buffer on every call (the pack's updates ran ~4x slower with 1e6-transition
    buffers: docs/performance.md)."""
    temp, per_learner = {}, {}
    for capacity in (20_000, 80_000):
        pack = DDPGPack("Pendulum-v1", [0, 1, 2], PackConfig(buffer_size=capacity), max_steps=None)
        compiled = pack._update.lower(pack.learners, pack.buffers, jax.numpy.int32(10), *pack._stats()).compile()
        temp[capacity] = compiled.memory_analysis().temp_size_in_bytes
        per_learner[capacity] = sum(x.nbytes for x in jax.tree.leaves(pack.buffers)) // 3
        pack.close()
    growth = temp[80_000] - temp[20_000]
    assert growth < (per_learner[80_000] - per_learner[20_000]) / 10, (temp, per_learner)
