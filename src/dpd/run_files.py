"""The run folder: safe creation, atomic writes of small files, and the per-learner evaluation log."""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, NamedTuple

import yaml

from dpd.errors import DPDUserError
from dpd.names import (
    ANALYSIS_DIR,
    CALIBRATION_DIR,
    CHECKPOINT_FILE,
    CONFIG_FILE,
    EVAL_FILE,
    LOCK_FILE,
    MARKER_FILE,
    MODEL_FILE,
    MONITOR_FILE,
    PROGRESS_FILE,
    REEVALUATION_FILE,
    SB3_TOTAL_TIMESTEPS,
    SNAPSHOT_DIR,
    SUMMARY_FILE,
    VECNORMALIZE_JSON,
    VECNORMALIZE_PICKLE,
    WINDOW_FILE,
)

EVAL_COLUMNS = ["student_steps", "total_env_steps", "mean_return", "std_return", "mean_length", "time_s"]
_LEARNERS = {"student0", "student1", "vanilla"}
#: what a run folder may hold at its top level besides the learners' folders; anything else is not dpd's
_RUN_ENTRIES = {CONFIG_FILE, MARKER_FILE, SUMMARY_FILE, CHECKPOINT_FILE, LOCK_FILE, REEVALUATION_FILE, "error.txt",
                "calibrate.log"}
#: what dpd writes into a learner's folder, a snapshot folder, analysis/ and calibration/
_LEARNER_FILES = {MODEL_FILE, VECNORMALIZE_PICKLE, VECNORMALIZE_JSON, EVAL_FILE, PROGRESS_FILE, MONITOR_FILE}
_SNAPSHOT_FILES = {MODEL_FILE, VECNORMALIZE_PICKLE, VECNORMALIZE_JSON, WINDOW_FILE}
_ANALYSIS_FILES = {"analysis.json", "figure3.png"}
_CALIBRATION_FILES = {"calibration.json", "calibration_states.npz", "calibration.md", "calibration.png"}


#: a run folder's deepest file is this much below it (student0/snapshots/1000000/vecnormalize.json + a temporary)
_DEEPEST = 96


class OutWords(NamedTuple):
    """How a message names the output folder and its overwrite switch: the CLI's words or the Python API's."""

    out: str
    overwrite: str


CLI_WORDS = OutWords("--out", "pass --overwrite")
#: ``DPD(run_dir=...).learn(overwrite=...)``
RUN_DIR_WORDS = OutWords("run_dir", "pass learn(overwrite=True)")
#: ``DPD.save(path, overwrite=...)``
SAVE_WORDS = OutWords("path", "pass save(path, overwrite=True)")


def check_path_length(out: str | os.PathLike[str], words: OutWords = CLI_WORDS) -> Path:
    """``out`` as a Path, or a one-line DPDUserError where a name in it, or the whole path with dpd's files below
    it, is longer than the system allows (nothing is created first)."""
    path = Path(out)
    too_long = [part for part in path.parts if len(part.encode()) > 255]
    if too_long:
        raise DPDUserError(f"{words.out}: the name {too_long[0][:40]}... has {len(too_long[0].encode())} bytes; a file name"
                           f" may have at most 255: choose a shorter {words.out}")
    try:
        limit = os.pathconf("/", "PC_PATH_MAX")
    except (OSError, ValueError):
        limit = 4096
    full = len(str(path.absolute()).encode()) + _DEEPEST
    if full > limit:
        raise DPDUserError(f"{words.out}: the path has {full - _DEEPEST} bytes; with the files dpd writes below it it would"
                           f" pass the system's limit of {limit}: choose a shorter {words.out}")
    return path


