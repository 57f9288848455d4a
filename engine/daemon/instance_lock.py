"""One daemon per user: an exclusive lock on a file that holds the daemon's pid.

The lock is ``flock(2)`` on ``$XDG_RUNTIME_DIR/soundscape/daemon.lock`` (else
``/tmp/soundscape-UID/daemon.lock``). The kernel drops it when the holder
exits, however it exits, so a file left by a crashed daemon never blocks the
next start: the file is only a place to lock and to read the holder's pid
from, not a flag. ``flock`` rather than ``fcntl`` record locks, because a
record lock is silently released when the process closes *any* descriptor of
the file (so reading the pid back would drop it).

    lock = InstanceLock.acquire()      # or raises AlreadyRunning
    ...
    lock.release()                     # or let the process exit

A second start fails with ``AlreadyRunning``: "another soundscape daemon is
running (pid 4242; lock /run/user/1000/soundscape/daemon.lock)".

Control thread only.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Mapping
from pathlib import Path

from engine.daemon import xdg_dirs

LOCK_FILE_NAME = "daemon.lock"


class AlreadyRunning(RuntimeError):
    """Another process holds the lock; ``pid`` is its pid, if it wrote one."""

    def __init__(self, path: Path, pid: int | None) -> None:
        self.path = path
        self.pid = pid
        holder = f"pid {pid}" if pid is not None else "pid not yet written"
        super().__init__(
            f"another soundscape daemon is running ({holder}; lock {path}). "
            "Stop it first (`soundscape stop`, or `kill "
            f"{pid if pid is not None else 'PID'}`)."
        )


def default_lock_path(env: Mapping[str, str] | None = None) -> Path:
    """The lock file in the runtime directory (the directory is created)."""
    return xdg_dirs.runtime_dir(env) / LOCK_FILE_NAME


def read_pid(path: Path) -> int | None:
    """The pid written in a lock file, or ``None`` (missing, empty, garbage)."""
    try:
        text = Path(path).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


class InstanceLock:
    """A held instance lock. Release it, or exit: the kernel releases it too."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, path: str | Path | None = None) -> InstanceLock:
        """Take the lock without waiting and write our pid into the file.

        Raises :class:`AlreadyRunning` naming the holder's pid, or ``OSError``
        when the file cannot be created.
        """
        path = Path(path) if path is not None else default_lock_path()
        # O_CLOEXEC: a scene's helper process must not inherit (and so keep)
        # the lock after the daemon has gone.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AlreadyRunning(path, read_pid(path)) from None
        except BaseException:
            os.close(fd)
            raise
        # Written only while holding the lock, so the pid there is the holder's.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        return cls(path, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Empty the pid and drop the lock (idempotent). The file stays: removing
        it would race with a starting daemon that has already opened it."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing the last descriptor drops the flock

    def __enter__(self) -> InstanceLock:  # noqa: PYI034 - Self needs 3.11
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
