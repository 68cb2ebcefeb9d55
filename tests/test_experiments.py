"""Sweeps (local pool, Ray local mode, resume, failures) and reports (numbers checked by hand)."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from dpd.cli import main
from dpd.experiments.report import write_report
from dpd.experiments.sweep import RUNS_DIR, SweepSpec, expand, run_sweep, trial_status

pytestmark = pytest.mark.extended  # make test-extended (CI runs it after make test)

TINY = ["eval_freq=512", "eval_episodes=2"]


def tiny_spec(**kw):
    return SweepSpec(envs=["CartPole-v1"], total_steps=2048, seeds=[0, 1], overrides=TINY, **kw)


def test_tiny_sweep_on_the_local_pool_then_report(tmp_path):
    updates = []
    result = run_sweep(tiny_spec(), tmp_path / "sw", workers=2, on_update=updates.append)
    assert sorted(result.finished) == sorted(t.name for t in expand(tiny_spec())) and not result.failed
    assert updates and updates[-1]["done"] == 4
    again = run_sweep(tiny_spec(), tmp_path / "sw", workers=2)
    assert not again.finished and len(again.skipped) == 4  # rerunning a finished sweep runs nothing
    report = write_report(tmp_path / "sw").read_text()
    assert "| vanilla | vanilla | 2 |" in report and "| dpd-a1 | better | 2 |" in report
    assert "P(group > vanilla)" in report and (tmp_path / "sw" / "report" / "curves_CartPole-v1_ppo.png").is_file()
    assert "![returns and pair action distance per arm](arms_CartPole-v1_ppo.png)" in report
    assert (tmp_path / "sw" / "report" / "arms_CartPole-v1_ppo.png").stat().st_size > 10_000  # a drawn figure


def test_the_status_counts_only_trials_in_a_worker_as_running(tmp_path):
    """Resumed trials have run folders before a worker takes them; the pool's queue, one longer than its workers,
    marks one of them running early. With one worker the status never shows two running."""
    spec = SweepSpec(envs=["CartPole-v1"], total_steps=2048, seeds=[0, 1, 2], variants=["vanilla"], overrides=TINY)
    run_sweep(spec, tmp_path / "sw", workers=2)
    for run in (tmp_path / "sw" / RUNS_DIR).iterdir():
        (run / "summary.json").unlink()  # every trial unfinished: resumed (here: started again) by the next sweep
    updates = []
    result = run_sweep(spec, tmp_path / "sw", workers=1, on_update=updates.append)
    assert len(result.finished) == 3
    assert max(len(u["running"]) for u in updates) == 1


def test_a_sweep_through_ray_in_local_mode_finishes_every_trial_without_rays_output(tmp_path, capsys):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        result = run_sweep(tiny_spec(variants=["dpd", "vanilla"]), tmp_path / "sw", backend="ray")
    finally:
        ray.shutdown()
    assert len(result.finished) == 4 and not result.failed
    out = capsys.readouterr().out  # dpd's status line is the output: no Ray status box, no TensorBoard hint
    assert "Configuration for experiment" not in out and "tensorboard" not in out.lower()
    for name in result.finished:
        assert (tmp_path / "sw" / RUNS_DIR / name / "summary.json").is_file()


def test_a_failing_trial_is_reported_and_not_fatal(tmp_path, capsys):
    spec = SweepSpec(envs=["dpd_test_envs:DpdCrash-v0", "CartPole-v1"], total_steps=4096, seeds=[0],
                     variants=["vanilla"], overrides=TINY)
    result = run_sweep(spec, tmp_path / "sw", workers=2)
    assert list(result.failed) == ["dpd_test_envs_DpdCrash-v0__ppo__vanilla__s0"]
    assert "simulator exploded" in result.failed["dpd_test_envs_DpdCrash-v0__ppo__vanilla__s0"]
    assert result.finished == ["CartPole-v1__ppo__vanilla__s0"]
    report = write_report(tmp_path / "sw").read_text()
    rows = [line for line in report.splitlines() if line.startswith("| dpd_test_envs_DpdCrash-v0__ppo__vanilla__s0 |")]
    assert any("| failed |" in row and "raised RuntimeError in step(): simulator exploded at step 301" in row
               for row in rows)


def test_sweep_resumes_after_being_killed(tmp_path):
    out = tmp_path / "sw"
    cmd = [sys.executable, "-m", "dpd.cli", "sweep", "--env", "CartPole-v1", "--seeds", "2", "--total-steps", "6000",
           "--workers", "1", "--out", str(out)] + [a for s in TINY for a in ("--set", s)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.glob("runs/*/summary.json")):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its worker, in the middle of the next run
    proc.wait()
    states = [trial_status(p) for p in sorted((out / RUNS_DIR).iterdir())]
    assert states.count("finished") >= 1 and states.count("finished") < 4
    code = main(["sweep", "--env", "CartPole-v1", "--seeds", "2", "--total-steps", "6000", "--workers", "2", "--out",
                 str(out)] + [a for s in TINY for a in ("--set", s)])
    assert code == 0
    assert all(trial_status(p) == "finished" for p in (out / RUNS_DIR).iterdir())
    assert len(list((out / RUNS_DIR).iterdir())) == 4


def _progress_steps(run: Path) -> list[int]:
    with open(run / "student0" / "progress.csv", newline="") as fh:
        return [int(float(r["time/total_timesteps"])) for r in csv.DictReader(fh)]


def _sigterm_sweep_when(args: list[str], ready) -> tuple[subprocess.Popen, str]:
    """Start ``dpd sweep ARGS`` in a subprocess, SIGTERM its main process once ``ready()`` (it forwards the stop
    to its workers); check that it exits with 143 (128 + SIGTERM) and return it with its stderr."""
    proc = subprocess.Popen([sys.executable, "-m", "dpd.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not ready():
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    return proc, err


def test_sigterm_checkpoints_running_trials_and_the_next_sweep_resumes_them(tmp_path):
    out = tmp_path / "sw"
    args = ["sweep", "--env", "CartPole-v1", "--seeds", "2", "--total-steps", "16000", "--workers", "2",
            "--method", "dpd", "--out", str(out), "--set", "eval_freq=0"]
    runs = [out / RUNS_DIR / f"CartPole-v1__ppo__dpd-a1__s{s}" for s in (0, 1)]
    proc, err = _sigterm_sweep_when(args, lambda: all((r / "student0" / "progress.csv").is_file() for r in runs))
    assert "2 running trial(s) checkpointed" in err and f"(dpd status {out} shows where it stands)" in err
    stopped_at = {}
    for run in runs:
        assert (run / "checkpoint.pt").is_file() and trial_status(run) == "unfinished"
        stopped_at[run] = _progress_steps(run)[-1]
        assert 0 < stopped_at[run] < 8_000
    assert not [p for p in psutil_children_of(proc.pid)]  # no worker left behind
    assert main(args) == 0
    for run in runs:
        steps = _progress_steps(run)
        assert steps == sorted(steps) and len(set(steps)) == len(steps)  # resumed: no restart from 0, no repeats
        assert steps[-1] >= 8_000 and trial_status(run) == "finished"


def test_trials_queued_when_the_sweep_stops_do_not_start(tmp_path):
    out = tmp_path / "sw"
    args = ["sweep", "--env", "CartPole-v1", "--seeds", "4", "--total-steps", "16000", "--workers", "1",
            "--method", "vanilla", "--out", str(out), "--set", "eval_freq=0"]
    _, err = _sigterm_sweep_when(args, lambda: bool(list(out.glob("runs/*/vanilla/progress.csv"))))
    # one worker: one trial ran and checkpointed; the one the pool had queued returned without creating a run
    assert [p.name for p in (out / RUNS_DIR).iterdir()] == ["CartPole-v1__ppo__vanilla__s0"]
    assert "1 running trial(s) checkpointed" in err


def psutil_children_of(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` (from /proc; the sweep's pool workers)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


# ---------------------------------------------------------------------- report on synthetic logs
def write_fake_run(folder: Path, config, curves: dict[str, list[float]],
                   progress: dict[str, list[tuple[str, str]]] | None = None):
    """A finished run folder whose evaluations are exactly ``curves`` (learner -> returns at steps 0, 1000, ...);
    ``progress``: learner -> progress.csv rows (pair/action_distance, distill/phase_steps), "" for a blank cell."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config.to_dict()))
    learners = {}
    for learner, returns in curves.items():
        (folder / learner).mkdir()
        with open(folder / learner / "evaluations.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["student_steps", "total_env_steps", "mean_return", "std_return", "mean_length", "time_s"])
            for i, r in enumerate(returns):
                w.writerow([i * 1000, i * 1000 * len(curves), r, 0.0, 10.0, i])
        learners[learner] = {"env_steps": 1000 * (len(returns) - 1), "final_eval_return": returns[-1]}
        with open(folder / learner / "progress.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["time/total_env_steps", "pair/action_distance", "distill/phase_steps"])
            w.writerows([i * 100, *row] for i, row in enumerate((progress or {}).get(learner, [])))
    summary = {"total_env_steps": 2000, "wall_time_s": 10.0, "env_steps_per_s": 200.0, "learners": learners}
    (folder / "summary.json").write_text(json.dumps(summary))


def test_report_numbers_match_a_hand_computation(tmp_path):
    spec = SweepSpec(envs=["CartPole-v1", "InvertedPendulum-v5"], total_steps=2000, seeds=[0, 1, 2, 3])
    sweep = tmp_path / "sw"
    sweep.mkdir()
    (sweep / "sweep.yaml").write_text(yaml.safe_dump(spec.to_dict()))
    # final returns: vanilla v, DPD students (a, b); CartPole reference: random 25.08, max 500; IP: 4.84, 1000
    finals = {
        "CartPole-v1": {"vanilla": [100, 200, 300, 400], "dpd": [(150, 250), (450, 50), (500, 500), (25.08, 125.08)]},
        "InvertedPendulum-v5": {"vanilla": [4.84, 1000, 502.42, 4.84], "dpd": [(1000, 1000), (1000, 4.84),
                                                                                 (502.42, 502.42), (4.84, 4.84)]},
    }
    for trial in expand(spec):
        env, seed = trial.config.env_id, trial.config.seed
        if trial.config.method == "vanilla":
            curves = {"vanilla": [0.0, 1000.0, finals[env]["vanilla"][seed]]}
        else:
            a, b = finals[env]["dpd"][seed]
            curves = {"student0": [0.0, a], "student1": [0.0, b]}
        write_fake_run(sweep / RUNS_DIR / trial.name, trial.config, curves)
    text = write_report(sweep).read_text()
    # Table: vanilla CartPole finals 100..400 -> mean 250, sample std 129.1; max column: max(1000, final) = 1000
    assert "| vanilla | vanilla | 4 | 250.0 ± 129.1 |" in text
    assert "| 1000.0 ± 0.0 |" in text
    # vanilla at half its steps: evaluations at total steps 0 and 1000 of 2000 -> final 1000, mean 500, max 1000
    assert "| vanilla | at half its steps | 4 | 1000.0 ± 0.0 | 500.0 ± 0.0 | 1000.0 ± 0.0 |" in text
    # better student per run on CartPole: 250, 450, 500, 125.08 -> mean 331.27, std 170.77
    better = np.array([250, 450, 500, 125.08])
    assert f"| dpd-a1 | better | 4 | {better.mean():.1f} ± {better.std(ddof=1):.1f} |" in text
    # IQM of vanilla's normalised finals: CartPole (v - 25.08) / 474.92, IP (v - 4.84) / 995.16
    cp = (np.array([100, 200, 300, 400]) - 25.08) / 474.92
    ip = (np.array([4.84, 1000, 502.42, 4.84]) - 4.84) / 995.16
    scores = np.sort(np.concatenate([cp, ip]))
    iqm = scores[2:6].mean()  # 8 scores: the middle 50% is the 3rd..6th
    agg = json.loads((sweep / "report" / "aggregates_ppo.json").read_text())
    assert agg["groups"]["vanilla"]["iqm"] == pytest.approx(iqm, abs=1e-9)
    assert agg["groups"]["vanilla"]["mean"] == pytest.approx(scores.mean(), abs=1e-9)
    lo, hi = agg["groups"]["vanilla"]["iqm_ci"]
    assert lo <= iqm <= hi
    # the students' mean on IP: 1000, 502.42, 502.42, 4.84 -> normalised 1, .5, .5, 0
    sm = agg["groups"]["dpd-a1 (students' mean)"]
    assert sm["mean"] == pytest.approx(np.mean(np.concatenate([
        (np.array([200, 250, 500, 75.08]) - 25.08) / 474.92, [1.0, 0.5, 0.5, 0.0]])), abs=1e-9)
    assert 0.0 <= agg["probability_of_improvement"]["dpd-a1 (better student)"]["p"] <= 1.0


def test_report_on_a_partial_sweep_says_what_is_missing(tmp_path):
    spec = tiny_spec(variants=["vanilla"])
    sweep = tmp_path / "sw"
    run_sweep(SweepSpec(**{**spec.to_dict(), "seeds": [0]}), tmp_path / "other", workers=1)  # produce one real run
    sweep.mkdir()
    (sweep / "sweep.yaml").write_text(yaml.safe_dump(spec.to_dict()))
    (sweep / RUNS_DIR).mkdir()
    (tmp_path / "other" / RUNS_DIR / "CartPole-v1__ppo__vanilla__s0").rename(
        sweep / RUNS_DIR / "CartPole-v1__ppo__vanilla__s0")
    text = write_report(sweep).read_text()
    assert "1 of 2 runs finished" in text and "| CartPole-v1__ppo__vanilla__s1 | pending |" in text


@pytest.mark.parametrize("args,message", [
    (["--method", "solo"], "unknown sweep variant"),
    (["--seeds", "0"], "--seeds must be positive"),
    (["--set", "alhpa=2"], "unknown config key"),
])  # fmt: skip
def test_sweep_refuses_bad_input_in_one_line_exit_2_and_creates_no_folder(capsys, tmp_path, args, message):
    code = main(["sweep", "--env", "CartPole-v1", "--out", str(tmp_path / "sw"), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "sw").exists()


def test_report_on_a_folder_that_is_not_a_sweep(capsys, tmp_path):
    assert main(["report", str(tmp_path)]) == 2
    assert "not a sweep folder" in capsys.readouterr().err


def test_a_sweep_from_a_yaml_file_runs_its_trials_and_refuses_an_unknown_key(tmp_path, capsys):
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump({"envs": ["CartPole-v1"], "total_steps": 1024, "variants": ["vanilla"],
                                      "seeds": [7], "overrides": TINY}))
    code = main(["sweep", "--config", str(config), "--out", str(tmp_path / "sw"), "--workers", "1"])
    assert code == 0 and "1 finished" in capsys.readouterr().err
    assert trial_status(tmp_path / "sw" / RUNS_DIR / "CartPole-v1__ppo__vanilla__s7") == "finished"
    config.write_text(yaml.safe_dump({"envs": ["CartPole-v1"], "total_steps": 1024, "bogus": 1}))
    assert main(["sweep", "--config", str(config), "--out", str(tmp_path / "sw2")]) == 2
    assert "unknown sweep key(s) bogus" in capsys.readouterr().err


def test_sweep_into_a_folder_holding_another_sweep_is_refused(tmp_path, capsys):
    run_sweep(SweepSpec(envs=["CartPole-v1"], total_steps=512, seeds=[0], variants=["vanilla"], overrides=TINY),
              tmp_path / "sw", workers=1)
    code = main(["sweep", "--env", "CartPole-v1", "--seeds", "1", "--total-steps", "1024", "--out", str(tmp_path / "sw")])
    assert code == 2 and "holds a different sweep" in capsys.readouterr().err


def test_report_distillation_and_selection_gains_match_a_hand_computation(tmp_path):
    spec = SweepSpec(envs=["CartPole-v1", "InvertedPendulum-v5"], total_steps=2000, seeds=[0, 1, 2],
                     variants=["vanilla", "independent", "dpd"])
    sweep = tmp_path / "sw"
    sweep.mkdir()
    (sweep / "sweep.yaml").write_text(yaml.safe_dump(spec.to_dict()))
    # (student0, student1) finals per seed; CartPole normalised by (x - 25.08) / 474.92, IP by (x - 4.84) / 995.16
    pairs = {
        "CartPole-v1": {"independent": [(100, 300), (200, 200), (50, 450)], "dpd-a1": [(300, 320), (280, 300), (250, 290)]},
        "InvertedPendulum-v5": {"independent": [(10, 1000), (500, 500), (4.84, 800)],
                                "dpd-a1": [(900, 1000), (600, 700), (800, 800)]},
    }
    for trial in expand(spec):
        env, seed = trial.config.env_id, trial.config.seed
        if trial.label == "vanilla":
            curves = {"vanilla": [0.0, 1000.0, 250.0]}
        else:
            a, b = pairs[env][trial.label][seed]
            curves = {"student0": [0.0, a], "student1": [0.0, b]}
        # progress.csv: distance 0.1 * (seed + 1) at the end (+0.1 for student1); DPD: 10 optimiser steps per
        # phase, 3 phases for student0 and 2 for student1; a row without a distance still counts its steps
        steps = "10" if trial.label == "dpd-a1" else "0"
        d = 0.1 * (seed + 1)
        progress = {"student0": [("0.9", steps), ("", steps), (f"{d}", steps)],
                    "student1": [("0.9", steps), (f"{d + 0.1}", steps)]}
        write_fake_run(sweep / RUNS_DIR / trial.name, trial.config, curves, progress)
    text = write_report(sweep).read_text()
    # the pair at the end: per seed the mean of both students' last distance (0.15, 0.25, 0.35; mean 0.25)
    assert "| dpd-a1 | 3 | s0: 0.15 / s1: 0.25 / s2: 0.35 | 0.25 | 25 (20-30) |" in text
    assert "| independent | 3 | s0: 0.15 / s1: 0.25 / s2: 0.35 | 0.25 | 0 |" in text
    agg = json.loads((sweep / "report" / "aggregates_ppo.json").read_text())
    g = agg["gains"]["distillation"]
    worse_cp = np.mean([300, 280, 250]) - np.mean([100, 200, 50])  # worse students: DPD 276.7, independent 116.7
    assert g["dpd-a1 (worse student)"]["per_task"]["CartPole-v1"][0] == pytest.approx(worse_cp)
    mean_ip = np.mean([950, 650, 800]) - np.mean([505, 500, 402.42])
    assert g["dpd-a1 (students' mean)"]["per_task"]["InvertedPendulum-v5"][0] == pytest.approx(mean_ip)
    better_cp = np.mean([320, 300, 290]) - np.mean([300, 200, 450])
    better_ip = np.mean([1000, 700, 800]) - np.mean([1000, 500, 800])
    pooled = (better_cp / 474.92 + better_ip / 995.16) / 2
    point, lo, hi = g["dpd-a1 (better student)"]["pooled"]
    assert point == pytest.approx(pooled) and lo <= point <= hi
    # selection gain of the independent pair on CartPole: better - mean = 100, 0, 200 -> 100
    sel = agg["gains"]["selection"]["independent"]["per_task"]["CartPole-v1"]
    assert sel[0] == pytest.approx(100.0) and sel[1] <= 100.0 <= sel[2]
    assert "| independent | worse | 3 |" in text and "### Distillation gain and selection gain" in text
    assert "P(group > independent, same statistic)" in text
    assert agg["probability_over_independent"]["dpd-a1 (worse student)"]["p"] == pytest.approx(1.0)
    # where the pooled CI lies: the worse student's gain (+0.47 [+0.29, +0.62]) is one, the better student's is not
    rows = text.splitlines()
    assert any(r.startswith("| dpd-a1 (worse student) |") and r.endswith("| above 0: a gain | 3 / 3 |") for r in rows)
    assert any(r.startswith("| dpd-a1 (better student) |") and r.endswith("| spans 0: no measurable effect | 3 / 3 |")
               for r in rows)


def test_a_gain_rests_on_the_seeds_both_groups_have(tmp_path):
    """Control seeds added by a later stage (here the independent pair's seeds 3-4, far better) do not move an arm's
    gain: it compares the seeds both have. Where the groups share no seed, all runs of both, and the report says so."""
    spec = SweepSpec(envs=["CartPole-v1"], total_steps=2000, seeds=[0, 1, 2], variants=["independent", "dpd"])
    fake_sweep(tmp_path / "stage1", spec, {"independent": 100.0, "dpd-a1": 150.0})
    more = SweepSpec(envs=["CartPole-v1"], total_steps=2000, seeds=[3, 4], variants=["independent"])
    fake_sweep(tmp_path / "stage2", more, {"independent": 1000.0})
    write_report([tmp_path / "stage1", tmp_path / "stage2"], tmp_path / "both")
    agg = json.loads((tmp_path / "both" / "aggregates_ppo.json").read_text())
    gain = agg["gains"]["distillation"]["dpd-a1 (students' mean)"]
    point, lo, hi = gain["per_task"]["CartPole-v1"]  # 150-152 against 100-102 (with seeds 3-4: 460.2)
    assert point == pytest.approx(50.0) and 48.0 <= lo <= hi <= 52.0
    assert gain["runs"]["CartPole-v1"] == [3, 3, True]
    # no shared seed: the arm's seeds 5-6 against the independent pair's 0-2 and 3-4, all runs of both
    other = SweepSpec(envs=["CartPole-v1"], total_steps=2000, seeds=[5, 6], variants=["dpd"], alphas=[2.0])
    fake_sweep(tmp_path / "late", other, {"dpd-a2": 300.0})
    text = write_report([tmp_path / "stage1", tmp_path / "stage2", tmp_path / "late"], tmp_path / "all").read_text()
    agg = json.loads((tmp_path / "all" / "aggregates_ppo.json").read_text())
    late = agg["gains"]["distillation"]["dpd-a2 (students' mean)"]
    assert late["runs"]["CartPole-v1"] == [2, 5, False]
    assert late["per_task"]["CartPole-v1"][0] == pytest.approx(305.5 - np.mean([100, 101, 102, 1003, 1004]))
    assert any(r.startswith("| dpd-a2 (students' mean) |") and r.endswith("| 2 vs 5 (no shared seed) |")
               for r in text.splitlines())


def fake_sweep(folder: Path, spec: SweepSpec, final: dict[str, float]) -> None:
    """A sweep folder whose every run ends at ``final[variant label] + seed`` (each student of a pair the same)."""
    folder.mkdir()
    (folder / "sweep.yaml").write_text(yaml.safe_dump(spec.to_dict()))
    for trial in expand(spec):
        value = final[trial.label] + trial.config.seed
        learners = ["vanilla"] if trial.label == "vanilla" else ["student0", "student1"]
        write_fake_run(folder / RUNS_DIR / trial.name, trial.config, {k: [0.0, value] for k in learners})


def test_report_of_two_sweeps_counts_every_seed_of_each_group(tmp_path, capsys):
    # stage 1: seeds 0-1 of three arms; stage 2: seeds 2-4 of the two controls only (its own folder)
    stage1 = SweepSpec(envs=["CartPole-v1"], total_steps=2000, seeds=[0, 1], variants=["vanilla", "independent", "dpd"])
    stage2 = SweepSpec(envs=["CartPole-v1"], total_steps=2000, seeds=[2, 3, 4], variants=["vanilla", "independent"])
    final = {"vanilla": 100.0, "independent": 200.0, "dpd-a1": 300.0}
    fake_sweep(tmp_path / "s1", stage1, final)
    fake_sweep(tmp_path / "s2", stage2, final)
    assert main(["report", str(tmp_path / "s1"), str(tmp_path / "s2"), "--out", str(tmp_path / "both")]) == 0
    text = (tmp_path / "both" / "report.md").read_text()
    # vanilla: 100..104 over 5 seeds -> mean 102, sample std 1.58; dpd keeps its 2 seeds (300, 301)
    assert "| vanilla | vanilla | 5 | 102.0 ± 1.6 |" in text and "| dpd-a1 | better | 2 | 300.5 ± 0.7 |" in text
    assert "| independent | better | 5 | 202.0 ± 1.6 |" in text and "12 of 12 runs finished" in text
    agg = json.loads((tmp_path / "both" / "aggregates_ppo.json").read_text())
    assert agg["runs_per_task"]["vanilla"] == 5 and agg["runs_per_task"]["dpd-a1 (better student)"] == 2
    # the distillation gain compares the seeds both groups have (0-1): mean(300, 301) - mean(200, 201) = 100, while
    # the tables and aggregates above keep all 5 independent seeds
    gain = agg["gains"]["distillation"]["dpd-a1 (students' mean)"]
    assert gain["per_task"]["CartPole-v1"][0] == pytest.approx(100.0) and gain["runs"]["CartPole-v1"] == [2, 2, True]
    assert not (tmp_path / "s1" / "report").exists()  # nothing written into the sweeps themselves


def test_a_tasks_cis_do_not_move_when_another_tasks_runs_join_the_report(tmp_path):
    """Each CI has its own bootstrap stream: a report of CartPole alone and one with InvertedPendulum beside it
    give CartPole's gains and selection gains the same intervals, to the last digit."""
    spec = SweepSpec(envs=["CartPole-v1"], total_steps=2000, seeds=[0, 1, 2], variants=["vanilla", "independent", "dpd"])
    other = SweepSpec(envs=["InvertedPendulum-v5"], total_steps=2000, seeds=[0, 1, 2],
                      variants=["vanilla", "independent", "dpd"])
    final = {"vanilla": 100.0, "independent": 200.0, "dpd-a1": 300.0}
    fake_sweep(tmp_path / "ip", other, {k: 10 * v for k, v in final.items()})
    (tmp_path / "cp").mkdir()
    (tmp_path / "cp" / "sweep.yaml").write_text(yaml.safe_dump(spec.to_dict()))
    for trial in expand(spec):  # students and seeds that differ: intervals of some width
        seed, value = trial.config.seed, final[trial.label] + 37.0 * trial.config.seed ** 2
        curves = ({"vanilla": [0.0, value]} if trial.label == "vanilla" else
                  {"student0": [0.0, value - 20 * seed], "student1": [0.0, value + 15 + seed]})
        write_fake_run(tmp_path / "cp" / RUNS_DIR / trial.name, trial.config, curves)
    assert main(["report", str(tmp_path / "cp"), "--out", str(tmp_path / "alone")]) == 0
    assert main(["report", str(tmp_path / "cp"), str(tmp_path / "ip"), "--out", str(tmp_path / "both")]) == 0

    def cartpole(folder: str) -> list:
        g = json.loads((tmp_path / folder / "aggregates_ppo.json").read_text())["gains"]
        return [g[kind][group]["per_task"]["CartPole-v1"] for kind in g for group in g[kind]]

    alone = cartpole("alone")
    assert alone == cartpole("both")
    assert any(lo < hi for _, lo, hi in alone)  # not only zero-width intervals


def test_one_sweep_split_across_two_folders_reports_each_trial_once(tmp_path):
    # seeds 0-3 planned in "a", seeds 2-3 trained in "b" instead (a second core): a's 2-3 stay pending (no folder)
    whole = SweepSpec(envs=["CartPole-v1"], total_steps=2000, seeds=[0, 1, 2, 3], variants=["vanilla"])
    tail = SweepSpec(envs=["CartPole-v1"], total_steps=2000, seeds=[2, 3], variants=["vanilla"])
    fake_sweep(tmp_path / "a", whole, {"vanilla": 100.0})
    fake_sweep(tmp_path / "b", tail, {"vanilla": 100.0})
    for seed in (2, 3):
        shutil.rmtree(tmp_path / "a" / RUNS_DIR / f"CartPole-v1__ppo__vanilla__s{seed}")
    from dpd.experiments.report.runs import load_sweeps

    for order in (["a", "b"], ["b", "a"]):
        runs, _ = load_sweeps([tmp_path / d for d in order])
        assert sorted((r.seed, r.status) for r in runs) == [(s, "finished") for s in range(4)]
    runs, _ = load_sweeps([tmp_path / "a"])  # alone, a's own pending trials are still listed as pending
    assert sorted((r.seed, r.status) for r in runs) == [(0, "finished"), (1, "finished"), (2, "pending"),
                                                        (3, "pending")]


def test_sweeps_that_differ_only_in_what_they_record_pool_and_in_training_do_not(tmp_path):
    """record_sim_states changes what a run keeps, not how it trains: two sweeps that differ only there are one
    report; another override (here eval_freq) is a one-line refusal naming the key."""
    from dpd.errors import DPDUserError
    from dpd.experiments.report.runs import load_sweeps

    def spec(seed: int, *overrides: str) -> SweepSpec:
        return SweepSpec(envs=["CartPole-v1"], total_steps=2000, seeds=[seed], variants=["vanilla"],
                         overrides=["eval_freq=500", *overrides])

    fake_sweep(tmp_path / "a", spec(0, "record_sim_states=true"), {"vanilla": 1.0})
    fake_sweep(tmp_path / "b", spec(1), {"vanilla": 1.0})
    runs, _ = load_sweeps([tmp_path / "a", tmp_path / "b"])
    assert sorted(r.seed for r in runs) == [0, 1]
    fake_sweep(tmp_path / "c", SweepSpec(envs=["CartPole-v1"], total_steps=2000, seeds=[2], variants=["vanilla"],
                                         overrides=["eval_freq=1000"]), {"vanilla": 1.0})
    with pytest.raises(DPDUserError, match="differ in overrides"):
        load_sweeps([tmp_path / "a", tmp_path / "c"])


@pytest.mark.parametrize("case,message", [
    ("no-out", "say where it goes with --out DIR"),
    ("budget", "differ in total_steps (4000 vs 2000)"),
    ("twice", "is in both"),
])  # fmt: skip
def test_report_of_sweeps_that_cannot_be_pooled(tmp_path, capsys, case, message):
    spec = SweepSpec(envs=["CartPole-v1"], total_steps=2000, seeds=[0], variants=["vanilla"])
    other = SweepSpec(envs=["CartPole-v1"], total_steps=4000 if case == "budget" else 2000,
                      seeds=[0] if case == "twice" else [1], variants=["vanilla"])
    fake_sweep(tmp_path / "a", spec, {"vanilla": 1.0})
    fake_sweep(tmp_path / "b", other, {"vanilla": 1.0})
    out = [] if case == "no-out" else ["--out", str(tmp_path / "r")]
    assert main(["report", str(tmp_path / "a"), str(tmp_path / "b"), *out]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "r").exists()


def test_sweep_arms_and_schedules_expand_to_labelled_trials_and_colliding_names_are_refused():
    spec = SweepSpec(envs=["CartPole-v1"], total_steps=2048, seeds=[0], variants=["independent", "dpd", "one"],
                     schedules=["dense", "authors"], arms={"one": ["distill_steps=1"]})
    trials = {t.label: t.config for t in expand(spec)}
    assert set(trials) == {"independent", "dpd-a1", "dpd-a1-authors", "one"}
    assert trials["one"].distill.steps == 1 and trials["dpd-a1-authors"].distill.every == 5
    assert trials["independent"].method == "independent"
    from dpd.errors import DPDUserError

    with pytest.raises(DPDUserError, match="share the folder"):
        expand(SweepSpec(envs=["CartPole-v1"], total_steps=2048, seeds=[0], alphas=[1.0, 1.0000001]))
    with pytest.raises(DPDUserError, match="arm name"):
        expand(SweepSpec(envs=["CartPole-v1"], total_steps=2048, seeds=[0], arms={"../x": []}))


def test_an_arm_at_one_non_default_alpha_is_labelled_apart_from_the_arm_at_alpha_1():
    # a confirmation sweep of `one` at alpha 0.1 alone must not land in the report group of `one` at alpha 1
    def labels(alphas):
        return {t.label for t in expand(SweepSpec(envs=["CartPole-v1"], total_steps=2048, seeds=[0],
                                                  variants=["one"], alphas=alphas, arms={"one": ["distill_steps=1"]}))}
    assert labels([1.0]) == {"one"}
    assert labels([0.1]) == {"one-a0.1"}
    assert labels([0.1, 10.0]) == {"one-a0.1", "one-a10"}


def test_both_backends_file_an_interrupted_trial_as_interrupted():
    from types import SimpleNamespace

    from dpd.experiments.sweep import SweepResult, ray_outcomes, record_outcome

    def res(*statuses, error=None):
        names = [f"/s/runs/t-{status}" for status in statuses]
        return SimpleNamespace(config={"cell": {"run_dirs": names}}, error=error,
                               metrics={"statuses": list(statuses), "errors": ["x"] * len(statuses)} if error is None
                               else {})

    # a grid trial is a group: one trial, or a JAX pack's trials (here one pack of two)
    grid = [res("finished"), res("interrupted", "failed"), res("None", error=RuntimeError("actor died"))]
    result = SweepResult(finished=[], failed={}, skipped=[])
    for name, outcome in ray_outcomes(grid):
        record_outcome(result, name, outcome)
    assert result.finished == ["t-finished"] and result.interrupted == ["t-interrupted"]
    assert set(result.failed) == {"t-failed", "t-None"} and "actor died" in result.failed["t-None"]


def test_a_trial_written_before_a_config_key_existed_is_still_the_same_trial(tmp_path):
    from dpd.experiments.sweep import _same_trial

    trial = expand(tiny_spec(variants=["dpd"]))[0]
    from dpd.config import ALIAS_OF

    stored = trial.config.to_dict()
    del stored["distill"]["schedule"], stored["distill"]["adaptive_low"]  # an older dpd wrote neither
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(stored))
    assert _same_trial(tmp_path, trial.config)
    # the flat format of the config.yaml files written before the distill block: the same trial
    flat = {k: v for k, v in stored.items() if k != "distill"}
    flat.update({ALIAS_OF[k]: v for k, v in stored["distill"].items()})
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(flat))
    assert _same_trial(tmp_path, trial.config)
    stored["distill"]["alpha"] = 2.0
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(stored))
    assert not _same_trial(tmp_path, trial.config)


