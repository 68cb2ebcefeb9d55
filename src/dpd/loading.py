"""Open a finished run's learners with plain SB3: the model zip plus its frozen VecNormalize statistics."""

from __future__ import annotations

from pathlib import Path

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from dpd.config import ALGOS, read_run_config
from dpd.envs import check_env_id, env_factory, frozen_normalization
from dpd.errors import DPDUserError
from dpd.run_files import MODEL_FILE
from dpd.safe_load import load_model, read_normalization


def load_learner(run: str | Path, name: str, seed: int = 0) -> tuple[BaseAlgorithm, VecEnv]:
    """Load learner ``name`` (``student0``, ``student1`` or ``vanilla``) of a finished run.

    :return: (the SB3 model, a 1-env VecEnv for it: normalisation frozen, rewards raw).
        ``model.predict(env.reset(), deterministic=True)`` then behaves as in the run's evaluations.
    """
    config = read_run_config(run)
    folder = Path(run) / name
    zip_path = folder / MODEL_FILE
    if name not in config.learner_names:
        raise DPDUserError(f"{run} has no learner {name!r}; it has: {', '.join(config.learner_names)}")
    if not zip_path.is_file():
        raise DPDUserError(f"{zip_path} not found: the run has not finished (no saved model)")
    check_env_id(config.env_id).close()
    venv: VecEnv = DummyVecEnv([env_factory(config.env_id, monitor=True)])  # type: ignore[list-item]
    venv.seed(seed)
    state = read_normalization(folder)  # plain JSON: opening a run folder executes no code from it
    env: VecEnv = frozen_normalization(state, venv) if state is not None else venv
    model = load_model(ALGOS[config.algo][0], zip_path, env=env)
    return model, env


__all__ = ["load_learner", "read_run_config"]
