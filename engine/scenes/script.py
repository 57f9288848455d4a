"""Timed scripts: what happens when, for offline renders and reproducible tests.

A script is a YAML list of actions, each at a time in seconds::

    - {at_s: 5, input: {danger: 0.8}}
    - {at_s: 10, state: combat}
    - {at_s: 12, trigger: thunder, velocity: 0.8}
    - {at_s: 20, param: wind.gusts.rate_hz, value: 0.5, ramp_s: 2}
    - {at_s: 30, volume_db: -6, ramp_s: 3}
    - {at_s: 40, scene: rain, fade_s: 5}

``soundscape render SCENE --script FILE`` renders up to each action's exact
frame and applies it there, so the same script always gives the same file.

Control thread only.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.scenes.errors import KeyPath, SceneError
from engine.scenes.player import ScenePlayer
from engine.scenes.schema import ListOf, MapOf, Number, Record, Text
from engine.scenes.yaml_source import YamlSource, load_yaml

# Exactly one of these says what an action does.
_KINDS = ("input", "state", "trigger", "param", "volume_db", "scene")


def _check_action(source: YamlSource, path: KeyPath, action: dict[str, Any]) -> None:
    kinds = [k for k in _KINDS if k in action]
    if len(kinds) != 1:
        raise source.error(
            path,
            f"an action does one thing: give exactly one of {', '.join(_KINDS)}"
            + (f" (got {', '.join(kinds)})" if kinds else ""),
        )
    if "param" in action:
        if action["param"].count(".") != 2:
            raise source.error(
                (*path, "param"), "expected layer.node.param, e.g. wind.gusts.rate_hz"
            )
        if "value" not in action:
            raise source.error(path, "a param action needs a 'value'")


ACTION = Record(
    "action",
    {
        "at_s": Number(unit="s", minimum=0.0, doc="when, from the start"),
        "input": MapOf(Number(), doc="input values to set"),
        "state": Text(doc="a state to move to"),
        "trigger": Text(doc="a trigger to fire"),
        "velocity": Number(minimum=0.0, maximum=1.0, default=1.0),
        "param": Text(doc="layer.node.param to set"),
        "value": Number(),
        "ramp_s": Number(unit="s", minimum=0.0, maximum=3600.0),
        "volume_db": Number(unit="dB", minimum=-120.0, maximum=24.0),
        "scene": Text(doc="a scene to crossfade to"),
        "fade_s": Number(unit="s", minimum=0.0, maximum=600.0),
    },
    required=("at_s",),
    doc="one timed action",
    extra_check=_check_action,
)

SCRIPT = ListOf(ACTION, doc="timed actions, in any order")


def load_script(path: str | Path) -> list[dict[str, Any]]:
    """Read and check a script; its actions sorted by time (stable)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SceneError(f"cannot read: {error}", str(path)) from None
    source = load_yaml(text, str(path))
    actions = SCRIPT.check(source, (), source.data)
    for i, action in enumerate(actions):
        action["where"] = f"{path}:{source.position((i,))[0]}"
    return sorted(actions, key=lambda a: a["at_s"])


def apply_action(player: ScenePlayer, action: dict[str, Any]) -> None:
    """Do one action now; ValueError and SceneError name the script line."""
    try:
        if "input" in action:
            for name, value in action["input"].items():
                player.set_input(name, value)
        elif "state" in action:
            player.set_state(action["state"])
        elif "trigger" in action:
            player.fire(action["trigger"], action["velocity"])
        elif "param" in action:
            layer, node, param = action["param"].split(".")
            player.set_param(layer, node, param, action["value"], action.get("ramp_s"))
        elif "volume_db" in action:
            player.set_volume(action["volume_db"], action.get("ramp_s", 0.0))
        else:
            player.load(action["scene"], action.get("fade_s"))
    except (ValueError, SceneError) as error:
        raise ValueError(f"{action['where']}: {error}") from None


def run_script(
    player: ScenePlayer,
    actions: list[dict[str, Any]],
    n_frames: int,
    render: Callable[[int], None],
) -> None:
    """Render ``n_frames`` through ``render(n)``, stopping at each action's
    frame to apply it there."""
    rate = player.engine.sample_rate
    done = 0
    pending = list(actions)
    while done < n_frames:
        while pending and round(pending[0]["at_s"] * rate) <= done:
            apply_action(player, pending.pop(0))
        stop = n_frames
        if pending:
            stop = min(stop, round(pending[0]["at_s"] * rate))
        render(stop - done)
        done = stop
