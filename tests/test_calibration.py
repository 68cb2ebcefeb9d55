"""The calibration of xi against Monte-Carlo truth (dpd calibrate) and the pieces it rests on."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from dpd.config import TrainConfig
from dpd.envs import make_train_env, mujoco_state, set_mujoco_state
from dpd.errors import DPDUserError
from dpd.experiments.calibrate import Rollout, calibrate, calibrate_direction, rollout_returns
from dpd.xi import critic_offset, horizon, window_returns

GAMMA = 0.99
#: off-policy settings that train in seconds
SMALL = {"learning_starts": 100, "train_freq": 100, "gradient_steps": 10, "batch_size": 32,
         "policy_kwargs": {"net_arch": [32, 32]}}


def test_restoring_a_recorded_state_reproduces_the_next_observation_and_reward_exactly() -> None:
    venv, recorder = make_train_env("HalfCheetah-v5", n_envs=1, seed=3, window=300, gamma=GAMMA, normalize=False,
                                    log_dir=None, record_sim=True)
    rng = np.random.default_rng(0)
    venv.reset()
    actions = [rng.uniform(-1, 1, size=(1, 6)) for _ in range(250)]
    for a in actions:
        venv.step(a)
    w = recorder.recent_window()
    assert w["sim_states"].shape[0] == len(w["states"]) == 251  # the reset state and 250 steps
    env = gym.make("HalfCheetah-v5")
    env.reset(seed=123)  # a different episode: everything must come from the recorded state
    for k in (0, 17, 120, 249):
        set_mujoco_state(env, w["sim_states"][k])
        obs, reward, *_ = env.step(actions[k][0])
        assert np.array_equal(obs.astype(np.float32), w["states"][k + 1])
        assert np.float32(reward) == w["rewards"][k + 1]  # SB3 VecEnvs carry rewards as float32
    venv.close()


def _reset_states(n: int) -> np.ndarray:
    env = gym.make("InvertedPendulum-v5")
    states = []
    for i in range(n):
        env.reset(seed=i)
        states.append(mujoco_state(env))
    return np.array(states)


def balance(x: np.ndarray, noise: np.ndarray | None = None) -> np.ndarray:
    """A PD controller that keeps InvertedPendulum's pole up from any reset state."""
    return np.clip(10 * x[:, 1:2] + x[:, 3:4] + 0.1 * x[:, 0:1] + 0.3 * x[:, 2:3], -3, 3)


def push(x: np.ndarray, noise: np.ndarray | None = None) -> np.ndarray:
    """Full force one way: the pole falls within a few steps."""
    return np.full((len(x), 1), 3.0)


@pytest.mark.parametrize("gamma", [0.99, 0.9])
def test_monte_carlo_value_matches_the_closed_form_on_a_deterministic_task(gamma: float) -> None:
    # InvertedPendulum pays 1 per step while the pole is up and 0 on the step it falls. Balanced for H steps the
    # value is sum_{t<H} gamma^t = (1 - gamma^H) / (1 - gamma); a pole already past 0.2 rad falls on the first step.
    sims = _reset_states(5)
    fallen = sims[0].copy()
    fallen[2] = 0.5  # mjSTATE_INTEGRATION: time, then qpos (cart x, pole angle)
    sims = np.vstack([sims, fallen[None]])
    steps = horizon(gamma)
    plan = [Rollout(s, 0) for s in range(len(sims))]
    values = rollout_returns("InvertedPendulum-v5", sims, [balance], plan, gamma, steps)
    np.testing.assert_allclose(values[:5], (1 - gamma ** steps) / (1 - gamma), rtol=1e-12)
    assert values[5] == 0.0
    # the peer's action first, then follow self: one push from upright is survived, then balanced
    first = Rollout(0, 0, first=np.array([3.0]))
    q = rollout_returns("InvertedPendulum-v5", sims, [balance], [first], gamma, steps)[0]
    assert 0 < q <= values[0]


def test_horizon_is_the_first_step_whose_discount_is_under_one_percent() -> None:
    assert horizon(0.99) == 459 and 0.99 ** 459 < 0.01 <= 0.99 ** 458
    assert horizon(0.9) == 44 and horizon(0.0) == 1


