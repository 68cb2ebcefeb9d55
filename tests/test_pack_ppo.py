"""The PPO pack (``dpd.pack.ppo``) against Stable-Baselines3's own PPO code (4b), its pack invariance (4c) and a
learning smoke test.

Parity: SB3's RolloutBuffer is filled by hand (random observations, actions, rewards, episode starts inside the
rollout, values and old log-probabilities perturbed so that ratio and value clipping bite), SB3 computes GAE and runs
``PPO.train()`` with a seeded NumPy permutation; the pack's :func:`~dpd.pack.ppo.ppo_epochs` gets the same weights,
the same rollout and the same permutations. Both must end at the same parameters and Adam moments (float32 rounding).
"""

import numpy as np
import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("optax")

import jax.numpy as jnp  # noqa: E402
from pack_helpers import from_torch, leaves_np  # noqa: E402

from dpd.pack.ppo import Policy, PPOConfig, PPOPack, Rollout, gae, make_adam, ppo_epochs  # noqa: E402

pytestmark = pytest.mark.extended  # make test-extended (CI runs it after make test)

T, BATCH, EPOCHS, OBS_DIM, ACT_DIM = 32, 8, 2, 3, 1
PROGRESS = 0.6  # the lin_ schedule's progress_remaining at this update
LR0 = 3e-4


def sb3_ppo(clip_range_vf: float | None, max_grad_norm: float, ent_coef: float):
    from stable_baselines3 import PPO
    from stable_baselines3.common.logger import configure

    model = PPO("MlpPolicy", "Pendulum-v1", n_steps=T, batch_size=BATCH, n_epochs=EPOCHS,
                learning_rate=lambda p: LR0 * p, clip_range=0.2, clip_range_vf=clip_range_vf, gamma=0.99,
                gae_lambda=0.95, ent_coef=ent_coef, vf_coef=0.5, max_grad_norm=max_grad_norm, seed=0, device="cpu",
                policy_kwargs={"net_arch": {"pi": [8, 8], "vf": [8, 8, 8]}, "activation_fn": __import__("torch").nn.Tanh})
    model.set_logger(configure(None, []))
    model._current_progress_remaining = PROGRESS
    return model


def sb3_policy(model) -> Policy:
    p = model.policy
    pi = from_torch(p.mlp_extractor.policy_net) + from_torch([p.action_net])
    vf = from_torch(p.mlp_extractor.value_net) + from_torch([p.value_net])
    return Policy(pi, vf, jnp.asarray(p.log_std.detach().numpy()[None]))


def fill(model, last_done: bool) -> dict:
    """A rollout of T steps into SB3's buffer, then its GAE; returns what the pack gets (the buffer's own float32
    arrays, copied before ``train`` flattens them)."""
    import torch

    rng = np.random.default_rng(7)
    buf = model.rollout_buffer
    buf.reset()
    obs = rng.normal(size=(T, OBS_DIM)).astype(np.float32)
    with torch.no_grad():
        _, true_values, true_logp = model.policy(torch.as_tensor(obs))
        actions = model.policy.get_distribution(torch.as_tensor(obs)).sample().numpy()
        true_logp = model.policy.get_distribution(torch.as_tensor(obs)).log_prob(torch.as_tensor(actions)).numpy()
    starts = np.zeros(T, np.float32)
    starts[[0, 11, 12, 25]] = 1.0  # episode boundaries inside the rollout (two in a row: a one-step episode)
    old_logp = true_logp + rng.normal(0, 0.3, T)  # ratios far from 1: the clip bites
    old_values = true_values.numpy()[:, 0] + rng.normal(0, 0.5, T)  # the value clip bites
    rewards = rng.normal(size=T)
    for t in range(T):
        buf.add(obs[t : t + 1], actions[t : t + 1], rewards[t : t + 1], starts[t : t + 1],
                torch.tensor([[old_values[t]]], dtype=torch.float32), torch.tensor([old_logp[t]], dtype=torch.float32))
    last_value, done = np.float32(0.37), np.array([last_done])
    buf.compute_returns_and_advantage(torch.tensor([[last_value]]), done)
    fields = ("observations", "actions", "rewards", "episode_starts", "values", "log_probs")  # (T, 1, ...) each
    return {"rollout": Rollout(*(jnp.asarray(getattr(buf, f)[None, :, 0]) for f in fields)),
            "last_value": jnp.asarray([last_value]), "last_done": jnp.asarray([float(last_done)], jnp.float32),
            "advantages": buf.advantages[:, 0].copy(), "returns": buf.returns[:, 0].copy()}


