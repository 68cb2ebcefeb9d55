"""A report's figures: learning curves per task, and each arm's return over the pair's action distance."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from dpd.experiments.report.runs import INDEPENDENT, Run, arm_order
from dpd.experiments.report.statistics import bootstrap_ci, stream
from dpd.names import STUDENTS, VANILLA
from dpd.run_files import atomic_write


def plot_curves(runs: list[Run], env_id: str, algo: str, path: Path) -> None:
    from dpd.figures import pyplot

    plt = pyplot()

    lines: dict[str, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
    for r in runs:
        if r.status != "finished" or r.env_id != env_id or r.algo != algo:
            continue
        for learner, curve in r.curves.items():
            label = VANILLA if learner == VANILLA else f"{r.variant} {learner}"
            lines[label].append(curve)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label in sorted(lines):
        curves = lines[label]
        grid, ys = _on_grid(curves)
        mean = np.nanmean(ys, axis=0)
        rng = stream(algo, "curve", env_id, label)
        lo_hi = np.array([bootstrap_ci(ys[:, j], rng) for j in range(len(grid))])
        ax.plot(grid, mean, label=f"{label} (n={len(curves)})", linestyle="-" if label == "vanilla" else "--")
        ax.fill_between(grid, lo_hi[:, 0], lo_hi[:, 1], alpha=0.2)
    _finish(fig, ax, path, "total env steps (DPD: both students' steps)", "deterministic evaluation return",
            f"{env_id} · {algo} · mean and 95% bootstrap CI over seeds")


def _on_grid(curves: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Curves (x, y) on the union of their x: (grid (G,), values (n_curves, G), NaN outside each curve's range)."""
    grid = np.unique(np.concatenate([x for x, _ in curves]))
    ys = np.array([np.where((grid >= x[0]) & (grid <= x[-1]), np.interp(grid, x, y), np.nan) for x, y in curves])
    return grid, ys


def _finish(fig: Any, ax: Any, path: Path, xlabel: str, ylabel: str, title: str) -> None:
    import matplotlib.pyplot as plt

    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    # a report rewritten while someone reads it: the old figure or the new one
    atomic_write(path, lambda fh: fig.savefig(fh, dpi=110, format="png"), binary=True)
    plt.close(fig)


def plot_arms(runs: list[Run], env_id: str, algo: str, path: Path) -> None:
    """Each arm's return (top; pairs: the students' mean) over the pair's action distance (bottom, log scale), one
    colour per arm, both against total env steps: how alike distillation keeps the students, beside what it earns.
    Means over seeds (distance: and over both students' measurements)."""
    from dpd.figures import pyplot

    plt = pyplot()

    variants = arm_order({r.variant for r in runs})
    colours = {v: f"C{i}" for i, v in enumerate(variants)}
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6.4), sharex=True)
    for variant in variants:
        group = [r for r in runs if r.variant == variant]
        if variant == "vanilla":
            curves = [r.curves[VANILLA] for r in group]
        else:  # a run's students' mean: its two students' curves on one grid, averaged
            curves = []
            for r in group:
                grid, ys = _on_grid([r.curves[s] for s in STUDENTS])
                curves.append((grid, np.nanmean(ys, axis=0)))
        grid, ys = _on_grid(curves)
        style = "-" if variant in ("vanilla", INDEPENDENT) else "--"
        top.plot(grid, np.nanmean(ys, axis=0), color=colours[variant], linestyle=style,
                 label=f"{variant}{'' if variant == 'vanilla' else ': students mean'} (n={len(group)})")
        distances = [c for r in group for c in r.distances.values() if len(c[0])]
        if distances:
            grid, ys = _on_grid(distances)
            bottom.plot(grid, np.nanmean(ys, axis=0), color=colours[variant], linestyle=style, label=variant)
    top.set_ylabel("deterministic evaluation return")
    top.set_title(f"{env_id} · {algo} · means over seeds", fontsize=10)
    top.legend(fontsize=8)
    top.grid(alpha=0.3)
    bottom.set_yscale("log")
    _finish(fig, bottom, path, "total env steps (a pair: both students' steps)", "pair action distance (log)", "")
