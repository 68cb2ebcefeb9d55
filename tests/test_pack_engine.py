"""engine=jax end to end: run folders in today's layout, the SB3 export, a run alone equals the run inside a pack,
sweeps pack a task's seeds, a killed pack resumes exactly, and what the engine does not implement is one line."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch as th

pytest.importorskip("jax")

from stable_baselines3 import DDPG
from stop_helpers import SigtermOnPackIterate

from dpd import TrainConfig, train
from dpd.cli import main
from dpd.errors import DPDUserError
from dpd.loading import load_learner
from dpd.names import CHECKPOINT_FILE

TINY = {"buffer_size": 5000, "learning_starts": 100, "train_freq": 100, "gradient_steps": 20,
        "policy_kwargs": {"net_arch": [32, 32]}}


def config(**kw):
    base = {"env_id": "Pendulum-v1", "algo": "ddpg", "preset": "paper", "engine": "jax", "total_steps": 3000,
            "iteration_steps": 500, "eval_freq": 500, "eval_episodes": 2, "snapshots": [], "algo_kwargs": dict(TINY)}
    return TrainConfig(**{**base, **kw})


def rows(path: Path) -> list[dict]:
    return list(csv.DictReader(path.read_text().splitlines()))


def evals(run: Path, name: str) -> list[list[str]]:
    return [r.split(",")[:5] for r in (run / name / "evaluations.csv").read_text().splitlines()]


def test_a_jax_run_writes_todays_run_folder_and_its_models_open_in_sb3(tmp_path):
    summary = train(config(), tmp_path / "run")
    assert summary["engine"] == "jax" and summary["total_env_steps"] == 3000
    import jax

    # where it ran: XLA compiles a JAX run's arithmetic, so its libraries and flags are recorded beside torch's
    assert summary["platform"]["jax"] == jax.__version__ and summary["platform"]["jaxlib"] is not None
    assert summary["platform"]["xla_flags"] == os.environ.get("XLA_FLAGS", "")
    assert summary["platform"]["jax_backend"] == jax.default_backend()
    assert summary["platform"]["jax_device"] == jax.devices()[0].device_kind
    for name in ("student0", "student1"):
        folder = tmp_path / "run" / name
        assert {"model.zip", "progress.csv", "evaluations.csv", "vecnormalize.json", "vecnormalize.pkl"} <= {
            p.name for p in folder.iterdir()}
        progress = rows(folder / "progress.csv")
        assert [int(r["time/total_timesteps"]) for r in progress] == [0, 500, 1000, 1500]
        # a distillation phase per iteration: one distillation step per RL gradient step (the paper's DDPG)
        assert [int(r["distill/phase_steps"]) for r in progress[1:]] == [80, 100, 100]
        assert all(float(r["pair/action_distance"]) >= 0 for r in progress[1:])
        assert len(evals(tmp_path / "run", name)) == 1 + 4  # header, steps 0, 500, 1000, 1500
    # the exported SB3 model acts as the pack's learner did: dpd evaluate reproduces a deterministic evaluation
    model, env = load_learner(tmp_path / "run", "student0")
    assert isinstance(model, DDPG) and model.num_timesteps == 1500
    obs = env.reset()
    action, _ = model.predict(obs, deterministic=True)
    assert action.shape == (1, 1) and np.all(np.abs(action) <= 2.0)
    assert main(["evaluate", str(tmp_path / "run"), "--episodes", "1"]) == 0


def test_the_independent_pair_measures_without_distilling_and_its_student0_is_vanilla(tmp_path):
    """The independent pair's phase only measures the pair: its scan of distillation steps is empty (it ran the dpd
    arm's whole scan and discarded every step, which made the pair cost as much as DPD and about twice vanilla per
    learner on HalfCheetah); it still measures, and its student0, vanilla's seed undistilled, is vanilla's run."""
    from dpd.training.pack_learner import PackGroup

    assert PackGroup([config(seed=3, method="independent").resolve()], [None]).distill_spec.max_steps == 0
    assert PackGroup([config(seed=3).resolve()], [None]).distill_spec.max_steps == 101  # dpd: 100 per phase, +1
    train(config(seed=3, method="independent", total_steps=3200), tmp_path / "pair")
    train(config(seed=3, method="vanilla", total_steps=1600), tmp_path / "vanilla")
    own = [[r[0], *r[2:5]] for r in evals(tmp_path / "pair", "student0")]  # [1] is total env steps: the pair's x2
    assert own == [[r[0], *r[2:5]] for r in evals(tmp_path / "vanilla", "vanilla")] and len(own) >= 5
    phases = [r for r in rows(tmp_path / "pair" / "student0" / "progress.csv") if r["distill/phase_steps"]]
    assert len(phases) == 4 and all(int(r["distill/phase_steps"]) == 0 for r in phases)  # after each iteration
    assert all(float(r["pair/action_distance"]) > 0 for r in phases)  # measured all the same


def test_the_export_copies_every_network_and_the_normalisation(tmp_path):
    from dpd.training.pack_learner import PackGroup, export_sb3

    cfg = config().resolve()
    group = PackGroup([cfg], [None])
    group.pack.learn(300)
    model, vn = export_sb3(cfg, group.pack, 1)
    obs = np.random.default_rng(0).normal(size=(7, 3))
    normalized = vn.normalize_obs(obs).astype(np.float32)
    with th.no_grad():
        sb3 = model.policy.actor(th.as_tensor(normalized)).numpy()
        q = model.policy.critic(th.as_tensor(normalized), th.as_tensor(sb3))[0].numpy()[:, 0]
    jax_actions = group.pack.act(np.repeat(obs[:1], 2, axis=0))[1]
    assert np.allclose(sb3[0], jax_actions, atol=1e-5)
    out, values = group._peer_fn(*[__import__("jax").tree.map(lambda x: x[1], p)
                                   for p in (group.pack.learners.actor, group.pack.learners.critic)], normalized)
    assert np.allclose(sb3, np.asarray(out), atol=1e-5) and np.allclose(q, np.asarray(values), atol=1e-4)
    sd = model.policy.state_dict()
    assert th.equal(sd["actor_target.mu.0.weight"], th.as_tensor(np.asarray(group.pack.learners.actor_target[0][0][1]).T))
    for view in group.views:
        view.close()


@pytest.mark.extended  # four runs, ~15 s of CPU: make test-extended keeps make test within its budget
def test_a_run_alone_equals_the_same_run_inside_a_pack(tmp_path):
    """Pack invariance end to end: seeds 0, 1, 2 trained as one pack; seed 1 alone trains the same numbers."""
    from dpd.training.together import train_together

    runs = [(config(seed=s).resolve(), tmp_path / f"s{s}", False) for s in (0, 1, 2)]
    outcomes = train_together(runs)
    assert all(isinstance(o, dict) for o in outcomes)
    train(config(seed=1), tmp_path / "alone")
    for name in ("student0", "student1"):
        assert evals(tmp_path / "alone", name) == evals(tmp_path / "s1", name)
        assert evals(tmp_path / "s0", name) != evals(tmp_path / "s1", name)


@pytest.mark.extended
def test_a_jax_sweep_packs_a_tasks_seeds_and_reports(tmp_path):
    out = tmp_path / "sweep"
    assert main(["sweep", "--env", "Pendulum-v1", "--algo", "ddpg", "--method", "dpd", "--method", "vanilla",
                 "--seeds", "2", "--total-steps", "2000", "--preset", "paper", "--engine", "jax", "--workers", "1",
                 "--set", "eval_freq=500", "--set", "eval_episodes=1", "--set", "iteration_steps=500",
                 "--set", "algo.buffer_size=3000", "--set", "snapshots=[]", "--out", str(out)]) == 0
    assert len(list((out / "runs").glob("*/summary.json"))) == 4
    assert main(["report", str(out)]) == 0


@pytest.mark.extended
def test_a_jax_sweep_through_ray_packs_a_tasks_seeds_too(tmp_path):
    """--backend ray: a grid trial is a pack (the two arms' two seeds: 2 Ray trials, not 4), each run finished."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    out = tmp_path / "sweep"
    try:
        assert main(["sweep", "--env", "Pendulum-v1", "--algo", "ddpg", "--method", "independent", "--method",
                     "vanilla", "--seeds", "2", "--total-steps", "1000", "--preset", "paper", "--engine", "jax",
                     "--backend", "ray", "--set", "eval_freq=500", "--set", "eval_episodes=1", "--set",
                     "iteration_steps=500", "--set", "algo.buffer_size=3000", "--set", "snapshots=[]", "--out",
                     str(out)]) == 0
    finally:
        ray.shutdown()
    assert len(list((out / "runs").glob("*/summary.json"))) == 4
    assert len([p for p in (out / "ray" / "sweep").iterdir() if p.is_dir() and "_ray_trainable" in p.name]) == 2


@pytest.mark.parametrize(("kw", "words"), [
    ({"algo": "td3", "preset": "zoo", "algo_kwargs": {}}, "algo=td3"),
    ({"algo": "ppo", "preset": "paper", "algo_kwargs": {"clip_range": "lin_0.2"}}, "clip_range"),
    ({"distill": {"schedule": "adaptive"}}, "adaptive"),
    ({"distill": {"xi_estimator": "own_critic"}}, "own_critic"),
    ({"algo_kwargs": {**TINY, "train_freq": [1, "episode"]}}, "episode"),
])
def test_what_the_engine_does_not_implement_is_one_line_before_any_folder(tmp_path, kw, words):
    with pytest.raises(DPDUserError, match=words) as err:
        train(config(**kw), tmp_path / "run")
    assert "engine=sb3" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "run").exists()