def check_run_dir(out: str | os.PathLike[str], overwrite: bool, words: OutWords = CLI_WORDS) -> Path:
    """Check that ``out`` may be used as a run folder, WITHOUT writing anything. Raises DPDUserError."""
    path = check_path_length(out, words)
    if path.exists() and not path.is_dir():
        raise DPDUserError(f"{words.out} {path} exists and is not a folder; choose another {words.out}")
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise DPDUserError(f"{words.out} {path} is not empty; {words.overwrite} to replace it, or choose another"
                               f" {words.out}")
        foreign = _foreign_entries(path)
        if foreign is not None:
            raise DPDUserError(f"{words.out} {path} is not a dpd run folder ({foreign}); refusing to overwrite it:"
                               f" choose another {words.out}")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise DPDUserError(f"cannot write to {words.out} {path}: {existing} is not a folder; choose another {words.out}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DPDUserError(f"cannot write to {words.out} {path}: {existing} is not writable; choose another {words.out}")
    return path


def output_marker(kind: str) -> str:
    """The hidden file that marks a folder as written by ``dpd <kind>`` (report, analyze, calibrate)."""
    return f".dpd-{kind}"


def check_output_dir(folder: Path, kind: str, files: tuple[str, ...], words: OutWords = CLI_WORDS) -> None:
    """The one overwrite rule of a command that writes result files into a folder it is given: ``folder`` is a
    folder or does not exist yet, and none of ``files`` is there unless ``dpd <kind>`` wrote them (its marker is
    there), so a user's own file of that name is never replaced. Writes nothing (call it before the work)."""
    if folder.exists() and not folder.is_dir():
        raise DPDUserError(f"{words.out} {folder} exists and is not a folder; choose another {words.out}")
    if (folder / output_marker(kind)).is_file():
        return
    mine = [name for name in files if os.path.lexists(folder / name)]
    if mine:
        raise DPDUserError(f"{words.out} {folder} holds {mine[0]}, which dpd {kind} did not write; choose another"
                           f" {words.out}")


def claim_output_dir(folder: Path, kind: str, files: tuple[str, ...], words: OutWords = CLI_WORDS) -> Path:
    """:func:`check_output_dir` again (the folder may have changed during the work), then make the folder and mark
    it as ``dpd <kind>``'s; returns it."""
    check_output_dir(folder, kind, files, words)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / output_marker(kind)).touch()
    return folder


def _foreign_entries(path: Path) -> str | None:
    """Why ``path`` is not provably a dpd run folder, or None if it is: the marker is there and every entry, at
    every depth, is one dpd writes (a user's notes inside a learner's folder or beside a figure are kept, by
    refusing the overwrite)."""
    if not (path / MARKER_FILE).is_file() or (path / MARKER_FILE).is_symlink():
        return f"no {MARKER_FILE} marker"
    for root, dirs, files in os.walk(path):
        rel = Path(root).relative_to(path)
        for name in dirs + files:
            entry = Path(root) / name
            if entry.is_symlink():
                return f"{rel / name} is a symbolic link"
            if not _dpd_entry(rel.parts, name, name in dirs):
                return f"it holds {rel / name}"
    return None


def _dpd_entry(parents: tuple[str, ...], name: str, is_dir: bool) -> bool:
    """Whether ``parents/name`` is a file or folder dpd writes into a run folder."""
    if name.startswith(".") and name.endswith(".tmp"):  # an atomic write cut short
        return not is_dir
    depth = len(parents)
    if depth == 0:
        return (name in _LEARNERS or name in (ANALYSIS_DIR, CALIBRATION_DIR)) if is_dir else name in _RUN_ENTRIES
    if parents[0] == ANALYSIS_DIR:
        return depth == 1 and not is_dir and name in _ANALYSIS_FILES
    if parents[0] == CALIBRATION_DIR:
        return depth == 1 and not is_dir and name in _CALIBRATION_FILES
    if parents[0] not in _LEARNERS:
        return False
    if depth == 1:
        if is_dir:
            return name == SNAPSHOT_DIR
        return name in _LEARNER_FILES or name.startswith("events.out.tfevents.") or name.endswith(".kept")
    if parents[1] == SNAPSHOT_DIR:
        return (depth == 2 and is_dir and name.isdigit()) or (depth == 3 and not is_dir and name in _SNAPSHOT_FILES)
    return False


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




