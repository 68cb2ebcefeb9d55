"""matplotlib for dpd's figures: files only (the Agg backend), whatever the environment says."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend. An ``MPLBACKEND`` that names no backend would make importing
    matplotlib itself fail; dpd only draws into files, so it imports matplotlib without it (and puts it back)."""
    if "matplotlib" not in sys.modules and "MPLBACKEND" in os.environ:
        saved = os.environ.pop("MPLBACKEND")
        try:
            import matplotlib
        finally:
            os.environ["MPLBACKEND"] = saved
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def seed_strip(ax: Any, position: float, values: Sequence[float], colour: str, hollow: bool = False) -> None:
    """One arm's per-seed values at x = ``position``: each a dot (spread a little sideways), and a bar at their mean.
    ``hollow``: open dots (e.g. an arm with few seeds)."""
    import numpy as np

    xs = position + np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.full(len(values), float(position))
    ax.scatter(xs, values, s=18, alpha=0.75, facecolors="none" if hollow else None, edgecolors=colour, color=colour)
    if len(values):
        ax.hlines(np.mean(values), position - 0.3, position + 0.3, color=colour, linewidth=2)
