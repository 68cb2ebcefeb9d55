"""Stage C's verdict by the rule in RULES.md: DPD-PPO with the gate against the PPO study's controls.

    python studies/why-and-ddpg/stageC.py runs/why-C [--controls docs/results/when-dpd-helps/stages1-4/tables.md] \
        --out DIR

The controls (vanilla and the independent pair, seeds 0-7, 1M total env steps) are the PPO study's runs; their
every learner's final return is committed in that study's ``tables.md`` ("Every learner's final return, seed by
seed"), which this reads, so stage C needs no copy of their run folders. Per task: the distillation gain on the
students' mean final return (the gate arm minus the independent pair, on the seeds both have) with Welch's 95%
interval (the verdict's method), the exact permutation p and the percentile bootstrap beside it; the worse
student's gain; the selection gain; the students' mean against vanilla. The PPO study's own DPD arms of the same
table (e.g. ``dense1``, ``dpd-a1``) are shown beside, each against the same independent pairs, for scale.
Writes DIR/stageC.md, DIR/stageC.json and DIR/stageC.png (every seed's final return).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from dpd.experiments.report import Run, difference_ci, load_sweeps, mean_ci, stream
from dpd.experiments.stats import difference, verdict

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # studies/: study_figures

CONTROLS = Path("docs/results/when-dpd-helps/stages1-4/tables.md")
INDEPENDENT, VANILLA = "independent", "vanilla"
SEEDS_REQUIRED = 8  # RULES.md: seeds 0-7 per task; an arm with fewer gets no verdict
DENSE_STEPS = 10  # the arm's schedule (`dense`): distillation steps per phase before the gate
_HEADING = re.compile(r"^Every learner's final return, seed by seed \((?P<task>[^;]+);")


def read_finals(tables: Path) -> dict[str, dict[str, dict[int, list[float]]]]:
    """task -> arm -> seed -> the learners' final returns (one for vanilla, two for a pair), from a study table."""
    out: dict[str, dict[str, dict[int, list[float]]]] = {}
    task = None
    seeds: list[int] = []
    for line in tables.read_text().splitlines():
        heading = _HEADING.match(line)
        if heading:
            task, seeds = heading["task"], []
            out[task] = {}
            continue
        if task is None or not line.startswith("|") or line.startswith("|---"):
            if task is not None and seeds and not line.startswith("|"):
                task = None  # the table ended
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == "arm":
            seeds = [int(c.removeprefix("s")) for c in cells[1:]]
            continue
        out[task][cells[0]] = {seed: [float(v) for v in cell.split(" / ")]
                               for seed, cell in zip(seeds, cells[1:], strict=True) if cell}
    if not out:
        raise SystemExit(f"stageC: no 'Every learner's final return' table in {tables}")
    return out


def run_finals(runs: list[Run]) -> dict[str, dict[str, dict[int, list[float]]]]:
    """The same shape from finished run folders (the last evaluation of each learner)."""
    out: dict[str, dict[str, dict[int, list[float]]]] = {}
    for r in runs:
        if r.status != "finished":
            continue
        names = ["vanilla"] if r.variant == VANILLA else ["student0", "student1"]
        out.setdefault(r.env_id, {}).setdefault(r.variant, {})[r.seed] = [r.metric(n, "final") for n in names]
    return out


