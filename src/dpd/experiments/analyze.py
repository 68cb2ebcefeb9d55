"""``dpd analyze``: the paper's Figure 3 for one DPD run (values and actions of the two students through training).

1. States: a deterministic rollout of the run's better student (its final model) in a fresh copy of the env;
   ``n_states`` raw states are drawn from it at random (the paper: a pre-trained model's rollouts).
2. Stages: the learners' snapshots (``config.snapshots``, default 10% / 50% / 100% of each learner's budget,
   written by training into ``LEARNER/snapshots/<steps>/``).
3. At each stage: each student's value estimate on those states, in raw return units (PPO/A2C: V(s); DDPG/TD3:
   Q1(s, mu(s)); SAC: min Q(s, tanh mean)), each student normalising with its own saved statistics; and the
   Euclidean distance between the two students' deterministic actions (env units, as ``model.predict`` gives
   them; discrete actions: 1 where they differ). With ``against``: the same distance between two independent
   vanilla runs at their own stage k (same fractions of their budgets, i.e. the same TOTAL env steps).

Writes ``analysis.json`` (all numbers) and ``figure3.png`` (values on the first ``n_value_states`` states on top,
action distances with their means below, one column per stage).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecNormalize

from dpd.config import ALGOS, ResolvedConfig
from dpd.envs import EnvSource, normalize_raw, return_scale
from dpd.errors import DPDUserError
from dpd.loading import load_learner, read_run_config
from dpd.names import (
    ANALYSIS_DIR,
    ANALYSIS_FIGURE,
    ANALYSIS_FILE,
    MODEL_FILE,
    SNAPSHOT_DIR,
    STUDENTS,
    SUMMARY_FILE,
    VANILLA,
)
from dpd.run_files import (
    atomic_write,
    atomic_write_text,
    check_output,
    claim_output,
    read_summary_file,
    result_output,
)
from dpd.students.outputs import value_estimates

#: what dpd analyze writes into its folder
OUTPUT_FILES = (ANALYSIS_FILE, ANALYSIS_FIGURE)
#: what dpd analyze writes into its --out (the one overwrite rule: dpd.run_files.check_output)
OUTPUT = result_output("analyze", OUTPUT_FILES)


@dataclass
class Snapshot:
    """One saved copy of a learner: its SB3 model and, if the run normalised, its frozen VecNormalize."""

    steps: int
    model: BaseAlgorithm
    normalizer: VecNormalize | None

    def values(self, raw_states: np.ndarray) -> np.ndarray:
        """(N,) value estimates in raw return units (reward normalisation undone)."""
        obs = th.as_tensor(normalize_raw(self.normalizer, raw_states), device=self.model.device)
        scale = return_scale(self.normalizer)
        return value_estimates(self.model.policy, obs).cpu().numpy().astype(np.float64) * scale

    def actions(self, raw_states: np.ndarray) -> np.ndarray:
        """(N, A) deterministic actions in env units (PPO's clipped to the action bounds), or (N,) discrete."""
        actions, _ = self.model.predict(normalize_raw(self.normalizer, raw_states), deterministic=True)
        return np.asarray(actions, dtype=np.float64)


def list_snapshots(run: Path, learner: str) -> list[Path]:
    """The snapshot folders of ``learner`` in ``run``, earliest first (empty if the run kept none)."""
    folder = run / learner / SNAPSHOT_DIR
    found = [p for p in folder.iterdir() if p.is_dir() and p.name.isdigit() and (p / MODEL_FILE).is_file()] if (
        folder.is_dir()) else []
    return sorted(found, key=lambda p: int(p.name))


def load_snapshot(config: ResolvedConfig, folder: Path, env: EnvSource | None = None) -> Snapshot:
    """A snapshot folder's model and frozen normalisation; ``env``: the run's environment again (see
    :func:`dpd.loading.load_learner`)."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    from dpd.envs import env_factory, frozen_normalization
    from dpd.loading import env_source
    from dpd.safe_load import load_model, read_normalization

    env_id, trust = env_source(config, env)
    venv = DummyVecEnv([env_factory(env_id, trust=trust)])
    model = load_model(ALGOS[config.algo][0], folder / MODEL_FILE, env=venv)
    state = read_normalization(folder)  # plain JSON: nothing in a run folder is unpickled
    normalizer = frozen_normalization(state, venv, raw_rewards=False) if state is not None else None
    return Snapshot(int(folder.name), model, normalizer)


def _snapshots(run: Path, config: ResolvedConfig) -> dict[str, list[Path]]:
    found = {name: list_snapshots(run, name) for name in config.learner_names}
    counts = {len(v) for v in found.values()}
    if 0 in counts:
        raise DPDUserError(
            f"{run} has no snapshots (it was trained with snapshots=[] or before dpd kept them);"
            " train it again, e.g. with --set snapshots=[0.1,0.5,1.0]"
        )
    if len(counts) != 1:
        raise DPDUserError(f"{run}: the learners have different numbers of snapshots ({found}); the run is unfinished")
    return found


def _check_run(run: Path, method: str, command: str = "dpd analyze") -> ResolvedConfig:
    """``method``: ``dpd`` (a pair: a DPD run or the independent pair) or ``vanilla``."""
    config = read_run_config(run)
    is_pair = config.method in ("dpd", "independent")
    if is_pair != (method == "dpd"):
        what = "a pair (method dpd or independent)" if method == "dpd" else "vanilla runs (method vanilla)"
        raise DPDUserError(f"{run} is a run of method {config.method}; {command} needs {what} here")
    if not (run / SUMMARY_FILE).is_file():
        raise DPDUserError(f"{run} has not finished (no {SUMMARY_FILE}); run {command} when training is done")
    return config


def sample_states(run: Path, learner: str, n_states: int, seed: int, rollout_steps: int = 1000,
                  env_id: EnvSource | None = None) -> np.ndarray:
    """(n_states, *obs_shape) raw states drawn at random from a deterministic rollout of ``learner``'s final model."""
    model, env = load_learner(run, learner, seed=seed, env=env_id)
    try:
        states = []
        obs = env.reset()
        for _ in range(max(rollout_steps, n_states)):
            raw = np.asarray(env.get_original_obs() if isinstance(env, VecNormalize) else obs)
            states.append(np.array(raw[0], dtype=np.float64))
            action, _ = model.predict(np.asarray(obs), deterministic=True)
            obs, _, _, _ = env.step(action)
    finally:
        env.close()
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(states), size=n_states, replace=False)
    return np.stack([states[i] for i in idx])


