"""The JAX engine against SB3, by the rules in studies/jax-engine/ (RULES.md, RULES-ppo.md): TOST per cell, pooled.

    python studies/jax-engine/compare.py --sb3 runs/why-A-ddpg runs/why-B-dpd runs/why-B-controls \
        runs/why-B-controls-s7 runs/why-B-controls-tail --jax runs/jax-B --out docs/results/jax-engine/stageB

(the SB3 folders from `python studies/why-and-ddpg/archive.py restore docs/results/why-and-ddpg/runs-stageB.tar.gz
runs` and `... runs-stageA-ddpg.tar.gz runs`.) Per task and arm (vanilla, independent, dpd-a1): each run's mean over
training and final evaluation return (the students averaged for a pair), JAX minus SB3 with Welch's 90% and 95%
intervals, the TOST verdict at margins +-15% of SB3's mean, the exact permutation p and the minimum detectable effect
(80% power, two-sided 5%, from the two groups' variances); one figure per task with both engines' learning curves
(mean and 95% band, total env steps on the x-axis). Writes OUT/compare.md, OUT/compare.json, OUT/curves_<task>.png
(DDPG; OUT/curves_<task>_<algo>.png for another algorithm). A cell is (task, algorithm, arm); the pooled test over
DDPG's cells decides stage B (RULES.md, Deviations); with another algorithm's cells present, a pooled test over all
cells is shown beside it (RULES-ppo.md). Every cell, PPO's among them (folders of different sweeps may be mixed: each
set of folders with one budget, preset and overrides is one sweep, split or not):

    python studies/jax-engine/compare.py --sb3 runs/why-A-ddpg runs/why-B-dpd runs/why-B-controls \
        runs/why-B-controls-s7 runs/why-B-controls-tail runs/jax-ppo-sb3-a runs/jax-ppo-sb3-b \
        --jax runs/jax-B runs/jax-ppo --out docs/results/jax-engine/all-cells
"""

from __future__ import annotations

import argparse
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from dpd.errors import DPDUserError
from dpd.experiments.report import Run, load_sweeps
from dpd.experiments.report.runs import COMPARABLE, comparable, read_spec
from dpd.experiments.stats import permutation_p, welch

MARGIN = 0.15  # RULES.md: +-15% of the SB3 cell's mean
ARMS = ("vanilla", "independent", "dpd-a1")
SEEDS = range(16)  # RULES.md: 8, then up to 16 seeds on the JAX side


def per_run(run: Run) -> tuple[float, float]:
    """(mean over training, final) evaluation return of a run: each learner's, the learners averaged."""
    means = [float(np.mean(ret)) for _, ret in run.curves.values() if len(ret)]
    finals = [float(ret[-1]) for _, ret in run.curves.values() if len(ret)]
    return float(np.mean(means)), float(np.mean(finals))


Cell = tuple[str, str, str]  # (task, algorithm, arm)


def cells(runs: list[Run]) -> dict[Cell, dict[int, tuple[float, float]]]:
    out: dict[Cell, dict[int, tuple[float, float]]] = {}
    for run in runs:
        if run.status == "finished" and run.variant in ARMS and run.seed in SEEDS and run.curves:
            out.setdefault((run.env_id, run.algo, run.variant), {})[run.seed] = per_run(run)
    return out


def pooled_test(sb3: dict[Cell, dict[int, tuple[float, float]]], jax: dict[Cell, dict[int, tuple[float, float]]],
                common: list[Cell]) -> dict[str, Any]:
    """RULES.md, Deviations: each run's mean over training in units of its cell's SB3 mean, JAX against SB3."""
    level = {key: float(np.mean([v[0] for v in sb3[key].values()])) for key in common}
    a = np.concatenate([[v[0] / abs(level[key]) for v in jax[key].values()] for key in common])
    b = np.concatenate([[v[0] / abs(level[key]) for v in sb3[key].values()] for key in common])
    return {"cells": ["|".join(key) for key in common], **tost(a, b, margin=MARGIN)}


def pooled_line(name: str, pooled: dict[str, Any]) -> str:
    d, (lo90, hi90), (lo95, hi95) = pooled["difference"], pooled["ci90"], pooled["ci95"]
    return (f"**{name}** over {len(pooled['cells'])} cells (each run / its cell's SB3 mean over training): JAX - SB3 ="
            f" {d:+.3f} [90% {lo90:+.3f}, {hi90:+.3f}; 95% {lo95:+.3f}, {hi95:+.3f}], margin ±{MARGIN}, MDE"
            f" {pooled['mde']:.3f}, permutation p {pooled['permutation_p']:.3f}, n {pooled['n_jax']} /"
            f" {pooled['n_sb3']}: **{pooled['verdict']}**")


def mde(a: np.ndarray, b: np.ndarray) -> float:
    """The smallest true difference detected with 80% power by a two-sided 5% test, normal approximation."""
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    return (1.959964 + 0.841621) * se


def tost(jax: np.ndarray, sb3: np.ndarray, margin: float | None = None) -> dict[str, Any]:
    """The rule's test of mean(jax) - mean(sb3) at ``margin`` (default: ±15% of SB3's mean)."""
    margin = MARGIN * abs(float(sb3.mean())) if margin is None else margin
    d, lo90, hi90, _, _ = welch(jax, sb3, level=0.90)
    _, lo95, hi95, p, _ = welch(jax, sb3, level=0.95)
    perm, exact = permutation_p(jax, sb3)
    if lo90 > -margin and hi90 < margin:
        word = "equivalent"
    elif lo95 > 0 or hi95 < 0:
        word = "different"
    else:
        word = "undecided"
    return {"jax_mean": float(jax.mean()), "sb3_mean": float(sb3.mean()), "difference": d, "ci90": [lo90, hi90],
            "ci95": [lo95, hi95], "welch_p": p, "permutation_p": perm, "exact": exact, "margin": margin,
            "mde": mde(jax, sb3), "n_jax": len(jax), "n_sb3": len(sb3), "verdict": word}


