"""The independent control, the distillation schedules (dense / authors / adaptive, distill_every, targets) and
the zero-weight mend."""

import numpy as np
import pytest
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor, VecNormalize

from dpd import TrainConfig, train
from dpd.config import build_algo_kwargs
from dpd.errors import DPDUserError
from dpd.schedule import MAX_STRENGTH, AdaptiveStrength, StepCarry
from dpd.students.base import PeerBatch
from dpd.students.factory import build_student
from dpd.training.trainer import DPDTrainer

TINY = {"n_steps": 256, "batch_size": 64, "n_epochs": 2}


def tiny(env_id="Pendulum-v1", **kw):
    base = dict(env_id=env_id, total_steps=2048, eval_freq=0, algo_kwargs=dict(TINY), snapshots=[],
                tensorboard=False, n_envs=1)
    return TrainConfig.from_dict({**base, **kw})


def plain_sb3_learner(config: TrainConfig, index: int, steps: int) -> PPO:
    """A stock SB3 PPO with the student's seed and the same env stack, trained with model.learn()."""
    import gymnasium as gym

    cfg = config.resolve()
    seed = cfg.learner_seed(index)
    venv = DummyVecEnv([lambda: gym.make(cfg.env_id) for _ in range(cfg.n_envs)])
    venv.seed(seed)
    env = VecNormalize(VecMonitor(venv), gamma=cfg.algo_kwargs.get("gamma", 0.99)) if cfg.normalize else VecMonitor(venv)
    model = PPO("MlpPolicy", env, seed=seed, device="cpu", **build_algo_kwargs(cfg))
    model.learn(steps)
    return model


@pytest.mark.parametrize("parallel", [False, True])
def test_independent_students_equal_two_plain_sb3_learners(parallel):
    config = tiny("CartPole-v1", method="independent", seed=3, parallel=parallel, eval_freq=512, eval_episodes=1)
    trainer = DPDTrainer(config.resolve(), None)
    try:
        trainer.learn()
        states = [learner["torch"]["policy"] for learner in trainer.checkpoint_state()["students"]]
    finally:
        trainer.close()
    for index in (0, 1):
        reference = plain_sb3_learner(config, index, 1024).policy.state_dict()
        mine = states[index]
        assert mine.keys() == reference.keys()
        assert all(th.equal(mine[k], reference[k]) for k in mine), f"student{index} differs from plain SB3"


def test_a_students_first_rollout_is_the_same_in_sequential_and_parallel_mode(tmp_path):
    runs = {}
    for parallel in (False, True):
        out = tmp_path / str(parallel)
        train(tiny("CartPole-v1", parallel=parallel, total_steps=512, algo_kwargs={**TINY, "n_steps": 128}), out)
        runs[parallel] = [(out / s / "train_episodes.monitor.csv").read_text().splitlines()[2:]
                          for s in ("student0", "student1")]
    strip = [[[row.split(",")[:2] for row in rows] for rows in runs[p]] for p in (False, True)]
    assert strip[0] == strip[1] and all(strip[0])


def test_independent_takes_no_distillation_step_but_logs_the_pair(tmp_path):
    summary = train(tiny(method="independent"), tmp_path / "run")
    assert summary["method"] == "independent" and set(summary["learners"]) == {"student0", "student1"}
    import csv

    rows = list(csv.DictReader((tmp_path / "run" / "student1" / "progress.csv").read_text().splitlines()))
    distances = [float(r["pair/action_distance"]) for r in rows if r.get("pair/action_distance")]
    assert len(distances) >= 3 and all(d > 0 for d in distances)
    assert all(float(r["distill/phase_steps"]) == 0 for r in rows if r.get("distill/phase_steps"))
    assert "distill/loss" not in rows[0]


def phase_counts(config: TrainConfig) -> tuple[int, int]:
    """(distillation gradient steps taken by student1, its iterations) in a tiny sequential run."""
    trainer = DPDTrainer(config.resolve(), None)
    taken = 0
    student = trainer.students[1]
    original = student.distill

    def counting(*a, **k):
        nonlocal taken
        result = original(*a, **k)
        taken += result.steps
        return result

    student.distill = counting
    try:
        trainer.learn()
    finally:
        trainer.close()
    return taken, student.iteration


