"""The names one part of dpd writes and another reads, declared once: learners, run-folder files, log keys, and the
choices that config validation, sweeps and the CLI's help all list.

Plain strings, the Literal types of the choices and the defaults a user sees before a config exists, no imports
beyond ``typing``: the command line builds its help texts from these without loading torch, and a reader
(``dpd report``) parses exactly the keys the writer (:mod:`dpd.training.learner`) records.
"""

from __future__ import annotations

from typing import Literal, get_args

# ---------------------------------------------------------------------- learners
STUDENTS = ("student0", "student1")
VANILLA = "vanilla"

# ---------------------------------------------------------------------- choices (validation, sweeps, --help)
# Each choice is a Literal type (a config field declared with it is checked against it on construction:
# dpd.config) and the tuple of its values (what help texts and sweeps list), the tuple read from the type.
Algo = Literal["ppo", "a2c", "ddpg", "td3", "sac"]
ALGO_NAMES: tuple[Algo, ...] = get_args(Algo)
#: ``dpd``: two students that distill; ``independent``: the same pair never distilled; ``vanilla``: one learner
Method = Literal["dpd", "vanilla", "independent"]
METHODS: tuple[Method, ...] = get_args(Method)
Preset = Literal["zoo", "paper", "none"]
PRESETS: tuple[Preset, ...] = get_args(Preset)
#: ``sb3``: each learner a Stable-Baselines3 model (the reference); ``jax``: the learners of a run (or of a sweep's
#: seeds) as one JAX pack (:mod:`dpd.pack`, ``pip install 'dpd[jax]'``)
Engine = Literal["sb3", "jax"]
ENGINES: tuple[Engine, ...] = get_args(Engine)
Schedule = Literal["dense", "authors", "adaptive"]
SCHEDULES: tuple[Schedule, ...] = get_args(Schedule)
XiScale = Literal["return_std", "none"]
XI_SCALES: tuple[XiScale, ...] = get_args(XiScale)
XiEstimator = Literal["two_critics", "own_critic", "debiased"]
XI_ESTIMATORS: tuple[XiEstimator, ...] = get_args(XiEstimator)
DistillGate = Literal["none", "advantage"]
DISTILL_GATES: tuple[DistillGate, ...] = get_args(DistillGate)
DistillTarget = Literal["mean", "sample"]
DISTILL_TARGETS: tuple[DistillTarget, ...] = get_args(DistillTarget)
DistillOptimizer = Literal["own", "shared"]
DISTILL_OPTIMIZERS: tuple[DistillOptimizer, ...] = get_args(DistillOptimizer)
#: the built-in weightings (more can be registered: :func:`dpd.objective.register_weighting`)
BUILTIN_WEIGHTINGS = ("exp", "indicator", "uniform")
#: ``distill_distance``: what the distillation loss and the pair's action distance measure between the outputs
DistillDistance = Literal["mse", "clamped_mse"]
DISTILL_DISTANCES: tuple[DistillDistance, ...] = get_args(DistillDistance)

# ---------------------------------------------------------------------- defaults, stated once
#: The defaults of what a user names on the command line, in ``DPD(...)`` and in a sweep file: the config's fields
#: (:class:`dpd.config.TrainConfig`, :class:`dpd.config.DistillConfig`) take them from here, and so do the CLI's
#: options, ``DPD``'s signature and ``SweepSpec`` (here, not in dpd.config: ``dpd --help`` shows them without torch).
DEFAULT_ALGO: Algo = "ppo"
DEFAULT_METHOD: Method = "dpd"
DEFAULT_PRESET: Preset = "zoo"
DEFAULT_TOTAL_STEPS = 1_000_000
DEFAULT_SEED = 0
DEFAULT_ALPHA = 1.0
DEFAULT_WEIGHTING = "exp"
DEFAULT_SCHEDULE: Schedule = "dense"
DEFAULT_ENGINE: Engine = "sb3"

#: the variants of a sweep besides its named arms
SWEEP_VARIANTS = ("dpd", "vanilla", "independent", "uniform", "indicator")
BACKENDS = ("local", "ray")
#: ``make demo``'s task and budget (README, "Set-up"): its three runs train side by side in about 2 minutes on 2 cores
DEMO_ENV = "CartPole-v1"
DEMO_TOTAL_STEPS = 60_000

