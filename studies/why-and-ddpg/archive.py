"""Keep a study's finished runs across machines and over time without their heavy files.

    python studies/why-and-ddpg/archive.py save RUNS_DIR ARCHIVE.tar.gz SWEEP_NAME...
    python studies/why-and-ddpg/archive.py restore ARCHIVE.tar.gz RUNS_DIR

``save`` packs, for each sweep folder RUNS_DIR/SWEEP_NAME, its sweep.yaml and every FINISHED run's small files:
config.yaml, summary.json, the .dpd-run marker, each learner's evaluations.csv and its progress.csv cut to the columns
``dpd report`` reads (the pair's action distance, the distillation steps, total env steps); a run's calibration
results (calibration.json, .md) too. No model, checkpoint, snapshot or TensorBoard file. ``restore`` unpacks them into
RUNS_DIR: ``dpd report`` reads them, and ``dpd sweep`` with the same file skips them as finished and trains only the
rest (a study that outlives one machine).
"""

from __future__ import annotations

import csv
import io
import sys
import tarfile
from pathlib import Path

from dpd.names import CALIBRATION_DIR, CONFIG_FILE, EVAL_FILE, MARKER_FILE, PROGRESS_FILE, SUMMARY_FILE, SWEEP_FILE, Log

KEEP_COLUMNS = (Log.TOTAL_STEPS, Log.PAIR_DISTANCE, Log.PHASE_STEPS, Log.PAIR_XI_MEAN, Log.PAIR_PEER_BETTER)


def _trimmed_progress(path: Path) -> bytes:
    out = io.StringIO()
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    keep = [c for c in KEEP_COLUMNS if rows and c in rows[0]]
    writer = csv.DictWriter(out, fieldnames=keep, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def save(runs_dir: Path, archive: Path, sweeps: list[str]) -> None:
    def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    count = 0
    archive.parent.mkdir(parents=True, exist_ok=True)  # a new study's first archive: its results folder is new too
    with tarfile.open(archive, "w:gz") as tar:
        for sweep in sweeps:
            folder = runs_dir / sweep
            add(tar, f"{sweep}/{SWEEP_FILE}", (folder / SWEEP_FILE).read_bytes())
            for run in sorted((folder / "runs").iterdir()):
                if not (run / SUMMARY_FILE).is_file():
                    continue
                base = f"{sweep}/runs/{run.name}"
                for name in (CONFIG_FILE, SUMMARY_FILE, MARKER_FILE):
                    add(tar, f"{base}/{name}", (run / name).read_bytes())
                for learner in sorted(p for p in run.iterdir() if p.is_dir() and (p / EVAL_FILE).is_file()):
                    add(tar, f"{base}/{learner.name}/{EVAL_FILE}", (learner / EVAL_FILE).read_bytes())
                    if (learner / PROGRESS_FILE).is_file():
                        add(tar, f"{base}/{learner.name}/{PROGRESS_FILE}", _trimmed_progress(learner / PROGRESS_FILE))
                for name in ("calibration.json", "calibration.md"):
                    if (run / CALIBRATION_DIR / name).is_file():
                        add(tar, f"{base}/{CALIBRATION_DIR}/{name}", (run / CALIBRATION_DIR / name).read_bytes())
                count += 1
    print(f"{archive}: {count} finished runs of {', '.join(sweeps)}")


#: what an archive of small files may hold: bounds far above what ``save`` writes (a progress.csv of a 5M-step run
#: cut to its columns is ~1 MB), so a damaged or hostile archive is refused before anything is written
MAX_MEMBER_BYTES = 64 << 20
MAX_TOTAL_BYTES = 2 << 30
MAX_NAME_BYTES = 255


def _refusal(member: tarfile.TarInfo) -> str | None:
    """Why ``member`` may not be restored (None: it may)."""
    name = member.name
    parts = Path(name).parts
    if not member.isfile():
        return None  # folders are made as needed; links and devices are skipped below
    if name.startswith("/") or ".." in parts or not parts:
        return f"member {name[:80]!r} leaves the target folder"
    if any(len(part.encode()) > MAX_NAME_BYTES for part in parts):
        return f"member {name[:60]!r}... has a name of more than {MAX_NAME_BYTES} bytes"
    if not all(part.isprintable() for part in parts):
        return f"member {name[:80]!r} has control characters in its name"
    if member.size > MAX_MEMBER_BYTES:
        return f"member {name[:80]!r} has {member.size} bytes (a run's small files are far below {MAX_MEMBER_BYTES})"
    return None


def restore(archive: Path, runs_dir: Path) -> None:
    """Unpack ``archive``'s files into ``runs_dir``: every member checked before anything is written (names,
    sizes), no link in the target followed (a file or link already there wins, as a run trained on this machine)."""
    import os

    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.isfile()]
        for m in tar.getmembers():
            why = _refusal(m)
            if why is not None:
                sys.exit(f"archive.py: {archive}: {why}; nothing restored")
        if sum(m.size for m in members) > MAX_TOTAL_BYTES:
            sys.exit(f"archive.py: {archive}: its files hold more than {MAX_TOTAL_BYTES} bytes; nothing restored")
        root = runs_dir.resolve()
        restored = 0
        for m in members:
            target = runs_dir / m.name
            if os.path.lexists(target):
                continue  # a run already here (trained on this machine), or a link: never written through
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.parent.resolve().is_relative_to(root):  # a folder on the way is a link out of the target
                sys.exit(f"archive.py: {target.parent} leads out of {runs_dir} (a symbolic link); stopped")
            fh = tar.extractfile(m)
            assert fh is not None
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
            with os.fdopen(fd, "wb") as out:
                out.write(fh.read())
            restored += 1
    print(f"{runs_dir}: restored {restored} files from {archive}")


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "save":
        save(Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4:])
    elif len(sys.argv) == 4 and sys.argv[1] == "restore":
        restore(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        sys.exit(__doc__)
