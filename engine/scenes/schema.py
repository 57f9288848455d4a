"""Field specs: the one description of the scene format that both validates scene
files and generates the JSON Schema editors use.

A spec checks a value read from YAML and returns it normalised, or raises a
:class:`SceneError` at the value's line with the key path and what was expected:

    GAIN = Number(unit="dB", minimum=-96.0, maximum=24.0, default=0.0)
    LAYER = Record("layer", {"gain_db": GAIN, "texture": Text(choices=TEXTURES)},
                   required=("texture",))
    layer = LAYER.check(source, ("layers", 0), source.data["layers"][0])
    LAYER.json_schema()   # {"type": "object", "properties": {...}, ...}

Control thread only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.naming import did_you_mean
from engine.scenes.errors import KeyPath, SceneError
from engine.scenes.yaml_source import YamlSource

_MISSING = object()


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    return repr(value)


class Spec:
    """Base of every field spec."""

    doc: str = ""
    default: Any = _MISSING

    @property
    def has_default(self) -> bool:
        return self.default is not _MISSING

    def check(self, source: YamlSource, path: KeyPath, value: Any) -> Any:
        raise NotImplementedError

    def json_schema(self) -> dict[str, Any]:
        raise NotImplementedError

    def _schema_extras(self, schema: dict[str, Any]) -> dict[str, Any]:
        if self.doc:
            schema["description"] = self.doc
        if self.has_default:
            schema["default"] = self.default
        return schema


@dataclass
class Number(Spec):
    """A finite number, with a unit for messages and a closed range."""

    unit: str = ""
    minimum: float = -math.inf
    maximum: float = math.inf
    default: Any = _MISSING
    integer: bool = False
    doc: str = ""

    def _range(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        if math.isinf(self.minimum) and math.isinf(self.maximum):
            return f"a {'whole ' if self.integer else ''}number{unit}"
        if math.isinf(self.maximum):
            return f"a number >= {self.minimum:g}{unit}"
        if math.isinf(self.minimum):
            return f"a number <= {self.maximum:g}{unit}"
        return f"a number in {self.minimum:g}..{self.maximum:g}{unit}"

    def check(self, source: YamlSource, path: KeyPath, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise source.error(
                path, f"expected {self._range()}, got {_describe(value)}"
            )
        if self.integer and not float(value).is_integer():
            raise source.error(path, f"expected a whole number, got {value!r}")
        if not self.minimum <= value <= self.maximum:
            raise source.error(path, f"expected {self._range()}, got {value!r}")
        return int(value) if self.integer else float(value)

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "integer" if self.integer else "number"}
        if not math.isinf(self.minimum):
            schema["minimum"] = self.minimum
        if not math.isinf(self.maximum):
            schema["maximum"] = self.maximum
        if self.unit and not self.doc:
            schema["description"] = f"in {self.unit}"
        return self._schema_extras(schema)


@dataclass
class Text(Spec):
    """A string, optionally one of ``choices`` (with a did-you-mean on a miss)."""

    choices: Sequence[str] | Callable[[], Sequence[str]] | None = None
    default: Any = _MISSING
    doc: str = ""

    def _choices(self) -> Sequence[str] | None:
        return self.choices() if callable(self.choices) else self.choices

    def check(self, source: YamlSource, path: KeyPath, value: Any) -> Any:
        if not isinstance(value, str):
            raise source.error(path, f"expected text, got {_describe(value)}")
        choices = self._choices()
        if choices is not None and value not in choices:
            listed = ", ".join(sorted(choices))
            raise source.error(
                path,
                f"unknown {value!r}{did_you_mean(value, choices)}; one of: {listed}",
            )
        return value

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "string"}
        choices = self._choices()
        if choices is not None:
            schema["enum"] = sorted(choices)
        return self._schema_extras(schema)


@dataclass
class Flag(Spec):
    """true or false."""

    default: Any = _MISSING
    doc: str = ""

    def check(self, source: YamlSource, path: KeyPath, value: Any) -> Any:
        if not isinstance(value, bool):
            raise source.error(path, f"expected true or false, got {_describe(value)}")
        return value

    def json_schema(self) -> dict[str, Any]:
        return self._schema_extras({"type": "boolean"})


@dataclass
class ListOf(Spec):
    """A list of items of one spec, with a length range."""

    item: Spec
    min_items: int = 0
    max_items: int = 10_000
    default: Any = _MISSING
    doc: str = ""

    def check(self, source: YamlSource, path: KeyPath, value: Any) -> Any:
        if not isinstance(value, list):
            raise source.error(path, f"expected a list, got {_describe(value)}")
        if not self.min_items <= len(value) <= self.max_items:
            wanted = (
                f"{self.min_items}"
                if self.min_items == self.max_items
                else f"{self.min_items}..{self.max_items}"
            )
            raise source.error(path, f"expected {wanted} items, got {len(value)}")
        return [self.item.check(source, (*path, i), v) for i, v in enumerate(value)]

    def json_schema(self) -> dict[str, Any]:
        schema = {
            "type": "array",
            "items": self.item.json_schema(),
            "minItems": self.min_items,
            "maxItems": self.max_items,
        }
        return self._schema_extras(schema)


@dataclass
class MapOf(Spec):
    """A mapping from names (matching no fixed list) to items of one spec."""

    item: Spec
    default: Any = _MISSING
    doc: str = ""

    def check(self, source: YamlSource, path: KeyPath, value: Any) -> Any:
        if not isinstance(value, dict):
            raise source.error(path, f"expected a mapping, got {_describe(value)}")
        return {k: self.item.check(source, (*path, k), v) for k, v in value.items()}

    def json_schema(self) -> dict[str, Any]:
        return self._schema_extras(
            {"type": "object", "additionalProperties": self.item.json_schema()}
        )


@dataclass
class Record(Spec):
    """A mapping with a fixed set of keys: unknown keys are refused with the
    closest known one suggested; missing keys take their spec's default or, if
    ``required``, are refused."""

    name: str
    fields: Mapping[str, Spec]
    required: Sequence[str] = ()
    default: Any = _MISSING
    doc: str = ""
    extra_check: Callable[[YamlSource, KeyPath, dict[str, Any]], None] | None = field(
        default=None, repr=False
    )

    def check(self, source: YamlSource, path: KeyPath, value: Any) -> Any:
        if not isinstance(value, dict):
            raise source.error(
                path, f"expected a {self.name} (a mapping), got {_describe(value)}"
            )
        for key in value:
            if key not in self.fields:
                raise source.error(
                    (*path, key),
                    f"unknown key {key!r} in {self.name}"
                    f"{did_you_mean(key, self.fields)}; "
                    f"known: {', '.join(self.fields)}",
                )
        checked: dict[str, Any] = {}
        for key, spec in self.fields.items():
            if key in value:
                checked[key] = spec.check(source, (*path, key), value[key])
            elif key in self.required:
                raise source.error(path, f"{self.name} needs {key!r}")
            elif spec.has_default:
                checked[key] = spec.default
        if self.extra_check is not None:
            self.extra_check(source, path, checked)
        return checked

    def json_schema(self) -> dict[str, Any]:
        schema = {
            "type": "object",
            "title": self.name,
            "properties": {k: s.json_schema() for k, s in self.fields.items()},
            "required": list(self.required),
            "additionalProperties": False,
        }
        return self._schema_extras(schema)


@dataclass
class Either(Spec):
    """A value that one of two specs accepts (tried in order): for example a
    level in dB, or the word ``off``. When neither does, a text value gets the
    second spec's message and anything else the first's (text is the usual
    second choice, so a misspelt word gets its did-you-mean)."""

    first: Spec
    second: Spec
    default: Any = _MISSING
    doc: str = ""

    def check(self, source: YamlSource, path: KeyPath, value: Any) -> Any:
        try:
            return self.first.check(source, path, value)
        except SceneError as first_error:
            try:
                return self.second.check(source, path, value)
            except SceneError as second_error:
                if isinstance(value, str):
                    raise second_error from None
                raise first_error from None

    def json_schema(self) -> dict[str, Any]:
        return self._schema_extras(
            {"anyOf": [self.first.json_schema(), self.second.json_schema()]}
        )
