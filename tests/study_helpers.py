"""Loading a study's script (studies/ is not a package: its folders have hyphens) as a module, for the studies' tests."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType


def load_script(path: Path, name: str) -> ModuleType:
    """``path`` executed as module ``name``, registered in sys.modules (a dataclass in the script looks it up)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


ROOT = Path(__file__).resolve().parents[1]


def archive(command: str, *args: str | Path) -> None:
    """``studies/why-and-ddpg/archive.py COMMAND ARGS...`` (save / restore), run as a user runs it; fails the test
    on a non-zero exit."""
    subprocess.run([sys.executable, str(ROOT / "studies" / "why-and-ddpg" / "archive.py"), command, *map(str, args)],
                   check=True, capture_output=True)


def assert_same_report(out: Path, committed: Path, stem: str) -> None:
    """A study script's STEM.json and STEM.md, written again into ``out``, equal the committed ones in
    ``committed``: the JSON as data, the Markdown to the character."""
    assert json.loads((out / f"{stem}.json").read_text()) == json.loads((committed / f"{stem}.json").read_text())
    assert (out / f"{stem}.md").read_text() == (committed / f"{stem}.md").read_text()
