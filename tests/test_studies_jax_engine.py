"""studies/jax-engine: the engine's replication of stage B (RULES.md) and of vanilla PPO (RULES-ppo.md): its sweep
files are the SB3 side's trials on engine=jax, compare.py's verdicts follow the rules, and the committed numbers
recompute from the committed runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from study_helpers import archive, assert_same_report, load_script

from dpd.experiments.sweep import SweepSpec, expand

pytestmark = pytest.mark.studies  # make test-studies (CI runs it after make test and make test-extended)

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "studies" / "jax-engine"
WHY = ROOT / "studies" / "why-and-ddpg"


def _compare():
    return load_script(STUDY / "compare.py", "jax_engine_compare")


def _trials(*files: Path) -> dict[str, dict]:
    found = {}
    for path in files:
        for trial in expand(SweepSpec.from_dict(yaml.safe_load(path.read_text()))):
            found[trial.name] = trial.config.to_dict()
    return found


def test_stage_bs_jax_sweep_is_stage_bs_sb3_trials_on_the_engine():
    """Every trial of stageB-jax.yaml is the SB3 trial of the same name (stage A's DPD seeds 0-2, stage B's DPD
    seeds 3-7 and its controls), differing only in the engine (and stage A's simulator-state recording, which does
    not change training)."""
    jax = _trials(STUDY / "stageB-jax.yaml")
    sb3 = _trials(WHY / "stageA-ddpg.yaml", WHY / "stageB-dpd.yaml", WHY / "stageB-controls.yaml")
    assert len(jax) == 48 and set(jax) <= set(sb3)
    for name, config in jax.items():
        assert config.pop("engine") == "jax"
        other = dict(sb3[name])
        assert other.pop("engine") == "sb3"
        other["record_sim_states"] = config["record_sim_states"]
        assert config == other, name


def test_ppos_two_sweeps_differ_only_in_the_engine():
    jax, sb3 = _trials(STUDY / "ppo-jax.yaml"), _trials(STUDY / "ppo-sb3.yaml")
    assert sorted(jax) == sorted(sb3) and len(jax) == 16
    for name in jax:
        assert {k: v for k, v in jax[name].items() if k != "engine"} == \
               {k: v for k, v in sb3[name].items() if k != "engine"}
        assert (jax[name]["engine"], sb3[name]["engine"], jax[name]["algo"]) == ("jax", "sb3", "ppo")


def test_the_tost_says_equivalent_different_or_undecided_by_the_rule():
    compare = _compare()
    rng = np.random.default_rng(0)
    sb3 = 1000 + rng.normal(0, 10, 16)
    assert compare.tost(sb3 + 5, sb3)["verdict"] == "equivalent"  # margin ±150, the 90% interval within ±20
    assert compare.tost(sb3 + 400, sb3)["verdict"] == "different"
    noisy = 1000 + rng.normal(0, 500, 8)
    result = compare.tost(noisy, sb3)
    assert result["verdict"] == "undecided" and result["margin"] == pytest.approx(0.15 * abs(sb3.mean()))
    assert result["ci90"][0] > result["ci95"][0] and result["mde"] > 0


def test_compare_keys_cells_by_task_algorithm_and_arm_and_pools_ddpg_apart(tmp_path):
    """A DDPG cell and a PPO cell of the same task and arm stay apart; the DDPG pool decides stage B, the pool over
    every cell is shown beside it only when another algorithm is there."""
    from dpd.experiments.report import Run

    compare = _compare()
    x = np.array([0.0, 1000.0, 2000.0])

    def runs(algo: str, level: float, shift: float) -> list:
        return [Run(f"{algo}{s}", "finished", "T-v0", algo, "vanilla", s,
                    curves={"vanilla": (x, np.array([0.0, level, level]) + shift + s)}) for s in range(4)]

    sb3, jax = compare.cells(runs("ddpg", 300, 0) + runs("ppo", 900, 0)), compare.cells(runs("ddpg", 300, 3))
    assert set(sb3) == {("T-v0", "ddpg", "vanilla"), ("T-v0", "ppo", "vanilla")}
    # mean over training: (0 + 2 * level) / 3 + shift + seed
    assert sb3[("T-v0", "ppo", "vanilla")][2] == (pytest.approx(600 + 2), pytest.approx(902))
    pooled = compare.pooled_test(sb3, jax, [("T-v0", "ddpg", "vanilla")])
    assert pooled["difference"] == pytest.approx(3 / 201.5) and pooled["cells"] == ["T-v0|ddpg|vanilla"]


STAGE_B_SB3 = ("why-A-ddpg", "why-B-dpd", "why-B-controls", "why-B-controls-s7", "why-B-controls-tail")
STAGE_B_ARCHIVES = ("docs/results/why-and-ddpg/runs-stageB.tar.gz", "docs/results/why-and-ddpg/runs-stageA-ddpg.tar.gz",
                    "docs/results/jax-engine/runs-stageB-jax.tar.gz")


def _recompute(tmp_path: Path, archives: tuple[str, ...], sb3: tuple[str, ...], jax: tuple[str, ...],
               committed: Path) -> None:
    """Restores the archives, runs compare.py on them and asserts its compare.json and compare.md equal the
    committed ones."""
    for name in archives:
        archive("restore", ROOT / name, tmp_path / "runs")
    _compare().main(["--sb3", *(str(tmp_path / "runs" / name) for name in sb3),
                     "--jax", *(str(tmp_path / "runs" / name) for name in jax), "--out", str(tmp_path / "out")])
    assert_same_report(tmp_path / "out", committed, "compare")


def test_stage_bs_committed_comparison_recomputes_from_the_committed_runs(tmp_path):
    """compare.json in docs/results/jax-engine/stageB: every number again from the runs' archives."""
    _recompute(tmp_path, STAGE_B_ARCHIVES, STAGE_B_SB3, ("jax-B",), ROOT / "docs/results/jax-engine/stageB")


