"""Parallel mode: a learner in its own process, behind :class:`RemoteLearner`, a typed proxy with the methods of the
learner interface (:class:`dpd.training.interface.LearnerInterface`).

Inside the proxy a call crosses the pipe as the method's name and its arguments; the worker runs that method of its
:class:`dpd.training.learner.Learner` and answers ``("ok", result)`` or ``("error", traceback)``. The trainer sees
typed methods only. :func:`begin` starts a call on any learner (a remote one starts working at once, a local one
when its result is asked for) and :func:`collect` gathers the results, local ones first, so this process does its
own part while the others do theirs. Only small things cross the pipe: PeerBatches (the peer's recent raw
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
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Generic, ParamSpec, TypeVar, cast

from dpd.config import ResolvedConfig
from dpd.distillation import PeerBatch
from dpd.errors import DPDUserError

_P = ParamSpec("_P")
_R = TypeVar("_R")


class WorkerError(RuntimeError):
    """A learner's process failed; the message carries its traceback."""


def _serve(conn: Connection, config_dict: dict[str, Any], index: int, run_dir: str | None, verbose: int,
           resume_state: dict[str, Any] | None, callbacks: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    learner = None
    try:
        from dpd.students.factory import set_torch_threads
        from dpd.training.learner import Learner

        config = ResolvedConfig.from_dict(config_dict)
        set_torch_threads(config.torch_threads)
        learner = Learner(config, index, Path(run_dir) if run_dir else None, verbose, resume_state, callbacks,
                          log=lambda msg: conn.send(("log", msg)))
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
            try:  # a method of the learner interface, sent by RemoteLearner's typed methods
                conn.send(("ok", getattr(learner, method)(*args)))
            except DPDUserError as exc:  # the user's problem (an env fault): one line in the parent too
                conn.send(("user_error", str(exc)))
            except Exception:
                conn.send(("error", traceback.format_exc()))
    except Exception:
        with contextlib.suppress(BrokenPipeError, OSError):
            conn.send(("error", traceback.format_exc()))


class Pending(Generic[_R]):
    """A call started on a learner (:func:`begin`): :meth:`result` waits for it (a remote learner) or runs it (a
    local one)."""

    def __init__(self, result: Callable[[], _R], local: bool) -> None:
        self.result = result
        #: a call in this process: it runs when its result is asked for
        self.local = local


def begin(method: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> Pending[_R]:
    """Start ``method(*args)``, a method of a learner (``begin(learner.distill, batch)``, checked as that call): a
    :class:`RemoteLearner`'s process starts at once; a learner in this process runs when its result is asked for."""
    owner = getattr(method, "__self__", None)
    if isinstance(owner, RemoteLearner):
        assert not kwargs, "a remote call takes positional arguments"
        owner.send(method.__name__, *args)
        return Pending(lambda: cast(_R, owner.recv()), local=False)
    return Pending(lambda: method(*args, **kwargs), local=True)


def collect(calls: Sequence[Pending[_R]]) -> list[_R]:
    """The results of calls started with :func:`begin`, in their order: this process does its own (local) calls
    first, while the other processes work, then waits for theirs."""
    results: dict[int, _R] = {k: call.result() for k, call in enumerate(calls) if call.local}
    results.update({k: call.result() for k, call in enumerate(calls) if not call.local})
    return [results[k] for k in range(len(calls))]


class RemoteLearner:
    """A :class:`dpd.training.learner.Learner` in its own process, with the methods of the learner interface (each
    a round trip through the pipe; :func:`begin` starts one without waiting)."""

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

    # ------------------------------------------------------------------ the learner interface
    def setup(self) -> int:
        return begin(self.setup).result()

    def iterate(self) -> bool:
        return begin(self.iterate).result()

    def distill_due(self) -> bool:
        return begin(self.distill_due).result()

    def peer_batch(self) -> PeerBatch | None:
        return begin(self.peer_batch).result()

    def distill(self, batch: PeerBatch | None) -> int:
        return begin(self.distill, batch).result()

    def measure(self, batch: PeerBatch | None) -> int:
        return begin(self.measure, batch).result()

    def after_iteration(self) -> int:
        return begin(self.after_iteration).result()

    def finish(self) -> dict[str, Any]:
        return begin(self.finish).result()

    def save(self, folder: Path | None = None) -> None:
        begin(self.save, folder).result()

    def state(self) -> dict[str, Any]:
        return begin(self.state).result()

    # ------------------------------------------------------------------ the pipe
    def send(self, method: str, *args: Any) -> None:
        """Start ``method(*args)`` in the worker (the name of a method of the learner interface)."""
        self._conn.send((method, args))

    def recv(self) -> Any:
        """The answer to the call last sent (log lines that come first go to ``log``)."""
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

    def close(self, timeout: float = 10.0) -> None:
        """Ask the worker to close its files and exit; terminate it if it does not."""
        if self.process.is_alive():
            with contextlib.suppress(WorkerError, DPDUserError, BrokenPipeError, OSError):
                self.send("close")
                self.recv()  # an answer still pending (the worker's own failure) comes first: ignored
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self._conn.close()
