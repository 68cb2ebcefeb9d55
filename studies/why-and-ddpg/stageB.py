"""Stage B's verdict by the rule in RULES.md: DPD-DDPG at 1M total env steps against both controls.

    python studies/why-and-ddpg/stageB.py runs/why-A-ddpg runs/why-B-dpd runs/why-B-controls \
        runs/why-B-controls-tail runs/why-B-seeds89-hc runs/why-B-seeds89-w2d --out DIR

(the folders stageB-run.sh trains; a trial still pending in one folder and trained in another enters once)

Per task and DPD arm: the distillation gain on the students' mean final return (DPD minus the independent pair, on
the seeds both have) with Welch's 95% interval (the verdict's method), the exact permutation p and the percentile
bootstrap beside it; the worse student's gain; the selection gain (better student minus students' mean); the mean
over training; and the paper's own statistic (Figure 2: the mean over seeds of each learner's maximum evaluation
return) on a grid of total env steps both arms evaluated at, DPD's students' mean against vanilla, with how much
taking the maximum inflates each arm (max minus final). Writes DIR/stageB.md, DIR/stageB.json and
DIR/stageB.png (every seed's final return).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from dpd.experiments.report import HALF, Run, difference_ci, load_sweeps, mean_ci, stream
from dpd.experiments.stats import difference, verdict

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # studies/: study_figures

INDEPENDENT, VANILLA = "independent", "vanilla"
PAPER_MARGIN = 0.15  # "more than 15 percent" (paper, section 4.3)
PAPER_MARGIN_EQUAL_TOTAL = 0.10  # "more than 10 percent", DPD at 2.5e6 per learner against vanilla at 5e6 (ibid.)
REQUIRED_SEEDS = frozenset(range(8))  # RULES.md: seeds 0-7 of every arm per task; with fewer, numbers but no verdict


def on_grid_max(run: Run, learner: str, grid: set[float]) -> float:
    """The learner's largest evaluation return among its evaluations at total env steps in ``grid``."""
    x, y = run.curves[learner]
    keep = np.isin(x, sorted(grid))
    return float(y[keep].max()) if keep.any() else math.nan


def common_grid(runs: list[Run]) -> set[float]:
    """Total env steps at which every learner of these runs was evaluated."""
    grids = [set(r.curves[name][0].tolist()) for r in runs for name in r.curves]
    return set.intersection(*grids) if grids else set()


def learner_values(run: Run, kind: str, grid: set[float]) -> list[float]:
    names = ["vanilla"] if run.variant == VANILLA else ["student0", "student1"]
    if kind == "max_grid":
        return [on_grid_max(run, n, grid) for n in names]
    return [run.metric(n, kind) for n in names]


def same_first_half(vanilla: Run, pair: Run) -> bool:
    """Whether the pair's student0 returned exactly what vanilla (the same seed) did at every evaluation of vanilla's
    first half of its budget (student0's x is total env steps of the pair: twice its own)."""
    vx, vy = vanilla.curves["vanilla"]
    sx, sy = pair.curves["student0"]
    first = vx <= vx[-1] / 2
    return len(sy) == first.sum() and bool(np.array_equal(sx, 2 * vx[first]) and np.array_equal(sy, vy[first]))


def students_mean(run: Run, kind: str, grid: set[float]) -> float:
    return float(np.mean(learner_values(run, kind, grid)))


def per_seed(runs: list[Run], kind: str, grid: set[float]) -> np.ndarray:
    """(len(runs),): each run's students' mean (vanilla: its return) of ``kind``, in the order given."""
    return np.array([students_mean(r, kind, grid) for r in runs])


def fmt(d: Any, digits: int = 0) -> str:
    if math.isnan(d.diff):  # no seed both arms have yet
        return "—"
    welch = ("no interval (one seed in an arm)" if math.isnan(d.welch_low) else
             f"[{d.welch_low:+.{digits}f}, {d.welch_high:+.{digits}f}]")
    return f"{d.diff:+.{digits}f} {welch}, p_perm {d.permutation_p:.3f}"


def n_seeds(n: int) -> str:
    return f"{n} seed" if n == 1 else f"{n} seeds"


def num(x: float) -> str:
    return "—" if math.isnan(x) else f"{x:.0f}"


def interval(v: tuple[float, float, float], digits: int = 0) -> str:
    point, lo, hi = v
    if math.isnan(point):
        return "—"
    return f"{point:+.{digits}f}" + ("" if math.isnan(lo) else f" [{lo:+.{digits}f}, {hi:+.{digits}f}]")  # 1 seed