def test_window_returns_by_hand() -> None:
    # one env: states 0..5; rewards INTO each state; the step into state 3 ended an episode by termination,
    # the step into 5 by a time limit
    rewards = np.array([np.nan, 1.0, 2.0, 4.0, 8.0, 16.0])
    dones = np.array([False, False, False, True, False, True])
    timeouts = np.array([False, False, False, False, False, True])
    env_index = np.zeros(6, dtype=np.int64)
    g, complete = window_returns(rewards, dones, timeouts, env_index, 0.5, steps=2)
    # from 0: 1 + 0.5*2 (two rewards, complete); from 1: 2 + 0.5*4 (terminates: complete); from 2: 4 (terminated)
    # from 3: 8 + 0.5*16 (two rewards, complete); from 4: 16 but a time limit cut it: incomplete; 5: nothing yet
    np.testing.assert_allclose(g, [2.0, 4.0, 4.0, 16.0, 16.0, 0.0])
    assert complete.tolist() == [True, True, True, True, False, False]
    g3, c3 = window_returns(rewards, dones, timeouts, env_index, 0.5, steps=3)
    assert g3[0] == pytest.approx(1 + 0.5 * 2 + 0.25 * 4) and c3[0]
    # two sub-envs interleaved are followed separately
    inter = window_returns(np.repeat(rewards, 2), np.repeat(dones, 2), np.repeat(timeouts, 2),
                           np.tile([0, 1], 6), 0.5, steps=2)
    np.testing.assert_allclose(inter[0], np.repeat(g, 2))
    offset, n = critic_offset(g + 3.0, g, complete)
    assert offset == pytest.approx(3.0) and n == 4
    assert critic_offset(g, g, np.zeros(6, dtype=bool)) == (0.0, 0)


class HandMade:
    """A policy and critic written by hand, with the interface calibrate_direction uses."""

    def __init__(self, act, value: float, window: dict[str, np.ndarray], stochastic: bool = False) -> None:
        self._act, self._value, self.window, self.stochastic = act, value, window, stochastic

    def act(self, raw: np.ndarray, noise: np.ndarray) -> np.ndarray:
        return self._act(raw)

    def values(self, raw: np.ndarray) -> np.ndarray:
        return np.full(len(raw), self._value) + 0.01 * raw[:, 0]

    def offset(self, gamma: float, steps: int) -> tuple[float, int]:
        return 0.0, 0


def _window(n: int) -> dict[str, np.ndarray]:
    sims = _reset_states(n)
    env = gym.make("InvertedPendulum-v5")
    states = []
    for s in sims:
        set_mujoco_state(env, s)
        states.append(env.unwrapped._get_obs())
    return {"states": np.array(states, dtype=np.float32), "sim_states": sims, "gamma": np.asarray(GAMMA),
            "return_std": np.asarray(10.0)}


@pytest.mark.parametrize("stochastic", [False, True])
def test_a_pair_where_one_policy_is_better_everywhere_gives_sign_agreement_one(stochastic: bool) -> None:
    config = TrainConfig(env_id="InvertedPendulum-v5", algo="ppo", preset="none").resolve(check_env=False)
    window = _window(12)
    good, bad = HandMade(balance, 90.0, window, stochastic), HandMade(push, 5.0, window, stochastic)
    row, arrays = calibrate_direction("InvertedPendulum-v5", config, bad, good, ("bad", "good"), 12, 2, 2, 0,
                                      lambda _m: None)
    assert (arrays["xi_mc"] > 90).all() and row["resolved"] == 12
    assert row["estimators"]["two_critics"]["sign_agreement"] == 1.0
    assert row["estimators"]["two_critics"]["weight"]["on_truly_worse"] == 0.0
    assert row["true_peer_better_share"] == 1.0
    # the good student distilling from the bad one: its critics' sign is right again (xi < 0 on every state)
    row, _ = calibrate_direction("InvertedPendulum-v5", config, good, bad, ("good", "bad"), 12, 2, 2, 0,
                                 lambda _m: None)
    assert row["estimators"]["two_critics"]["sign_agreement"] == 1.0
    assert row["estimators"]["two_critics"]["gate"] == 0.0
    # critics that rank the pair the wrong way round: agreement 0
    liar_good, liar_bad = HandMade(balance, 5.0, window), HandMade(push, 90.0, window)
    row, _ = calibrate_direction("InvertedPendulum-v5", config, liar_bad, liar_good, ("bad", "good"), 12, 1, 1, 0,
                                 lambda _m: None)
    assert row["estimators"]["two_critics"]["sign_agreement"] == 0.0
    assert row["estimators"]["two_critics"]["weight"]["on_truly_worse"] == 0.0  # the peer is worse nowhere


