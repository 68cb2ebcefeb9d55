"""The ``dpd`` console script: Ctrl-C and SIGTERM are a quiet exit 130 from the first instant, before anything heavy is
imported; after the imports both are KeyboardInterrupt (the command line's one-line stop) until a run's own handler
(``StopSignals``: checkpoint, then stop) takes over."""

from __future__ import annotations

import signal
import sys
from types import FrameType


def _interrupted(signum: int, frame: FrameType | None) -> None:
    sys.stderr.write("dpd: interrupted\n")
    sys.exit(130)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM as Ctrl-C: the command says so in one line (it was a silent death, -15)


def main() -> None:
    signal.signal(signal.SIGINT, _interrupted)  # until the command line's own handling takes over
    signal.signal(signal.SIGTERM, _interrupted)
    from dpd.cli import main as cli_main

    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C is KeyboardInterrupt again: main handles it
    signal.signal(signal.SIGTERM, _terminate)
    code = cli_main()
    # the command has said how it ended: a stop that arrives while the interpreter shuts down changes nothing (it
    # killed the process with -2 / -15 and no word after a run had finished)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(code)
