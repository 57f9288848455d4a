"""Where the daemon keeps its files, per the XDG Base Directory specification.

- config: ``$XDG_CONFIG_HOME/soundscape`` (else ``~/.config/soundscape``)
- state: ``$XDG_STATE_HOME/soundscape`` (else ``~/.local/state/soundscape``)
- runtime: ``$XDG_RUNTIME_DIR/soundscape`` (else ``/tmp/soundscape-UID``, made
  private to this user and checked, since anyone can create names in /tmp)

The specification says a relative path in one of these variables is invalid
and must be ignored; so it is here.

    >>> config_dir({"XDG_CONFIG_HOME": "/cfg"}).as_posix()
    '/cfg/soundscape'

Control thread only.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

APP_NAME = "soundscape"


def _base(env: Mapping[str, str], variable: str, fallback: str) -> Path:
    value = env.get(variable, "")
    if value and os.path.isabs(value):
        return Path(value)
    home = env.get("HOME") or os.path.expanduser("~")
    return Path(home) / fallback


def config_home(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME`` or ``~/.config`` (where ``systemd/user`` lives too)."""
    return _base(os.environ if env is None else env, "XDG_CONFIG_HOME", ".config")


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    """The daemon's config directory (not created)."""
    return config_home(env) / APP_NAME


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    """The daemon's state directory (not created): the last scene played."""
    env = os.environ if env is None else env
    return _base(env, "XDG_STATE_HOME", ".local/state") / APP_NAME


class RuntimeDirError(OSError):
    """The runtime directory exists but is not safe to use."""


def runtime_dir(env: Mapping[str, str] | None = None, create: bool = True) -> Path:
    """The daemon's runtime directory (lock file); created mode 0700 if asked.

    The ``/tmp`` fallback is refused (:class:`RuntimeDirError`) if it is a
    symlink, not ours, or open to others: another user could otherwise pre-create
    it and hold our lock or read our pid file.
    """
    env = os.environ if env is None else env
    runtime = env.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isabs(runtime):
        path = Path(runtime) / APP_NAME
        if create:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path
    path = Path("/tmp") / f"{APP_NAME}-{os.getuid()}"
    if create:
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            pass
        info = os.lstat(path)
        if (
            not stat.S_ISDIR(info.st_mode)
            or info.st_uid != os.getuid()
            or info.st_mode & 0o077
        ):
            raise RuntimeDirError(
                f"{path}: not a private directory of uid {os.getuid()} "
                f"(mode {stat.filemode(info.st_mode)}, owner {info.st_uid}); "
                "remove it or set XDG_RUNTIME_DIR"
            )
    return path
