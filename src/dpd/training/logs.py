"""Log files across a resume: a resumed run continues them without duplicated or missing rows.

At a checkpoint the number of data rows of each learner's ``progress.csv``, ``evaluations.csv`` and
``train_episodes.monitor.csv`` is recorded. On resume the rows written after the checkpoint (by the killed process)
are dropped, the writers of the new process continue after the kept rows, and TensorBoard purges its events
from the checkpoint's step on (``SummaryWriter(purge_step=...)``).

The new writers empty ``progress.csv`` and the monitor file when they open them, so the kept rows are first saved
atomically beside them (``<file>.kept``) and removed only once they are back in place: a resume stopped at any moment
loses no row, and the next resume reads the ``.kept`` copy.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from stable_baselines3.common.logger import CSVOutputFormat, TensorBoardOutputFormat
from stable_baselines3.common.vec_env import VecEnvWrapper, VecMonitor

from dpd.errors import DPDUserError
from dpd.names import EVAL_FILE, MONITOR_FILE, PROGRESS_FILE
from dpd.run_files import atomic_write_text
from dpd.students.base import Student

#: file -> number of header lines before the data rows
HEADERS = {PROGRESS_FILE: 1, EVAL_FILE: 1, MONITOR_FILE: 2}
KEPT_SUFFIX = ".kept"


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        return []
    try:
        return path.read_text().splitlines(keepends=True)
    except UnicodeDecodeError:
        raise DPDUserError(f"{path} is not a text log; the run folder was edited or damaged (restore it from a copy or"
                           " start the run again)") from None


def count_rows(folder: Path) -> dict[str, int]:
    """The number of data rows of each log of one learner's folder."""
    return {f: max(0, len(_lines(folder / f)) - h) for f, h in HEADERS.items()}


def keep_rows(folder: Path, counts: dict[str, int]) -> dict[str, list[str]]:
    """Read each log of one learner's folder up to its checkpointed row count (header included); cut
    ``evaluations.csv`` on disk there, and save the others' kept rows as ``.kept`` copies."""
    kept: dict[str, list[str]] = {}
    for f, h in HEADERS.items():
        path = folder / f
        saved = path.with_name(path.name + KEPT_SUFFIX)
        lines = _lines(saved) if saved.is_file() else _lines(path)  # .kept: an earlier resume was cut short
        kept[f] = lines[: h + counts[f]] if lines else []
        if f == EVAL_FILE:  # dpd's own writer appends: cut the file itself (atomically)
            atomic_write_text(path, "".join(kept[f]))
        elif kept[f]:  # SB3's writers empty these files when they open them
            atomic_write_text(saved, "".join(kept[f]))
    return kept


def restore_logger_rows(logger: Any, kept: dict[str, list[str]], folder: Path | None = None, steps: int = 0) -> None:
    """After a logger's writers were created (which emptied progress.csv): put its kept rows back (TensorBoard: purge
    the events from ``steps`` on); then drop the ``.kept`` copy of ``folder``'s progress.csv."""
    for fmt in logger.output_formats:
        if isinstance(fmt, CSVOutputFormat) and kept[PROGRESS_FILE]:
            fmt.file.write("".join(kept[PROGRESS_FILE]))
            fmt.file.flush()
            os.fsync(fmt.file.fileno())
            fmt.keys = kept[PROGRESS_FILE][0].rstrip("\n").split(",")
        elif isinstance(fmt, TensorBoardOutputFormat):
            from torch.utils.tensorboard import SummaryWriter

            log_dir = fmt.writer.log_dir
            fmt.writer.close()
            fmt.writer = SummaryWriter(log_dir=log_dir, purge_step=steps)
    if folder is not None:
        (folder / (PROGRESS_FILE + KEPT_SUFFIX)).unlink(missing_ok=True)


def restore_rows(student: Student, kept: dict[str, list[str]], steps: int, folder: Path | None = None) -> None:
    """After the student's writers were created (which emptied the files): put the kept rows back, then drop the
    ``.kept`` copies of ``folder`` (the learner's folder)."""
    restore_logger_rows(student.model.logger, kept, None, steps)
    layer: Any = student.train_env
    while isinstance(layer, VecEnvWrapper):
        if isinstance(layer, VecMonitor) and layer.results_writer is not None and kept[MONITOR_FILE]:
            fh = layer.results_writer.file_handler
            fh.seek(0)
            fh.truncate()
            fh.write("".join(kept[MONITOR_FILE]))
            fh.flush()
            os.fsync(fh.fileno())
            header = json.loads(kept[MONITOR_FILE][0][1:])
            layer.t_start = float(header.get("t_start", layer.t_start))
        layer = layer.venv
    if folder is not None:
        for f in (PROGRESS_FILE, MONITOR_FILE):
            (folder / (f + KEPT_SUFFIX)).unlink(missing_ok=True)