# ---------------------------------------------------------------------- the run folder
CONFIG_FILE = "config.yaml"
#: written first into every run folder dpd creates: only a folder carrying it may be replaced by --overwrite
MARKER_FILE = ".dpd-run"
SUMMARY_FILE = "summary.json"
CHECKPOINT_FILE = "checkpoint.pt"
LOCK_FILE = ".lock"
ERROR_FILE = "error.txt"
REEVALUATION_FILE = "reevaluation.json"
#: ``dpd calibrate``'s log when it runs detached (studies' runners write it into the run folder)
CALIBRATE_LOG = "calibrate.log"
ANALYSIS_DIR = "analysis"
#: what ``dpd analyze`` writes into its folder (the run's ANALYSIS_DIR by default)
ANALYSIS_FILE = "analysis.json"
ANALYSIS_FIGURE = "figure3.png"
CALIBRATION_DIR = "calibration"
#: what ``dpd calibrate`` writes into its folder (the run's CALIBRATION_DIR by default)
CALIBRATION_FILE = "calibration.json"
CALIBRATION_STATES = "calibration_states.npz"
CALIBRATION_TABLE = "calibration.md"
CALIBRATION_FIGURE = "calibration.png"
#: a learner's files: its SB3 model, SB3's VecNormalize pickle (for users' tools; dpd never unpickles it), the same
#: statistics as plain JSON (what dpd reads), its evaluations, SB3's log and the training episodes
MODEL_FILE = "model.zip"
VECNORMALIZE_PICKLE = "vecnormalize.pkl"
VECNORMALIZE_JSON = "vecnormalize.json"
EVAL_FILE = "evaluations.csv"
PROGRESS_FILE = "progress.csv"
MONITOR_FILE = "train_episodes.monitor.csv"
SNAPSHOT_DIR = "snapshots"
#: in a snapshot folder: the learner's recent-state window (states, rewards, episode ends, simulator states)
WINDOW_FILE = "window.npz"
# ---------------------------------------------------------------------- a sweep folder
SWEEP_FILE = "sweep.yaml"
RUNS_DIR = "runs"
#: written into SWEEP/runs/ when the sweep is asked to stop: a trial the pool had already queued then starts no run
STOP_FILE = ".stopping"
SWEEP_LOCK = ".sweep-lock"
# ---------------------------------------------------------------------- a report folder
REPORT_FILE = "report.md"


#: SB3's own log key of a learner's env steps (its progress.csv; ``dpd sweep``'s status reads it)
SB3_TOTAL_TIMESTEPS = "time/total_timesteps"
#: SB3's log key of the seconds a learner has trained (continued across a resume by the pack engine; ``dpd status``
#: measures a running run's speed with it)
SB3_TIME_ELAPSED = "time/time_elapsed"


class Log:
    """The keys of a learner's log rows (progress.csv, TensorBoard), written by the Learner, read by the report."""

    TOTAL_STEPS = "time/total_env_steps"
    EVAL_MEAN = "eval/mean_return"
    EVAL_STD = "eval/std_return"
    EVAL_LENGTH = "eval/mean_ep_length"
    #: the pair on the whole peer window before a phase (DPD and the independent pair alike)
    PAIR_DISTANCE = "pair/action_distance"
    PAIR_XI_MEAN = "pair/xi_mean"
    PAIR_PEER_BETTER = "pair/peer_better_frac"
    #: a phase
    PHASE_STEPS = "distill/phase_steps"
    STRENGTH = "distill/strength"
    GATE = "distill/gate"
    OFFSET_OWN = "distill/offset_own"
    OFFSET_PEER = "distill/offset_peer"
    SKIPPED_EMPTY = "distill/skipped_empty"
    SKIPPED_NONFINITE = "distill/skipped_nonfinite"
    SKIPPED_ZERO_WEIGHT = "distill/skipped_zero_weight"
    XI_SCALE = "distill/xi_scale"
    WEIGHTS = "distill/weights"
    #: prefix of the averaged step statistics (``distill/loss``, ``distill/weight_mean``, ...)
    DISTILL = "distill/"


def choices(names: tuple[str, ...]) -> str:
    """``a | b | c``: a choice list for a help text."""
    return " | ".join(names)
