"""The ``dpd`` console script: Ctrl-C is a quiet exit 130 from the first instant, before anything heavy is imported."""

from __future__ import annotations

import signal
import sys
from types import FrameType


def _interrupted(signum: int, frame: FrameType | None) -> None:
    sys.stderr.write("dpd: interrupted\n")
    sys.exit(130)


def main() -> None:
    signal.signal(signal.SIGINT, _interrupted)  # until the command line's own handling takes over
    from dpd.cli import main as cli_main

    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C is KeyboardInterrupt again: main handles it
    sys.exit(cli_main())
