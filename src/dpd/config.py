"""The config of a run: what a user asks for, what a run trains with, presets, ``--set key=value`` and validation.

Every hyperparameter of a run is named once, here, with its default stated once (the defaults a user sees before a
config exists, in ``dpd --help``, come from :mod:`dpd.names`). A config goes through two TYPES:

1. :class:`TrainConfig` (with its :class:`DistillConfig` block): what the user asked for. Fields left ``None`` mean
   "from the preset / the distillation schedule". Each field is checked against its annotation as it is set (a
   ``Literal`` field against its choices), so a typo is a one-line error before anything else runs.
2. :class:`ResolvedConfig` (with its :class:`ResolvedDistill` block) = ``config.resolve()``: the preset applied, the
   schedule's values filled, every rule validated. It has no optional field: nothing downstream falls back on a
   default, and training (trainer, learner, student factory, Distiller) refuses anything else in one line
   (:func:`require_resolved`). It is what a run folder stores (``to_dict``) and reads back (:func:`read_run_config`).

``build_algo_kwargs(config)`` then makes the SB3 constructor arguments (schedules and classes made real).

Flat names (``alpha``, ``distill_lr``, ...: ``--set``, sweep files, ``DPD(...)`` keywords, config.yaml files written
before the ``distill`` block) are aliases of the distillation fields, translated in one place
(:func:`_distill_field`) by one table (:data:`DISTILL_ALIASES`).

Validation raises :class:`dpd.errors.DPDUserError` with a one-line message that names the fix.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import math
import numbers
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Literal

import gymnasium as gym
import numpy as np
import yaml
from stable_baselines3 import A2C, DDPG, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.noise import NormalActionNoise
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.sac.policies import SACPolicy
from stable_baselines3.td3.policies import TD3Policy
from torch import nn

from dpd.envs import check_env_id, close_checked
from dpd.errors import DPDUserError

# the Literal types are read by _field_specs through the annotations, so they are imported by name
from dpd.names import (
    DEFAULT_ALGO,
    DEFAULT_ALPHA,
    DEFAULT_ENGINE,
    DEFAULT_METHOD,
    DEFAULT_PRESET,
    DEFAULT_SCHEDULE,
    DEFAULT_SEED,
    DEFAULT_TOTAL_STEPS,
    DEFAULT_WEIGHTING,
    Algo,
    DistillDistance,
    DistillGate,
    DistillOptimizer,
    DistillTarget,
    Engine,
    Method,
    Preset,
    Schedule,
    XiEstimator,
    XiScale,
)
from dpd.objective import DEFAULT_MAX_LOG_WEIGHT, weighting_names
from dpd.run_files import CONFIG_FILE, read_yaml

#: algorithm name -> (SB3 class, family). The family decides the distillation defaults.
ALGOS: dict[str, tuple[type[BaseAlgorithm], str]] = {
    "ppo": (PPO, "on_policy"),
    "a2c": (A2C, "on_policy"),
    "ddpg": (DDPG, "off_policy"),
    "td3": (TD3, "off_policy"),
    "sac": (SAC, "off_policy"),
}
POLICY_CLASSES: dict[str, type[BasePolicy]] = {
    "ppo": ActorCriticPolicy, "a2c": ActorCriticPolicy, "ddpg": TD3Policy, "td3": TD3Policy, "sac": SACPolicy,
}  # fmt: skip

#: The distillation schedules (``distill_schedule``): every field of the schedule left unset (``None`` in
#: :class:`DistillConfig`) takes its schedule's value here; these are those fields' only defaults.
#:
#: - ``dense``: paper §4.2's rates (on-policy lr 1e-5, batch 256; off-policy lr 1e-4, batch 64) with an own Adam,
#:   on-policy 10 steps after every iteration (~2.5 passes over the 1000-state window; the paper does not say),
#:   off-policy one step per RL gradient step (the authors' DDPG schedule).
#: - ``authors``: the authors' PPO code as it ran: one step of 512 states every 5 iterations, regressing the mean on an
#:   action SAMPLED from the peer, through PPO's own (shared) Adam with the loss scaled by 1/512, on the peer's last
#:   100,000 states. Off-policy it equals ``dense`` (the authors' DDPG already took one step per RL step).
#: - ``adaptive``: ``dense``, with the number of steps per phase scaled by a strength that keeps the pair's action
#:   distance within [adaptive_low, adaptive_high] x the largest (smoothed) distance it has reached
#:   (:class:`dpd.schedule.AdaptiveStrength`).
_DENSE: dict[str, dict[str, Any]] = {
    "on_policy": {"lr": 1e-5, "batch_size": 256, "steps": 10, "ratio": 1.0, "every": 1, "window": 1000,
                  "target": "mean", "optimizer": "own", "loss_coef": 1.0},
    "off_policy": {"lr": 1e-4, "batch_size": 64, "steps": 10, "ratio": 1.0, "every": 1, "window": 1000,
                   "target": "mean", "optimizer": "own", "loss_coef": 1.0},
}
DISTILL_SCHEDULES: dict[str, dict[str, dict[str, Any]]] = {
    "dense": _DENSE,
    "authors": {
        "on_policy": {**_DENSE["on_policy"], "lr": 5e-5, "batch_size": 512, "steps": 1, "every": 5,
                      "window": 100_000, "target": "sample", "optimizer": "shared", "loss_coef": 1 / 512},
        "off_policy": dict(_DENSE["off_policy"]),
    },
    "adaptive": _DENSE,
}
#: Keys an off-policy preset may carry besides SB3's arguments: Gaussian action noise (std in [-1, 1] action units).
OFF_POLICY_EXTRA_KEYS = {"noise_std"}

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}
#: bound on max_log_weight: exp(80) ~ 5.5e34 still fits a float32
MAX_LOG_WEIGHT_LIMIT = 80.0
# SB3 constructor arguments that the run itself owns.
_RESERVED_ALGO_KEYS = {"policy", "env", "seed", "device", "verbose", "tensorboard_log", "_init_setup_model"}


#: how far (as a share of total_steps) the pair's and vanilla's env steps may differ once each learner's share is
#: rounded up to whole collection chunks (README, "The same total env steps"); larger: refused
BUDGET_TOLERANCE = 0.05
#: field metadata: the value must be a positive number once resolved (checked by ResolvedConfig.validate)
POSITIVE = {"positive": True}


# ---------------------------------------------------------------------- the distillation block
@dataclass(frozen=True)
class _DistillFields:
    """The distillation fields that have one default whatever the schedule (shared by both types below)."""

    #: confidence alpha in w = exp(alpha * xi) (paper: 0.1 .. 10).
    alpha: float = DEFAULT_ALPHA
    #: ``exp`` (Eq. 11/12) | ``indicator`` (Eq. 9) | ``uniform`` (plain mutual distillation) | a registered one
    #: (:func:`dpd.objective.register_weighting`; so a string checked at resolution, not a Literal).
    weighting: str = DEFAULT_WEIGHTING
    #: xi is divided by this before alpha: ``return_std`` (the student's running std of the discounted
    #: raw return, so xi is O(1) as in the authors' reward-normalised PPO) | ``none`` (raw return units).
    xi_scale: XiScale = "return_std"
    #: how xi is estimated (:mod:`dpd.xi`): ``two_critics`` (the paper: V_peer - V_self) | ``debiased`` (each
    #: critic's offset on its own recent returns removed first) | ``own_critic`` (off-policy: Q_self(s, mu_peer(s))
    #: - Q_self(s, mu_self(s))). Declared in each type below: a user's block may leave it unset.
    #: ``none`` (the paper) | ``advantage``: a phase's steps scaled by the share of the peer's window where xi > 0,
    #: so a peer estimated worse everywhere moves the student not at all (:func:`dpd.xi.gate_strength`).
    gate: DistillGate = "none"
    #: bound on |alpha * xi|: weights stay in [exp(-c), exp(c)] (default ln 100 -> [0.01, 100]).
    max_log_weight: float = DEFAULT_MAX_LOG_WEIGHT
    #: True: loss = sum(w D) / sum(w); False: mean(w D) (Eq. 11 literally).
    normalize_weights: bool = True
    #: the distance D(s) distilled on: ``mse`` of the policies' outputs (the paper; Gaussian means unclamped) |
    #: ``clamped_mse`` (on-policy Box actions: both means clamped to the action bounds first, so two means beyond
    #: the same bound, which act alike, count as equal)
    distance: DistillDistance = "mse"
    #: ``dense`` | ``authors`` | ``adaptive``: where the schedule's fields left unset take their values
    #: (:data:`DISTILL_SCHEDULES`).
    schedule: Schedule = DEFAULT_SCHEDULE
    #: ``adaptive``: the band of the pair's action distance, as fractions of the largest smoothed distance so far:
    #: below ``adaptive_low`` the strength halves (the pair is collapsing), above ``adaptive_high`` it doubles.
    adaptive_low: float = 0.5
    adaptive_high: float = 0.8

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # each field against its annotation (frozen: set through object)
            value = _coerce(f.name, getattr(self, f.name), type(self), alias=ALIAS_OF[f.name])
            object.__setattr__(self, f.name, value)


@dataclass(frozen=True)
class DistillConfig(_DistillFields):
    """How a student distils from its peer, as the user asks for it: the paper's knobs (Eq. 11/12, §4.2) and the
    options beyond it. ``None``: the schedule's value (:data:`DISTILL_SCHEDULES`), filled by :meth:`resolve`.

    In ``--set``, sweep files and config.yaml a field is ``distill.<field>``, or its flat alias
    (:data:`DISTILL_ALIASES`: ``alpha``, ``distill_lr``, ...).

    On-policy a phase follows one rollout, so its size is a number of steps (``steps``); off-policy the RL gradient
    steps of an iteration vary (``learning_starts``, a budget's last chunk) and the paper's rule is one distillation
    step per RL gradient step, so its size is a ``ratio``. Two fields, because one field with two units would be one
    name with two meanings.
    """

    #: learning rate of the own Adam (``optimizer=own``).
    lr: float | None = None
    #: states per distillation gradient step.
    batch_size: int | None = None
    #: on-policy: distillation gradient steps per distillation phase.
    steps: int | None = None
    #: off-policy: distillation gradient steps per RL gradient step of the iteration.
    ratio: float | None = None
    #: RL iterations from one distillation phase to the next (1: after every iteration).
    every: int | None = None
    #: the peer's most recent visited states distilled on (paper §4.2: 1000; authors' PPO code: 100,000).
    window: int | None = None
    #: what the student's mean is regressed on: ``mean`` (the peer's deterministic action / logits) | ``sample``
    #: (an action sampled from the peer's policy, as the authors' PPO did; on-policy only).
    target: DistillTarget | None = None
    #: ``own`` (a separate Adam, lr ``lr``) | ``shared`` (the algorithm's own actor optimiser, its moments
    #: and learning rate, as the authors' PPO did).
    optimizer: DistillOptimizer | None = None
    #: factor on the distillation loss (authors 1/512; with an own Adam it barely matters: Adam is scale-free).
    loss_coef: float | None = None
    #: how xi is estimated; unset: ``own_critic`` for sac (its soft critics hold each student's entropy bonus,
    #: which one critic judging both actions cancels), ``two_critics`` (the paper) otherwise.
    xi_estimator: XiEstimator | None = None

    def resolve(self, algo: str) -> ResolvedDistill:
        """The schedule's values in every field left ``None`` (for ``algo``'s family), validated."""
        _check_choice("algo", algo, tuple(ALGOS))
        defaults = {**DISTILL_SCHEDULES[self.schedule][ALGOS[algo][1]], "xi_estimator": default_xi_estimator(algo)}
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        resolved = ResolvedDistill(**{k: defaults[k] if v is None else v for k, v in values.items()})
        resolved.validate(algo)
        return resolved


def default_xi_estimator(algo: str) -> XiEstimator:
    """xi's estimator where the user names none: ``own_critic`` for sac (its soft critics hold each student's
    entropy bonus, which one critic judging both actions cancels), the paper's ``two_critics`` otherwise."""
    return "own_critic" if algo == "sac" else "two_critics"


