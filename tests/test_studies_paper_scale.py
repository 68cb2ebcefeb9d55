"""studies/paper-scale: Figure 2's sweeps are the grid RULES.md fixes (four tasks in one form, 10 seeds, the three
arms at 5e6 total env steps on the engine), and their DPD arm is stage B's apart from the budget and the schedule of
evaluations, so the 1M and 5M answers compare."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from study_helpers import archive, assert_same_report, load_script

from dpd.experiments.sweep import SweepSpec, expand

pytestmark = pytest.mark.studies  # make test-studies (CI runs it after make test and make test-extended)

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "studies" / "paper-scale"
TASKS = ["HalfCheetah", "Walker2d", "Swimmer", "Humanoid"]
#: what the scale changes: the budget, the evaluation and checkpoint schedules, snapshots, the engine
SCALE_KEYS = {"total_steps", "eval_freq", "checkpoint_freq", "snapshots", "engine", "record_sim_states"}


def _spec(path: Path) -> SweepSpec:
    return SweepSpec.from_dict(yaml.safe_load(path.read_text()))


def _specs(grid: str = "figure2") -> dict[str, SweepSpec]:
    """The four tasks' sweeps of one grid: ``figure2`` (DDPG) or ``table1`` (PPO)."""
    return {t: _spec(STUDY / f"{grid}-{t}.yaml") for t in TASKS}


def assert_dpd_arm_differs_only_in_scale(earlier_study: str, spec: SweepSpec) -> None:
    """The DPD arm of ``spec`` on HalfCheetah-v5 is ``earlier_study``'s (a sweep file under studies/) but for
    SCALE_KEYS, so the answers at both budgets compare."""
    old = next(t.config.to_dict() for t in expand(_spec(ROOT / "studies" / earlier_study))
               if t.config.env_id == "HalfCheetah-v5")
    new = next(t.config.to_dict() for t in expand(spec) if t.config.method == "dpd")
    old["seed"] = new["seed"]
    assert {k for k in new if new[k] != old.get(k)} <= SCALE_KEYS
    assert new["distill"] == old["distill"]  # alpha 1, two critics, normalised weights, the dense schedule


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
    assert_dpd_arm_differs_only_in_scale("why-and-ddpg/stageB-dpd.yaml", _specs()["HalfCheetah"])


def _report():
    return load_script(STUDY / "report.py", "paper_scale_report")


def test_holms_step_down_and_the_verdict_it_gives():
    report = _report()
    # sorted p against 0.05/3, 0.05/2, 0.05/1; the first that fails stops the rest
    assert report.holm({"a": 0.01, "b": 0.04, "c": 0.03}) == {"a": True, "c": False, "b": False}
    assert report.holm({"a": 0.01, "b": 0.04}) == {"a": True, "b": True}
    assert report.holm({"a": 0.02, "b": 0.045}) == {"a": True, "b": True}  # Bonferroni would stop at b
    assert report.holm({"a": 0.03, "b": 0.001, "c": 0.2}) == {"b": True, "a": False, "c": False}
    assert report.task_verdict("helps", False).startswith("no measurable effect (helps before Holm")
    assert report.task_verdict("hurts", True) == "hurts"
    assert report.task_verdict("no measurable effect", False) == "no measurable effect"
    assert report.task_verdict("none yet (8 of 10 required seeds)", None).startswith("none yet")


def test_the_report_on_stage_bs_sb3_runs_gives_stage_bs_gain_and_a_verdict_only_on_complete_grids(tmp_path):
    """The script's primary on stage B's committed SB3 runs (1M, seeds 0-7) is stage B's gain; with the rule's 10
    seeds required there is no verdict, and with 8 both tasks form Holm's family."""
    import numpy as np

    from dpd.experiments.report import load_sweeps

    for name in ("runs-stageB.tar.gz", "runs-stageA-ddpg.tar.gz"):
        archive("restore", ROOT / "docs/results/why-and-ddpg" / name, tmp_path)
    folders = [tmp_path / f for f in ("why-A-ddpg", "why-B-dpd", "why-B-controls", "why-B-controls-s7",
                                      "why-B-controls-tail")]
    report = _report()
    runs, _ = load_sweeps(folders)
    result = report.analyse(runs)
    hc = result["HalfCheetah-v5"]
    assert hc["primary"]["verdict"] == "none yet (8 of 10 required seeds)" and hc["primary"]["holm_family"] == []
    gain = hc["arms"]["dpd-a1"]["distillation_gain"]
    assert round(gain["diff"]) == 234 and round(gain["welch_low"]) == -1167  # docs/reproduction.md, stage B
    paired = hc["primary"]["paired"]
    assert paired[0] == pytest.approx(gain["diff"]) and paired[1] < paired[0] < paired[2]
    report.REQUIRED_SEEDS = frozenset(range(8))
    result = report.analyse(runs)
    assert result["Walker2d-v5"]["primary"]["holm_family"] == ["HalfCheetah-v5", "Walker2d-v5"]
    assert {t["primary"]["verdict"] for t in result.values()} == {"no measurable effect"}
    assert all(np.isfinite(t["primary"]["mde"]) for t in result.values())
    report.main([str(f) for f in folders] + ["--out", str(tmp_path / "out")])
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"report.md", "report.json", "curves_HalfCheetah.png",
                                                            "curves_Walker2d.png"}


