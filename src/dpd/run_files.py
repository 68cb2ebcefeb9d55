"""The run folder: safe creation, atomic writes of small files, and the per-learner evaluation log."""

from __future__ import annotations

import csv
import errno
import fnmatch
import io
import json
import math
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Literal, NamedTuple

import yaml

from dpd.errors import DPDUserError
from dpd.names import (
    ANALYSIS_DIR,
    ANALYSIS_FIGURE,
    ANALYSIS_FILE,
    CALIBRATE_LOG,
    CALIBRATION_DIR,
    CALIBRATION_FIGURE,
    CALIBRATION_FILE,
    CALIBRATION_STATES,
    CALIBRATION_TABLE,
    CHECKPOINT_FILE,
    CONFIG_FILE,
    ERROR_FILE,
    EVAL_FILE,
    LOCK_FILE,
    MARKER_FILE,
    MODEL_FILE,
    MONITOR_FILE,
    PROGRESS_FILE,
    REEVALUATION_FILE,
    SB3_TIME_ELAPSED,
    SB3_TOTAL_TIMESTEPS,
    SNAPSHOT_DIR,
    STUDENTS,
    SUMMARY_FILE,
    VANILLA,
    VECNORMALIZE_JSON,
    VECNORMALIZE_PICKLE,
    WINDOW_FILE,
)

EVAL_COLUMNS = ["student_steps", "total_env_steps", "mean_return", "std_return", "mean_length", "time_s"]
_LEARNERS = {*STUDENTS, VANILLA}
#: what a run folder may hold at its top level besides the learners' folders; anything else is not dpd's
_RUN_ENTRIES = {CONFIG_FILE, MARKER_FILE, SUMMARY_FILE, CHECKPOINT_FILE, LOCK_FILE, REEVALUATION_FILE, ERROR_FILE,
                CALIBRATE_LOG}
#: what dpd writes into a learner's folder, a snapshot folder, analysis/ and calibration/
_LEARNER_FILES = {MODEL_FILE, VECNORMALIZE_PICKLE, VECNORMALIZE_JSON, EVAL_FILE, PROGRESS_FILE, MONITOR_FILE}
_SNAPSHOT_FILES = {MODEL_FILE, VECNORMALIZE_PICKLE, VECNORMALIZE_JSON, WINDOW_FILE}
_ANALYSIS_FILES = {ANALYSIS_FILE, ANALYSIS_FIGURE}
_CALIBRATION_FILES = {CALIBRATION_FILE, CALIBRATION_STATES, CALIBRATION_TABLE, CALIBRATION_FIGURE}


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
    """Check that ``out`` may be used as a run folder, WITHOUT writing anything (:func:`check_output` with
    :data:`RUN_OUTPUT`). Raises DPDUserError."""
    return check_output(out, RUN_OUTPUT, overwrite, words)


def _check_target(out: str | os.PathLike[str], words: OutWords) -> Path:
    """What every folder dpd writes into must pass, before any work (a run folder, a command's ``--out``): a path
    the system takes, a folder or nothing yet, under a folder this process may write (a read-only mount, a file on
    the way: refused now, not after an hour of training or analysis)."""
    path = check_path_length(out, words)
    if path.exists() and not path.is_dir():
        raise DPDUserError(f"{words.out} {path} exists and is not a folder; choose another {words.out}")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise DPDUserError(f"cannot write to {words.out} {path}: {existing} is not a folder; choose another {words.out}")
    if not os.access(existing, os.W_OK | os.X_OK):  # EROFS for root too: a read-only mount is refused here
        raise DPDUserError(f"cannot write to {words.out} {path}: {existing} is not writable; choose another {words.out}")
    return path


def output_marker(kind: str) -> str:
    """The hidden file that marks a folder as written by ``dpd <kind>`` (report, analyze, calibrate)."""
    return f".dpd-{kind}"