@pytest.mark.extended
def test_a_killed_jax_run_resumes_exactly(tmp_path):
    args = ["--env", "Pendulum-v1", "--algo", "ddpg", "--preset", "paper", "--engine", "jax", "--total-steps", "8000",
            "--set", "iteration_steps=500", "--set", "eval_freq=1000", "--set", "eval_episodes=1",
            "--set", "checkpoint_freq=2000", "--set", "checkpoint_replay_buffer=true", "--set", "algo.buffer_size=5000",
            "--set", "algo.gradient_steps=20", "--set", "snapshots=[]", "--no-progress"]
    a, b = tmp_path / "a", tmp_path / "b"
    assert subprocess.run([sys.executable, "-m", "dpd.cli", "train", *args, "--out", str(a)],
                          capture_output=True).returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "dpd.cli", "train", *args, "--out", str(b)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while not (b / CHECKPOINT_FILE).exists() and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.5)  # after the first checkpoint, mid-run
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (b / "summary.json").exists()
    assert main(["train", "--resume", str(b), "--no-progress"]) == 0
    for name in ("student0", "student1"):
        pa = DDPG.load(a / name / "model.zip", device="cpu").policy.state_dict()
        pb = DDPG.load(b / name / "model.zip", device="cpu").policy.state_dict()
        assert all(th.equal(pa[k], pb[k]) for k in pa), f"{name}: parameters differ"
        assert evals(a, name) == evals(b, name)
        keys = ("time/total_timesteps", "train/critic_loss", "distill/loss", "pair/xi_mean", "rollout/ep_rew_mean")
        ra, rb = rows(a / name / "progress.csv"), rows(b / name / "progress.csv")
        assert [[r.get(k) for k in keys] for r in ra] == [[r.get(k) for k in keys] for r in rb]