@pytest.fixture(scope="module")
def pendulum_pair(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny DDPG pair on InvertedPendulum-v5 with two snapshots (windows kept)."""
    from dpd.training import train

    run = tmp_path_factory.mktemp("calib") / "run"
    config = TrainConfig(env_id="InvertedPendulum-v5", algo="ddpg", total_steps=2400, iteration_steps=400,
                         eval_freq=0, snapshots=[0.5, 1.0], tensorboard=False, preset="none", algo_kwargs=SMALL,
                         record_sim_states=True)
    train(config, run)
    return run


def test_calibrate_writes_every_estimator_and_figure_for_an_off_policy_pair(pendulum_pair: Path, tmp_path: Path
                                                                            ) -> None:
    result = calibrate(pendulum_pair, out=tmp_path / "cal", n_states=15)
    assert [w["snapshot_steps"] for w in result["windows"]] == [800, 800, 1200, 1200]
    assert set(result["pooled"]) == {"two_critics", "debiased", "own_critic"}
    for w in result["windows"]:
        assert w["rollouts"] == 1  # deterministic policy and simulator: one rollout is the truth
        shares = w["estimators"]["two_critics"]["weight"]
        assert sum(shares.values()) == pytest.approx(1.0)
        for c in w["critic"].values():
            assert c["window_offset_states"] > 0  # the debiased estimator found complete returns in the window
    on_disk = json.loads((tmp_path / "cal" / "calibration.json").read_text())
    assert on_disk["pooled"]["two_critics"]["states"] == 60
    assert (tmp_path / "cal" / "calibration.png").stat().st_size > 10_000
    with np.load(tmp_path / "cal" / "calibration_states.npz") as arrays:
        assert arrays["s800_student0_xi_mc"].shape == (15,)
    # one snapshot only; unknown snapshots and bad numbers are one-line errors
    one = calibrate(pendulum_pair, out=tmp_path / "one", n_states=5, snapshot=1200)
    assert [w["snapshot_steps"] for w in one["windows"]] == [1200, 1200]
    with pytest.raises(DPDUserError, match="no snapshot at 7"):
        calibrate(pendulum_pair, out=tmp_path / "x", snapshot=7)
    with pytest.raises(DPDUserError, match="--states"):
        calibrate(pendulum_pair, out=tmp_path / "x", n_states=1)


def test_calibrate_refuses_tasks_without_simulator_states_and_single_learners(tmp_path: Path) -> None:
    from dpd.training import train

    pair = tmp_path / "pendulum"
    train(TrainConfig(env_id="Pendulum-v1", algo="td3", total_steps=800, iteration_steps=200, eval_freq=0,
                      snapshots=[1.0], tensorboard=False, preset="none", algo_kwargs=SMALL), pair)
    with pytest.raises(DPDUserError, match="supports MuJoCo tasks"):
        calibrate(pair, out=tmp_path / "c")
    vanilla = tmp_path / "vanilla"
    train(TrainConfig(env_id="Pendulum-v1", algo="td3", method="vanilla", total_steps=400, eval_freq=0,
                      snapshots=[1.0], tensorboard=False, preset="none", algo_kwargs=SMALL), vanilla)
    with pytest.raises(DPDUserError, match="dpd calibrate needs a pair"):
        calibrate(vanilla, out=tmp_path / "c")


def test_calibrate_on_a_ppo_pair_prints_two_critics_and_debiased_and_writes_its_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """PPO: K stochastic rollouts per policy and state, K raised where under half the states are resolved; no
    own_critic (no Q critic); the CLI prints the pooled table and the files."""
    from dpd.cli import main
    from dpd.training import train

    run = tmp_path / "ppo"
    train(TrainConfig(env_id="InvertedPendulum-v5", algo="ppo", total_steps=512, eval_freq=0, snapshots=[1.0],
                      tensorboard=False, preset="none", record_sim_states=True,
                      algo_kwargs={"n_steps": 128, "batch_size": 64, "n_epochs": 1,
                                   "policy_kwargs": {"net_arch": [16]}}), run)
    code = main(["calibrate", str(run), "--states", "6", "--rollouts", "2", "--max-rollouts", "8"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "two_critics" in out and "debiased" in out and "own_critic" not in out
    assert (run / "calibration" / "calibration.md").is_file()
    result = json.loads((run / "calibration" / "calibration.json").read_text())
    for w in result["windows"]:
        assert 2 <= w["rollouts"] <= 8
        assert w["rollouts"] == 2 or "K raised" in err
    code = main(["calibrate", str(run), "--rollouts", "0"])
    assert code == 2 and "--rollouts" in capsys.readouterr().err


def test_common_random_numbers_pair_the_two_policies_rollouts():
    """Rollout k of both policies from a state draws the same noise: two identical noisy policies then give exactly
    the same returns (xi_MC 0, paired SE 0); the noise still differs between rollouts (K samples of the policy)."""
    from dpd.experiments.calibrate import _truth

    sims = _reset_states(3)

    def noisy(x: np.ndarray, noise: np.ndarray) -> np.ndarray:
        return np.clip(balance(x) + 2.0 * noise, -3, 3)

    plan = [Rollout(s, a, noise=10 * s + k) for a in (0, 1) for s in range(3) for k in range(4)]
    g = rollout_returns("InvertedPendulum-v5", sims, [noisy, noisy], plan, GAMMA, 100, seed=5).reshape(2, 3, 4)
    truth, se = _truth(g[0], g[1])
    assert (truth == 0).all() and (se == 0).all()
    assert len(set(np.round(g[0].ravel(), 9))) > 1  # the K rollouts differ: they sample the policy


def test_the_simulator_state_is_read_only_where_recording_is_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """record_sim_states is off by default: the recorder never reads the simulator, its window and state hold no
    simulator states; on, every step's state is read once per sub-env."""
    import dpd.envs

    assert TrainConfig(env_id="HalfCheetah-v5").record_sim_states is False
    reads = []
    real = dpd.envs.mujoco_state
    monkeypatch.setattr(dpd.envs, "mujoco_state", lambda env: reads.append(1) or real(env))
    for record, expected in ((False, 0), (True, 1 + 2 + 10 * 2)):  # the width probe, the reset, 10 steps (2 envs)
        reads.clear()
        venv, recorder = make_train_env("HalfCheetah-v5", n_envs=2, seed=0, window=50, gamma=GAMMA, normalize=False,
                                        log_dir=None, record_sim=record)
        venv.reset()
        for _ in range(10):
            venv.step(np.zeros((2, 6)))
        assert len(reads) == expected
        assert ("sim_states" in recorder.recent_window()) is record and ("sim" in recorder.get_state()) is record
        venv.close()


def test_calibrate_refuses_a_run_trained_without_simulator_states_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A MuJoCo pair trained with the default (no simulator states): dpd calibrate names the --set that records them
    and writes nothing; the same command with --set record_sim_states=true keeps them in every snapshot's window."""
    from dpd.cli import main

    runs = {}
    for record in (False, True):
        runs[record] = tmp_path / f"record-{record}"
        args = ["train", "--env", "InvertedPendulum-v5", "--algo", "ppo", "--preset", "none", "--total-steps", "256",
                "--sequential", "--no-progress", "--set", "eval_freq=0", "--set", "snapshots=[1.0]", "--set",
                "algo.n_steps=64", "--set", "algo.batch_size=64", "--set", "algo.n_epochs=1",
                *(["--set", "record_sim_states=true"] if record else []), "--out", str(runs[record])]
        assert main(args) == 0, capsys.readouterr().err
        windows = sorted(runs[record].glob("student*/snapshots/*/window.npz"))
        assert len(windows) == 2
        for window in windows:
            with np.load(window) as data:
                assert ("sim_states" in data.files) is record
    capsys.readouterr()
    code = main(["calibrate", str(runs[False]), "--states", "4", "--rollouts", "1", "--max-rollouts", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "holds no simulator states" in err and err.endswith("rerun with --set record_sim_states=true")
    assert not (runs[False] / "calibration").exists()