class Output(NamedTuple):
    """What one dpd command writes into a folder it is given, for the one overwrite rule (:func:`check_output`).

    ``earlier`` says what the command does with its own earlier output there (the folder holds ``marker``):
    ``"replace"`` (a run: the whole folder, only with overwrite, and only if every entry at every depth is one dpd
    writes), ``"resume"`` (a sweep: continued) or ``"files"`` (report, analyze, calibrate, evaluate: its files are
    replaced, everything else in the folder is kept). A ``"replace"``/``"resume"`` output has its folder alone; a
    ``"files"`` output may sit beside a user's files, but a user's file under one of ``names`` (glob patterns) is
    never replaced: without the marker, such a file is replaced only where ``ours`` recognises it as this command's
    (an ``evaluate --out FILE`` result, whose folder gets no marker)."""

    kind: str
    marker: str
    names: tuple[str, ...]
    earlier: Literal["replace", "resume", "files"]
    ours: Callable[[Path], bool] | None = None


#: a run folder (train, demo, ``DPD.learn(run_dir=...)``, ``DPD.save``)
RUN_OUTPUT = Output("run", MARKER_FILE, (), "replace")


def result_output(kind: str, names: tuple[str, ...], ours: Callable[[Path], bool] | None = None) -> Output:
    """The output of ``dpd <kind>`` that writes result files (``names``, glob patterns) into its ``--out``."""
    return Output(kind, output_marker(kind) if ours is None else "", names, "files", ours)


def check_output(folder: str | os.PathLike[str], output: Output, overwrite: bool = False,
                 words: OutWords = CLI_WORDS) -> Path:
    """The one overwrite rule of every folder a dpd command writes into. ``folder`` must be a path the system takes,
    a folder or nothing yet, under a folder this process may write; then dpd writes there only if the folder is new
    or empty, or holds ``output``'s own earlier output (its marker; see :class:`Output` for what is done with it),
    or (a ``"files"`` output) holds none of its names but a user's other files. Anything else is a one-line
    DPDUserError naming the fix. Writes nothing: call it before the work (and :func:`claim_output` after it)."""
    path = _check_target(folder, words)
    entries = [e for e in path.iterdir() if e.name != LOCK_FILE] if path.is_dir() else []
    if not entries:
        return path
    marker = path / output.marker if output.marker else None
    marked = marker is not None and marker.is_file() and not marker.is_symlink()
    if output.earlier == "files":
        if not marked:
            taken = [e.name for e in entries
                     if any(fnmatch.fnmatchcase(e.name, pattern) for pattern in output.names)
                     and not (output.ours is not None and e.is_file() and not e.is_symlink() and output.ours(e))]
            if taken:
                raise DPDUserError(f"{words.out} {path} holds {sorted(taken)[0]}, which dpd {output.kind} did not"
                                   f" write; choose another {words.out}")
        return path
    what = f"dpd {output.kind} folder"
    if not marked:
        raise DPDUserError(f"{words.out} {path} is not a {what} (it has no {output.marker}); refusing to write into it:"
                           f" choose another {words.out}")
    if output.earlier == "replace":
        if not overwrite:
            raise DPDUserError(f"{words.out} {path} is not empty (an earlier {output.kind}); {words.overwrite} to"
                               f" replace it, or choose another {words.out}")
        foreign = _foreign_entries(path)
        if foreign is not None:
            raise DPDUserError(f"{words.out} {path} is not a {what} ({foreign}); refusing to overwrite it: choose"
                               f" another {words.out}")
    return path


def claim_output(folder: str | os.PathLike[str], output: Output, words: OutWords = CLI_WORDS) -> Path:
    """For a ``"files"`` output after its work: :func:`check_output` again (the folder may have changed meanwhile),
    then make the folder and mark it as the command's; returns it. (A run folder is made by
    :func:`create_run_dir`, a sweep folder by the sweep.)"""
    path = check_output(folder, output, words=words)
    path.mkdir(parents=True, exist_ok=True)
    if output.marker:
        (path / output.marker).touch()
    return path


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
            if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a link
                raise DPDUserError(f"cannot lock {self.path}: it is a symbolic link; remove it") from None
            raise DPDUserError(f"cannot lock {self.path}: {exc.strerror or exc}; dpd writes into the folder it runs"
                               " in: copy it to a place this process may write") from None
        fh = os.fdopen(fd, "r+")
        if not _try_lock(fh.fileno()):
            fh.seek(0)
            owner = fh.read().strip() or "?"
            fh.close()
            raise DPDUserError(f"{self.path.parent} is being written by another dpd process (pid {owner}); wait for it"
                               " (or stop it), or write elsewhere") from None
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
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:  # a full disk mid-write: name the file it was for
            raise OSError(exc.errno, exc.strerror, str(path)) from None
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


