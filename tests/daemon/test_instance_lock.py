"""One daemon per user, tested with real processes: a second start names the pid
that holds the lock, and a lock file left by a dead process does not block."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.daemon.instance_lock import (
    AlreadyRunning,
    InstanceLock,
    default_lock_path,
    read_pid,
)
from engine.daemon.xdg_dirs import RuntimeDirError, runtime_dir

ROOT = Path(__file__).resolve().parents[2]

# A process that takes the lock, says so, and holds it until stdin closes.
HOLDER = """
import sys
from engine.daemon.instance_lock import InstanceLock
lock = InstanceLock.acquire(sys.argv[1])
print("locked", flush=True)
sys.stdin.read()
"""


def start_holder(path: Path) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "locked"
    return holder


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    path = tmp_path / "daemon.lock"
    process = start_holder(path)
    yield process, path
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)


def test_a_second_start_fails_naming_the_pid_that_holds_the_lock(
    holder: tuple[subprocess.Popen[str], Path],
) -> None:
    process, path = holder
    with pytest.raises(AlreadyRunning) as error:
        InstanceLock.acquire(path)
    assert error.value.pid == process.pid
    assert f"pid {process.pid}" in str(error.value)
    assert str(path) in str(error.value)


def test_the_lock_is_free_again_once_the_holder_exits_cleanly(
    holder: tuple[subprocess.Popen[str], Path],
) -> None:
    process, path = holder
    assert process.stdin is not None
    process.stdin.close()
    process.wait(timeout=10)
    with InstanceLock.acquire(path) as lock:
        assert lock.held
        assert read_pid(path) == os.getpid()


def test_a_stale_file_from_a_killed_process_does_not_block(
    holder: tuple[subprocess.Popen[str], Path],
) -> None:
    process, path = holder
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    assert read_pid(path) == process.pid  # the dead daemon's pid is still there
    lock = InstanceLock.acquire(path)
    try:
        assert read_pid(path) == os.getpid()
    finally:
        lock.release()
    assert read_pid(path) is None
    assert not lock.held


def test_a_child_process_of_the_daemon_cannot_take_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "daemon.lock"
    with InstanceLock.acquire(path):
        result = subprocess.run(
            [sys.executable, "-c", HOLDER, str(path)],
            input="",
            check=False,
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            timeout=30,
        )
        assert result.returncode != 0
        assert f"pid {os.getpid()}" in result.stderr
    # Released: a new process may take it.
    start_holder(path).kill()


def test_the_lock_lives_in_xdg_runtime_dir(tmp_path: Path) -> None:
    env = {"XDG_RUNTIME_DIR": str(tmp_path)}
    assert default_lock_path(env) == tmp_path / "soundscape" / "daemon.lock"
    assert (tmp_path / "soundscape").is_dir()


def test_without_xdg_runtime_dir_a_private_tmp_dir_is_used() -> None:
    path = runtime_dir({})
    assert path == Path("/tmp") / f"soundscape-{os.getuid()}"
    info = path.stat()
    assert info.st_uid == os.getuid()
    assert info.st_mode & 0o077 == 0


def test_a_tmp_dir_open_to_others_is_refused(tmp_path: Path) -> None:
    path = runtime_dir({})
    mode = path.stat().st_mode & 0o777
    try:
        path.chmod(0o777)
        with pytest.raises(RuntimeDirError, match="not a private directory"):
            runtime_dir({})
    finally:
        path.chmod(mode)
