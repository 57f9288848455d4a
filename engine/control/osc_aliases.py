"""Aliases: any incoming OSC address mapped onto a named input, scaled and clamped,
so a game or a bridge can drive the engine in its own words.

    table = AliasTable(
        [Alias("/game/danger", "danger", from_range=(0, 100), to_range=(0, 1))],
        on_value=lambda name, value: inputs.set(name, value),
    )
    table.install(server)     # /game/danger 50  ->  on_value("danger", 0.5)

or from YAML (checked like scene files, errors as ``file:line:column: key:
what was expected``)::

    aliases:
      /game/danger: {input: danger, from: [0, 100], to: [0, 1]}
      /accxyz: {input: tilt, argument: 1, from: [-1, 1]}
      /avatar/parameters/HR: {input: heart_rate, from: [0, 255], to: [0, 255]}

Each alias takes one argument of the message (``argument``, default the first):
an int, a float or a boolean (true is 1). ``from`` maps linearly onto ``to``
(either may run downwards) and the result is clamped to ``to`` unless
``clamp: false``. A message without that argument, with text, NaN or infinity
there, raises ValueError naming the address, and ``on_value`` is not called:
the server counts it as a handler error and the lead's error reply names it.

Thread: build on any control thread; handlers run on the OSC receive threads,
so ``on_value`` must be quick (set a target, enqueue).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from engine.control.osc_pattern import valid_address
from engine.control.osc_wire import OscMessage
from engine.scenes.errors import KeyPath, SceneError
from engine.scenes.schema import Flag, ListOf, MapOf, Number, Record, Text
from engine.scenes.yaml_source import YamlSource, load_yaml

__all__ = ["Alias", "AliasTable", "load_aliases", "parse_aliases"]

# The scene format's rule for input names (engine/scenes/format.py), repeated
# here because importing the scene format loads the DSP compiler.
_INPUT_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_MAX_ARGUMENT = 127

OnValue = Callable[[str, float], None]


class _Server(Protocol):
    def add_handler(self, address: str, handler: Callable[..., None]) -> None: ...

    def remove_handler(self, address: str) -> None: ...


@dataclass(frozen=True)
class Alias:
    """``address`` drives input ``input``: argument ``argument`` of each message,
    mapped linearly from ``from_range`` onto ``to_range`` and clamped there."""

    address: str
    input: str
    from_range: tuple[float, float] = (0.0, 1.0)
    to_range: tuple[float, float] = (0.0, 1.0)
    argument: int = 0
    clamp: bool = True

    def __post_init__(self) -> None:
        problem = valid_address(self.address)
        if problem is not None:
            raise ValueError(f"alias {self.address!r}: {problem}")
        if not _INPUT_NAME.match(self.input):
            raise ValueError(
                f"alias {self.address}: input {self.input!r} is not a name "
                "(lower case letters, digits and _, starting with a letter)"
            )
        for label, pair in (("from", self.from_range), ("to", self.to_range)):
            if len(pair) != 2 or not all(math.isfinite(v) for v in pair):
                raise ValueError(
                    f"alias {self.address}: {label} needs two finite numbers, "
                    f"got {pair!r}"
                )
        if self.from_range[0] == self.from_range[1]:
            raise ValueError(
                f"alias {self.address}: from {list(self.from_range)} is empty; "
                "give two different numbers"
            )
        if not 0 <= self.argument <= _MAX_ARGUMENT:
            raise ValueError(
                f"alias {self.address}: argument {self.argument} is not in "
                f"0..{_MAX_ARGUMENT}"
            )

    def scale(self, value: float) -> float:
        """``value`` mapped from ``from_range`` onto ``to_range`` (clamped).

        >>> Alias("/game/danger", "danger", (0, 100), (0, 1)).scale(150)
        1.0
        """
        (in_low, in_high), (out_low, out_high) = self.from_range, self.to_range
        scaled = out_low + (value - in_low) * (out_high - out_low) / (in_high - in_low)
        if self.clamp:
            scaled = min(max(scaled, min(out_low, out_high)), max(out_low, out_high))
        return float(scaled)  # a clamp to an int bound (a YAML `1`) stays a float

    def value_of(self, message: OscMessage) -> float:
        """The input value ``message`` carries; ValueError if it carries none."""
        if self.argument >= len(message.args):
            raise ValueError(
                f"{message.address}: alias for {self.input!r} needs argument "
                f"{self.argument}, the message has {len(message.args)}"
            )
        raw = message.args[self.argument]
        if isinstance(raw, bool):
            number = float(raw)
        elif isinstance(raw, int | float):
            number = float(raw)
            if not math.isfinite(number):
                raise ValueError(
                    f"{message.address}: {raw!r} is not a finite number "
                    f"(alias for {self.input!r})"
                )
        else:  # one error type for every bad message: the server reports it
            raise ValueError(  # noqa: TRY004
                f"{message.address}: alias for {self.input!r} needs a number at "
                f"argument {self.argument}, got {raw!r}"
            )
        scaled = self.scale(number)
        if not math.isfinite(scaled):  # a huge int can still overflow the scale
            raise ValueError(
                f"{message.address}: {raw!r} scales to {scaled!r} "
                f"(alias for {self.input!r})"
            )
        return scaled


class AliasTable:
    """Aliases by address, calling ``on_value(input_name, value)`` for each
    message that reaches one of them."""

    def __init__(self, aliases: Iterable[Alias], on_value: OnValue) -> None:
        self.aliases: dict[str, Alias] = {}
        for alias in aliases:
            if alias.address in self.aliases:
                raise ValueError(f"alias {alias.address}: given twice")
            self.aliases[alias.address] = alias
        self.on_value = on_value

    def handle(self, message: OscMessage, sender: object = None) -> float:
        """Apply ``message`` (a server handler); returns the value passed on.

        Raises KeyError for an address with no alias and ValueError for a
        message that carries no usable number.
        """
        alias = self.aliases[message.address]
        value = alias.value_of(message)
        self.on_value(alias.input, value)
        return value

    def install(self, server: _Server) -> None:
        """Register every alias address with ``server`` (an OscServer)."""
        for address in self.aliases:
            server.add_handler(address, self.handle)

    def uninstall(self, server: _Server) -> None:
        """Remove every alias address from ``server``."""
        for address in self.aliases:
            server.remove_handler(address)


def _alias_spec(known_inputs: Sequence[str] | None) -> Record:
    return Record(
        "alias",
        {
            "input": Text(choices=known_inputs, doc="the input it drives"),
            "from": ListOf(
                Number(),
                min_items=2,
                max_items=2,
                default=[0.0, 1.0],
                doc="incoming range, mapped onto 'to'",
            ),
            "to": ListOf(
                Number(),
                min_items=2,
                max_items=2,
                default=[0.0, 1.0],
                doc="input range; the value is clamped to it",
            ),
            "argument": Number(
                minimum=0,
                maximum=_MAX_ARGUMENT,
                integer=True,
                default=0,
                doc="which argument of the message carries the value",
            ),
            "clamp": Flag(default=True, doc="clamp the result to 'to'"),
        },
        required=("input",),
        extra_check=_check_alias,
    )


def _check_alias(source: YamlSource, path: KeyPath, alias: dict[str, Any]) -> None:
    if not _INPUT_NAME.match(alias["input"]):
        raise source.error(
            (*path, "input"),
            f"{alias['input']!r} is not an input name (lower case letters, "
            "digits and _, starting with a letter)",
        )
    if alias["from"][0] == alias["from"][1]:
        raise source.error(
            (*path, "from"), f"{alias['from']} is empty: give two different numbers"
        )


def parse_aliases(
    text: str,
    file: str,
    on_value: OnValue,
    known_inputs: Sequence[str] | None = None,
) -> AliasTable:
    """An :class:`AliasTable` from the YAML ``text`` of ``file``.

    With ``known_inputs`` (a scene's inputs), an alias naming another input is
    refused with a did-you-mean. Raises :class:`SceneError` naming the file,
    line, column and key path.
    """
    source = load_yaml(text, file)
    spec = Record(
        "alias table",
        {"aliases": MapOf(_alias_spec(known_inputs), doc="OSC address -> alias")},
        required=("aliases",),
    )
    checked = spec.check(source, (), source.data)
    aliases = []
    for address, entry in checked["aliases"].items():
        problem = valid_address(address)
        if problem is not None:
            raise source.error(("aliases", address), f"{address!r}: {problem}")
        aliases.append(
            Alias(
                address,
                entry["input"],
                tuple(entry["from"]),
                tuple(entry["to"]),
                entry["argument"],
                entry["clamp"],
            )
        )
    return AliasTable(aliases, on_value)


def load_aliases(
    path: str | Path, on_value: OnValue, known_inputs: Sequence[str] | None = None
) -> AliasTable:
    """:func:`parse_aliases` on the file at ``path``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SceneError(f"cannot read aliases: {error}", str(path)) from None
    return parse_aliases(text, str(path), on_value, known_inputs)