def test_distill_every_5_takes_exactly_a_fifth_of_the_distillation_steps():
    cfg = tiny(total_steps=2 * 256 * 10, algo_kwargs={**TINY, "n_epochs": 1})
    every1, iters = phase_counts(cfg)
    every5, iters5 = phase_counts(TrainConfig.from_dict({**cfg.to_dict(), "distill_every": 5}))
    assert iters == iters5 == 10
    assert every1 == 10 * 10  # 10 steps after each of 10 iterations
    assert every5 == every1 / 5


def test_the_authors_schedule_sets_its_values_shares_ppos_optimiser_and_steps_every_5th_iteration():
    cfg = tiny(distill_schedule="authors").resolve()
    d = cfg.distill
    assert (d.every, d.steps, d.batch_size, d.window, d.target, d.optimizer) == (5, 1, 512, 100_000, "sample", "shared")
    assert d.loss_coef == pytest.approx(1 / 512)
    # a key set by the user overrides its schedule's value
    assert tiny(distill_schedule="authors", distill_every=2).resolve().distill.every == 2
    student = build_student(cfg, 0, None)
    assert student.distiller.optimizer is student.model.policy.optimizer  # PPO's own Adam, as the authors' code
    taken, _ = phase_counts(tiny(distill_schedule="authors", total_steps=2 * 256 * 5))
    assert taken == 1  # one step after the 5th iteration


def test_sample_target_draws_around_the_peers_mean():
    cfg = tiny(distill_target="sample").resolve()
    student = build_student(cfg, 0, None)
    n = 4000
    batch = PeerBatch(states=np.zeros((n, 3), np.float32), outputs=np.full((n, 1), 0.5, np.float32),
                      values=np.zeros(n, np.float32), action_std=np.full((n, 1), 2.0, np.float32))
    targets = student.distiller._targets(th.as_tensor(batch.outputs), batch, th.arange(n), student.discrete).numpy()
    assert abs(targets.mean() - 0.5) < 0.15 and abs(targets.std() - 2.0) < 0.15
    with pytest.raises(DPDUserError, match="distill_target=sample"):
        tiny(algo="td3", distill_target="sample").resolve()


def test_a_zero_weight_batch_leaves_the_actor_unchanged():
    cfg = tiny(weighting="indicator").resolve()
    student = build_student(cfg, 0, None)
    obs = np.random.default_rng(0).normal(size=(300, 3)).astype(np.float32)
    good = PeerBatch(states=obs, outputs=np.ones((300, 1), np.float32), values=np.full(300, 1e6, np.float32))
    worse = PeerBatch(states=obs, outputs=np.ones((300, 1), np.float32), values=np.full(300, -1e6, np.float32))
    student.distill(good, steps=3)  # Adam now has momentum
    before = [p.detach().clone() for p in student.actor_parameters()]
    student.distill(worse, steps=3)  # the peer is worse everywhere: every weight is zero
    after = student.actor_parameters()
    assert all(th.equal(a, b) for a, b in zip(before, after, strict=True))
    assert student.distiller.skipped_zero_weight == 3
    student.distill(good, steps=1)
    assert not all(th.equal(a, b) for a, b in zip(before, student.actor_parameters(), strict=True))


def test_adaptive_rule_raises_strength_when_apart_and_lowers_it_when_converging():
    rule = AdaptiveStrength(low=0.5, high=0.8)
    for d in (0.1, 0.2, 0.4, 0.8):  # early growth: never above dense
        rule.update(d)
    assert rule.strength == MAX_STRENGTH == 1.0
    for _ in range(12):  # converging: the distance collapses
        rule.update(0.01)
    lowest = rule.strength
    assert lowest < 0.1
    for _ in range(12):  # drifting apart again: the strength comes back
        rule.update(0.8)
    assert rule.strength >= 4 * lowest
    kept = rule.strength
    rule.update(float("nan"))
    assert rule.strength == kept


def test_step_carry_keeps_fractions():
    carry = StepCarry()
    assert [carry.take(2.5) for _ in range(4)] == [2, 3, 2, 3]
    assert sum(carry.take(0.25) for _ in range(8)) == 2


