"""Figures the studies draw (not part of the library): each arm's per-seed values as dots and a bar at their mean.

Imported by the studies' scripts (``studies/*/*.py`` put ``studies/`` on ``sys.path`` for it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dpd.figures import pyplot


def seed_strip(ax: Any, position: float, values: Sequence[float], colour: str, hollow: bool = False) -> None:
    """One arm's per-seed values at x = ``position``: each a dot (spread a little sideways), and a bar at their mean.
    ``hollow``: open dots (e.g. an arm with few seeds)."""
    import numpy as np

    xs = position + np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.full(len(values), float(position))
    ax.scatter(xs, values, s=18, alpha=0.75, facecolors="none" if hollow else None, edgecolors=colour, color=colour)
    if len(values):
        ax.hlines(np.mean(values), position - 0.3, position + 0.3, color=colour, linewidth=2)


def seed_strips(panels: dict[str, dict[str, Sequence[float]]], path: Any, title: str, *, panel_title: str = "{task}",
                panel_size: tuple[float, float] = (4.6, 3.6), label_size: float = 8, hollow: Sequence[str] = (),
                ylabel: str = "deterministic evaluation return") -> Any:
    """One panel per task (``panels``: task -> x label -> per-seed values; ``panel_title`` formatted with ``task``),
    each x label's values a :func:`seed_strip` in its own colour; ``hollow``: the labels drawn with open dots.
    Saved to ``path`` (dpi 120); returns ``path``."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(panel_size[0] * len(panels), panel_size[1]), squeeze=False)
    for ax, (task, arms) in zip(axes[0], panels.items(), strict=True):
        for k, (label, values) in enumerate(arms.items()):
            seed_strip(ax, k, values, f"C{k}", hollow=label in hollow)
        ax.set_xticks(range(len(arms)), list(arms), fontsize=label_size)
        ax.set_title(panel_title.format(task=task), fontsize=9)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
