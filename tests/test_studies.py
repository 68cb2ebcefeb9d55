"""The study's pre-registered choice of stage 2's arm (studies/when-dpd-helps/choose_stage2.py) and its sweep files."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from study_helpers import load_script

from dpd.config import TrainConfig
from dpd.errors import DPDUserError
from dpd.experiments.sweep import SweepSpec, expand

pytestmark = pytest.mark.studies  # make test-studies (CI runs it after make test and make test-extended)

STUDY = Path(__file__).resolve().parents[1] / "studies" / "when-dpd-helps"
ENVS = ["HalfCheetah-v5", "Walker2d-v5"]
ARMS = {"dpd-a1", "dpd-a1-authors", "dpd-a1-adaptive", "dense1"}


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, STUDY / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


chooser = _load("choose_stage2")


def aggregates(pooled: dict[str, float], seeds: int = 3, tasks=ENVS) -> dict:
    """The slice of ``aggregates_ppo.json`` the rule reads: per arm its students'-mean gain [point, lo, hi] and
    runs per task; the better / worse student statistics are present too and must be ignored."""
    gains, runs = {}, {"vanilla": seeds, "independent (students' mean)": seeds}
    for arm, gain in pooled.items():
        for stat, shift in (("students' mean", 0.0), ("better student", 5.0), ("worse student", -5.0)):
            gains[f"{arm} ({stat})"] = {"per_task": {}, "pooled": [gain + shift, gain - 1, gain + 1]}
            runs[f"{arm} ({stat})"] = seeds
    return {"tasks": list(tasks), "runs_per_task": runs, "gains": {"distillation": gains}}


def test_the_arm_with_the_highest_students_mean_gain_is_chosen_else_the_authors_schedule():
    gains = {"dpd-a1": 0.01, "dpd-a1-authors": 0.002, "dpd-a1-adaptive": 0.03, "dense1": -0.02}
    assert chooser.choose(aggregates(gains), ENVS, ARMS, 3) == ("dpd-a1-adaptive", gains)
    # the better student's (larger) gain never decides: only the students' mean counts
    gains = {"dpd-a1": -0.001, "dpd-a1-authors": -0.01, "dpd-a1-adaptive": -0.002, "dense1": 0.0}
    assert chooser.choose(aggregates(gains), ENVS, ARMS, 3)[0] == "dpd-a1-authors"  # none above 0: the fallback
    gains = {"dpd-a1": -0.001, "dpd-a1-authors": -0.01, "dpd-a1-adaptive": 0.0005, "dense1": -0.02}
    assert chooser.choose(aggregates(gains), ENVS, ARMS, 3)[0] == "dpd-a1-adaptive"


@pytest.mark.parametrize("case, message", [
    ("one task", "report the whole stage-1 folder"),
    ("two seeds", "finish stage 1 first"),
    ("an arm missing", "missing from the gains: dense1"),
])
def test_an_incomplete_stage_1_is_refused(case, message):
    gains = {"dpd-a1": 0.01, "dpd-a1-authors": 0.002, "dpd-a1-adaptive": 0.03, "dense1": -0.02}
    data = {"one task": aggregates(gains, tasks=ENVS[:1]), "two seeds": aggregates(gains, seeds=2),
            "an arm missing": aggregates({k: v for k, v in gains.items() if k != "dense1"})}[case]
    with pytest.raises(DPDUserError, match=message):
        chooser.choose(data, ENVS, ARMS, 3)


def test_stage_2_sweeps_pool_with_stage_1():
    """Each arm's stage-2 sweep runs only that arm, on seeds 3-7, with stage 1's runs' labels and the settings
    `dpd report` requires to pool folders (total steps, preset, overrides); so does stage2-controls.yaml."""
    stage1 = SweepSpec.from_dict(yaml.safe_load((STUDY / "stage1.yaml").read_text()))
    stage1_labels = {t.label for t in expand(stage1)}
    assert ARMS | {"vanilla", "independent"} == stage1_labels
    stage1_configs = {t.label: t.config for t in expand(stage1) if t.config.seed == 0 and t.config.env_id == ENVS[0]}
    for arm in ARMS:
        spec = chooser.stage2_spec(stage1, arm)
        trials = expand(spec)
        assert {t.label for t in trials} == {arm} and len(trials) == 10
        assert sorted({t.config.seed for t in trials}) == [3, 4, 5, 6, 7]
        assert (spec.total_steps, spec.preset, spec.overrides) == (stage1.total_steps, stage1.preset, stage1.overrides)
        # the same trial as stage 1's but for the seed: every config key equal
        same_seed = next(t.config for t in trials if t.config.env_id == ENVS[0])
        assert {**same_seed.to_dict(), "seed": 0} == stage1_configs[arm].to_dict()
    controls = SweepSpec.from_dict(yaml.safe_load((STUDY / "stage2-controls.yaml").read_text()))
    assert {t.label for t in expand(controls)} == {"vanilla", "independent"}
    assert (controls.total_steps, controls.preset, controls.overrides, controls.envs) == (
        stage1.total_steps, stage1.preset, stage1.overrides, stage1.envs)
    assert controls.seeds == chooser.STAGE2_SEEDS


def test_the_alpha_stage_pools_with_stage_1_and_differs_from_it_only_in_alpha():
    stage1 = SweepSpec.from_dict(yaml.safe_load((STUDY / "stage1.yaml").read_text()))
    alpha = SweepSpec.from_dict(yaml.safe_load((STUDY / "stage3-alpha.yaml").read_text()))
    assert (alpha.total_steps, alpha.preset, alpha.overrides, alpha.envs, alpha.seeds) == (
        stage1.total_steps, stage1.preset, stage1.overrides, stage1.envs, stage1.seeds)
    trials = expand(alpha)
    assert sorted({t.label for t in trials}) == ["dense1-a0.1", "dense1-a10"] and len(trials) == 12
    base = {t.config.env_id: t.config for t in expand(stage1) if t.label == "dense1" and t.config.seed == 0}
    for t in trials:
        if t.config.seed == 0:  # stage 1's dense1 trial of that task, but for alpha
            mine = t.config.to_dict()
            mine["distill"]["alpha"] = 1.0
            assert mine == base[t.config.env_id].to_dict()


def test_the_confirmation_stage_is_stage_3s_alpha_0_1_arm_on_stage_2s_fresh_seeds():
    alpha = SweepSpec.from_dict(yaml.safe_load((STUDY / "stage3-alpha.yaml").read_text()))
    confirm = SweepSpec.from_dict(yaml.safe_load((STUDY / "stage4-alpha01.yaml").read_text()))
    controls = SweepSpec.from_dict(yaml.safe_load((STUDY / "stage2-controls.yaml").read_text()))
    assert confirm.seeds == controls.seeds and not set(confirm.seeds) & set(alpha.seeds)  # fresh seeds, with controls
    trials = expand(confirm)
    assert {t.label for t in trials} == {"dense1-a0.1"} and len(trials) == 10  # stage 3's label: pooled with it
    base = {t.config.env_id: t.config for t in expand(alpha) if t.label == "dense1-a0.1" and t.config.seed == 0}
    for t in trials:  # stage 3's trial of that task, but for the seed
        assert {**t.config.to_dict(), "seed": 0} == base[t.config.env_id].to_dict()


def test_the_script_prints_the_choice_and_writes_the_arms_sweep(tmp_path, capsys):
    report = tmp_path / "report"
    report.mkdir()
    gains = {"dpd-a1": 0.01, "dpd-a1-authors": 0.002, "dpd-a1-adaptive": -0.03, "dense1": 0.02}
    (report / "aggregates_ppo.json").write_text(json.dumps(aggregates(gains)))
    out = tmp_path / "stage2-arm.yaml"
    assert chooser.main([str(report), "--write", str(out)]) == 0
    assert "stage 2 arm: dense1" in capsys.readouterr().out
    written = SweepSpec.from_dict(yaml.safe_load(out.read_text()))
    assert {t.label for t in expand(written)} == {"dense1"} and written.arms == {"dense1": ["distill_steps=1"]}
    (report / "aggregates_ppo.json").write_text(json.dumps(aggregates(gains, seeds=2)))
    assert chooser.main([str(report)]) == 2
    assert capsys.readouterr().err.startswith("choose_stage2: ")


def test_the_study_table_is_the_reports_numbers(tmp_path, capsys):
    """study_table.py: means over seeds from the runs, gains and intervals from the report's aggregates, distillation
    steps and end distances from the students' logs (synthetic runs with hand-set values)."""
    from test_experiments import write_fake_run

    from dpd.experiments.report import write_report

    spec = SweepSpec(envs=["CartPole-v1"], total_steps=2000, seeds=[0, 1], variants=["vanilla", "independent", "dpd"])
    sweep = tmp_path / "sw"
    sweep.mkdir()
    (sweep / "sweep.yaml").write_text(yaml.safe_dump(spec.to_dict()))
    finals = {"independent": [(100, 300), (200, 200)], "dpd-a1": [(300, 340), (280, 300)]}
    for trial in expand(spec):
        seed = trial.config.seed
        if trial.label == "vanilla":
            write_fake_run(sweep / "runs" / trial.name, trial.config, {"vanilla": [0.0, 400.0 + seed]})
            continue
        a, b = finals[trial.label][seed]
        steps = "10" if trial.label == "dpd-a1" else "0"
        progress = {"student0": [("0.9", steps), (f"{0.1 * (seed + 1)}", steps)], "student1": [("0.5", steps)]}
        write_fake_run(sweep / "runs" / trial.name, trial.config, {"student0": [0.0, a], "student1": [0.0, b]}, progress)
    write_report(sweep)
    table = _load("study_table")
    assert table.main([str(sweep / "report"), str(sweep)]) == 0
    out = capsys.readouterr().out
    agg = json.loads((sweep / "report" / "aggregates_ppo.json").read_text())
    point, lo, hi = agg["gains"]["distillation"]["dpd-a1 (students' mean)"]["per_task"]["CartPole-v1"]
    # students' mean: DPD (320 + 290) / 2 = 305, independent (200 + 200) / 2 = 200 -> +105; better 330 / 250;
    # worse 290 / 150 (+140); end distance per seed: mean(0.1, 0.5) = 0.30, mean(0.2, 0.5) = 0.35; distillation
    # steps: student0 2 phases of 10, student1 1 -> mean 15, range 10-20
    assert point == pytest.approx(105.0)
    assert (f"| dpd-a1 | 2 | 305 | 320 | 290 | +105 [{lo:+.0f}, {hi:+.0f}] / +140 | +15 [+10, +20] | 15 (10-20) | "
            "s0: 0.3 / s1: 0.35 |") in out
    assert "| independent | 2 | 200 | 250 | 150 | — | +50 [+0, +100] | 0 | s0: 0.3 / s1: 0.35 |" in out
    assert "| vanilla (all steps) | 2 | 400 (one learner) |" in out  # 400 and 401: mean 400.5 prints as 400
    # seed by seed: DPD 320 / 290 against the independent pair's 200 / 200 on the same seeds; a 2-value bootstrap's
    # 2.5 / 97.5 percentiles are the two values themselves
    assert "| dpd-a1 | final | 2 | s0: +120 / s1: +90 | 2 of 2 | +105 [+90, +120] |" in out
    # mean over training: every curve is (0, final), so half the final: +60 / +45
    assert "| dpd-a1 | mean over training | 2 | s0: +60 / s1: +45 | 2 of 2 | +52 [+45, +60] |" in out
    # seeds the independent pair lacks: the gain is on the seeds both have, and the cell says so
    more = SweepSpec(envs=["CartPole-v1"], total_steps=2000, seeds=[2], variants=["dpd"])
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "sweep.yaml").write_text(yaml.safe_dump(more.to_dict()))
    for trial in expand(more):
        write_fake_run(tmp_path / "more" / "runs" / trial.name, trial.config, {"student0": [0.0, 0.0], "student1": [0.0, 0.0]})
    write_report([sweep, tmp_path / "more"], tmp_path / "both")
    assert table.main([str(tmp_path / "both"), str(sweep), str(tmp_path / "more")]) == 0
    assert f"| dpd-a1 | 3 | 203 | 213 | 193 | +105 [{lo:+.0f}, {hi:+.0f}] / +140 (on the 2 seeds both have) |" in (
        capsys.readouterr().out)
    # (the first table) every learner, seed by seed
    assert "| vanilla | 400 | 401 |" in out and "| independent | 100 / 300 | 200 / 200 |" in out
    assert "| dpd-a1 | 300 / 340 | 280 / 300 |" in out