#: the largest YAML or JSON file dpd reads (config.yaml, sweep.yaml / a sweep file, summary.json,
#: vecnormalize.json, reevaluation.json): what dpd writes is a few KB (a vecnormalize.json holds 2 x 25 bytes per
#: observation entry: 1 MiB is 20,000 entries), and a sweep file's lists are bounded by its grid (MAX_TRIALS)
MAX_TEXT_BYTES = 1 << 20
#: the most YAML nodes a file may hold once its aliases are expanded: config.yaml has under 200, a sweep file's
#: lists stay under its grid bound (a 350-byte alias bomb expands to 387 million; refused before it is built)
MAX_YAML_NODES = 100_000


def read_bounded(path: str | os.PathLike[str], limit: int, what: str = "a dpd file") -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes, else a one-line DPDUserError (a FIFO or a device
    named like a dpd file is never waited on or read without end)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise DPDUserError(f"{path} is missing; the folder was edited or damaged") from None
    except OSError as exc:
        raise DPDUserError(f"cannot read {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise DPDUserError(f"{path} is not a regular file; the folder was edited or damaged")
        if info.st_size > limit:
            raise DPDUserError(f"{path} has {info.st_size:,} bytes, more than {what} can hold ({limit:,}); the folder"
                               " was edited or damaged")
        try:
            data = fh.read(limit + 1)
        except OSError as exc:
            raise DPDUserError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise DPDUserError(f"{path} has more than {limit:,} bytes, more than {what} can hold")
    return data


def _yaml_children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def yaml_expanded_size(root: yaml.Node, limit: int) -> int:
    """How many nodes ``root`` stands for once every alias is expanded (capped at ``limit + 1``), counted on the
    composed node graph, where an alias is one shared node: nothing is expanded. Raises ValueError for a
    recursive document (an alias inside its own anchor)."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            sizes[key] = min(limit + 1, 1 + sum(sizes[id(c)] for c in _yaml_children(node)))
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise ValueError("an alias refers to a node that contains it (a recursive document)")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _yaml_children(node) if id(c) not in sizes)
    return sizes[id(root)]


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader (no Python tags) that refuses a document whose aliases expand past MAX_YAML_NODES,
    checked on the composed graph before any object is built."""

    max_nodes = MAX_YAML_NODES

    def compose_document(self) -> yaml.Node | None:
        node = super().compose_document()
        if node is not None:
            try:
                size = yaml_expanded_size(node, self.max_nodes)
            except ValueError as exc:
                raise _TooLarge(str(exc)) from None
            if size > self.max_nodes:
                raise _TooLarge(f"its aliases (*name) expand to more than {self.max_nodes:,} entries")
        return node


class _TooLarge(Exception):
    pass


def load_yaml_text(text: str | bytes, name: str = "the YAML text") -> Any:
    """Parse YAML text with :class:`_BoundedLoader`; a one-line DPDUserError for anything it refuses."""
    try:
        return yaml.load(text, Loader=_BoundedLoader)  # a SafeLoader subclass: no Python tags
    except _TooLarge as exc:
        raise DPDUserError(f"{name} is refused: {exc} (a dpd file needs far fewer)") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" (line {where.line + 1})" if where is not None else ""
        raise DPDUserError(f"{name} is not valid YAML{at}: {str(exc).splitlines()[0][:200]}") from None
    except UnicodeDecodeError:
        raise DPDUserError(f"{name} is not a text file") from None
    except RecursionError:
        raise DPDUserError(f"{name} is nested too deeply to be a dpd file; the folder was edited or damaged") from None


def read_yaml(path: str | os.PathLike[str], limit: int = MAX_TEXT_BYTES) -> Any:
    """A YAML file (safe loader: no Python tags) of at most ``limit`` bytes whose aliases expand to at most
    MAX_YAML_NODES nodes, or a one-line DPDUserError for a damaged, huge or non-regular one."""
    return load_yaml_text(read_bounded(path, limit, "a dpd YAML file"), str(path))


def read_json(path: str | os.PathLike[str], limit: int = MAX_TEXT_BYTES) -> Any:
    """A JSON file of at most ``limit`` bytes, or a one-line DPDUserError for a binary, malformed, huge or absurdly
    nested one."""
    data = read_bounded(path, limit, "a dpd JSON file")
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise DPDUserError(f"{path} is not a text file; the folder was edited or damaged") from None
    except json.JSONDecodeError as exc:
        raise DPDUserError(f"{path} is not valid JSON ({exc.msg}); the folder was edited or damaged") from None
    except RecursionError:
        raise DPDUserError(f"{path} is nested too deeply to be a dpd file; the folder was edited or damaged") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise DPDUserError(f"{path} is not valid JSON ({str(exc)[:100]}); the folder was edited or damaged") from None


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


def check_evaluation_rows(rows: Any) -> list[dict[str, float]]:
    """A checkpoint's evaluation rows as a list of dicts with every column of evaluations.csv holding a number;
    ValueError naming the first row that is not (a damaged checkpoint: found when it is read, not at the summary)."""
    if not isinstance(rows, list):
        raise ValueError(f"evaluations is a {type(rows).__name__}, not a list of rows")
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or any(isinstance(row.get(k), bool) or not isinstance(row.get(k), int | float)
                                            for k in EVAL_COLUMNS):
            raise ValueError(f"evaluation row {i} lacks a number in one of {', '.join(EVAL_COLUMNS)}")
    return [{k: float(row[k]) for k in row} for row in rows]


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


#: the largest evaluations.csv dpd reads: a row is under 150 bytes, so 16 MiB is 100,000 evaluations of one learner
MAX_EVAL_LOG_BYTES = 16 << 20


def read_evaluations(path: str | os.PathLike[str], limit: int = MAX_EVAL_LOG_BYTES) -> list[dict[str, float]]:
    """A learner's evaluations.csv as rows of finite numbers; a one-line DPDUserError for a missing, garbled or
    huge file."""
    data = read_bounded(path, limit, "an evaluation log")
    try:
        text = data.decode("utf-8")
        rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(io.StringIO(text, newline=""))]
    except (UnicodeDecodeError, ValueError, TypeError, csv.Error):
        raise DPDUserError(f"{path} is not a dpd evaluation log; the run folder was edited or damaged") from None
    if any(not math.isfinite(v) for row in rows for v in row.values()):
        raise DPDUserError(f"{path} holds a NaN or infinite number; the run folder was edited or damaged")
    if rows and set(rows[0]) != set(EVAL_COLUMNS):
        raise DPDUserError(f"{path} has columns {sorted(rows[0])}, not {EVAL_COLUMNS}; the folder was edited or"
                           " damaged")
    return rows