@dataclass(frozen=True, kw_only=True)
class ResolvedDistill(_DistillFields):
    """A :class:`DistillConfig` resolved for one algorithm: every field set (the schedule's values filled) and
    validated; what :class:`dpd.distillation.Distiller` takes. Made by :meth:`DistillConfig.resolve`."""

    lr: float = field(metadata=POSITIVE)
    batch_size: int = field(metadata=POSITIVE)
    steps: int = field(metadata=POSITIVE)
    ratio: float
    every: int = field(metadata=POSITIVE)
    window: int = field(metadata=POSITIVE)
    target: DistillTarget
    optimizer: DistillOptimizer
    loss_coef: float = field(metadata=POSITIVE)
    xi_estimator: XiEstimator

    def validate(self, algo: str) -> None:
        """Raise :class:`DPDUserError` on the first problem found (names as the user writes them: the aliases).
        Each field's type and choices were checked on construction; here: the registry and the rules that join
        fields or the algorithm."""
        family = ALGOS[algo][1]
        _check_choice("weighting", self.weighting, weighting_names())
        if not math.isfinite(self.alpha):
            raise DPDUserError(f"alpha must be a finite number, got {self.alpha}")
        if not (math.isfinite(self.max_log_weight) and 0 < self.max_log_weight <= MAX_LOG_WEIGHT_LIMIT):
            raise DPDUserError(f"max_log_weight must be in (0, {MAX_LOG_WEIGHT_LIMIT:g}] (weights exp(c) must fit a"
                               f" float32), got {self.max_log_weight}")
        if self.target == "sample" and family == "off_policy":
            raise DPDUserError(f"distill_target=sample needs a stochastic policy; {algo} distills its"
                               " deterministic action: use distill_target=mean")
        if self.xi_estimator == "own_critic" and family != "off_policy":
            raise DPDUserError(f"xi_estimator=own_critic needs a Q critic; {algo} has a state-value critic: use"
                               " two_critics or debiased, or an off-policy algo (ddpg, td3, sac)")
        if self.xi_estimator == "two_critics" and algo == "sac":
            raise DPDUserError("xi_estimator=two_critics with sac compares two soft critics, each holding its own"
                               " student's entropy bonus (ent_coef x future entropy), so a peer with a larger ent_coef"
                               " looks better everywhere: use own_critic (sac's default) or debiased")
        if not (0 <= self.adaptive_low < self.adaptive_high <= 1):
            raise DPDUserError("adaptive_low and adaptive_high must satisfy 0 <= low < high <= 1, got "
                               f"{self.adaptive_low} and {self.adaptive_high}")
        _check_positive(self, ALIAS_OF)
        if not (math.isfinite(self.ratio) and self.ratio >= 0):
            raise DPDUserError(f"distill_ratio must be a non-negative number, got {self.ratio}")


