"""The paper at its own scale: Figure 2's verdicts by studies/paper-scale/RULES.md, from the sweep folders.

    python studies/paper-scale/report.py runs/paper-HalfCheetah runs/paper-Walker2d --out docs/results/paper-scale

Per task, on the seeds the rule requires (0-9; a task whose three arms do not all have them gets numbers but no
verdict, and stays out of the multiplicity family):

- **primary**: the distillation gain, DPD's students' mean final return minus the independent pair's, Welch's 95%
  interval and p; the exact permutation p and the paired-by-seed t interval beside it (the arms share seeds);
- **verdict**: "helps" / "hurts" where the Welch interval excludes 0 *and* the task survives Holm's step-down over
  the complete tasks at family alpha 0.05, else "no measurable effect" (an interval that excludes 0 but fails Holm is
  marked "not significant after Holm");
- the minimum detectable effect of the primary at these runs' own spread (80% power, two-sided 5%);
- secondary, not deciding, and the paper's own statistics (Figure 2's maximum return on the grid of total env steps
  every arm evaluated at, its ">15%" and ">10%" sentences, how much the maximum inflates each arm): stage B's
  definitions, computed by `studies/why-and-ddpg/stageB.py`'s ``analyse`` with this study's seeds;
- the engine's determinism on the study's own runs: the independent pair's student0 has vanilla's seed and trains
  vanilla's algorithm undistilled, so where the pack a run trains in cannot change its rounding it *is* vanilla's run
  over its own steps (per seed: how many evaluations are equal, the first that is not);
- learning curves of the three arms per task (mean and 95% t band over seeds; a pair: its students' mean), total env
  steps on the x-axis (a DPD student's own steps stretched x2, as the paper's Figure 2).

Writes OUT/report.md, OUT/report.json and OUT/curves_<task>.png.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from dpd.experiments.report import Run, load_sweeps
from dpd.names import STUDENTS, VANILLA

STUDIES = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(STUDIES / "why-and-ddpg"))  # stageB: the statistics' definitions, shared with stage B
sys.path.insert(0, str(STUDIES))  # study_figures, imported by stageB
sys.path.insert(0, str(STUDIES / "jax-engine"))  # compare: the minimum detectable effect, the engine study's

import stageB  # noqa: E402
from compare import mde  # noqa: E402

REQUIRED_SEEDS = frozenset(range(10))  # RULES.md: seeds 0-9 per arm
FAMILY_ALPHA = 0.05  # RULES.md: Holm's step-down over the complete tasks
ARMS = ("vanilla", "independent", "dpd-a1")


def holm(pvalues: dict[str, float], alpha: float = FAMILY_ALPHA) -> dict[str, bool]:
    """Which hypotheses Holm's step-down rejects: sorted by p, the k-th smallest (k from 0) against alpha / (m - k),
    stopping at the first that fails."""
    m, rejecting, out = len(pvalues), True, {}
    for k, name in enumerate(sorted(pvalues, key=lambda n: pvalues[n])):
        rejecting = rejecting and pvalues[name] < alpha / (m - k)
        out[name] = rejecting
    return out


def paired_interval(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """(mean, low, high) of a - b seed by seed, the t interval at 95%; NaN ends below two seeds."""
    from scipy import stats

    d = np.asarray(a, float) - np.asarray(b, float)
    if len(d) < 2:
        return (float(d.mean()) if len(d) else math.nan), math.nan, math.nan
    if d.std(ddof=1) == 0:
        return float(d.mean()), float(d.mean()), float(d.mean())
    ci = stats.ttest_1samp(d, 0.0).confidence_interval(0.95)
    return float(d.mean()), float(ci.low), float(ci.high)


def task_verdict(unadjusted: str, survives_holm: bool | None) -> str:
    """The rule's verdict from the Welch interval's (``helps`` / ``hurts`` / ``no measurable effect``, or ``none yet``
    where a seed is missing) and Holm's step-down (None: the task is not in the family)."""
    if survives_holm is None or unadjusted not in ("helps", "hurts") or survives_holm:
        return unadjusted
    return f"no measurable effect ({unadjusted} before Holm: not significant after Holm)"


def primary(runs: list[Run]) -> dict[str, dict[str, Any]]:
    """Per task: the primary's seeds, the paired interval, the MDE, and whether its grid is complete."""
    out: dict[str, dict[str, Any]] = {}
    done = [r for r in runs if r.status == "finished" and r.seed in REQUIRED_SEEDS]
    for task in sorted({r.env_id for r in done}):
        by = {arm: {r.seed: r for r in done if r.env_id == task and r.variant == arm} for arm in ARMS}
        seeds = sorted(set(by["dpd-a1"]) & set(by["independent"]))
        a = np.array([stageB.students_mean(by["dpd-a1"][s], "final", set()) for s in seeds])
        b = np.array([stageB.students_mean(by["independent"][s], "final", set()) for s in seeds])
        out[task] = {"seeds": seeds, "complete": all(set(by[arm]) >= REQUIRED_SEEDS for arm in ARMS),
                     "paired": paired_interval(a, b), "mde": mde(a, b) if len(seeds) >= 2 else math.nan,
                     "independent_final": float(b.mean()) if len(b) else math.nan}
    return out