def test_power_matches_cohens_table():
    power = _load("power")
    # Cohen (1988): d = 0.5 needs 64 per group for 80% power (two-sided 5%); d = 0.8 needs 26
    assert power.power(0.5, 1.0, 64) == pytest.approx(0.80, abs=0.005)
    assert power.power(80.0, 100.0, 26) == pytest.approx(0.80, abs=0.01)
    assert power.minimum_detectable(100.0, 26) == pytest.approx(80, abs=1.5)
    assert power.power(0.0, 1.0, 8) == pytest.approx(0.05, abs=1e-9)  # no effect: the false-positive rate
    # many seeds (a large noncentrality: scipy's nct gave NaN and the search raised): a normal approximation's answer
    assert power.minimum_detectable(404.0, 200) == pytest.approx(2.80 * 404.0 * np.sqrt(2 / 200), rel=0.01)


@pytest.mark.slow
def test_the_whole_study_runs_in_one_resumable_command(tmp_path):
    """run_study.sh on a tiny study (CartPole, 2048 steps): stage 1, the choice, stage 2, one report of both; run
    again, it trains nothing more."""
    import subprocess

    study = tmp_path / "study"
    study.mkdir()
    common = {"envs": ["CartPole-v1"], "algos": ["ppo"], "total_steps": 2048, "preset": "zoo", "alphas": [1.0],
              "overrides": ["eval_freq=512", "eval_episodes=2"]}
    (study / "stage1.yaml").write_text(yaml.safe_dump(
        {**common, "seeds": [0, 1, 2], "variants": ["vanilla", "independent", "dpd"], "schedules": ["dense", "authors"]}))
    (study / "stage2-controls.yaml").write_text(yaml.safe_dump(
        {**common, "seeds": chooser.STAGE2_SEEDS, "variants": ["vanilla", "independent"]}))
    bin_dir = Path(sys.executable).parent
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "STUDY": str(study), "DPD": str(bin_dir / "dpd"),
           "REPORT_DPD": str(bin_dir / "dpd"), "PYTHON": sys.executable, "WORKERS": "2"}
    runs = tmp_path / "runs"

    def study_run() -> str:
        done = subprocess.run([str(STUDY / "run_study.sh"), str(runs)], env=env, capture_output=True, text=True,
                              timeout=1200)
        assert done.returncode == 0, done.stdout[-1500:] + done.stderr[-1500:]
        return done.stdout + done.stderr

    out = study_run()
    arm = next(line.split(": ")[1].split()[0] for line in out.splitlines() if line.startswith("stage 2 arm: "))
    assert arm in {"dpd-a1", "dpd-a1-authors"}
    report = (runs / "report-stage2" / "report.md").read_text()
    # 3 + 5 seeds of both controls and of the chosen arm, 3 of the other arm: 27 runs in one report
    assert "27 of 27 runs finished" in report
    assert f"| {arm} | students' mean | 8 |" in report and "| vanilla | vanilla | 8 |" in report
    assert (runs / "report-stage2" / "tables.md").read_text().count("#### CartPole-v1") == 1
    assert "no " in out and "stage3-alpha.yaml: done" in out  # no stage 3 sweep in this study: it ends there
    # stage 3: alpha 0.1 of the chosen arm on seed 0, reported with stages 1 and 2
    (study / "stage3-alpha.yaml").write_text(yaml.safe_dump(
        {**common, "seeds": [0], "alphas": [0.1], "variants": ["dpd"],
         "schedules": ["authors" if arm == "dpd-a1-authors" else "dense"]}))
    again = study_run()
    assert all(f"0 finished, {n} already done" in again for n in (12, 10, 5))  # stage 1, controls, the arm
    assert "1 finished, 0 already done" in again  # stage 3's one run
    report3 = (runs / "report-stage3" / "report.md").read_text()
    assert "28 of 28 runs finished" in report3 and "a0.1" in report3
    assert (runs / "report-stage3" / "tables.md").exists()