def analyse(runs: list[Run], required: frozenset[int] = REQUIRED_SEEDS) -> dict[str, Any]:
    """Per task and arm, the rule's statistics; a verdict (and the paper's claim) only where the arm, the independent
    pair and vanilla all have every ``required`` seed."""
    done = [r for r in runs if r.status == "finished"]
    out: dict[str, Any] = {}
    for task in sorted({r.env_id for r in done}):
        these = [r for r in done if r.env_id == task]
        grid = common_grid(these)
        arms = sorted({r.variant for r in these} - {VANILLA, INDEPENDENT})
        by = {v: {r.seed: r for r in these if r.variant == v} for v in {r.variant for r in these}}
        task_out: dict[str, Any] = {"grid_points": len(grid), "arms": {}}
        van = by.get(VANILLA, {})
        ind = by.get(INDEPENDENT, {})
        vanilla = [van[s] for s in sorted(van)]
        vfin, vmean, vmx = (per_seed(vanilla, kind, grid) for kind in ("final", "mean", "max_grid"))
        vhalf = np.array([r.metric(HALF, "max") for r in vanilla])
        for arm in [INDEPENDENT, *arms]:
            mine = by.get(arm, {})
            by_seed = [mine[s] for s in sorted(mine)]
            seeds = sorted(set(mine) & set(ind)) if arm != INDEPENDENT else sorted(mine)
            row: dict[str, Any] = {"seeds": seeds, "n": len(mine)}
            a = np.array([students_mean(mine[s], "final", grid) for s in seeds])
            if arm != INDEPENDENT:
                b = np.array([students_mean(ind[s], "final", grid) for s in seeds])
                gain = difference(a, b, seed=1)
                row["distillation_gain"] = gain.__dict__
                complete = required <= set(seeds) and required <= set(van)
                row["verdict"] = (verdict(gain.welch_low, gain.welch_high) if complete else
                                  f"none yet ({len(required & set(seeds))} of {len(required)} required seeds)")
                row["bootstrap"] = difference_ci(a, b, stream("stageB", task, arm, "gain"))
                worse_a = np.array([min(learner_values(mine[s], "final", grid)) for s in seeds])
                worse_b = np.array([min(learner_values(ind[s], "final", grid)) for s in seeds])
                row["worse_student_gain"] = difference(worse_a, worse_b, seed=2).__dict__
                mean_a = np.array([students_mean(mine[s], "mean", grid) for s in seeds])
                mean_b = np.array([students_mean(ind[s], "mean", grid) for s in seeds])
                row["mean_over_training_gain"] = difference(mean_a, mean_b, seed=3).__dict__
            sel = np.array([max(learner_values(mine[s], "final", grid)) - students_mean(mine[s], "final", grid)
                            for s in sorted(mine)])
            row["selection_gain"] = mean_ci(sel, stream("stageB", task, arm, "selection"))
            fin = per_seed(by_seed, "final", grid)
            row["final_students_mean"] = float(fin.mean()) if mine else math.nan
            # reported, not decided (RULES.md): the arm's students' mean against vanilla, final and over training
            if mine and len(vfin):
                row["vs_vanilla_final"] = difference(fin, vfin, seed=6).__dict__
                row["vs_vanilla_mean"] = difference(per_seed(by_seed, "mean", grid), vmean, seed=7).__dict__
            # the paper's statistic: mean over seeds of each learner's maximum (students' mean), vs vanilla
            mx = per_seed(by_seed, "max_grid", grid)
            row["max_grid"] = float(mx.mean()) if len(mx) else math.nan
            if len(vmx) and len(mx):
                d = difference(mx, vmx, seed=4)
                ratio = mx.mean() / vmx.mean() - 1 if vmx.mean() else math.nan
                judged = required <= set(mine) and required <= set(van)
                row["paper_statistic_vs_vanilla"] = {**d.__dict__, "ratio": float(ratio),
                                                     "holds": bool(ratio >= PAPER_MARGIN and d.welch_low > 0)
                                                     if judged else None}
            # the paper's two sentences in its own accounting (reported, not decided; RULES.md "Deviations"): each
            # learner's maximum over its whole run against vanilla's over its first half (as many own env steps as
            # a DPD student: ">15%"), and the equal-total statistic above read against the paper's ">10%"
            own = per_seed(by_seed, "max", grid)
            if len(own) and len(vhalf):  # the independent pair too: DDPG against DDPG at its own steps, a check
                d = difference(own, vhalf, seed=5)
                row["paper_own_steps"] = {**d.__dict__, "ratio": float(own.mean() / vhalf.mean() - 1)
                                          if vhalf.mean() else math.nan, "vanilla_half_max": float(vhalf.mean()),
                                          "max": float(own.mean())}
            if arm == INDEPENDENT:  # student0 has vanilla's seed: is it vanilla's first half, evaluation for evaluation?
                row["student0_is_vanilla_first_half"] = [s for s in sorted(set(mine) & set(van))
                                                         if same_first_half(van[s], mine[s])]
            infl = mx - fin
            row["max_inflation"] = mean_ci(infl, stream("stageB", task, arm, "inflation"))
            task_out["arms"][arm] = row
        if van:
            task_out["vanilla"] = {"n": len(van), "final": float(vfin.mean()), "max_grid": float(vmx.mean()),
                                   "max_inflation": mean_ci(vmx - vfin, stream("stageB", task, "vanilla", "infl"))}
        out[task] = task_out
    return out


