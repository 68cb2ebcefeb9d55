"""The README's figure: every seed's final return at 1M total env steps (PPO, paper preset) of vanilla, the independent
pair and DPD (the pairs: the students' mean), from the study's committed per-learner table.

    python studies/when-dpd-helps/readme_figure.py docs/results/when-dpd-helps/stages1-4/tables.md docs/figures/ppo-1m.png
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # studies/: study_figures

ARMS = {"vanilla": "vanilla\n(one learner)", "independent": "independent\npair", "dense1": "DPD dense1\n(8 seeds)",
        "dpd-a1": "DPD default\n(3 seeds)"}
PANEL_TITLE = "{task}: final return at 1M total env steps"


def per_learner(text: str) -> dict[str, dict[str, list[float]]]:
    """task -> arm -> each seed's students' mean (vanilla: its return), from 'Every learner's final return' tables."""
    out: dict[str, dict[str, list[float]]] = {}
    for block in re.split(r"Every learner's final return, seed by seed \(", text)[1:]:
        task = block.split(";")[0]
        rows = {}
        table = block.split("\n\n")[1]  # the table right after the heading
        for line in table.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if cells and cells[0] in ARMS:
                values = [np.mean([float(v) for v in c.split("/")]) for c in cells[1:] if c]
                rows[cells[0]] = values
        out[task] = rows
    return out


def main() -> None:
    table, target = Path(sys.argv[1]), Path(sys.argv[2])
    data = per_learner(table.read_text())
    from study_figures import seed_strips  # studies/study_figures.py

    panels = {task: {ARMS[arm]: rows.get(arm, []) for arm in ARMS} for task, rows in data.items()}
    seed_strips(panels, target, "PPO (paper preset): each dot a seed, the bar its mean; a pair: its students' mean",
                panel_title=PANEL_TITLE, hollow=[ARMS["dpd-a1"]])
    print(target)


if __name__ == "__main__":
    main()
