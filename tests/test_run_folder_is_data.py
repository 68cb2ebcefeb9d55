"""Property 1 of docs/bad-input.md: a run folder (or a sweep file) is data. Nothing read from one reaches code: no
command that opens a folder imports a module or calls a function the folder names (D1 of the third hostile pass:
``env_id: os:abort`` in config.yaml was *called* as an env factory by ``dpd evaluate``). The user's own say-so, an
env passed again or a module named in ``DPD_ENV_MODULES``, is what opens such an env."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from dpd import DPD, DPDUserError
from dpd.cli import main
from dpd.envs import TRUSTED_MODULES_VAR

pytestmark = pytest.mark.extended  # make test-extended (CI runs it after make test)

TESTS = Path(__file__).parent
SENTINEL = "dpd_test_envs:record_call"  # a factory that leaves a file behind when called (tests/dpd_test_envs.py)


@pytest.fixture(autouse=True)
def _factories_forgotten(monkeypatch):
    """What a test trusted (an env passed again caches its factory for the process) is forgotten after it: each
    test opens its folders as a fresh process would."""
    import dpd.envs

    monkeypatch.setattr(dpd.envs, "_FACTORIES", dict(dpd.envs._FACTORIES))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("p1") / "run"
    assert main(["train", "--env", "CartPole-v1", "--total-steps", "1024", "--sequential", "--no-progress", "--set",
                 "eval_freq=0", "--set", "snapshots=[0.5,1.0]", "--out", str(run)]) == 0
    return run


def naming(run: Path, to: Path, env_id: str, finished: bool = True) -> Path:
    """A copy of ``run`` whose config.yaml names ``env_id`` (``finished`` False: summary.json gone, as a run stopped
    before its end, so that --resume reaches the env)."""
    shutil.copytree(run, to)
    config = yaml.safe_load((to / "config.yaml").read_text())
    config["env_id"] = env_id
    (to / "config.yaml").write_text(yaml.safe_dump(config))
    if not finished:
        (to / "summary.json").unlink()
    return to


def _cli(*args: str) -> Callable[[Path], int]:
    return lambda run: main([args[0], str(run), *args[1:]])


def _load(run: Path) -> int:
    DPD.load(run).close()
    return 0


def _load_learner(run: Path) -> int:
    from dpd.loading import load_learner

    _model, env = load_learner(run, "student1")
    env.close()
    return 0


# every way a user opens a folder: commands that make envs, and those that only read files
OPENERS: dict[str, Callable[[Path], int]] = {
    "evaluate": _cli("evaluate", "--episodes", "1"),
    "analyze": _cli("analyze", "--states", "16"),
    "calibrate": _cli("calibrate", "--states", "4"),
    "compare": _cli("compare"),
    "status": _cli("status"),
    "DPD.load": _load,
    "load_learner": _load_learner,
}


@pytest.mark.parametrize("opener", sorted(OPENERS))
@pytest.mark.parametrize("env_id", [SENTINEL, "dpd_test_envs:record_call ", "dpd_test_envs.__builtins__:record_call"])
def test_no_command_that_opens_a_run_folder_calls_a_function_it_names(finished_run, tmp_path, monkeypatch, capsys,
                                                                     opener, env_id):
    mark = tmp_path / "called"
    monkeypatch.setenv("DPD_TEST_CALLED", str(mark))
    monkeypatch.delenv(TRUSTED_MODULES_VAR, raising=False)
    monkeypatch.syspath_prepend(str(TESTS))
    import dpd_test_envs  # noqa: F401  (imported: the case D1 exploited, a module this process already has)

    run = naming(finished_run, tmp_path / "run", env_id)
    try:
        code = OPENERS[opener](run)
    except DPDUserError as exc:
        code, message = 2, str(exc)
    else:
        message = capsys.readouterr().err
    assert not mark.exists(), f"{opener} called the factory {env_id!r} that the folder names"
    if opener in ("compare", "status"):
        assert code == 0  # they read files only
    else:
        assert code == 2 and "imports no module and calls no function" in message, message


def test_resume_of_a_folder_naming_a_function_refuses_and_passing_it_again_resumes(finished_run, tmp_path, monkeypatch,
                                                                                  capsys):
    mark = tmp_path / "called"
    monkeypatch.setenv("DPD_TEST_CALLED", str(mark))
    monkeypatch.syspath_prepend(str(TESTS))
    import dpd_test_envs  # noqa: F401

    run = naming(finished_run, tmp_path / "run", SENTINEL, finished=False)
    assert main(["train", "--resume", str(run)]) == 2
    assert "imports no module" in capsys.readouterr().err and not mark.exists()
    # passing it again is the user's say-so: then the factory runs (it reaches the missing checkpoint)
    assert main(["train", "--resume", str(run), "--env", SENTINEL]) == 2
    assert "no checkpoint" in capsys.readouterr().err and mark.exists()


def test_a_module_the_user_trusts_opens_its_own_factories_only(finished_run, tmp_path, monkeypatch, capsys):
    mark = tmp_path / "called"
    monkeypatch.setenv("DPD_TEST_CALLED", str(mark))
    monkeypatch.setenv(TRUSTED_MODULES_VAR, "os, dpd_test_envs")
    monkeypatch.syspath_prepend(str(TESTS))
    from dpd.envs import make_env

    # os.abort is posix.abort: trusting a module trusts the functions defined there, not what it imported
    with pytest.raises(DPDUserError, match="unknown environment id 'os:abort'"):
        make_env("os:abort", trust=False)
    with pytest.raises(DPDUserError, match=r"unknown environment id 'dpd_test_envs:gym\.make'"):
        make_env("dpd_test_envs:gym.make", trust=False)
    run = naming(finished_run, tmp_path / "run", SENTINEL)
    assert main(["evaluate", str(run), "--episodes", "1"]) == 0
    assert mark.exists()


def test_a_gymnasium_id_opens_as_before(finished_run, tmp_path, capsys):
    assert main(["evaluate", str(naming(finished_run, tmp_path / "run", "CartPole-v1")), "--episodes", "1"]) == 0


@pytest.mark.parametrize("env_id", ["os:abort", "signal:pause", "tempfile:mkdtemp", "antigravity:CartPole-v1"])
def test_the_issues_own_cases_exit_2_in_a_fresh_process(finished_run, tmp_path, env_id):
    """D1 as reported: a fresh ``dpd evaluate`` process (SIGABRT, a hang, a folder made, a browser opened, before)."""
    run = naming(finished_run, tmp_path / "run", env_id)
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    env.pop(TRUSTED_MODULES_VAR, None)
    proc = subprocess.run([sys.executable, "-c", "import sys; from dpd.cli import main; sys.exit(main(sys.argv[1:]))",
                           "evaluate", str(run), "--episodes", "1"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "imports no module" in proc.stderr
    assert list((tmp_path / "tmp").iterdir()) == []  # tempfile:mkdtemp made nothing


def test_a_sweep_file_naming_a_module_is_refused_unless_trusted(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(TRUSTED_MODULES_VAR, raising=False)
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({"envs": ["os:abort"], "total_steps": 512, "seeds": [0], "variants": ["vanilla"]}))
    assert main(["sweep", "--config", str(sweep), "--out", str(tmp_path / "sw")]) == 2
    err = capsys.readouterr().err
    assert "--config" in err and f"{TRUSTED_MODULES_VAR}=os" in err and not (tmp_path / "sw").exists()


def _module_callables() -> list[str]:
    """``module:name`` for callables of modules this process has imported: what a hostile config.yaml can name."""
    ids = []
    for module in ("os", "shutil", "subprocess", "tempfile", "signal", "dpd_test_envs", "dpd.envs", "gymnasium"):
        mod = sys.modules.get(module)
        ids += [f"{module}:{name}" for name in dir(mod) if callable(getattr(mod, name, None))] if mod else []
    return ids


def test_generated_module_ids_from_a_folder_are_refused_before_any_lookup(monkeypatch):
    """The property over generated ids: whatever ``module:name`` a folder holds (callables of imported modules,
    dotted names, odd characters), an untrusted open refuses it in one line and never resolves the name (the
    lookup that found os.abort is never reached)."""
    pytest.importorskip("hypothesis")
    from hypothesis import given, settings
    from hypothesis import strategies as st

    import dpd.envs
    from dpd.envs import make_env

    monkeypatch.syspath_prepend(str(TESTS))
    import dpd_test_envs  # noqa: F401

    monkeypatch.delenv(TRUSTED_MODULES_VAR, raising=False)
    looked_up: list[tuple[str | None, str]] = []
    real_lookup = dpd.envs._lookup
    monkeypatch.setattr(dpd.envs, "_lookup", lambda m, q: looked_up.append((m, q)) or real_lookup(m, q))
    monkeypatch.setattr(dpd.envs, "_FACTORIES", {})
    names = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=20)
    ids = st.one_of(st.sampled_from(_module_callables()),
                    st.builds(lambda m, n: f"{m}:{n}", st.sampled_from(sorted(sys.modules)[:400]), names))

    @settings(max_examples=300, deadline=None, derandomize=True)
    @given(ids)
    def opened_from_a_folder(env_id: str) -> None:
        with pytest.raises(DPDUserError) as info:
            make_env(env_id, trust=False)
        assert "\n" not in str(info.value)

    opened_from_a_folder()
    import PIL  # noqa: F401  (found by CI's draw: an imported module before an id some other module registered)
    with pytest.raises(DPDUserError, match=r"config\.yaml"):
        make_env("PIL:Swimmer-v4", trust=False)
    assert make_env("dpd_test_envs:DpdNaN-v0", trust=False) is not None  # the id that module registered opens
    assert looked_up == []