def env_action_distance(a: np.ndarray, b: np.ndarray, discrete: bool) -> np.ndarray:
    """(N,) per-state distance between two learners' actions AS THE ENV GETS THEM (clipped, env units): Euclidean
    (continuous) or 1 where they differ. Not the distillation distance (``pair/action_distance``, an MSE of the
    policies' outputs in policy units, :func:`dpd.objective.action_distance`)."""
    if discrete:
        return (a.reshape(len(a), -1) != b.reshape(len(b), -1)).any(axis=1).astype(np.float64)
    return np.linalg.norm(a.reshape(len(a), -1) - b.reshape(len(b), -1), axis=1)


def analyze(
    run: str | Path,
    against: tuple[str | Path, str | Path] | None = None,
    out: str | Path | None = None,
    n_states: int = 100,
    n_value_states: int = 10,
    seed: int = 0,
    env: EnvSource | None = None,
) -> dict[str, Any]:
    """Analyse a finished DPD run (and optionally two vanilla runs); write JSON + PNG into ``out`` (default: RUN/analysis).

    :return: the numbers written to ``analysis.json``.
    """
    run = Path(run)
    if out is not None:  # a folder the user named: never replace a file of theirs there
        check_output(out, OUTPUT)
    if seed < 0:
        raise DPDUserError(f"--seed must be >= 0, got {seed}")
    if n_states < 2 or not 1 <= n_value_states <= n_states:
        raise DPDUserError(f"need n_states >= 2 and 1 <= value states <= n_states; got {n_states}, {n_value_states}")
    config = _check_run(run, "dpd")
    pair = _snapshots(run, config)
    vanilla: list[list[Path]] | None = None
    if against is not None:
        runs_v = [Path(p) for p in against]
        if runs_v[0].resolve() == runs_v[1].resolve():
            raise DPDUserError("--against needs two DIFFERENT vanilla runs (e.g. two seeds)")
        vanilla = []
        for rv in runs_v:
            cv = _check_run(rv, "vanilla")
            if (cv.env_id, cv.algo) != (config.env_id, config.algo):
                raise DPDUserError(f"{rv} is {cv.algo} on {cv.env_id}; the DPD run is {config.algo} on {config.env_id}")
            if cv.total_steps != config.total_steps:  # snapshots at the same fractions would sit at other steps
                raise DPDUserError(f"{rv} trained {cv.total_steps} total env steps, the DPD run {config.total_steps}; the"
                                   f" comparison is at equal total env steps: train the vanilla runs with total_steps"
                                   f" {config.total_steps}")
            vanilla.append(_snapshots(rv, cv)[VANILLA])
        # same env and algo as the DPD run (checked above): its config loads their snapshots too
        if len(vanilla[0]) != len(vanilla[1]) or len(vanilla[0]) != len(pair[STUDENTS[0]]):
            raise DPDUserError(
                "the vanilla runs and the DPD run kept different numbers of snapshots; train them with the same"
                " snapshots setting"
            )
    summary = read_summary_file(run / SUMMARY_FILE)
    source = summary.get("best_learner") or STUDENTS[0]
    states = sample_states(run, source, n_states, seed, env_id=env)

    stages: list[dict[str, Any]] = []
    n_stages = len(pair[STUDENTS[0]])
    for k in range(n_stages):
        snaps = [load_snapshot(config, pair[name][k], env) for name in config.learner_names]
        discrete = isinstance(snaps[0].model.action_space, gym.spaces.Discrete)
        values = [s.values(states) for s in snaps]
        distance = env_action_distance(snaps[0].actions(states), snaps[1].actions(states), discrete)
        stage: dict[str, Any] = {
            "stage": k,
            "student_steps": snaps[0].steps,
            "total_env_steps": snaps[0].steps * 2,
            "values": {name: v.tolist() for name, v in zip(config.learner_names, values, strict=True)},
            "mean_value": {name: float(v.mean()) for name, v in zip(config.learner_names, values, strict=True)},
            # complementarity (paper §4.4): on how many states is each student the better one by its own critic
            "share_student0_higher": float(np.mean(values[0] > values[1])),
            "env_action_distance_dpd": distance.tolist(),
            "mean_env_action_distance_dpd": float(distance.mean()),
        }
        if vanilla is not None:
            sv = [load_snapshot(config, folders[k], env) for folders in vanilla]
            dv = env_action_distance(sv[0].actions(states), sv[1].actions(states), discrete)
            stage["vanilla_steps"] = [s.steps for s in sv]
            stage["env_action_distance_vanilla"] = dv.tolist()
            stage["mean_env_action_distance_vanilla"] = float(dv.mean())
        stages.append(stage)

    result: dict[str, Any] = {
        "run": str(run),
        "env_id": config.env_id,
        "algo": config.algo,
        "against": [str(p) for p in against] if against is not None else None,
        "states": {"n": n_states, "n_value_states": n_value_states, "seed": seed,
                   "source": f"deterministic rollout (1000 steps) of {source}'s final model"},
        "env_action_distance_units": "1 if the actions differ" if discrete else "Euclidean, env action units",
        "stages": stages,
    }
    folder = claim_output(out, OUTPUT) if out is not None else run / ANALYSIS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    plot_figure3(result, folder / ANALYSIS_FIGURE)
    atomic_write_text(folder / ANALYSIS_FILE, json.dumps(result, indent=1))
    result["files"] = [str(folder / ANALYSIS_FILE), str(folder / ANALYSIS_FIGURE)]
    return result