def test_adaptive_on_a_tiny_run_follows_the_pair_distance(monkeypatch):
    """On a real run: a pair whose distance grows gets a stronger schedule, one whose distance collapses a weaker."""
    trainer = DPDTrainer(tiny(distill_schedule="adaptive", total_steps=2 * 256 * 10).resolve(), None)
    student = trainer.students[1]
    forced = iter([0.8, 0.8, 0.01, 0.01, 0.01, 0.8, 0.8, 0.8, 0.8, 0.8])
    strengths, steps = [], []
    original = student.distiller._pair

    def pair(s, w):
        stats, weights = original(s, w)
        return type(stats)(**{**stats.as_dict(), "action_distance": next(forced)}), weights

    monkeypatch.setattr(student.distiller, "_pair", pair)
    real_distill = student.distill

    def distill(batch, steps=None):
        result = real_distill(batch, steps)
        strengths.append(result.strength)
        steps_taken.append(result.steps)
        return result

    steps_taken = steps
    monkeypatch.setattr(student, "distill", distill)
    try:
        trainer.learn()
    finally:
        trainer.close()
    # dense at first (10 steps), weaker while the pair collapses, stronger again when it drifts apart
    assert strengths[0] == 1.0 and steps[0] == 10
    middle = strengths.index(min(strengths))
    assert 0 < middle < len(strengths) - 1 and strengths[-1] > strengths[middle]
    assert sum(steps[middle:middle + 1]) < 10


@pytest.mark.parametrize("setting, message", [
    ("distill_schedule=fast", "unknown distill_schedule"),
    ("distill_every=0", "distill_every must be positive"),
    ("distill_target=mode", "unknown distill_target"),
    ("distill_optimizer=sgd", "unknown distill_optimizer"),
    ("adaptive_low=0.9", "adaptive_low and adaptive_high"),
])  # fmt: skip
def test_bad_schedule_settings_are_one_line_errors(setting, message):
    from dpd.config import apply_overrides

    with pytest.raises(DPDUserError, match=message):
        apply_overrides(tiny(), [setting]).resolve()


def test_demo_runs_three_methods_with_a_progress_line_and_says_what_they_mean(tmp_path):
    from dpd.demo import run_demo, verdict

    lines, status = [], []
    results = run_demo("CartPole-v1", 1024, 0, tmp_path / "demo", log=lines.append, status=status.append)
    assert [s["method"] for _, s in results] == ["vanilla", "independent", "dpd"]
    assert status and all(s.startswith("dpd demo: vanilla") and "elapsed" in s for s in status)
    assert status[-1].count("100%") == 3
    words = "\n".join(verdict(results))
    assert "distillation gain" in words and "selection gain" in words and "docs/reproduction.md" in words


def test_a_run_with_evaluation_off_prints_its_table_and_exits_0(tmp_path, capsys):
    from dpd.cli import main

    code = main(["train", "--env", "CartPole-v1", "--total-steps", "1024", "--set", "eval_freq=0", "--sequential",
                 "--no-progress", "--out", str(tmp_path / "r")])
    assert code == 0 and "—" in capsys.readouterr().out


def test_a_second_demo_into_the_same_folder_needs_overwrite(tmp_path, capsys):
    """A demo never replaces an earlier one silently (it did: every run was trained with overwrite)."""
    from dpd.cli import main

    earlier = tmp_path / "dm" / "vanilla"
    earlier.mkdir(parents=True)
    (earlier / "summary.json").write_text("{}")
    assert main(["demo", "--out", str(tmp_path / "dm"), "--total-steps", "512"]) == 2
    assert "pass --overwrite" in capsys.readouterr().err and (earlier / "summary.json").read_text() == "{}"
    (tmp_path / "dm" / "notes.txt").write_text("mine")
    assert main(["demo", "--out", str(tmp_path / "dm"), "--total-steps", "512", "--overwrite"]) == 2
    assert "no demo wrote" in capsys.readouterr().err


def test_the_demos_closing_lines_say_level_when_returns_are_equal():
    from dpd.demo import verdict

    def summary(method, *finals):
        names = ["vanilla"] if method == "vanilla" else ["student0", "student1"]
        return {"method": method, "learners": {n: {"final_eval_return": f} for n, f in zip(names, finals, strict=True)}}

    lines = verdict([("v", summary("vanilla", 500.0)), ("i", summary("independent", 500.0, 300.0)),
                     ("d", summary("dpd", 500.0, 400.0))])
    assert "DPD's better student is level with vanilla" in "\n".join(lines)
