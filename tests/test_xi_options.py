"""Beyond the paper: the estimators of xi (``xi_estimator``), the gate (``distill_gate``), a registered weighting, and
the ``distill`` config block (flat keys of older config files still load)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch as th

from dpd.config import DistillConfig, ResolvedConfig, TrainConfig, apply_overrides, read_run_config
from dpd.distillation import PeerBatch
from dpd.errors import DPDUserError
from dpd.students.factory import build_student

FIXTURES = Path(__file__).parent / "fixtures"


def student(algo: str = "ppo", gamma: float = 0.99, **distill: object):
    algo_kwargs = ({"n_steps": 128, "batch_size": 64, "n_epochs": 1} if algo == "ppo" else
                   {"learning_starts": 50, "train_freq": 50, "gradient_steps": 5, "policy_kwargs": {"net_arch": [16]}})
    algo_kwargs["gamma"] = gamma
    cfg = TrainConfig.from_dict({"env_id": "Pendulum-v1", "algo": algo, "preset": "none", "total_steps": 2048,
                                 "normalize": False, "iteration_steps": 200, "algo_kwargs": algo_kwargs,
                                 "xi_scale": "none", **distill}).resolve()
    s = build_student(cfg, 0, None)
    s.setup(cfg.steps_per_learner)
    s.iterate()
    return s


def batch_with_values(s, value: float) -> PeerBatch:
    states = s.recorder.recent_states()
    outputs = np.full((len(states), 1), 0.7, np.float32)  # a peer that acts differently from the student
    return PeerBatch(states=states, outputs=outputs, values=np.full(len(states), value, np.float32))


def actor(s) -> list[th.Tensor]:
    return [p.detach().clone() for p in s.actor_parameters()]


def moved(before: list[th.Tensor], s) -> float:
    return max(float((a - b.detach()).abs().max()) for a, b in zip(before, s.actor_parameters(), strict=True))


@pytest.mark.parametrize("gate", ["none", "advantage"])
def test_the_gate_stops_distillation_toward_a_peer_worse_everywhere(gate: str) -> None:
    s = student(distill_gate=gate, distill_lr=1e-2)
    before = actor(s)
    worse = s.distill(batch_with_values(s, -1e6))  # the peer's critic: worse than the student on every state
    if gate == "advantage":
        assert worse.gate == 0.0 and worse.steps == 0
        assert moved(before, s) <= 1e-6
    else:  # batch-normalised weights: uniform over a peer worse everywhere, copied at full strength
        assert worse.gate is None and worse.steps == 10
        assert moved(before, s) > 1e-4
    before = actor(s)
    better = s.distill(batch_with_values(s, 1e6))
    assert better.steps == 10 and (better.gate is None or better.gate == 1.0)
    assert moved(before, s) > 1e-4


def test_the_gate_scales_a_phase_by_the_share_where_the_peer_is_better() -> None:
    s = student(distill_gate="advantage")
    b = batch_with_values(s, 0.0)
    own = s.raw_values(s.normalize_obs(b.states)).numpy()
    better = np.arange(len(own)) % 4 == 0
    b.values = np.where(better, own + 100.0, own - 100.0).astype(np.float32)  # the peer better on a quarter
    result = s.distill(b)
    assert result.gate == pytest.approx(better.mean())
    taken = [result.steps] + [s.distill(b).steps for _ in range(9)]
    assert sum(taken) == int(100 * better.mean())  # 10 phases x 10 steps x the share, fractions carried over


def test_debiased_xi_subtracts_each_critics_offset_on_its_own_returns() -> None:
    s = student(xi_estimator="debiased", gamma=0.9)  # horizon 44: the 128-step window holds complete returns
    own_offset = s.critic_offset()
    assert own_offset != 0.0  # an untrained critic is far from the returns it collected
    b = batch_with_values(s, 50.0)
    b.value_offset = 30.0
    paper = 50.0 - float(s.raw_values(s.normalize_obs(b.states)).mean())  # two critics: V_peer - V_self
    result = s.distill(b, steps=0)  # with steps=0 the phase only measures
    plain = result.pair.xi_mean
    s2 = student(xi_estimator="two_critics", gamma=0.9)
    assert result.offsets == (pytest.approx(own_offset), 30.0)
    assert plain == pytest.approx(paper - 30.0 + own_offset, rel=1e-4, abs=1e-3)
    # and a peer's batch carries its offset when the estimator is debiased
    assert s.peer_batch().value_offset == pytest.approx(own_offset)
    assert s2.peer_batch().value_offset == 0.0


def test_own_critic_judges_both_actions_with_the_students_critic() -> None:
    s = student("td3", xi_estimator="own_critic")
    states = s.recorder.recent_states()
    own_actions = s.policy_outputs(s.normalize_obs(states)).detach().numpy()
    # the peer's critic says +1e6, but the peer acts as the student does: one critic judging both actions sees 0
    same = PeerBatch(states=states, outputs=own_actions, values=np.full(len(states), 1e6, np.float32))
    assert s.distill(same, steps=0).pair.xi_mean == pytest.approx(0.0, abs=1e-4)
    obs = s.normalize_obs(states)
    other = np.full_like(own_actions, 0.9)
    expected = (s.raw_q_values(obs, th.as_tensor(other)) - s.raw_values(obs)).mean()
    result = s.distill(PeerBatch(states=states, outputs=other, values=np.zeros(len(states), np.float32)), steps=0)
    assert result.pair.xi_mean == pytest.approx(float(expected), rel=1e-4, abs=1e-4)


def test_own_critic_needs_a_q_critic() -> None:
    with pytest.raises(DPDUserError, match="own_critic needs a Q critic"):
        TrainConfig(env_id="Pendulum-v1").with_values(xi_estimator="own_critic").resolve()
    with pytest.raises(DPDUserError, match="unknown xi_estimator"):
        apply_overrides(TrainConfig(env_id="Pendulum-v1"), ["xi_estimator=best"]).resolve()
    with pytest.raises(DPDUserError, match="unknown distill_gate"):
        apply_overrides(TrainConfig(env_id="Pendulum-v1"), ["distill_gate=always"]).resolve()


def test_a_registered_weighting_is_one_function_and_one_registry_entry() -> None:
    from dpd.objective import WEIGHTING_FUNCTIONS, dpd_weights, register_weighting

    def halves(xi: th.Tensor, alpha: float, max_log_weight: float) -> tuple[th.Tensor, th.Tensor]:
        return th.where(xi > 0, 1.0, 0.5), th.zeros_like(xi, dtype=th.bool)

    register_weighting("halves", halves)
    try:
        w, _ = dpd_weights(th.tensor([-1.0, 2.0]), 1.0, "halves")
        assert w.tolist() == [0.5, 1.0]
        s = student(weighting="halves", distill_lr=1e-2)
        before = actor(s)
        result = s.distill(batch_with_values(s, -1e6))
        assert result.pair.weight_mean == 0.5 and result.steps == 10 and moved(before, s) > 1e-4
        assert "halves" in TrainConfig(env_id="Pendulum-v1").with_values(weighting="halves").resolve().distill.weighting
    finally:
        WEIGHTING_FUNCTIONS.pop("halves")
    with pytest.raises(DPDUserError, match="unknown weighting 'halves'"):
        TrainConfig(env_id="Pendulum-v1").with_values(weighting="halves").resolve()


def test_a_config_yaml_of_the_flat_format_loads_into_the_distill_block(tmp_path: Path) -> None:
    """Every config.yaml written before the block existed (flat keys: alpha, distill_lr, ...) still loads."""
    run = tmp_path / "old"
    run.mkdir()
    (run / "config.yaml").write_text((FIXTURES / "config_flat_v0.1.yaml").read_text())
    cfg = read_run_config(run)
    assert cfg.distill == DistillConfig(alpha=1.0, schedule="dense", lr=1e-4, batch_size=64, steps=10, ratio=1.0,
                                       every=1, window=1000, target="mean", optimizer="own", loss_coef=1.0
                                       ).resolve("ddpg")
    assert cfg.resolve(check_env=False).to_dict() == cfg.to_dict()  # resolved already: nothing to fill
    assert ResolvedConfig.from_dict(cfg.to_dict()) == cfg  # the new (nested) format reads back the same
    assert ResolvedConfig(**cfg.to_dict()) == cfg
    asked = TrainConfig.from_dict(cfg.to_dict())  # a stored config is also a complete user's config
    assert asked.resolve(check_env=False) == cfg
    # --set takes the flat alias or the field of the block, the same thing
    assert apply_overrides(asked, ["alpha=0.5"]) == apply_overrides(asked, ["distill.alpha=0.5"])
    with pytest.raises(DPDUserError, match=r"distill\.lr expects float"):
        apply_overrides(asked, ["distill.lr=fast"])
    with pytest.raises(DPDUserError, match=r"unknown config key 'distill\.nope'"):
        apply_overrides(asked, ["distill.nope=1"])