def plot_figure3(result: dict[str, Any], path: Path) -> None:
    """Values (top row) and action distances (bottom row), one column per stage, as in the paper's Figure 3."""
    from dpd.figures import pyplot

    plt = pyplot()

    stages = result["stages"]
    n_value = result["states"]["n_value_states"]
    fig, axes = plt.subplots(2, len(stages), figsize=(4.2 * len(stages), 6.4), squeeze=False)
    for k, stage in enumerate(stages):
        top, bottom = axes[0][k], axes[1][k]
        for name, marker in zip(STUDENTS, ("o", "s"), strict=True):
            top.plot(range(n_value), stage["values"][name][:n_value], marker=marker, label=f"DPD {name}")
        top.set_title(f"{stage['total_env_steps']:,} total env steps")
        top.set_xlabel("state index")
        top.set_ylabel("value estimate (raw return)" if k == 0 else "")
        series = [("DPD students", "env_action_distance_dpd", "mean_env_action_distance_dpd", "tab:blue")]
        if "env_action_distance_vanilla" in stage:
            series.append(("vanilla runs", "env_action_distance_vanilla", "mean_env_action_distance_vanilla", "tab:orange"))
        for label, key, mean_key, color in series:
            xs = range(len(stage[key]))
            bottom.plot(xs, stage[key], color=color, alpha=0.45, label=f"{label} (mean {stage[mean_key]:.3f})")
            bottom.axhline(stage[mean_key], color=color, linewidth=2.2)
        bottom.set_xlabel("state index")
        bottom.set_ylabel("action distance" if k == 0 else "")
        top.legend(fontsize=8)
        bottom.legend(fontsize=8)
    fig.suptitle(f"{result['algo'].upper()} on {result['env_id']}: values and actions through training")
    fig.tight_layout()
    atomic_write(path, lambda fh: fig.savefig(fh, dpi=110, format="png"), binary=True)
    plt.close(fig)