#: THE table of flat names: flat key (``--set alpha=0.5``, sweep arms, ``DPD(alpha=...)``, config.yaml written before
#: the ``distill`` block) -> DistillConfig field. Read by :func:`_distill_field` only (and inverted below for messages).
DISTILL_ALIASES: dict[str, str] = {
    "alpha": "alpha", "weighting": "weighting", "xi_scale": "xi_scale", "xi_estimator": "xi_estimator",
    "distill_gate": "gate", "max_log_weight": "max_log_weight", "normalize_weights": "normalize_weights",
    "distill_distance": "distance",
    "distill_schedule": "schedule", "distill_lr": "lr", "distill_batch_size": "batch_size",
    "distill_steps": "steps", "distill_ratio": "ratio", "distill_every": "every", "distill_window": "window",
    "distill_target": "target", "distill_optimizer": "optimizer", "distill_loss_coef": "loss_coef",
    "adaptive_low": "adaptive_low", "adaptive_high": "adaptive_high",
}  # fmt: skip
#: DistillConfig field -> its flat alias (the name messages use)
ALIAS_OF: dict[str, str] = {v: k for k, v in DISTILL_ALIASES.items()}


def _distill_field(key: str) -> str | None:
    """The distillation field a user's key names (``distill.<field>`` or a flat alias), or None: the one place a
    flat name is translated (``--set``, ``with_values`` and so ``from_dict``, ``DPD(...)`` and sweep files)."""
    if key.startswith("distill."):
        name = key[len("distill."):]
        return name if name in ALIAS_OF else None
    return DISTILL_ALIASES.get(key)


# ---------------------------------------------------------------------- the run
@dataclass
class _RunFields:
    """The fields of a run that have one default whatever the preset (shared by both types below)."""

    #: Gymnasium environment id, e.g. ``HalfCheetah-v5``.
    env_id: str
    #: base algorithm of each learner: ``ppo`` | ``a2c`` (on-policy) | ``ddpg`` | ``td3`` | ``sac`` (off-policy).
    algo: Algo = DEFAULT_ALGO
    #: ``dpd`` (two students, each gets total_steps / 2), ``independent`` (the same pair, never distilled) or
    #: ``vanilla`` (one SB3 learner, total_steps).
    method: Method = DEFAULT_METHOD
    #: total environment steps over all learners (the paper's fairness rule).
    total_steps: int = DEFAULT_TOTAL_STEPS
    #: base seed; student k uses seed + 10000 * k (vanilla uses seed, like student 0).
    seed: int = DEFAULT_SEED
    #: hyperparameter preset: ``zoo`` (rl-zoo3 tuned) | ``paper`` (the paper's §4.2 setting) | ``none`` (SB3 defaults).
    preset: Preset = DEFAULT_PRESET
    #: off-policy: env steps per learner per iteration, i.e. between two alternations of the students.
    iteration_steps: int = field(default=1000, metadata=POSITIVE)
    #: evaluate each learner every this many of ITS OWN env steps (and at start and end); 0: never (benchmarks).
    eval_freq: int = 10_000
    #: deterministic evaluation episodes per evaluation.
    eval_episodes: int = field(default=10, metadata=POSITIVE)
    #: arguments of the SB3 algorithm (preset values, overridden by the user's), e.g. ``{"n_steps": 1024}``.
    algo_kwargs: dict[str, Any] = field(default_factory=dict)
    #: torch device for the networks.
    device: str = "cpu"
    #: torch threads per process (1 avoids oversubscription when learners run side by side).
    torch_threads: int = field(default=1, metadata=POSITIVE)
    #: each DPD student in its own process (see DPDTrainer); False: Algorithm 1 exactly, in one process.
    parallel: bool = False
    #: ``sb3`` (each learner an SB3 model: the reference) | ``jax`` (the learners as one JAX pack, DDPG today:
    #: :mod:`dpd.training.pack_learner`; always in dpd's parallel order, ``parallel`` is not used).
    engine: Engine = DEFAULT_ENGINE
    #: also write TensorBoard event files (progress.csv is always written); needs the extra ``dpd[tensorboard]``. Off
    #: by default: a plain install trains, and what a run writes does not depend on what else is installed.
    tensorboard: bool = False
    #: write RUN/checkpoint.pt every this many TOTAL env steps (0: only on Ctrl-C / SIGTERM); see `dpd train --resume`.
    checkpoint_freq: int = 0
    #: off-policy: put the replay buffers into checkpoints (large; needed for an exact resume).
    checkpoint_replay_buffer: bool = False
    #: stop (with a checkpoint) when this many distillation batches in a row had a non-finite loss.
    max_nonfinite_batches: int = field(default=100, metadata=POSITIVE)
    #: keep a copy of each learner (model.zip, vecnormalize.pkl/.json, window.npz) in LEARNER/snapshots/<steps>/ when its own
    #: steps first reach each of these fractions of its budget (early / middle / late; `dpd analyze` reads
    #: them); [] keeps none.
    snapshots: list[float] = field(default_factory=lambda: [0.1, 0.5, 1.0])
    #: MuJoCo tasks: keep each recorded state's simulator state in the window (and so in snapshots' window.npz), which
    #: `dpd calibrate` restores; off by default (its cost: docs/performance.md, "Recording simulator states").
    record_sim_states: bool = False

    def __post_init__(self) -> None:
        """Every field checked against its annotation as it is set (``TrainConfig(normalize="no")`` is a one-line
        error here, not a run that trains with normalisation; ``algo="nope"`` names the choices)."""
        for f in dataclasses.fields(self):
            if f.name != "distill":
                setattr(self, f.name, _coerce(f.name, getattr(self, f.name), type(self)))

    def to_dict(self) -> dict[str, Any]:
        """Plain data (config.yaml): the distillation settings as a nested ``distill`` mapping."""
        return dataclasses.asdict(self)

    @property
    def family(self) -> str:
        return ALGOS[self.algo][1]

    @property
    def learner_names(self) -> list[str]:
        return ["vanilla"] if self.method == "vanilla" else ["student0", "student1"]

    @property
    def steps_per_learner(self) -> int:
        return self.total_steps // len(self.learner_names)

    def learner_seed(self, index: int) -> int:
        return self.seed + 10_000 * index