#: where the lock sits on Windows (msvcrt locks byte ranges, and a locked range cannot be read by another process):
#: one byte far past the pid written at the start of the file, which stays readable
_WINDOWS_LOCK_OFFSET = 1 << 30


def _try_lock(fd: int, shared: bool = False) -> bool:
    """Take the OS lock on ``fd`` without waiting: True when taken, False when another process holds it.

    POSIX: ``fcntl.flock`` (shared for a probe, exclusive for a writer); Windows: ``msvcrt.locking`` on one byte at
    :data:`_WINDOWS_LOCK_OFFSET` (exclusive only: a probe takes it for an instant, as the shared probe blocks a writer
    for an instant on POSIX). Both are imported here, not with the module: ``import dpd`` works where either is missing.
    Where neither exists there is no lock to take (True): a run works, unguarded against a second writer.
    (Not filelock: it has no shared probe of the same lock, and its Windows lock covers byte 0, where the holder's
    pid must stay readable by ``dpd status`` and by the second writer's message.)"""
    try:
        import fcntl
    except ImportError:
        try:
            import msvcrt
        except ImportError:
            return True
        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _unlock(fd: int) -> None:
    """Release what :func:`_try_lock` took (closing the file releases it too)."""
    try:
        import fcntl
    except ImportError:
        try:
            import msvcrt
        except ImportError:
            return
        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]
        return
    fcntl.flock(fd, fcntl.LOCK_UN)