@pytest.mark.slow
def test_a_device_slice_round_trip_adds_up(tmp_path):
    """studies/device_slice.sh pack -> run -> merge, all on this machine: a finished run travels as its summary alone
    and is never replaced, an unfinished one resumes from its checkpoint and comes back finished, a pending sweep runs
    there; afterwards `dpd sweep` here finds nothing left to do."""
    import shutil
    import subprocess

    root = STUDY.parents[1]
    bin_dir = Path(sys.executable).parent
    common = {"envs": ["CartPole-v1"], "algos": ["ppo"], "total_steps": 2048, "preset": "zoo", "alphas": [1.0],
              "variants": ["vanilla"], "overrides": ["eval_freq=512", "eval_episodes=2", "checkpoint_freq=512"]}
    (tmp_path / "a.yaml").write_text(yaml.safe_dump({**common, "seeds": [0, 1]}))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({**common, "seeds": [2]}))
    runs, out = tmp_path / "runs", tmp_path / "out"
    out.mkdir()
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "DEVSTUDY": str(tmp_path / "devstudy"), "WHEELS": str(tmp_path / "none"),
           "PYTHON": sys.executable, "OUT": str(out), "T": "300"}

    def sh(*args: str, cwd: Path = root) -> str:
        done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stdout[-1500:] + done.stderr[-1500:]
        return done.stdout + done.stderr

    sh(str(bin_dir / "dpd"), "sweep", "--config", str(tmp_path / "a.yaml"), "--out", str(runs / "a"), "--workers", "2")
    finished, unfinished = runs / "a/runs/CartPole-v1__ppo__vanilla__s0", runs / "a/runs/CartPole-v1__ppo__vanilla__s1"
    (unfinished / "summary.json").unlink()  # as if stopped after its last checkpoint
    model = (finished / "vanilla" / "model.zip").read_bytes()

    sh("studies/device_slice.sh", "pack", "HEAD", str(runs), f"a:{tmp_path / 'a.yaml'}:1", f"b:{tmp_path / 'b.yaml'}:1")
    travels = tmp_path / "devstudy/sweeps"
    assert sorted(p.name for p in (travels / "a/runs" / finished.name).iterdir()) == ["summary.json"]
    assert (travels / "a/runs" / f"{unfinished.name}.tar.xz").is_file()
    shown = sh("studies/device_slice.sh", "run")
    assert "0 failed" in shown and (out / "versions.txt").is_file()
    merged = sh("studies/device_slice.sh", "merge", str(runs), str(out))
    assert f"merged a/{unfinished.name}" in merged and "merged b/CartPole-v1__ppo__vanilla__s2" in merged
    assert f"merged a/{finished.name}" not in merged
    assert (finished / "vanilla" / "model.zip").read_bytes() == model  # the finished run here is untouched
    assert (unfinished / "summary.json").is_file() and (runs / "b/runs/CartPole-v1__ppo__vanilla__s2/summary.json").is_file()
    for name in ("a", "b"):
        again = sh(str(bin_dir / "dpd"), "sweep", "--config", str(tmp_path / f"{name}.yaml"), "--out", str(runs / name))
        assert "0 finished" in again and "already done" in again
    assert list((runs / "device-logs").iterdir())
    shutil.rmtree(tmp_path / "devstudy")


