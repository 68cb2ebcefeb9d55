"""Checkpoints of a whole run: both students, all optimisers, normalisation, windows, counters, RNG and env states.

A checkpoint is ONE file, ``RUN/checkpoint.pt``, written atomically (a temporary file, fsync, rename: a kill while
writing leaves the previous checkpoint intact). It holds plain data only (tensors, numbers, strings, lists, dicts)
and is read with ``torch.load(weights_only=True)``: opening a checkpoint never executes code from the file.

What makes resume exact (same parameters as an uninterrupted run, on the same machine and library versions):
checkpoints are taken between two rounds of Algorithm 1 (both students have iterated), and they restore every source
of randomness (Python, NumPy, torch, each student's sampler, each env's ``np_random``, the action spaces) and the
state of every environment copy mid-episode (MuJoCo: ``mj_getState(mjSTATE_INTEGRATION)``; other envs: the plain
attributes of the unwrapped env, e.g. CartPole's ``state``; wrappers' step counters).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch as th

from dpd.errors import DPDUserError
from dpd.run_files import atomic_write

__all__ = ["FORMAT", "load_checkpoint", "restoring", "save_checkpoint"]

FORMAT = "dpd-checkpoint-1"


# ---------------------------------------------------------------------- the file
def save_checkpoint(path: str | os.PathLike[str], payload: dict[str, Any]) -> None:
    """Atomically write ``payload`` (plain data) to ``path``."""
    atomic_write(path, lambda fh: th.save({"format": FORMAT, **payload}, fh), binary=True)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint without executing anything from it; one-line DPDUserError when it is missing or bad."""
    path = Path(path)
    if not path.is_file():
        raise DPDUserError(f"no checkpoint at {path}: the run stopped before its first checkpoint (it failed or was"
                           " stopped while starting, or was killed with checkpoint_freq=0); nothing to resume: start it again"
                           " with --overwrite (and set checkpoint_freq to be able to resume after a kill)")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocol 4, which its safe unpickler reads fine
            warnings.simplefilter("ignore", UserWarning)
            data = th.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated, foreign, or a pickle that wants to run code
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise DPDUserError(f"{path} is not a readable dpd checkpoint ({type(exc).__name__}: {reason})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DPDUserError(f"{path} is not a dpd checkpoint (format {data.get('format') if isinstance(data, dict) else '?'})")
    return data


@contextlib.contextmanager
def restoring(path: str | os.PathLike[str]) -> Iterator[None]:
    """Around everything that restores a run from the checkpoint at ``path`` (its learners built from it, their
    state set): the file is data that can be damaged anywhere (a key gone, a list where a dict was, a tensor of
    another shape), so any error while it is read into the run is the file's, reported in one line naming it, not a
    traceback from deep inside SB3 or NumPy. A stop request or a user error passes through unchanged."""
    from dpd.errors import TrainingInterrupted, one_line

    try:
        yield
    except (DPDUserError, TrainingInterrupted):
        raise
    except Exception as exc:
        text = str(exc).strip()
        reason = one_line(text.splitlines()[0][:160] if text else "")
        raise DPDUserError(f"{path} is damaged and cannot be resumed ({type(exc).__name__}: {reason}); start the run"
                           " again with --overwrite") from None