def load_engine(sweep_dirs: list[Path]) -> list[Run]:
    """The runs of one engine's folders: folders that agree on the sweep's budget, preset and overrides are read as
    one sweep (load_sweeps: a trial twice is refused), the groups (e.g. stage B's DDPG and PPO's) side by side."""
    groups: dict[str, list[Path]] = {}
    for d in sweep_dirs:
        spec = read_spec(d)
        groups.setdefault(repr([comparable(spec, key) for key in COMPARABLE]), []).append(d)
    runs = [run for dirs in groups.values() for run in load_sweeps(dirs)[0]]
    twice = sorted(name for name, count in Counter(run.name for run in runs).items() if count > 1)
    if twice:
        raise DPDUserError(f"{twice} are in two sweeps of different settings; a run may enter a comparison once")
    return runs


def curves_figure(task: str, algo: str, arms: list[str], groups: dict[str, list[Run]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(arms), figsize=(4 * len(arms), 3.2), sharey=True, squeeze=False)
    for ax, arm in zip(axes[0], arms, strict=True):
        for engine, colour in (("sb3", "tab:blue"), ("jax", "tab:orange")):
            runs = [r for r in groups[engine] if r.env_id == task and r.algo == algo and r.variant == arm and r.curves]
            if not runs:
                continue
            x = next(iter(runs[0].curves.values()))[0]
            ys = np.array([np.mean([ret[: len(x)] for _, ret in r.curves.values()], axis=0) for r in runs
                           if all(len(ret) >= len(x) for _, ret in r.curves.values())])
            mean = ys.mean(axis=0)
            half = 1.96 * ys.std(axis=0, ddof=1) / math.sqrt(len(ys)) if len(ys) > 1 else np.zeros_like(mean)
            ax.plot(x, mean, color=colour, label=f"{engine} (n={len(ys)})")
            ax.fill_between(x, mean - half, mean + half, color=colour, alpha=0.2)
        ax.set_title(f"{task} {arm}" if algo == "ddpg" else f"{task} {algo} {arm}")
        ax.set_xlabel("total env steps")
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("evaluation return")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sb3", nargs="+", type=Path, required=True)
    parser.add_argument("--jax", nargs="+", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        groups = {"sb3": load_engine(args.sb3), "jax": load_engine(args.jax)}
    except DPDUserError as exc:  # a folder that is not a sweep, a trial twice: one line, no traceback
        raise SystemExit(f"compare.py: {exc}") from None
    sb3, jax = cells(groups["sb3"]), cells(groups["jax"])
    common = sorted(set(sb3) & set(jax))
    results: dict[str, Any] = {}
    title = "# The JAX engine against SB3: stage B's cells (studies/jax-engine/RULES.md)"
    if any(algo != "ddpg" for _, algo, _ in common):
        title += " and PPO's (RULES-ppo.md)"
    lines = [title, "",
             "| task | algorithm | arm | statistic | n jax / sb3 | jax mean | sb3 mean | jax - sb3 [90%] | margin | MDE |"
             " perm p | verdict |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key in common:
        task, algo, arm = key
        for k, stat in enumerate(("mean over training", "final")):
            a = np.array([v[k] for v in jax[key].values()])
            b = np.array([v[k] for v in sb3[key].values()])
            if len(a) < 2 or len(b) < 2:
                continue
            r = tost(a, b)
            results[f"{task}|{algo}|{arm}|{stat}"] = r
            verdict = r["verdict"] if stat == "mean over training" else f"({r['verdict']}, not decided on)"
            lines.append(f"| {task} | {algo} | {arm} | {stat} | {r['n_jax']} / {r['n_sb3']} | {r['jax_mean']:.0f} | "
                         f"{r['sb3_mean']:.0f} | {r['difference']:.0f} [{r['ci90'][0]:.0f}, {r['ci90'][1]:.0f}] | "
                         f"±{r['margin']:.0f} | {r['mde']:.0f} | {r['permutation_p']:.3f} | {verdict} |")
    # RULES.md, Deviations (2026-12-03): the pooled test over DDPG's cells both engines have, in units of each cell's
    # SB3 mean over training, decides stage B; the per-cell tests above cannot reach "equivalent" at 8 SB3 seeds.
    # RULES-ppo.md: with another algorithm's cells, the pool over every cell is shown beside it.
    ddpg = [key for key in common if key[1] == "ddpg"]
    if ddpg:
        results["pooled"] = pooled_test(sb3, jax, ddpg)
        lines += ["", pooled_line("Pooled, DDPG (stage B)", results["pooled"])]
    if len(common) > len(ddpg):
        results["pooled_all"] = pooled_test(sb3, jax, common)
        lines += ["", pooled_line("Pooled over every cell given (RULES-ppo.md)", results["pooled_all"])]
    args.out.mkdir(parents=True, exist_ok=True)
    for task, algo in sorted({(t, a) for t, a, _ in common}):
        arms = [arm for arm in ARMS if (task, algo, arm) in common]
        name = task.split("-")[0] if algo == "ddpg" else f"{task.split('-')[0]}_{algo}"
        curves_figure(task, algo, arms, groups, args.out / f"curves_{name}.png")
    (args.out / "compare.md").write_text("\n".join(lines) + "\n")
    (args.out / "compare.json").write_text(json.dumps(results, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
