"""The daemon's CLI commands, run as a user would: ``soundscape config show``
(every value and where it came from) and ``soundscape service install|uninstall``
(here with no systemd, and with a stand-in systemctl)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def soundscape(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
    )


def user_env(tmp_path: Path) -> dict[str, str]:
    return {
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
    }


def test_config_show_prints_each_value_and_its_origin(tmp_path: Path) -> None:
    env = user_env(tmp_path)
    config = tmp_path / "config" / "soundscape" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("osc:\n  port: 9100\n")
    result = soundscape("config", "show", "--block-size", "256", env=env)
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()}
    assert lines["config"] == ["file:", str(config)]
    assert lines["osc.port"] == ["9100", f"{config}:2"]
    assert lines["audio.block_size"] == ["256", "flag", "--block-size"]
    assert lines["audio.sample_rate"] == ["48000", "default"]


def test_config_show_with_a_bad_file_is_one_line_naming_file_line_and_key(
    tmp_path: Path,
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("audio:\n  sample_rate: 96000\n")
    result = soundscape("config", "show", "--config", str(bad), env=user_env(tmp_path))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"soundscape: {bad}:2:3: audio.sample_rate: expected 44100 or 48000 Hz, "
        "got 96000\n"
    )


def test_service_install_without_systemd_says_so_and_installs_nothing(
    tmp_path: Path,
) -> None:
    env = {**user_env(tmp_path), "PATH": str(tmp_path / "no-bin")}
    result = soundscape("service", "install", env=env)
    assert result.returncode == 1
    assert "systemd is not available here" in result.stdout
    assert "engine.cli daemon" in result.stdout
    assert not (tmp_path / "config" / "systemd").exists()


def test_service_install_and_uninstall_with_systemctl(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    systemctl = bin_dir / "systemctl"
    systemctl.write_text(f'#!/bin/sh\necho "$*" >> {tmp_path / "calls"}\n')
    systemctl.chmod(0o755)
    env = {**user_env(tmp_path), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    unit = tmp_path / "config" / "systemd" / "user" / "soundscape.service"
    installed = soundscape("service", "install", env=env)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert "Type=notify" in unit.read_text()
    removed = soundscape("service", "uninstall", env=env)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert not unit.exists()
    calls = (tmp_path / "calls").read_text().splitlines()
    assert "--user enable soundscape.service" in calls
    assert "--user disable --now soundscape.service" in calls
