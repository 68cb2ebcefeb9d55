"""Mean return of a uniform-random policy per task (the 'random' column of dpd.experiments.scores).

    python studies/random_scores.py
"""

import gymnasium as gym
import numpy as np

import dpd.envs  # noqa: F401  (routes MuJoCo warnings away from MUJOCO_LOG.TXT)

TASKS = ["HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Humanoid-v5", "Swimmer-v5", "InvertedPendulum-v5", "CartPole-v1"]

if __name__ == "__main__":
    for env_id in TASKS:
        env = gym.make(env_id)
        env.action_space.seed(0)
        returns = []
        for episode in range(50):
            env.reset(seed=episode)
            done, total = False, 0.0
            while not done:
                _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
                total += float(reward)
                done = terminated or truncated
            returns.append(total)
        print(f"{env_id:<22} {np.mean(returns):10.2f} ± {np.std(returns):.2f}")
