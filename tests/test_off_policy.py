"""Off-policy students (DDPG, TD3, SAC): replay-window states, own-critic values, actor-only distillation."""

import numpy as np
import pytest
import torch as th
from stable_baselines3 import DDPG, SAC

from dpd import TrainConfig, load_learner, train
from dpd.cli import main
from dpd.errors import DPDUserError
from dpd.students.factory import build_student


def make_pair(algo="td3", window=100, buffer_size=300, normalize=False, **overrides):
    cfg = TrainConfig.from_dict(dict(
        env_id="Pendulum-v1", algo=algo, preset="none", total_steps=10_000, distill_window=window, iteration_steps=250,
        normalize=normalize,
        algo_kwargs={"buffer_size": buffer_size, "learning_starts": 50, "policy_kwargs": {"net_arch": [32, 32]}},
        **overrides,
    )).resolve()
    students = [build_student(cfg, i, None) for i in range(2)]
    for s in students:
        s.setup(cfg.steps_per_learner)
    return cfg, students


@pytest.mark.parametrize("normalize", [False, True])
def test_peer_states_are_the_most_recent_replay_window_even_after_wrap_around(normalize):
    _, (a, _b) = make_pair(window=100, buffer_size=480, normalize=normalize)
    rb = a.model.replay_buffer
    for expected_full in (False, True):  # 250 steps: not wrapped yet; 500 steps: the ring has wrapped
        a.iterate()
        assert rb.full == expected_full
        states = a.recent_states()
        assert states.shape == (100, 3)
        idx = (np.arange(rb.pos - 100, rb.pos)) % rb.buffer_size
        np.testing.assert_array_equal(states, rb.observations[idx, 0])
        # independent witness: the raw states the env returned (recorded below VecNormalize), shifted by one
        # because the buffer stores s_t while the recorder already holds s_{t+1}
        witnessed = a.recorder.recent_states()
        np.testing.assert_allclose(states[1:], witnessed[:-1], rtol=1e-6)
    assert rb.pos < 100  # the window really straddled the end of the ring


