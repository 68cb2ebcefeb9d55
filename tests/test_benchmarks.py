"""The benchmark scripts run end to end on a tiny budget (their numbers live in docs/performance.md, not here)."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.extended  # make test-extended (CI runs it after make test)

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_throughput_benchmark_prints_its_table():
    out = run(str(BENCHMARKS / "throughput.py"), "--algo", "ppo", "--env", "CartPole-v1", "--steps", "256",
              "--repeats", "1", "--variants", "vanilla_sb3,pair_sb3,dpd_seq", "--preset", "zoo")
    assert "| vanilla_sb3 | 512 |" in out and "| dpd_seq | 512 |" in out and "P2 = dpd_seq / pair_sb3 = " in out


def test_profile_benchmark_names_where_the_time_goes():
    out = run(str(BENCHMARKS / "profile_dpd.py"), "--algo", "ppo", "--env", "CartPole-v1", "--steps", "256")
    assert "DPD distill" in out and "SB3 collect" in out


def test_throughput_benchmark_jax_engine_prints_its_table_and_verdict(tmp_path):
    import json

    import pytest

    pytest.importorskip("jax")
    out = run(str(BENCHMARKS / "throughput.py"), "--engine", "jax", "--algo", "ddpg", "--env", "Pendulum-v1",
              "--steps", "200", "--repeats", "1", "--pack-sizes", "2", "--json", str(tmp_path / "r.json"))
    assert "| pack2 | 2 | 400 |" in out and "| sb3 | 1 | 200 |" in out and "best pack: pack2" in out
    assert set(json.loads((tmp_path / "r.json").read_text())["results"]) == {"sb3", "pack2", "env_random"}


def test_throughput_benchmark_jax_engine_ppo(tmp_path):
    import json

    import pytest

    pytest.importorskip("jax")
    out = run(str(BENCHMARKS / "throughput.py"), "--engine", "jax", "--algo", "ppo", "--env", "Pendulum-v1",
              "--steps", "128", "--n-steps", "64", "--repeats", "1", "--pack-sizes", "2", "--json",
              str(tmp_path / "r.json"))
    assert "| pack2 | 2 | 256 |" in out and "| sb3 | 1 | 128 |" in out and "best pack: pack2" in out
    assert json.loads((tmp_path / "r.json").read_text())["algo"] == "ppo"


def test_sim_states_benchmark_prints_both_ways_of_each_variant():
    """benchmarks/sim_states.py: each variant with the recording on and off (the child checks the switch took)."""
    out = run(str(BENCHMARKS / "sim_states.py"), "--env", "InvertedPendulum-v5", "--steps", "200", "--ppo-steps",
              "64", "--ddpg-steps", "64", "--repeats", "1", "--kinds", "env,ddpg")
    for kind, steps in (("env", 200), ("ddpg", 64)):
        assert f"| {kind} | {steps} | CPU |" in out and f"| {kind} | {steps} | wall |" in out
    assert "record=True" in out and "record=False" in out


def test_pair_cost_benchmark_rates_every_arm(tmp_path):
    import json

    pytest.importorskip("jax")
    out = run(str(BENCHMARKS / "pair_cost.py"), "--env", "Pendulum-v1", "--steps", "200", "--repeats", "1",
              "--json", str(tmp_path / "r.json"))
    assert all(f"{arm}: median " in out for arm in ("vanilla", "independent", "dpd")), out
    rates = json.loads((tmp_path / "r.json").read_text())["rates"]
    assert set(rates) == {"vanilla", "independent", "dpd"} and all(len(r) == 1 for r in rates.values())


def test_xla_threads_benchmark_runs_both_settings_side_by_side(tmp_path):
    import json

    pytest.importorskip("jax")
    out = run(str(BENCHMARKS / "xla_threads.py"), "--env", "Pendulum-v1", "--learners", "1", "--steps", "300",
              "--learning-starts", "100", "--repeats", "1", "--json", str(tmp_path / "r.json"))
    assert "| 0 |" in out and "xla_one / xla_default" in out, out
    data = json.loads((tmp_path / "r.json").read_text())
    # two packs per setting, each of one learner that took its 300 steps
    assert all(len(data["results"][s][0]) == 2 for s in ("xla_default", "xla_one"))
    assert all(row["env_steps"] == 300 for s in data["results"].values() for row in s[0])
    assert len(data["ratio_per_repeat"]) == 1 and data["ratio_per_repeat"][0] > 0