def markdown(result: dict[str, Any]) -> str:
    lines = ["# Stage B: DPD-DDPG at 1M total env steps (verdicts by RULES.md)", ""]
    for task, t in result.items():
        lines += [f"## {task}", "", f"Common evaluation grid: {t['grid_points']} points of total env steps.", ""]
        if "vanilla" in t:
            v = t["vanilla"]
            lines.append(f"Vanilla ({n_seeds(v['n'])}): final {v['final']:.0f}, max on the grid {v['max_grid']:.0f} "
                         f"(max - final {interval(v['max_inflation'])}).")
            lines.append("")
        lines += ["| arm | seeds | students' mean final | distillation gain [Welch 95%], permutation p | verdict | "
                  "bootstrap 95% | worse student gain [Welch] | selection gain [bootstrap] |",
                  "|---|---|---|---|---|---|---|---|"]
        for arm, r in t["arms"].items():
            if "distillation_gain" in r:
                g = _D(r["distillation_gain"])
                w = _D(r["worse_student_gain"])
                paired = len(r["seeds"])  # the gain's seeds: those the independent pair has too
                n = f"{r['n']}" if paired == r["n"] else f"{r['n']} ({paired} paired)"
                lines.append(f"| {arm} | {n} | {num(r['final_students_mean'])} | {fmt(g)} | "
                             f"**{r['verdict']}** | {interval(r['bootstrap'])} | {fmt(w)} | "
                             f"{interval(r['selection_gain'])} |")
            else:
                lines.append(f"| {arm} | {r['n']} | {num(r['final_students_mean'])} | — | — | — | — | "
                             f"{interval(r['selection_gain'])} |")
        lines += ["", "Reported, not decided (RULES.md): the mean over training (every evaluation of a learner, "
                  "averaged) and each arm against vanilla at equal total env steps (students' mean):", "",
                  "| arm | mean over training: gain vs independent [Welch 95%], permutation p | final vs vanilla "
                  "[Welch 95%], permutation p | mean over training vs vanilla [Welch 95%], permutation p |",
                  "|---|---|---|---|"]
        for arm, r in t["arms"].items():
            cells = [fmt(_D(r[k])) if k in r else "—" for k in ("mean_over_training_gain", "vs_vanilla_final",
                                                                  "vs_vanilla_mean")]
            lines.append(f"| {arm} | {' | '.join(cells)} |")
        lines += ["", "The paper's statistic (mean over seeds of each learner's maximum evaluation return, students' "
                  "mean, on the common grid) against vanilla's:", "",
                  "| arm | max statistic | vs vanilla [Welch 95%], permutation p | ratio | paper's claim (>= +15%, CI > 0)"
                  " | max - final (inflation) |", "|---|---|---|---|---|---|"]
        for arm, r in t["arms"].items():
            p = r.get("paper_statistic_vs_vanilla")
            claim = "not judged yet" if p and p["holds"] is None else "holds" if p and p["holds"] else "does not hold"
            cells = f"{fmt(_D(p))} | {100 * p['ratio']:+.1f}% | {claim}" if p else "— | — | —"
            lines.append(f"| {arm} | {num(r['max_grid'])} | {cells} | {interval(r['max_inflation'])} |")
        own_rows = [(arm, r) for arm, r in t["arms"].items() if "paper_own_steps" in r]
        if own_rows:
            own_steps, equal_total = f"{PAPER_MARGIN:+.0%}", f"{PAPER_MARGIN_EQUAL_TOTAL:+.0%}"
            lines += ["", "The paper's two sentences in its own accounting (reported, not decided; RULES.md "
                      "\"Deviations\"): \"at the same timesteps\" each learner's maximum over its whole run against "
                      "vanilla's over its first half (as many own env steps as one DPD student; the paper: more than "
                      f"{own_steps} in 3 of 4 tasks), and at equal total env steps the statistic above (the paper: more "
                      f"than {equal_total}):", ""]
            ind = t["arms"].get(INDEPENDENT, {})
            if "student0_is_vanilla_first_half" in ind and ind["seeds"]:
                same = ind["student0_is_vanilla_first_half"]
                lines += [f"(The independent pair's student0 has vanilla's seed; on {len(same)} of "
                          f"{n_seeds(len(ind['seeds']))} it returned exactly vanilla's first half, evaluation for "
                          "evaluation, so the pair's row differs from vanilla's half only by student1.)", ""]
            lines += ["| arm | students' max (own steps = 1/2 budget) | vanilla's max over its first half | "
                      f"difference [Welch 95%], permutation p | ratio (paper: > {own_steps}) | equal total: ratio "
                      f"(paper: > {equal_total}) |", "|---|---|---|---|---|---|"]
            for arm, r in own_rows:
                o, p = r["paper_own_steps"], r.get("paper_statistic_vs_vanilla")
                total = f"{100 * p['ratio']:+.1f}%" if p else "—"
                lines.append(f"| {arm} | {num(o['max'])} | {num(o['vanilla_half_max'])} | {fmt(_D(o))} | "
                             f"{100 * o['ratio']:+.1f}% | {total} |")
        lines.append("")
    return "\n".join(lines) + "\n"


