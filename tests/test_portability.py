"""Where POSIX's fcntl is missing (Windows) ``import dpd`` and a run work, and the run lock still excludes a second
writer through msvcrt; TensorBoard is an extra: a plain install trains, tensorboard=true without it is one line."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

# msvcrt's locking() imitated with POSIX record locks (fcntl.lockf, taken before fcntl is hidden): two processes
# contend the way they would on Windows, and dpd sees no fcntl
FAKE_MSVCRT = """
import fcntl as _real, os, sys, types
sys.modules["fcntl"] = None
msvcrt = types.ModuleType("msvcrt")
msvcrt.LK_NBLCK, msvcrt.LK_UNLCK = 2, 0
def locking(fd, mode, nbytes):  # a read-only descriptor (the probe) takes a read lock: lockf's rule, not Windows'
    kind = _real.LOCK_SH if _real.fcntl(fd, _real.F_GETFL) & os.O_ACCMODE == os.O_RDONLY else _real.LOCK_EX
    _real.lockf(fd, (kind | _real.LOCK_NB) if mode == msvcrt.LK_NBLCK else _real.LOCK_UN, nbytes, 0, os.SEEK_CUR)
msvcrt.locking = locking
sys.modules["msvcrt"] = msvcrt
"""


def _python(code: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          timeout=300, **kwargs)


def test_import_dpd_and_a_run_work_without_fcntl_and_without_tensorboard(tmp_path):
    code = """
    import sys
    sys.modules["fcntl"] = None        # as on Windows
    sys.modules["tensorboard"] = None  # a plain install: no extra
    import dpd
    from dpd import TrainConfig, train
    from dpd.errors import DPDUserError
    from dpd.run_files import RunLock, lock_holder
    out = sys.argv[1]
    train(TrainConfig(env_id="CartPole-v1", total_steps=512, eval_freq=0, snapshots=[], n_envs=1,
                      algo_kwargs={"n_steps": 128, "batch_size": 64}), out)
    from pathlib import Path
    assert (Path(out) / "summary.json").is_file() and not list(Path(out).rglob("events.out.tfevents*"))
    lock = RunLock(Path(out)).acquire()
    assert lock_holder(Path(out)) is None  # no lock primitive at all: nothing held
    lock.release()
    try:
        TrainConfig(env_id="CartPole-v1", total_steps=512, tensorboard=True).resolve()
    except DPDUserError as exc:
        assert "pip install 'dpd[tensorboard]'" in str(exc) and "\\n" not in str(exc), exc
    else:
        raise AssertionError("tensorboard=true without TensorBoard trained")
    print("ok")
    """
    done = _python(code, str(tmp_path / "run"))
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]


def test_the_run_lock_excludes_a_second_writer_through_msvcrt(tmp_path):
    holder = FAKE_MSVCRT + """
from pathlib import Path
from dpd.run_files import RunLock
lock = RunLock(Path(sys.argv[1])).acquire()
print("held", flush=True)
sys.stdin.readline()
lock.release()
"""
    other = FAKE_MSVCRT + """
from pathlib import Path
from dpd.errors import DPDUserError
from dpd.run_files import RunLock, lock_holder
folder = Path(sys.argv[1])
print(lock_holder(folder))
try:
    RunLock(folder).acquire()
    print("acquired")
except DPDUserError as exc:
    print(exc)
"""
    run = tmp_path / "run"
    run.mkdir()
    with subprocess.Popen([sys.executable, "-c", holder, str(run)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True) as first:
        assert first.stdout is not None and first.stdin is not None
        assert first.stdout.readline().strip() == "held"
        seen = _python(other, str(run))
        first.stdin.write("\n")
        first.stdin.flush()
        first.wait(timeout=60)
    pid = str(first.pid)
    assert seen.returncode == 0, seen.stderr[-2000:]
    assert seen.stdout.splitlines()[0] == pid  # dpd status's probe reads the holder's pid past no locked byte
    assert f"being written by another dpd process (pid {pid})" in seen.stdout
    after = _python(other, str(run))  # the holder released: free again
    assert after.stdout.splitlines() == ["None", "acquired"], after.stderr[-2000:]
    assert Path(run / ".lock").read_text() != ""