@pytest.mark.parametrize("args,message", [
    (["merge", "RUNS", "EMPTY"], "no runs.tar.xz.* in"),
    (["pack", "HEAD", "RUNS", "a:missing.yaml:2"], "give NAME:CONFIG:WORKERS"),
    (["pack", "HEAD", "RUNS", "a:studies/when-dpd-helps/stage1.yaml:two"], "give NAME:CONFIG:WORKERS"),
    (["unpack"], "unknown command unpack"),
])
def test_device_slice_refuses_bad_input_in_one_line(tmp_path, args, message):
    import subprocess

    (tmp_path / "EMPTY").mkdir()
    args = [str(tmp_path / a) if a in ("RUNS", "EMPTY") else a for a in args]
    done = subprocess.run(["studies/device_slice.sh", *args], cwd=STUDY.parents[1], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "DEVSTUDY": str(tmp_path / "devstudy")}, timeout=60)
    assert done.returncode != 0 and done.stderr.startswith("device_slice: ") and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "devstudy").exists()


WHY = STUDY.parent / "why-and-ddpg"


def _load_why(name: str):
    return load_script(WHY / f"{name}.py", f"why_{name}")


@pytest.mark.parametrize("agreement, expected", [
    ({"two_critics": 0.585, "debiased": 0.618, "own_critic": 0.489}, ("two_critics", False, True)),  # stage A's
    ({"two_critics": 0.60, "debiased": 0.66, "own_critic": 0.50}, ("debiased", False, False)),
    ({"two_critics": 0.60, "debiased": 0.70, "own_critic": 0.86}, ("own_critic", True, False)),
    ({"two_critics": 0.82, "debiased": 0.84, "own_critic": 0.50}, ("two_critics", True, False)),
])  # fmt: skip
def test_stage_b_arm_follows_the_committed_rule(agreement, expected):
    stage_a = _load_why("stageA")
    choice = stage_a.choose_arm({k: {"sign_agreement": v} for k, v in agreement.items()})
    assert (choice["estimator"], choice["gate"], choice["dropped"]) == expected
    text = stage_a.arm_sweep(choice)
    spec = SweepSpec.from_dict(yaml.safe_load(text))
    stage_b = SweepSpec.from_dict(yaml.safe_load((WHY / "stageB-dpd.yaml").read_text()))
    assert (spec.total_steps, spec.preset, spec.overrides, spec.envs) == (
        stage_b.total_steps, stage_b.preset, stage_b.overrides, stage_b.envs)  # the report pools them
    if expected[2]:
        assert spec.seeds == [8, 9] and spec.variants == ["vanilla", "independent", "dpd"]
    else:
        (trial,) = [t for t in expand(spec) if t.config.seed == 0 and t.config.env_id == "HalfCheetah-v5"]
        assert trial.config.distill.xi_estimator == expected[0]
        assert trial.config.distill.gate == ("advantage" if expected[1] else "none")


