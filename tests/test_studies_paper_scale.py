"""studies/paper-scale: Figure 2's sweeps are the grid RULES.md fixes (four tasks in one form, 10 seeds, the three
arms at 5e6 total env steps on the engine), and their DPD arm is stage B's apart from the budget and the schedule of
evaluations, so the 1M and 5M answers compare."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dpd.experiments.sweep import SweepSpec, expand

pytestmark = pytest.mark.studies  # make test-studies (CI runs it after make test and make test-extended)

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "studies" / "paper-scale"
TASKS = ["HalfCheetah", "Walker2d", "Swimmer", "Humanoid"]
#: what the scale changes: the budget, the evaluation and checkpoint schedules, snapshots, the engine
SCALE_KEYS = {"total_steps", "eval_freq", "checkpoint_freq", "snapshots", "engine", "record_sim_states"}


def _specs() -> dict[str, SweepSpec]:
    return {t: SweepSpec.from_dict(yaml.safe_load((STUDY / f"figure2-{t}.yaml").read_text())) for t in TASKS}


def test_figure_2s_four_sweeps_are_one_grid_in_the_rules_form():
    specs = _specs()
    for task, spec in specs.items():
        trials = expand(spec)
        assert spec.envs == [f"{task}-v5"] and len(trials) == 30 and spec.seeds == list(range(10))
        assert {t.config.method for t in trials} == {"vanilla", "independent", "dpd"}
        for t in trials:
            c = t.config
            assert (c.total_steps, c.engine, c.algo, c.eval_freq, c.eval_episodes) == (5_000_000, "jax", "ddpg", 50_000, 5)
        without_env = {k: v for k, v in spec.to_dict().items() if k != "envs"}
        assert without_env == {k: v for k, v in specs["HalfCheetah"].to_dict().items() if k != "envs"}


def test_the_dpd_arm_is_stage_bs_apart_from_the_scale():
    stage_b = SweepSpec.from_dict(yaml.safe_load((ROOT / "studies/why-and-ddpg/stageB-dpd.yaml").read_text()))
    old = next(t.config.to_dict() for t in expand(stage_b) if t.config.env_id == "HalfCheetah-v5")
    new = next(t.config.to_dict() for t in expand(_specs()["HalfCheetah"]) if t.config.method == "dpd")
    old["seed"] = new["seed"]
    assert {k for k in new if new[k] != old.get(k)} <= SCALE_KEYS
    assert new["distill"] == old["distill"]  # alpha 1, two critics, normalised weights, the dense schedule