class _D:
    def __init__(self, d: dict[str, Any]) -> None:
        self.__dict__.update(d)


def figure(runs: list[Run], path: Path) -> Path:
    """Every seed's final return per task: vanilla, the independent pair and each DPD arm (a pair: its students'
    mean). Each dot a seed, the bar its mean."""
    from study_figures import seed_strips  # studies/study_figures.py

    done = [r for r in runs if r.status == "finished"]
    panels: dict[str, dict[str, list[float]]] = {}
    for task in sorted({r.env_id for r in done}):
        these = [r for r in done if r.env_id == task]
        arms = [VANILLA, INDEPENDENT, *sorted({r.variant for r in these} - {VANILLA, INDEPENDENT})]
        panels[task] = {}
        for arm in arms:
            values = [students_mean(r, "final", set()) for r in sorted(these, key=lambda r: r.seed) if r.variant == arm]
            panels[task][f"{arm}\n({len(values)} seeds)"] = values
    return seed_strips(panels, path, "Stage B, DDPG (paper preset): each dot a seed, the bar its mean; a pair: its "
                       "students' mean", panel_title="{task}: final return at 1M total env steps",
                       panel_size=(5.2, 3.8), label_size=7)


def deciding_and_all(runs: list[Run]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The rule's analysis on seeds 0-7 (they decide; RULES.md, deviation of 18:40 UTC) and, where runs of other
    seeds exist (8-9), the same analysis on every seed, reported beside (None where there are none)."""
    deciding = analyse([r for r in runs if r.seed in REQUIRED_SEEDS])
    extra = any(r.seed not in REQUIRED_SEEDS and r.status == "finished" for r in runs)
    return deciding, (analyse(runs) if extra else None)


def all_seeds_markdown(result: dict[str, Any]) -> str:
    """The distillation gain and the paper's statistic on every seed (0-9), reported beside the verdicts."""
    lines = ["## Every seed (0-9 where run): reported beside the verdicts, not deciding (RULES.md)", "",
             "| task | arm | seeds | distillation gain [Welch 95%], permutation p | paper's statistic vs vanilla "
             "[Welch 95%], permutation p | ratio |", "|---|---|---|---|---|---|"]
    for task, t in result.items():
        for arm, r in t["arms"].items():
            if "distillation_gain" not in r:
                continue
            p = r.get("paper_statistic_vs_vanilla")
            paper, ratio = (fmt(_D(p)), f"{100 * p['ratio']:+.1f}%") if p else ("—", "—")
            lines.append(f"| {task} | {arm} | {len(r['seeds'])} | {fmt(_D(r['distillation_gain']))} | {paper} | "
                         f"{ratio} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweeps", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    runs, _ = load_sweeps(args.sweeps)
    result, all_seeds = deciding_and_all(runs)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "stageB.json").write_text(json.dumps({"seeds_0_7": result, "all_seeds": all_seeds}, indent=1,
                                                     default=float))
    text = markdown(result) + (all_seeds_markdown(all_seeds) if all_seeds else "")
    (args.out / "stageB.md").write_text(text)
    figure(runs, args.out / "stageB.png")
    print(text)


if __name__ == "__main__":
    main()
