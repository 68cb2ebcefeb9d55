"""A learner's evaluation during training: deterministic episodes on its own evaluation env, apart from its Student."""

from __future__ import annotations

from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from dpd.envs import make_eval_env, sync_normalization
from dpd.episodes import EvalResult, run_episodes


class Evaluator:
    """Evaluates one learner on its own evaluation env (own seed), normalisation frozen at the training env's
    current statistics; the env is built on the first evaluation (up to 5 copies run episodes side by side)."""

    def __init__(self, env_id: str, seed: int) -> None:
        self.env_id, self.seed = env_id, seed
        self.env: VecEnv | None = None

    def evaluate(self, model: BaseAlgorithm, train_env: VecEnv, n_episodes: int) -> EvalResult:
        if self.env is None:
            # up to 5 env copies: episodes run side by side, deterministic split of the episodes among copies
            self.env = make_eval_env(self.env_id, self.seed, train_env, min(n_episodes, 5))
        sync_normalization(train_env, self.env)
        return run_episodes(model, self.env, n_episodes)

    def state(self) -> dict[str, Any]:
        """The evaluation env as plain data (checkpoints: keys ``eval_env`` and ``eval_env_copies``)."""
        from dpd.state import vec_env_state

        return {"eval_env": vec_env_state(self.env) if self.env is not None else None,
                "eval_env_copies": self.env.num_envs if self.env is not None else 0}

    def load_state(self, state: dict[str, Any], train_env: VecEnv) -> None:
        from dpd.state import set_vec_env_state

        if state.get("eval_env") is not None:
            from dpd.state import check_like, vec_env_state

            copies = state["eval_env_copies"]
            if isinstance(copies, bool) or not isinstance(copies, int) or not 1 <= copies <= 5:
                raise ValueError(f"eval_env_copies is {copies!r}, not 1 to 5")
            self.env = make_eval_env(self.env_id, self.seed, train_env, copies)
            self.env.reset()  # a fresh evaluation env's state, to hold the saved one against (a learner's own env is
            check_like(vec_env_state(self.env), state["eval_env"], "eval_env")  # checked by the Learner the same way
            set_vec_env_state(self.env, state["eval_env"])

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
