"""The systemd user unit that runs the daemon, and installing it.

``soundscape service install`` writes ``soundscape.service`` into
``$XDG_CONFIG_HOME/systemd/user/`` (else ``~/.config/systemd/user/``), then runs
``systemctl --user daemon-reload`` and ``enable``. The unit is ``Type=notify``:
systemd counts the daemon as started when it sends ``READY=1``, and restarts it
if it stops sending ``WATCHDOG=1`` (a hung process) or exits with an error.

``ExecStart`` names the absolute path of the interpreter that installed it and
``PYTHONPATH`` names the directory holding this ``engine`` package, so the
service runs exactly the code and virtual environment the user installed from,
whatever the session's ``PATH`` says.

Where there is no systemd (no ``systemctl``, or no user manager to talk to),
nothing is written: the functions say so and show how to run the daemon
another way.

Control thread only.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from engine.daemon import xdg_dirs

UNIT_NAME = "soundscape.service"
WATCHDOG_S = 10
RESTART_DELAY_S = 2
# SIGTERM fades out, then the daemon exits; systemd waits this much longer
# than the fade before it kills.
STOP_MARGIN_S = 10
SYSTEMCTL_TIMEOUT_S = 20


def _package_root() -> Path:
    import engine

    return Path(engine.__file__).resolve().parent.parent


def daemon_command(
    python: str | None = None, config_path: str | Path | None = None
) -> list[str]:
    """The command that starts the daemon: ``PYTHON -m engine.cli daemon``."""
    command = [str(Path(python or sys.executable).absolute()), "-m", "engine.cli"]
    command.append("daemon")
    if config_path is not None:
        command += ["--config", str(Path(config_path).expanduser().absolute())]
    return command


def _quote(argument: str) -> str:
    # systemd's ExecStart takes C-style double quotes; "%" starts a specifier.
    text = argument.replace("%", "%%")
    if not text or any(c in text for c in " \t\"\\'$;"):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def unit_text(
    python: str | None = None,
    config_path: str | Path | None = None,
    fade_out_s: float = 2.0,
    watchdog_s: int = WATCHDOG_S,
    package_root: Path | None = None,
) -> str:
    """The content of ``soundscape.service``.

    >>> "Type=notify" in unit_text(python="/usr/bin/python3")
    True
    """
    exec_start = " ".join(_quote(a) for a in daemon_command(python, config_path))
    root = package_root or _package_root()
    stop_timeout_s = int(fade_out_s + 0.999) + STOP_MARGIN_S
    return f"""\
[Unit]
Description=Soundscape engine (adaptive background soundscapes)
# Start after the session's sound server when it has one; work without it.
After=pipewire.service pipewire-pulse.service pulseaudio.service jack.service

[Service]
Type=notify
# Only the daemon itself may say READY=1 or WATCHDOG=1.
NotifyAccess=main
ExecStart={exec_start}
ExecReload=/bin/kill -HUP $MAINPID
Environment={_quote("PYTHONPATH=" + str(root))}
Environment=PYTHONUNBUFFERED=1
WatchdogSec={int(watchdog_s)}
Restart=on-failure
RestartSec={RESTART_DELAY_S}
TimeoutStopSec={stop_timeout_s}

[Install]
WantedBy=default.target
"""


def unit_path(env: Mapping[str, str] | None = None) -> Path:
    """Where the user unit goes: ``$XDG_CONFIG_HOME/systemd/user/``."""
    return xdg_dirs.config_home(env) / "systemd" / "user" / UNIT_NAME


def _run(command: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(command),
        capture_output=True,
        text=True,
        timeout=SYSTEMCTL_TIMEOUT_S,
        check=False,
    )


@dataclass
class ServiceResult:
    """What install or uninstall did, as lines to print, and whether it worked."""

    ok: bool
    lines: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "\n".join(self.lines)


def systemd_problem() -> str | None:
    """Why systemd cannot manage a user service here, or ``None`` if it can."""
    if shutil.which("systemctl") is None:
        return "systemd is not available here (no systemctl on PATH)"
    try:
        result = _run(["systemctl", "--user", "show-environment"])
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"systemd is not available here (systemctl --user: {error})"
    if result.returncode != 0:
        reason = (result.stderr or result.stdout).strip().splitlines()
        detail = reason[0] if reason else f"exit status {result.returncode}"
        return f"systemd has no user manager to talk to ({detail})"
    return None


def other_ways(python: str | None = None, config_path: str | Path | None = None) -> str:
    """How to run the daemon without systemd."""
    command = shlex.join(daemon_command(python, config_path))
    return (
        "Run the daemon another way:\n"
        f"  in a terminal:        {command}\n"
        f"  in the background:    nohup {command} >/dev/null 2>&1 &\n"
        "  at login: add that command to your session's autostart (for example\n"
        "  a ~/.config/autostart/soundscape.desktop entry with Exec= set to it)."
    )


def _systemctl(*args: str) -> tuple[bool, str]:
    command = ["systemctl", "--user", *args]
    try:
        result = _run(command)
    except (OSError, subprocess.TimeoutExpired) as error:
        return False, f"{shlex.join(command)}: {error}"
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().replace("\n", "; ")
        return False, f"{shlex.join(command)} failed: {detail}"
    return True, f"ran {shlex.join(command)}"


def install(
    config_path: str | Path | None = None,
    fade_out_s: float = 2.0,
    env: Mapping[str, str] | None = None,
    python: str | None = None,
) -> ServiceResult:
    """Write and enable the user unit (not started: ``systemctl --user start
    soundscape`` or the next login starts it)."""
    problem = systemd_problem()
    if problem is not None:
        return ServiceResult(
            False, [f"{problem}: nothing installed.", other_ways(python, config_path)]
        )
    path = unit_path(env)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(unit_text(python, config_path, fade_out_s), encoding="utf-8")
    lines = [f"wrote {path}"]
    for args in (("daemon-reload",), ("enable", UNIT_NAME)):
        ok, message = _systemctl(*args)
        lines.append(message)
        if not ok:
            return ServiceResult(False, lines)
    lines.append(f"start it now with: systemctl --user start {UNIT_NAME}")
    return ServiceResult(True, lines)


def uninstall(env: Mapping[str, str] | None = None) -> ServiceResult:
    """Stop, disable and remove the user unit (each step only if it applies)."""
    path = unit_path(env)
    problem = systemd_problem()
    lines: list[str] = []
    if problem is None:
        # A unit that is not loaded cannot be stopped or disabled; say so and
        # go on, removing the file is what matters.
        lines.append(_systemctl("disable", "--now", UNIT_NAME)[1])
    else:
        lines.append(f"{problem}: only removing the unit file.")
    if path.exists():
        path.unlink()
        lines.append(f"removed {path}")
    else:
        lines.append(f"no unit file at {path}")
    if problem is None:
        ok, message = _systemctl("daemon-reload")
        lines.append(message)
        return ServiceResult(ok, lines)
    return ServiceResult(True, lines)
