"""Every folder output a dpd command writes, by the command's name (for the one-writer tests)."""

from __future__ import annotations

import glob
from pathlib import Path

from dpd.run_files import RUN_OUTPUT, Output, result_output

#: the name ``dpd evaluate --out FILE`` writes in the one-writer tests
EVALUATE_NAME = "res[1].json"


def all_outputs() -> dict[str, Output]:
    from dpd.evaluation import _is_reevaluation
    from dpd.experiments import analyze, calibrate
    from dpd.experiments.report import markdown
    from dpd.experiments.sweep import SWEEP_OUTPUT

    return {"analyze": analyze.OUTPUT, "calibrate": calibrate.OUTPUT, "report": markdown.OUTPUT, "run": RUN_OUTPUT,
            "sweep": SWEEP_OUTPUT,
            "evaluate": result_output("evaluate", (glob.escape(EVALUATE_NAME),), ours=_is_reevaluation)}


#: what each command writes into its --out, written here from the commands' docs (not read from the code's
#: patterns, so a pattern dropped from the code is caught; test_one_writer checks report's against a real report)
WRITES = {"analyze": ["analysis.json", "figure3.png"],
          "calibrate": ["calibration.json", "calibration_states.npz", "calibration.md", "calibration.png"],
          "report": ["report.md", "curves_CartPole-v1_ppo.png", "arms_CartPole-v1_ppo.png", "aggregates_ppo.json"],
          "evaluate": [EVALUATE_NAME], "run": [], "sweep": []}


def concrete_names(kind: str) -> list[str]:
    """The files ``dpd <kind>`` writes into its --out."""
    return WRITES[kind]


def tree(folder: Path) -> dict[str, object]:
    """Every entry under ``folder``: a file's bytes, a link's target, a folder's marker."""
    found: dict[str, object] = {}
    if not folder.exists():
        return found
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        found[rel] = ("link", str(path.readlink())) if path.is_symlink() else \
            ("dir",) if path.is_dir() else ("file", path.read_bytes())
    return found
