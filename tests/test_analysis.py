"""Snapshots kept during training and `dpd analyze` (the paper's Figure 3) on tiny runs."""

import json

import numpy as np
import pytest
import torch as th

from dpd.cli import main
from dpd.config import TrainConfig
from dpd.experiments.analyze import list_snapshots, load_snapshot
from dpd.loading import load_learner, read_run_config
from dpd.training import train

PENDULUM = {"preset": "none", "algo_kwargs": {"n_steps": 256, "batch_size": 64}, "eval_freq": 0}


def tiny(method: str, seed: int, total: int, **kw) -> TrainConfig:
    return TrainConfig(env_id="Pendulum-v1", method=method, seed=seed, total_steps=total, tensorboard=False,
                       normalize=True, **{**PENDULUM, **kw})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("analysis")
    train(tiny("dpd", 0, 4096, snapshots=[0.25, 0.5, 1.0]), root / "dpd")
    for seed in (0, 1):
        train(tiny("vanilla", seed, 4096, snapshots=[0.25, 0.5, 1.0]), root / f"v{seed}")
    return root


def test_snapshots_are_kept_when_each_fraction_of_the_budget_is_reached(runs):
    for learner in ("student0", "student1"):
        steps = [int(p.name) for p in list_snapshots(runs / "dpd", learner)]
        assert steps == [512, 1024, 2048]  # 2048 steps per student, 256 per iteration: first iteration >= f * budget
        for folder in list_snapshots(runs / "dpd", learner):
            assert (folder / "model.zip").is_file() and (folder / "vecnormalize.pkl").is_file()
    assert [int(p.name) for p in list_snapshots(runs / "v0", "vanilla")] == [1024, 2048, 4096]


def test_analyze_numbers_match_a_recomputation_with_plain_sb3(runs, capsys):
    code = main(["analyze", str(runs / "dpd"), "--against", str(runs / "v0"), str(runs / "v1"), "--states", "20",
                 "--value-states", "5"])
    assert code == 0
    out = capsys.readouterr().out
    assert "dist vanilla" in out and "figure3.png" in out
    result = json.loads((runs / "dpd" / "analysis" / "analysis.json").read_text())
    assert (runs / "dpd" / "analysis" / "figure3.png").stat().st_size > 10_000
    stages = result["stages"]
    assert [s["total_env_steps"] for s in stages] == [1024, 2048, 4096]
    assert [s["vanilla_steps"] for s in stages] == [[1024, 1024], [2048, 2048], [4096, 4096]]
    last = stages[-1]
    assert len(last["values"]["student0"]) == 20 and len(last["env_action_distance_dpd"]) == 20
    # The last snapshot is the final model: recompute its values and actions with SB3 alone on states of a rollout.
    models = {name: load_learner(runs / "dpd", name) for name in ("student0", "student1")}
    states = np.random.default_rng(1).normal(size=(7, 3))
    for name, (model, env) in models.items():
        obs = th.as_tensor(env.normalize_obs(states), dtype=th.float32)
        raw = model.policy.predict_values(obs).squeeze(-1).detach().numpy() * np.sqrt(env.ret_rms.var + env.epsilon)
        snap = load_snapshot(read_run_config(runs / "dpd"), list_snapshots(runs / "dpd", name)[-1])
        np.testing.assert_allclose(snap.values(states), raw, rtol=1e-5, atol=1e-5)
        predicted, _ = model.predict(env.normalize_obs(states), deterministic=True)
        np.testing.assert_allclose(snap.actions(states), predicted, rtol=1e-6)
    assert last["mean_env_action_distance_dpd"] == pytest.approx(np.mean(last["env_action_distance_dpd"]))
    assert all(d >= 0 for s in stages for d in s["env_action_distance_dpd"] + s["env_action_distance_vanilla"])
    # Pendulum: actions in [-2, 2], so the distance of two 1-d actions is at most 4
    assert max(max(s["env_action_distance_dpd"]) for s in stages) <= 4.0


@pytest.mark.parametrize("args,message", [
    (["{v0}"], "is a run of method vanilla; dpd analyze needs a pair"),
    (["{dpd}", "--against", "{v0}", "{v0}"], "two DIFFERENT vanilla runs"),
    (["{dpd}", "--against", "{v0}", "{dpd}"], "is a run of method dpd; dpd analyze needs vanilla runs"),
    (["{dpd}", "--states", "1"], "need n_states >= 2"),
    (["{missing}"], "is not a dpd run folder"),
])  # fmt: skip
def test_analyze_refuses_bad_input_in_one_line_exit_2(runs, capsys, args, message):
    paths = {"dpd": runs / "dpd", "v0": runs / "v0", "missing": runs / "nope"}
    assert main(["analyze", *[a.format(**paths) for a in args]]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_analyze_a_run_without_snapshots_names_the_fix(tmp_path, capsys):
    train(tiny("dpd", 0, 1024, snapshots=[]), tmp_path / "r")
    assert not (tmp_path / "r" / "student0" / "snapshots").exists()
    assert main(["analyze", str(tmp_path / "r")]) == 2
    assert "--set snapshots=[0.1,0.5,1.0]" in capsys.readouterr().err
