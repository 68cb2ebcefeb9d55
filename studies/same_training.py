"""Do two dpd checkouts train bit-identically? Run before mixing runs of two commits in one study.

    python studies/same_training.py OLD_DPD NEW_DPD [--out DIR]

OLD_DPD and NEW_DPD are the `dpd` executables of the two checkouts (e.g. ../study/.venv/bin/dpd and
.venv/bin/dpd). Each trains the same four short runs (HalfCheetah-v5, PPO paper preset, sequential, seed 1):
`dense` DPD (3 iterations per student), `authors` DPD (5 iterations, so one distillation event), the independent
pair and vanilla. It then compares every saved policy and optimiser state (final model and every snapshot) byte
for byte, and the evaluation returns (wall-clock columns excluded). Exit 0 when all are identical, 1 otherwise;
one line per file either way. Cost: ~3 min per checkout on one core.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

COMMON = [
    "--env", "HalfCheetah-v5", "--algo", "ppo", "--preset", "paper", "--seed", "1", "--sequential",
    "--no-progress", "--set", "eval_freq=4096", "--set", "eval_episodes=2", "--set", "torch_threads=1",
]
RUNS = {  # name -> the arguments that make the run
    "dense": ["--method", "dpd", "--total-steps", "12288"],
    "authors": ["--method", "dpd", "--total-steps", "20480", "--set", "distill_schedule=authors"],
    "independent": ["--method", "independent", "--total-steps", "8192"],
    "vanilla": ["--method", "vanilla", "--total-steps", "8192"],
}
ZIP_MEMBERS = ("policy.pth", "policy.optimizer.pth")
WALL_CLOCK_COLUMNS = {"time_s"}  # of evaluations.csv (dpd.run_files.EVAL_COLUMNS; not imported: either checkout may run this)


def train_all(dpd: str, root: Path) -> None:
    for name, args in RUNS.items():
        subprocess.run([dpd, "train", *COMMON, *args, "--out", str(root / name)], check=True,
                       stdout=subprocess.DEVNULL)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def eval_rows(path: Path) -> list[dict[str, str]]:
    """The evaluation rows without their wall-clock columns (the only thing two identical trainings differ in)."""
    with path.open(newline="") as f:
        return [{k: v for k, v in row.items() if k not in WALL_CLOCK_COLUMNS} for row in csv.DictReader(f)]


def compare(old: Path, new: Path) -> bool:
    same = True
    for zip_old in sorted(old.rglob("*.zip")):
        rel = zip_old.relative_to(old)
        zip_new = new / rel
        if not zip_new.exists():
            print(f"MISSING {rel} in the new checkout's runs")
            same = False
            continue
        with zipfile.ZipFile(zip_old) as a, zipfile.ZipFile(zip_new) as b:
            for member in ZIP_MEMBERS:
                equal = digest(a.read(member)) == digest(b.read(member))
                same &= equal
                print(f"{'same' if equal else 'DIFFERENT'} {rel}:{member}")
    for csv_old in sorted(old.rglob("evaluations.csv")):
        rel = csv_old.relative_to(old)
        equal = (new / rel).exists() and eval_rows(csv_old) == eval_rows(new / rel)
        same &= equal
        print(f"{'same' if equal else 'DIFFERENT'} {rel} (returns)")
    return same


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old_dpd")
    parser.add_argument("new_dpd")
    parser.add_argument("--out", type=Path, default=None, help="where the runs go (default: a temporary folder)")
    args = parser.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="dpd-same-training-"))
    train_all(args.old_dpd, root / "old")
    train_all(args.new_dpd, root / "new")
    same = compare(root / "old", root / "new")
    print("identical training" if same else "the two checkouts train DIFFERENTLY: do not mix their runs", file=sys.stderr)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
