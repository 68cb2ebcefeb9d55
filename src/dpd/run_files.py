"""The run folder: safe creation, atomic writes of small files, and the per-learner evaluation log."""

from __future__ import annotations

import csv
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import yaml

from dpd.errors import DPDUserError

CONFIG_FILE = "config.yaml"
#: written first into every run folder dpd creates: only a folder carrying it may be replaced by --overwrite
MARKER_FILE = ".dpd-run"
#: what a run folder may hold at its top level (besides the learners' folders): anything else is not dpd's
_RUN_ENTRIES = {CONFIG_FILE, MARKER_FILE, "summary.json", "checkpoint.pt", ".lock", "reevaluation.json",
                "analysis", "calibration", "error.txt", "student0", "student1", "vanilla"}
SUMMARY_FILE = "summary.json"
#: a learner's files: its SB3 model, SB3's VecNormalize pickle (written for users' tools; dpd never unpickles it)
#: and the same statistics as plain JSON (what dpd reads: opening a run folder executes nothing)
MODEL_FILE = "model.zip"
VECNORMALIZE_PICKLE = "vecnormalize.pkl"
VECNORMALIZE_JSON = "vecnormalize.json"
EVAL_FILE = "evaluations.csv"
#: in a snapshot folder: the learner's recent-state window at that moment (``RecentStates.recent_window`` plus its
#: ``return_std`` and ``gamma``), plain numpy arrays (read with ``allow_pickle=False``); ``dpd calibrate`` reads it
WINDOW_FILE = "window.npz"
EVAL_COLUMNS = ["student_steps", "total_env_steps", "mean_return", "std_return", "mean_length", "time_s"]


def check_run_dir(out: str | os.PathLike[str], overwrite: bool) -> Path:
    """Check that ``out`` may be used as a run folder, WITHOUT writing anything. Raises DPDUserError."""
    path = Path(out)
    too_long = [part for part in path.parts if len(part.encode()) > 255]
    if too_long:
        raise DPDUserError(f"--out: the name {too_long[0][:40]}... has {len(too_long[0].encode())} bytes; a file name"
                           " may have at most 255: choose a shorter --out")
    if path.exists() and not path.is_dir():
        raise DPDUserError(f"--out {path} exists and is not a folder; choose another --out")
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise DPDUserError(f"--out {path} is not empty; pass --overwrite to replace it, or choose another --out")
        foreign = _foreign_entries(path)
        if foreign is not None:
            raise DPDUserError(f"--out {path} is not a dpd run folder ({foreign}); refusing to overwrite it:"
                               " choose another --out")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise DPDUserError(f"cannot write to --out {path}: {existing} is not a folder; choose another --out")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DPDUserError(f"cannot write to --out {path}: {existing} is not writable; choose another --out")
    return path


def _foreign_entries(path: Path) -> str | None:
    """Why ``path`` is not provably a dpd run folder, or None if it is (marker present, every entry dpd's own)."""
    if not (path / MARKER_FILE).is_file() or (path / MARKER_FILE).is_symlink():
        return f"no {MARKER_FILE} marker"
    for entry in path.iterdir():
        name = entry.name
        if entry.is_symlink():
            return f"{name} is a symbolic link"
        if name not in _RUN_ENTRIES and not (name.startswith(".") and name.endswith(".tmp")):
            return f"it holds {name}"
    return None


def remove_stale_temporaries(run_dir: Path) -> None:
    """Delete the ``.NAME.*.tmp`` files an atomic write killed half-way left behind (call with the run locked)."""
    for tmp in run_dir.rglob(".*.tmp"):
        if tmp.is_file() and not tmp.is_symlink():
            tmp.unlink(missing_ok=True)


def refuse_links(run_dir: Path) -> None:
    """Raise DPDUserError if anything inside ``run_dir`` is a symbolic link: dpd writes into run folders and never
    follows a link there (a planted link would make it overwrite a file elsewhere)."""
    for root, dirs, files in os.walk(run_dir):
        for name in dirs + files:
            if os.path.islink(os.path.join(root, name)):
                raise DPDUserError(f"{os.path.join(root, name)} is a symbolic link; dpd does not write through links"
                                   " in a run folder: remove it")


LOCK_FILE = ".lock"


class RunLock:
    """An exclusive lock on a run folder, held while a process writes it (a second writer gets a one-line error)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_FILE
        self._fh: Any = None

    def acquire(self) -> RunLock:
        try:  # never through a link: a planted .lock -> ~/file would be overwritten with our pid
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise DPDUserError(f"cannot lock {self.path}: {exc.strerror or exc} (a symbolic link? remove it)") from None
        fh = os.fdopen(fd, "r+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            owner = fh.read().strip() or "?"
            fh.close()
            raise DPDUserError(f"{self.path.parent} is being written by another dpd process (pid {owner}); wait for it"
                               " or choose another --out") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def create_run_dir(out: str | os.PathLike[str], overwrite: bool) -> tuple[Path, RunLock]:
    """Create (or, with ``overwrite``, empty) the run folder after :func:`check_run_dir` passed; returns it locked."""
    path = check_run_dir(out, overwrite)
    try:
        if path.is_dir() and any(path.iterdir()):
            RunLock(path).acquire().release()  # refuse to delete a folder another process is writing
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / MARKER_FILE).touch()
    except OSError as exc:
        raise DPDUserError(f"cannot write to --out {path}: {exc.strerror or exc}") from None
    return path, RunLock(path).acquire()


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[Any]], object], binary: bool = False) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it, then rename it over ``path``: readers
    (and a process killed mid-write) see either the old file or the whole new one, never a part."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the file the usual permissions
        with os.fdopen(fd, "wb" if binary else "w") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_yaml(path: str | os.PathLike[str], data: Any) -> None:
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))


def read_yaml(path: str | os.PathLike[str]) -> Any:
    """A YAML file (safe loader: no Python tags), or a one-line DPDUserError for a damaged one."""
    try:
        with open(path) as fh:
            return yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" (line {where.line + 1})" if where is not None else ""
        raise DPDUserError(f"{path} is not valid YAML{at}: {str(exc).splitlines()[0]}") from None
    except UnicodeDecodeError:
        raise DPDUserError(f"{path} is not a text file") from None


class EvalLog:
    """Appends one row per evaluation to ``<learner>/evaluations.csv`` (flushed at once)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        self._fh = os.fdopen(fd, "a", newline="")  # kept open for the run
        self._writer = csv.DictWriter(self._fh, fieldnames=EVAL_COLUMNS)
        if self.path.stat().st_size == 0:
            self._writer.writeheader()

    def append(self, row: dict[str, float]) -> None:
        self._writer.writerow({k: row[k] for k in EVAL_COLUMNS})
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def read_evaluations(path: str | os.PathLike[str]) -> list[dict[str, float]]:
    with open(path, newline="") as fh:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def run_steps(run_dir: Path) -> int:
    """Env steps done so far by a (running) trial, read from its learners' progress.csv files."""
    total = 0
    for progress in run_dir.glob("*/progress.csv"):
        try:
            with open(progress, newline="") as fh:
                rows = list(csv.DictReader(fh))
            if rows and rows[-1].get("time/total_timesteps"):
                total += int(float(rows[-1]["time/total_timesteps"]))
        except (OSError, ValueError, csv.Error):
            continue  # being rewritten right now; next poll
    return total