@dataclass
class TrainConfig(_RunFields):
    """Everything that defines a training run (DPD pair or vanilla baseline), as the user asks for it: fields left
    ``None`` take the preset's value in :meth:`resolve`, which returns the :class:`ResolvedConfig` a run trains with."""

    #: the type :meth:`resolve` returns (a subclass adding fields pairs itself with a resolved subclass)
    resolved_type: ClassVar[type[ResolvedConfig]]

    #: how each student distils from its peer (alpha, weighting, xi estimator, gate, schedule, ...); flat keys
    #: (``alpha``, ``distill_lr``, ...) are aliases of its fields in ``--set``, sweep files and old config.yaml files.
    distill: DistillConfig = field(default_factory=lambda: DistillConfig())
    #: environment copies per learner (default: preset, else 1).
    n_envs: int | None = None
    #: VecNormalize observations and rewards, each learner with its own statistics (default: preset, else False).
    normalize: bool | None = None
    #: with ``normalize``: also scale rewards (default: preset, else the same as ``normalize``).
    normalize_reward: bool | None = None

    def __post_init__(self) -> None:
        if isinstance(self.distill, dict):  # TrainConfig(**config.to_dict()) round-trips
            self.distill = _distill_from_dict(self.distill)
        elif isinstance(self.distill, ResolvedDistill):  # a resolved block is a complete user's block too
            self.distill = DistillConfig(**{f.name: getattr(self.distill, f.name)
                                            for f in dataclasses.fields(self.distill)})
        elif not isinstance(self.distill, DistillConfig):
            raise DPDUserError(f"distill must be a DistillConfig or a mapping, got {self.distill!r}")
        super().__post_init__()

    # ------------------------------------------------------------------ conversion
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """From config.yaml or any mapping: a nested ``distill`` block, flat aliases (``alpha``, ``distill_lr``;
        what config.yaml files held before the block existed), or both. One-line DPDUserError on a bad key or type."""
        if not isinstance(data, dict):
            raise DPDUserError("a config must be a mapping of keys to values")
        if "env_id" not in data:
            raise DPDUserError("config has no env_id")
        return cls(env_id=data["env_id"]).with_values(**{k: v for k, v in data.items() if k != "env_id"})

    def with_values(self, **values: Any) -> TrainConfig:
        """A copy with ``values`` set: TrainConfig fields, ``distill`` (a DistillConfig or a mapping),
        ``distill.<field>`` or the flat aliases of the distillation fields (``alpha=0.5``, ``distill_steps=1``),
        each checked against its type. The one entrance of user-typed and stored keys."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(k for k in values if k not in names and _distill_field(k) is None)
        if unknown:
            raise DPDUserError(f"unknown config key(s) {', '.join(unknown)}; valid keys: {', '.join(valid_keys())}")
        cfg = dataclasses.replace(self, algo_kwargs=dict(self.algo_kwargs))
        distill: dict[str, Any] = {}
        for key, value in values.items():
            if key == "distill":
                block = value if isinstance(value, DistillConfig) else _distill_from_dict(value)
                distill.update({f.name: getattr(block, f.name) for f in dataclasses.fields(block)})
            elif key in names:
                setattr(cfg, key, _coerce(key, value, type(self)))
            else:
                name = _distill_field(key)
                assert name is not None  # checked above
                distill[name] = _coerce(name, value, DistillConfig, alias=key)
        if distill:
            cfg.distill = dataclasses.replace(cfg.distill, **distill)
        return cfg

    # ------------------------------------------------------------------ resolution
    def resolve(self, check_env: bool = True) -> ResolvedConfig:
        """Apply the preset, fill the schedule's values and validate: the complete config a run trains with."""
        filled = ("distill", "n_envs", "normalize", "normalize_reward")  # the fields whose type changes
        own = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in filled}
        preset = load_preset(self.algo, self.preset, self.env_id)
        n_envs = self.n_envs if self.n_envs is not None else int(preset.get("n_envs", 1))
        preset.pop("n_envs", None)
        normalize = self.normalize if self.normalize is not None else bool(preset.get("normalize", False))
        preset.pop("normalize", None)
        reward = preset.pop("normalize_reward", None)
        normalize_reward = (self.normalize_reward if self.normalize_reward is not None
                            else bool(reward) if reward is not None else normalize)
        own_policy_kwargs = self.algo_kwargs.get("policy_kwargs") or {}
        if not isinstance(own_policy_kwargs, dict):
            raise DPDUserError(f"algo.policy_kwargs must be a mapping (e.g. {{net_arch: [64, 64]}}), got"
                               f" {own_policy_kwargs!r}")
        merged_policy_kwargs = {**preset.pop("policy_kwargs", {}), **own_policy_kwargs}
        algo_kwargs = {**preset, **self.algo_kwargs}
        if merged_policy_kwargs:
            algo_kwargs["policy_kwargs"] = merged_policy_kwargs
        own["algo_kwargs"] = algo_kwargs
        resolved = self.resolved_type(**own, distill=self.distill.resolve(self.algo), n_envs=n_envs,
                                      normalize=normalize, normalize_reward=normalize_reward)
        resolved.validate(check_env=check_env)
        return resolved


