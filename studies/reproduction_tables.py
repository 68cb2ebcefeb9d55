"""The tables of docs/reproduction.md, computed from finished sweep folders (nothing typed in by hand).

    python studies/reproduction_tables.py SWEEP [SWEEP ...]

Per task and algorithm: final deterministic evaluation return, mean ± std over seeds, of vanilla at its full budget
and at half of it (the same own env steps as each DPD student), of each variant's students (mean of the two) and
of the better student; next to the paper's Table 1 (PPO, 1e7 steps per student / 2e7 vanilla) where it has the task.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from dpd.experiments.report import HALF, load_runs

#: Lai et al. 2020, Table 1 (PPO, "mean" rows: mean return over training, 5 seeds): task -> (PPO, DPD-PPO)
PAPER_TABLE1_MEAN = {"HalfCheetah-v5": ("2947 ± 201", "3051 ± 191"), "Walker2d-v5": ("3695 ± 224", "3857 ± 144"),
                     "Humanoid-v5": ("2164 ± 127", "2242 ± 231"), "Swimmer-v5": ("97.4 ± 0.6", "98.9 ± 2.5")}


def cell(values: list[float]) -> str:
    if not values:
        return "–"
    v = np.asarray(values)
    return f"{v.mean():.0f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.0f} (n={len(v)})"


def main() -> None:
    for sweep in sys.argv[1:]:
        runs = [r for r in load_runs(Path(sweep)) if r.status == "finished"]
        print(f"\n### {sweep}\n")
        variants = sorted({r.variant for r in runs if r.variant != "vanilla"})
        head = ["task", "algo", "vanilla (full budget)", f"vanilla {HALF}"]
        for v in variants:
            head += [f"{v}: students' mean", f"{v}: better student"]
        head += ["paper PPO / DPD-PPO (Table 1, mean)"]
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for algo, env in sorted({(r.algo, r.env_id) for r in runs}, key=lambda t: (t[0], t[1])):
            these = [r for r in runs if r.env_id == env and r.algo == algo]
            van = [r for r in these if r.variant == "vanilla"]
            row = [env, algo, cell([r.metric("vanilla", "final") for r in van]),
                   cell([r.metric(HALF, "final") for r in van])]
            for v in variants:
                group = [r for r in these if r.variant == v]
                row += [cell([r.metric("students_mean", "final") for r in group]),
                        cell([r.metric("better", "final") for r in group])]
            paper = PAPER_TABLE1_MEAN.get(env) if algo == "ppo" else None
            row.append(" / ".join(paper) if paper else "–")
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