@pytest.mark.extended
def test_a_pack_of_runs_stopped_mid_round_checkpoints_every_run_at_one_step_and_resumes_exactly(tmp_path):
    """Found by stage B's Walker2d packs: a SIGTERM that landed while the first run's round stepped the whole pack let
    the other runs checkpoint a round behind it (iterations 47 and 46), and the pack then refused to resume."""
    from dpd.training.together import train_together

    def runs(folder, resume=False):
        return [(config(seed=s, checkpoint_freq=1000, checkpoint_replay_buffer=True).resolve(), folder / f"s{s}", resume)
                for s in (0, 1, 2)]

    assert all(isinstance(o, dict) for o in train_together(runs(tmp_path / "a")))
    # the third call is the second run's first round: after the first run's round stepped the pack, before the third
    # run's boundary
    with SigtermOnPackIterate(3):
        stopped = train_together(runs(tmp_path / "b"))
    assert all(type(o).__name__ == "TrainingInterrupted" for o in stopped)
    states = [th.load(tmp_path / "b" / f"s{s}" / CHECKPOINT_FILE, weights_only=False) for s in (0, 1, 2)]
    assert len({state["students"][0]["iteration"] for state in states}) == 1
    assert all(isinstance(o, dict) for o in train_together(runs(tmp_path / "b", resume=True)))
    for s in (0, 1, 2):
        for name in ("student0", "student1"):
            assert evals(tmp_path / "a" / f"s{s}", name) == evals(tmp_path / "b" / f"s{s}", name)
            pa = DDPG.load(tmp_path / "a" / f"s{s}" / name / "model.zip", device="cpu").policy.state_dict()
            pb = DDPG.load(tmp_path / "b" / f"s{s}" / name / "model.zip", device="cpu").policy.state_dict()
            assert all(th.equal(pa[k], pb[k]) for k in pa), f"s{s} {name}: parameters differ"