@dataclass(kw_only=True)
class ResolvedConfig(_RunFields):
    """A :class:`TrainConfig` resolved (:meth:`TrainConfig.resolve`): the preset applied, every field set, validated.
    What :class:`dpd.training.DPDTrainer`, its learners and students take, what a run folder stores and reads back."""

    distill: ResolvedDistill
    n_envs: int = field(metadata=POSITIVE)
    normalize: bool
    normalize_reward: bool

    def __post_init__(self) -> None:
        if isinstance(self.distill, dict):  # ResolvedConfig(**config.to_dict()) round-trips (a field left out or
            # None is then a one-line "distill_lr expects float, got None")
            block = _distill_from_dict(self.distill)
            self.distill = ResolvedDistill(**{f.name: getattr(block, f.name) for f in dataclasses.fields(block)})
        elif not isinstance(self.distill, ResolvedDistill):
            raise DPDUserError("distill of a ResolvedConfig must be resolved: make it with TrainConfig.resolve()")
        super().__post_init__()

    def algo_arg(self, name: str) -> Any:
        """The value the SB3 algorithm trains with for its constructor argument ``name``: the config's, else SB3's
        own default, read from its signature (never a copy of it: the JAX engine and the preflight read the same)."""
        if name in self.algo_kwargs:
            return self.algo_kwargs[name]
        return inspect.signature(ALGOS[self.algo][0].__init__).parameters[name].default  # type: ignore[misc]

    @classmethod
    def from_dict(cls, data: dict[str, Any], what: str = "the config") -> ResolvedConfig:
        """A stored resolved config (config.yaml, a checkpoint, a worker's copy), read as it was written (flat
        aliases of older files included): nothing re-resolved or filled; one line where a field is missing."""
        partial = TrainConfig.from_dict(data)
        if partial.distill.xi_estimator is None:  # a file older than the field: the algorithm's default
            partial.distill = dataclasses.replace(partial.distill, xi_estimator=default_xi_estimator(partial.algo))
        missing = [name for name in ("n_envs", "normalize", "normalize_reward") if getattr(partial, name) is None]
        missing += [f"distill.{f.name}" for f in dataclasses.fields(partial.distill)
                    if getattr(partial.distill, f.name) is None]
        if missing:
            raise DPDUserError(f"{what} is not a resolved dpd config (no {', '.join(missing)})")
        values = {f.name: getattr(partial, f.name) for f in dataclasses.fields(partial)}
        values["distill"] = ResolvedDistill(**{f.name: getattr(partial.distill, f.name)
                                               for f in dataclasses.fields(partial.distill)})
        return cls(**values)

    def resolve(self, check_env: bool = True) -> ResolvedConfig:
        """Resolved already: validated again (``check_env``: against the env as it is now) and returned as it is."""
        self.validate(check_env=check_env)
        return self

    def validate(self, check_env: bool = True) -> None:
        """Raise :class:`DPDUserError` on the first problem found (each field's type and choices were checked on
        construction; here: ranges and the rules that join fields, the env and the machine)."""
        if self.total_steps < len(self.learner_names):
            raise DPDUserError(f"total_steps must be a positive number of env steps, got {self.total_steps}")
        highest = self.seed + 10_000 * (len(self.learner_names) - 1) + 5_000  # the last student's eval seed
        if self.seed < 0 or highest > 2**32 - 1:
            raise DPDUserError(f"seed must be in [0, {2**32 - 1 - 15_000}] (student k uses seed + 10000 k), got"
                               f" {self.seed}")
        _check_device(self.device)
        if self.eval_freq < 0:
            raise DPDUserError(f"eval_freq must be >= 0 (0: no evaluation), got {self.eval_freq}")
        if self.checkpoint_freq < 0:
            raise DPDUserError(f"checkpoint_freq must be >= 0 (0: only on Ctrl-C / SIGTERM), got {self.checkpoint_freq}")
        self.distill.validate(self.algo)
        _check_positive(self)
        if not all(isinstance(f, (int, float)) and not isinstance(f, bool) and 0 < f <= 1 for f in self.snapshots):
            raise DPDUserError(f"snapshots must be a list of fractions in (0, 1], e.g. [0.1,0.5,1.0]; got {self.snapshots}")
        _validate_algo_kwargs(self.algo, self.algo_kwargs)
        if self.engine == "jax":
            from dpd.engine import check_supported

            check_supported(self)
        if check_env:
            self.check_env()
            self.check_tensorboard()
        self._check_budget()

    def _check_budget(self) -> None:
        """The same total env steps must hold: a learner trains whole collection chunks (on-policy: a rollout of
        ``n_steps x n_envs``; off-policy: ``train_freq x n_envs`` steps), so its share is rounded up to whole chunks;
        a budget where the pair's steps and vanilla's then differ by more than ``BUDGET_TOLERANCE`` of the total is
        refused (whatever this run's method: it is compared with the other)."""
        cls = ALGOS[self.algo][0]
        defaults = inspect.signature(cls.__init__).parameters  # type: ignore[misc]
        n_envs = self.n_envs
        if self.family == "on_policy":
            chunk = int(self.algo_kwargs.get("n_steps", defaults["n_steps"].default)) * n_envs
            what = f"rollouts of {chunk} steps (n_steps x n_envs)"
        else:
            freq = self.algo_kwargs.get("train_freq", defaults["train_freq"].default)
            if isinstance(freq, (list, tuple)) and len(freq) == 2:
                if freq[1] == "episode":  # episodes vary in length: no total could hold both arms to one budget
                    raise DPDUserError(
                        f"algo.train_freq {list(freq)}: {self.algo} would collect whole episodes, so a pair and vanilla"
                        " could not train the same total env steps; use a number of steps (e.g. algo.train_freq=1000"
                        " for 1000-step episodes)")
                freq = freq[0]
            if not isinstance(freq, int) or isinstance(freq, bool):
                return  # refused by SB3's own check of train_freq
            chunk = freq * n_envs
            what = f"chunks of {chunk} steps (train_freq x n_envs)"

        def trained(share: int) -> int:
            return -(-share // chunk) * chunk

        vanilla, pair = trained(self.total_steps), 2 * trained(self.total_steps // 2)
        if abs(pair - vanilla) > BUDGET_TOLERANCE * self.total_steps:
            unit = 2 * chunk
            suggest = max(unit, round(self.total_steps / unit) * unit)
            raise DPDUserError(
                f"total_steps {self.total_steps}: {self.algo} collects whole {what}, so vanilla would train {vanilla} "
                f"env steps and a pair {pair} ({pair // 2} per student), not the same total; use total_steps {suggest} "
                f"(a multiple of {unit})")

    def check_tensorboard(self) -> None:
        """tensorboard=true where TensorBoard is installed (an extra): checked where a run is about to start."""
        import importlib.util

        if self.tensorboard and importlib.util.find_spec("tensorboard") is None:
            raise DPDUserError("tensorboard=true needs TensorBoard, which is not installed: pip install 'dpd[tensorboard]',"
                               " or --set tensorboard=false")

    def check_env(self) -> None:
        """Check that the env exists and that its spaces suit the algorithm and DPD."""
        env = check_env_id(self.env_id)
        try:
            obs_space, act_space = env.observation_space, env.action_space
        finally:
            close_checked(env, self.env_id)
        if not isinstance(obs_space, gym.spaces.Box):
            raise DPDUserError(f"{self.env_id} has {type(obs_space).__name__} observations; dpd supports Box observations")
        if not isinstance(act_space, (gym.spaces.Box, gym.spaces.Discrete)):
            raise DPDUserError(
                f"{self.env_id} has a {type(act_space).__name__} action space; dpd supports Box and Discrete actions"
            )
        if obs_space.shape is None or len(obs_space.shape) == 0 or int(np.prod(obs_space.shape)) == 0:
            raise DPDUserError(f"{self.env_id} has observations of shape {obs_space.shape}; dpd needs a Box with at least"
                               " one dimension and one entry (wrap a scalar as shape (1,))")
        if isinstance(act_space, gym.spaces.Box):
            if act_space.shape is None or int(np.prod(act_space.shape)) == 0:
                raise DPDUserError(f"{self.env_id} has actions of shape {act_space.shape}; a policy needs at least one"
                                   " action dimension")
            if not (np.isfinite(act_space.low).all() and np.isfinite(act_space.high).all()):
                raise DPDUserError(f"{self.env_id} has infinite action bounds; dpd's algorithms clip or squash actions"
                                   " into the bounds: give the Box finite low and high (e.g. -1, 1)")
        if self.family == "off_policy" and not isinstance(act_space, gym.spaces.Box):
            raise DPDUserError(
                f"{self.algo} needs continuous (Box) actions but {self.env_id} has {type(act_space).__name__} actions;"
                " use --algo ppo or --algo a2c"
            )


TrainConfig.resolved_type = ResolvedConfig


def require_resolved(config: Any, who: str) -> ResolvedConfig:
    """``config`` if it is a :class:`ResolvedConfig`, else a one-line DPDUserError: training never fills in what a
    user left unset (an unresolved block would otherwise reach an optimiser as a learning rate of 0)."""
    if not isinstance(config, ResolvedConfig):
        raise DPDUserError(f"{who} takes a resolved config, got a {type(config).__name__}: pass config.resolve()")
    return config


def require_resolved_distill(config: Any, who: str) -> ResolvedDistill:
    """``config`` if it is a :class:`ResolvedDistill`, else a one-line DPDUserError (see :func:`require_resolved`)."""
    if not isinstance(config, ResolvedDistill):
        raise DPDUserError(f"{who} takes a resolved distill block, got a {type(config).__name__}: pass"
                           " DistillConfig.resolve(algo) (or TrainConfig.resolve().distill)")
    return config


def _check_positive(config: Any, alias: dict[str, str] | None = None) -> None:
    """Every field declared ``POSITIVE`` of a resolved config is a positive finite number (named by its alias)."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.metadata.get("positive") and not (math.isfinite(value) and value > 0):
            raise DPDUserError(f"{(alias or {}).get(f.name, f.name)} must be positive, got {value}")


def check_known_keys(data: dict[str, Any], cls: type, what: str) -> None:
    """Raise a one-line error naming the keys of ``data`` that are not fields of the dataclass ``cls``."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise DPDUserError(f"unknown {what} key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(names))}")