def analyse(arms: dict[str, dict[str, dict[int, list[float]]]],
            controls: dict[str, dict[str, dict[int, list[float]]]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for task in sorted(arms):
        ind = controls.get(task, {}).get(INDEPENDENT, {})
        van = controls.get(task, {}).get(VANILLA, {})
        if not ind:
            raise SystemExit(f"stageC: the controls have no independent pairs of {task}")
        rows: dict[str, Any] = {}
        beside = {k: v for k, v in controls.get(task, {}).items() if k not in (INDEPENDENT, VANILLA)}
        for arm, by_seed in {**arms[task], **beside}.items():
            seeds = sorted(set(by_seed) & set(ind))
            if not seeds:
                continue
            mean_a = np.array([np.mean(by_seed[s]) for s in seeds])
            mean_b = np.array([np.mean(ind[s]) for s in seeds])
            gain = difference(mean_a, mean_b, seed=1)
            worse = difference(np.array([min(by_seed[s]) for s in seeds]), np.array([min(ind[s]) for s in seeds]),
                               seed=2)
            vseeds = sorted(set(by_seed) & set(van))
            row: dict[str, Any] = {
                "seeds": seeds, "source": "this stage" if arm in arms[task] else "the PPO study",
                "students_mean": float(mean_a.mean()), "independent": float(mean_b.mean()),
                "distillation_gain": gain.__dict__, "verdict": verdict(gain.welch_low, gain.welch_high),
                "bootstrap": difference_ci(mean_a, mean_b, stream("stageC", task, arm, "gain")),
                "worse_student_gain": worse.__dict__,
                "selection_gain": mean_ci(np.array([max(by_seed[s]) - np.mean(by_seed[s]) for s in seeds]),
                                          stream("stageC", task, arm, "selection")),
            }
            if vseeds:
                row["vs_vanilla"] = difference(np.array([np.mean(by_seed[s]) for s in vseeds]),
                                               np.array([van[s][0] for s in vseeds]), seed=3).__dict__
            if arm in arms[task] and len(seeds) < SEEDS_REQUIRED:
                row["verdict"] = f"none yet ({len(seeds)} of {SEEDS_REQUIRED} seeds)"
            rows[arm] = row
        result[task] = {"vanilla": float(np.mean([v[0] for v in van.values()])) if van else math.nan,
                        "independent_seeds": sorted(ind), "arms": rows}
    return result


def gate_use(runs: list[Run]) -> dict[str, dict[str, Any]]:
    """task -> the share of the `dense` schedule's distillation steps the gate let through over a run, for the
    better and the worse student of each pair (by final return), averaged over the finished runs. Reported, not
    decided on: it says how hard the gate held each student back."""
    shares: dict[str, dict[str, list[float]]] = {}
    for r in runs:
        if r.status != "finished" or r.variant in (VANILLA, INDEPENDENT) or not r.distill_steps:
            continue
        if r.summary.get("distill_schedule") != "dense":
            raise SystemExit(f"stageC: {r.name} is not on the `dense` schedule the rule names")
        share = {s: r.distill_steps[s] / (DENSE_STEPS * max(len(r.distances[s][0]), 1)) for s in r.distill_steps}
        better = max(share, key=lambda s: r.metric(s, "final"))
        worse = min(share, key=lambda s: r.metric(s, "final"))
        task = shares.setdefault(r.env_id, {"better": [], "worse": []})
        task["better"].append(share[better])
        task["worse"].append(share[worse])
    return {task: {"runs": len(v["better"]), "better": float(np.mean(v["better"])), "worse": float(np.mean(v["worse"]))}
            for task, v in shares.items()}


def figure(arms: dict[str, dict[str, dict[int, list[float]]]], controls: dict[str, dict[str, dict[int, list[float]]]],
           path: Path) -> Path:
    """Every seed's final return per task (a pair: its students' mean): the PPO study's vanilla, independent pair
    and DPD arms beside this stage's arm(s). Each dot a seed, the bar its mean."""
    from study_figures import seed_strips  # studies/study_figures.py

    panels = {}
    for task in sorted(arms):
        shown = {**{k: v for k, v in controls.get(task, {}).items() if k in (VANILLA, INDEPENDENT, "dense1")},
                 **arms[task]}
        panels[task] = {f"{arm}\n({'this stage' if arm in arms[task] else 'PPO study'}, {len(v)} seeds)":
                        [float(np.mean(seed)) for seed in v.values()] for arm, v in shown.items()}
    seed_strips(panels, path, "Stage C, PPO: each dot a seed, the bar its mean; a pair: its students' mean",
                panel_title="{task}: final return at 1M total env steps", panel_size=(5.2, 3.8), label_size=7)
    return path


def gate_phases(sweeps: list[Path]) -> dict[str, float]:
    """The gate's value phase by phase (``distill/gate`` in every student's progress.csv), pooled over the sweeps'
    runs: how often it was nearly shut (< 0.1), fully open (> 0.9), and its median. Empty where no run has a gate."""
    values: list[float] = []
    for sweep in sweeps:
        for path in sorted(sweep.glob("runs/*/student*/progress.csv")):
            with open(path, newline="") as fh:
                values += [float(row["distill/gate"]) for row in csv.DictReader(fh) if row.get("distill/gate")]
    if not values:
        return {}
    g = np.array(values)
    return {"phases": len(g), "shut": float((g < 0.1).mean()), "open": float((g > 0.9).mean()),
            "median": float(np.median(g))}


def _last_eval(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(student steps, mean return) of one learner's evaluations.csv."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return (np.array([float(r["student_steps"]) for r in rows]), np.array([float(r["mean_return"]) for r in rows]))


def gate_vs_returns(sweeps: list[Path]) -> dict[str, Any]:
    """Did the gate open more where the peer WAS better? For every phase of every student: the gate's value, and the
    peer's last evaluation return minus the student's own (both at or before the phase's student steps; evaluations
    are deterministic, 5 episodes, so a proxy for "better here", not Monte-Carlo truth on the window's states).
    Returns the mean gate where the peer's return was higher / lower, and the AUC: the chance that a phase where the
    peer was better has the higher gate than one where it was worse (0.5: the gate ignores who is better),
    over all phases and over the half with the larger gaps."""
    gates: list[float] = []
    gaps: list[float] = []
    for sweep in sweeps:
        for run in sorted(sweep.glob("runs/*")):
            if not (run / "student0" / "evaluations.csv").is_file() or not (run / "student1").is_dir():
                continue
            evals = {s: _last_eval(run / s / "evaluations.csv") for s in ("student0", "student1")}
            for me, peer in (("student0", "student1"), ("student1", "student0")):
                with open(run / me / "progress.csv", newline="") as fh:
                    for row in csv.DictReader(fh):
                        if not row.get("distill/gate"):
                            continue
                        steps = float(row["time/total_timesteps"])
                        own = evals[me][1][np.searchsorted(evals[me][0], steps, side="right") - 1]
                        other = evals[peer][1][np.searchsorted(evals[peer][0], steps, side="right") - 1]
                        gates.append(float(row["distill/gate"]))
                        gaps.append(float(other - own))
    if not gates:
        return {}
    g, d = np.array(gates), np.array(gaps)

    def auc(mask: np.ndarray) -> float:
        better, worse = g[mask & (d > 0)], g[mask & (d < 0)]
        if not len(better) or not len(worse):
            return math.nan
        higher = (better[:, None] > worse[None, :]).mean() + 0.5 * (better[:, None] == worse[None, :]).mean()
        return float(higher)

    large = np.abs(d) >= np.median(np.abs(d))
    return {"phases": len(g), "peer_better": float(g[d > 0].mean()), "peer_worse": float(g[d < 0].mean()),
            "auc": auc(np.ones_like(large)), "auc_large_gaps": auc(large), "median_abs_gap": float(np.median(np.abs(d)))}


def _welch(d: dict[str, Any]) -> str:
    return f"{d['diff']:+.0f} [{d['welch_low']:+.0f}, {d['welch_high']:+.0f}], p_perm {d['permutation_p']:.3f}"


def markdown(result: dict[str, Any]) -> str:
    lines = ["# Stage C: DPD-PPO with the gate at 1M total env steps (verdict by RULES.md)", "",
             "Controls: the PPO study's vanilla and independent runs (every learner's final return from its tables). "
             "Only this stage's arm gets a verdict; the PPO study's arms are shown beside, against the same pairs.", ""]
    for task, t in result.items():
        lines += [f"## {task}", "", f"Vanilla (the PPO study): {t['vanilla']:.0f}.", "",
                  "| arm | from | seeds | students' mean | independent (same seeds) | distillation gain [Welch 95%], "
                  "permutation p | verdict | bootstrap 95% | worse student gain [Welch] | selection gain | "
                  "vs vanilla [Welch] |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for arm, r in t["arms"].items():
            b = r["bootstrap"]
            boot = "—" if math.isnan(b[1]) else f"{b[0]:+.0f} [{b[1]:+.0f}, {b[2]:+.0f}]"
            s = r["selection_gain"]
            mine = r["source"] == "this stage"
            lines.append(f"| {arm} | {r['source']} | {len(r['seeds'])} | {r['students_mean']:.0f} | "
                         f"{r['independent']:.0f} | {_welch(r['distillation_gain'])} | "
                         f"{'**' + r['verdict'] + '**' if mine else '(not judged)'} | {boot} | "
                         f"{_welch(r['worse_student_gain'])} | {s[0]:+.0f} [{s[1]:+.0f}, {s[2]:+.0f}] | "
                         f"{_welch(r['vs_vanilla']) if 'vs_vanilla' in r else '—'} |")
        lines.append("")
        g = t.get("gate_use")
        if g:
            lines += [f"The gate let through {100 * g['better']:.0f}% of the `dense` schedule's distillation steps for "
                      f"the better student of a pair (by final return) and {100 * g['worse']:.0f}% for the worse one "
                      f"(mean over {g['runs']} runs).", ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweeps", nargs="+", type=Path)
    parser.add_argument("--controls", type=Path, default=CONTROLS)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    runs, _ = load_sweeps(args.sweeps)
    arms = run_finals(runs)
    if not arms:
        raise SystemExit("stageC: no finished runs in " + ", ".join(map(str, args.sweeps)))
    controls = read_finals(args.controls)
    result = analyse(arms, controls)
    for task, use in gate_use(runs).items():
        if task in result:
            result[task]["gate_use"] = use
    args.out.mkdir(parents=True, exist_ok=True)
    text = markdown(result)
    phases = gate_phases(args.sweeps)
    if phases:
        result["gate_phases"] = phases
        text += (f"Phase by phase (all {phases['phases']:,} phases of every run) the gate was nearly shut (< 0.1) on "
                 f"{100 * phases['shut']:.0f}% and fully open (> 0.9) on {100 * phases['open']:.0f}%; median "
                 f"{phases['median']:.2f}.\n")
    versus = gate_vs_returns(args.sweeps)
    if versus:
        result["gate_vs_returns"] = versus
        text += (f"\nDid the gate open more where the peer's last evaluation return was higher than the student's own? "
                 f"Mean gate {versus['peer_better']:.2f} there against {versus['peer_worse']:.2f} where it was lower; "
                 f"AUC {versus['auc']:.2f} over all {versus['phases']:,} phases, {versus['auc_large_gaps']:.2f} over the "
                 f"half with gaps of at least {versus['median_abs_gap']:.0f} (0.5: the gate ignores who is better).\n")
    (args.out / "stageC.json").write_text(json.dumps(result, indent=1, default=float))
    (args.out / "stageC.md").write_text(text + "\n![every seed's final return](stageC.png)\n")
    figure(arms, controls, args.out / "stageC.png")
    print(text)


if __name__ == "__main__":
    main()