def lock_holder(folder: Path) -> str | None:
    """The pid (as written in its lock file) of the dpd process holding ``folder``'s lock, or None where no process
    holds it. Reads only: never creates, truncates or takes the lock for longer than the probe."""
    try:
        fd = os.open(folder / LOCK_FILE, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None  # no lock file (never run, or cleaned up): nobody holds it
    with os.fdopen(fd) as fh:
        if not _try_lock(fh.fileno(), shared=True):
            fh.seek(0)
            return fh.read().strip() or "?"
        _unlock(fh.fileno())
        return None


class RunLock:
    """An exclusive lock on a run folder, held while a process writes it (a second writer gets a one-line error)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_FILE
        self._fh: Any = None

    def acquire(self) -> RunLock:
        try:  # never through a link: a planted .lock -> ~/file would be overwritten with our pid
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as exc:
            raise DPDUserError(f"cannot lock {self.path}: {exc.strerror or exc} (a symbolic link? remove it)") from None
        fh = os.fdopen(fd, "r+")
        if not _try_lock(fh.fileno()):
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

    #: a run this one replaces (``--overwrite``), set aside until the new run is built
    replaced: Path | None = None

    def keep_new(self) -> None:
        """The new run is built: delete the run it replaces."""
        if self.replaced is not None and self.replaced.exists():
            shutil.rmtree(self.replaced, ignore_errors=True)
        self.replaced = None

    def restore_replaced(self) -> None:
        """The new run failed before it was built: put the replaced run back where it was."""
        if self.replaced is None or not self.replaced.exists():
            return
        run_dir = self.path.parent
        self.release()
        shutil.rmtree(run_dir, ignore_errors=True)
        self.replaced.rename(run_dir)
        self.replaced = None

    def release(self) -> None:
        if self._fh is not None:
            _unlock(self._fh.fileno())
            self._fh.close()
            self._fh = None


def create_run_dir(out: str | os.PathLike[str], overwrite: bool, words: OutWords = CLI_WORDS
                   ) -> tuple[Path, RunLock]:
    """Create the run folder after :func:`check_run_dir` passed; returns it locked. With ``overwrite``, a run
    already there is set aside (renamed to a hidden sibling), not deleted: :meth:`RunLock.keep_new` deletes it once
    the new run is built, :meth:`RunLock.restore_replaced` puts it back if the new run fails before that."""
    path = check_run_dir(out, overwrite, words)
    replaced = None
    try:
        if path.is_dir() and any(path.iterdir()):
            RunLock(path).acquire().release()  # refuse to replace a folder another process is writing
            replaced = path.with_name(f".{path.name}.replaced-{os.getpid()}")
            if replaced.exists():
                shutil.rmtree(replaced)
            path.rename(replaced)
        path.mkdir(parents=True, exist_ok=True)
        (path / MARKER_FILE).touch()
    except OSError as exc:
        if replaced is not None and replaced.exists() and not path.exists():
            replaced.rename(path)
        raise DPDUserError(f"cannot write to {words.out} {path}: {exc.strerror or exc}") from None
    lock = RunLock(path).acquire()
    lock.replaced = replaced
    return path, lock


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
    except RecursionError:
        raise DPDUserError(f"{path} is nested too deeply to be a dpd file; the folder was edited or damaged") from None


def read_json(path: str | os.PathLike[str]) -> Any:
    """A JSON file, or a one-line DPDUserError for a binary, malformed or absurdly nested one."""
    try:
        return json.loads(Path(path).read_text())
    except UnicodeDecodeError:
        raise DPDUserError(f"{path} is not a text file; the folder was edited or damaged") from None
    except json.JSONDecodeError as exc:
        raise DPDUserError(f"{path} is not valid JSON ({exc.msg}); the folder was edited or damaged") from None
    except RecursionError:
        raise DPDUserError(f"{path} is nested too deeply to be a dpd file; the folder was edited or damaged") from None


#: what a learner entry of a summary.json carries: key -> (required, integer?); values are numbers, or None where
#: evaluation was off
_SUMMARY_LEARNER_KEYS = {"env_steps": (True, True), "final_eval_return": (True, False),
                         "best_eval_return": (False, False)}


def read_summary_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A run's summary.json, checked: a mapping with a mapping of learners, each with its numbers. One-line
    DPDUserError for anything else (binary, a list, keys missing, values of the wrong kind)."""
    data = read_json(path)
    learners = data.get("learners") if isinstance(data, dict) else None
    if not isinstance(data, dict) or not isinstance(learners, dict) or not learners \
            or not isinstance(data.get("method", ""), str):
        raise DPDUserError(f"{path} is not a dpd run summary; the folder was edited or damaged")
    for name, entry in learners.items():
        if not isinstance(entry, dict):
            raise DPDUserError(f"{path}: learner {name!r} is not a mapping; the folder was edited or damaged")
        for key, (required, integer) in _SUMMARY_LEARNER_KEYS.items():
            if key not in entry and not required:
                continue
            value = entry.get(key)
            number = isinstance(value, (int, float)) and not isinstance(value, bool) and (
                not integer or isinstance(value, int))
            if not (number or (value is None and not integer and key in entry)):
                raise DPDUserError(f"{path}: learner {name!r} has {key}={value!r}; the folder was edited or damaged")
    return data


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
    """A learner's evaluations.csv as rows of numbers; a one-line DPDUserError for a missing or garbled file."""
    try:
        with open(path, newline="") as fh:
            rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]
    except FileNotFoundError:
        raise DPDUserError(f"{path} is missing; the run folder was edited or damaged") from None
    except (UnicodeDecodeError, ValueError, TypeError, csv.Error):
        raise DPDUserError(f"{path} is not a dpd evaluation log; the run folder was edited or damaged") from None
    if rows and set(rows[0]) != set(EVAL_COLUMNS):
        raise DPDUserError(f"{path} has columns {sorted(rows[0])}, not {EVAL_COLUMNS}; the folder was edited or"
                           " damaged")
    return rows


def run_steps(run_dir: Path) -> int:
    """Env steps done so far by a (running) trial, read from its learners' progress.csv files."""
    total = 0
    for progress in run_dir.glob("*/progress.csv"):
        try:
            with open(progress, newline="") as fh:
                rows = list(csv.DictReader(fh))
            if rows and rows[-1].get(SB3_TOTAL_TIMESTEPS):
                total += int(float(rows[-1][SB3_TOTAL_TIMESTEPS]))
        except (OSError, ValueError, csv.Error):
            continue  # being rewritten right now; next poll
    return total
