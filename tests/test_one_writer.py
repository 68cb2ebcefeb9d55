"""Hardening property 3's second half: every command that writes into a folder it is given (train, demo and
``DPD.save``'s run folder; analyze, calibrate, report, evaluate ``--out``; a sweep folder) goes through one writer,
``dpd.run_files.check_output``, with one overwrite rule. The property over generated folders: dpd writes exactly
where the rule says it may (an oracle written from the rule, not from the code), and where it writes, no entry it
did not write is changed, removed or followed; where it refuses, it says so in one line and the folder is as it was."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from output_helpers import all_outputs, concrete_names, tree

from dpd.errors import DPDUserError
from dpd.run_files import atomic_write_text, check_output, claim_output, create_run_dir

pytestmark = pytest.mark.extended  # make test-extended (CI runs it after make test)

#: a run folder's entries that dpd writes (config, summary, a learner's files, a snapshot)
RUN_TREE = ["config.yaml", "summary.json", "student0/model.zip", "student0/progress.csv",
            "student0/snapshots/1000/window.npz"]
REEVALUATION = json.dumps({"episodes": 1, "seed": 0, "learners": {}})


def _make(folder: Path, outside: Path, kind: str, marker: bool, own: str, user: list[str]) -> None:
    """Fill ``folder``: the command's marker; ``own``: the command's earlier output ("dpd": files it writes, "user":
    a user's file under one of its names, "none"); ``user``: a user's other entries."""
    output = all_outputs()[kind]
    folder.mkdir()
    if marker and output.marker:
        (folder / output.marker).write_text("")
    if own == "dpd":
        for name in RUN_TREE if kind == "run" else concrete_names(kind):
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(REEVALUATION if kind == "evaluate" else "dpd's")
    elif own == "user":
        for name in concrete_names(kind)[-1:]:  # the last: report.md is not the only name to keep
            (folder / name).write_text("the user's")
    for entry in user:
        if entry == "notes.txt":
            (folder / entry).write_text("keep me")
        elif entry == "src":
            (folder / "src").mkdir()
            (folder / "src" / "x.py").write_text("print()")
        elif entry == "link":
            (folder / "link").symlink_to(outside)
        elif entry == "other marker":
            (folder / (".dpd-report" if kind != "report" else ".dpd-analyze")).write_text("")
        elif entry == "lock":
            (folder / ".lock").write_text("")
        elif entry == "inside a learner":
            (folder / "student0").mkdir(exist_ok=True)
            (folder / "student0" / "mine.txt").write_text("keep me")


def _allowed(kind: str, exists: bool, marker: bool, own: str, user: list[str], overwrite: bool) -> bool:
    """The rule, as docs/bad-input.md states it (property 3), independently of the code."""
    output = all_outputs()[kind]
    empty = not exists or (own == "none" and not marker and set(user) <= {"lock"})
    if output.earlier == "files":  # its own files replaced (by its marker, or recognised), nothing else touched
        recognised = output.ours is not None and own == "dpd"
        return empty or (marker and bool(output.marker)) or own == "none" or recognised
    if empty or not marker:
        return empty
    if output.earlier == "resume":
        return True
    foreign = {"notes.txt", "src", "link", "other marker", "inside a learner"}
    return overwrite and not foreign & set(user) and own != "user"


def _write(folder: Path, kind: str, overwrite: bool) -> None:
    """What the command writes once the check passed."""
    output = all_outputs()[kind]
    if output.earlier == "replace":
        path, lock = create_run_dir(folder, overwrite)
        atomic_write_text(path / "config.yaml", "new")
        lock.keep_new()
        lock.release()
    elif output.earlier == "resume":  # the sweep then checks sweep.yaml's spec, makes runs/ and trains
        (folder / "runs").mkdir(parents=True, exist_ok=True)
    elif output.earlier == "files":
        claim_output(folder, output)
        for name in concrete_names(kind):
            atomic_write_text(folder / name, REEVALUATION if kind == "evaluate" else "new")


def test_every_output_writes_only_where_the_one_rule_allows_and_never_past_it():
    pytest.importorskip("hypothesis")
    from hypothesis import given, settings
    from hypothesis import strategies as st

    kinds = sorted(all_outputs())
    users = st.lists(st.sampled_from(["notes.txt", "src", "link", "other marker", "lock", "inside a learner"]),
                     unique=True, max_size=3)
    seen = {True: 0, False: 0}

    @settings(max_examples=300, deadline=None, derandomize=True)
    @given(st.sampled_from(kinds), st.booleans(), st.booleans(), st.sampled_from(["none", "dpd", "user"]), users,
           st.booleans())
    def writes_by_the_rule(kind: str, exists: bool, marker: bool, own: str, user: list[str], overwrite: bool) -> None:
        if kind == "sweep" or (kind == "run" and own == "user"):
            own = "none"  # a sweep's only file is its marker; a run folder's names are judged by its marker
        with tempfile.TemporaryDirectory() as tmp:
            folder, outside = Path(tmp) / "out", Path(tmp) / "outside.txt"
            outside.write_text("outside")
            if exists:
                _make(folder, outside, kind, marker, own, user)
            before = tree(folder)
            allowed = _allowed(kind, exists, marker, own, user, overwrite)
            try:
                check_output(folder, all_outputs()[kind], overwrite)
            except DPDUserError as exc:
                assert not allowed, f"{kind}: refused what the rule allows: {exc}"
                assert "\n" not in str(exc) and tree(folder) == before and folder.exists() == exists
                seen[False] += 1
                return
            assert allowed, f"{kind}: accepted what the rule refuses: {before}"
            seen[True] += 1
            _write(folder, kind, overwrite)
            after = tree(folder)
            assert outside.read_text() == "outside"
            assert sorted(p.name for p in Path(tmp).iterdir()) == ["out", "outside.txt"]  # nothing left beside it
            if all_outputs()[kind].earlier == "files":
                written = set(concrete_names(kind))
                assert {k: v for k, v in before.items() if k not in written} == \
                       {k: v for k, v in after.items() if k in before and k not in written}

    writes_by_the_rule()
    assert min(seen.values()) > 30, seen  # both outcomes exercised


def test_every_file_a_real_report_writes_is_one_the_writer_keeps_from_a_users_folder(tmp_path):
    """The names the rule protects are the names the command writes: each file of a real ``dpd report`` (its
    figures and aggregates too, whose names come from the tasks), put as a user's file into a fresh --out, makes the
    report refuse, the user's file kept."""
    from test_experiments import fake_sweep

    from dpd.cli import main
    from dpd.experiments.sweep import SweepSpec

    spec = SweepSpec(envs=["CartPole-v1"], total_steps=2000, seeds=[0, 1], variants=["vanilla", "independent", "dpd"])
    fake_sweep(tmp_path / "sw", spec, {"vanilla": 100.0, "independent": 200.0, "dpd-a1": 300.0})
    assert main(["report", str(tmp_path / "sw"), "--out", str(tmp_path / "first")]) == 0
    written = sorted(p.name for p in (tmp_path / "first").iterdir() if p.name != ".dpd-report")
    assert set(written) <= set(concrete_names("report")), written  # the property test draws from these names
    for name in written:
        out = tmp_path / f"mine-{name}"
        out.mkdir()
        (out / name).write_text("the user's")
        assert main(["report", str(tmp_path / "sw"), "--out", str(out)]) == 2, name
        assert [p.name for p in out.iterdir()] == [name] and (out / name).read_text() == "the user's"