@pytest.mark.parametrize("algo", ["td3", "ddpg", "sac"])
def test_value_is_the_students_own_critic_at_its_own_action(algo):
    _, (a, b) = make_pair(algo, weighting="uniform", xi_scale="none", distill_batch_size=100)
    a.iterate()
    b.iterate()
    obs = a.normalize_obs(a.recent_states())
    policy = a.model.policy
    with th.no_grad():
        if algo == "sac":
            action = policy.actor(obs, deterministic=True)
            expected = th.min(*policy.critic(obs, action)).squeeze(-1)
        else:
            expected = policy.critic.q1_forward(obs, policy.actor(obs)).squeeze(-1)
    th.testing.assert_close(a.value_estimates(obs), expected)
    # and xi in distillation is the peer's value minus exactly this: V_peer (the peer's own critic and action), or for
    # sac (xi_estimator=own_critic, its default) this student's critic at the peer's action
    batch = b.peer_batch()
    obs_b = a.normalize_obs(batch.states)
    peer = (a.raw_q_values(obs_b, th.as_tensor(batch.outputs)) if algo == "sac" else th.as_tensor(batch.values))
    xi = float((peer - a.raw_values(obs_b)).mean())
    stats = a.distill(batch, steps=1).stats  # one batch = the whole 100-state window
    assert stats.xi_mean == pytest.approx(xi, rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("algo", ["td3", "sac"])
def test_distillation_changes_only_actor_parameters(algo):
    _, (a, b) = make_pair(algo, distill_lr=1e-2)
    a.iterate()
    b.iterate()
    before = {k: v.clone() for k, v in a.model.policy.state_dict().items()}
    a.distill(b.peer_batch(), steps=3)
    after = a.model.policy.state_dict()
    changed = {k for k in before if not th.equal(before[k], after[k])}
    allowed = ("actor.mu",) if algo == "td3" else ("actor.latent_pi", "actor.mu")
    assert changed and all(k.startswith(allowed) for k in changed), changed
    assert not any(k.startswith(("critic", "actor_target", "critic_target", "actor.log_std")) for k in changed)


def test_one_distillation_step_per_rl_gradient_step_by_default():
    _, (a, b) = make_pair()
    a.iterate()
    b.iterate()
    assert a.last_gradient_steps == 250 - 50  # train_freq 1, gradient_steps 1, after learning_starts
    assert a.distiller.scheduled_steps(a) == a.last_gradient_steps


def test_a_ratio_under_half_a_step_per_iteration_still_distils_through_the_carry():
    """distill_ratio 0.002 x 200 RL gradient steps = 0.4 steps a phase: the phases take 0, 0, 1, 0, 1 (the fraction
    carried). It was rounded before the carry (0.4 -> 0 every phase): a small ratio never distilled."""
    _, (a, b) = make_pair(distill_ratio=0.002)
    a.iterate()
    b.iterate()
    assert a.distiller.scheduled_steps(a) == pytest.approx(0.4)
    taken = [a.distill(b.peer_batch()).steps for _ in range(5)]
    assert taken == [0, 0, 1, 0, 1]


@pytest.mark.slow  # two runs of 24k total env steps (~3 min on a free core): `make slow`
def test_dpd_td3_on_pendulum_stays_within_the_measured_gap_to_the_independent_pair_at_the_same_budget():
    """DPD-TD3 against the same pair never distilled (method independent), same seed, same 24k total env steps.

    Measured over 6 seeds (the TD3-on-Pendulum study, docs/reproduction.md section 3): the independent pair's better
    student solves Pendulum (-103 .. -124; random is about -1300); DPD-TD3's is behind it on 3 seeds (seed 0 here:
    -763 against -103) and level on 3. So the test asserts the control learns and DPD-TD3 falls no further behind
    than the study measured (worst seed: TD3_PENDULUM_GAP); a threshold on DPD alone told neither apart."""
    config = TrainConfig(env_id="Pendulum-v1", algo="td3", total_steps=24_000, seed=0, eval_freq=4000,
                         eval_episodes=5, algo_kwargs={"learning_starts": 1000, "policy_kwargs": {"net_arch": [64, 64]}})
    best = {method: max(v["final_eval_return"] for v in train(config.with_values(method=method))["learners"].values())
            for method in ("independent", "dpd")}
    assert best["independent"] >= -400, best
    assert best["dpd"] - best["independent"] >= TD3_PENDULUM_GAP - 200, best


#: the study's most negative per-seed difference of the better students' final returns, DPD-TD3 minus the independent
#: pair (studies/td3-pendulum/result.json)
TD3_PENDULUM_GAP = -660.0


@pytest.mark.parametrize("algo,cls", [("sac", SAC), ("ddpg", DDPG)])
def test_a_saved_off_policy_student_loads_and_predicts_as_sb3s_own_load(tmp_path, algo, cls):
    out = tmp_path / "run"
    cfg = TrainConfig(env_id="Pendulum-v1", algo=algo, total_steps=1200, iteration_steps=300, eval_freq=600,
                      eval_episodes=1, normalize=True, algo_kwargs={"learning_starts": 100, "buffer_size": 2000,
                                                                      "policy_kwargs": {"net_arch": [16, 16]}})
    summary = train(cfg, out)
    assert summary["learners"]["student1"]["env_steps"] >= 600
    model = cls.load(out / "student1" / "model.zip", device="cpu")
    obs = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    loaded, _env = load_learner(out, "student1")
    np.testing.assert_allclose(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    assert isinstance(loaded, cls) and (out / "student1" / "vecnormalize.pkl").is_file()


def test_off_policy_on_discrete_actions_is_a_clear_cli_error(capsys, tmp_path):
    code = main(["train", "--env", "CartPole-v1", "--algo", "td3", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "td3 needs continuous (Box) actions" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def _sac_student(ent_coef: float, **distill):
    """Student 0 of a SAC pair with a FIXED entropy coefficient: the same seed, so two of them start alike."""
    cfg = TrainConfig.from_dict(dict(
        env_id="Pendulum-v1", algo="sac", preset="none", total_steps=2000, iteration_steps=500, normalize=False,
        xi_scale="none", distill_window=200,
        algo_kwargs={"learning_starts": 100, "ent_coef": ent_coef, "policy_kwargs": {"net_arch": [32, 32]}},
        **distill)).resolve()
    s = build_student(cfg, 0, None)
    s.setup(cfg.steps_per_learner)
    s.iterate()  # 400 SAC gradient steps: each soft critic learns its own entropy bonus
    return s


def test_sac_xi_carries_no_entropy_gap_between_students_with_different_entropy_coefficients():
    """Two SAC students that act alike have xi = 0 whatever their entropy coefficients. A soft critic's Q holds
    ent_coef x the policy's future entropy, so the paper's V_peer - V_self (two_critics) read a peer with a larger
    ent_coef as better everywhere: here by about +8 return units on every state, though the policies are equal."""
    low, high = _sac_student(0.0), _sac_student(10.0)
    high.model.policy.actor.load_state_dict(low.model.policy.actor.state_dict())  # the same policy from here on
    batch = high.peer_batch()
    obs = low.normalize_obs(batch.states)
    gap = th.as_tensor(batch.values) - low.raw_values(obs)  # what two_critics' xi is: the entropy gap
    assert float(gap.mean()) > 5 and bool((gap > 0).all())
    assert low.distiller.config.xi_estimator == "own_critic"  # sac's default: one critic judges both actions
    assert low.measure(batch).pair.xi_mean == pytest.approx(0.0, abs=1e-4)


def test_two_critics_xi_with_sac_is_refused_in_one_line():
    with pytest.raises(DPDUserError, match=r"^xi_estimator=two_critics with sac compares two soft critics") as info:
        TrainConfig(env_id="Pendulum-v1", algo="sac").with_values(xi_estimator="two_critics").resolve()
    assert len(str(info.value).splitlines()) == 1
