"""``dpd calibrate``: is xi informative? The students' xi estimates against Monte-Carlo truth.

At each snapshot of a pair run (``config.snapshots``; a snapshot keeps each learner's model, normalisation and
recent-state window, ``window.npz``), for each student *i* distilling from its peer *j*:

1. states: ``n_states`` of the PEER's recorded window (the states *i* distils on), drawn without replacement with a
   fixed seed, each restored EXACTLY from its recorded MuJoCo state (:func:`dpd.envs.set_mujoco_state`; supported:
   every Gymnasium MuJoCo task, whose windows carry simulator states; other tasks are refused in one line);
2. truth: each policy's discounted value by rollouts from the restored state, with the critic's gamma, for
   H = :func:`dpd.xi.horizon` steps (gamma^H < 1%), ending only by termination (a time limit is not part of the
   value a critic learns). Stochastic policies (PPO, A2C): ``rollouts`` (K) rollouts per policy and state, acting
   as in training (a Gaussian sample, clipped to the action bounds), rollout k of both policies with the same noise
   (common random numbers: xi_MC's paired standard error is far smaller where the two policies are alike, as DPD
   makes them); deterministic ones (DDPG, TD3): one rollout
   (MuJoCo and the policy are deterministic: the standard error is 0). SAC acts by its deterministic action;
3. xi_MC(s) = V_MC^j(s) - V_MC^i(s) and its standard error; a state is *resolved* where |xi_MC| > 2 SE (with one
   deterministic rollout: every state but an exact tie). Where fewer
   than half the states are resolved, K is raised (to ``max_rollouts``) for that window;
4. the estimators (:mod:`dpd.xi`) on the same states: ``two_critics`` and ``debiased`` against xi_MC, and for
   off-policy algorithms ``own_critic`` against ITS truth Q_MC^i(s, mu_j(s)) - V_MC^i(s) (the peer's action first,
   then follow self; the same rollouts as V_MC^i otherwise) and against xi_MC beside it;
5. per estimator: sign agreement on the resolved states, Spearman's rho with the truth on all states, the gate value
   it gives (share of states with xi > 0) beside the true share, and how the distillation weight of the run's own
   weighting (alpha, clip, xi scale) splits between states where the peer is truly worse, truly better, or
   unresolved; per critic: its bias and Spearman's rho against its own policy's Monte-Carlo value, and its
   offset on its own window (the ``debiased`` estimator's) beside the students' true value gap.

Writes ``calibration.json`` (every number), ``calibration_states.npz`` (every state's estimates and truths),
``calibration.md`` (the tables) and ``calibration.png`` (the paper's Figure 3 with the truth drawn beside the
critics' values) into ``RUN/calibration`` (or ``out``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th

from dpd.config import ResolvedConfig
from dpd.envs import EnvSource, make_env, mujoco_state, normalize_raw, return_scale, set_mujoco_state
from dpd.errors import DPDUserError
from dpd.experiments.analyze import Snapshot, _check_run, _snapshots, load_snapshot
from dpd.internals import mujoco_observation
from dpd.names import (
    CALIBRATION_DIR,
    CALIBRATION_FIGURE,
    CALIBRATION_FILE,
    CALIBRATION_STATES,
    CALIBRATION_TABLE,
    STUDENTS,
    WINDOW_FILE,
)
from dpd.objective import dpd_weights
from dpd.run_files import atomic_write, atomic_write_text, check_output, claim_output, read_window, result_output
from dpd.students.outputs import deterministic_outputs, q_estimates
from dpd.xi import critic_offset, gate_strength, horizon, window_returns

#: what dpd calibrate writes into its folder
OUTPUT_FILES = (CALIBRATION_FILE, CALIBRATION_STATES, CALIBRATION_TABLE, CALIBRATION_FIGURE)
#: what dpd calibrate writes into its --out (the one overwrite rule: dpd.run_files.check_output)
OUTPUT = result_output("calibrate", OUTPUT_FILES)

#: rollouts stepped side by side (one batched forward pass per policy and step)
ROLLOUT_BATCH = 512
#: a window needs at least this share of resolved states before K stops growing
MIN_RESOLVED_SHARE = 0.5


# ---------------------------------------------------------------------- a snapshot's policy and critic
@dataclass
class Actor:
    """A snapshot as it acts and judges: raw states in, env actions / raw-unit values out."""

    snapshot: Snapshot
    #: Gaussian sampling as in training (PPO, A2C); False: the deterministic action (DDPG, TD3, SAC)
    stochastic: bool
    window: dict[str, np.ndarray]

    @property
    def policy(self) -> Any:
        return self.snapshot.model.policy

    def obs(self, raw: np.ndarray) -> th.Tensor:
        return th.as_tensor(normalize_raw(self.snapshot.normalizer, raw), device=self.snapshot.model.device)

    def scaled_actions(self, raw: np.ndarray) -> np.ndarray:
        """(B, A) deterministic actions in the policy's own units (Gaussian means; [-1, 1] for DDPG/TD3/SAC)."""
        with th.no_grad():
            return deterministic_outputs(self.policy, self.obs(raw)).cpu().numpy().astype(np.float64)

    def to_env(self, scaled: np.ndarray) -> np.ndarray:
        """Policy units -> env actions, as SB3 does before ``env.step`` (clip, or unscale from [-1, 1])."""
        space = self.snapshot.model.action_space
        assert isinstance(space, gym.spaces.Box)
        if getattr(self.policy, "squash_output", False):
            scaled = self.policy.unscale_action(scaled)
        return np.clip(scaled, space.low, space.high)

    def act(self, raw: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """(B, A) env actions: a Gaussian sample around the mean, ``mean + std * noise`` with ``noise`` (B, A)
        standard normal (stochastic), or the deterministic action (``noise`` ignored)."""
        mean = self.scaled_actions(raw)
        if self.stochastic:
            std = self.policy.log_std.exp().detach().cpu().numpy().astype(np.float64)
            mean = mean + std * noise
        return self.to_env(mean)

    def values(self, raw: np.ndarray) -> np.ndarray:
        """(B,) the critic at the own policy (V(s); Q(s, mu(s)) off-policy), raw return units."""
        return self.snapshot.values(raw)

    def q_values(self, raw: np.ndarray, scaled_actions: np.ndarray) -> np.ndarray:
        """(B,) this critic's Q(s, a) for actions in policy units, raw return units (off-policy only)."""
        actions = th.as_tensor(scaled_actions, dtype=th.float32, device=self.snapshot.model.device)
        q = q_estimates(self.policy, self.obs(raw), actions).cpu().numpy().astype(np.float64)
        return q * return_scale(self.snapshot.normalizer)

    def offset(self, gamma: float, steps: int) -> tuple[float, int]:
        """The ``debiased`` estimator's offset: this critic on its OWN window against the returns collected there."""
        w = self.window
        returns, complete = window_returns(w["rewards"], w["dones"], w["timeouts"], w["env_index"], gamma, steps)
        return critic_offset(self.values(w["states"]), returns, complete)


# ---------------------------------------------------------------------- Monte-Carlo rollouts
@dataclass
class Rollout:
    """One rollout to run: from ``start`` (an index into the sim states), acting by ``actor``, the first action
    ``first`` (env units) when given. ``noise``: the seed of its action noise, one standard normal (A,) per step;
    two rollouts with the same one draw the same noise (common random numbers: the two policies' returns from a state
    are then compared under the same luck, and their difference has far less variance when the policies are alike)."""

    start: int
    actor: int
    first: np.ndarray | None = None
    noise: int = 0


Act = Callable[[np.ndarray, np.ndarray], np.ndarray]


def rollout_returns(env_id: str, sim_states: np.ndarray, actors: list[Act], rollouts: list[Rollout], gamma: float,
                    steps: int, batch: int = ROLLOUT_BATCH, seed: int = 0) -> np.ndarray:
    """(len(rollouts),) discounted returns of ``steps`` steps from restored MuJoCo states (ending early only by
    termination; no time limit). ``actors[k](raw_obs (B, obs), noise (B, A)) -> env actions (B, A)``; each rollout's
    noise is drawn from a generator on ``(seed, rollout.noise)``; rollouts run ``batch`` at a time in lockstep, one
    call per actor and step."""
    out = np.zeros(len(rollouts))
    envs: list[Any] = []
    try:
        for lo in range(0, len(rollouts), batch):
            chunk = rollouts[lo: lo + batch]
            while len(envs) < len(chunk):
                envs.append(make_env(env_id).unwrapped)
                envs[-1].reset(seed=0)
            obs = []
            for env, r in zip(envs, chunk, strict=False):
                set_mujoco_state(env, sim_states[r.start])
                obs.append(np.asarray(mujoco_observation(env), dtype=np.float64))
            raw = np.stack(obs)
            alive = np.ones(len(chunk), dtype=bool)
            total = np.zeros(len(chunk))
            owner = np.array([r.actor for r in chunk])
            shape = envs[0].action_space.shape
            noise = np.stack([np.random.default_rng([seed, r.noise]).standard_normal((steps, *shape)) for r in chunk])
            for t in range(steps):
                actions = np.zeros((len(chunk), *shape))
                for k, act in enumerate(actors):
                    mask = alive & (owner == k)
                    if mask.any():
                        actions[mask] = act(raw[mask], noise[mask, t])
                if t == 0:
                    for n, r in enumerate(chunk):
                        if r.first is not None:
                            actions[n] = r.first
                for m in np.flatnonzero(alive):
                    n = int(m)
                    o, reward, terminated, _, _ = envs[n].step(actions[n])
                    total[n] += gamma ** t * float(reward)
                    raw[n] = o
                    if terminated:
                        alive[n] = False
                if not alive.any():
                    break
            out[lo: lo + len(chunk)] = total
    finally:
        for env in envs:
            env.close()
    return out


# ---------------------------------------------------------------------- statistics
def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (``scipy.stats.spearmanr``: average ranks for ties) over the finite pairs; NaN below 3
    points or for a constant input."""
    from scipy.stats import spearmanr

    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return math.nan
    return float(spearmanr(a[ok], b[ok]).statistic)


def sign_agreement(estimate: np.ndarray, truth: np.ndarray, resolved: np.ndarray) -> tuple[float, int]:
    """(share of the resolved states where ``estimate`` and ``truth`` have the same sign, number of them)."""
    n = int(resolved.sum())
    if n == 0:
        return math.nan, 0
    return float(np.mean(np.sign(estimate[resolved]) == np.sign(truth[resolved]))), n


def weight_split(xi_hat: np.ndarray, truth: np.ndarray, resolved: np.ndarray, config: ResolvedConfig,
                 scale: float) -> dict[str, float]:
    """How the run's distillation weights (its weighting, alpha, clip, xi scale) on these states split between
    states where the peer is truly worse / truly better / unresolved (shares of the total weight)."""
    w, _ = dpd_weights(th.as_tensor(xi_hat / scale), config.distill.alpha, config.distill.weighting,
                       config.distill.max_log_weight)
    weights = w.numpy().astype(np.float64)
    total = weights.sum()
    if not total > 0:
        return {"on_truly_worse": math.nan, "on_truly_better": math.nan, "on_unresolved": math.nan}
    worse, better = resolved & (truth < 0), resolved & (truth > 0)
    return {"on_truly_worse": float(weights[worse].sum() / total),
            "on_truly_better": float(weights[better].sum() / total),
            "on_unresolved": float(weights[~resolved].sum() / total)}


def estimator_row(xi_hat: np.ndarray, truth: np.ndarray, resolved: np.ndarray, config: ResolvedConfig,
                  scale: float) -> dict[str, Any]:
    agreement, n = sign_agreement(xi_hat, truth, resolved)
    return {"sign_agreement": agreement, "resolved": n, "spearman": spearman(xi_hat, truth),
            "mean": float(np.mean(xi_hat)), "gate": gate_strength(xi_hat),
            "weight": weight_split(xi_hat, truth, resolved, config, scale)}


# ---------------------------------------------------------------------- one window
@dataclass(frozen=True)
class WindowShape:
    """What a window.npz of this run may hold: rows (the run's ``distill_window``), the env's observation shape and
    MuJoCo state width (None: not a MuJoCo task), the run's ``n_envs``."""

    max_rows: int
    obs_shape: tuple[int, ...]
    sim_width: int | None
    n_envs: int


def _load_window(folder: Path, shape: WindowShape) -> dict[str, np.ndarray]:
    path = folder / WINDOW_FILE
    if not path.is_file():
        raise DPDUserError(f"{folder} has no {WINDOW_FILE}: the run was trained by a dpd that did not keep windows in"
                           " its snapshots; train it again with this version")
    if shape.sim_width is not None and not _holds_sim_states(path):
        raise DPDUserError(f"{path} holds no simulator states (the run was trained with record_sim_states=false, the"
                           " default) and dpd calibrate restores them: rerun with --set record_sim_states=true")
    return read_window(path, shape.max_rows, shape.obs_shape, shape.sim_width, shape.n_envs)


def _holds_sim_states(path: Path) -> bool:
    """Whether a window.npz names a ``sim_states`` array (its zip directory read, no array); an unreadable file
    answers True, so that :func:`read_window` says what is wrong with it."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return "sim_states.npy" in archive.namelist()
    except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError):
        return True


def calibrate_direction(env_id: str, config: ResolvedConfig, me: Actor, peer: Actor, names: tuple[str, str],
                        n_states: int, rollouts: int, max_rollouts: int, seed: int,
                        log: Callable[[str], None]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Student ``me`` distilling from ``peer``, on ``n_states`` states of the peer's window."""
    window = peer.window
    if "sim_states" not in window:
        raise DPDUserError(f"{env_id}: the window holds no simulator states; dpd calibrate supports MuJoCo tasks"
                           " (their states can be restored exactly), e.g. HalfCheetah-v5, Walker2d-v5")
    gamma = float(me.window["gamma"])
    steps = horizon(gamma)
    rng = np.random.default_rng(seed)
    n = min(n_states, len(window["states"]))
    pick = np.sort(rng.choice(len(window["states"]), size=n, replace=False))
    sim, raw = window["sim_states"][pick], window["states"][pick].astype(np.float64)
    stochastic = me.stochastic
    actors: list[Act] = [me.act, peer.act]

    def run(first_k: int, extra: int) -> tuple[np.ndarray, np.ndarray]:
        # rollout k from state s draws the same noise for both policies (common random numbers, paired SE)
        plan = [Rollout(s, a, noise=s * max_rollouts + k) for a in (0, 1) for s in range(n)
                for k in range(first_k, first_k + extra)]
        g = rollout_returns(env_id, sim, actors, plan, gamma, steps, seed=seed + 1)
        g = g.reshape(2, n, extra)
        return g[0], g[1]

    k = rollouts if stochastic else 1
    mine, theirs = run(0, k)
    truth, se = _truth(mine, theirs)
    resolved = np.abs(truth) > 2 * se  # deterministic rollouts: SE 0, every state but exact ties
    while stochastic and resolved.mean() < MIN_RESOLVED_SHARE and mine.shape[1] < max_rollouts:
        more = min(max_rollouts, 4 * mine.shape[1]) - mine.shape[1]
        log(f"  {names[0]} <- {names[1]}: {resolved.sum()}/{n} resolved at K={mine.shape[1]}; K raised to "
            f"{mine.shape[1] + more}")
        m2, t2 = run(mine.shape[1], more)
        mine, theirs = np.concatenate([mine, m2], axis=1), np.concatenate([theirs, t2], axis=1)
        truth, se = _truth(mine, theirs)
        resolved = np.abs(truth) > 2 * se
    v_me_mc, v_peer_mc = mine.mean(axis=1), theirs.mean(axis=1)

    v_me, v_peer = me.values(raw), peer.values(raw)
    off_me, n_me = me.offset(gamma, steps)
    off_peer, n_peer = peer.offset(gamma, steps)
    scale = float(me.window["return_std"]) if config.distill.xi_scale == "return_std" else 1.0
    estimates = {"two_critics": v_peer - v_me, "debiased": (v_peer - off_peer) - (v_me - off_me)}
    row: dict[str, Any] = {
        "student": names[0], "peer": names[1], "states": n, "rollouts": int(mine.shape[1]), "horizon": steps,
        "gamma": gamma, "resolved": int(resolved.sum()),
        "true_gap": float(truth.mean()), "true_peer_better_share": float(np.mean(truth[resolved] > 0))
        if resolved.any() else math.nan,
        "critic": {names[0]: _critic_row(v_me, v_me_mc, off_me, n_me),
                   names[1]: _critic_row(v_peer, v_peer_mc, off_peer, n_peer)},
        "estimators": {name: estimator_row(x, truth, resolved, config, scale) for name, x in estimates.items()},
    }
    arrays = {"v_self": v_me, "v_peer": v_peer, "v_self_mc": v_me_mc, "v_peer_mc": v_peer_mc, "xi_mc": truth,
              "xi_mc_se": se, "resolved": resolved, **{f"xi_{k}": v for k, v in estimates.items()}}
    if config.family == "off_policy":  # one critic judges both actions: Q_i(s, mu_j(s)) - Q_i(s, mu_i(s))
        peer_scaled = peer.scaled_actions(raw)
        xi_own = me.q_values(raw, peer_scaled) - me.q_values(raw, me.scaled_actions(raw))
        plan = [Rollout(s, 0, first=me.to_env(peer_scaled[s: s + 1])[0]) for s in range(n)]
        q_mc = rollout_returns(env_id, sim, actors, plan, gamma, steps)
        own_truth = q_mc - v_me_mc
        own = estimator_row(xi_own, own_truth, own_truth != 0, config, scale)
        own["sign_agreement_vs_xi_mc"], _ = sign_agreement(xi_own, truth, resolved)
        own["spearman_vs_xi_mc"] = spearman(xi_own, truth)
        own["true_gate"] = float(np.mean(own_truth > 0))
        row["estimators"]["own_critic"] = own
        arrays.update(xi_own_critic=xi_own, own_critic_truth=own_truth)
    return row, arrays


def _truth(mine: np.ndarray, theirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """xi_MC = mean(peer) - mean(self) per state and its standard error (0 for one rollout). Rollout k of both
    policies shares its noise (common random numbers), so the SE is the paired one: std(peer_k - self_k) / sqrt(K)."""
    k = mine.shape[1]
    diff = theirs - mine
    truth = diff.mean(axis=1)
    if k < 2:
        return truth, np.zeros_like(truth)
    return truth, diff.std(axis=1, ddof=1) / np.sqrt(k)


def _critic_row(estimate: np.ndarray, mc: np.ndarray, offset: float, offset_states: int) -> dict[str, Any]:
    return {"bias": float(np.mean(estimate - mc)), "spearman": spearman(estimate, mc),
            "mean_estimate": float(np.mean(estimate)), "mean_mc": float(np.mean(mc)),
            "window_offset": offset, "window_offset_states": offset_states}


# ---------------------------------------------------------------------- a run
def calibrate(run: str | Path, out: str | Path | None = None, n_states: int = 200, rollouts: int = 16,
              max_rollouts: int = 64, snapshot: int | None = None, seed: int = 0,
              log: Callable[[str], None] | None = None, env: EnvSource | None = None) -> dict[str, Any]:
    """Calibrate xi at every snapshot of a finished pair run (or the one of ``snapshot`` student steps)."""
    say = log or (lambda _m: None)
    run = Path(run)
    if n_states < 3:
        raise DPDUserError(f"--states must be at least 3 (Spearman's rho needs 3 points), got {n_states}")
    if not 1 <= rollouts <= max_rollouts:
        raise DPDUserError(f"need 1 <= --rollouts <= --max-rollouts, got {rollouts} and {max_rollouts}")
    if seed < 0:
        raise DPDUserError(f"--seed must be >= 0, got {seed}")
    folder = Path(out) if out is not None else run / CALIBRATION_DIR
    if out is not None:  # a folder the user named: never replace a file of theirs there
        check_output(folder, OUTPUT)
    elif folder.exists() and not folder.is_dir():
        raise DPDUserError(f"{folder} exists and is not a folder; remove it or choose --out")
    config = _check_run(run, "dpd", "dpd calibrate")
    from dpd.loading import env_source

    env_id, trust = env_source(config, env)
    action_space, obs_shape, sim_width = _spaces(env_id, trust)
    if not isinstance(action_space, gym.spaces.Box):
        raise DPDUserError(f"{config.env_id} has discrete actions; dpd calibrate supports MuJoCo tasks")
    if sim_width is None:
        raise DPDUserError(f"{config.env_id} is not a MuJoCo task: its states cannot be restored exactly; dpd"
                           " calibrate supports MuJoCo tasks, e.g. HalfCheetah-v5, Walker2d-v5")
    window_shape = WindowShape(config.distill.window, obs_shape, sim_width, config.n_envs)
    pair = _snapshots(run, config)
    steps_list = [int(p.name) for p in pair[STUDENTS[0]]]
    chosen = range(len(steps_list))
    if snapshot is not None:
        if snapshot not in steps_list:
            raise DPDUserError(f"{run} has no snapshot at {snapshot} student steps; it has: "
                               f"{', '.join(map(str, steps_list))}")
        chosen = range(steps_list.index(snapshot), steps_list.index(snapshot) + 1)
    stochastic = config.family == "on_policy"
    names = STUDENTS
    rows: list[dict[str, Any]] = []
    arrays: dict[str, np.ndarray] = {}
    for k in chosen:
        actors = []
        for name in names:
            snap_dir = pair[name][k]
            window = _load_window(snap_dir, window_shape)  # validated before the model is loaded
            if len(window["states"]) < n_states:
                raise DPDUserError(f"{snap_dir / WINDOW_FILE} holds {len(window['states'])} recorded states, fewer"
                                   f" than --states {n_states}; pass --states {max(3, len(window['states']))} or"
                                   " fewer" if len(window["states"]) >= 3 else
                                   f"{snap_dir / WINDOW_FILE} holds {len(window['states'])} recorded states; dpd"
                                   " calibrate needs at least 3 (the run folder was edited or damaged)")
            actors.append(Actor(load_snapshot(config, snap_dir, env), stochastic, window))
        for i, j in ((0, 1), (1, 0)):
            say(f"snapshot {steps_list[k]:,} steps: {names[i]} <- {names[j]}")
            row, per_state = calibrate_direction(
                env_id, config, actors[i], actors[j], (names[i], names[j]), n_states, rollouts,
                max_rollouts, seed + 1000 * k + i, say)
            row.update(snapshot_steps=steps_list[k], total_env_steps=2 * steps_list[k])
            rows.append(row)
            arrays.update({f"s{steps_list[k]}_{names[i]}_{key}": v for key, v in per_state.items()})
    result = {"run": str(run), "env_id": config.env_id, "algo": config.algo, "method": config.method,
              "alpha": config.distill.alpha, "weighting": config.distill.weighting, "xi_scale": config.distill.xi_scale,
              "settings": {"states": n_states, "rollouts": rollouts, "max_rollouts": max_rollouts, "seed": seed,
                           "stochastic_rollouts": stochastic},
              "windows": rows, "pooled": pooled(rows)}
    if out is not None:
        claim_output(folder, OUTPUT)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / CALIBRATION_STATES, lambda fh: np.savez(fh, **arrays), binary=True)  # type: ignore[arg-type]
    plot_calibration(result, arrays, folder / CALIBRATION_FIGURE)
    atomic_write_text(folder / CALIBRATION_TABLE, markdown(result))
    atomic_write_text(folder / CALIBRATION_FILE, json.dumps(result, indent=1, default=_plain))
    result["files"] = [str(folder / f) for f in OUTPUT_FILES]
    return result


def _spaces(env_id: str, trust: bool) -> tuple[gym.Space, tuple[int, ...], int | None]:
    """The env's action space, observation shape and MuJoCo state width (None: not a MuJoCo task)."""
    env = make_env(env_id, trust)
    try:
        env.reset(seed=0)
        sim = mujoco_state(env)
        return env.action_space, tuple(env.observation_space.shape or ()), None if sim is None else len(sim)
    finally:
        env.close()


def _plain(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"not JSON: {type(x).__name__}")


def pooled(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per estimator: sign agreement pooled over every window's resolved states (each state counts once), the mean
    Spearman's rho and the mean weight on truly-worse states over windows."""
    out: dict[str, Any] = {}
    names = sorted({e for r in rows for e in r["estimators"]})
    for name in names:
        found = [r["estimators"][name] for r in rows if name in r["estimators"]]
        n = sum(e["resolved"] for e in found)
        agree = sum(e["sign_agreement"] * e["resolved"] for e in found if e["resolved"])
        out[name] = {"sign_agreement": agree / n if n else math.nan, "resolved": n,
                     "states": sum(r["states"] for r in rows if name in r["estimators"]),
                     "spearman": _nanmean([e["spearman"] for e in found]),
                     "weight_on_truly_worse": _nanmean([e["weight"]["on_truly_worse"] for e in found]),
                     "windows": len(found)}
    return out


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


# ---------------------------------------------------------------------- reports
def _f(x: float, digits: int = 2) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def markdown(result: dict[str, Any]) -> str:
    """The calibration's tables: per window (critics, then estimators) and pooled."""
    lines = [f"# Calibration of xi: {result['algo'].upper()} on {result['env_id']} ({result['run']})", "",
             f"{result['settings']['states']} states per window from the peer's recorded window; truth by "
             f"{'stochastic rollouts (K per policy and state)' if result['settings']['stochastic_rollouts'] else 'one deterministic rollout'}"  # noqa: E501
             f", horizon {result['windows'][0]['horizon'] if result['windows'] else '?'} steps. A state is resolved"
             " where |xi_MC| > 2 SE.", "",
             "## Critics (on the peer's states) and their offsets on their own windows", "",
             "| snapshot (student steps) | student <- peer | K | resolved | true gap (mean xi_MC) | critic | bias |"
             " rho vs MC | offset on own window |", "|---|---|---|---|---|---|---|---|---|"]
    for r in result["windows"]:
        for name, c in r["critic"].items():
            lines.append(f"| {r['snapshot_steps']:,} | {r['student']} <- {r['peer']} | {r['rollouts']} | "
                         f"{r['resolved']}/{r['states']} | {_f(r['true_gap'], 1)} | {name} | {_f(c['bias'], 1)} | "
                         f"{_f(c['spearman'])} | {_f(c['window_offset'], 1)} ({c['window_offset_states']} states) |")
    lines += ["", "## Estimators of xi", "",
              "| snapshot | student <- peer | estimator | sign agreement | rho | gate (share xi > 0) | true share |"
              " weight on truly worse / better / unresolved |", "|---|---|---|---|---|---|---|---|"]
    for r in result["windows"]:
        for name, e in r["estimators"].items():
            w = e["weight"]
            true_share = e.get("true_gate", r["true_peer_better_share"])
            lines.append(f"| {r['snapshot_steps']:,} | {r['student']} <- {r['peer']} | {name} | "
                         f"{_f(e['sign_agreement'])} ({e['resolved']}) | {_f(e['spearman'])} | {_f(e['gate'])} | "
                         f"{_f(true_share)} | {_f(w['on_truly_worse'])} / {_f(w['on_truly_better'])} / "
                         f"{_f(w['on_unresolved'])} |")
    lines += ["", "## Pooled over the windows", "",
              "| estimator | sign agreement | resolved states | mean rho | mean weight on truly worse |",
              "|---|---|---|---|---|"]
    for name, p in result["pooled"].items():
        lines.append(f"| {name} | {_f(p['sign_agreement'], 3)} | {p['resolved']}/{p['states']} | {_f(p['spearman'])} |"
                     f" {_f(p['weight_on_truly_worse'])} |")
    if "own_critic" in result["pooled"]:
        lines += ["", "own_critic is judged against its own truth, Q_MC^self(s, mu_peer(s)) - V_MC^self(s)."]
    return "\n".join(lines) + "\n"


def plot_calibration(result: dict[str, Any], arrays: dict[str, np.ndarray], path: Path, shown: int = 10) -> None:
    """Top: the two critics' values on ``shown`` states beside their Monte-Carlo truth (the paper's Figure 3,
    truth added), one column per snapshot, student0's distillation states. Bottom: every estimator's xi against
    the true xi on all states of both directions (points in the grey quadrants have the wrong sign)."""
    from dpd.figures import pyplot

    plt = pyplot()

    snaps = sorted({r["snapshot_steps"] for r in result["windows"]})
    fig, axes = plt.subplots(2, len(snaps), figsize=(4.4 * len(snaps), 7.2), squeeze=False)
    colors = {"two_critics": "tab:blue", "debiased": "tab:green", "own_critic": "tab:purple"}
    for col, steps in enumerate(snaps):
        top, bottom = axes[0][col], axes[1][col]
        key = f"s{steps}_student0_"
        if key + "v_self" in arrays:
            xs = np.arange(min(shown, len(arrays[key + "v_self"])))
            for label, est, mc, marker, color in ((STUDENTS[0], "v_self", "v_self_mc", "o", "tab:blue"),
                                                  (STUDENTS[1], "v_peer", "v_peer_mc", "s", "tab:orange")):
                top.plot(xs, arrays[key + est][xs], marker=marker, color=color, label=f"{label} critic")
                top.plot(xs, arrays[key + mc][xs], marker=marker, color=color, linestyle="--", mfc="none",
                         label=f"{label} Monte-Carlo")
        top.set_title(f"{2 * steps:,} total env steps")
        top.set_xlabel("state index (student1's window)")
        top.set_ylabel("value (raw discounted return)" if col == 0 else "")
        top.legend(fontsize=7)
        for student in STUDENTS:
            base = f"s{steps}_{student}_"
            if base + "xi_mc" not in arrays:
                continue
            truth = arrays[base + "xi_mc"]
            for name, color in colors.items():
                if base + f"xi_{name}" not in arrays:
                    continue
                target = arrays[base + "own_critic_truth"] if name == "own_critic" else truth
                bottom.scatter(target, arrays[base + f"xi_{name}"], s=6, alpha=0.45, color=color,
                               label=name if student == STUDENTS[0] else None)
        (x0, x1), (y0, y1) = bottom.get_xlim(), bottom.get_ylim()
        bottom.axhline(0, color="k", linewidth=0.6)
        bottom.axvline(0, color="k", linewidth=0.6)
        # the quadrants where the estimate's sign is wrong
        bottom.fill_between([min(x0, 0), 0], 0, max(y1, 0), color="0.9", zorder=-1)
        bottom.fill_between([0, max(x1, 0)], min(y0, 0), 0, color="0.9", zorder=-1)
        bottom.set_xlim(x0, x1)
        bottom.set_ylim(y0, y1)
        bottom.set_xlabel("true xi (Monte-Carlo)")
        bottom.set_ylabel("estimated xi" if col == 0 else "")
        bottom.legend(fontsize=7, markerscale=2)
    fig.suptitle(f"{result['algo'].upper()} on {result['env_id']}: critics and xi against Monte-Carlo truth")
    fig.tight_layout()
    atomic_write(path, lambda fh: fig.savefig(fh, dpi=110, format="png"), binary=True)
    plt.close(fig)


__all__ = ["Actor", "Rollout", "calibrate", "rollout_returns", "sign_agreement", "spearman"]