def test_every_cells_committed_comparison_recomputes_from_the_committed_runs(tmp_path):
    """docs/results/jax-engine/all-cells (RULES-ppo.md: PPO's cell and the pooled test over all seven cells): every
    number again from the runs' archives."""
    _recompute(tmp_path, (*STAGE_B_ARCHIVES, "docs/results/jax-engine/runs-ppo.tar.gz"),
               (*STAGE_B_SB3, "jax-ppo-sb3-a", "jax-ppo-sb3-b"), ("jax-B", "jax-ppo"),
               ROOT / "docs/results/jax-engine/all-cells")


def test_stage_bs_verdicts_on_the_engine_recompute_from_the_committed_runs(tmp_path):
    """docs/results/jax-engine/stageB-verdicts: studies/why-and-ddpg/stageB.py on the engine's runs, again."""
    archive("restore", ROOT / "docs/results/jax-engine/runs-stageB-jax.tar.gz", tmp_path / "runs")
    subprocess.run([sys.executable, str(WHY / "stageB.py"), str(tmp_path / "runs" / "jax-B"), "--out",
                    str(tmp_path / "out")], check=True, capture_output=True)
    committed = ROOT / "docs/results/jax-engine/stageB-verdicts"
    assert_same_report(tmp_path / "out", committed, "stageB")


def test_ppos_sb3_side_cut_in_two_is_the_same_trials():
    whole = _trials(STUDY / "ppo-sb3.yaml")
    parts = _trials(STUDY / "ppo-sb3-a.yaml"), _trials(STUDY / "ppo-sb3-b.yaml")
    assert not set(parts[0]) & set(parts[1]) and {**parts[0], **parts[1]} == whole


def test_compare_refuses_a_trial_in_two_sweeps_of_different_settings_in_one_line(tmp_path):
    """Folders of different sweeps are read side by side, but the same trial from two of them would be one cell's
    seed twice: refused before anything is written, one line naming the trial."""
    spec = {"envs": ["T-v0"], "algos": ["ddpg"], "total_steps": 1000, "seeds": [0], "variants": ["vanilla"]}
    for name, overrides in (("a", ["eval_freq=100"]), ("b", ["eval_freq=200"])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "sweep.yaml").write_text(yaml.safe_dump({**spec, "overrides": overrides}))
    with pytest.raises(SystemExit) as exc:
        _compare().main(["--sb3", str(tmp_path / "a"), str(tmp_path / "b"), "--jax", str(tmp_path / "a"),
                         "--out", str(tmp_path / "out")])
    message = str(exc.value)
    assert message.startswith("compare.py: ") and "T-v0__ddpg__vanilla__s0" in message and "\n" not in message
    assert not (tmp_path / "out").exists()
