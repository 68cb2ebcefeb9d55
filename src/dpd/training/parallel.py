"""Parallel mode: a learner in its own process, driven through a pipe with the same :class:`Learner` methods.

The parent sends ``(method, args)``; the worker runs ``getattr(learner, method)(*args)`` and answers
``("ok", result)`` or ``("error", traceback)``. Only small things cross the pipe: PeerBatches (the peer's recent raw
states with its actions and values), step counts, evaluation rows, and checkpoint states when one is written.

Shutdown: a worker ignores Ctrl-C (the parent decides: checkpoint at the end of the round, then stop) and exits
when its pipe closes, so a parent that dies for any reason leaves no worker behind; the parent terminates workers
that do not exit on their own within a few seconds.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import pickle
import signal
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from dpd.config import ResolvedConfig
from dpd.errors import DPDUserError


class WorkerError(RuntimeError):
    """A learner's process failed; the message carries its traceback."""


def _serve(conn: Connection, config_dict: dict[str, Any], index: int, run_dir: str | None, verbose: int,
           resume_state: dict[str, Any] | None, callbacks: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    learner = None
    try:
        from dpd.students.factory import set_torch_threads
        from dpd.training.dispatch import LocalLearner
        from dpd.training.learner import Learner

        config = ResolvedConfig.from_dict(config_dict)
        set_torch_threads(config.torch_threads)
        learner = LocalLearner(Learner(config, index, Path(run_dir) if run_dir else None, verbose, resume_state,
                                       callbacks, log=lambda msg: conn.send(("log", msg))))
        conn.send(("ok", None))
        while True:
            try:
                method, args = conn.recv()
            except (EOFError, OSError):  # the parent is gone
                return
            if method == "close":
                learner.close()
                conn.send(("ok", None))
                return
            try:
                conn.send(("ok", learner.call(method, *args)))
            except DPDUserError as exc:  # the user's problem (an env fault): one line in the parent too
                conn.send(("user_error", str(exc)))
            except Exception:
                conn.send(("error", traceback.format_exc()))
    except Exception:
        with contextlib.suppress(BrokenPipeError, OSError):
            conn.send(("error", traceback.format_exc()))


class RemoteLearner:
    """A :class:`Learner` in its own process. ``send`` + ``recv`` let the parent drive two of them at once."""

    local = False

    def __init__(self, config: ResolvedConfig, index: int, run_dir: Path | None, verbose: int = 0,
                 resume_state: dict[str, Any] | None = None, callbacks: Any = None, log: Any = None,
                 wait: bool = True) -> None:
        """:param wait: wait until the learner is built; False: the caller calls :meth:`recv` for that later."""
        self.name = config.learner_names[index]
        self.log = log or (lambda _msg: None)
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        try:
            self.process = ctx.Process(
                target=_serve, name=f"dpd-{self.name}", daemon=True,
                args=(child, config.to_dict(), index, str(run_dir) if run_dir else None, verbose, resume_state,
                      callbacks),
            )  # fmt: skip
            self.process.start()
        except (TypeError, AttributeError, pickle.PicklingError) as exc:  # a lambda callback cannot cross processes
            raise DPDUserError(f"parallel mode sends the callbacks to a second process, so they must be picklable"
                               f" ({type(exc).__name__}: {exc}); use a module-level function or class, or parallel=False"
                               ) from None
        child.close()
        if wait:
            self.recv()  # constructed (or failed to)

    def send(self, method: str, *args: Any) -> None:
        self._conn.send((method, args))

    def recv(self) -> Any:
        while True:
            try:
                kind, value = self._conn.recv()
            except (EOFError, OSError):
                raise WorkerError(f"{self.name}'s process died (exit code {self.process.exitcode})") from None
            if kind == "log":
                self.log(value)
                continue
            if kind == "user_error":
                raise DPDUserError(value)
            if kind == "error":
                raise WorkerError(f"{self.name}'s process failed:\n{value}")
            return value

    def call(self, method: str, *args: Any) -> Any:
        self.send(method, *args)
        return self.recv()

    def close(self, timeout: float = 10.0) -> None:
        """Ask the worker to close its files and exit; terminate it if it does not."""
        if self.process.is_alive():
            with contextlib.suppress(WorkerError, DPDUserError, BrokenPipeError, OSError):
                self.call("close")  # an answer still pending (the worker's own failure) comes first: ignored
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self._conn.close()