def student0_is_vanilla(runs: list[Run]) -> dict[str, dict[int, dict[str, Any]]]:
    """Per task and seed: does the independent pair's student0 return exactly vanilla's evaluations?

    Compared at a learner's own env steps (a pair's total env steps / 2), over the evaluations both have:
    ``{"equal": n equal, "compared": n compared, "first_unequal": own env steps of the first unequal one or None}``.
    """
    done = [r for r in runs if r.status == "finished"]
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for v in (r for r in done if r.variant == "vanilla" and VANILLA in r.curves):
        pair = next((r for r in done if (r.env_id, r.seed, r.variant) == (v.env_id, v.seed, "independent")
                     and STUDENTS[0] in r.curves), None)
        if pair is None:
            continue
        vx, vy = v.curves[VANILLA]
        px, py = pair.curves[STUDENTS[0]]
        vanilla_at = dict(zip(vx.tolist(), vy.tolist(), strict=True))
        both = [(x / 2, vanilla_at[x / 2], y) for x, y in zip(px.tolist(), py.tolist(), strict=True) if x / 2 in vanilla_at]
        unequal = [own for own, a, b in both if a != b]
        out.setdefault(v.env_id, {})[v.seed] = {"equal": len(both) - len(unequal), "compared": len(both),
                                                "first_unequal": unequal[0] if unequal else None}
    return out


def analyse(runs: list[Run]) -> dict[str, Any]:
    tasks = stageB.analyse([r for r in runs if r.seed in REQUIRED_SEEDS], required=REQUIRED_SEEDS)
    prim = primary(runs)
    family = {task: tasks[task]["arms"]["dpd-a1"]["distillation_gain"]["welch_p"] for task in prim
              if prim[task]["complete"] and "dpd-a1" in tasks.get(task, {}).get("arms", {})}
    survives = holm(family)
    for task, p in prim.items():
        arm = tasks.get(task, {}).get("arms", {}).get("dpd-a1")
        if arm is None:
            continue
        p["verdict"] = task_verdict(arm["verdict"], survives.get(task))
        p["holm_family"] = sorted(family)
        tasks[task]["primary"] = p
    for task, seeds in student0_is_vanilla(runs).items():
        if task in tasks:
            tasks[task]["student0_is_vanilla"] = seeds
    return tasks


def curves_figure(runs: list[Run], task: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for arm, colour in zip(ARMS, ("tab:gray", "tab:blue", "tab:red"), strict=True):
        mine = [r for r in runs if r.env_id == task and r.variant == arm and r.status == "finished" and r.curves]
        if not mine:
            continue
        x = min((next(iter(r.curves.values()))[0] for r in mine), key=len)
        ys = np.array([np.mean([ret[: len(x)] for _, ret in r.curves.values()], axis=0) for r in mine])
        mean = ys.mean(axis=0)
        if len(ys) > 1:
            from scipy import stats

            half = stats.t.ppf(0.975, len(ys) - 1) * ys.std(axis=0, ddof=1) / math.sqrt(len(ys))
            ax.fill_between(x, mean - half, mean + half, color=colour, alpha=0.2)
        ax.plot(x, mean, color=colour, label=f"{arm} (n={len(ys)})")
    ax.set_xlabel("total env steps (a DPD student's own x2)")
    ax.set_ylabel("evaluation return (mean, 95% band)")
    engines = sorted({str(r.summary.get("engine", "sb3")) for r in runs if r.env_id == task and r.status == "finished"})
    ax.set_title(f"{task}, DDPG paper preset, engine={'+'.join(engines)}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(result: dict[str, Any]) -> str:
    lines = ["# The paper at its own scale: Figure 2 (verdicts by studies/paper-scale/RULES.md)", "",
             "| task | seeds (DPD / independent, paired) | distillation gain, final [Welch 95%], permutation p | paired by "
             "seed [t 95%] | MDE (80%) | independent's final | verdict |", "|---|---|---|---|---|---|---|"]
    for task, t in result.items():
        p, arm = t.get("primary"), t["arms"].get("dpd-a1")
        if p is None or arm is None:
            continue
        gain = stageB.fmt(stageB._D(arm["distillation_gain"]))
        lines.append(f"| {task} | {len(p['seeds'])} | {gain} | {stageB.interval(p['paired'])} | {stageB.num(p['mde'])} | "
                     f"{stageB.num(p['independent_final'])} | **{p['verdict']}** |")
    family = next((t["primary"]["holm_family"] for t in result.values() if "primary" in t), [])
    lines += ["", f"Holm's family (tasks with seeds {min(REQUIRED_SEEDS)}-{max(REQUIRED_SEEDS)} in every arm): "
              f"{', '.join(family) or 'none yet'}; family alpha {FAMILY_ALPHA}.", ""]
    for task, t in result.items():
        if t.get("student0_is_vanilla"):
            cells = ", ".join(f"s{seed} {c['equal']}/{c['compared']}"
                              + ("" if c["first_unequal"] is None else f" (unequal from {c['first_unequal']:,.0f})")
                              for seed, c in sorted(t["student0_is_vanilla"].items()))
            lines += [f"{task}: the independent pair's student0 returns vanilla's evaluations exactly (equal / "
                      f"compared, at a learner's own env steps): {cells}.", ""]
    body = stageB.markdown({k: {kk: vv for kk, vv in v.items() if kk not in ("primary", "student0_is_vanilla")}
                            for k, v in result.items()})
    body = body.replace("# Stage B: DPD-DDPG at 1M total env steps (verdicts by RULES.md)",
                        "## Every statistic, per task (stage B's definitions; the verdict column there is before Holm)")
    return "\n".join(lines) + "\n" + body


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweeps", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    runs, _ = load_sweeps(args.sweeps)
    result = analyse(runs)
    args.out.mkdir(parents=True, exist_ok=True)
    for task in result:
        curves_figure(runs, task, args.out / f"curves_{task.split('-')[0]}.png")
    (args.out / "report.json").write_text(json.dumps(result, indent=1, default=float) + "\n")
    text = markdown(result)
    (args.out / "report.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
