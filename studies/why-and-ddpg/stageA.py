"""Stage A's tables and figure, and stage B's extra arm by the rule fixed in RULES.md (before any run).

    python studies/why-and-ddpg/stageA.py runs/why-A-ddpg runs/why-A-ppo --out DIR [--write-arm FILE]

Reads ``RUN/calibration/calibration.json`` of every run of the sweep folders (``dpd calibrate RUN``), and writes
``DIR/stageA.md`` (per algorithm, task and snapshot: each estimator's sign agreement, rank correlation, gate against
the true share, weight on truly-worse states; each critic's bias and offset beside the true gap), ``DIR/stageA.png``
(sign agreement per estimator) and ``DIR/stageA.json``; prints the arm the rule picks and whether stage C is earned.
``--write-arm FILE`` writes that arm's stage-B sweep (seeds 0-7) or, where the rule drops the arm, the sweep of
seeds 8-9 of the three required arms. ``--write-stage-c FILE`` writes stage C's sweep where the PPO calibrations earn
it (DPD-PPO as stage A's PPO pairs, with the better PPO estimator and the gate, seeds 0-7; the PPO study's
controls are its comparison), and refuses in one line where they do not.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

ESTIMATORS = ("two_critics", "debiased", "own_critic")
#: the rule's thresholds (RULES.md)
MARGIN = 0.05
GATE_LEVEL = 0.8
STAGE_B_OVERRIDES = ["eval_freq=20000", "eval_episodes=5", "checkpoint_freq=100000", "checkpoint_replay_buffer=true",
                     "snapshots=[0.2,0.5,1.0]"]


def load(sweeps: list[Path]) -> list[dict[str, Any]]:
    found = []
    for sweep in sweeps:
        for run in sorted((sweep / "runs").iterdir()):
            path = run / "calibration" / "calibration.json"
            if path.is_file():
                result = json.loads(path.read_text())
                result["seed"] = int(run.name.rsplit("__s", 1)[1])
                found.append(result)
            else:
                print(f"stageA: {run.name} has no calibration (run dpd calibrate on it)")
    return found


def pool(windows: list[dict[str, Any]], name: str) -> dict[str, float]:
    """Sign agreement over every resolved state of the windows, mean rho, gate and weights."""
    rows = [w["estimators"][name] for w in windows if name in w["estimators"]]
    if not rows:
        return {}
    n = sum(r["resolved"] for r in rows)
    agree = sum(r["sign_agreement"] * r["resolved"] for r in rows if r["resolved"])
    true_share = [r.get("true_gate", w["true_peer_better_share"]) for w, r in
                  zip([w for w in windows if name in w["estimators"]], rows, strict=True)]
    return {"sign_agreement": agree / n if n else math.nan, "resolved": n,
            "states": sum(w["states"] for w in windows if name in w["estimators"]),
            "rho": _mean([r["spearman"] for r in rows]), "gate": _mean([r["gate"] for r in rows]),
            "true_share": _mean(true_share), "on_worse": _mean([r["weight"]["on_truly_worse"] for r in rows]),
            "windows": len(rows)}


def _mean(values: list[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def _f(x: float, digits: int = 2) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def critic_rows(windows: list[dict[str, Any]]) -> dict[str, float]:
    """Critic bias and rho against their own Monte-Carlo values; |offset difference| against |true gap|."""
    bias, rho, offset_gap, true_gap = [], [], [], []
    for w in windows:
        me, peer = w["student"], w["peer"]
        for c in w["critic"].values():
            bias.append(c["bias"])
            rho.append(c["spearman"])
        offset_gap.append(abs(w["critic"][peer]["window_offset"] - w["critic"][me]["window_offset"]))
        true_gap.append(abs(w["true_gap"]))
    return {"bias": _mean(bias), "abs_bias": _mean([abs(b) for b in bias]), "rho": _mean(rho),
            "offset_difference": _mean(offset_gap), "true_gap": _mean(true_gap),
            "offset_larger_share": float(np.mean([o > t for o, t in zip(offset_gap, true_gap, strict=True)]))}


def choose_arm(ddpg: dict[str, dict[str, float]]) -> dict[str, Any]:
    """RULES.md, 'The arm stage B adds'."""
    paper = ddpg["two_critics"]["sign_agreement"]
    best = max(("own_critic", "debiased"), key=lambda e: ddpg.get(e, {}).get("sign_agreement", -1.0))
    estimator = best if ddpg[best]["sign_agreement"] >= paper + MARGIN else "two_critics"
    gate = ddpg[estimator]["sign_agreement"] >= GATE_LEVEL
    dropped = estimator == "two_critics" and not gate
    return {"two_critics": paper, "best_other": best, "best_other_agreement": ddpg[best]["sign_agreement"],
            "estimator": estimator, "gate": gate, "dropped": dropped}


def arm_sweep(choice: dict[str, Any]) -> str:
    header = "# Stage B's extra arm, written by studies/why-and-ddpg/stageA.py from stage A by the rule in RULES.md.\n"
    if choice["dropped"]:
        return header + ("# The rule dropped the arm (no estimator beat two_critics by 0.05, sign agreement under 0.8):"
                         " its compute goes to seeds 8-9 of the three required arms.\n"
                         "envs: [HalfCheetah-v5, Walker2d-v5]\nalgos: [ddpg]\ntotal_steps: 1000000\npreset: paper\n"
                         "seeds: [8, 9]\nalphas: [1.0]\nvariants: [vanilla, independent, dpd]\n"
                         f"overrides: [{', '.join(_quote(o) for o in STAGE_B_OVERRIDES)}]\n")
    name = choice["estimator"].replace("_", "") + ("-gate" if choice["gate"] else "")
    extra = [f"xi_estimator={choice['estimator']}"] + (["distill_gate=advantage"] if choice["gate"] else [])
    return header + ("envs: [HalfCheetah-v5, Walker2d-v5]\nalgos: [ddpg]\ntotal_steps: 1000000\npreset: paper\n"
                     "seeds: [0, 1, 2, 3, 4, 5, 6, 7]\nalphas: [1.0]\n"
                     f"variants: [{name}]\narms:\n  {name}: [{', '.join(extra)}]\n"
                     f"overrides: [{', '.join(_quote(o) for o in STAGE_B_OVERRIDES)}]\n")


#: the PPO study's controls (studies/when-dpd-helps/stage2-controls.yaml) ran with these overrides; stage C's DPD
#: arm differs from stage A's PPO pairs only in the estimator, the gate and the seeds
STAGE_C_OVERRIDES = ["eval_freq=20000", "eval_episodes=5", "checkpoint_freq=100000"]


def stage_c_sweep(decision: dict[str, Any]) -> str:
    """RULES.md, 'Stage C': the gate on PPO with the better of two_critics / debiased, 1M total steps, seeds 0-7."""
    if not decision["earned"]:
        raise ValueError(f"stage C is not earned: best PPO sign agreement {decision['agreement']:.3f} < {GATE_LEVEL}")
    name = "gate-" + decision["estimator"].replace("_", "")
    return ("# Stage C (the gate on PPO), written by studies/why-and-ddpg/stageA.py from stage A's PPO calibrations\n"
            f"# by the rule in RULES.md: best PPO estimator {decision['estimator']} at sign agreement "
            f"{decision['agreement']:.3f} (>= {GATE_LEVEL}).\n"
            "# Compared with the PPO study's controls (vanilla and the independent pair, seeds 0-7, docs/reproduction.md\n"
            "# section 1) after studies/same_training.py shows their training commit and this one train alike.\n"
            "envs: [HalfCheetah-v5, Walker2d-v5]\nalgos: [ppo]\ntotal_steps: 1000000\npreset: paper\n"
            "seeds: [0, 1, 2, 3, 4, 5, 6, 7]\nalphas: [1.0]\n"
            f"variants: [{name}]\narms:\n  {name}: [xi_estimator={decision['estimator']}, distill_gate=advantage]\n"
            f"overrides: [{', '.join(STAGE_C_OVERRIDES)}]\n")


def _quote(o: str) -> str:
    return f'"{o}"' if "[" in o else o


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    algos = [a for a in ("ppo", "ddpg") if a in summary]
    fig, axes = plt.subplots(1, len(algos), figsize=(5.5 * len(algos), 3.8), squeeze=False)
    for ax, algo in zip(axes[0], algos, strict=True):
        cells = summary[algo]["cells"]
        labels = list(cells)
        width = 0.8 / len(ESTIMATORS)
        for k, name in enumerate(ESTIMATORS):
            ys = [cells[c].get(name, {}).get("sign_agreement", math.nan) for c in labels]
            ax.bar(np.arange(len(labels)) + k * width, ys, width, label=name)
        ax.axhline(0.5, color="k", linestyle="--", linewidth=0.8)
        ax.axhline(GATE_LEVEL, color="0.5", linestyle=":", linewidth=0.8)
        ax.set_xticks(np.arange(len(labels)) + width, labels, rotation=30, ha="right", fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_ylabel("sign agreement with Monte-Carlo truth")
        ax.set_title(f"{algo.upper()}: is xi's sign right? (0.5 = coin flip)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweeps", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--write-arm", type=Path)
    parser.add_argument("--write-stage-c", type=Path)
    args = parser.parse_args()
    results = load(args.sweeps)
    by_algo: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        by_algo[r["algo"]].extend({**w, "env_id": r["env_id"], "seed": r["seed"]} for w in r["windows"])
    summary: dict[str, Any] = {}
    lines = ["# Stage A: xi against Monte-Carlo truth", "",
             f"Calibrated runs: {len(results)}. Sign agreement is pooled over the resolved states of every window "
             "(each student distilling from its peer, at each snapshot); own_critic against its own truth.", ""]
    for algo, windows in sorted(by_algo.items(), key=lambda kv: kv[0] != "ppo"):
        pooled = {name: pool(windows, name) for name in ESTIMATORS if pool(windows, name)}
        cells: dict[str, dict[str, Any]] = {}
        for env in sorted({w["env_id"] for w in windows}):
            for snap in sorted({w["snapshot_steps"] for w in windows if w["env_id"] == env}):
                sub = [w for w in windows if w["env_id"] == env and w["snapshot_steps"] == snap]
                cells[f"{env.split('-')[0]} {2 * snap // 1000}k"] = {
                    **{name: pool(sub, name) for name in ESTIMATORS if pool(sub, name)}, "critic": critic_rows(sub),
                    "windows": len(sub), "resolved_share": sum(w["resolved"] for w in sub) / sum(w["states"] for w in sub),
                    "rollouts": sorted({w["rollouts"] for w in sub})}
        summary[algo] = {"pooled": pooled, "cells": cells, "critic": critic_rows(windows)}
        lines += [f"## {algo.upper()}", "", "| estimator | sign agreement | resolved states | mean rho | gate (est.) |"
                  " true share peer better | weight on truly worse |", "|---|---|---|---|---|---|---|"]
        for name, p in pooled.items():
            lines.append(f"| {name} | **{_f(p['sign_agreement'], 3)}** | {p['resolved']}/{p['states']} | {_f(p['rho'])} |"
                         f" {_f(p['gate'])} | {_f(p['true_share'])} | {_f(p['on_worse'])} |")
        c = summary[algo]["critic"]
        lines += ["", f"Critics: mean bias {_f(c['bias'], 1)} (mean |bias| {_f(c['abs_bias'], 1)}), mean rank correlation "
                  f"with their own Monte-Carlo value {_f(c['rho'])}; the two critics' offsets differ by "
                  f"{_f(c['offset_difference'], 1)} on average, the students' true value gap is {_f(c['true_gap'], 1)}"
                  f" (offset difference larger in {_f(100 * c['offset_larger_share'], 0)}% of windows).", "",
                  "| task, total steps | windows | resolved | K | " + " | ".join(f"{e} agreement / rho" for e in ESTIMATORS)
                  + " | critic bias | offset diff. vs true gap |", "|---" * (6 + len(ESTIMATORS)) + "|"]
        for label, cell in cells.items():
            est = " | ".join(f"{_f(cell[e]['sign_agreement'])} / {_f(cell[e]['rho'])}" if e in cell else "—"
                             for e in ESTIMATORS)
            cr = cell["critic"]
            lines.append(f"| {label} | {cell['windows']} | {_f(100 * cell['resolved_share'], 0)}% | "
                         f"{','.join(map(str, cell['rollouts']))} | {est} | {_f(cr['bias'], 1)} | "
                         f"{_f(cr['offset_difference'], 1)} vs {_f(cr['true_gap'], 1)} |")
        lines.append("")
    decision: dict[str, Any] = {}
    if "ddpg" in summary:
        decision["arm"] = choose_arm(summary["ddpg"]["pooled"])
        a = decision["arm"]
        lines += ["## The rule's decisions", "",
                  f"- Stage B's extra arm: best of own_critic / debiased is {a['best_other']} at "
                  f"{_f(a['best_other_agreement'], 3)} against two_critics' {_f(a['two_critics'], 3)} (needs +{MARGIN}) ->"
                  f" estimator {a['estimator']}, gate {'yes' if a['gate'] else 'no'} (needs >= {GATE_LEVEL})"
                  + (" -> the arm is dropped; its compute goes to seeds 8-9 of the required arms." if a["dropped"] else ".")]
    if "ppo" in summary:
        ppo = summary["ppo"]["pooled"]
        best = max(("two_critics", "debiased"), key=lambda e: ppo[e]["sign_agreement"])
        earned = ppo[best]["sign_agreement"] >= GATE_LEVEL
        decision["stage_c"] = {"estimator": best, "agreement": ppo[best]["sign_agreement"], "earned": earned}
        lines.append(f"- Stage C (the gate on PPO): best PPO estimator {best} at {_f(ppo[best]['sign_agreement'], 3)}"
                     f" (needs >= {GATE_LEVEL}) -> {'earned' if earned else 'not earned'}.")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "stageA.md").write_text("\n".join(lines) + "\n")
    (args.out / "stageA.json").write_text(json.dumps({"summary": summary, "decision": decision}, indent=1))
    plot(summary, args.out / "stageA.png")
    print("\n".join(lines))
    if args.write_arm is not None and "arm" in decision:
        args.write_arm.write_text(arm_sweep(decision["arm"]))
        print(f"stageA: wrote {args.write_arm}")
    if args.write_stage_c is not None:
        if "stage_c" not in decision:
            raise SystemExit("stageA: no PPO calibrations, so no stage C decision (calibrate runs/why-A-ppo first)")
        if not decision["stage_c"]["earned"]:
            raise SystemExit(f"stageA: stage C is not earned (best PPO sign agreement "
                             f"{decision['stage_c']['agreement']:.3f} < {GATE_LEVEL}); no sweep written")
        args.write_stage_c.write_text(stage_c_sweep(decision["stage_c"]))
        print(f"stageA: wrote {args.write_stage_c}")


if __name__ == "__main__":
    main()