@pytest.mark.parametrize("last_done", [False, True])
def test_gae_is_sb3s_compute_returns_and_advantage(last_done):
    model = sb3_ppo(None, 0.5, 0.0)
    data = fill(model, last_done)
    cfg = PPOConfig()
    adv, ret = jax.vmap(gae, in_axes=(0, 0, 0, None, None))(data["rollout"], data["last_value"], data["last_done"],
                                                           cfg.gamma, cfg.gae_lambda)
    assert np.allclose(np.asarray(adv)[0], data["advantages"], rtol=1e-5, atol=1e-6)
    assert np.allclose(np.asarray(ret)[0], data["returns"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("clip_range_vf, max_grad_norm, ent_coef", [
    (None, 0.5, 0.0),  # the paper preset: gradients clipped (their norm is above 0.5 here), no value clip
    (0.2, 0.5, 0.01),  # value clipping and an entropy bonus
    (None, 1e3, 0.0),  # the gradient clip inactive
])  # fmt: skip
def test_one_ppo_update_is_sb3s_train(clip_range_vf, max_grad_norm, ent_coef):
    """Two epochs of four minibatches of SB3's PPO.train against the pack's ppo_epochs from the same weights, the
    same rollout and the same permutations: parameters, log_std and Adam's moments equal to float32 rounding."""
    model = sb3_ppo(clip_range_vf, max_grad_norm, ent_coef)
    data = fill(model, last_done=True)
    cfg = PPOConfig(pi_arch=(8, 8), vf_arch=(8, 8, 8), n_steps=T, batch_size=BATCH, n_epochs=EPOCHS,
                    clip_range_vf=clip_range_vf, max_grad_norm=max_grad_norm, ent_coef=ent_coef)
    policy = sb3_policy(model)
    adam = make_adam(cfg)
    opt = jax.vmap(adam.init)(policy)
    np.random.seed(123)
    perms = np.stack([np.random.permutation(T) for _ in range(EPOCHS)])  # what SB3's RolloutBuffer.get will draw
    np.random.seed(123)
    model.train()

    run = jax.jit(jax.vmap(lambda *a: ppo_epochs(cfg, adam, *a), in_axes=(0, 0, 0, 0, 0, None, None, None)))
    mine, mine_opt, stats = run(policy, opt, data["rollout"], data["last_value"], data["last_done"],
                                jnp.float32(LR0 * PROGRESS), jnp.float32(0.2), jnp.asarray(perms))
    stats = np.asarray(stats)[0]
    assert stats[:, 3].max() > 0  # some ratios were clipped
    theirs = sb3_policy(model)
    assert not np.allclose(np.asarray(policy.pi[0][0]), np.asarray(theirs.pi[0][0]))  # it moved
    for a, b in zip(leaves_np(mine), leaves_np(theirs), strict=True):
        assert np.allclose(a, b, rtol=1e-5, atol=1e-6), np.abs(a - b).max()
    # Adam's moments and step count, parameter by parameter
    state, named = model.policy.optimizer.state, dict(model.policy.named_parameters())
    names = ["mlp_extractor.policy_net.0", "mlp_extractor.policy_net.2", "action_net", "mlp_extractor.value_net.0",
             "mlp_extractor.value_net.2", "mlp_extractor.value_net.4", "value_net"]
    for field, torch_key in (("mu", "exp_avg"), ("nu", "exp_avg_sq")):
        moments = getattr(mine_opt, field)
        layers = [*moments.pi, *moments.vf]
        for name, (w, b) in zip(names, layers, strict=True):
            for arr, suffix, tr in ((w, "weight", True), (b, "bias", False)):
                ref = state[named[f"{name}.{suffix}"]][torch_key].numpy()
                assert np.allclose(np.asarray(arr)[0], ref.T if tr else ref, rtol=1e-4, atol=1e-9), (name, field)
        assert np.allclose(np.asarray(moments.log_std)[0], state[named["log_std"]][torch_key].numpy(), rtol=1e-4)
    assert int(np.asarray(mine_opt.count)[0]) == EPOCHS * T // BATCH == state[named["log_std"]]["step"].item()


def test_grad_clip_was_active_in_the_preset_case():
    """The parity case with max_grad_norm 0.5 is only a test of the clip if the gradients' norm exceeds it."""
    import torch

    model = sb3_ppo(None, 0.5, 0.0)
    fill(model, last_done=True)
    norms = []
    orig = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm, *a, **k):
        total = orig(params, max_norm, *a, **k)
        norms.append(float(total))
        return total

    torch.nn.utils.clip_grad_norm_ = spy
    try:
        model.train()
    finally:
        torch.nn.utils.clip_grad_norm_ = orig
    assert len(norms) == EPOCHS * T // BATCH and max(norms) > 0.5


def test_orthogonal_init_is_sb3s_law():
    """SB3's ortho_init: orthogonal rows / columns times the gain (sqrt 2 inside, 0.01 action mean, 1 value),
    biases 0, log_std 0."""
    pack = PPOPack("Pendulum-v1", [0], PPOConfig(n_steps=64, batch_size=64))
    pack.close()
    for net, gain_out in ((pack.policy.pi, 0.01), (pack.policy.vf, 1.0)):
        for k, (w, b) in enumerate(net):
            w = np.asarray(w)[0]
            gain = gain_out if k == len(net) - 1 else np.sqrt(2)
            small = w if w.shape[0] <= w.shape[1] else w.T  # (min, max): its rows are orthonormal
            assert np.allclose(small @ small.T, gain**2 * np.eye(small.shape[0]), atol=1e-5)
            assert not np.asarray(b).any()
    assert not np.asarray(pack.policy.log_std).any()


# ---------------------------------------------------------------- the pack
SMALL = PPOConfig(pi_arch=(16, 16), vf_arch=(16, 16), n_steps=128, batch_size=32, n_epochs=3)


def test_a_learner_in_a_pack_of_4_equals_it_alone():
    """Seed 2 alone and beside seeds 0, 1, 3: the same actions, rewards and statistics, the same parameters after
    two rollouts and updates (its own env, its own keys; vmapped maths may round differently: float32 tolerance)."""
    pack = PPOPack("Pendulum-v1", [0, 1, 2, 3], SMALL).learn(256)
    alone = PPOPack("Pendulum-v1", [2], SMALL).learn(256)
    pack.close()
    alone.close()
    for a, p in zip(leaves_np(alone.policy), leaves_np(pack.policy), strict=True):
        assert np.allclose(a[0], p[2], rtol=1e-4, atol=1e-5), np.abs(a[0] - p[2]).max()
    assert np.allclose(alone.obs_mean[0], pack.obs_mean[2]) and np.allclose(alone.ret_var[0], pack.ret_var[2])
    assert alone.episode_returns[0] == pytest.approx(pack.episode_returns[2], rel=1e-5)
    w = np.asarray(pack.policy.pi[0][0])
    assert not np.allclose(w[0], w[1])  # different seeds, different learners


def test_replaying_rollouts_a_learner_in_a_pack_of_4_equals_it_alone_after_100_updates():
    """4c for PPO: the same recorded rollouts and update keys through PPOPack's own jitted update, 5 calls of 5
    epochs x 4 minibatches = 100 gradient steps: each learner of a pack of 4 against it as a pack of 1."""
    cfg = PPOConfig(pi_arch=(16, 16), vf_arch=(16, 16), n_steps=64, batch_size=16, n_epochs=5)
    seeds = [3, 4, 5, 6]

    def recorded(seed: int) -> tuple:
        r = np.random.default_rng([seed, 9])
        t = cfg.n_steps
        f32 = np.float32
        ro = Rollout(r.normal(size=(t, OBS_DIM)).astype(f32), r.normal(size=(t, ACT_DIM)).astype(f32),
                     r.normal(size=t).astype(f32), (r.uniform(size=t) < 0.05).astype(f32),
                     r.normal(size=t).astype(f32), r.normal(-1.5, 0.3, size=t).astype(f32))
        return ro, f32(r.normal()), f32(r.uniform() < 0.5)

    def train(pack: PPOPack, picked: list[int], update) -> Policy:
        data = [recorded(s) for s in picked]
        rollout = Rollout(*(jnp.asarray(np.stack(x)) for x in zip(*(d[0] for d in data), strict=True)))
        last_v, last_d = jnp.asarray([d[1] for d in data]), jnp.asarray([d[2] for d in data])
        policy, opt, keys = pack.policy, pack.opt_state, pack.update_keys
        for _ in range(5):
            policy, opt, _, keys = update(policy, opt, rollout, last_v, last_d, jnp.float32(3e-4), jnp.float32(0.2),
                                          keys)
        return policy

    four = PPOPack("Pendulum-v1", seeds, cfg)
    together = train(four, seeds, four._update)
    four.close()
    ones = [PPOPack("Pendulum-v1", [s], cfg) for s in seeds]  # each seed's initial state; one compiled update
    worst = 0.0
    for i, (s, one) in enumerate(zip(seeds, ones, strict=True)):
        alone = train(one, [s], ones[0]._update)
        one.close()
        worst = max(worst, max(float(np.abs(a[0] - b[i]).max()) for a, b in
                               zip(leaves_np(alone), leaves_np(together), strict=True)))
    print(f"max abs difference {worst}")
    assert worst <= 100 * float(np.finfo(np.float32).eps), f"max abs difference {worst}"


def test_the_normalisers_are_vecnormalizes():
    """A pack of one against SB3's VecNormalize fed the same actions: observation and return statistics, the
    normalised observations the policy acted on and the normalised rewards (timeout bootstrap aside)."""
    import gymnasium as gym
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    cfg = PPOConfig(pi_arch=(8,), vf_arch=(8,), n_steps=64, batch_size=64, n_epochs=1)
    pack = PPOPack("Pendulum-v1", [5], cfg)
    venv = DummyVecEnv([lambda: gym.make("Pendulum-v1")])
    venv.seed(5)
    vn = VecNormalize(venv, gamma=cfg.gamma)
    first = vn.reset()
    assert np.allclose(pack.obs, first.astype(np.float32))
    rollout, _, _ = pack.collect()
    pack.close()
    acts = np.clip(np.asarray(rollout.actions)[0], -2, 2)
    seen = [first]
    rewards = []
    for a in acts:
        o, r, _, _ = vn.step(a[None])
        seen.append(o)
        rewards.append(r[0])
    assert np.allclose(np.asarray(rollout.obs)[0], np.concatenate(seen[:-1]).astype(np.float32), atol=1e-6)
    assert np.allclose(np.asarray(rollout.rewards)[0], rewards, rtol=1e-5)  # no timeout within 64 steps
    assert np.allclose(pack.obs_mean[0], vn.obs_rms.mean) and np.allclose(pack.obs_var[0], vn.obs_rms.var)
    assert np.allclose(pack.ret_var[0], vn.ret_rms.var) and pack.obs_count == pytest.approx(vn.obs_rms.count)


def test_a_rollout_is_sb3s_collect_rollouts():
    """SB3's own collect_rollouts on a VecNormalize-d Pendulum (observations and rewards normalised, a time limit at
    step 200: the timeout bootstrap) against the pack's collect from the same weights, acting SB3's sampled actions:
    the same normalised observations, rewards, episode starts, values and log-probabilities, the same GAE, then the
    same update (SB3's train with its permutations; the pack's ppo_epochs)."""
    import gymnasium as gym
    from stable_baselines3 import PPO
    from stable_baselines3.common.logger import configure
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from dpd.pack.ppo import log_prob_fn, tanh_mlp, value_fn

    n = 256
    cfg = PPOConfig(pi_arch=(8, 8), vf_arch=(8, 8, 8), n_steps=n, batch_size=64, n_epochs=2, linear_lr=False)
    venv = VecNormalize(DummyVecEnv([lambda: gym.make("Pendulum-v1")]), gamma=cfg.gamma)
    model = PPO("MlpPolicy", venv, n_steps=n, batch_size=64, n_epochs=2, learning_rate=cfg.learning_rate, seed=5,
                device="cpu", policy_kwargs={"net_arch": {"pi": [8, 8], "vf": [8, 8, 8]},
                                             "activation_fn": __import__("torch").nn.Tanh})
    model.set_logger(configure(None, []))
    _, callback = model._setup_learn(n, None)
    model.collect_rollouts(model.env, callback, model.rollout_buffer, n_rollout_steps=n)
    buf = model.rollout_buffer

    pack = PPOPack("Pendulum-v1", [5], cfg)
    pack.policy = sb3_policy(model)
    actions = iter(buf.actions[:, 0])
    pi_mean, values = jax.jit(jax.vmap(tanh_mlp)), jax.jit(jax.vmap(value_fn))

    def sb3_actions(policy, obs, keys):  # SB3's draws, the pack's values and log-probabilities
        a = jnp.asarray(next(actions))[None]
        return a, values(policy, obs), jax.vmap(log_prob_fn)(pi_mean(policy.pi, obs), policy.log_std, a), keys

    pack._act = sb3_actions
    rollout, last_values, dones = pack.collect()
    pack.close()
    mine = {f: np.asarray(getattr(rollout, f))[0] for f in Rollout._fields}
    for f in ("obs", "actions", "episode_starts", "values", "log_probs", "rewards"):
        theirs = getattr(buf, "observations" if f == "obs" else f)[:, 0]
        assert np.allclose(mine[f], theirs, rtol=1e-5, atol=1e-5), (f, np.abs(mine[f] - theirs).max())
    assert mine["episode_starts"][200] == 1  # the time limit fell inside the rollout (its bootstrap is in rewards)
    assert np.allclose(pack.obs_mean[0], venv.obs_rms.mean) and np.allclose(pack.ret_var[0], venv.ret_rms.var)
    adv, _ = gae(rollout._replace(**{f: x[0] for f, x in rollout._asdict().items()}), jnp.asarray(last_values[0]),
                 jnp.asarray(dones[0]), cfg.gamma, cfg.gae_lambda)
    assert np.allclose(np.asarray(adv), buf.advantages[:, 0], rtol=1e-4, atol=1e-5)

    adam = make_adam(cfg)
    np.random.seed(11)
    perms = np.stack([np.random.permutation(n) for _ in range(2)])
    np.random.seed(11)
    model.train()
    run = jax.jit(jax.vmap(lambda *a: ppo_epochs(cfg, adam, *a), in_axes=(0, 0, 0, 0, 0, None, None, None)))
    policy = pack.policy
    out, _, _ = run(policy, jax.vmap(adam.init)(policy), rollout, jnp.asarray(last_values), jnp.asarray(dones),
                    jnp.float32(cfg.learning_rate), jnp.float32(cfg.clip_range), jnp.asarray(perms))
    for a, b in zip(leaves_np(out), leaves_np(sb3_policy(model)), strict=True):
        assert np.allclose(a, b, rtol=1e-4, atol=1e-5), np.abs(a - b).max()


def test_the_pack_learns_inverted_pendulum():
    """A short seeded run on InvertedPendulum-v5: the last episodes' mean return beats the first episodes' (the
    untrained policy balances for ~5-10 steps)."""
    cfg = PPOConfig(pi_arch=(32, 32), vf_arch=(32, 32), n_steps=512, batch_size=64, n_epochs=10, learning_rate=1e-3)
    pack = PPOPack("InvertedPendulum-v5", [0, 1], cfg).learn(512 * 12)
    pack.close()
    for returns in pack.episode_returns:
        first, last = np.mean(returns[:20]), np.mean(returns[-5:])
        assert last > 3 * first and last > 50, (first, last)


def test_a_ppo_pack_refuses_what_it_cannot_train():
    from dpd import DPDUserError

    with pytest.raises(DPDUserError, match="continuous actions"):
        PPOPack("CartPole-v1", [0])
    with pytest.raises(DPDUserError, match="multiple of batch_size"):
        PPOPack("Pendulum-v1", [0], PPOConfig(n_steps=100, batch_size=64))
    with pytest.raises(DPDUserError, match="distinct"):
        PPOPack("Pendulum-v1", [1, 1])



def test_the_default_config_is_the_paper_preset_and_sb3s_defaults():
    """PPOConfig() is dpd's PPO paper preset, and SB3's PPO defaults where the preset says nothing."""
    import inspect

    from stable_baselines3 import PPO

    from dpd.config import load_preset

    preset, cfg = load_preset("ppo", "paper", "HalfCheetah-v5"), PPOConfig()
    lr = preset.pop("learning_rate")
    assert lr.startswith("lin_") and float(lr[4:]) == cfg.learning_rate and cfg.linear_lr
    assert preset.pop("policy_kwargs") == {"activation_fn": "tanh",
                                           "net_arch": {"pi": list(cfg.pi_arch), "vf": list(cfg.vf_arch)}}
    assert preset.pop("normalize") is cfg.normalize is cfg.normalize_reward is True  # normalize_reward follows it
    assert preset == {k: getattr(cfg, k) for k in preset}, preset
    sb3 = {k: p.default for k, p in inspect.signature(PPO.__init__).parameters.items()}
    assert (sb3["clip_range_vf"], sb3["normalize_advantage"], sb3["target_kl"], sb3["use_sde"]) == (
        cfg.clip_range_vf, cfg.normalize_advantage, None, False)