#: how much of a progress.csv's end is read for its last row (SB3 writes one short line per log dump: a row of dpd's
#: columns is well under 4 KB; the header is the first line, read up to the same bound)
_PROGRESS_TAIL = 64 * 1024


#: how far back on a run's own clock (``time/time_elapsed``, seconds) :func:`progress_speed` measures its speed, and
#: the shortest stretch it measures over (the clock counts whole seconds)
SPEED_WINDOW_S = 300
SPEED_MIN_S = 20


def _progress_tail(path: Path) -> list[dict[str, str]]:
    """The whole rows in the last 64 KiB of a learner's progress.csv (its first line the header), oldest first,
    reading nothing else; [] where the file is missing, not a plain file, being rewritten or not text. The last row
    may be one SB3 is still writing (its values are checked where they are used)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return []
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return []
        head = fh.readline(_PROGRESS_TAIL)
        start = max(0, info.st_size - _PROGRESS_TAIL)
        fh.seek(start)
        tail = fh.read(_PROGRESS_TAIL)
    try:
        header = next(csv.reader([head.decode("utf-8")]))
        lines = [line for line in tail.decode("utf-8", errors="strict" if start == 0 else "ignore").splitlines()
                 if line.strip()]
        lines = lines[1:]  # a read from the start: the header itself; from further on: begun inside a line
        return [dict(zip(header, row, strict=False)) for row in csv.reader(lines)]
    except (UnicodeDecodeError, ValueError, csv.Error, StopIteration):
        return []  # being rewritten right now (or damaged): no rows


def _whole(value: str | None) -> int | None:
    """A progress.csv cell as a finite, non-negative whole number below 2**63, else None."""
    try:
        number = float(value or "nan")
    except ValueError:
        return None
    if not (math.isfinite(number) and 0 <= number < 2**63 and number == int(number)):
        return None
    return int(number)


def last_progress_steps(path: Path) -> int | None:
    """The env steps (``time/total_timesteps``) of the last row of a learner's progress.csv, reading only its first
    line and its last 64 KiB; None where the file is missing, being rewritten, or holds no such number (a value
    that is not a finite, non-negative whole number below 2**63 counts as none)."""
    return _last_steps(_progress_tail(path))


def _last_steps(rows: list[dict[str, str]]) -> int | None:
    return _whole(rows[-1].get(SB3_TOTAL_TIMESTEPS)) if rows else None


def progress_speed(path: Path) -> float | None:
    """A learner's env steps per second of its run's own clock over the last :data:`SPEED_WINDOW_S` seconds its
    progress.csv covers (``time/total_timesteps`` against ``time/time_elapsed``), from the same 64 KiB as
    :func:`last_progress_steps`. Only the rows since the last resume count (where steps or clock go back, a stopped
    run restarted from its checkpoint). None where that stretch is shorter than :data:`SPEED_MIN_S` seconds or the
    file holds no such numbers."""
    return _speed(_progress_tail(path))


def progress_reading(path: Path) -> tuple[int | None, float | None]:
    """:func:`last_progress_steps` and :func:`progress_speed` of one learner from a single read of its file (a
    status line of a running run needs both)."""
    rows = _progress_tail(path)
    return _last_steps(rows), _speed(rows)


def _speed(rows: list[dict[str, str]]) -> float | None:
    """:func:`progress_speed` of rows already read."""
    points: list[tuple[int, int]] = []
    for row in reversed(rows):
        steps, clock = _whole(row.get(SB3_TOTAL_TIMESTEPS)), _whole(row.get(SB3_TIME_ELAPSED))
        if steps is None or clock is None:
            if points:
                break
            continue  # the row SB3 is still writing
        if points and (steps > points[-1][0] or clock > points[-1][1]):
            break  # before a resume
        points.append((steps, clock))
        if points[0][1] - clock >= SPEED_WINDOW_S:
            break
    if len(points) < 2 or points[0][1] - points[-1][1] < SPEED_MIN_S:
        return None
    return (points[0][0] - points[-1][0]) / (points[0][1] - points[-1][1])


def learner_progress_files(run_dir: Path) -> list[Path]:
    """A run's learners' progress.csv files (one per learner folder), in name order."""
    return sorted(run_dir.glob(f"*/{PROGRESS_FILE}"))


def run_steps(run_dir: Path) -> int:
    """Env steps done so far by a (running) trial, read from its learners' progress.csv files."""
    return sum(last_progress_steps(progress) or 0 for progress in learner_progress_files(run_dir))


