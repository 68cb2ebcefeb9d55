"""The ``dpd`` console script: Ctrl-C and SIGTERM are a quiet exit 130 / 143 (128 + the signal's number, the shell's
convention) from the first instant, before anything heavy is imported; after the imports both are KeyboardInterrupt
(SIGTERM as its subclass :class:`Terminated`: the command line's one-line stop) until a run's own handler
(``StopSignals``: checkpoint, then stop) takes over."""

from __future__ import annotations

import signal
import sys
from types import FrameType


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises KeyboardInterrupt: the command line stops the same way and exits 143."""


#: the last stop signal this process received outside a run's own handler (``SIGTERM``), None: none or Ctrl-C
received: str | None = None


def exit_code(signal_name: str | None = None) -> int:
    """The exit status of a command stopped by ``signal_name`` (default: the one :data:`received`): 143 for SIGTERM,
    130 for SIGINT."""
    return 143 if (signal_name or received) == "SIGTERM" else 130


def _interrupted(signum: int, frame: FrameType | None) -> None:
    sys.stderr.write("dpd: interrupted\n")
    sys.exit(128 + signum)


def _terminate(signum: int, frame: FrameType | None) -> None:
    global received
    received = "SIGTERM"  # click turns a KeyboardInterrupt into its Abort: the exit status reads it here
    raise Terminated  # SIGTERM as Ctrl-C: the command says so in one line (it was a silent death, -15)


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
