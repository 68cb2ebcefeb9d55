"""matplotlib for dpd's figures: files only (the Agg backend), whatever the environment says."""

from __future__ import annotations

import os
import sys
from typing import Any


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend. An ``MPLBACKEND`` that names no backend would make importing
    matplotlib itself fail; dpd only draws into files, so it imports matplotlib without it (and puts it back)."""
    if "matplotlib" not in sys.modules and "MPLBACKEND" in os.environ:
        saved = os.environ.pop("MPLBACKEND")
        try:
            import matplotlib
        finally:
            os.environ["MPLBACKEND"] = saved
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