@pytest.mark.extended
def test_a_pack_whose_runs_checkpointed_at_different_steps_resumes_each_step_as_its_own_pack_exactly(tmp_path):
    """Found on the paper-scale study's HalfCheetah pack: a session's end killed the sweep while its SIGTERM
    checkpoints were being written, so the pack's first run checkpointed at the stop and the others kept their
    periodic checkpoint, a round earlier (their logs ran ahead of it). The resumed pack trains each step's runs as
    a pack of their own; every run must still equal its uninterrupted self. And a stop while the first of those
    packs trains starts no other (it did: the next pack set up, loaded its buffers and trained on, and the sweep's
    stop waited for it, or a kill caught it mid-way)."""
    import shutil

    from dpd.errors import TrainingInterrupted
    from dpd.training.together import train_together

    def runs(folder, resume=False):
        return [(config(seed=s, checkpoint_freq=1000, checkpoint_replay_buffer=True).resolve(), folder / f"s{s}", resume)
                for s in (0, 1, 2)]

    def iteration(run):
        return th.load(run / CHECKPOINT_FILE, weights_only=False)["students"][0]["iteration"]

    assert all(isinstance(o, dict) for o in train_together(runs(tmp_path / "a")))
    b = tmp_path / "b"
    with SigtermOnPackIterate(1):  # every run stops after iteration 1 of its 3 (1,500 env steps per learner)
        train_together(runs(b))
    for s in (1, 2):
        shutil.copy(b / f"s{s}" / CHECKPOINT_FILE, tmp_path / f"early{s}.pt")
    with SigtermOnPackIterate(1):  # a round later: iteration 2 of 3
        train_together(runs(b, resume=True))
    for s in (1, 2):  # their stop's checkpoints were never written: the earlier ones stand, their logs ahead of them
        shutil.copy(tmp_path / f"early{s}.pt", b / f"s{s}" / CHECKPOINT_FILE)
    early, late = iteration(b / "s1"), iteration(b / "s0")
    assert iteration(b / "s2") == early < late < 3, (early, late)
    with SigtermOnPackIterate(1):  # in s0's pack, the first to train: s1 and s2's must not start
        stopped = train_together(runs(b, resume=True))
    assert isinstance(stopped[0], dict)  # the signal came in s0's last round, which ends the run (as for one run)
    for s in (1, 2):
        assert isinstance(stopped[s], TrainingInterrupted) and "is unchanged" in str(stopped[s]), stopped[s]
        assert (b / f"s{s}" / CHECKPOINT_FILE).read_bytes() == (tmp_path / f"early{s}.pt").read_bytes()
    rest = [r for r in runs(b, resume=True) if r[1].name != "s0"]
    assert all(isinstance(o, dict) for o in train_together(rest))
    for s in (0, 1, 2):
        for name in ("student0", "student1"):
            assert evals(tmp_path / "a" / f"s{s}", name) == evals(b / f"s{s}", name), f"s{s} {name}"
            pa = DDPG.load(tmp_path / "a" / f"s{s}" / name / "model.zip", device="cpu").policy.state_dict()
            pb = DDPG.load(b / f"s{s}" / name / "model.zip", device="cpu").policy.state_dict()
            assert all(th.equal(pa[k], pb[k]) for k in pa), f"s{s} {name}: parameters differ"


