"""Would a sharper gate help? The gate against Monte-Carlo truth, window by window, from stage A's calibrations.

    python studies/why-and-ddpg/gate_windows.py runs/why-A-ppo runs/why-A-ddpg --out docs/results/why-and-ddpg/gate-windows

`distill_gate=advantage` lets a phase take the share of the peer's window where xi > 0 of its steps. Stage C found
it leaning the right way but staying about half open for the student ahead. This asks, on stage A's calibrated
windows (a window: one student, one snapshot, N states of the peer's recent experience, each with the Monte-Carlo
truth), what the gate would have been where the peer was truly worse on the whole (the true mean gap < 0) and where
it was truly better, for each estimator; and the same for the sharpest alternative, a gate that is 1 where the
window's mean xi is positive and 0 where it is not. Also: how well the gate's share tracks the true share of states
where the peer is better (Pearson r over windows). Reads every RUN/calibration/calibration.json under the sweeps.
Writes OUT/gate_windows.md and OUT/gate_windows.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np


def load_windows(sweeps: list[Path]) -> dict[str, list[dict[str, Any]]]:
    """algo -> every calibrated window (calibration.json's ``windows``) of the sweeps' runs."""
    out: dict[str, list[dict[str, Any]]] = {}
    for sweep in sweeps:
        for path in sorted(sweep.glob("runs/*/calibration/calibration.json")):
            data = json.loads(path.read_text())
            out.setdefault(data["algo"], []).extend(data["windows"])
    if not out:
        raise SystemExit("gate_windows: no RUN/calibration/calibration.json under " + ", ".join(map(str, sweeps)))
    return out


def analyse(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per estimator: the share gate and the mean-sign gate where the peer is truly worse / better on the whole."""
    gap = np.array([w["true_gap"] for w in windows])
    share = np.array([w["true_peer_better_share"] for w in windows])
    worse, better = gap < 0, gap > 0
    result: dict[str, Any] = {"windows": len(windows), "truly_worse": int(worse.sum()), "truly_better": int(better.sum())}
    for name in windows[0]["estimators"]:
        gate = np.array([w["estimators"][name]["gate"] for w in windows])
        sign = (np.array([w["estimators"][name]["mean"] for w in windows]) > 0).astype(float)
        result[name] = {
            "share_gate_when_worse": float(gate[worse].mean()) if worse.any() else float("nan"),
            "share_gate_when_better": float(gate[better].mean()) if better.any() else float("nan"),
            "sign_gate_when_worse": float(sign[worse].mean()) if worse.any() else float("nan"),
            "sign_gate_when_better": float(sign[better].mean()) if better.any() else float("nan"),
            "share_r": float(np.corrcoef(gate, share)[0, 1]) if len(windows) > 2 else float("nan"),
        }
    return result


def markdown(results: dict[str, dict[str, Any]]) -> str:
    lines = ["# The gate against Monte-Carlo truth, window by window (stage A's calibrations)", "",
             "A gate of 0 where the peer is truly worse on the whole and 1 where it is truly better would be perfect. "
             "'share': the gate dpd has (`distill_gate=advantage`, the share of the window where xi > 0); 'sign': 1 "
             "where the window's mean xi > 0, else 0. r: Pearson's r of the share gate with the true share of states "
             "where the peer is better.", "",
             "| algorithm | estimator | windows (truly worse / better) | share gate: worse / better | "
             "sign gate: worse / better | r |", "|---|---|---|---|---|---|"]
    for algo, r in results.items():
        for name, e in r.items():
            if not isinstance(e, dict):
                continue
            lines.append(f"| {algo} | {name} | {r['windows']} ({r['truly_worse']} / {r['truly_better']}) | "
                         f"{e['share_gate_when_worse']:.2f} / {e['share_gate_when_better']:.2f} | "
                         f"{e['sign_gate_when_worse']:.2f} / {e['sign_gate_when_better']:.2f} | {e['share_r']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sweeps", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    results = {algo: analyse(ws) for algo, ws in load_windows(args.sweeps).items()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gate_windows.json").write_text(json.dumps(results, indent=1))
    text = markdown(results)
    (args.out / "gate_windows.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
