"""How xi(s), "how much better is the peer at s", is estimated, and the gate on a phase's strength; pure numpy.

The paper's xi(s) = V_peer(s) - V_self(s) subtracts two DIFFERENT critics. Each has its own bias (an overestimating
DDPG critic, a PPO critic lagging its policy), and a difference of two biased critics can say "the peer is better"
everywhere just because the peer's critic overestimates more. The estimators (config ``xi_estimator``):

- ``two_critics`` (the paper): xi = V_peer(s) - V_self(s), each critic at its own policy;
- ``debiased``: each critic's offset b = mean over its OWN recent states of (V(s) - G_H(s)), with G_H the discounted
  return the student actually collected from s (H steps, gamma^H < 1%; see :func:`window_returns`), is subtracted
  first: xi = (V_peer - b_peer) - (V_self - b_self). A constant over-estimate cancels; what is left is the
  critics' view of the two policies' difference on the states;
- ``own_critic`` (off-policy only): xi = Q_self(s, mu_peer(s)) - Q_self(s, mu_self(s)): ONE critic judges both
  actions, so its offset cancels. It estimates the advantage, for self, of taking the peer's action once and then
  following self: by the policy improvement theorem moving mu_self(s) toward mu_peer(s) helps exactly where it is
  positive.

The gate (config ``distill_gate``): with batch-normalised weights (the default) only the RANKING of xi inside a batch
matters; a peer worse than the student on every state still gets uniform weights and is copied at full strength.
``advantage`` scales the number of distillation steps of a phase by the share of the peer's window where xi > 0:
the share of the hybrid policy of the paper's Eq. 2 (follow whichever policy is better at s) that is the peer. A
peer estimated worse everywhere moves the student not at all; better everywhere, at full strength. The number of
steps is scaled, not the loss: Adam divides a loss scale away.
"""

from __future__ import annotations

import math

import numpy as np

#: the Monte-Carlo horizon and the debiased estimator's return horizon: the tail beyond it weighs less than this
TAIL_WEIGHT = 0.01


def horizon(gamma: float, tail: float = TAIL_WEIGHT) -> int:
    """The smallest H with gamma^H < ``tail`` (gamma 0.99: 459); 1 for gamma 0."""
    if not 0 <= gamma < 1:
        raise ValueError(f"gamma must be in [0, 1), got {gamma}")
    if gamma == 0:
        return 1
    return math.floor(math.log(tail) / math.log(gamma)) + 1


def window_returns(rewards: np.ndarray, dones: np.ndarray, timeouts: np.ndarray, env_index: np.ndarray,
                   gamma: float, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """The discounted return collected from each state of a recorded window, over at most ``steps`` rewards.

    The window is as :meth:`dpd.envs.RecentStates.recent_window` gives it (oldest first, sub-envs interleaved):
    ``rewards[k]`` is the reward of the step INTO state k, ``dones[k]`` says that step ended an episode (state k is
    then the next episode's first), ``timeouts[k]`` that the end was a time limit.

    :return: (returns (N,), complete (N,) bool). A return is complete where the episode terminated within
        ``steps`` rewards or ``steps`` rewards were collected; it is incomplete where the window ends first or a
        time limit cut the episode (its value beyond the cut is unknown); incomplete returns are partial sums.
    """
    n = len(rewards)
    returns = np.zeros(n)
    complete = np.zeros(n, dtype=bool)
    decay = gamma ** steps
    for env in np.unique(env_index):
        pos = np.flatnonzero(env_index == env)  # this sub-env's states in time order
        r, d, t = rewards[pos], dones[pos], timeouts[pos]
        m = len(pos)
        tail = np.zeros(m)  # G(k): discounted sum of this episode's rewards after state k, up to the window's end
        end = np.zeros(m, dtype=np.int64)  # index where the chain from k stops (an episode end or the last state)
        ends_by_termination = np.zeros(m, dtype=bool)
        end[m - 1] = m - 1
        for k in range(m - 2, -1, -1):
            if d[k + 1]:
                tail[k] = r[k + 1]
                end[k] = k + 1
                ends_by_termination[k] = not t[k + 1]
            else:
                tail[k] = r[k + 1] + gamma * tail[k + 1]
                end[k], ends_by_termination[k] = end[k + 1], ends_by_termination[k + 1]
        idx = np.arange(m)
        available = end - idx  # rewards collected from k before the chain stops
        cut = idx + steps < end  # the same episode goes on past `steps` rewards: subtract its tail from there
        h = np.where(cut, idx + steps, 0)
        returns[pos] = np.where(cut, tail - decay * tail[h], tail)
        complete[pos] = (available >= steps) | ends_by_termination
    return returns, complete


def critic_offset(values: np.ndarray, returns: np.ndarray, complete: np.ndarray) -> tuple[float, int]:
    """A critic's offset on its own recent states: mean of (V(s) - G(s)) over the states with a complete return.

    :param values: (N,) the critic's values on the window's states, raw return units.
    :return: (offset, number of states it rests on); (0.0, 0) where no return is complete (a window shorter than
        the horizon, or a run's first steps): the estimate then falls back to the plain critic.
    """
    ok = complete & np.isfinite(values) & np.isfinite(returns)
    if not ok.any():
        return 0.0, 0
    return float(np.mean(values[ok] - returns[ok])), int(ok.sum())


def gate_strength(xi: np.ndarray) -> float:
    """``distill_gate=advantage``: the share of states where the peer is estimated better (xi > 0), in [0, 1]."""
    xi = np.asarray(xi)
    finite = xi[np.isfinite(xi)]
    return float((finite > 0).mean()) if finite.size else 0.0