@pytest.mark.extended
def test_a_stop_while_a_pack_sets_up_ends_every_run_before_its_first_round(tmp_path, monkeypatch):
    """As for one run: a stop during setup saves nothing new, and every run of the pack says so (before: the next
    run's own setup raised out of the pack)."""
    from dpd.errors import TrainingInterrupted
    from dpd.training.together import train_together
    from dpd.training.trainer import DPDTrainer

    original = DPDTrainer._setup

    def setup(self):
        original(self)
        signal.raise_signal(signal.SIGTERM)

    monkeypatch.setattr(DPDTrainer, "_setup", setup)
    outcomes = train_together([(config(seed=s).resolve(), tmp_path / f"s{s}", False) for s in (0, 1)])
    assert all(isinstance(o, TrainingInterrupted) and "before the first env step" in str(o) for o in outcomes)
    assert outcomes[0] is not outcomes[1]  # each run's own outcome, not the pack's failure handed to every run
    assert not any((tmp_path / f"s{s}" / CHECKPOINT_FILE).exists() for s in (0, 1))


# ---------------------------------------------------------------- PPO
PPO_TINY = {"n_steps": 256, "batch_size": 64, "n_epochs": 2, "learning_rate": "lin_3e-4",
            "policy_kwargs": {"activation_fn": "tanh", "net_arch": {"pi": [32, 32], "vf": [32, 32]}}}


def ppo_config(**kw):
    base = {"env_id": "Pendulum-v1", "algo": "ppo", "preset": "none", "engine": "jax", "total_steps": 2048,
            "eval_freq": 512, "eval_episodes": 1, "snapshots": [], "normalize": True, "normalize_reward": True,
            "algo_kwargs": dict(PPO_TINY)}
    return TrainConfig(**{**base, **kw})


@pytest.mark.extended  # the slowest test of make test (PPO's jit compiles, ~30 s of a core): make test keeps its budget
def test_a_jax_ppo_pair_distils_writes_todays_folder_and_exports_to_sb3(tmp_path):
    from stable_baselines3 import PPO

    from dpd.training.pack_learner import PackGroup, export_sb3

    summary = train(ppo_config(), tmp_path / "run")
    assert summary["engine"] == "jax" and summary["total_env_steps"] == 2048
    progress = rows(tmp_path / "run" / "student1" / "progress.csv")
    assert [int(r["time/total_timesteps"]) for r in progress] == [0, 256, 512, 768, 1024]
    assert [int(r["distill/phase_steps"]) for r in progress[1:]] == [10] * 4  # the dense on-policy schedule
    assert all(r["train/value_loss"] for r in progress[1:])
    model, _ = load_learner(tmp_path / "run", "student1")
    assert isinstance(model, PPO) and model.num_timesteps == 1024
    # the export: SB3's deterministic action and value equal the pack's (mean clipped to the bounds)
    cfg = ppo_config().resolve()
    group = PackGroup([cfg], [None])
    group.pack.learn(256)
    model, vn = export_sb3(cfg, group.pack, 1)
    raw = np.random.default_rng(1).normal(size=(5, 3))
    obs = vn.normalize_obs(raw).astype(np.float32)
    with th.no_grad():
        mean = model.policy.get_distribution(th.as_tensor(obs)).distribution.mean.numpy()
        value = model.policy.predict_values(th.as_tensor(obs)).numpy()[:, 0]
    import jax

    from dpd.pack.ppo import tanh_mlp

    pi, vf = (jax.tree.map(lambda x: x[1], p) for p in (group.pack.policy.pi, group.pack.policy.vf))
    own = group.pack.normalize_one(1, raw)
    np.testing.assert_allclose(obs, own, atol=1e-6)
    np.testing.assert_allclose(mean, np.asarray(tanh_mlp(pi, own)), atol=1e-5)
    np.testing.assert_allclose(value, np.asarray(tanh_mlp(vf, own))[:, 0], atol=1e-5)
    batch = group.peer_batch(1)  # values in raw units: the reward scale of the learner's VecNormalize
    scale = float(np.sqrt(vn.ret_rms.var + vn.epsilon))
    np.testing.assert_allclose(batch.values, np.asarray(tanh_mlp(vf, group.pack.normalize_one(1, batch.states)))[:, 0]
                               * scale, rtol=1e-5)
    assert len(batch) == 257  # the window: the first reset and 256 steps
    for view in group.views:
        view.close()


