"""Students: raw states, own normalisation, raw value units, actor-only distillation."""

import numpy as np
import pytest
import torch as th

from dpd.config import TrainConfig
from dpd.students import PeerBatch
from dpd.students.factory import build_student


def make_pair(env_id="Pendulum-v1", normalize=True, **overrides):
    cfg = TrainConfig.from_dict(dict(
        env_id=env_id, algo="ppo", preset="none", total_steps=4096, normalize=normalize, n_envs=2,
        algo_kwargs={"n_steps": 128, "batch_size": 64, "n_epochs": 2}, **overrides,
    )).resolve()
    students = [build_student(cfg, i, None) for i in range(2)]
    for s in students:
        s.setup(cfg.steps_per_learner)
    return cfg, students


def test_peer_states_are_raw_observations_of_the_recent_window():
    _, (a, _peer) = make_pair(distill_window=100)
    assert a.peer_batch() is None  # nothing handed over before the first iteration
    a.iterate()
    batch = a.peer_batch()
    assert batch is not None and len(batch) == 100  # 2 envs x 128 steps > window
    # raw: the newest entries are exactly the un-normalised observations the env just returned
    vn = a.vec_normalize
    assert vn is not None
    np.testing.assert_allclose(batch.states[-2:], vn.get_original_obs(), rtol=1e-6)
    assert not np.allclose(batch.states[-2:], vn.normalize_obs(batch.states[-2:]))


def test_each_student_normalises_peer_states_with_its_own_statistics():
    _, (a, b) = make_pair()
    b.iterate()
    batch = b.peer_batch()
    assert batch is not None
    va, vb = a.vec_normalize, b.vec_normalize
    va.obs_rms.mean[:] = 5.0
    va.obs_rms.var[:] = 4.0
    vb.obs_rms.mean[:] = -5.0
    seen = []
    original = a.policy_outputs

    def spy(obs):
        seen.append(obs.detach().clone())
        return original(obs)

    a.policy_outputs = spy
    a.distill(batch)
    expected = np.clip((batch.states - 5.0) / np.sqrt(4.0 + va.epsilon), -va.clip_obs, va.clip_obs)
    # every distillation minibatch is a subset of the peer's states normalised with A's statistics
    all_obs = th.as_tensor(expected, dtype=th.float32)
    for obs in seen:
        dists = th.cdist(obs, all_obs, compute_mode="donot_use_mm_for_euclid_dist").min(dim=1).values
        assert dists.max().item() < 1e-5


def test_values_are_compared_in_raw_return_units():
    _, (a, b) = make_pair(xi_scale="none", weighting="uniform")
    a.iterate()
    b.iterate()
    a.vec_normalize.ret_rms.var = np.float64(100.0 - a.vec_normalize.epsilon)  # A's rewards were divided by 10
    b.vec_normalize.ret_rms.var = np.float64(400.0 - b.vec_normalize.epsilon)  # B's by 20
    a.value_estimates = lambda obs: th.ones(obs.shape[0])  # 1.0 normalised = 10 raw
    b.value_estimates = lambda obs: th.full((obs.shape[0],), 2.0)  # 2.0 normalised = 40 raw
    batch = b.peer_batch()
    np.testing.assert_allclose(batch.values, 40.0, rtol=1e-5)
    stats = a.distill(batch).pair
    assert stats.xi_mean == pytest.approx(30.0, rel=1e-5)  # 40 - 10 in raw units (normalised units would give 1)


def test_xi_scale_return_std_uses_the_students_return_std():
    _, (a, b) = make_pair(xi_scale="return_std", weighting="uniform")
    a.iterate()
    b.iterate()
    a.value_estimates = lambda obs: th.zeros(obs.shape[0])
    b.value_estimates = lambda obs: th.zeros(obs.shape[0])
    stats = a.distill(b.peer_batch()).pair
    divisor = a.distiller.xi_divisor(a)
    assert divisor == pytest.approx(a.recorder.return_std) and divisor > 1.0  # Pendulum returns are O(100)
    assert stats.xi_mean == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
def test_distillation_shrinks_the_action_distance_on_peer_states(env_id):
    _, (a, b) = make_pair(env_id, normalize=False, distill_steps=200, weighting="uniform")
    a.iterate()
    b.iterate()
    batch = b.peer_batch()
    before = a.distill(PeerBatch(batch.states, batch.outputs, batch.values)).stats
    after = a.distill(batch).stats
    # stats are averaged over the steps of each call: the second call starts where the first ended
    assert after.action_distance < 0.8 * before.action_distance


def test_distillation_moves_only_the_actor():
    _, (a, b) = make_pair(distill_steps=5, distill_lr=1e-2)
    a.iterate()
    b.iterate()
    policy = a.model.policy
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    a.distill(b.peer_batch())
    after = policy.state_dict()
    changed = {k for k in before if not th.equal(before[k], after[k])}
    assert changed and all(k.startswith(("mlp_extractor.policy_net", "action_net")) for k in changed)
    assert not any(k.startswith(("value_net", "mlp_extractor.value_net")) or k == "log_std" for k in changed)


def test_students_differ_in_initialisation_and_env_seed():
    _, (a, b) = make_pair()
    pa, pb = a.model.policy.state_dict(), b.model.policy.state_dict()
    assert not th.equal(pa["action_net.weight"], pb["action_net.weight"])
    a.iterate()
    b.iterate()
    assert not np.allclose(a.recorder.recent_states(), b.recorder.recent_states())