def test_probability_of_improvement_is_the_mann_whitney_u_averaged_over_tasks():
    """rliable's definition (Agarwal et al. 2021): per task U / (n_x n_y), ties 1/2, the mean over tasks."""
    from scipy.stats import mannwhitneyu

    from dpd.experiments.report import probability_of_improvement

    def by_u(x: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean([mannwhitneyu(x[:, t], y[:, t]).statistic / (len(x) * len(y)) for t in range(x.shape[1])]))

    rng = np.random.default_rng(0)
    for n_x, n_y, tasks in [(3, 3, 1), (8, 3, 2), (2, 12, 4), (5, 5, 3)]:
        for _ in range(20):
            x = rng.integers(0, 4, (n_x, tasks)).astype(float)  # few values: many ties
            y = rng.integers(0, 4, (n_y, tasks)).astype(float)
            assert probability_of_improvement(x, y) == pytest.approx(by_u(x, y), abs=1e-12)
    same = rng.normal(size=(4, 2))
    assert probability_of_improvement(same, same.copy()) == 0.5
    assert probability_of_improvement(np.ones((2, 1)), np.zeros((3, 1))) == 1.0


def test_a_gain_is_called_one_only_when_its_ci_excludes_0():
    from dpd.experiments.report import _versus_zero

    assert _versus_zero((0.2, 0.01, 0.4)) == "above 0: a gain"
    assert _versus_zero((-0.2, -0.4, -0.01)) == "below 0: a loss"
    assert _versus_zero((0.2, 0.0, 0.4)) == "spans 0: no measurable effect"  # touching 0 is not excluding it
    assert _versus_zero((0.2, float("nan"), float("nan"))) == "no CI"


