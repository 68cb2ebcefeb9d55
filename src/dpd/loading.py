"""Open a finished run's learners with plain SB3: the model zip plus its frozen VecNormalize statistics.

A run folder names its environment (config.yaml's ``env_id``). Opening a folder never imports code it names:
where the id is ``module:...`` of a module this process has not imported and no installed distribution provides,
the caller passes the environment again (``env=``; the CLI's ``--env``), see :func:`dpd.envs.make_env`.
"""

from __future__ import annotations

from pathlib import Path

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from dpd.config import ALGOS, ResolvedConfig, read_run_config
from dpd.envs import EnvSource, env_factory, frozen_normalization, make_env, register_env_factory
from dpd.errors import DPDUserError
from dpd.names import MODEL_FILE
from dpd.safe_load import load_model, read_normalization


def env_source(config: ResolvedConfig, env: EnvSource | None) -> tuple[str, bool]:
    """(the env id a run's environments are made with, whether its module may be imported): the run's own id,
    untrusted, or the one the caller passed again, trusted."""
    if env is None:
        return config.env_id, False
    return (env if isinstance(env, str) else register_env_factory(env)), True


def load_learner(run: str | Path, name: str, seed: int = 0, env: EnvSource | None = None
                 ) -> tuple[BaseAlgorithm, VecEnv]:
    """Load learner ``name`` (``student0``, ``student1`` or ``vanilla``) of a finished run.

    :param seed: seed of the returned env (its resets: SB3's load would otherwise re-seed it with the training seed).
    :param env: the run's environment again (an id or a factory) where the folder's own id cannot be opened.
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
    env_id, trust = env_source(config, env)
    make_env(env_id, trust).close()
    venv: VecEnv = DummyVecEnv([env_factory(env_id, monitor=True, trust=trust)])  # type: ignore[list-item]
    state = read_normalization(folder)  # plain JSON: opening a run folder executes no code from it
    vec: VecEnv = frozen_normalization(state, venv) if state is not None else venv
    model = load_model(ALGOS[config.algo][0], zip_path, env=vec)
    vec.seed(seed)  # after load: SB3's load seeds the env it is given with the model's training seed
    return model, vec


__all__ = ["env_source", "load_learner", "read_run_config"]