@pytest.mark.extended  # three runs, ~10 s of CPU
def test_a_vanilla_run_alone_equals_the_same_seed_in_a_pack_of_twelve(tmp_path):
    """A vanilla run trained alone is a pack of ONE learner, the same seed in a sweep's pack one of many: with
    jax.vmap XLA rounded a pack of 1, of 2-10 and of 11+ learners differently, and the runs drifted apart (final
    evaluation -1456.7 alone, -1447.6 in a pack of 2); the pack now maps one learner's program over its learners."""
    from dpd.training.together import train_together

    short = {"total_steps": 1000, "eval_freq": 500}
    runs = [(config(seed=s, method="vanilla", **short).resolve(), tmp_path / f"s{s}", False) for s in range(12)]
    assert all(isinstance(o, dict) for o in train_together(runs))
    train(config(seed=1, method="vanilla", **short), tmp_path / "alone")
    assert evals(tmp_path / "alone", "vanilla") == evals(tmp_path / "s1", "vanilla")
    assert evals(tmp_path / "s0", "vanilla") != evals(tmp_path / "s1", "vanilla")


@pytest.mark.extended
def test_a_ppo_run_alone_equals_the_same_run_inside_a_pack(tmp_path):
    from dpd.training.together import train_together

    outcomes = train_together([(ppo_config(seed=s).resolve(), tmp_path / f"s{s}", False) for s in (0, 1)])
    assert all(isinstance(o, dict) for o in outcomes)
    train(ppo_config(seed=1), tmp_path / "alone")
    for name in ("student0", "student1"):  # bit for bit: one learner's program mapped over the pack (per_learner)
        assert evals(tmp_path / "alone", name) == evals(tmp_path / "s1", name)
        assert evals(tmp_path / "s0", name) != evals(tmp_path / "s1", name)


@pytest.mark.extended
def test_a_jax_ppo_run_stopped_and_resumed_equals_an_uninterrupted_one(tmp_path):
    from dpd.errors import TrainingInterrupted
    from dpd.training import resume

    train(ppo_config(checkpoint_freq=512), tmp_path / "a")
    with SigtermOnPackIterate(2), pytest.raises(TrainingInterrupted):
        train(ppo_config(checkpoint_freq=512), tmp_path / "b")
    assert (tmp_path / "b" / CHECKPOINT_FILE).exists()
    resume(tmp_path / "b")
    for name in ("student0", "student1"):
        assert evals(tmp_path / "a", name) == evals(tmp_path / "b", name)
        pa = PPO_load(tmp_path / "a" / name / "model.zip")
        pb = PPO_load(tmp_path / "b" / name / "model.zip")
        assert all(th.equal(pa[k], pb[k]) for k in pa)


def PPO_load(path):
    from stable_baselines3 import PPO

    return PPO.load(path, device="cpu").policy.state_dict()


@pytest.mark.parametrize(("env_id", "algo", "words"), [("CartPole-v1", "ppo", "Discrete actions"),
                                                        ("CartPole-v1", "ddpg", "continuous")])
