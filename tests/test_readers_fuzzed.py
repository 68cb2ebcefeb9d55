"""Property 4 of docs/bad-input.md: every reader is fuzzed.

Damaged versions of the files a finished tiny run holds (config.yaml, progress.csv, evaluations.csv, summary.json,
vecnormalize.json) and of a sweep file (the ``--config`` of ``dpd sweep`` and a sweep folder's sweep.yaml) are
generated with Hypothesis: truncations, byte flips, values swapped for hostile ones (nan, inf, 1e308, -1, huge
integers, strings, lists, mappings, control and bidi characters), keys deleted and added, YAML anchors, aliases and
alias bombs, CSV cells and columns garbled. Each case runs the commands that read the file in this process
(``dpd.cli.main``): ``status``, ``compare``, ``evaluate --episodes 1``, ``report`` (of a sweep folder built from
the run), ``sweep --config`` (its training replaced by a stub: everything up to the first trial runs). The
property: exit 0 or 2; on 2 the last line of stderr is one ``dpd: error`` line, no traceback; no file appears or
changes but what the command legitimately writes (``reevaluation.json``, ``report/``).

One subprocess test under an address-space limit (RLIMIT_AS 3 GiB; ``import dpd.cli`` needs 20 MB, with torch,
SB3 and MuJoCo 0.7 GB): a YAML alias bomb in a sweep file and a window.npz whose header claims 10**12 rows exit 2
within seconds.

Damaged checkpoint.pt (``dpd train --resume`` of a run stopped after its first checkpoint) and model.zip
(``dpd evaluate``): cut, bytes flipped, a key deleted or a value swapped anywhere in the checkpoint's tree, a zip
member replaced.

Budget (derandomized, so CI sees the same cases): 60 damaged run files + 30 damaged sweep files + 12 damaged
sweep folders + 40 checkpoints + 20 model zips = 162 generated cases. The first 102 took 40 s with ``-n 2`` on 2
cores (its base run trained once per worker, 5 s; the subprocess test 14 s, most of it training the MuJoCo pair);
the checkpoints and model zips ~1.5 min more (each damaged checkpoint resumes a run to its end)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from dpd.cli import main  # noqa: E402

pytestmark = pytest.mark.extended  # make test-extended (CI runs it after make test)

REPO = Path(__file__).resolve().parents[1]
BASE = ["--env", "CartPole-v1", "--total-steps", "1024", "--sequential", "--no-progress", "--set", "eval_freq=512",
        "--set", "eval_episodes=2", "--set", "normalize=true", "--set", "snapshots=[]", "--set", "tensorboard=false"]
SWEEP = {"envs": ["CartPole-v1"], "total_steps": 1024, "variants": ["dpd"], "seeds": [0], "preset": "zoo",
         "overrides": ["eval_freq=512", "eval_episodes=2", "normalize=true", "snapshots=[]", "tensorboard=false"]}
TRIAL = "CartPole-v1__ppo__dpd-a1__s0"
FUZZ = settings(max_examples=12, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

HOSTILE: list[Any] = [float("nan"), float("inf"), float("-inf"), 1e308, -1, 0, 10**30, -(10**30), "", "many",
                      "\x1b[31mred\u202eevil\x00", True, None, [], {}, [1, 2, 3], {"a": 1}, "x" * 5000,
                      list(range(3000))]
CSV_HOSTILE = ["nan", "inf", "-inf", "1e308", "-1", "", "abc", "\x00", "1" * 400, "\x1b[2J", '"', "1,2"]


# ---------------------------------------------------------------------- the base folders (once per module)
@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fuzz")
    run = root / "run"
    assert main(["train", *BASE, "--out", str(run)]) == 0
    sweep = root / "sweep"
    (sweep / "runs").mkdir(parents=True)
    (sweep / "sweep.yaml").write_text(yaml.safe_dump({**SWEEP, "algos": ["ppo"], "alphas": [1.0],
                                                      "schedules": ["dense"], "arms": {}}, sort_keys=False))
    shutil.copytree(run, sweep / "runs" / TRIAL)
    (sweep / "runs" / TRIAL / ".lock").unlink(missing_ok=True)
    return {"run": run, "sweep": sweep, "root": root}


def listing(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` and its bytes (the lock files' pid aside)."""
    return {str(p.relative_to(folder)): (b"" if p.name == ".lock" else p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run_cli(*args: str) -> tuple[int | None, str]:
    """``dpd ARGS`` in this process: (exit status, stderr); an exception escaping main: (None, its traceback)."""
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(list(args))
        except BaseException:
            return None, err.getvalue() + traceback.format_exc()
    return code, err.getvalue()


def check(code: int | None, err: str, what: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code in (0, 2) and "Traceback" not in err, f"{what}: exit {code}\n{err[-3000:]}"
    if code == 2:
        assert lines and lines[-1].startswith("dpd: error") and lines[-1].isprintable(), f"{what}: {err[-1500:]}"
        assert sum(line.startswith("dpd: error") for line in lines) == 1, f"{what}: {err[-1500:]}"


# ---------------------------------------------------------------------- damage
def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value[:5]):
            out += _paths(v, (*prefix, i))
    return out


def _edit(value: Any, path: tuple[Any, ...], how: str, new: Any) -> Any:
    if not path:
        return new if how == "swap" else value
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        value = dict(value)
        if not rest and how == "delete":
            value.pop(head, None)
        elif not rest and how == "extra":
            value[f"{head}_extra"] = new
        else:
            value[head] = _edit(value[head], rest, how, new)
    elif isinstance(value, list):
        value = list(value)
        if not rest and how == "delete":
            del value[head]
        else:
            value[head] = _edit(value[head], rest, how, new)
    return value


def alias_bomb(levels: int) -> str:
    items = ["&a [1,1,1,1,1,1,1,1,1]"]
    previous = "a"
    for name in "bcdefghi"[:levels]:
        items.append(f"&{name} [" + ",".join([f"*{previous}"] * 9) + "]")
        previous = name
    return f"[{', '.join(items)}]"


@st.composite
def damaged(draw: st.DrawFn, original: bytes, kind: str) -> bytes:
    """A damaged version of ``original`` (a file of ``kind``: yaml, json or csv)."""
    how = draw(st.sampled_from(["truncate", "flip", "structure", "structure", "structure"]
                               + (["alias"] if kind == "yaml" else [])))
    if how == "truncate":
        return original[: draw(st.integers(0, max(0, len(original) - 1)))]
    if how == "flip":
        data = bytearray(original)
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data)
    if kind == "csv":
        rows = list(csv.reader(io.StringIO(original.decode())))
        r = draw(st.integers(0, len(rows) - 1))
        action = draw(st.sampled_from(["cell", "cell", "drop_column", "extra_column", "short_row"]))
        if action == "cell" and rows[r]:
            rows[r][draw(st.integers(0, len(rows[r]) - 1))] = draw(st.sampled_from(CSV_HOSTILE))
        elif action == "drop_column" and rows[0]:
            c = draw(st.integers(0, len(rows[0]) - 1))
            rows = [row[:c] + row[c + 1:] for row in rows]
        elif action == "extra_column":
            rows[r] = [*rows[r], draw(st.sampled_from(CSV_HOSTILE))]
        else:
            rows[r] = rows[r][: len(rows[r]) // 2]
        buffer = io.StringIO()
        csv.writer(buffer).writerows(rows)
        return buffer.getvalue().encode()
    data = yaml.safe_load(original) if kind == "yaml" else json.loads(original)
    if how == "alias":  # an anchor reused, or an alias bomb, under one key
        key = draw(st.sampled_from(sorted(data)))
        text = original.decode()
        bomb = draw(st.sampled_from([alias_bomb(8), alias_bomb(2), "&x [1, 2]", "&r [*r]"]))
        return (text + f"\n{key}_copy: *x\n" if bomb == "&x [1, 2]" else
                "\n".join(line for line in text.splitlines() if not line.startswith(f"{key}:")) + f"\n{key}: {bomb}\n"
                ).encode()
    path = draw(st.sampled_from(_paths(data)))
    action = draw(st.sampled_from(["swap", "swap", "delete", "extra"]))
    new = _edit(data, path, action, draw(st.sampled_from(HOSTILE)))
    if kind == "json":
        return json.dumps(new).encode()
    return yaml.safe_dump(new, allow_unicode=draw(st.booleans())).encode()


# ---------------------------------------------------------------------- the properties
RUN_FILES = {  # file -> (kind, commands that read it)
    "config.yaml": ("yaml", ["status", "compare", "evaluate"]),
    "student0/progress.csv": ("csv", ["status"]),
    "student0/evaluations.csv": ("csv", ["report"]),
    "summary.json": ("json", ["status", "compare", "report"]),
    "student0/vecnormalize.json": ("json", ["evaluate"]),
}


def commands(name: str, folders: dict[str, Path], target: Path) -> list[list[str]]:
    sweep = folders["sweep"]
    table = {"status": ["status", str(target)], "compare": ["compare", str(target)],
             "evaluate": ["evaluate", str(target), "--episodes", "1"], "report": ["report", str(sweep)]}
    out = [table[c] for c in RUN_FILES[name][1]]
    if target == folders["run"] and "report" not in RUN_FILES[name][1]:
        return out
    return [*out, ["status", str(sweep)]]


@settings(FUZZ, max_examples=60)
@given(data=st.data())
def test_damaged_run_files_give_exit_2_and_one_line_or_work(folders, data):
    name = data.draw(st.sampled_from(sorted(RUN_FILES)))
    in_sweep = RUN_FILES[name][1] == ["report"] or data.draw(st.booleans())
    target = folders["sweep"] / "runs" / TRIAL if in_sweep else folders["run"]
    path = target / name
    original = path.read_bytes()
    damage = data.draw(damaged(original, RUN_FILES[name][0]))
    path.write_bytes(damage)
    root = folders["sweep"] if in_sweep else folders["run"]
    try:
        for args in commands(name, folders, target):
            before = listing(root)
            code, err = run_cli(*args)
            check(code, err, f"dpd {' '.join(args)} on a damaged {name} ({damage[:300]!r})")
            after = listing(root)
            changed = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
            changed = {p for p in changed if not p.startswith("report/")
                       and not (args[0] == "evaluate" and p.endswith("reevaluation.json"))}
            assert not changed, f"dpd {' '.join(args)} on a damaged {name} changed {sorted(changed)}"
    finally:
        path.write_bytes(original)
        (target / "reevaluation.json").unlink(missing_ok=True)
        shutil.rmtree(folders["sweep"] / "report", ignore_errors=True)


@pytest.fixture(scope="module")
def no_training() -> Any:
    """``dpd sweep``'s runs replaced by a stub: a valid damaged sweep file reads, validates, checks its envs and
    expands its grid (everything a sweep does before its first trial), then stops."""
    from dpd.experiments import sweep

    calls: list[int] = []

    def stub(spec, trials, out, *args, **kwargs):
        calls.append(len(trials))
        return sweep.SweepResult(finished=[], failed={}, skipped=[])

    mp = pytest.MonkeyPatch()
    mp.setattr(sweep, "_run_locked", stub)
    yield calls
    mp.undo()


@settings(FUZZ, max_examples=30)
@given(data=st.data())
def test_damaged_sweep_files_give_exit_2_and_one_line_or_work(folders, no_training, data):
    original = yaml.safe_dump(SWEEP, sort_keys=False).encode()
    damage = data.draw(damaged(original, "yaml"))
    work = folders["root"] / "sweepfile"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    (work / "sweep.yaml").write_bytes(damage)
    before = listing(work)
    started = time.monotonic()
    code, err = run_cli("sweep", "--config", str(work / "sweep.yaml"), "--out", str(work / "out"), "--workers", "1")
    check(code, err, f"dpd sweep --config on {damage[:300]!r}")
    assert time.monotonic() - started < 10, f"{time.monotonic() - started:.0f} s on {damage[:300]!r}"
    assert listing(work) == before, f"dpd sweep --config on {damage[:300]!r} wrote {sorted(set(listing(work)) - set(before))}"


@settings(FUZZ, max_examples=12)
@given(data=st.data())
def test_damaged_sweep_folders_give_exit_2_and_one_line_or_work(folders, data):
    path = folders["sweep"] / "sweep.yaml"
    original = path.read_bytes()
    damage = data.draw(damaged(original, "yaml"))
    path.write_bytes(damage)
    try:
        for args in (["status", str(folders["sweep"])], ["report", str(folders["sweep"])]):
            before = listing(folders["sweep"])
            code, err = run_cli(*args)
            check(code, err, f"dpd {args[0]} on a damaged sweep.yaml ({damage[:300]!r})")
            after = {p: b for p, b in listing(folders["sweep"]).items() if not p.startswith("report/")}
            assert after == before, f"dpd {args[0]} changed {sorted(set(after) ^ set(before))}"
    finally:
        path.write_bytes(original)
        shutil.rmtree(folders["sweep"] / "report", ignore_errors=True)


# ---------------------------------------------------------------------- under a memory limit
def _limited(gib: float = 3.0) -> Any:
    def apply() -> None:
        import resource

        limit = int(gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return apply


def test_an_alias_bomb_and_a_huge_window_header_are_refused_under_a_memory_limit(tmp_path):
    """In a fresh process limited to 3 GiB: a 350-byte sweep file whose seeds expand to 387 million items, and a
    MuJoCo run's window.npz whose states header claims 10**12 rows: exit 2, one line, within seconds."""
    from dpd import TrainConfig, train

    sweep_file = tmp_path / "bomb.yaml"
    sweep_file.write_text(f"envs: [CartPole-v1]\ntotal_steps: 1024\nseeds: {alias_bomb(8)}\n")
    run = tmp_path / "pair"
    train(TrainConfig(env_id="InvertedPendulum-v5", algo="ppo", total_steps=256, eval_freq=0, snapshots=[1.0],
                      tensorboard=False, preset="none", record_sim_states=True,
                      algo_kwargs={"n_steps": 64, "batch_size": 64, "n_epochs": 1,
                                   "policy_kwargs": {"net_arch": [8]}}), run)
    import zipfile

    import numpy as np

    for window in sorted(run.glob("student*/snapshots/*/window.npz")):
        with np.load(window) as data:
            arrays = {k: data[k] for k in data.files}
        states = arrays.pop("states")
        buffer = io.BytesIO()
        np.save(buffer, states)
        raw = buffer.getvalue().replace(f"({len(states)}, ".encode(), b"(1000000000000, ", 1)
        np.savez(window, **arrays)
        with zipfile.ZipFile(window, "a") as archive:
            archive.writestr("states.npy", raw)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    for args in (["sweep", "--config", str(sweep_file), "--out", str(tmp_path / "sw")],
                 ["calibrate", str(run), "--states", "4", "--rollouts", "1", "--max-rollouts", "1"]):
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "dpd.cli", *args], cwd=tmp_path, capture_output=True, text=True,
                              timeout=60, preexec_fn=_limited(), env=env)
        seconds = time.monotonic() - started
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and lines and lines[-1].startswith("dpd: error"), (args[0], proc.stderr[-1500:])
        assert "Traceback" not in proc.stderr and seconds < 30, (args[0], seconds)
    assert not (tmp_path / "sw").exists() and not (run / "calibration").exists()


# ---------------------------------------------------------------------- checkpoint.pt and model.zip
@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run stopped by Ctrl-C after its first checkpoint (checkpoint.pt there, no summary.json): what
    ``dpd train --resume`` reads."""
    import signal

    sys.path.insert(0, str(REPO / "tests"))
    from stop_helpers import SignalAt

    from dpd import TrainConfig, train
    from dpd.errors import TrainingInterrupted

    run = tmp_path_factory.mktemp("ckpt") / "run"
    config = TrainConfig(algo="ppo", env_id="CartPole-v1", method="dpd", total_steps=2048, eval_freq=1024,
                         eval_episodes=2, snapshots=[], checkpoint_freq=512, tensorboard=False, preset="none",
                         algo_kwargs={"n_steps": 128, "batch_size": 64, "n_epochs": 1})
    with pytest.raises(TrainingInterrupted):
        train(config, run, callbacks=lambda name: SignalAt(600, signal.SIGINT) if name == "student0" else None)
    assert (run / "checkpoint.pt").is_file() and not (run / "summary.json").exists()
    return run


def _tree_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a checkpoint's nested dicts and lists (lists: their first three items)."""
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _tree_paths(v, (*prefix, k))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value[:3]):
            out += _tree_paths(v, (*prefix, i))
    return out


