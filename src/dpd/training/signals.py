"""Ctrl-C / SIGTERM as a request to stop cleanly, shared by a training run and a sweep.

The first signal is recorded (``name``) and reported to ``on_stop``; the owner stops at its next safe point
(a run: the end of the round, after a checkpoint; a sweep: when its running trials have checkpointed). A second
Ctrl-C raises KeyboardInterrupt at once. Handlers can only be set in the main thread; elsewhere this does nothing.
"""

from __future__ import annotations

import signal
import threading
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