def test_an_env_a_pack_cannot_take_is_one_line_before_any_folder(tmp_path, env_id, algo, words):
    """Found by a hostile attempt: the pack refused a Discrete env only after the run folder was made (a folder with
    its config.yaml left behind, so the corrected command was refused as 'not empty')."""
    with pytest.raises(DPDUserError, match=words):
        train(TrainConfig(env_id=env_id, algo=algo, preset="none", engine="jax", total_steps=4096), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_what_a_config_leaves_unset_the_engine_takes_from_sb3_itself():
    """preset none, nothing set: the packs' settings are what SB3's own DDPG and PPO train with (their built models'
    attributes), so a changed SB3 default cannot leave the engine on an old copy."""
    import inspect

    import gymnasium as gym
    from stable_baselines3 import PPO

    from dpd.training.pack_learner import pack_config, ppo_config

    env = gym.make("Pendulum-v1")
    ddpg = DDPG("MlpPolicy", env, buffer_size=1000)  # the buffer's size alone set (memory); checked from the signature
    pc = pack_config(TrainConfig(env_id="Pendulum-v1", algo="ddpg", preset="none", total_steps=4096).resolve())
    assert (pc.batch_size, pc.gamma, pc.tau, pc.learning_rate, pc.learning_starts, pc.train_freq, pc.gradient_steps) == (
        ddpg.batch_size, ddpg.gamma, ddpg.tau, ddpg.learning_rate, ddpg.learning_starts, ddpg.train_freq.frequency,
        ddpg.gradient_steps)
    assert list(pc.net_arch) == ddpg.policy.net_arch
    assert pc.buffer_size == inspect.signature(DDPG).parameters["buffer_size"].default
    ppo = PPO("MlpPolicy", env)
    qc = ppo_config(TrainConfig(env_id="Pendulum-v1", algo="ppo", preset="none", total_steps=4096).resolve())
    assert (qc.n_steps, qc.batch_size, qc.n_epochs, qc.learning_rate, qc.gamma, qc.gae_lambda, qc.ent_coef, qc.vf_coef,
            qc.max_grad_norm, qc.clip_range) == (ppo.n_steps, ppo.batch_size, ppo.n_epochs, ppo.learning_rate, ppo.gamma,
                                                 ppo.gae_lambda, ppo.ent_coef, ppo.vf_coef, ppo.max_grad_norm,
                                                 ppo.clip_range(1.0))
    assert {"pi": list(qc.pi_arch), "vf": list(qc.vf_arch)} == ppo.policy.net_arch
    assert qc.log_std_init == float(ppo.policy.log_std.detach()[0])


def _memory(monkeypatch, gib: float) -> None:
    import dpd.run_files
    import dpd.training.preflight

    for module in (dpd.run_files, dpd.training.preflight):
        monkeypatch.setattr(module, "physical_memory", lambda: int(gib * (1 << 30)))


def test_a_sweeps_packs_are_cut_to_fit_memory_and_refused_before_any_folder_where_none_fits(tmp_path, monkeypatch):
    """A pack whose learners' buffers would not fit with --workers packs at once is cut into near-equal packs
    (every trial once, in order); where not even one run per pack fits, one line and no folder (a sweep of 8
    packed runs past memory used to make 8 run folders, each failed with the pack's refusal in error.txt)."""
    from dpd.engine import pack_key
    from dpd.experiments.sweep import SweepSpec, expand, pack_groups, pack_limits
    from dpd.training.preflight import run_bytes

    spec = SweepSpec(envs=["Pendulum-v1"], algos=["ddpg"], total_steps=200_000, preset="paper", seeds=list(range(10)),
                     variants=["vanilla", "independent"], overrides=["engine=jax", "algo.buffer_size=100000"])
    trials = expand(spec)
    vanilla, pair = (next(t.config for t in trials if t.config.method == m) for m in ("vanilla", "independent"))
    per_run = {pack_key(c): run_bytes(c) for c in (vanilla, pair)}
    assert per_run[pack_key(pair)] > per_run[pack_key(vanilla)]  # two learners' buffers
    _memory(monkeypatch, 7.5 * per_run[pack_key(vanilla)] / (1 << 30))
    limits = pack_limits(trials, concurrent=2)  # vanilla: 3 runs per pack; the pair: fewer
    assert limits[pack_key(vanilla)] == 3
    groups = pack_groups(trials, limits)
    assert [t.name for g in groups for t in g] == [t.name for g in pack_groups(trials) for t in g]
    assert [len(g) for g in groups if g[0].config.method == "vanilla"] == [3, 3, 2, 2]
    assert all(len(g) <= limits[pack_key(g[0].config)] for g in groups)
    _memory(monkeypatch, 1000.0)  # --pack-size alone: packs of at most 4, near-equal
    assert [len(g) for g in pack_groups(trials, pack_limits(trials, 2, pack_size=4))] == [4, 3, 3, 4, 3, 3]
    assert pack_limits(trials, 2, pack_size=10) == {}  # no cut needed
    assert main(["sweep", "--env", "Pendulum-v1", "--seeds", "2", "--pack-size", "2", "--out", str(tmp_path / "sb3")]) == 2
    assert not (tmp_path / "sb3").exists()  # --pack-size without the engine means nothing: one line
    _memory(monkeypatch, 1.5 * per_run[pack_key(vanilla)] / (1 << 30))
    out = tmp_path / "sw"
    assert main(["sweep", "--env", "Pendulum-v1", "--algo", "ddpg", "--preset", "paper", "--engine", "jax", "--seeds",
                 "4", "--method", "vanilla", "--total-steps", "200000", "--set", "algo.buffer_size=100000",
                 "--workers", "2", "--out", str(out)]) == 2
    assert not out.exists()