@settings(FUZZ, max_examples=40)
@given(data=st.data())
def test_a_damaged_checkpoint_resumes_or_gives_exit_2_and_one_line(stopped_run, tmp_path_factory, data):
    """``dpd train --resume`` on a checkpoint.pt cut, with flipped bytes, or a valid torch file whose plain data
    has a key deleted or a value swapped for a hostile one anywhere in its tree (optimiser moments, env wrappers,
    random states, counters): it resumes (the damage was harmless) or exits 2 with one line naming the file."""
    import torch as th

    work = tmp_path_factory.mktemp("resume") / "run"
    shutil.copytree(stopped_run, work)
    path = work / "checkpoint.pt"
    original = path.read_bytes()
    how = data.draw(st.sampled_from(["truncate", "flip", "tree", "tree", "tree", "tree"]))
    if how == "truncate":
        path.write_bytes(original[: data.draw(st.integers(0, len(original) - 1))])
    elif how == "flip":
        damage = bytearray(original)
        for _ in range(data.draw(st.integers(1, 4))):
            damage[data.draw(st.integers(0, len(damage) - 1))] = data.draw(st.integers(0, 255))
        path.write_bytes(bytes(damage))
    else:
        state = th.load(path, weights_only=True)
        where = data.draw(st.sampled_from(_tree_paths(state)[1:]))
        parent = state
        for key in where[:-1]:
            parent = parent[key]
        if isinstance(parent, tuple):
            pytest.skip("tuples are immutable; their parent is damaged in other cases")
        if data.draw(st.booleans()):
            del parent[where[-1]]
        else:
            parent[where[-1]] = data.draw(st.sampled_from([None, "many", -1, 10**30, float("nan"), [], {}, [1, 2],
                                                           th.zeros(3)]))
        th.save(state, path)
    code, err = run_cli("train", "--resume", str(work), "--no-progress")
    check(code, err, f"dpd train --resume on a damaged checkpoint ({how})")
    if code == 2:
        assert "checkpoint" in err.splitlines()[-1], err[-500:]


