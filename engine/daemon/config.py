"""The daemon's configuration: defaults, a YAML file, command-line flags.

Precedence, lowest first: built-in defaults, the config file, flags. The scene
has one more source between defaults and the file: the last scene played (see
``engine.daemon.last_scene``). Every effective value remembers where it came
from, for ``soundscape config show``.

The file is ``$XDG_CONFIG_HOME/soundscape/config.yaml`` (else
``~/.config/soundscape/config.yaml``), or the one ``--config PATH`` names. A
missing default file means "all defaults"; a missing ``--config`` file is an
error. Every key is optional::

    scene: focus               # else the last scene played, else "focus"
    audio:
      device: system           # a name (survives re-enumeration) or an index
      sample_rate: 48000       # 44100 or 48000
      block_size: 128          # frames per callback, 32..2048
    osc:
      enabled: true
      host: 127.0.0.1          # loopback: only this machine may control it
      port: 9000
      prefix: /soundscape
      hr_bridge: all           # heart-rate bridge presets: all, none, vrcosc,...
    volume:
      cap_dbfs: -6             # nothing leaves the daemon louder than this
      sleep_cap_dbfs: -18      # ...and nothing this loud from a sleep scene
    shutdown:
      fade_s: 2.0              # SIGTERM fades out over this long
    log_level: info            # debug, info, warning, error
    paths:
      scenes: [~/soundscapes]  # more directories to find scenes in
      state: ~/.local/state/soundscape

Why these caps: the engine's limiter already stops everything at -1 dBTP, but a
daemon runs unattended for days and takes volume commands over the network;
-6 dBFS leaves 5 dB between the loudest it will ever play and full scale, the
margin broadcast practice keeps for peaks, so a stray ``volume 0`` over OSC on
headphones is loud but not painful. Sleep scenes default 12 dB lower again
(-18 dBFS peak), near the level of quiet speech at the ear, because they play
while the listener cannot reach the volume. A sleep cap above the main cap
takes the main cap (the stricter wins). The daemon sets the master limiter's
ceiling to the cap, so it holds whatever arrives over OSC (hence -20..-1: the
limiter's range).

Values are checked with the scene format's own specs (``engine.scenes.schema``)
and YAML loader, so a bad config is one line naming the file, line and key:
``~/.config/soundscape/config.yaml:4:9: osc.port: expected a number in
1..65535, got 99999``. A bad flag names the flag the same way.

Control thread only.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.daemon import xdg_dirs
from engine.daemon.last_scene import last_scene_path, recall_scene
from engine.scenes.errors import KeyPath, SceneError
from engine.scenes.schema import Flag, ListOf, Number, Record, Spec, Text
from engine.scenes.yaml_source import YamlSource, load_yaml

CONFIG_FILE_NAME = "config.yaml"
DEFAULT_SCENE = "focus"
SAMPLE_RATES_HZ = (44100, 48000)
LOG_LEVELS = ("debug", "info", "warning", "error")
# The engine's limiter ceiling is -1 dBTP: a cap above it would promise nothing.
# The daemon enforces the cap with that limiter, which goes down to -20 dBTP.
MAX_CAP_DBFS = -1.0
MIN_CAP_DBFS = -20.0

_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")
# Characters OSC gives meaning to in address patterns (OSC 1.0 spec).
_OSC_RESERVED = set(" #*,?[]{}")


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, dict | list):
        return "a mapping" if isinstance(value, dict) else "a list"
    return "nothing (null)" if value is None else repr(value)


@dataclass
class DeviceName(Spec):
    """An audio output: a name (matched again at each open), an index, or null
    for the default output."""

    default: Any = None
    doc: str = (
        "output device: a name (or part of one), an index, or null for the default"
    )

    def check(self, source: YamlSource, path: KeyPath, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        if isinstance(value, str) and value.strip():
            text = value.strip()
            return int(text) if text.isdigit() else text
        raise source.error(
            path,
            "expected a device name, an index >= 0, or null (the default "
            f"output), got {_describe(value)}",
        )

    def json_schema(self) -> dict[str, Any]:
        schema = {"type": ["string", "integer", "null"], "minimum": 0}
        return self._schema_extras(schema)


def _check_osc(source: YamlSource, path: KeyPath, osc: dict[str, Any]) -> None:
    host = osc.get("host")
    if host is not None:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if not _HOSTNAME.match(host):
                raise source.error(
                    (*path, "host"),
                    f"expected an IP address or a host name, got {host!r}",
                ) from None
    bridges = osc.get("hr_bridge")
    if bridges is not None:
        from engine.control.osc_heart import parse_bridges

        try:
            parse_bridges(bridges)
        except ValueError as error:
            raise source.error((*path, "hr_bridge"), str(error)) from None
    prefix = osc.get("prefix")
    if prefix is not None:
        bad = _OSC_RESERVED.intersection(prefix)
        if not prefix.startswith("/") or prefix.endswith("/") or bad or "//" in prefix:
            raise source.error(
                (*path, "prefix"),
                f"expected an OSC address like /soundscape (starts with /, no "
                f"trailing /, none of ' #*,?[]{{}}'), got {prefix!r}",
            )


CONFIG_SPEC = Record(
    "config",
    {
        "scene": Text(doc="scene to start: a file, a shipped scene or a demo"),
        "audio": Record(
            "audio",
            {
                "device": DeviceName(),
                # The range only catches nonsense; _check_sample_rate names
                # the two rates the engine runs at.
                "sample_rate": Number(
                    unit="Hz", minimum=1, maximum=384000, integer=True
                ),
                "block_size": Number(
                    unit="frames", minimum=32, maximum=2048, integer=True
                ),
            },
        ),
        "osc": Record(
            "osc",
            {
                "enabled": Flag(doc="listen for OSC control"),
                "host": Text(doc="address to listen on (loopback by default)"),
                "port": Number(minimum=1, maximum=65535, integer=True),
                "prefix": Text(doc="OSC address prefix of every command"),
                "hr_bridge": Text(doc="heart-rate bridge presets (all, none, ...)"),
            },
            extra_check=_check_osc,
        ),
        "volume": Record(
            "volume",
            {
                "cap_dbfs": Number(
                    unit="dBFS", minimum=MIN_CAP_DBFS, maximum=MAX_CAP_DBFS
                ),
                "sleep_cap_dbfs": Number(
                    unit="dBFS", minimum=MIN_CAP_DBFS, maximum=MAX_CAP_DBFS
                ),
            },
        ),
        "shutdown": Record(
            "shutdown", {"fade_s": Number(unit="s", minimum=0.0, maximum=60.0)}
        ),
        "log_level": Text(choices=LOG_LEVELS),
        "paths": Record(
            "paths",
            {
                "scenes": ListOf(Text(), max_items=64),
                "state": Text(doc="directory of the daemon's state files"),
            },
        ),
    },
)


def _check_sample_rate(source: YamlSource, path: KeyPath, value: int) -> None:
    if value not in SAMPLE_RATES_HZ:
        raise source.error(
            path,
            f"expected {' or '.join(map(str, SAMPLE_RATES_HZ))} Hz, got {value}",
        )


@dataclass(frozen=True)
class Setting:
    """One config value: its field, its key in the file and its flag."""

    name: str
    key_path: tuple[str, ...]
    flag: str
    # Flags arrive as text; numbers are read the way YAML reads them, names
    # are kept as typed (a device called "on" must not become a boolean).
    flag_is_yaml: bool = False

    @property
    def key(self) -> str:
        return ".".join(self.key_path)


SETTINGS: tuple[Setting, ...] = (
    Setting("scene", ("scene",), "--scene"),
    Setting("device", ("audio", "device"), "--device"),
    Setting("sample_rate", ("audio", "sample_rate"), "--sample-rate", True),
    Setting("block_size", ("audio", "block_size"), "--block-size", True),
    Setting("osc_enabled", ("osc", "enabled"), "--osc/--no-osc", True),
    Setting("osc_host", ("osc", "host"), "--osc-host"),
    Setting("osc_port", ("osc", "port"), "--osc-port", True),
    Setting("osc_prefix", ("osc", "prefix"), "--osc-prefix"),
    Setting("osc_hr_bridge", ("osc", "hr_bridge"), "--hr-bridge"),
    Setting("volume_cap_dbfs", ("volume", "cap_dbfs"), "--volume-cap", True),
    Setting(
        "sleep_volume_cap_dbfs",
        ("volume", "sleep_cap_dbfs"),
        "--sleep-volume-cap",
        True,
    ),
    Setting("fade_out_s", ("shutdown", "fade_s"), "--fade-out", True),
    Setting("log_level", ("log_level",), "--log-level"),
    Setting("scene_dirs", ("paths", "scenes"), "--scene-dir"),
    Setting("state_dir", ("paths", "state"), "--state-dir"),
)
SETTINGS_BY_NAME = {s.name: s for s in SETTINGS}

ORIGIN_DEFAULT = "default"


@dataclass
class DaemonConfig:
    """The effective settings of one daemon run, and where each came from.

    ``origins`` maps a field name to ``"default"``, ``"FILE:LINE"``,
    ``"flag --osc-port"`` or ``"last played (FILE)"``.
    """

    scene: str = DEFAULT_SCENE
    device: str | int | None = None
    sample_rate: int = 48000
    block_size: int = 128
    osc_enabled: bool = True
    osc_host: str = "127.0.0.1"
    osc_port: int = 9000
    osc_prefix: str = "/soundscape"
    osc_hr_bridge: str = "all"
    volume_cap_dbfs: float = -6.0
    sleep_volume_cap_dbfs: float = -18.0
    fade_out_s: float = 2.0
    log_level: str = "info"
    scene_dirs: tuple[Path, ...] = ()
    state_dir: Path = field(default_factory=xdg_dirs.state_dir)
    config_file: Path | None = None
    origins: dict[str, str] = field(default_factory=dict)

    def origin(self, name: str) -> str:
        """Where the value of field ``name`` came from."""
        return self.origins.get(name, ORIGIN_DEFAULT)

    def volume_cap_for(self, sleep_scene: bool) -> float:
        """The loudest peak (dBFS) allowed for a scene: the sleep cap for sleep
        scenes, never above the main cap."""
        if sleep_scene:
            return min(self.sleep_volume_cap_dbfs, self.volume_cap_dbfs)
        return self.volume_cap_dbfs

    def rows(self) -> list[tuple[str, str, str]]:
        """``(key, value, origin)`` for every setting, in file order."""
        out = []
        for setting in SETTINGS:
            value = getattr(self, setting.name)
            if value is None:
                text = "default output" if setting.name == "device" else "-"
            elif isinstance(value, bool):
                text = str(value).lower()
            elif isinstance(value, tuple):
                text = ", ".join(str(v) for v in value) or "-"
            else:
                text = str(value)
            out.append((setting.key, text, self.origin(setting.name)))
        return out

    def format(self) -> str:
        """The table ``soundscape config show`` prints."""
        rows = self.rows()
        key_width = max(len(k) for k, _, _ in rows)
        value_width = min(40, max(len(v) for _, v, _ in rows))
        where = str(self.config_file) if self.config_file else "none (defaults)"
        lines = [f"config file: {where}"]
        for key, value, origin in rows:
            lines.append(f"{key:<{key_width}}  {value:<{value_width}}  {origin}")
        return "\n".join(lines)


def default_config_path(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/soundscape/config.yaml`` (else under ``~/.config``)."""
    return xdg_dirs.config_dir(env) / CONFIG_FILE_NAME


