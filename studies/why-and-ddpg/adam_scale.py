"""Does the optimiser erase the level of DPD's weights? Measured with dpd's own Distiller and objective.

    python studies/why-and-ddpg/adam_scale.py --out docs/results/why-and-ddpg/adam-scale

The question (issue 22): with ``normalize_weights=true`` (the default) the loss is a softmax of alpha*xi over the
batch, so adding a constant to every xi changes nothing; with ``normalize_weights=false`` (Eq. 11 literally) the
weights' level scales the gradient, but Adam divides by a running RMS of the gradient, so a level held long enough
is divided away. How long is "long enough", against how many distillation steps our runs take?

Set-up, per schedule (PPO ``dense``: own Adam lr 1e-5, 10 steps of 256 states per phase; DDPG ``dense``: own Adam
lr 1e-4, 50 steps of 64 states per phase, as the paper preset's 50 gradient steps per 100 env steps), the actor of
the paper preset (PPO 64-64 tanh; DDPG 64-64-64 ReLU, tanh output), a fixed random peer network, a window of 2,048
states, alpha 1, xi in units of the return std (the default ``xi_scale``): xi(s) = level + N(0, 0.5^2) per state.
"Peer better" is level +1, "peer worse" level -1: unnormalised weights differ by e^2 = 7.4x between the two.

- **step response**: two students, identical (same initialisation, same minibatches), distil at level +1 for
  ``--warm`` phases; then one switches to -1. The ratio of their update sizes (L2 norm of the actor's parameter
  change in a phase) after the switch says how much of the level change reaches the actor, and how fast Adam's
  running RMS (beta2 = 0.999: a memory of ~1,000 steps) divides it away.
- **random levels**: one student, each phase's level drawn +1 or -1 at random; after a burn-in, the mean update
  size of "worse" phases over that of "better" phases. Level changes faster than Adam's memory are kept.
- **cold start**: a fresh Adam at -1 vs a fresh Adam at +1: the first phase's update sizes (Adam's first steps are
  sign-like, so the level is erased at once).

A synthetic pair (random networks, Gaussian states) isolates the optimiser: the critics, the environment and the RL
updates in between are left out on purpose. Writes OUT/adam_scale.md and OUT/adam_scale.json.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch as th

from dpd.config import DistillConfig
from dpd.distillation import Distiller, PeerBatch


@dataclass(frozen=True)
class Schedule:
    name: str
    lr: float
    batch_size: int
    steps: int  # distillation steps per phase
    hidden: tuple[int, ...]
    activation: type[th.nn.Module]
    squash: bool  # tanh on the actor's output (SB3's DDPG/TD3 actor)
    #: distillation steps one student takes in a 1M-total-step run with the paper preset (500k env steps each)
    run_steps: int


SCHEDULES = {
    # PPO paper preset: n_steps 2048 -> 244 iterations per student, one phase of 10 steps after each
    "ppo": Schedule("ppo", 1e-5, 256, 10, (64, 64), th.nn.Tanh, False, 244 * 10),
    # DDPG paper preset: 50 gradient steps per 100 env steps, one distillation step per RL gradient step
    "ddpg": Schedule("ddpg", 1e-4, 64, 50, (64, 64, 64), th.nn.ReLU, True, 5_000 * 50),
}
OBS_DIM, ACT_DIM, WINDOW, XI_NOISE = 17, 6, 2048, 0.5
SEEDS = (0, 1, 2)  # random levels: pairs (initialisation, window, levels drawn) whose ratios are shown


def _actor(s: Schedule, seed: int) -> th.nn.Sequential:
    th.manual_seed(seed)
    layers: list[th.nn.Module] = []
    width = OBS_DIM
    for h in s.hidden:
        layers += [th.nn.Linear(width, h), s.activation()]
        width = h
    layers.append(th.nn.Linear(width, ACT_DIM))
    if s.squash:
        layers.append(th.nn.Tanh())
    return th.nn.Sequential(*layers)


class _Student:
    """The least a :class:`dpd.distillation.Distillable` needs: an actor, a critic that says 0 everywhere (xi is
    then the peer's value, i.e. the level drawn per phase), identity normalisation."""

    discrete = False

    def __init__(self, actor: th.nn.Sequential) -> None:
        self.actor = actor

    def normalize_obs(self, raw_states: np.ndarray) -> th.Tensor:
        return th.as_tensor(raw_states, dtype=th.float32)

    def policy_outputs(self, obs: th.Tensor) -> th.Tensor:
        return self.actor(obs)

    def raw_values(self, obs: th.Tensor) -> th.Tensor:
        return th.zeros(obs.shape[0])

    def actor_parameters(self) -> list[th.nn.Parameter]:
        return list(self.actor.parameters())

    def set_training_mode(self, mode: bool) -> None:
        self.actor.train(mode)

    def action_bounds(self) -> None:
        return None


class _Pair:
    """A student, its Distiller and the peer's window; :meth:`phase` runs one phase at a given level of xi and
    returns the L2 norm of the actor's parameter change."""

    def __init__(self, s: Schedule, normalize: bool, seed: int = 0) -> None:
        self.student = _Student(_actor(s, seed))
        # xi_scale none: xi is the level drawn per phase itself (the student's critic says 0); resolved for an
        # on-policy algo: the fields left unset (window, target, ...) are the dense schedule's
        config = DistillConfig(alpha=1.0, normalize_weights=normalize, lr=s.lr, batch_size=s.batch_size,
                               steps=s.steps, optimizer="own", xi_scale="none").resolve("ppo")
        self.distiller = Distiller(config, self.student, active=True, seed=seed)
        rng = np.random.default_rng(1000 + seed)
        self.states = rng.standard_normal((WINDOW, OBS_DIM)).astype(np.float32)
        with th.no_grad():
            self.peer_out = _actor(s, 10_000 + seed)(th.as_tensor(self.states)).numpy()
        self.noise = rng.standard_normal(WINDOW).astype(np.float32) * XI_NOISE  # per-state xi, fixed per window
        self.steps = s.steps

    def phase(self, level: float) -> float:
        batch = PeerBatch(self.states, self.peer_out, level + self.noise)
        before = th.cat([p.detach().flatten().clone() for p in self.student.actor_parameters()])
        self.distiller.phase(self.student, batch, steps=self.steps)
        after = th.cat([p.detach().flatten() for p in self.student.actor_parameters()])
        return float(th.linalg.vector_norm(after - before))


def step_response(s: Schedule, normalize: bool, warm: int, after: int) -> list[float]:
    """Update-size ratio (switched to level -1 / kept at +1), phase by phase after ``warm`` phases at +1."""
    kept, switched = _Pair(s, normalize), _Pair(s, normalize)
    for _ in range(warm):
        kept.phase(1.0), switched.phase(1.0)
    return [switched.phase(-1.0) / kept.phase(1.0) for _ in range(after)]


def random_levels(s: Schedule, normalize: bool, burn_in: int, phases: int, seed: int = 0) -> float:
    """Mean update size of 'peer worse' phases over that of 'peer better' phases, levels drawn at random."""
    pair, rng = _Pair(s, normalize, seed), np.random.default_rng(seed)
    sizes: dict[float, list[float]] = {1.0: [], -1.0: []}
    for i in range(burn_in + phases):
        level = float(rng.choice([-1.0, 1.0]))
        size = pair.phase(level)
        if i >= burn_in:
            sizes[level].append(size)
    if not (sizes[-1.0] and sizes[1.0]):
        raise SystemExit(f"adam_scale: {phases} phases drew only one level; measure more phases (--phases)")
    return float(np.mean(sizes[-1.0]) / np.mean(sizes[1.0]))


def cold_start(s: Schedule, normalize: bool) -> float:
    """First-phase update size of a fresh Adam at level -1 over one at +1."""
    return _Pair(s, normalize).phase(-1.0) / _Pair(s, normalize).phase(1.0)


def measure(warm: int = 100, after: int = 400, burn_in: int = 50, phases: int = 300) -> dict[str, Any]:
    out: dict[str, Any] = {"weight_ratio_unnormalised": math.exp(-2.0), "window": WINDOW, "xi_noise": XI_NOISE}
    for s in SCHEDULES.values():
        for normalize in (False, True):
            response = step_response(s, normalize, warm, after)
            deepest = int(np.argmin(response))  # Adam's momentum (beta1 0.9) passes the drop on over ~10 steps
            half = next((k for k, r in enumerate(response) if k > deepest and r >= 0.5), None)
            levels = [random_levels(s, normalize, burn_in, phases, seed) for seed in SEEDS]
            out[f"{s.name}/normalize={normalize}"] = {
                "steps_per_phase": s.steps, "lr": s.lr, "run_steps": s.run_steps, "warm_phases": warm,
                "response": [round(r, 4) for r in response],
                "deepest": response[deepest],
                "phases_to_half": half,
                "steps_to_half": None if half is None or response[deepest] >= 0.5 else (half + 1) * s.steps,
                "random_levels": levels,
                "cold_start": cold_start(s, normalize),
            }
    return out


def render(m: dict[str, Any]) -> str:
    lines = [
        "# Does Adam erase the level of DPD's weights? (`studies/why-and-ddpg/adam_scale.py`)",
        "",
        "Update size of the actor (L2 norm of its parameter change in a phase) when the peer is estimated worse",
        "everywhere (xi level -1) over when it is better everywhere (+1); alpha 1, xi in return-std units, per-state",
        f"noise sd {m['xi_noise']}. With unnormalised weights the level alone makes the loss "
        f"{1 / m['weight_ratio_unnormalised']:.1f}x smaller; a ratio of 1 means the level did not reach the actor.",
        "",
        "| schedule | weights | cold Adam, 1st phase | after a switch, deepest | steps until back at >= 0.5 "
        "| random level per phase: mean (range over 3 pairs) | distillation steps in a 1M-step run |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, r in m.items():
        if "/" not in key:
            continue
        algo, norm = key.split("/")
        if r["deepest"] >= 0.5:
            half = "never below 0.5"
        else:
            half = "not within the measured steps" if r["steps_to_half"] is None else f"{r['steps_to_half']:,}"
        levels = r["random_levels"]
        shown = f"{np.mean(levels):.2f} ({min(levels):.2f}-{max(levels):.2f})"
        lines.append(f"| {algo} ({r['steps_per_phase']} steps/phase, lr {r['lr']:g}) | "
                     f"{'normalised (default)' if norm.endswith('True') else 'unnormalised (Eq. 11)'} | "
                     f"{r['cold_start']:.2f} | {r['deepest']:.2f} | {half} | {shown} | "
                     f"{r['run_steps']:,} |")
    lines += ["", f"Reading: {m['weight_ratio_unnormalised']:.2f} = the level fully kept (the update shrinks with the "
              "weights); 1.00 = the level erased. 'Deepest' and 'steps until back' are the step response after "
              f"{next(v for k, v in m.items() if '/' in k)['warm_phases']} phases at +1.",
              "", "Steps after the switch at which the ratio was measured: "
              f"{len(next(v for k, v in m.items() if '/' in k)['response'])} phases per schedule "
              "(the full series is in adam_scale.json).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--warm", type=int, default=100, help="phases at level +1 before the switch")
    parser.add_argument("--after", type=int, default=400, help="phases measured after the switch")
    parser.add_argument("--burn-in", type=int, default=50, help="random levels: phases before measuring")
    parser.add_argument("--phases", type=int, default=300, help="random levels: phases measured")
    args = parser.parse_args(argv)
    th.set_num_threads(1)
    m = measure(args.warm, args.after, args.burn_in, args.phases)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "adam_scale.json").write_text(json.dumps(m, indent=1))
    (args.out / "adam_scale.md").write_text(render(m))
    print(render(m))


if __name__ == "__main__":
    main()