@settings(FUZZ, max_examples=20)
@given(data=st.data())
def test_a_damaged_model_zip_evaluates_or_gives_exit_2_and_one_line(folders, data):
    """``dpd evaluate`` on a student's model.zip cut, with flipped bytes, or with one member (``data``, the
    ``policy.pth`` weights, the optimiser) replaced by hostile bytes or JSON: evaluates, or exits 2, one line."""
    import zipfile

    path = folders["run"] / "student0" / "model.zip"
    original = path.read_bytes()
    how = data.draw(st.sampled_from(["truncate", "flip", "member", "member"]))
    if how == "truncate":
        damage = original[: data.draw(st.integers(0, len(original) - 1))]
    elif how == "flip":
        buffer = bytearray(original)
        for _ in range(data.draw(st.integers(1, 4))):
            buffer[data.draw(st.integers(0, len(buffer) - 1))] = data.draw(st.integers(0, 255))
        damage = bytes(buffer)
    else:
        with zipfile.ZipFile(io.BytesIO(original)) as archive:
            members = {name: archive.read(name) for name in archive.namelist()}
        name = data.draw(st.sampled_from(sorted(members)))
        if name == "data":
            members[name] = data.draw(damaged(members[name], "json"))
        else:
            members[name] = data.draw(st.sampled_from([b"", b"\x80\x04K\x01.", members[name][: len(members[name]) // 2],
                                                       b"PK\x03\x04" + b"\x00" * 40]))
        buffer2 = io.BytesIO()
        with zipfile.ZipFile(buffer2, "w") as archive:
            for member, content in members.items():
                archive.writestr(member, content)
        damage = buffer2.getvalue()
    path.write_bytes(damage)
    try:
        before = listing(folders["run"])
        code, err = run_cli("evaluate", str(folders["run"]), "--episodes", "1")
        check(code, err, f"dpd evaluate on a damaged model.zip ({how})")
        after = listing(folders["run"])
        changed = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
        assert changed <= {"reevaluation.json"}, sorted(changed)
    finally:
        path.write_bytes(original)
        (folders["run"] / "reevaluation.json").unlink(missing_ok=True)
