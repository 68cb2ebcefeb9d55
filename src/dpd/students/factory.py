"""Build a learner (a Student around a fresh SB3 model) from a resolved config."""

from __future__ import annotations

import os
import sys

import numpy as np
import torch as th
from stable_baselines3.common.logger import HumanOutputFormat, Logger, configure

from dpd.config import ALGOS, ResolvedConfig, build_algo_kwargs, require_resolved
from dpd.envs import make_train_env
from dpd.errors import DPDUserError
from dpd.students.base import Student
from dpd.students.off_policy import OffPolicyStudent
from dpd.students.on_policy import OnPolicyStudent

STUDENT_CLASSES: dict[str, type[Student]] = {"on_policy": OnPolicyStudent, "off_policy": OffPolicyStudent}


def algo_gamma(config: ResolvedConfig) -> float:
    return float(config.algo_arg("gamma"))


def build_student(config: ResolvedConfig, index: int, log_dir: str | None, verbose: int = 0) -> Student:
    """Learner ``index`` of a resolved config: own env copies, own seed, own normalisation, own logger.

    :param log_dir: the learner's folder (monitor files, progress.csv, TensorBoard events); None: no files.
    """
    require_resolved(config, "build_student")
    name = config.learner_names[index]
    seed = config.learner_seed(index)
    gamma = algo_gamma(config)
    env, recorder = make_train_env(
        config.env_id, config.n_envs, seed, config.distill.window, gamma, config.normalize, log_dir,
        normalize_reward=config.normalize_reward, record_sim=config.record_sim_states,
    )
    cls = ALGOS[config.algo][0]
    shape = env.action_space.shape
    action_dim = int(np.prod(shape)) if shape else None
    try:
        model = cls("MlpPolicy", env, seed=seed, device=config.device, verbose=verbose,
                    **build_algo_kwargs(config, action_dim))
    except (AssertionError, ValueError, TypeError) as exc:  # SB3's own checks of its arguments
        env.close()
        raise DPDUserError(f"{cls.__name__} refused its arguments: {str(exc).strip().splitlines()[0]}") from None
    if log_dir is not None:
        os.makedirs(log_dir, exist_ok=True)
        formats = ["csv"] + (["tensorboard"] if config.tensorboard else []) + (["stdout"] if verbose else [])
        model.set_logger(configure(log_dir, formats))
    else:  # SB3's configure(None, ...) would make an empty SB3-<time> folder in the temp dir for every learner
        model.set_logger(Logger(folder=None, output_formats=[HumanOutputFormat(sys.stdout)] if verbose else []))
    student_cls = STUDENT_CLASSES[config.family]
    # the Distiller's generator (minibatches, sampled targets) gets its own stream, seeded with the learner's seed
    return student_cls(name, model, recorder, config.distill if config.method != "vanilla" else None, seed,
                       iteration_steps=config.iteration_steps, active=config.method == "dpd")


def eval_seed(config: ResolvedConfig, index: int) -> int:
    """The seed of learner ``index``'s evaluation env (its own, apart from its training env's)."""
    return config.learner_seed(index) + 5_000


def set_torch_threads(n: int) -> None:
    """Each training process uses ``n`` torch threads (1: no oversubscription when processes run side by side)."""
    if th.get_num_threads() != n:
        th.set_num_threads(n)
