"""The daemon config: defaults, file, flags, last scene; every value says where it
came from, and every mistake is one line naming the file (or flag), line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.daemon.config import (
    DEFAULT_SCENE,
    SETTINGS,
    DaemonConfig,
    default_config_path,
    load_config,
)
from engine.daemon.last_scene import remember_scene
from engine.scenes.errors import SceneError


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
    }


def write_config(env: dict[str, str], text: str) -> Path:
    path = default_config_path(env)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_without_a_file_every_value_is_the_default(env: dict[str, str]) -> None:
    config = load_config(env=env)
    assert config.config_file is None
    assert config == DaemonConfig(
        state_dir=Path(env["XDG_STATE_HOME"]) / "soundscape",
        origins={},
    )
    assert config.scene == DEFAULT_SCENE
    assert (config.osc_host, config.osc_port, config.osc_prefix) == (
        "127.0.0.1",
        9000,
        "/soundscape",
    )
    assert all(origin == "default" for _, _, origin in config.rows())


def test_the_xdg_config_file_is_found_and_each_value_names_its_line(
    env: dict[str, str],
) -> None:
    path = write_config(
        env,
        "# my daemon\n"
        "scene: rain\n"
        "audio:\n"
        "  device: USB DAC\n"
        "  block_size: 256\n"
        "osc:\n"
        "  port: 9100\n"
        "volume: {cap_dbfs: -10}\n",
    )
    config = load_config(env=env)
    assert config.config_file == path
    assert (config.scene, config.device, config.block_size) == ("rain", "USB DAC", 256)
    assert config.osc_port == 9100
    assert config.volume_cap_dbfs == -10.0
    assert config.origin("scene") == f"{path}:2"
    assert config.origin("device") == f"{path}:4"
    assert config.origin("block_size") == f"{path}:5"
    assert config.origin("osc_port") == f"{path}:7"
    assert config.origin("volume_cap_dbfs") == f"{path}:8"
    assert config.origin("sample_rate") == "default"


def test_without_xdg_config_home_the_file_is_under_home_dot_config(
    tmp_path: Path,
) -> None:
    env = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": "relative/is/ignored"}
    path = tmp_path / ".config" / "soundscape" / "config.yaml"
    path.parent.mkdir(parents=True)
    path.write_text("log_level: debug\n")
    config = load_config(env=env)
    assert config.config_file == path
    assert config.log_level == "debug"


def test_flags_override_the_file_and_say_so(env: dict[str, str]) -> None:
    path = write_config(env, "osc:\n  port: 9100\n  host: 127.0.0.1\n")
    config = load_config(
        env=env,
        overrides={"osc_port": "9200", "device": "3", "osc_enabled": False},
    )
    assert config.osc_port == 9200
    assert config.origin("osc_port") == "flag --osc-port"
    assert config.device == 3  # digits are an index
    assert config.osc_enabled is False
    assert config.origin("osc_host") == f"{path}:3"


def test_an_explicit_config_path_is_used_and_must_exist(
    env: dict[str, str], tmp_path: Path
) -> None:
    write_config(env, "osc: {port: 9100}\n")
    other = tmp_path / "other.yaml"
    other.write_text("osc: {port: 9300}\n")
    assert load_config(other, env=env).osc_port == 9300
    with pytest.raises(SceneError) as error:
        load_config(tmp_path / "missing.yaml", env=env)
    assert str(error.value) == f"{tmp_path / 'missing.yaml'}: no such config file"


def test_a_file_of_comments_only_changes_nothing(env: dict[str, str]) -> None:
    path = write_config(env, "# nothing yet\n\n")
    config = load_config(env=env)
    assert config.config_file == path
    assert all(origin == "default" for _, _, origin in config.rows())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "osc:\n  port: 99999\n",
            ":2:3: osc.port: expected a number in 1..65535, got 99999",
        ),
        (
            "osc:\n  prot: 9001\n",
            ":2:3: osc.prot: unknown key 'prot' in osc (did you mean 'port'?)",
        ),
        ("audio:\n  sample_rate: 44000\n", ":2:3: audio.sample_rate: expected 44100"),
        ("audio:\n  device: [1, 2]\n", ":2:3: audio.device: expected a device name"),
        ("log_level: loud\n", ":1:1: log_level: unknown 'loud'"),
        ("osc: {host: 'my host'}\n", ":1:7: osc.host: expected an IP address"),
        ("osc: {prefix: 'soundscape'}\n", ":1:7: osc.prefix: expected an OSC address"),
        ("volume: {cap_dbfs: 0}\n", ":1:10: volume.cap_dbfs: expected a number in -20"),
        ("shutdown:\n  fade_s: -1\n", ":2:3: shutdown.fade_s: expected a number in 0"),
        (
            "scene: focus\nscene: rain\n",
            ":2:1: duplicate key 'scene' (first on line 1)",
        ),
        ("- scene\n", ":1:1: the config must be a mapping"),
        ("osc: {port: 1\n", "YAML syntax"),
    ],
)
def test_a_bad_file_is_one_line_naming_file_line_and_key(
    env: dict[str, str], text: str, expected: str
) -> None:
    path = write_config(env, text)
    with pytest.raises(SceneError) as error:
        load_config(env=env)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    assert expected in message


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"osc_port": "0"}, "--osc-port: osc.port: expected a number in 1..65535"),
        ({"block_size": "big"}, "--block-size: audio.block_size: expected a number"),
        ({"log_level": "verbose"}, "--log-level: log_level: unknown 'verbose'"),
        ({"device": " "}, "--device: audio.device: expected a device name"),
        ({"osc_prefix": "/a/"}, "--osc-prefix: osc.prefix: expected an OSC address"),
        ({"osc_host": "a b"}, "--osc-host: osc.host: expected an IP address"),
    ],
)
def test_a_bad_flag_names_the_flag(
    env: dict[str, str], overrides: dict[str, str], expected: str
) -> None:
    with pytest.raises(SceneError) as error:
        load_config(env=env, overrides=overrides)
    assert str(error.value).startswith(expected)


def test_device_names_are_kept_as_typed_not_read_as_yaml(env: dict[str, str]) -> None:
    # "on" would be a boolean and "a: b" a mapping if flags were YAML.
    assert load_config(env=env, overrides={"device": "on"}).device == "on"
    assert load_config(env=env, overrides={"device": "hw: 0"}).device == "hw: 0"


def test_the_last_scene_is_used_when_nothing_names_one(env: dict[str, str]) -> None:
    state = Path(env["XDG_STATE_HOME"]) / "soundscape"
    remember_scene("sleep", state)
    config = load_config(env=env)
    assert config.scene == "sleep"
    assert config.origin("scene") == f"last played ({state / 'last_scene'})"
    path = write_config(env, "scene: rain\n")
    assert load_config(env=env).origin("scene") == f"{path}:1"
    assert load_config(env=env, overrides={"scene": "focus"}).scene == "focus"
    assert load_config(env=env, use_last_scene=False).scene == "rain"


def test_the_state_dir_setting_moves_the_last_scene(
    env: dict[str, str], tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    remember_scene("ocean", elsewhere)
    config = load_config(env=env, overrides={"state_dir": str(elsewhere)})
    assert config.state_dir == elsewhere
    assert config.scene == "ocean"


def test_paths_expand_the_home_directory(env: dict[str, str]) -> None:
    write_config(env, "paths:\n  scenes: [~/soundscapes, /opt/scenes]\n")
    config = load_config(env=env)
    assert config.scene_dirs == (
        Path("~/soundscapes").expanduser(),
        Path("/opt/scenes"),
    )


def test_the_sleep_cap_never_exceeds_the_main_cap(env: dict[str, str]) -> None:
    config = load_config(env=env)
    assert config.volume_cap_for(sleep_scene=False) == -6.0
    assert config.volume_cap_for(sleep_scene=True) == -18.0
    quiet = load_config(env=env, overrides={"volume_cap_dbfs": "-19"})
    assert quiet.volume_cap_for(sleep_scene=True) == -19.0


def test_the_table_lists_every_setting_with_value_and_origin(
    env: dict[str, str],
) -> None:
    path = write_config(env, "osc:\n  port: 9100\n")
    text = load_config(env=env, overrides={"log_level": "debug"}).format()
    lines = text.splitlines()
    assert lines[0] == f"config file: {path}"
    assert len(lines) == 1 + len(SETTINGS)
    by_key = {line.split()[0]: line.split() for line in lines[1:]}
    assert by_key["osc.port"][1:] == ["9100", f"{path}:2"]
    assert by_key["log_level"][1:] == ["debug", "flag", "--log-level"]
    assert by_key["audio.sample_rate"][1:] == ["48000", "default"]
