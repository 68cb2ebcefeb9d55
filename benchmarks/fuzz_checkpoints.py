"""How many generated damaged checkpoints end ``dpd train --resume`` in a traceback (hardening property 4's residual).

    python benchmarks/fuzz_checkpoints.py N SEED [WORK]      # e.g. 120 1: ~6 min on one core

A CartPole PPO DPD run is stopped after its first checkpoint; N copies of it each get one damage in the checkpoint's
tree (a key deleted, or a value replaced by None, "many", -1, 10**30, NaN, [], {}, [1, 2] or a tensor), drawn with
NumPy's generator seeded SEED, and are resumed in this process. Prints the count and, for each traceback, where the
damage was and the error's last line. tests/test_readers_fuzzed.py runs 40 such cases inside the test suite; this
script is the larger measurement docs/bad-input.md quotes (property 4).
"""

from __future__ import annotations

import contextlib
import io
import shutil
import signal
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch as th

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from stop_helpers import SignalAt

from dpd import TrainConfig, train
from dpd.cli import main
from dpd.errors import TrainingInterrupted

HOSTILE: list[Any] = [None, "many", -1, 10**30, float("nan"), [], {}, [1, 2], th.zeros(3)]


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into nested dicts and lists (lists: their first three items)."""
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths(v, (*prefix, k))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value[:3]):
            out += paths(v, (*prefix, i))
    return out


def stopped_run(base: Path) -> None:
    config = TrainConfig(algo="ppo", env_id="CartPole-v1", method="dpd", total_steps=2048, eval_freq=1024,
                         eval_episodes=2, snapshots=[], checkpoint_freq=512, tensorboard=False, preset="none",
                         algo_kwargs={"n_steps": 128, "batch_size": 64, "n_epochs": 1})
    with contextlib.suppress(TrainingInterrupted):
        train(config, base, callbacks=lambda name: SignalAt(600, signal.SIGINT) if name == "student0" else None)


def main_(n: int, seed: int, root: Path) -> None:
    base = root / "base"
    shutil.rmtree(base, ignore_errors=True)
    stopped_run(base)
    all_paths = paths(th.load(base / "checkpoint.pt", weights_only=True))[1:]
    rng = np.random.default_rng(seed)
    bad = []
    for k in range(n):
        work = root / f"w{k}"
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(base, work)
        state = th.load(work / "checkpoint.pt", weights_only=True)
        where = all_paths[rng.integers(len(all_paths))]
        parent = state
        for key in where[:-1]:
            parent = parent[key]
        if isinstance(parent, tuple):
            continue
        if rng.random() < 0.5:
            del parent[where[-1]]
            how = "del"
        else:
            value = HOSTILE[rng.integers(len(HOSTILE))]
            parent[where[-1]] = value
            how = repr(value)[:20]
        th.save(state, work / "checkpoint.pt")
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            try:
                code = main(["train", "--resume", str(work), "--no-progress"])
            except BaseException:
                code = None
                err.write(traceback.format_exc())
        text = err.getvalue()
        if code not in (0, 2) or "Traceback" in text:
            bad.append((where, how, text.strip().splitlines()[-1][:200] if text.strip() else code))
        shutil.rmtree(work, ignore_errors=True)
    print(f"{len(bad)} of {n} damaged checkpoints ended in a traceback")
    for item in bad:
        print(item)


if __name__ == "__main__":
    main_(int(sys.argv[1]), int(sys.argv[2]),
          Path(sys.argv[3]) if len(sys.argv) > 3 else Path(tempfile.mkdtemp(prefix="dpd-fuzz-")))
