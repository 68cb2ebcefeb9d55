"""Per-task score normalisation for aggregates across tasks: (score - random) / (reference - random).

random: mean return of a uniform-random policy over 50 episodes, measured here with gymnasium 1.4 / MuJoCo 4.0
(``python studies/random_scores.py``). reference: a published 1M-step result of a tuned off-policy agent
(rl-baselines3-zoo benchmark.md, deterministic evaluation of one trained agent; Humanoid: the zoo's 2M SAC;
Hopper: the D4RL "expert" score).
Tasks not listed are normalised by the min and max final score of that task within the sweep (said in the report).
"""

from __future__ import annotations

#: env id -> (random-policy return, reference return, source of the reference)
REFERENCE_SCORES: dict[str, tuple[float, float, str]] = {
    "HalfCheetah-v5": (-283.22, 9656.0, "zoo TD3 1M"),
    "Hopper-v5": (17.93, 3234.3, "D4RL expert score"),
    "Walker2d-v5": (1.30, 4718.0, "zoo TD3 1M"),
    "Humanoid-v5": (111.40, 6232.0, "zoo SAC 2M"),
    "Swimmer-v5": (-0.62, 359.0, "zoo TD3 1M (gamma 0.9999)"),
    "InvertedPendulum-v5": (4.84, 1000.0, "maximum return"),
    "CartPole-v1": (25.08, 500.0, "maximum return"),
}
