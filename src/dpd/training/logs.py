"""Log files across a resume: a resumed run continues them without duplicated or missing rows.

At a checkpoint the number of data rows of each learner's ``progress.csv``, ``evaluations.csv`` and
``train_episodes.monitor.csv`` is recorded. On resume the rows written after the checkpoint (by the killed process)
are dropped, the writers of the new process continue after the kept rows, and TensorBoard purges its events
from the checkpoint's step on (``SummaryWriter(purge_step=...)``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stable_baselines3.common.logger import CSVOutputFormat, TensorBoardOutputFormat
from stable_baselines3.common.vec_env import VecEnvWrapper, VecMonitor

from dpd.students.base import Student
from dpd.training.run_dir import EVAL_FILE

PROGRESS = "progress.csv"
MONITOR = "train_episodes.monitor.csv"
#: file -> number of header lines before the data rows
HEADERS = {PROGRESS: 1, EVAL_FILE: 1, MONITOR: 2}


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True) if path.is_file() else []


def count_rows(run_dir: Path | None, learners: list[str]) -> dict[str, dict[str, int]]:
    assert run_dir is not None
    return {name: {f: max(0, len(_lines(run_dir / name / f)) - h) for f, h in HEADERS.items()} for name in learners}


def keep_rows(run_dir: Path, learners: list[str], counts: dict[str, dict[str, int]]) -> dict[str, dict[str, list[str]]]:
    """Read each log up to its checkpointed row count (header included); cut ``evaluations.csv`` on disk there."""
    kept: dict[str, dict[str, list[str]]] = {}
    for name in learners:
        kept[name] = {}
        for f, h in HEADERS.items():
            lines = _lines(run_dir / name / f)
            kept[name][f] = lines[: h + counts[name][f]] if lines else []
        (run_dir / name / EVAL_FILE).write_text("".join(kept[name][EVAL_FILE]))
    return kept


def restore_rows(student: Student, kept: dict[str, list[str]], steps: int) -> None:
    """After the student's writers were created (which emptied the files): put the kept rows back."""
    for fmt in student.model.logger.output_formats:
        if isinstance(fmt, CSVOutputFormat) and kept[PROGRESS]:
            fmt.file.write("".join(kept[PROGRESS]))
            fmt.file.flush()
            fmt.keys = kept[PROGRESS][0].rstrip("\n").split(",")
        elif isinstance(fmt, TensorBoardOutputFormat):
            from torch.utils.tensorboard import SummaryWriter

            log_dir = fmt.writer.log_dir
            fmt.writer.close()
            fmt.writer = SummaryWriter(log_dir=log_dir, purge_step=steps)
    layer: Any = student.train_env
    while isinstance(layer, VecEnvWrapper):
        if isinstance(layer, VecMonitor) and layer.results_writer is not None and kept[MONITOR]:
            fh = layer.results_writer.file_handler
            fh.seek(0)
            fh.truncate()
            fh.write("".join(kept[MONITOR]))
            fh.flush()
            header = json.loads(kept[MONITOR][0][1:])
            layer.t_start = float(header.get("t_start", layer.t_start))
        layer = layer.venv