def _distill_from_dict(data: Any) -> DistillConfig:
    """A ``distill`` mapping (field names, or flat aliases) -> DistillConfig; one-line DPDUserError otherwise."""
    if not isinstance(data, dict):
        raise DPDUserError(f"distill must be a mapping of distillation settings, got {data!r}")
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = _distill_field(f"distill.{key}") or _distill_field(key)
        if name is None:
            raise DPDUserError(f"unknown distill key {key!r}; valid: {', '.join(sorted(ALIAS_OF))}")
        out[name] = _coerce(name, value, DistillConfig, alias=f"distill.{name}")
    return DistillConfig(**out)


def valid_keys() -> list[str]:
    """Every key ``--set`` and config files take: TrainConfig's fields, ``distill.<field>`` and the flat aliases."""
    top = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in ("algo_kwargs", "distill")]
    return top + list(DISTILL_ALIASES) + [f"distill.{f.name}" for f in dataclasses.fields(DistillConfig)]


# ---------------------------------------------------------------------- presets
def load_preset(algo: str, preset: str, env_id: str) -> dict[str, Any]:
    """The preset's settings for ``env_id`` (its ``default`` block when the task is not listed)."""
    if preset == "none":
        return {}
    path = resources.files("dpd") / "presets" / f"{algo}_{preset}.yaml"
    if not path.is_file():
        available = sorted(p.name.removesuffix(".yaml") for p in (resources.files("dpd") / "presets").iterdir()
                           if p.name.startswith(f"{algo}_"))
        raise DPDUserError(
            f"no {preset!r} preset for {algo} (available: {', '.join(a.split('_', 1)[1] for a in available) or 'none'}"
            "; the paper ran PPO and DDPG); use --preset zoo or --preset none"
        )
    table = _preset_table(algo, preset)
    task = env_id.rpartition(":")[2]  # module:EnvId-v0 gets EnvId-v0's preset
    return copy.deepcopy(dict(table.get(task, table.get("default", {})) or {}))


@functools.cache
def _preset_table(algo: str, preset: str) -> dict[str, Any]:
    """A preset file, parsed once per process (a sweep resolves every trial's config: parsing it each time made a
    2,000-trial grid take 10 s)."""
    path = resources.files("dpd") / "presets" / f"{algo}_{preset}.yaml"
    return yaml.safe_load(path.read_text()) or {}


# ---------------------------------------------------------------------- --set overrides
@dataclass(frozen=True)
class _FieldType:
    """What a config field takes, read from its annotation: a plain type, or the choices of a ``Literal``."""

    plain: type
    choices: tuple[str, ...] | None
    nullable: bool