#: window.npz: array -> (dtype kinds it may have, its shape after the row count: None = the observation shape,
#: "sim" = (simulator state width,), () = per row; "scalar": a 0-d value, no rows)
_WINDOW_ARRAYS: dict[str, tuple[str, Any]] = {
    "states": ("f", None), "rewards": ("f", ()), "dones": ("b", ()), "timeouts": ("b", ()), "env_index": ("iu", ()),
    "sim_states": ("f", "sim"), "return_std": ("f", "scalar"), "gamma": ("f", "scalar"),
}


def read_window(path: Path, max_rows: int, obs_shape: tuple[int, ...], sim_width: int | None,
                n_envs: int) -> dict[str, Any]:
    """A snapshot's recorded window (window.npz), validated before and after it is loaded. From the npy headers,
    before any array is read: every array present with its dtype and shape (rows <= ``max_rows``, the run's
    ``distill_window``; widths from the env's spaces: ``obs_shape`` and the MuJoCo state width ``sim_width``, None
    for other tasks, whose windows hold no ``sim_states``), and each member's stored size equal to what its header
    claims; the file no larger than those arrays can be. Then the values: states and simulator states finite, rewards
    not infinite (NaN after a reset), env_index in [0, n_envs), gamma a finite scalar in [0, 1), return_std finite
    and positive. A one-line DPDUserError for anything else."""
    import zipfile

    import numpy as np
    from numpy.lib import format as npy

    damaged = "the run folder was edited or damaged"
    width = int(np.prod(obs_shape)) if obs_shape else 1
    bound = max_rows * (8 * width + 8 * (sim_width or 0) + 8 + 8 + 1 + 1) + 64 * 1024
    read_bounded_size(path, bound, "a window of this run's config")
    expected = {k: v for k, v in _WINDOW_ARRAYS.items() if k != "sim_states" or sim_width is not None}
    rows: set[int] = set()
    try:
        with zipfile.ZipFile(path) as archive:
            for key, (kinds, tail) in expected.items():
                try:
                    info = archive.getinfo(f"{key}.npy")
                except KeyError:
                    raise DPDUserError(f"{path} lacks {key}; {damaged}") from None
                with archive.open(info) as fh:
                    version = npy.read_magic(fh)
                    if version == (1, 0):
                        shape, _fortran, dtype = npy.read_array_header_1_0(fh)
                    elif version == (2, 0):
                        shape, _fortran, dtype = npy.read_array_header_2_0(fh)
                    else:
                        raise DPDUserError(f"{path}: {key} is an npy file of version {version}, which dpd does not"
                                           f" write; {damaged}")
                    header = fh.tell()
                if dtype.hasobject or dtype.kind not in kinds or dtype.itemsize > 8:
                    raise DPDUserError(f"{path}: {key} has dtype {str(dtype)[:40]}; {damaged}")
                want: tuple[int, ...] = (() if tail == "scalar" else (sim_width,) if tail == "sim"  # type: ignore[assignment]
                                         else obs_shape if tail is None else tail)
                if tail == "scalar":
                    if tuple(shape) != ():
                        raise DPDUserError(f"{path}: {key} has shape {tuple(shape)!s:.60}, not a single number;"
                                           f" {damaged}")
                elif len(shape) != 1 + len(want) or tuple(shape[1:]) != want:
                    raise DPDUserError(f"{path}: {key} has shape {tuple(shape)!s:.60}; this run's environment needs"
                                       f" (rows, {', '.join(map(str, want))}); {damaged}".replace(", )", ")"))
                else:
                    if not 0 <= shape[0] <= max_rows:
                        raise DPDUserError(f"{path}: {key} claims {shape[0]:,} rows; a run of this config keeps at"
                                           f" most {max_rows:,} (distill_window); {damaged}")
                    rows.add(int(shape[0]))
                nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize if shape else dtype.itemsize
                if info.file_size != header + nbytes:
                    raise DPDUserError(f"{path}: {key} holds {info.file_size - header:,} bytes of data, its header"
                                       f" claims {nbytes:,}; {damaged}")
        if len(rows) > 1:
            raise DPDUserError(f"{path}: its arrays have different numbers of rows ({sorted(rows)}); {damaged}")
        with np.load(path, allow_pickle=False) as data:
            window = {k: np.asarray(data[k]) for k in expected}
    except DPDUserError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError) as exc:
        raise DPDUserError(f"{path} is unreadable ({type(exc).__name__}: {str(exc)[:200]}); {damaged}") from None
    for key in ("states", "sim_states"):
        if key in window and not np.isfinite(window[key]).all():
            raise DPDUserError(f"{path}: {key} holds NaN or inf (dpd records only finite states); {damaged}")
    if np.isinf(window["rewards"]).any():
        raise DPDUserError(f"{path}: rewards hold inf; {damaged}")
    index = window["env_index"]
    if index.size and (index.min() < 0 or index.max() >= n_envs):
        raise DPDUserError(f"{path}: env_index outside [0, {n_envs}) (the run's n_envs); {damaged}")
    gamma, spread = float(window["gamma"]), float(window["return_std"])
    if not (math.isfinite(gamma) and 0 <= gamma < 1):
        raise DPDUserError(f"{path}: gamma is {gamma}, not a discount in [0, 1); {damaged}")
    if not (math.isfinite(spread) and spread > 0):
        raise DPDUserError(f"{path}: return_std is {spread}, not a positive number; {damaged}")
    return window


def read_bounded_size(path: Path, limit: int, what: str) -> None:
    """A one-line DPDUserError unless ``path`` is a regular file of at most ``limit`` bytes (checked, not read)."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise DPDUserError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise DPDUserError(f"{path} is not a regular file; the folder was edited or damaged")
    if info.st_size > limit:
        raise DPDUserError(f"{path} has {info.st_size:,} bytes, more than {what} can hold ({limit:,}); the folder"
                           " was edited or damaged")


def physical_memory() -> int:
    """This machine's physical memory in bytes (a large number where the system does not say)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # not POSIX
        return 1 << 50