def test_stage_b_split_configs_are_the_rules_trials_cut_in_two():
    """stageB-run.sh trains stage B on two cores from configs cut out of the committed ones: every trial of a cut
    is the original's trial of the same name, config for config, and the cuts together are the whole."""
    def trials(name: str) -> dict[str, dict]:
        spec = SweepSpec.from_dict(yaml.safe_load((WHY / name).read_text()))
        return {t.name: t.config.to_dict() for t in expand(spec)}

    controls, tail = trials("stageB-controls.yaml"), trials("stageB-controls-tail.yaml")
    assert len(tail) == 8 and all(controls[name] == config for name, config in tail.items())
    assert {(c["env_id"], c["seed"]) for c in tail.values()} == {("Walker2d-v5", s) for s in range(4, 8)}
    (last,) = trials("stageB-controls-s7.yaml").items()  # the tail's last trial, trained by the first core
    assert last == list(tail.items())[-1] and last[1]["seed"] == 7 and last[1]["method"] == "independent"
    whole = trials("stageB-seeds89.yaml")
    hc, w2d = trials("stageB-seeds89-hc.yaml"), trials("stageB-seeds89-w2d.yaml")
    assert not set(hc) & set(w2d) and {**hc, **w2d} == whole


def test_stage_b_figure_draws_every_finished_seed_of_each_arm(tmp_path, monkeypatch):
    """stageB.py's figure: per task, vanilla, the independent pair and each DPD arm, each finished seed's final
    return (a pair: its students' mean), in seed order; unfinished runs left out."""
    from dpd.experiments.report import Run

    stage_b = _load_why("stageB")
    import study_figures  # studies/study_figures.py, on sys.path once a study script is loaded

    x = np.array([0.0, 40e3])
    runs = [Run("v0", "finished", "T-v0", "ddpg", "vanilla", 0, curves={"vanilla": (x, np.array([0, 7.0]))}),
            Run("i1", "finished", "T-v0", "ddpg", "independent", 1, curves={
                "student0": (x, np.array([0, 4.0])), "student1": (x, np.array([0, 6.0]))}),
            Run("i0", "finished", "T-v0", "ddpg", "independent", 0, curves={
                "student0": (x, np.array([0, 1.0])), "student1": (x, np.array([0, 5.0]))}),
            Run("d0", "unfinished", "T-v0", "ddpg", "dpd-a1", 0)]
    drawn = {}
    real = study_figures.seed_strips
    monkeypatch.setattr(study_figures, "seed_strips", lambda panels, path, *a, **k: drawn.update(panels) or real(
        panels, path, *a, **k))
    path = stage_b.figure(runs, tmp_path / "b.png")
    assert drawn == {"T-v0": {"vanilla\n(1 seeds)": [7.0], "independent\n(2 seeds)": [3.0, 5.0]}}
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stage_b_seeds_0_to_7_decide_and_seeds_8_9_are_reported_beside():
    from dpd.experiments.report import Run

    stage_b = _load_why("stageB")
    x = np.array([0.0, 40e3])
    runs = []
    for seed in range(10):  # DPD 30 above the pair on seeds 0-7, 300 below on seeds 8-9
        for variant, final in (("vanilla", 0.0), ("independent", 100.0 + seed),
                               ("dpd-a1", 130.0 + seed if seed < 8 else -200.0 + seed)):
            names = ["vanilla"] if variant == "vanilla" else ["student0", "student1"]
            runs.append(Run(f"{variant}{seed}", "finished", "T-v0", "ddpg", variant, seed,
                            curves={n: (x, np.array([0, final])) for n in names}))
    deciding, every = stage_b.deciding_and_all(runs)
    assert deciding["T-v0"]["arms"]["dpd-a1"]["seeds"] == list(range(8))
    assert deciding["T-v0"]["arms"]["dpd-a1"]["distillation_gain"]["diff"] == pytest.approx(30.0)
    assert deciding["T-v0"]["arms"]["dpd-a1"]["verdict"] == "helps"
    assert every["T-v0"]["arms"]["dpd-a1"]["distillation_gain"]["diff"] == pytest.approx((8 * 30 - 2 * 300) / 10)
    assert "| T-v0 | dpd-a1 | 10 | -36" in stage_b.all_seeds_markdown(every)
    assert stage_b.deciding_and_all([r for r in runs if r.seed < 8])[1] is None  # no seed 8-9: nothing beside


