"""Errors that reach the user. The CLI prints them as one line: DPDUserError exits with status 2 (bad input),
TrainingInterrupted with 130 (Ctrl-C / SIGTERM, after a checkpoint), TrainingDiverged with 1."""

from __future__ import annotations

import errno
import re
from pathlib import Path


def one_line(text: str) -> str:
    """``text`` as one printable line: line breaks and tabs (a library's multi-line report folded into a message)
    become spaces, and other control or format characters (an escape sequence, U+202E that reorders a terminal
    line) are shown escaped, so that a name read from a file cannot change what the terminal shows."""
    if len(text) > MAX_MESSAGE:  # a value quoted from a file may be long: the line says what, not all of it
        text = text[: MAX_MESSAGE // 2] + " [...] " + text[-MAX_MESSAGE // 4:]
    text = re.sub(r"\s*[\r\n\t\v\f]+\s*", " ", text)  # a line break or tab and the blanks around it: one space
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


#: errors of the machine (a full disk, a quota, a read-only mount, permissions), not of dpd: one line, no traceback
MACHINE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


def machine_error(exc: BaseException) -> str | None:
    """``exc`` as one line naming the file and the cause, where it is the machine's fault (:data:`MACHINE_ERRNOS`);
    None for any other error (a bug: its traceback is wanted)."""
    if isinstance(exc, OSError) and exc.errno in MACHINE_ERRNOS:
        return one_line(f"cannot write {exc.filename or 'a file'}: {exc.strerror}")
    return None


#: the longest message (characters, before control characters are escaped); a longer one keeps its start and end
MAX_MESSAGE = 2000


class DPDUserError(ValueError):
    """Bad input from the user (config, command line, run folder). The message names the fix, on one printable
    line (:func:`one_line`, whatever the parts it quotes hold)."""

    def __init__(self, message: object = "", *args: object) -> None:
        super().__init__(one_line(str(message)), *args)


class TrainingInterrupted(Exception):
    """Ctrl-C or SIGTERM: a checkpoint was written (with a run folder) and the run stopped between two rounds; or,
    ``during_setup``, the run stopped before its first round and wrote nothing new."""

    def __init__(self, signal_name: str, env_steps: int, run_dir: Path | None, during_setup: bool = False,
                 finished: bool = False) -> None:
        where = f"; resume with: dpd train --resume {run_dir}" if run_dir is not None else ""
        if finished:  # the signal came during the last phase, which ran to its end first
            saved = f" ({run_dir}/summary.json)" if run_dir is not None else ""
            message = f"{signal_name} during the final evaluation: the run finished first{saved}, nothing to resume"
        elif run_dir is None:
            message = f"{signal_name} at {env_steps} env steps (no run folder, nothing saved)"
        elif during_setup and env_steps == 0:  # nothing trained: a checkpoint before the first step cannot resume
            message = (f"{signal_name} while setting up, before the first env step: nothing to resume; run the same "
                       "command again with --overwrite")
        elif during_setup:
            message = f"{signal_name} while setting up; the checkpoint at {env_steps} env steps is unchanged{where}"
        else:
            message = f"{signal_name} at {env_steps} env steps, checkpoint written{where}"
        super().__init__(message)
        #: the signal that stopped the run (``SIGINT`` / ``SIGTERM``): the command line exits 130 / 143
        self.signal_name = signal_name
        self.env_steps = env_steps
        #: the run finished (the signal came during its last phase, which ran to its end)
        self.finished = finished
        #: a checkpoint is there to resume from (False: no run folder, or a fresh run stopped before its first step)
        self.resumable = run_dir is not None and not (during_setup and env_steps == 0) and not finished


class TrainingDiverged(RuntimeError):
    """Distillation kept producing non-finite losses; the run stopped between two rounds (checkpoint written)."""
