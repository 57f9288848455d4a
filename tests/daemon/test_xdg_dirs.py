"""XDG base directories: the variables when absolute, else the home fallbacks."""

from __future__ import annotations

from pathlib import Path

from engine.daemon.xdg_dirs import config_dir, config_home, runtime_dir, state_dir


def test_absolute_variables_are_used() -> None:
    env = {"XDG_CONFIG_HOME": "/c", "XDG_STATE_HOME": "/s", "HOME": "/h"}
    assert config_home(env) == Path("/c")
    assert config_dir(env) == Path("/c/soundscape")
    assert state_dir(env) == Path("/s/soundscape")


def test_missing_or_relative_variables_fall_back_to_home() -> None:
    env = {"XDG_CONFIG_HOME": "rel", "XDG_STATE_HOME": "", "HOME": "/h"}
    assert config_dir(env) == Path("/h/.config/soundscape")
    assert state_dir(env) == Path("/h/.local/state/soundscape")


def test_runtime_dir_is_created_private(tmp_path: Path) -> None:
    path = runtime_dir({"XDG_RUNTIME_DIR": str(tmp_path)})
    assert path == tmp_path / "soundscape"
    assert path.stat().st_mode & 0o777 == 0o700
    assert runtime_dir({"XDG_RUNTIME_DIR": "relative"}, create=False).parent == (
        Path("/tmp")
    )