def test_a_new_studys_first_archive_creates_its_results_folder(tmp_path):
    """archive.py save into docs/results/<new study>/ (the folder not there yet, as for this study's first task):
    the folder is made and the archive restores the same finished runs (it was a FileNotFoundError traceback)."""
    archive("restore", ROOT / "docs/results/jax-engine/runs-ppo.tar.gz", tmp_path / "runs")
    new = tmp_path / "results" / "new-study" / "runs.tar.gz"
    archive("save", tmp_path / "runs", new, "jax-ppo")
    archive("restore", new, tmp_path / "again")
    runs = sorted(p.relative_to(tmp_path / "runs") for p in (tmp_path / "runs" / "jax-ppo").rglob("evaluations.csv"))
    assert len(runs) == 16
    assert sorted(p.relative_to(tmp_path / "again") for p in (tmp_path / "again").rglob("evaluations.csv")) == runs


def test_the_check_that_student0_is_vanilla_compares_at_a_learners_own_steps_and_names_the_first_unequal():
    """student0 of the independent pair logs total env steps (its own x2); the check matches them to vanilla's own
    steps, counts exact equality only, and names the first unequal evaluation (None when all are equal)."""
    import numpy as np

    from dpd.experiments.report.runs import Run

    report = _report()
    own = np.arange(0, 5) * 50_000.0
    vanilla_y = np.array([1.0, 2.0, 3.0, 4.0, 5.0])

    def runs(student0_y):
        # vanilla's own steps are its total, and it runs twice a student's steps
        v = Run("v", "finished", "T-v5", "ddpg", "vanilla", 3,
                curves={"vanilla": (np.arange(0, 8) * 50_000.0, np.r_[vanilla_y, 6.0, 7.0, 8.0])})
        pair = Run("p", "finished", "T-v5", "ddpg", "independent", 3,
                   curves={"student0": (own * 2, student0_y), "student1": (own * 2, student0_y + 1)})
        return [v, pair]

    assert report.student0_is_vanilla(runs(vanilla_y.copy())) == {
        "T-v5": {3: {"equal": 5, "compared": 5, "first_unequal": None}}}
    drifted = vanilla_y.copy()
    drifted[3] += 1e-9  # one rounding's difference is unequal: the check is exact
    assert report.student0_is_vanilla(runs(drifted)) == {"T-v5": {3: {"equal": 4, "compared": 5, "first_unequal": 150_000.0}}}


def test_the_committed_report_recomputes_from_the_committed_archives(tmp_path):
    """docs/results/paper-scale/report.{md,json}, the verdicts docs/reproduction.md quotes: every number again from
    the archives of the finished tasks' runs (HalfCheetah's, Walker2d's and Swimmer's), by the script a reader runs."""
    committed = ROOT / "docs" / "results" / "paper-scale"
    tasks = ("HalfCheetah", "Walker2d", "Swimmer")
    for task in tasks:
        archive("restore", committed / f"runs-{task}.tar.gz", tmp_path / "runs")
    _report().main([str(tmp_path / "runs" / f"paper-{task}") for task in tasks] + ["--out", str(tmp_path / "out")])
    assert_same_report(tmp_path / "out", committed, "report")
    assert {"HalfCheetah-v5", "Walker2d-v5", "Swimmer-v5"} <= set(json.loads((committed / "report.json").read_text()))


def test_table_1s_four_sweeps_are_one_ppo_grid_and_their_dpd_arm_is_the_1m_studys():
    """Table 1's grid as RULES.md fixes it (PPO paper preset, 2e7 total env steps, seeds 0-4, the three arms on the
    engine), in one form over the four tasks; its DPD arm is the 1M PPO study's (stage A's dense arm) apart from the
    scale, so the 1M and 2e7 answers compare."""
    specs = _specs("table1")
    for task, spec in specs.items():
        trials = expand(spec)
        assert spec.envs == [f"{task}-v5"] and len(trials) == 15 and spec.seeds == list(range(5))
        assert {t.config.method for t in trials} == {"vanilla", "independent", "dpd"}
        assert {(t.config.total_steps, t.config.engine, t.config.algo, t.config.preset) for t in trials} == {
            (20_000_000, "jax", "ppo", "paper")}
        without_env = {k: v for k, v in spec.to_dict().items() if k != "envs"}
        assert without_env == {k: v for k, v in specs["HalfCheetah"].to_dict().items() if k != "envs"}
    assert_dpd_arm_differs_only_in_scale("why-and-ddpg/stageA-ppo.yaml", specs["HalfCheetah"])
