"""Ctrl-C / SIGTERM as a request to stop cleanly, shared by a training run and a sweep.

The first signal is recorded (``name``) and reported to ``on_stop``; the owner stops at its next safe point
(a run: the end of the round, after a checkpoint; a sweep: when its running trials have checkpointed). A second
Ctrl-C raises KeyboardInterrupt at once. Handlers can only be set in the main thread; elsewhere this does nothing.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any


class StopSignals:
    def __init__(self, on_stop: Callable[[str], None]) -> None:
        self.on_stop = on_stop
        #: the first signal received (``SIGINT`` / ``SIGTERM``), None while none came
        self.name: str | None = None
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.name is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.name = signal.Signals(signum).name
        self.on_stop(self.name)

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


#: seconds a running trial gets to checkpoint and stop after its parent died, before the worker exits anyway
ORPHAN_GRACE_S = 300.0


class ParentWatch:
    """Makes a worker process die with its parent (a sweep's pool worker: a SIGKILLed sweep must leave no process).

    A daemon thread polls the parent pid each second. When the parent is gone: a worker that is running something
    (``busy``) gets SIGTERM (a trial then checkpoints and stops, as on a normal stop) and ``ORPHAN_GRACE_S`` seconds;
    an idle one exits at once.
    """

    def __init__(self, parent_pid: int) -> None:
        self.parent_pid = parent_pid
        self.busy = False
        #: the parent is gone: start nothing new
        self.orphaned = False
        threading.Thread(target=self._watch, name="dpd-parent-watch", daemon=True).start()

    def _watch(self) -> None:
        while os.getppid() == self.parent_pid:
            time.sleep(1.0)
        self.orphaned = True
        deadline = time.time() + ORPHAN_GRACE_S
        while self.busy and time.time() < deadline:
            # handled in the main thread by the trial's trainer; sent again each second, since a trial listens
            # only once its trainer runs
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1.0)
        os._exit(0)