def test_iqm_is_the_25_percent_trimmed_mean_over_runs_and_tasks():
    from dpd.experiments.report import iqm

    def by_hand(x: np.ndarray) -> float:  # the middle half of the sorted scores (rliable's aggregate_iqm)
        s = np.sort(x.ravel())
        cut = int(0.25 * s.size)
        return float(s[cut:s.size - cut].mean())

    rng = np.random.default_rng(1)
    for shape in [(1, 1), (3, 1), (5, 2), (8, 4), (12, 3)]:
        x = rng.normal(size=shape)
        assert iqm(x) == pytest.approx(by_hand(x), abs=1e-12)
        assert iqm(np.stack([x, x + 1]), runs_axes=2)[1] == pytest.approx(by_hand(x) + 1)  # resamples at once
    assert iqm(np.array([[0.0], [1.0], [2.0], [100.0]])) == 1.5  # the middle two of four


def test_a_gain_on_few_seeds_shows_welchs_interval_and_the_permutation_p(tmp_path):
    from dpd.experiments.stats import difference

    spec = SweepSpec(envs=["CartPole-v1"], total_steps=2048, seeds=[0, 1, 2], variants=["independent", "dpd"])
    fake_sweep(tmp_path / "s", spec, {"independent": 200.0, "dpd-a1": 230.0})
    text = write_report(tmp_path / "s").read_text()
    assert "Welch's t 95% interval and the exact permutation p" in text
    d = difference(np.array([230.0, 231, 232]), np.array([200.0, 201, 202]))
    cell = f"{d.diff:+.1f} [{d.welch_low:+.1f}, {d.welch_high:+.1f}] · {d.permutation_p:.3f}"
    assert f"| dpd-a1 (students' mean) | {cell} |" in text