def _lookup(data: Any, path: tuple[str, ...]) -> tuple[bool, Any]:
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return False, None
        data = data[part]
    return True, data


def _spec_at(path: tuple[str, ...]) -> Spec:
    spec: Spec = CONFIG_SPEC
    for part in path:
        assert isinstance(spec, Record)
        spec = spec.fields[part]
    return spec


def _normalise(name: str, value: Any) -> Any:
    if name == "scene_dirs":
        return tuple(Path(os.path.expanduser(v)) for v in value)
    if name == "state_dir":
        return Path(os.path.expanduser(value))
    return value


def _read_file(path: Path) -> YamlSource | None:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SceneError(f"cannot read the config: {error}", str(path)) from None
    # A file of comments only is a valid config that changes nothing.
    if not any(
        line.strip() and not line.lstrip().startswith("#") for line in text.splitlines()
    ):
        return None
    source = load_yaml(text, str(path))
    if not isinstance(source.data, dict):
        raise source.error((), "the config must be a mapping of settings (key: value)")
    return source


def _check_value(source: YamlSource, setting: Setting, value: Any) -> Any:
    checked = _spec_at(setting.key_path).check(source, setting.key_path, value)
    if setting.name == "sample_rate":
        _check_sample_rate(source, setting.key_path, checked)
    return checked


