"""The systemd user unit's content, and install/uninstall against a stand-in
``systemctl`` (a real executable on PATH that records its arguments)."""

from __future__ import annotations

import configparser
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from engine.daemon import systemd_unit
from engine.daemon.systemd_unit import (
    UNIT_NAME,
    daemon_command,
    install,
    uninstall,
    unit_path,
    unit_text,
)

ROOT = Path(__file__).resolve().parents[2]


def parse_unit(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


def test_the_unit_is_a_notify_service_with_a_watchdog() -> None:
    unit = parse_unit(unit_text(python="/opt/venv/bin/python", fade_out_s=3.0))
    service = unit["Service"]
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert service["WatchdogSec"] == "10"
    assert service["Restart"] == "on-failure"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    # The fade plus a margin, so systemd does not kill a fading daemon.
    assert int(service["TimeoutStopSec"]) >= 3 + 5
    assert unit["Install"]["WantedBy"] == "default.target"
    assert shlex.split(service["ExecStart"]) == [
        "/opt/venv/bin/python",
        "-m",
        "engine.cli",
        "daemon",
    ]


def test_exec_start_runs_this_interpreter_and_this_package() -> None:
    text = unit_text(config_path="/etc/my config.yaml")
    exec_start = shlex.split(parse_unit(text)["Service"]["ExecStart"])
    assert exec_start[0] == str(Path(sys.executable).absolute())
    assert exec_start[-2:] == ["--config", "/etc/my config.yaml"]
    environment = [
        shlex.split(line.removeprefix("Environment="))[0]
        for line in text.splitlines()
        if line.startswith("Environment=")
    ]
    assert f"PYTHONPATH={ROOT}" in environment


def test_the_command_in_the_unit_really_starts_the_cli() -> None:
    # Everything before "daemon" must be a working entry point of our CLI.
    command = daemon_command()[:-1] + ["--help"]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "soundscape" in result.stdout


def test_percent_signs_are_escaped_for_systemd() -> None:
    text = unit_text(python="/home/a%b/python")
    assert "/home/a%%b/python" in text


@pytest.fixture
def fake_systemctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``systemctl`` on PATH that logs each call; exits 1 when asked to fail."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "systemctl.log"
    script = bin_dir / "systemctl"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {shlex.quote(str(log))}\n'
        f"if [ -e {shlex.quote(str(tmp_path / 'fail'))} ]; then\n"
        '  echo "Failed to connect to bus: No medium found" >&2; exit 1\n'
        "fi\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def test_install_writes_the_unit_and_enables_it(
    fake_systemctl: Path, tmp_path: Path
) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "cfg"), "HOME": str(tmp_path)}
    result = install(env=env, fade_out_s=2.0)
    assert result.ok, result.text()
    path = tmp_path / "cfg" / "systemd" / "user" / UNIT_NAME
    assert unit_path(env) == path
    assert path.read_text() == unit_text(fade_out_s=2.0)
    assert fake_systemctl.read_text().splitlines() == [
        "--user show-environment",
        "--user daemon-reload",
        f"--user enable {UNIT_NAME}",
    ]
    assert f"wrote {path}" in result.text()


def test_uninstall_disables_and_removes_the_unit(
    fake_systemctl: Path, tmp_path: Path
) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "cfg"), "HOME": str(tmp_path)}
    install(env=env)
    fake_systemctl.unlink()
    result = uninstall(env=env)
    assert result.ok, result.text()
    assert not unit_path(env).exists()
    assert fake_systemctl.read_text().splitlines() == [
        "--user show-environment",
        f"--user disable --now {UNIT_NAME}",
        "--user daemon-reload",
    ]


def test_without_a_user_manager_nothing_is_installed_and_other_ways_are_shown(
    fake_systemctl: Path, tmp_path: Path
) -> None:
    (tmp_path / "fail").touch()
    env = {"XDG_CONFIG_HOME": str(tmp_path / "cfg"), "HOME": str(tmp_path)}
    result = install(env=env)
    assert not result.ok
    assert not unit_path(env).exists()
    text = result.text()
    assert "systemd has no user manager" in text
    assert "No medium found" in text
    assert "nohup" in text and "engine.cli daemon" in text


def test_without_systemctl_at_all_it_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert systemd_unit.systemd_problem() == (
        "systemd is not available here (no systemctl on PATH)"
    )
    env = {"XDG_CONFIG_HOME": str(tmp_path / "cfg"), "HOME": str(tmp_path)}
    result = install(env=env)
    assert not result.ok
    assert not unit_path(env).exists()
    removed = uninstall(env=env)
    assert removed.ok
    assert "no unit file at" in removed.text()
