"""``DPD``: the SB3-shaped front door, for a user's own environment from Python.

    from dpd import DPD

    model = DPD("ppo", "CartPole-v1", alpha=1.0, seed=0)        # or env=a callable returning a gym.Env
    model.learn(100_000, progress_bar=True)                      # the pair together: 100k total env steps
    model.save("runs/cartpole-dpd")                              # a run folder: dpd evaluate / analyze read it
    loaded = DPD.load("runs/cartpole-dpd")                       # env=... again where a factory made it
    action, _ = loaded.predict(obs, deterministic=True)          # the better student, with its own normalisation

Everything else of a run is :class:`dpd.config.TrainConfig`'s: the keyword arguments are its fields, their flat
aliases (``alpha``, ``distill_lr``, ...) or, for anything else, arguments of the SB3 algorithm (``n_steps=1024``).
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback

from dpd.config import ACTIVATIONS, ResolvedConfig, TrainConfig, plain_numbers, valid_keys
from dpd.envs import EnvSource, register_env_factory
from dpd.errors import DPDUserError
from dpd.names import DEFAULT_ALPHA, DEFAULT_METHOD, DEFAULT_PRESET, DEFAULT_SEED

#: the one policy dpd's students support (Box observations, an MLP actor and critic)
POLICIES = ("MlpPolicy",)
CallbackArg = BaseCallback | list[BaseCallback] | Callable[[str], BaseCallback | list[BaseCallback] | None] | None


class DPD:
    """A DPD pair (or the ``independent`` / ``vanilla`` control) shaped like an SB3 algorithm.

    :param algo: ``ppo`` | ``a2c`` | ``ddpg`` | ``td3`` | ``sac``.
    :param env: a Gymnasium id, ``package.module:make_env`` (a factory in an importable module), or a callable that
        returns a new ``gym.Env`` (called once per env copy: each student and each evaluation gets its own).
    :param method: ``dpd`` | ``independent`` | ``vanilla``.
    :param policy: ``MlpPolicy`` (the only policy dpd's students take).
    :param policy_kwargs: as SB3's (``net_arch``, ``activation_fn`` as a torch class or its name).
    :param run_dir: where training writes its run folder (logs, evaluations, models) as it goes; None: in memory,
        until :meth:`save`.
    :param kwargs: :class:`TrainConfig` fields and flat aliases (``alpha``, ``total_steps`` is set by
        :meth:`learn`), else arguments of the SB3 algorithm.
    """

    def __init__(self, algo: str, env: str | Callable[[], gym.Env], *, method: str = DEFAULT_METHOD,
                 alpha: float = DEFAULT_ALPHA, policy: str = "MlpPolicy", policy_kwargs: dict[str, Any] | None = None,
                 seed: int = DEFAULT_SEED, preset: str = DEFAULT_PRESET, run_dir: str | Path | None = None,
                 **kwargs: Any) -> None:
        if policy not in POLICIES:
            raise DPDUserError(f"policy {policy!r}: dpd's students use {', '.join(POLICIES)} (Box observations)")
        if policy_kwargs is not None and not isinstance(policy_kwargs, dict):
            raise DPDUserError(f"policy_kwargs must be a dict (e.g. dict(net_arch=[64, 64])), got"
                               f" {type(policy_kwargs).__name__}")
        kwargs, policy_kwargs = plain_numbers(kwargs), plain_numbers(policy_kwargs)
        alpha, seed = plain_numbers(alpha), plain_numbers(seed)
        env_id = env if isinstance(env, str) else register_env_factory(env)
        keys = set(valid_keys()) - {"env_id"} | {"distill"}  # the config's fields and the flat aliases
        config_values = {k: v for k, v in kwargs.items() if k in keys}
        algo_kwargs = {k: v for k, v in kwargs.items() if k not in config_values}
        if policy_kwargs:
            algo_kwargs["policy_kwargs"] = _policy_kwargs(policy_kwargs)
        if "total_steps" in config_values:
            raise DPDUserError("total_steps is learn()'s: model.learn(total_timesteps)")
        #: what the user asked for; :attr:`config` is it resolved (after learn(): with learn()'s budget)
        # through with_values, the one entrance of user-typed keys (each checked against its field's type)
        self.request = TrainConfig(env_id=env_id).with_values(
            algo=algo, method=method, seed=seed, preset=preset, algo_kwargs=algo_kwargs, alpha=alpha, **config_values)
        self.config: ResolvedConfig = self.request.resolve()  # every mistake now, in one line, before anything trains
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self._trainer: Any = None
        self.summary: dict[str, Any] | None = None
        self._loaded: list[tuple[BaseAlgorithm, Any]] | None = None
        self._exported: list[tuple[BaseAlgorithm, Any]] | None = None

    # ------------------------------------------------------------------ training
    def learn(self, total_timesteps: int, progress_bar: bool = False, callback: CallbackArg = None,
              overwrite: bool = False) -> DPD:
        """Train for ``total_timesteps`` TOTAL env steps (a pair: each student half, as the paper's fairness rule).

        :param callback: an SB3 callback (each learner gets its own copy), a list of them, or a function
            ``learner_name -> callback``."""
        if self._trainer is not None or self._loaded is not None:
            raise DPDUserError("this DPD has trained (or was loaded); make a new DPD(...) to train again, or resume a"
                               " saved run with dpd train --resume RUN")
        from dpd.run_files import RUN_DIR_WORDS
        from dpd.training.trainer import train_and_keep

        config = self.request.with_values(total_steps=_budget(total_timesteps)).resolve()
        # train()'s own lifecycle (folder, build, learn, summary.json once), the trainer kept for predict / save
        self._trainer, self.summary = train_and_keep(config, self.run_dir, overwrite=overwrite,
                                                     callbacks=_callback_factory(callback), progress_bar=progress_bar,
                                                     words=RUN_DIR_WORDS)
        self.config = config
        return self

    @property
    def students(self) -> list[BaseAlgorithm]:
        """The SB3 models (two students; vanilla: one). Each acts on observations normalised with its own
        statistics (:meth:`predict` does that for you)."""
        if self._loaded is not None:
            return [m for m, _ in self._loaded]
        if self._trainer is None:
            raise DPDUserError("no model yet: call learn() first (or DPD.load a saved run)")
        if self.config.engine == "jax":  # the pack's learners as SB3 models (weights copied out, once)
            return [m for m, _ in self._jax_models()]
        return [s.model for s in self._trainer.students]

    def _jax_models(self) -> list[tuple[BaseAlgorithm, Any]]:
        """(SB3 model, VecNormalize or None) of each learner of an ``engine=jax`` run (:func:`export_sb3`)."""
        if self._exported is None:
            from dpd.training.pack_learner import export_sb3

            self._exported = [export_sb3(self.config, view.group.pack, view.slot) for view in self._trainer.learners]
        return self._exported

    def predict(self, observation: np.ndarray, deterministic: bool = True, learner: str | None = None
                ) -> tuple[np.ndarray, None]:
        """SB3's ``predict`` for raw observations: the given learner's (default: the better by the final
        evaluation), with its own normalisation."""
        name = learner or (self.summary or {}).get("best_learner") or self.config.learner_names[0]
        if name not in self.config.learner_names:
            raise DPDUserError(f"learner={name!r}: this {self.config.method} run has {', '.join(self.config.learner_names)}")
        index = self.config.learner_names.index(name)
        model = self.students[index]
        vn = self._normalizer(index)
        obs = vn.normalize_obs(np.asarray(observation)) if vn is not None else observation
        action, _ = model.predict(obs, deterministic=deterministic)
        return action, None

    def _normalizer(self, index: int) -> Any:
        if self._loaded is not None:
            env = self._loaded[index][1]
            from stable_baselines3.common.vec_env import VecNormalize

            return env if isinstance(env, VecNormalize) else None
        if self.config.engine == "jax":
            return self._jax_models()[index][1]
        return self._trainer.students[index].vec_normalize

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write a run folder (config.yaml, each learner's model.zip, normalisation, evaluations.csv, summary.json)
        that ``DPD.load``, ``dpd evaluate``, ``dpd analyze`` and SB3's ``PPO.load`` read."""
        if self._trainer is None or self.summary is None:  # a learn() that raised closed its learners
            raise DPDUserError("nothing to save: call learn() first (a learn() that raised left nothing to save)")
        from dpd.run_files import CONFIG_FILE, EVAL_FILE, SAVE_WORDS, EvalLog, create_run_dir, write_json, write_yaml
        from dpd.training.trainer import SUMMARY_FILE

        if self.run_dir is not None and Path(path).resolve() == self.run_dir.resolve():
            return self.run_dir  # trained there: everything is written already
        folder, lock = create_run_dir(path, overwrite, SAVE_WORDS)
        lock.keep_new()
        try:
            write_yaml(folder / CONFIG_FILE, self.config.to_dict())
            for learner in self._trainer.learners:  # Learners in this process: DPD trains sequentially
                learner.save(folder / learner.name)
                log = EvalLog(folder / learner.name / EVAL_FILE)
                for row in learner.evaluations:
                    log.append(row)
                log.close()
            write_json(folder / SUMMARY_FILE, self.summary)
        finally:
            lock.release()
        return folder

    @classmethod
    def load(cls, path: str | Path, env: str | Callable[[], gym.Env] | None = None) -> DPD:
        """A saved run's learners, to act (``predict``) or to hand to SB3 (``students``). ``env``: the run's env
        again where it came from a factory or a module (a run folder never imports code by itself)."""
        from dpd.evaluation import read_summary
        from dpd.loading import load_learner, read_run_config

        config = read_run_config(path)
        summary = read_summary(path)
        model = cls.__new__(cls)
        model.config, model.summary, model.run_dir, model._trainer = config, summary, Path(path), None
        model.request = TrainConfig.from_dict(config.to_dict())
        source = env if env is None or isinstance(env, str) else register_env_factory(env)
        model._loaded = [load_learner(path, name, env=source) for name in config.learner_names]
        return model

    def close(self) -> None:
        if self._trainer is not None:
            self._trainer.close()
        for _, env in self._loaded or []:
            env.close()


def _budget(total_timesteps: Any) -> int:
    """learn()'s budget as an int: a whole, finite, positive number (numpy's too; ``1e6`` is 1000000), else a
    one-line DPDUserError (a fraction, nan, inf or a string would otherwise be cut or fail deep inside)."""
    ok = isinstance(total_timesteps, numbers.Real) and not isinstance(total_timesteps, (bool, np.bool_))
    if ok and isinstance(total_timesteps, numbers.Integral):
        value = int(total_timesteps)
    elif ok and math.isfinite(float(total_timesteps)) and float(total_timesteps).is_integer():
        value = int(float(total_timesteps))
    else:
        raise DPDUserError(f"learn(total_timesteps) takes a whole number of env steps, e.g. learn(100_000); got"
                           f" {total_timesteps!r}")
    if value < 1:
        raise DPDUserError(f"learn(total_timesteps) takes a positive number of env steps, got {value}")
    return value


def _policy_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """SB3-style policy kwargs -> the config's plain form (an activation class -> its name)."""
    out = dict(kwargs)
    act = out.get("activation_fn")
    if isinstance(act, type):
        names = {cls: name for name, cls in ACTIVATIONS.items()}
        if act not in names:
            raise DPDUserError(f"activation_fn {act.__name__}: dpd supports {', '.join(ACTIVATIONS)}")
        out["activation_fn"] = names[act]
    return out


def _callback_factory(callback: CallbackArg) -> Callable[[str], Any] | None:
    """One callback object per learner: SB3 binds a callback to one model."""
    if callback is None:
        return None
    if callable(callback) and not isinstance(callback, BaseCallback):
        return callback

    def per_learner(_name: str) -> Any:
        return copy.deepcopy(callback)

    return per_learner


__all__ = ["DPD", "EnvSource"]