def _flag_value(setting: Setting, raw: Any) -> Any:
    flag = setting.flag.split("/")[0]
    if isinstance(raw, str) and setting.flag_is_yaml:
        raw = load_yaml(raw, flag).data if raw.strip() else raw
    if setting.name == "scene_dirs" and isinstance(raw, str | Path):
        raw = [str(raw)]
    elif setting.name == "scene_dirs":
        raw = [str(v) for v in raw]
    if isinstance(raw, Path):
        raw = str(raw)
    # No positions: the message names the flag instead of a line.
    source = YamlSource(flag, raw)
    checked = _check_value(source, setting, raw)
    if setting.name in ("osc_host", "osc_prefix", "osc_hr_bridge"):
        key = setting.key_path[-1]
        _check_osc(source, setting.key_path[:-1], {key: checked})
    return checked


def load_config(
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    use_last_scene: bool = True,
) -> DaemonConfig:
    """The effective config: defaults, then the file, then ``overrides``.

    Args:
        path: the config file (``--config``); it must exist. ``None`` reads
            the default file if there is one.
        overrides: flag values by field name (``{"osc_port": "9001"}``);
            ``None`` values are ignored. Text is read as the file would be.
        env: environment for the XDG directories (default ``os.environ``).
        use_last_scene: take the last scene played when neither the file nor
            a flag names one.

    Raises:
        SceneError: one line naming the file (or flag), line and key.

    >>> load_config(overrides={"osc_port": "9001"}, env={"HOME": "/nonexistent"}
    ...             ).origin("osc_port")
    'flag --osc-port'
    """
    env = os.environ if env is None else env
    config = DaemonConfig(state_dir=xdg_dirs.state_dir(env))
    if path is None:
        candidate = default_config_path(env)
        config_file = candidate if candidate.exists() else None
    else:
        config_file = Path(path).expanduser()
        if not config_file.exists():
            raise SceneError("no such config file", str(config_file))
    config.config_file = config_file

    source = _read_file(config_file) if config_file is not None else None
    if source is not None:
        # Unknown keys and wrong types anywhere, with did-you-mean hints.
        CONFIG_SPEC.check(source, (), source.data)
        for setting in SETTINGS:
            present, value = _lookup(source.data, setting.key_path)
            if not present:
                continue
            value = _check_value(source, setting, value)
            setattr(config, setting.name, _normalise(setting.name, value))
            line, _ = source.position(setting.key_path)
            config.origins[setting.name] = f"{config_file}:{line}"

    for name, raw in (overrides or {}).items():
        if raw is None:
            continue
        setting = SETTINGS_BY_NAME.get(name)
        if setting is None:
            raise KeyError(f"config: no setting named {name!r}")
        value = _flag_value(setting, raw)
        setattr(config, name, _normalise(name, value))
        config.origins[name] = f"flag {setting.flag}"

    if use_last_scene and "scene" not in config.origins:
        last = recall_scene(config.state_dir)
        if last is not None:
            config.scene = last
            config.origins["scene"] = (
                f"last played ({last_scene_path(config.state_dir)})"
            )
    return config


def add_config_arguments(parser: Any) -> None:
    """Add ``--config`` and one flag per setting to an argparse parser; read
    them back with :func:`overrides_from_args`."""
    import argparse

    parser.add_argument("--config", default=None, metavar="PATH", help="config file")
    for setting in SETTINGS:
        dest = f"config_{setting.name}"
        if setting.name == "osc_enabled":
            parser.add_argument(
                "--osc",
                dest=dest,
                action=argparse.BooleanOptionalAction,
                default=None,
                help="listen for OSC control (or not)",
            )
        elif setting.name == "scene_dirs":
            parser.add_argument(
                setting.flag,
                dest=dest,
                action="append",
                default=None,
                metavar="DIR",
                help="a directory of scenes (repeatable)",
            )
        else:
            parser.add_argument(
                setting.flag, dest=dest, default=None, help=f"sets {setting.key}"
            )


def overrides_from_args(args: Any) -> dict[str, Any]:
    """The flag values :func:`add_config_arguments` parsed, by setting name."""
    return {
        setting.name: getattr(args, f"config_{setting.name}", None)
        for setting in SETTINGS
    }