def test_stage_b_verdicts_recompute_from_the_runs():
    """stageB.py: the distillation gain with Welch's interval and the permutation p, and the paper's statistic on
    the grid both arms evaluated at (vanilla's extra points left out), against a hand computation."""
    from dpd.experiments.report import Run
    from dpd.experiments.stats import difference

    stage_b = _load_why("stageB")
    pair_x, van_x = np.array([0.0, 40e3, 80e3]), np.array([0.0, 20e3, 40e3, 60e3, 80e3])
    runs = []
    for seed in range(4):
        runs.append(Run(f"v{seed}", "finished", "T-v0", "ddpg", "vanilla", seed,
                        curves={"vanilla": (van_x, np.array([0, 100, 50, 900, 60.0]) + seed)}))  # 100, 900: off-grid
        for variant, final in (("independent", 100.0), ("dpd-a1", 130.0)):
            runs.append(Run(f"{variant}{seed}", "finished", "T-v0", "ddpg", variant, seed, curves={
                "student0": (pair_x, np.array([0, 200, final + seed])),
                "student1": (pair_x, np.array([0, 10, final + seed + 2]))}))
    result = stage_b.analyse(runs, required=frozenset(range(4)))["T-v0"]
    assert result["grid_points"] == 3
    arm = result["arms"]["dpd-a1"]
    dpd_means, ind_means = np.arange(4) + 131.0, np.arange(4) + 101.0
    expected = difference(dpd_means, ind_means, seed=1)
    assert arm["distillation_gain"]["diff"] == pytest.approx(30.0)
    assert arm["distillation_gain"]["welch_low"] == pytest.approx(expected.welch_low)
    assert arm["verdict"] == "helps"
    # max on the grid (0, 40k, 80k): vanilla's 100 and 900 fall between the pairs' evaluations and do not count
    assert result["vanilla"]["max_grid"] == pytest.approx(np.mean(np.arange(4) + 60.0))
    assert arm["max_grid"] == pytest.approx(np.mean([(200 + 132 + s) / 2 for s in range(4)]))
    assert arm["paper_statistic_vs_vanilla"]["ratio"] == pytest.approx(arm["max_grid"] / 61.5 - 1)
    assert "**helps**" in stage_b.markdown(stage_b.analyse(runs, required=frozenset(range(4))))
    # against vanilla (final 60 + seed; mean over training of vanilla's 5 evaluations 222 + seed): every seed each
    vs = arm["vs_vanilla_final"]
    assert vs["diff"] == pytest.approx(131 - 60) and arm["vs_vanilla_mean"]["diff"] == pytest.approx(
        np.mean([(np.mean([0, 200, 130 + s]) + np.mean([0, 10, 132 + s])) / 2 for s in range(4)]) - np.mean(
            [np.mean([0, 100, 50, 900, 60.0]) + s for s in range(4)]))
    # the paper's own accounting: each student's max over its whole run (200; 132 + seed) against vanilla's over its
    # first half (evaluations at 0, 20k, 40k: 100 + seed; its 900 at 60k is in the second half)
    own = arm["paper_own_steps"]
    assert own["vanilla_half_max"] == pytest.approx(101.5) and own["max"] == pytest.approx(np.mean((332 + np.arange(4)) / 2))
    assert own["ratio"] == pytest.approx(own["max"] / 101.5 - 1)
    assert result["arms"]["independent"]["student0_is_vanilla_first_half"] == []  # made-up curves: they differ
    twin = Run("i0", "finished", "T-v0", "ddpg", "independent", 0, curves={
        "student0": (pair_x, np.array([0, 100, 50.0])), "student1": (pair_x, np.zeros(3))})
    assert stage_b.same_first_half(runs[0], twin)  # vanilla seed 0's evaluations at 0, 20k, 40k
    assert not stage_b.same_first_half(runs[0], runs[1])
    # the independent pair in the same accounting: its students (200; 102 + seed) against the same vanilla half
    assert result["arms"]["independent"]["paper_own_steps"]["max"] == pytest.approx(np.mean((302 + np.arange(4)) / 2))
    # the rule's seeds 0-7 not all in: the numbers, but no verdict and no judgement of the paper's claim
    early = stage_b.analyse(runs)["T-v0"]["arms"]["dpd-a1"]
    assert early["verdict"] == "none yet (4 of 8 required seeds)" and early["paper_statistic_vs_vanilla"]["holds"] is None
    assert early["distillation_gain"]["diff"] == pytest.approx(30.0)
    assert "not judged yet" in stage_b.markdown(stage_b.analyse(runs))
    # a task part-way (one vanilla seed, no independent pair yet): the DPD seeds counted, none paired, no "nan"
    partial = stage_b.markdown(stage_b.analyse([r for r in runs if r.variant == "dpd-a1" or r.name == "v0"]))
    assert "Vanilla (1 seed):" in partial and "| dpd-a1 | 4 (0 paired) |" in partial and "nan" not in partial
    assert "no interval (one seed in an arm)" in partial and "first half, evaluation for" not in partial


@pytest.mark.parametrize("estimator", ["two_critics", "debiased"])
def test_stage_c_is_stage_as_ppo_pairs_with_the_gate_on_the_ppo_studys_seeds(estimator):
    """Stage C's DPD arm differs from stage A's PPO pairs only in xi's estimator, the gate and the seeds, and runs
    with the PPO study's controls' settings (the comparison the rule names)."""
    stage_a = _load_why("stageA")
    spec = SweepSpec.from_dict(yaml.safe_load(stage_a.stage_c_sweep(
        {"estimator": estimator, "agreement": 0.9, "earned": True})))
    controls = SweepSpec.from_dict(yaml.safe_load((STUDY / "stage2-controls.yaml").read_text()))
    pairs = SweepSpec.from_dict(yaml.safe_load((WHY / "stageA-ppo.yaml").read_text()))
    assert spec.seeds == list(range(8)) and (spec.total_steps, spec.preset, spec.envs, spec.overrides) == (
        controls.total_steps, controls.preset, controls.envs, controls.overrides)
    ours = {(t.config.env_id, t.config.seed): t.config for t in expand(spec)}
    for trial in expand(pairs):
        mine = ours[(trial.config.env_id, trial.config.seed)]
        assert (mine.distill.xi_estimator, mine.distill.gate) == (estimator, "advantage")
        theirs = TrainConfig.from_dict(trial.config.to_dict()).with_values(
            xi_estimator=estimator, distill_gate="advantage", snapshots=mine.snapshots,
            record_sim_states=mine.record_sim_states).resolve(check_env=False)
        assert mine.to_dict() == theirs.to_dict()
    with pytest.raises(ValueError, match="not earned"):
        stage_a.stage_c_sweep({"estimator": estimator, "agreement": 0.7, "earned": False})


def test_stage_cs_control_rerun_is_the_ppo_studys_trial():
    rerun = expand(SweepSpec.from_dict(yaml.safe_load((WHY / "stageC-control-rerun.yaml").read_text())))
    stage1 = {t.name: t.config.to_dict() for t in expand(SweepSpec.from_dict(yaml.safe_load(
        (STUDY / "stage1.yaml").read_text())))}
    assert [t.name for t in rerun] == ["HalfCheetah-v5__ppo__vanilla__s0"]
    assert rerun[0].config.to_dict() == stage1[rerun[0].name]


