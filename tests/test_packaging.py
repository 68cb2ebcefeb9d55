"""Packaging: dpd installs beside the torch a user has, Ray is an extra, ``import dpd`` changes nothing."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import requires

from packaging.requirements import Requirement


def test_the_installed_metadata_takes_torch_as_a_range_and_ray_as_an_extra() -> None:
    reqs = [Requirement(r) for r in requires("dpd") or []]
    torch = [r for r in reqs if r.name == "torch"]
    assert len(torch) == 1 and torch[0].marker is None
    assert not any(s.operator in ("==", "===") for s in torch[0].specifier), f"an exact pin: {torch[0]}"
    assert torch[0].specifier.contains("2.13.0") and torch[0].specifier.contains("2.5.1")
    ray = [r for r in reqs if r.name == "ray"]
    assert ray and all(r.marker is not None and "extra" in str(r.marker) for r in ray), "ray must be an extra"


def test_import_dpd_changes_no_process_wide_state() -> None:
    """No torch / SB3 / MuJoCo import, warning filter, signal handler, thread count or MuJoCo hook from importing dpd
    and its modules; they are set where a run starts."""
    code = """
import signal, sys, warnings
import dpd
assert not {"torch", "stable_baselines3", "gymnasium"} & set(sys.modules), sorted(sys.modules)
# the libraries dpd builds on set their own filters when imported: they are the baseline
import mujoco, torch, stable_baselines3, gymnasium, typer, yaml, scipy.stats, matplotlib
hooked = []
mujoco.set_mju_user_warning = hooked.append
threads = torch.get_num_threads()
before = (list(warnings.filters), signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
import dpd.cli, dpd.training, dpd.experiments.report, dpd.experiments.sweep, dpd.experiments.calibrate, dpd.api
after = (list(warnings.filters), signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
assert before == after, (before, after)
assert torch.get_num_threads() == threads and not hooked
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
