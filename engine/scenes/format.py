"""The scene format, version 1: what a scene file may say, checked and built.

A scene names its layers; a layer is a small graph of nodes from the node
library, with a level and a pan. For example::

    name: focus
    description: Brown noise under a wandering low-pass, and a soft drone.
    layers:
      bed:
        nodes:
          noise: {type: brown_noise, amplitude: 0.2}
          drift: {type: lfo, shape: smooth_random, rate_hz: 0.07}
          dark: {type: svf, input: noise, cutoff_mod: drift, cutoff_hz: 420}
        output: dark
        gain_db: -3
    master: {ceiling_dbtp: -1}

A node entry holds ``type``, then any of that node type's parameters (a number,
or a list: one voice each), inputs (the name of another node of the layer, or
``name[i]`` for one channel) and options. Everything is checked against the node
library itself, so the format always knows every node and parameter there is.

Reserved for the issues that fill them: ``inputs`` (state variables),
``model`` (the adaptive loop). States, triggers, textures and mappings come next.

Control thread only.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from engine.dsp.nodes import NodeSpec, Param, node_types
from engine.graph.compile import compile_graph
from engine.graph.graph import Graph, GraphError, Node, Signal
from engine.naming import did_you_mean
from engine.scenes.errors import KeyPath, SceneError
from engine.scenes.schema import Flag, ListOf, MapOf, Number, Record, Spec, Text
from engine.scenes.yaml_source import YamlSource, load_yaml

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_REFERENCE = re.compile(r"^([a-z][a-z0-9_]*)(?:\[(\d+)\])?$")
# Node types a scene may not place itself: the engine owns these.
_ENGINE_ONLY = {"input", "limiter"}


def _scene_node_types() -> dict[str, NodeSpec]:
    return {k: v for k, v in node_types().items() if k not in _ENGINE_ONLY}


def _param_schema(param: Param) -> dict[str, Any]:
    if param.choices:
        return {"type": "string", "enum": list(param.choices), "description": param.doc}
    number: dict[str, Any] = {"type": "number"}
    if param.minimum > float("-inf"):
        number["minimum"] = param.minimum
    if param.maximum < float("inf"):
        number["maximum"] = param.maximum
    described = f"{param.doc} ({param.unit})" if param.unit else param.doc
    return {
        "anyOf": [
            number,
            {"type": "array", "items": number, "minItems": 1},
            MAPPING.json_schema(),
        ],
        "description": described,
    }


class NodeEntry(Spec):
    """One node of a layer: ``type`` and that type's parameters, inputs and
    options, checked against the node library."""

    doc = "a node from the node library"

    def check(self, source: YamlSource, path: KeyPath, value: Any) -> Any:
        if not isinstance(value, dict):
            raise source.error(path, "expected a node (a mapping with a 'type')")
        types = _scene_node_types()
        type_name = value.get("type")
        if type_name is None:
            raise source.error(path, "a node needs a 'type'")
        if not isinstance(type_name, str) or type_name not in types:
            raise source.error(
                (*path, "type"),
                f"unknown node type {type_name!r}{did_you_mean(str(type_name), types)}",
            )
        spec = types[type_name]
        checked: dict[str, Any] = {"type": type_name}
        for key, setting in value.items():
            if key == "type":
                continue
            where = (*path, key)
            if key in spec.inputs:
                if not isinstance(setting, str) or not _REFERENCE.match(setting):
                    raise source.error(
                        where,
                        f"expected the name of a node of this layer, got {setting!r}",
                    )
            elif key == "voices":
                setting = Number(minimum=1, maximum=256, integer=True).check(
                    source, where, setting
                )
            elif (param := _find_param(spec, key)) is not None:
                setting = _check_param(source, where, param, setting)
            elif key in spec.options:
                if not isinstance(setting, str | int | float | bool):
                    raise source.error(
                        where, f"expected a single value, got {setting!r}"
                    )
            else:
                known = [*spec.inputs, *(p.name for p in spec.params), *spec.options]
                raise source.error(
                    where,
                    f"{type_name} has no input, parameter or option {key!r}"
                    f"{did_you_mean(key, known)}; it has: {', '.join(known)}",
                )
            checked[key] = setting
        return checked

    def json_schema(self) -> dict[str, Any]:
        variants = []
        for name, spec in sorted(_scene_node_types().items()):
            properties: dict[str, Any] = {"type": {"const": name}}
            for p in spec.params:
                properties[p.name] = _param_schema(p)
            for input_name in spec.inputs:
                properties[input_name] = {
                    "type": "string",
                    "pattern": _REFERENCE.pattern,
                }
            for option in spec.options:
                properties[option] = {"type": ["string", "number", "boolean"]}
            properties["voices"] = {"type": "integer", "minimum": 1, "maximum": 256}
            variants.append(
                {
                    "type": "object",
                    "description": spec.doc,
                    "properties": properties,
                    "required": ["type"],
                    "additionalProperties": False,
                }
            )
        return {"description": self.doc, "oneOf": variants}


def _find_param(spec: NodeSpec, name: str) -> Param | None:
    return next((p for p in spec.params if p.name == name), None)


def _check_param(source: YamlSource, path: KeyPath, param: Param, value: Any) -> Any:
    if isinstance(value, dict):
        if param.choices:
            raise source.error(path, "a choice cannot follow an input; name one")
        mapping = MAPPING.check(source, path, value)
        ends = (
            [((*path, "to", i), y) for i, y in enumerate(mapping["to"])]
            if "to" in mapping
            else [
                ((*path, "points", i, 1), y)
                for i, (_, y) in enumerate(mapping["points"])
            ]
        )
        for where, y in ends:
            Number(unit=param.unit, minimum=param.minimum, maximum=param.maximum).check(
                source, where, y
            )
        return mapping
    values = value if isinstance(value, list) else [value]
    if isinstance(value, list) and not value:
        raise source.error(path, "expected at least one value")
    for i, item in enumerate(values):
        where = (*path, i) if isinstance(value, list) else path
        if param.choices:
            if item not in param.choices:
                raise source.error(
                    where,
                    f"expected one of {', '.join(param.choices)}, got {item!r}"
                    f"{did_you_mean(str(item), param.choices)}",
                )
            continue
        Number(unit=param.unit, minimum=param.minimum, maximum=param.maximum).check(
            source, where, item
        )
    return value


def _check_layer(source: YamlSource, path: KeyPath, layer: dict[str, Any]) -> None:
    nodes = layer["nodes"]
    for name in nodes:
        if not _NAME.match(name):
            raise source.error(
                (*path, "nodes", name),
                f"node names are lower_case words (a-z, 0-9, _), not {name!r}",
            )
    references = [((*path, "output"), layer["output"])]
    for name, entry in nodes.items():
        spec = _scene_node_types()[entry["type"]]
        references += [
            ((*path, "nodes", name, key), entry[key])
            for key in spec.inputs
            if key in entry
        ]
    for where, reference in references:
        match = _REFERENCE.match(reference)
        target = match.group(1) if match else reference
        if target not in nodes:
            raise source.error(
                where,
                f"no node {target!r} in this layer{did_you_mean(target, nodes)}",
            )


def _check_input(source: YamlSource, path: KeyPath, spec: dict[str, Any]) -> None:
    if not spec["minimum"] < spec["maximum"]:
        raise source.error(path, "minimum must be below maximum")
    default = spec.setdefault("default", spec["minimum"])
    if not spec["minimum"] <= default <= spec["maximum"]:
        raise source.error((*path, "default"), "default is outside minimum..maximum")


def mappings(scene: dict[str, Any]):
    """Every parameter that follows an input: ``(layer, node, param, mapping)``."""
    for layer_name, layer in scene["layers"].items():
        for node_name, entry in layer["nodes"].items():
            for key, value in entry.items():
                if isinstance(value, dict):
                    yield layer_name, node_name, key, value


def _check_scene(source: YamlSource, path: KeyPath, scene: dict[str, Any]) -> None:
    _check_layers(source, (*path, "layers"), scene["layers"])
    inputs = scene["inputs"]
    for layer_name, node_name, key, mapping in mappings(scene):
        where = ("layers", layer_name, "nodes", node_name, key)
        name = mapping["from"]
        if name not in inputs:
            known = ", ".join(inputs) or "none declared"
            raise source.error(
                (*where, "from"),
                f"no input {name!r}{did_you_mean(name, inputs)} (inputs: {known})",
            )
        lo, hi = inputs[name]["minimum"], inputs[name]["maximum"]
        for i, (x, _) in enumerate(mapping.get("points", [])):
            if not lo <= x <= hi:
                raise source.error(
                    (*where, "points", i, 0),
                    f"{x:g} is outside input {name!r} ({lo:g}..{hi:g})",
                )


def map_input(mapping: dict[str, Any], spec: dict[str, Any], x: float) -> float:
    """The parameter value ``mapping`` gives for input value ``x`` (clamped to
    the input's range)."""
    lo, hi = spec["minimum"], spec["maximum"]
    x = min(max(x, lo), hi)
    if "to" in mapping:
        xs, ys = [lo, hi], list(mapping["to"])
    else:
        xs = [p[0] for p in mapping["points"]]
        ys = [p[1] for p in mapping["points"]]
    if mapping["curve"] == "exp":
        return float(np.exp(np.interp(x, xs, np.log(ys))))
    return float(np.interp(x, xs, ys))


def _check_layers(source: YamlSource, path: KeyPath, value: Any) -> None:
    if not value:
        raise source.error(path, "a scene needs at least one layer")
    for name in value:
        if not _NAME.match(name):
            raise source.error(
                (*path, name),
                f"layer names are lower_case words (a-z, 0-9, _), not {name!r}",
            )


def _check_mapping(source: YamlSource, path: KeyPath, mapping: dict[str, Any]) -> None:
    if ("to" in mapping) == ("points" in mapping):
        raise source.error(path, "a mapping needs either 'to: [low, high]' or 'points'")
    if "points" in mapping:
        xs = [x for x, _ in mapping["points"]]
        if any(b <= a for a, b in itertools.pairwise(xs)):
            raise source.error((*path, "points"), "points need rising input values")
    ys = mapping["to"] if "to" in mapping else [y for _, y in mapping["points"]]
    if mapping["curve"] == "exp" and min(ys) <= 0.0:
        raise source.error(path, "an exp curve needs every value above 0")


MAPPING = Record(
    "mapping",
    {
        "from": Text(doc="the scene input this parameter follows"),
        "to": ListOf(
            Number(), min_items=2, max_items=2, doc="[at minimum, at maximum]"
        ),
        "points": ListOf(
            ListOf(Number(), min_items=2, max_items=2),
            min_items=2,
            max_items=64,
            doc="[[input, value], ...]: straight lines between them",
        ),
        "curve": Text(
            choices=("linear", "exp"),
            default="linear",
            doc="exp: equal ratios for equal steps (pitch, cutoff, gain)",
        ),
    },
    required=("from",),
    doc="a parameter that follows a scene input",
    extra_check=_check_mapping,
)


LAYER = Record(
    "layer",
    {
        "nodes": MapOf(NodeEntry(), doc="the layer's nodes, by name"),
        "output": Text(doc="the node (or node[i]) the layer plays"),
        "gain_db": Number(unit="dB", minimum=-96.0, maximum=24.0, default=0.0),
        "pan": Number(
            minimum=-1.0,
            maximum=1.0,
            default=0.0,
            doc="-1 left, 1 right; a panned layer is summed to mono first, so "
            "leave a stereo layer at 0",
        ),
        "muted": Flag(default=False),
    },
    required=("nodes", "output"),
    doc="a sound of the scene: a small graph of nodes",
    extra_check=_check_layer,
)

INPUT = Record(
    "input",
    {
        "minimum": Number(),
        "maximum": Number(),
        "default": Number(),
        "smoothing_ms": Number(unit="ms", minimum=0.0, maximum=60_000.0, default=200.0),
        "doc": Text(default=""),
    },
    required=("minimum", "maximum"),
    doc="a state variable the scene listens to (OSC, sensors, the game)",
    extra_check=_check_input,
)

MASTER = Record(
    "master",
    {
        "loudness_lufs": Number(
            unit="LUFS", minimum=-40.0, maximum=-10.0, default=-23.0
        ),
        "ceiling_dbtp": Number(unit="dBTP", minimum=-12.0, maximum=0.0, default=-1.0),
    },
    doc="the master bus",
)

MODEL = Record(
    "model",
    {
        "file": Text(doc="ONNX model file, relative to the scene"),
        "rate_hz": Number(unit="Hz", minimum=0.1, maximum=100.0, default=10.0),
        "bindings": MapOf(Text(), default={}, doc="model output -> layer.node.param"),
    },
    doc="reserved for the adaptive loop",
)

SCENE = Record(
    "scene",
    {
        "name": Text(doc="what the listener picks"),
        "description": Text(doc="one line: what it sounds like, what it is for"),
        "tempo_bpm": Number(unit="BPM", minimum=20.0, maximum=300.0, default=60.0),
        "inputs": MapOf(INPUT, default={}),
        "layers": MapOf(LAYER),
        "master": MASTER,
        "model": MODEL,
    },
    required=("name", "description", "layers"),
    doc="a soundscape scene",
    extra_check=_check_scene,
)


def scene_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of scene files, for editors."""
    schema = SCENE.json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def check_scene(source: YamlSource) -> dict[str, Any]:
    """Validate a scene read by :func:`load_yaml`; the normalised scene."""
    scene = SCENE.check(source, (), source.data)
    scene.setdefault("master", MASTER.check(source, ("master",), {}))
    return scene


def load_scene_file(
    path: str | Path, input_values: Mapping[str, float] | None = None
) -> tuple[dict[str, Any], Graph]:
    """Read, check and build a scene file: ``(scene, graph)``, or SceneError.

    ``input_values`` start chosen inputs somewhere other than their defaults.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SceneError(f"cannot read: {error}", str(path)) from None
    source = load_yaml(text, str(path))
    scene = check_scene(source)
    for name, value in (input_values or {}).items():
        spec = scene["inputs"].get(name)
        if spec is None:
            known = ", ".join(scene["inputs"]) or "none"
            raise SceneError(
                f"no input {name!r}{did_you_mean(name, scene['inputs'])} "
                f"(inputs: {known})",
                str(path),
            )
        if not spec["minimum"] <= value <= spec["maximum"]:
            raise SceneError(
                f"input {name!r} is {spec['minimum']:g}..{spec['maximum']:g}, "
                f"not {value:g}",
                str(path),
            )
        spec["default"] = float(value)
    graph = build_graph(source, scene)
    # Compiling finds what only the whole graph shows (too many output channels,
    # a node's initialiser refusing its settings); the engine compiles again.
    try:
        compile_graph(graph)
    except GraphError as error:
        message = str(error)
        # Node names are ``layer.node``: point at the layer the message names.
        layer = next((k for k in scene["layers"] if f"{k}." in message), None)
        where = ("layers", layer) if layer is not None else ("layers",)
        raise source.error(where, message) from None
    return scene, graph


def _signal(nodes: dict[str, Node], reference: str) -> Node | Signal:
    match = _REFERENCE.match(reference)
    assert match is not None  # checked by _check_layer
    node = nodes[match.group(1)]
    return node if match.group(2) is None else node[int(match.group(2))]


def build_graph(source: YamlSource, scene: dict[str, Any]) -> Graph:
    """The scene's graph: each layer's nodes (named ``layer.node``), its level and
    pan, summed to the output."""
    graph = Graph()
    buses: list[Node] = []
    for layer_name, layer in scene["layers"].items():
        if layer["muted"]:
            continue
        layer_path: KeyPath = ("layers", layer_name)
        nodes: dict[str, Node] = {}
        pending = dict(layer["nodes"])
        # Add nodes once their inputs exist; what never resolves is a cycle.
        while pending:
            ready = [
                name
                for name, entry in pending.items()
                if all(
                    _REFERENCE.match(entry[key]).group(1) in nodes  # type: ignore[union-attr]
                    for key in _scene_node_types()[entry["type"]].inputs
                    if key in entry
                )
            ]
            if not ready:
                name = next(iter(pending))
                raise source.error(
                    (*layer_path, "nodes", name),
                    "these nodes feed each other in a loop: "
                    f"{', '.join(pending)} (a feedback path needs a delay node)",
                )
            for name in ready:
                entry = pending.pop(name)
                spec = _scene_node_types()[entry["type"]]
                settings: dict[str, Any] = {}
                smoothing_ms: dict[str, float] = {}
                for key, value in entry.items():
                    if key in ("type", "voices"):
                        continue
                    if key in spec.inputs:
                        settings[key] = _signal(nodes, value)
                    elif isinstance(value, dict):  # follows an input
                        follows = scene["inputs"][value["from"]]
                        settings[key] = map_input(value, follows, follows["default"])
                        smoothing_ms[key] = follows["smoothing_ms"]
                    else:
                        settings[key] = value
                try:
                    nodes[name] = graph.node(
                        entry["type"],
                        name=f"{layer_name}.{name}",
                        voices=entry.get("voices"),
                        smoothing_ms=smoothing_ms,
                        **settings,
                    )
                except (GraphError, ValueError) as error:
                    raise source.error(
                        (*layer_path, "nodes", name), str(error)
                    ) from None
        out = _signal(nodes, layer["output"])
        try:
            bus = graph.node(
                "gain", out, name=f"{layer_name}.level", gain_db=layer["gain_db"]
            )
            if layer["pan"] != 0.0:
                bus = graph.node("pan", bus, name=f"{layer_name}.pan", pan=layer["pan"])
        except (GraphError, ValueError) as error:
            raise source.error((*layer_path, "output"), str(error)) from None
        buses.append(bus)
    if not buses:
        raise source.error(("layers",), "every layer is muted")
    total: Node = buses[0]
    for k in range(1, len(buses), 3):
        total = graph.node("add", total, *buses[k : k + 3], name=f"bus_{k // 3}")
    graph.output(total)
    return graph
