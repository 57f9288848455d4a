"""Read a scene file's YAML into plain data, remembering where every value was.

Only the safe subset a scene needs: mappings with string keys, sequences, and
plain scalars (strings, numbers, booleans, null; as in YAML 1.2, only
``true`` and ``false`` are booleans, so ``off`` and ``no`` stay words). Refused, each with a
:class:`SceneError` naming file, line, column and key path: syntax errors, more
than one document, anchors and aliases (and so merge keys), tags, duplicate
keys, non-string keys, NaN and infinities, nesting deeper than
``MAX_DEPTH``, files larger than ``MAX_BYTES``.

    source = load_yaml(text, "scenes/rain.yaml")
    source.data["layers"][0]["gain_db"]
    source.position(("layers", 0, "gain_db"))   # (line, column), 1-based

Control thread only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import yaml

from engine.scenes.errors import KeyPath, SceneError

MAX_DEPTH = 32
MAX_BYTES = 1 << 20

# The tags SafeLoader's resolver gives plain scalars; anything else was written
# by hand (``!!python/object``, ``!custom``) and is refused.
_PLAIN_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
}

_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_BOOL_TAG = "tag:yaml.org,2002:bool"


@dataclass
class YamlSource:
    """Plain data from a YAML file, and the position of each value in it."""

    file: str
    data: Any
    positions: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)

    def position(self, path: KeyPath) -> tuple[int | None, int | None]:
        """(line, column) of the value at ``path``, or of its nearest parent."""
        path = tuple(path)
        while path not in self.positions and path:
            path = path[:-1]
        return self.positions.get(path, (None, None))

    def error(self, path: KeyPath, message: str) -> SceneError:
        """A :class:`SceneError` at the value ``path`` names."""
        line, column = self.position(path)
        return SceneError(message, self.file, line, column, path)


def _mark_error(file: str, mark: Any, message: str, path: KeyPath = ()) -> SceneError:
    if mark is None:
        return SceneError(message, file, path=path)
    return SceneError(message, file, mark.line + 1, mark.column + 1, path)


def _check_events(text: str, file: str) -> None:
    """Refuse anchors, aliases, tags, deep nesting and extra documents, before
    anything is built (an alias bomb never expands)."""
    depth = 0
    documents = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            raise _mark_error(
                file,
                event.start_mark,
                f"aliases (*{event.anchor}) are not allowed in scenes: "
                "write the value out",
            )
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            raise _mark_error(
                file,
                event.start_mark,
                f"anchors (&{anchor}) are not allowed in scenes: write the value out",
            )
        tag = getattr(event, "tag", None)
        if tag is not None and tag not in ("!", *_PLAIN_TAGS):
            raise _mark_error(
                file, event.start_mark, f"tags ({tag}) are not allowed in scenes"
            )
        if isinstance(event, yaml.DocumentStartEvent):
            documents += 1
            if documents > 1:
                raise _mark_error(
                    file, event.start_mark, "a scene file holds one YAML document"
                )
        elif isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise _mark_error(
                    file,
                    event.start_mark,
                    f"nested deeper than {MAX_DEPTH} levels",
                )
        elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            depth -= 1


def _scalar(loader: yaml.SafeLoader, node: yaml.ScalarNode, file: str, path: KeyPath):
    if node.tag == _TIMESTAMP_TAG:
        return node.value  # a date-like word is just text to a scene
    if node.tag == _BOOL_TAG and node.value.lower() not in ("true", "false"):
        # YAML 1.2: only true and false are booleans; `off`, `on`, `yes`, `no`
        # are words (a state may turn a layer `off`).
        return node.value
    if node.tag not in _PLAIN_TAGS:
        raise _mark_error(file, node.start_mark, f"tags ({node.tag}) are not allowed")
    value = loader.construct_object(node)
    if isinstance(value, float) and not math.isfinite(value):
        raise _mark_error(
            file, node.start_mark, f"{node.value} is not a finite number", path
        )
    return value


def _build(
    loader: yaml.SafeLoader,
    node: yaml.Node,
    file: str,
    path: KeyPath,
    positions: dict[KeyPath, tuple[int, int]],
) -> Any:
    positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        mapping: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != (
                "tag:yaml.org,2002:str"
            ):
                raise _mark_error(
                    file,
                    key_node.start_mark,
                    f"keys must be names, not {key_node.value!r}",
                    path,
                )
            key = key_node.value
            if key in mapping:
                first_line = positions[(*path, key)][0]
                raise _mark_error(
                    file,
                    key_node.start_mark,
                    f"duplicate key {key!r} (first on line {first_line})",
                    path,
                )
            mapping[key] = _build(loader, value_node, file, (*path, key), positions)
            # A key's path points at the key's name, where an editor should jump
            # for an unknown key as for a bad value (usually the same line).
            positions[(*path, key)] = (
                key_node.start_mark.line + 1,
                key_node.start_mark.column + 1,
            )
        return mapping
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(loader, item, file, (*path, i), positions)
            for i, item in enumerate(node.value)
        ]
    return _scalar(loader, node, file, path)


def load_yaml(text: str, file: str = "<scene>") -> YamlSource:
    """Parse ``text`` (the contents of ``file``) into a :class:`YamlSource`."""
    if len(text.encode("utf-8", errors="replace")) > MAX_BYTES:
        raise SceneError(f"larger than {MAX_BYTES // 1024} KiB", file)
    positions: dict[KeyPath, tuple[int, int]] = {}
    try:
        _check_events(text, file)
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
            if root is None:
                raise SceneError("the file is empty", file, 1, 1)
            data = _build(loader, root, file, (), positions)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        problem = error.problem or error.context or "invalid YAML"
        raise _mark_error(file, mark, f"YAML syntax: {problem}") from None
    except yaml.YAMLError as error:
        raise SceneError(f"YAML: {error}", file) from None
    return YamlSource(file, data, positions)