@functools.cache
def _field_types(cls: type) -> dict[str, _FieldType]:
    """Each field's plain type (int, float, str, bool, dict, list) or Literal choices, and whether it may be None,
    read from the config dataclass itself (``TrainConfig`` or a subclass): a new field needs no second list."""
    import types
    import typing

    hints = typing.get_type_hints(cls)
    out: dict[str, _FieldType] = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        # ``int | None`` is a types.UnionType; ``Literal[...] | None`` evaluates to a typing.Union
        args = typing.get_args(hint) if typing.get_origin(hint) in (types.UnionType, typing.Union) else ()
        nullable = type(None) in args
        if nullable:
            hint = next(a for a in args if a is not type(None))
        if typing.get_origin(hint) is Literal:
            out[f.name] = _FieldType(str, typing.get_args(hint), nullable)
        else:
            out[f.name] = _FieldType(typing.get_origin(hint) or hint, None, nullable)
    return out


def parse_value(text: str) -> Any:
    """Parse a ``--set`` value: int, float (``3e-4`` too), bool, null, or a YAML list/dict; else the string."""
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _is_bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


def plain_numbers(value: Any) -> Any:
    """``value`` with numpy scalars made Python numbers, in lists, tuples and dicts too (what YAML can store and
    SB3's annotations name): a Python user passes ``np.int64(64)`` or ``np.float32(3e-4)`` as freely as ``64``."""
    if isinstance(value, dict):
        return {k: plain_numbers(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain_numbers(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _coerce(key: str, value: Any, cls: type | None = None, alias: str | None = None) -> Any:
    """``value`` as field ``key`` of ``cls`` takes it (an int for a float field becomes a float; a Literal field's
    value one of its choices), or a one-line DPDUserError naming ``alias`` (the name the user wrote; default
    ``key``)."""
    spec = _field_types(cls or TrainConfig)[key]
    expected = spec.plain
    if value is None and spec.nullable:
        return None
    key = alias or key
    if spec.choices is not None:
        if isinstance(value, str) and value in spec.choices:
            return value
        raise DPDUserError(f"unknown {key} {value!r}; choose one of: {', '.join(spec.choices)}")
    # numbers by their abstract type: numpy's (np.int64(3), np.float32(0.5)) are numbers too; a bool is not
    if expected is float and isinstance(value, numbers.Real) and not _is_bool(value):
        return float(value)
    if expected is int and isinstance(value, numbers.Integral) and not _is_bool(value):
        return int(value)
    if expected is int and isinstance(value, numbers.Real) and not _is_bool(value) and float(value).is_integer():
        return int(float(value))
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise DPDUserError(f"{key} expects {expected.__name__}, got {value!r}")
    return value


def apply_overrides(config: TrainConfig, assignments: list[str]) -> TrainConfig:
    """Apply ``key=value`` strings: ``alpha=0.5`` (or ``distill.alpha=0.5``), ``algo.n_steps=1024``,
    ``algo.policy_kwargs.net_arch=[64,64]``."""
    cfg = dataclasses.replace(config, algo_kwargs=dict(config.algo_kwargs))
    fields = {f.name for f in dataclasses.fields(cfg)} - {"algo_kwargs", "distill"}
    for item in assignments:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise DPDUserError(f"--set expects key=value, got {item!r}")
        value = parse_value(raw.strip())
        if key.startswith("algo."):
            path = key.split(".")[1:]
            if len(path) == 1:
                cfg.algo_kwargs[path[0]] = value
            elif len(path) == 2 and path[0] == "policy_kwargs":
                cfg.algo_kwargs["policy_kwargs"] = {**cfg.algo_kwargs.get("policy_kwargs", {}), path[1]: value}
            else:
                raise DPDUserError(f"cannot set {key!r}; use algo.<argument> or algo.policy_kwargs.<argument>")
        elif key in fields or _distill_field(key) is not None:  # distill.<field> and flat aliases: with_values
            cfg = cfg.with_values(**{key: value})
        else:
            raise DPDUserError(
                f"unknown config key {key!r}; valid keys: {', '.join(valid_keys())}"
                ", algo.<SB3 argument>, algo.policy_kwargs.<argument>"
            )
    return cfg


# ---------------------------------------------------------------------- SB3 arguments
def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise DPDUserError(f"unknown {name} {value!r}; choose one of: {', '.join(choices)}")


def _check_device(device: str) -> None:
    import torch as th

    try:
        dev = th.device(device)
    except (RuntimeError, TypeError):
        raise DPDUserError(f"device {device!r} is not a torch device; use cpu or cuda") from None
    if dev.type == "cuda" and not th.cuda.is_available():
        raise DPDUserError(f"device {device!r}: this machine has no CUDA GPU; use device=cpu")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise DPDUserError(f"device {device!r}: dpd runs on cpu or cuda")


#: ranges of SB3 arguments (checked on top of the types read from SB3's signatures): (low, high, low inclusive)
_ARG_RANGES: dict[str, tuple[float, float, bool]] = {
    "n_steps": (1, math.inf, True), "batch_size": (1, math.inf, True), "n_epochs": (1, math.inf, True),
    "learning_rate": (0, math.inf, False), "gamma": (0, 1, True), "gae_lambda": (0, 1, True),
    "clip_range": (0, math.inf, False), "ent_coef": (0, math.inf, True), "vf_coef": (0, math.inf, True),
    "max_grad_norm": (0, math.inf, False), "buffer_size": (1, math.inf, True), "learning_starts": (0, math.inf, True),
    "tau": (0, 1, False), "policy_delay": (1, math.inf, True), "target_policy_noise": (0, math.inf, True),
    "target_noise_clip": (0, math.inf, True), "train_freq": (1, math.inf, True),
}  # fmt: skip
#: arguments given as dpd's own ``lin_<x>`` strings
_SCHEDULE_KEYS = ("learning_rate", "clip_range")


_PLAIN_TYPES: dict[str, type] = {"int": int, "float": float, "bool": bool, "str": str, "None": type(None),
                                  "Optional": type(None), "tuple": tuple, "Tuple": tuple}


@functools.cache
def _arg_types(cls: type) -> dict[str, tuple[type, ...]]:
    """The plain types each argument of an SB3 constructor accepts, read from its annotations (as text: SB3's refer
    to names imported only for type checking). Arguments whose annotation names anything else are not checked."""
    import re

    out: dict[str, tuple[type, ...]] = {}
    for name, param in inspect.signature(cls.__init__).parameters.items():  # type: ignore[misc]
        text = param.annotation if isinstance(param.annotation, str) else getattr(param.annotation, "__name__", "")
        words = [w for w in re.findall(r"[A-Za-z_]+", str(text)) if w != "Union"]
        if words and all(w in _PLAIN_TYPES for w in words):
            out[name] = tuple({_PLAIN_TYPES[w] for w in words})
    return out


def _check_arg(cls: type, key: str, value: Any) -> None:
    """One SB3 argument against its annotated type and dpd's range table; a one-line DPDUserError otherwise."""
    accepted = _arg_types(cls).get(key)
    if accepted is not None and not (key in _SCHEDULE_KEYS and isinstance(value, str)):
        ok = value is None if type(None) in accepted else False
        if isinstance(value, bool):
            ok = ok or bool in accepted
        elif isinstance(value, int):
            ok = ok or int in accepted or float in accepted
        elif isinstance(value, float):
            ok = ok or float in accepted or (int in accepted and value.is_integer())
        else:
            ok = ok or any(isinstance(value, a) for a in accepted if a not in (int, float, bool))
        if isinstance(value, list) and tuple in accepted:
            ok = True  # YAML has no tuples
        if not ok:
            names = " or ".join(sorted({a.__name__ for a in accepted} - {"NoneType"})) or "None"
            raise DPDUserError(f"algo.{key} expects {names}, got {value!r}")
    bounds = _ARG_RANGES.get(key)
    if bounds is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
        low, high, inclusive = bounds
        if not math.isfinite(value) or value > high or (value < low if inclusive else value <= low):
            interval = f"{'[' if inclusive else '('}{low:g}, {high:g}]"
            raise DPDUserError(f"algo.{key} must be in {interval}, got {value!r}")


def _check_net_arch(net_arch: Any, algo: str) -> None:
    def layers(x: Any) -> bool:
        return isinstance(x, list) and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in x)

    keys = {"pi", "vf"} if ALGOS[algo][1] == "on_policy" else {"pi", "qf"}
    if layers(net_arch) or (isinstance(net_arch, dict) and set(net_arch) <= keys and all(map(layers, net_arch.values()))):
        return
    raise DPDUserError(f"algo.policy_kwargs.net_arch must be a list of layer sizes (e.g. [64,64]) or"
                       f" {{{', '.join(f'{k}: [64,64]' for k in sorted(keys))}}}, got {net_arch!r}")


def _validate_algo_kwargs(algo: str, algo_kwargs: dict[str, Any]) -> None:
    cls, family = ALGOS[algo]
    allowed = set(inspect.signature(cls.__init__).parameters) - _RESERVED_ALGO_KEYS - {"self"}
    if family == "off_policy":
        allowed |= OFF_POLICY_EXTRA_KEYS
        allowed.discard("action_noise")  # set with noise_std
    for key in algo_kwargs:
        if key not in allowed:
            raise DPDUserError(
                f"{cls.__name__} has no argument {key!r} (set via algo.{key}); valid: {', '.join(sorted(allowed))}"
            )
    for key, value in algo_kwargs.items():
        if key not in ("policy_kwargs", "noise_std"):
            _check_arg(cls, key, value)
    policy_kwargs = algo_kwargs.get("policy_kwargs", {})
    if not isinstance(policy_kwargs, dict):
        raise DPDUserError(f"algo.policy_kwargs must be a mapping, got {policy_kwargs!r}")
    if "net_arch" in policy_kwargs:
        _check_net_arch(policy_kwargs["net_arch"], algo)
    policy_allowed = set(inspect.signature(POLICY_CLASSES[algo].__init__).parameters) - {
        "self", "observation_space", "action_space", "lr_schedule"}
    for key in policy_kwargs:
        if key not in policy_allowed:
            raise DPDUserError(f"the policy has no argument {key!r}; valid: {', '.join(sorted(policy_allowed))}")
    act = policy_kwargs.get("activation_fn")
    if act is not None and act not in ACTIVATIONS:
        raise DPDUserError(f"unknown activation_fn {act!r}; choose one of: {', '.join(ACTIVATIONS)}")
    for key in ("learning_rate", "clip_range"):
        value = algo_kwargs.get(key)
        if isinstance(value, str):
            _schedule(key, value)
    noise = algo_kwargs.get("noise_std", 0.0)
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not (math.isfinite(noise) and noise >= 0):
        raise DPDUserError(f"algo.noise_std must be a non-negative number, got {noise!r}")


def _schedule(key: str, value: Any) -> Any:
    """``lin_X`` -> a schedule from X to 0 over training (SB3 passes progress_remaining 1 -> 0)."""
    if not isinstance(value, str):
        return value
    if value.startswith("lin_"):
        try:
            start = float(value[4:])
        except ValueError:
            start = math.nan
        if math.isfinite(start) and start > 0:
            return _LinearSchedule(start)
    raise DPDUserError(f"{key} must be a positive number or lin_<number>, got {value!r}")


@dataclass(frozen=True)
class _LinearSchedule:
    start: float

    def __call__(self, progress_remaining: float) -> float:
        return progress_remaining * self.start


def build_algo_kwargs(config: ResolvedConfig, action_dim: int | None = None) -> dict[str, Any]:
    """SB3 constructor arguments for ``config.algo`` (schedules, activation classes and action noise made real).

    :param action_dim: size of a Box action space (needed for ``noise_std``).
    """
    kwargs = {k: _schedule(k, v) if k in ("learning_rate", "clip_range") else v for k, v in config.algo_kwargs.items()}
    noise_std = float(kwargs.pop("noise_std", 0.0))
    if noise_std > 0:
        assert action_dim is not None, "noise_std needs the action dimension"
        kwargs["action_noise"] = NormalActionNoise(np.zeros(action_dim), noise_std * np.ones(action_dim))
    policy_kwargs = dict(kwargs.get("policy_kwargs", {}))
    if "activation_fn" in policy_kwargs:
        policy_kwargs["activation_fn"] = ACTIVATIONS[policy_kwargs["activation_fn"]]
    if policy_kwargs:
        kwargs["policy_kwargs"] = policy_kwargs
    return kwargs


def read_run_config(run: str | Path) -> ResolvedConfig:
    """The stored config of a run folder (``RUN/config.yaml``); a one-line DPDUserError if there is none."""
    path = Path(run) / CONFIG_FILE
    if not path.is_file():
        raise DPDUserError(f"{run} is not a dpd run folder (no {CONFIG_FILE})")
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise DPDUserError(f"{path} is not a dpd config file")
    return ResolvedConfig.from_dict(data, what=str(path))