def test_stage_c_reads_the_ppo_studys_controls_and_recomputes_its_gains(tmp_path):
    """stageC.py takes the controls from the PPO study's committed table: the gains it computes for that study's own
    arms are the study's published ones (dense1 -297 on HalfCheetah, +102 on Walker2d; dense1-a0.1 +16), and a
    stage-C arm is judged by Welch's interval against the same independent pairs."""
    stage_c = _load_why("stageC")
    controls = stage_c.read_finals(STUDY.parents[1] / stage_c.CONTROLS)
    assert controls["HalfCheetah-v5"]["independent"][3] == [1661.0, 2260.0]
    assert controls["Walker2d-v5"]["vanilla"][1] == [1254.0] and sorted(controls["Walker2d-v5"]["dpd-a1"]) == [0, 1, 2]
    ind = controls["HalfCheetah-v5"]["independent"]
    better = {s: [v + 1000.0 for v in ind[s]] for s in range(8)}  # a made-up gate arm, 1000 above on every seed
    result = stage_c.analyse({"HalfCheetah-v5": {"gate-twocritics": better}, "Walker2d-v5": {}}, controls)
    rows = result["HalfCheetah-v5"]["arms"]
    assert rows["dense1"]["distillation_gain"]["diff"] == pytest.approx(-297, abs=0.5)
    assert rows["dense1-a0.1"]["distillation_gain"]["diff"] == pytest.approx(16, abs=0.5)
    assert result["Walker2d-v5"]["arms"]["dense1"]["distillation_gain"]["diff"] == pytest.approx(102, abs=0.5)
    gate = rows["gate-twocritics"]
    assert gate["distillation_gain"]["diff"] == pytest.approx(1000.0) and gate["source"] == "this stage"
    # unpaired, as the rule says: the pairs' means spread by ~500 over 8 seeds, so Welch's interval is ~+/-530 wide
    low, high = gate["distillation_gain"]["welch_low"], gate["distillation_gain"]["welch_high"]
    assert 0 < low < 1000 < high and gate["verdict"] == "helps" and rows["dense1"]["verdict"] == "no measurable effect"
    text = stage_c.markdown(result)
    assert "| gate-twocritics | this stage | 8 |" in text and "**helps**" in text and "(not judged)" in text
    # fewer seeds than the rule asks: numbers shown, no verdict
    part = stage_c.analyse({"HalfCheetah-v5": {"gate-twocritics": {s: better[s] for s in range(5)}}}, controls)
    assert part["HalfCheetah-v5"]["arms"]["gate-twocritics"]["verdict"] == "none yet (5 of 8 seeds)"
    png = stage_c.figure({"HalfCheetah-v5": {"gate-twocritics": better}}, controls, tmp_path / "c.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stage_c_reports_how_much_the_gate_let_through():
    """The share of `dense`'s 10 steps per phase the gate allowed, per student, from the run's phase counts and
    distillation steps; the better and the worse student (by final return) apart."""
    from dpd.experiments.report import Run

    stage_c = _load_why("stageC")
    phases = np.arange(100.0)

    def run(seed: int, finals: tuple[float, float], steps: tuple[float, float]) -> Run:
        return Run(name=f"r{seed}", status="finished", env_id="HalfCheetah-v5", algo="ppo", variant="gate-debiased",
                   seed=seed, summary={"distill_schedule": "dense"},
                   curves={f"student{i}": (np.array([0.0, 1.0]), np.array([0.0, finals[i]])) for i in (0, 1)},
                   distances={f"student{i}": (phases, phases) for i in (0, 1)},
                   distill_steps={f"student{i}": steps[i] for i in (0, 1)})

    use = stage_c.gate_use([run(0, (10.0, 20.0), (900.0, 300.0)), run(1, (30.0, 5.0), (500.0, 700.0))])
    # run 0: the better is student1 (30%), the worse student0 (90%); run 1: the better student0 (50%), worse 70%
    assert use == {"HalfCheetah-v5": {"runs": 2, "better": pytest.approx(0.4), "worse": pytest.approx(0.8)}}
    wrong = run(2, (1.0, 2.0), (1.0, 1.0))
    wrong.summary["distill_schedule"] = "authors"
    with pytest.raises(SystemExit, match="not on the `dense` schedule"):
        stage_c.gate_use([wrong])


def test_adam_scale_measures_what_the_optimiser_does_to_the_weights_level(tmp_path):
    """adam_scale.py drives dpd's own Distiller: with normalised weights the level of xi cancels exactly (the update
    is the same whether the peer is better or worse everywhere); unnormalised, a warm Adam passes a level drop on
    (smaller updates) while a fresh Adam erases it at once (its first steps are sign-like)."""
    adam = _load_why("adam_scale")
    ppo = adam.SCHEDULES["ppo"]
    assert adam.step_response(ppo, True, 3, 2) == pytest.approx([1.0, 1.0], abs=1e-3)
    dropped = adam.step_response(ppo, False, 30, 3)
    assert min(dropped) < 0.3  # e^-2 = 0.14 of the weight reaches the actor, Adam not yet adapted
    assert adam.cold_start(ppo, False) == pytest.approx(1.0, abs=0.02)
    assert adam.random_levels(ppo, True, 2, 6) == pytest.approx(1.0, abs=0.05)  # other phases: not exactly 1
    adam.main(["--out", str(tmp_path), "--warm", "2", "--after", "2", "--burn-in", "1", "--phases", "8"])  # all of it, tiny
    m = json.loads((tmp_path / "adam_scale.json").read_text())
    assert set(m) >= {"ppo/normalize=False", "ppo/normalize=True", "ddpg/normalize=False", "ddpg/normalize=True"}
    assert "| ddpg (50 steps/phase, lr 0.0001) | unnormalised (Eq. 11) |" in (tmp_path / "adam_scale.md").read_text()


def test_stage_c_counts_the_gates_phases(tmp_path):
    """The gate phase by phase, pooled over every student's progress.csv: shut (< 0.1), open (> 0.9), median."""
    stage_c = _load_why("stageC")
    assert stage_c.gate_phases([tmp_path]) == {}
    for run, values in (("a", ["0.0", "0.5", ""]), ("b", ["1.0", "0.95", "0.05"])):
        folder = tmp_path / "runs" / run / "student0"
        folder.mkdir(parents=True)
        (folder / "progress.csv").write_text("time/iterations,distill/gate\n" + "".join(f"1,{v}\n" for v in values))
    got = stage_c.gate_phases([tmp_path])
    assert got == {"phases": 5, "shut": pytest.approx(0.4), "open": pytest.approx(0.4), "median": pytest.approx(0.5)}


def test_stage_c_sets_the_gate_against_who_was_better():
    """Each phase's gate against the peer's last evaluation return minus the student's own: a gate that opens
    exactly where the peer was better has AUC 1; the means split accordingly."""
    import tempfile

    stage_c = _load_why("stageC")
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "runs" / "r"
        # student1 is better until 10k student steps, then student0 is
        returns = {"student0": [0.0, 100.0, 300.0], "student1": [50.0, 200.0, 100.0]}
        for s, ys in returns.items():
            (run / s).mkdir(parents=True)
            (run / s / "evaluations.csv").write_text("student_steps,total_env_steps,mean_return\n" + "".join(
                f"{k * 5000},{k * 10000},{y}\n" for k, y in enumerate(ys)))
        gates = {"student0": [0.9, 0.8, 0.1, 0.2], "student1": [0.1, 0.0, 0.7, 1.0]}  # open where the peer leads
        for s, gs in gates.items():
            (run / s / "progress.csv").write_text("time/total_timesteps,distill/gate\n" + "".join(
                f"{steps},{g}\n" for steps, g in zip((2000, 6000, 10500, 14000), gs, strict=True)))
        got = stage_c.gate_vs_returns([Path(tmp)])
    assert got["phases"] == 8 and got["auc"] == 1.0
    assert got["peer_better"] == pytest.approx(np.mean([0.9, 0.8, 0.7, 1.0]))
    assert got["peer_worse"] == pytest.approx(np.mean([0.1, 0.2, 0.1, 0.0]))


def test_gate_windows_sets_each_gate_against_the_true_gap(tmp_path, capsys):
    """gate_windows.py: per estimator, the share gate and the mean-sign gate averaged over the windows where the peer
    is truly worse / better on the whole, read from every run's calibration.json."""
    gates = _load_why("gate_windows")
    with pytest.raises(SystemExit, match=r"no RUN/calibration/calibration\.json"):
        gates.main([str(tmp_path), "--out", str(tmp_path / "out")])

    def window(gap: float, share: float, gate: float, mean: float) -> dict:
        return {"true_gap": gap, "true_peer_better_share": share,
                "estimators": {"debiased": {"gate": gate, "mean": mean}}}

    windows = [window(-5, 0.1, 0.2, -1.0), window(-3, 0.3, 0.4, 2.0), window(4, 0.9, 0.8, 3.0), window(6, 0.7, 0.6, -1)]
    folder = tmp_path / "runs" / "r" / "calibration"
    folder.mkdir(parents=True)
    (folder / "calibration.json").write_text(json.dumps({"algo": "ppo", "windows": windows}))
    gates.main([str(tmp_path), "--out", str(tmp_path / "out")])
    got = json.loads((tmp_path / "out" / "gate_windows.json").read_text())["ppo"]
    assert (got["windows"], got["truly_worse"], got["truly_better"]) == (4, 2, 2)
    e = got["debiased"]
    assert e["share_gate_when_worse"] == pytest.approx(0.3) and e["share_gate_when_better"] == pytest.approx(0.7)
    assert e["sign_gate_when_worse"] == pytest.approx(0.5) and e["sign_gate_when_better"] == pytest.approx(0.5)
    assert e["share_r"] == pytest.approx(0.28 / np.sqrt(0.4 * 0.2))  # cov / (sd sd) over the four windows: 0.99
    assert "| ppo | debiased | 4 (2 / 2) | 0.30 / 0.70 | 0.50 / 0.50 |" in capsys.readouterr().out


def test_the_sweeps_dpd_calibrate_reads_record_simulator_states_and_stage_b_pools_with_stage_a():
    """Recording simulator states is opt-in: stage A's sweeps (calibrate.sh calibrates them) ask for it in every
    trial; stage B's sweep files stay as they ran (the pinned dpd of stageB-run.sh knows no such key, and the restored
    folders' sweep.yaml must match them), and a report still pools stage A's DDPG folder with them: an override that
    changes only what a run records does not make two sweeps incomparable."""
    from dpd.experiments.report.runs import COMPARABLE, comparable

    for name in ("stageA-ddpg.yaml", "stageA-ppo.yaml"):
        trials = expand(SweepSpec.from_dict(yaml.safe_load((WHY / name).read_text())))
        assert trials and all(t.config.record_sim_states for t in trials), name
    stage_a = SweepSpec.from_dict(yaml.safe_load((WHY / "stageA-ddpg.yaml").read_text()))
    for path in sorted(WHY.glob("stageB-*.yaml")):
        spec = SweepSpec.from_dict(yaml.safe_load(path.read_text()))
        assert not any(t.config.record_sim_states for t in expand(spec)), path.name
        assert spec.overrides != stage_a.overrides
        assert all(comparable(spec, key) == comparable(stage_a, key) for key in COMPARABLE), path.name
