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

Beyond layers: ``inputs`` with mappings, ``states``, ``triggers``, textures,
and the master: a loudness target, ``duck`` (layers turned down while others
sound, one ``duck`` node per ducked layer keyed by the others' sum) and
``reverb`` (one reverb shared by the layers with a ``send_db``, which then
leave out their texture's own room). ``model`` names an ONNX model whose
outputs are bound to layer parameters by name (engine/model/, docs/models.md).

Control thread only.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from engine.dsp.kernels_meter import meter_node
from engine.dsp.nodes import NodeSpec, Param, node_types
from engine.graph.compile import compile_graph
from engine.graph.graph import Graph, GraphError, Node, Signal
from engine.naming import did_you_mean
from engine.scenes.errors import KeyPath, SceneError
from engine.scenes.schema import (
    Either,
    Flag,
    ListOf,
    MapOf,
    Number,
    Record,
    Spec,
    Text,
)
from engine.scenes.textures import TEXTURES, expand, texture_names
from engine.scenes.yaml_source import YamlSource, load_yaml

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_REFERENCE = re.compile(r"^([a-z][a-z0-9_]*)(?:\[(\d+)\])?$")
# Node types a scene may not place itself: the engine owns these.
_ENGINE_ONLY = {"input", "limiter", "meter"}


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
            elif key == "smooth":
                setting = MapOf(SMOOTHING).check(source, where, setting)
                params = [p.name for p in spec.params if not p.choices]
                for name in setting:
                    if name not in params:
                        raise source.error(
                            (*where, name),
                            f"{type_name} has no parameter {name!r} to smooth"
                            f"{did_you_mean(name, params)}",
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
            properties["smooth"] = MapOf(SMOOTHING).json_schema()
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


class Raw(Spec):
    """Any value, checked later by code that knows what it must be."""

    def __init__(self, doc: str = "") -> None:
        self.doc = doc

    def check(self, source: YamlSource, path: KeyPath, value: Any) -> Any:
        return value

    def json_schema(self) -> dict[str, Any]:
        return self._schema_extras({})


def _expand_texture(source: YamlSource, path: KeyPath, layer: dict[str, Any]) -> None:
    """Replace a texture layer's ``texture``/``params``/``set`` by the nodes and
    output it builds, checked like hand-written ones."""
    if "nodes" in layer:
        raise source.error(
            (*path, "nodes"), "a layer has either a texture or its own nodes, not both"
        )
    texture = TEXTURES[layer["texture"]]
    params: dict[str, Any] = {}
    for key, value in layer.get("params", {}).items():
        where = (*path, "params", key)
        spec = texture.params.get(key)
        if spec is None:
            known = ", ".join(texture.params) or "none"
            raise source.error(
                where,
                f"texture {texture.name} has no parameter {key!r}"
                f"{did_you_mean(key, texture.params)}; it has: {known}",
            )
        if spec.file:
            text = Text().check(source, where, value)
            params[key] = str(Path(source.file).parent / Path(text).expanduser())
        elif isinstance(spec.default, str):
            params[key] = Text(choices=spec.choices).check(source, where, value)
        else:
            params[key] = Number(
                unit=spec.unit, minimum=spec.minimum, maximum=spec.maximum
            ).check(source, where, value)
    built, output = expand(texture.name, params)
    if "send_db" in layer and built[output]["type"] == "reverb":
        # The shared reverb replaces the texture's own room (one reverb for
        # the scene instead of one per layer: the CPU is in the reverbs).
        output = built.pop(output)["in"]
    nodes = {
        name: NodeEntry().check(source, (*path, "texture"), entry)
        for name, entry in built.items()
    }
    types = _scene_node_types()
    for key, value in layer.get("set", {}).items():
        where = (*path, "set", key)
        node_name, _, param_name = key.partition(".")
        if node_name not in nodes:
            shared = (
                " (with send_db the layer uses the shared reverb, master.reverb, "
                "instead of its own room)"
                if "send_db" in layer and node_name == "room"
                else ""
            )
            raise source.error(
                where,
                f"expected node.param; texture {texture.name} has no node "
                f"{node_name!r}{did_you_mean(node_name, nodes)} (its nodes: "
                f"{', '.join(nodes)}){shared}",
            )
        spec = types[nodes[node_name]["type"]]
        param = _find_param(spec, param_name)
        if param is None:
            names = [q.name for q in spec.params]
            raise source.error(
                where,
                f"{node_name} ({spec.name}) has no parameter {param_name!r}"
                f"{did_you_mean(param_name, names)}",
            )
        nodes[node_name][param_name] = _check_param(source, where, param, value)
    layer["nodes"] = nodes
    layer.setdefault("output", output)


def _check_layer(source: YamlSource, path: KeyPath, layer: dict[str, Any]) -> None:
    if "texture" in layer:
        _expand_texture(source, path, layer)
    else:
        for key in ("params", "set"):
            if key in layer:
                raise source.error(
                    (*path, key), f"'{key}' belongs to a texture layer (texture: ...)"
                )
        for key in ("nodes", "output"):
            if key not in layer:
                raise source.error(path, f"layer needs {key!r} (or a 'texture')")
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
                if isinstance(value, dict) and key != "smooth":
                    yield layer_name, node_name, key, value


def _check_scene(source: YamlSource, path: KeyPath, scene: dict[str, Any]) -> None:
    _check_layers(source, (*path, "layers"), scene["layers"])
    _check_states(source, scene)
    _check_triggers(source, scene)
    _check_model(source, scene)
    _check_master(source, scene)
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


def _check_names(source: YamlSource, path: KeyPath, names: Any, what: str) -> None:
    for name in names:
        if not _NAME.match(name):
            raise source.error(
                (*path, name),
                f"{what} names are lower_case words (a-z, 0-9, _), not {name!r}",
            )


def _check_states(source: YamlSource, scene: dict[str, Any]) -> None:
    layers, states = scene["layers"], scene["states"]
    _check_names(source, ("states",), states, "state")
    for state_name, state in states.items():
        for layer_name in state["layers"]:
            if layer_name not in layers:
                raise source.error(
                    ("states", state_name, "layers", layer_name),
                    f"no layer {layer_name!r}{did_you_mean(layer_name, layers)}",
                )
    initial = scene.get("initial_state")
    if initial is not None and initial not in states:
        known = ", ".join(states) or "none declared"
        raise source.error(
            ("initial_state",),
            f"no state {initial!r}{did_you_mean(initial, states)} (states: {known})",
        )
    if initial is None and states:
        scene["initial_state"] = next(iter(states))


def _check_master(source: YamlSource, scene: dict[str, Any]) -> None:
    layers = scene["layers"]
    master = scene.get("master", {})
    ducked: dict[str, int] = {}
    for i, duck in enumerate(master.get("duck", [])):
        path: KeyPath = ("master", "duck", i)
        name = duck["layer"]
        if name not in layers:
            raise source.error(
                (*path, "layer"), f"no layer {name!r}{did_you_mean(name, layers)}"
            )
        if name in ducked:
            raise source.error(
                (*path, "layer"),
                f"layer {name!r} is already ducked by master.duck[{ducked[name]}]; "
                "list all the layers that duck it in one 'by'",
            )
        ducked[name] = i
        for j, key in enumerate(duck["by"]):
            if key not in layers:
                raise source.error(
                    (*path, "by", j), f"no layer {key!r}{did_you_mean(key, layers)}"
                )
            if key == name:
                raise source.error(
                    (*path, "by", j), f"layer {name!r} cannot duck itself"
                )
        twice = [key for j, key in enumerate(duck["by"]) if key in duck["by"][:j]]
        if twice:
            raise source.error((*path, "by"), f"layer {twice[0]!r} is named twice")
    senders = [name for name, layer in layers.items() if "send_db" in layer]
    if "reverb" in master and not senders:
        raise source.error(
            ("master", "reverb"),
            "no layer sends to the shared reverb; give layers a send_db",
        )


def firing_nodes(layer: dict[str, Any]) -> list[str]:
    """The nodes of a layer that a trigger fires: those with a ``trigger``
    parameter (``ar`` envelopes)."""
    types = _scene_node_types()
    return [
        name
        for name, entry in layer["nodes"].items()
        if _find_param(types[entry["type"]], "trigger") is not None
    ]


def _check_triggers(source: YamlSource, scene: dict[str, Any]) -> None:
    layers = scene["layers"]
    _check_names(source, ("triggers",), scene["triggers"], "trigger")
    fired_by: dict[str, str] = {}
    for trigger_name, trigger in scene["triggers"].items():
        path: KeyPath = ("triggers", trigger_name)
        layer_name = trigger["layer"]
        layer = layers.get(layer_name)
        if layer is None:
            raise source.error(
                (*path, "layer"),
                f"no layer {layer_name!r}{did_you_mean(layer_name, layers)}",
            )
        if layer_name in fired_by:
            raise source.error(
                (*path, "layer"),
                f"layer {layer_name!r} is already fired by trigger "
                f"{fired_by[layer_name]!r}; give each trigger its own layer",
            )
        fired_by[layer_name] = trigger_name
        if not firing_nodes(layer):
            raise source.error(
                (*path, "layer"),
                f"layer {layer_name!r} has no node with a trigger parameter to "
                "fire (add an ar envelope and multiply the sound by it)",
            )
        for key, (low, high) in trigger.get("random", {}).get("params", {}).items():
            where = (*path, "random", "params", key)
            node_name, _, param_name = key.partition(".")
            entry = layer["nodes"].get(node_name)
            if entry is None:
                raise source.error(
                    where,
                    f"expected node.param of layer {layer_name!r}; no node "
                    f"{node_name!r}{did_you_mean(node_name, layer['nodes'])}",
                )
            spec = _scene_node_types()[entry["type"]]
            param = _find_param(spec, param_name)
            numeric = [q.name for q in spec.params if not q.choices]
            if param is None or param.choices:
                raise source.error(
                    where,
                    f"{node_name} ({entry['type']}) has no number parameter "
                    f"{param_name!r}{did_you_mean(param_name, numeric)}",
                )
            for value in (low, high):
                Number(
                    unit=param.unit, minimum=param.minimum, maximum=param.maximum
                ).check(source, where, value)


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


def _check_smoothing(source: YamlSource, path: KeyPath, value: dict[str, Any]) -> None:
    if len(value) != 1:
        raise source.error(path, "give either 'time_ms' or 'slew_per_s' (one of them)")


SMOOTHING = Record(
    "smoothing",
    {
        "time_ms": Number(
            unit="ms",
            minimum=0.0,
            maximum=60_000.0,
            doc="glide to a new value: ms to come within -60 dB (a one-pole)",
        ),
        "slew_per_s": Number(
            minimum=0.0,
            doc="glide in a straight line at this many units per second "
            "(for values that arrive in coarse steps)",
        ),
    },
    doc="how a parameter glides to new values",
    extra_check=_check_smoothing,
)


def _check_range(source: YamlSource, path: KeyPath, value: list[float]) -> None:
    if value[0] > value[1]:
        raise source.error(path, f"expected [low, high], got {value}")


class Range(ListOf):
    """``[low, high]``: a random value is drawn between them."""

    def __init__(
        self,
        unit: str = "",
        minimum: float = -math.inf,
        maximum: float = math.inf,
        doc: str = "",
    ) -> None:
        super().__init__(
            Number(unit=unit, minimum=minimum, maximum=maximum),
            min_items=2,
            max_items=2,
            doc=doc,
        )

    def check(self, source: YamlSource, path: KeyPath, value: Any) -> Any:
        checked = super().check(source, path, value)
        _check_range(source, path, checked)
        return checked


QUANTIZE = Text(
    choices=("none", "beat", "bar"),
    default="none",
    doc="apply at once, or on the next beat or bar of the scene's tempo",
)

STATE = Record(
    "state",
    {
        "layers": MapOf(
            Either(
                Number(unit="dB", minimum=-96.0, maximum=0.0),
                Text(choices=("off",)),
            ),
            default={},
            doc="level of each layer in this state, in dB relative to the "
            "layer's gain_db, or off; layers not named play at 0 dB",
        ),
        "fade_s": Number(
            unit="s",
            minimum=0.0,
            maximum=600.0,
            default=2.0,
            doc="how long the change into this state takes (straight-line fade)",
        ),
        "quantize": QUANTIZE,
        "doc": Text(default=""),
    },
    doc="a discrete state (explore, tension, combat...): which layers play",
)

RANDOM = Record(
    "random",
    {
        "gain_db": Range(unit="dB", minimum=-48.0, maximum=12.0),
        "pan": Range(minimum=-1.0, maximum=1.0),
        "pitch_semitones": Range(
            unit="semitones",
            minimum=-24.0,
            maximum=24.0,
            doc="moves every frequency_hz of the layer's nodes together",
        ),
        "params": MapOf(
            Range(),
            default={},
            doc="node.param: [low, high] for any parameter of the layer",
        ),
    },
    doc="what changes at random on each firing",
)

TRIGGER = Record(
    "trigger",
    {
        "layer": Text(
            doc="the layer it fires: every node with a trigger parameter "
            "(ar envelopes) in it starts"
        ),
        "voices": Number(
            minimum=1,
            maximum=16,
            integer=True,
            default=1,
            doc="how many can sound at once; a new one takes the oldest",
        ),
        "quantize": QUANTIZE,
        "random": RANDOM,
        "every_s": Range(
            unit="s",
            minimum=1.0,
            maximum=86_400.0,
            doc="[shortest, longest]: also fire on its own, at random times "
            "this far apart (thunder now and then)",
        ),
        "doc": Text(default=""),
    },
    required=("layer",),
    doc="a one-shot (thunder, a bell, a stinger) fired by OSC or a script",
)


LAYER = Record(
    "layer",
    {
        "texture": Text(
            choices=texture_names, doc="a texture from the library (instead of nodes)"
        ),
        "params": MapOf(Raw(), doc="the texture's settings"),
        "set": MapOf(
            Raw(),
            doc="node.param: value or input mapping, inside the texture's nodes",
        ),
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
        "send_db": Number(
            unit="dB",
            minimum=-60.0,
            maximum=12.0,
            doc="send to the scene's shared reverb (master.reverb); a texture "
            "layer with a send leaves out its own room",
        ),
    },
    doc="a sound of the scene: a texture, or a small graph of nodes",
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

DUCK = Record(
    "duck",
    {
        "layer": Text(doc="the layer that goes down"),
        "by": ListOf(
            Text(),
            min_items=1,
            max_items=16,
            doc="the layers that push it down while they sound",
        ),
        "depth_db": Number(
            unit="dB", minimum=0.0, maximum=60.0, default=9.0, doc="how far down"
        ),
        "threshold_db": Number(
            unit="dBFS",
            minimum=-100.0,
            maximum=0.0,
            default=-50.0,
            doc="the key layers count as sounding above this level",
        ),
        "attack_ms": Number(
            unit="ms",
            minimum=0.1,
            maximum=10_000.0,
            default=10.0,
            doc="time constant of the glide down",
        ),
        "release_ms": Number(
            unit="ms",
            minimum=1.0,
            maximum=30_000.0,
            default=400.0,
            doc="time constant of the glide back up",
        ),
        "hold_ms": Number(
            unit="ms",
            minimum=0.0,
            maximum=10_000.0,
            default=60.0,
            doc="how long a key still counts after its last loud sample",
        ),
    },
    required=("layer", "by"),
    doc="a layer ducked (turned down) while other layers sound",
)

SHARED_REVERB = Record(
    "reverb",
    {
        "decay_s": Number(unit="s", minimum=0.1, maximum=30.0, default=2.5),
        "damping_hz": Number(unit="Hz", minimum=200.0, maximum=20000.0, default=6000.0),
        "size": Number(minimum=0.0, maximum=1.0, default=0.8),
        "predelay_ms": Number(unit="ms", minimum=0.0, maximum=500.0, default=20.0),
        "width": Number(minimum=0.0, maximum=1.0, default=1.0),
    },
    doc="one reverb that layers with a send_db share (instead of one each)",
)

MASTER = Record(
    "master",
    {
        "loudness_lufs": Number(
            unit="LUFS", minimum=-40.0, maximum=-10.0, default=-23.0
        ),
        "ceiling_dbtp": Number(unit="dBTP", minimum=-12.0, maximum=0.0, default=-1.0),
        "hold_inputs": Flag(
            default=True,
            doc="hold the loudness target across the inputs' ranges too (the "
            "player measures each input's effect and compensates); false lets "
            "an input make the scene louder",
        ),
        "duck": ListOf(DUCK, max_items=64, default=[], doc="ducking of layers"),
        "reverb": SHARED_REVERB,
    },
    doc="the master bus",
)

SLEEP_TIMER = Record(
    "sleep timer",
    {
        "after_min": Number(
            unit="min", minimum=1.0, maximum=1440.0, doc="silence from here on"
        ),
        "fade_min": Number(
            unit="min",
            minimum=0.0,
            maximum=240.0,
            default=10.0,
            doc="the fade to silence takes the last this many minutes",
        ),
    },
    required=("after_min",),
    doc="the scene fades to digital silence on its own",
)

# Model inputs may also read these clock sources (engine/model/control_loop.py).
CLOCK_SOURCES = ("time_of_day_h", "minutes_since_start", "mode")

BINDING = Record(
    "binding",
    {
        "to": Text(
            doc="layer.node.param, or layer.level: an offset in dB on the "
            "layer's gain_db"
        ),
        "range": ListOf(
            Number(),
            min_items=2,
            max_items=2,
            doc="[at the output's minimum, at its maximum]; without it the "
            "output's value is used as it is",
        ),
        "curve": Text(choices=("linear", "exp"), default="linear"),
        "smoothing_ms": Number(
            unit="ms",
            minimum=0.0,
            maximum=60_000.0,
            default=1000.0,
            doc="how the parameter glides to each new model output (time to -60 dB)",
        ),
    },
    required=("to",),
    doc="where a model output goes",
)

MODEL = Record(
    "model",
    {
        "file": Text(doc="ONNX model file, relative to the scene"),
        "rate_hz": Number(
            unit="Hz",
            minimum=1.0,
            maximum=60.0,
            default=20.0,
            doc="how often the model runs (a control thread, never the audio)",
        ),
        "inputs": MapOf(
            Text(),
            default={},
            doc="model input -> a scene input, or clock.time_of_day_h, "
            "clock.minutes_since_start, clock.mode; a model input not named "
            "here reads the scene input or clock source of the same name",
        ),
        "bindings": MapOf(
            Either(Either(Text(), BINDING), ListOf(Either(Text(), BINDING))),
            default={},
            doc="model output -> layer.node.param (or a binding, or a list)",
        ),
    },
    required=("file",),
    doc="the adaptive loop: a model turns inputs into parameter targets",
)


def _check_model(source: YamlSource, scene: dict[str, Any]) -> None:
    """Resolve the model file, check input sources and binding targets, and
    normalise every binding to ``{to, layer, node, param, level, range,
    curve, smoothing_ms}``."""
    model = scene.get("model")
    if model is None:
        return
    model["file"] = str(Path(source.file).parent / Path(model["file"]).expanduser())
    inputs, layers = scene["inputs"], scene["layers"]
    sources = [*inputs, *(f"clock.{c}" for c in CLOCK_SOURCES)]
    for name, source_name in model["inputs"].items():
        if source_name not in sources:
            raise source.error(
                ("model", "inputs", name),
                f"no scene input or clock source {source_name!r}"
                f"{did_you_mean(source_name, sources)} (sources: {', '.join(sources)})",
            )
    followed = {
        (layer, node, param): m["from"] for layer, node, param, m in mappings(scene)
    }
    fired = {t["layer"] for t in scene["triggers"].values()}
    bound: dict[str, str] = {}
    types = _scene_node_types()
    for output, value in model["bindings"].items():
        items = value if isinstance(value, list) else [value]
        normal = []
        for i, item in enumerate(items):
            where: KeyPath = ("model", "bindings", output)
            if isinstance(value, list):
                where = (*where, i)
            binding = {"to": item} if isinstance(item, str) else dict(item)
            binding.setdefault("curve", "linear")
            binding.setdefault("smoothing_ms", 1000.0)
            target = binding["to"]
            parts = target.split(".")
            layer_name = parts[0]
            if len(parts) not in (2, 3) or (len(parts) == 2 and parts[1] != "level"):
                raise source.error(
                    where,
                    f"expected layer.node.param or layer.level, got {target!r}",
                )
            if layer_name not in layers:
                raise source.error(
                    where, f"no layer {layer_name!r}{did_you_mean(layer_name, layers)}"
                )
            if target in bound:
                raise source.error(
                    where, f"{target} is already bound to output {bound[target]!r}"
                )
            bound[target] = output
            if len(parts) == 2:
                if layer_name in fired:
                    raise source.error(
                        where,
                        f"layer {layer_name!r} is fired by a trigger, which sets "
                        "its level; bind one of its node parameters instead",
                    )
                if "range" not in binding:
                    raise source.error(
                        where, "a level binding needs a range in dB: [low, high]"
                    )
                param = Param("gain_db", 0.0, "dB", -60.0, 24.0)
                node_name, param_name = "level", "gain_db"
            else:
                node_name, param_name = parts[1], parts[2]
                nodes = layers[layer_name]["nodes"]
                if node_name not in nodes:
                    raise source.error(
                        where,
                        f"layer {layer_name!r} has no node {node_name!r}"
                        f"{did_you_mean(node_name, nodes)} (its nodes: "
                        f"{', '.join(nodes)})",
                    )
                spec = types[nodes[node_name]["type"]]
                found = _find_param(spec, param_name)
                numeric = [q.name for q in spec.params if not q.choices]
                if found is None or found.choices:
                    raise source.error(
                        where,
                        f"{node_name} ({spec.name}) has no number parameter "
                        f"{param_name!r}{did_you_mean(param_name, numeric)}",
                    )
                param = found
                key = (layer_name, node_name, param_name)
                if key in followed:
                    raise source.error(
                        where,
                        f"{target} already follows input {followed[key]!r}; a "
                        "parameter follows an input or a model output, not both",
                    )
            for k, y in enumerate(binding.get("range", [])):
                Number(
                    unit=param.unit, minimum=param.minimum, maximum=param.maximum
                ).check(source, (*where, "range", k), y)
            if binding["curve"] == "exp" and min(binding.get("range", [0.0])) <= 0.0:
                raise source.error(where, "an exp curve needs a range above 0")
            binding.update(
                layer=layer_name,
                node=node_name,
                param=param_name,
                level=len(parts) == 2,
                minimum=param.minimum,
                maximum=param.maximum,
            )
            normal.append(binding)
        model["bindings"][output] = normal


def model_smoothing(scene: dict[str, Any]) -> dict[tuple[str, str, str], float]:
    """``(layer, node, param) -> smoothing_ms`` of every model-bound parameter
    (a level binding is ``(layer, "level", "gain_db")``)."""
    model = scene.get("model")
    if model is None:
        return {}
    return {
        (b["layer"], b["node"], b["param"]): b["smoothing_ms"]
        for items in model["bindings"].values()
        for b in items
    }


SCENE = Record(
    "scene",
    {
        "name": Text(doc="what the listener picks"),
        "description": Text(doc="one line: what it sounds like, what it is for"),
        "tempo_bpm": Number(unit="BPM", minimum=20.0, maximum=300.0, default=60.0),
        "beats_per_bar": Number(minimum=1, maximum=16, integer=True, default=4),
        "inputs": MapOf(INPUT, default={}),
        "layers": MapOf(LAYER),
        "states": MapOf(STATE, default={}),
        "initial_state": Text(doc="the state a scene starts in (default: the first)"),
        "triggers": MapOf(TRIGGER, default={}),
        "sleep_timer": SLEEP_TIMER,
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
    path: str | Path,
    input_values: Mapping[str, float] | None = None,
    initial_state: str | None = None,
) -> tuple[dict[str, Any], Graph]:
    """Read, check and build a scene file: ``(scene, graph)``, or SceneError.

    ``input_values`` start chosen inputs somewhere other than their defaults;
    ``initial_state`` starts in another state than the scene's own.
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
    if initial_state is not None:
        if initial_state not in scene["states"]:
            known = ", ".join(scene["states"]) or "none"
            raise SceneError(
                f"no state {initial_state!r}"
                f"{did_you_mean(initial_state, scene['states'])} (states: {known})",
                str(path),
            )
        scene["initial_state"] = initial_state
    graph = build_graph(source, scene)
    # Compiling finds what only the whole graph shows (too many output channels,
    # a node's initialiser refusing its settings); the engine compiles again.
    try:
        compile_graph(graph)
    except GraphError as error:
        raise source.error(
            _layer_at_fault(source, scene, str(error)), str(error)
        ) from None
    return scene, graph


def _layer_at_fault(source: YamlSource, scene: dict[str, Any], message: str) -> KeyPath:
    """Where a whole-graph error belongs: the layer it names (node names are
    ``layer.node``), else the first layer that fails to compile on its own."""
    layer = next((k for k in scene["layers"] if f"{k}." in message), None)
    if layer is None:
        for name in scene["layers"]:
            alone = Graph()
            alone.output(_build_layer(alone, source, scene, name, name))
            try:
                compile_graph(alone)
            except GraphError:
                layer = name
                break
    return ("layers", layer) if layer is not None else ("layers",)


def _signal(nodes: dict[str, Node], reference: str) -> Node | Signal:
    match = _REFERENCE.match(reference)
    assert match is not None  # checked by _check_layer
    node = nodes[match.group(1)]
    return node if match.group(2) is None else node[int(match.group(2))]


def state_level(scene: dict[str, Any], state: str | None, layer: str) -> float:
    """A layer's linear level (0..1) in a state: 1 when no state names it."""
    if state is None:
        return 1.0
    level = scene["states"][state]["layers"].get(layer, 0.0)
    return 0.0 if level == "off" else float(10.0 ** (level / 20.0))


def layer_copies(scene: dict[str, Any], layer_name: str) -> list[str]:
    """The names a layer is built under: one, or one per voice of the trigger
    that fires it (``thunder``, ``thunder~2``...)."""
    trigger = next(
        (t for t in scene["triggers"].values() if t["layer"] == layer_name), None
    )
    voices = 1 if trigger is None else trigger["voices"]
    return [layer_name] + [f"{layer_name}~{k}" for k in range(2, voices + 1)]


def _randomises_pan(scene: dict[str, Any], layer_name: str) -> bool:
    return any(
        t["layer"] == layer_name and "pan" in t.get("random", {})
        for t in scene["triggers"].values()
    )


def _build_layer(
    graph: Graph,
    source: YamlSource,
    scene: dict[str, Any],
    layer_name: str,
    copy_name: str,
) -> Node:
    layer = scene["layers"][layer_name]
    layer_path: KeyPath = ("layers", layer_name)
    nodes: dict[str, Node] = {}
    pending = dict(layer["nodes"])
    bound = model_smoothing(scene)
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
            slew_per_s: dict[str, float] = {}
            for key, value in entry.items():
                if key in ("type", "voices", "smooth"):
                    continue
                if key in spec.inputs:
                    settings[key] = _signal(nodes, value)
                elif isinstance(value, dict):  # follows an input
                    follows = scene["inputs"][value["from"]]
                    settings[key] = map_input(value, follows, follows["default"])
                    smoothing_ms[key] = follows["smoothing_ms"]
                else:
                    settings[key] = value
            for (bound_layer, bound_node, key), ms in bound.items():
                if (bound_layer, bound_node) == (layer_name, name):
                    smoothing_ms[key] = ms
            for key, smoothing in entry.get("smooth", {}).items():
                if "time_ms" in smoothing:
                    smoothing_ms[key] = smoothing["time_ms"]
                else:
                    smoothing_ms.pop(key, None)
                    slew_per_s[key] = smoothing["slew_per_s"]
            try:
                nodes[name] = graph.node(
                    entry["type"],
                    name=f"{copy_name}.{name}",
                    voices=entry.get("voices"),
                    smoothing_ms=smoothing_ms,
                    slew_per_s=slew_per_s,
                    **settings,
                )
            except (GraphError, ValueError) as error:
                raise source.error((*layer_path, "nodes", name), str(error)) from None
    out = _signal(nodes, layer["output"])
    try:
        bus = graph.node(
            "gain",
            out,
            name=f"{copy_name}.level",
            gain_db=layer["gain_db"],
            level=state_level(scene, scene.get("initial_state"), layer_name),
            smoothing_ms={
                k[2]: ms for k, ms in bound.items() if k[:2] == (layer_name, "level")
            },
        )
        if layer["pan"] != 0.0 or _randomises_pan(scene, layer_name):
            bus = graph.node("pan", bus, name=f"{copy_name}.pan", pan=layer["pan"])
    except (GraphError, ValueError) as error:
        raise source.error((*layer_path, "output"), str(error)) from None
    return bus


# The scene's output gain that holds its loudness target (see engine.scenes.player).
TRIM_NODE = "trim"


def build_graph(
    source: YamlSource, scene: dict[str, Any], *, meters: bool = True
) -> Graph:
    """The scene's graph: each layer's nodes (named ``layer.node``; a trigger's
    layer once per voice), its level and pan (``layer.level``, ``layer.pan``),
    a ``layer.duck`` where the master ducks it, a ``layer.send`` into the
    shared ``reverb``, a ``meter:layer`` (what the layer adds to the bus,
    measured on the audio thread; ``meters=False`` leaves them out, it does
    not change the sound); all summed, then the scene's trim and one
    ``hold_<input>`` gain per held input (set by the player)."""
    graph = Graph()
    # Each layer copy's bus after its level and pan, before any ducking.
    faders: dict[str, list[Node]] = {}
    for layer_name, layer in scene["layers"].items():
        if layer["muted"]:
            continue
        faders[layer_name] = [
            _build_layer(graph, source, scene, layer_name, copy_name)
            for copy_name in layer_copies(scene, layer_name)
        ]
    if not faders:
        raise source.error(("layers",), "every layer is muted")
    master = scene.get("master", {})
    buses = dict(faders)
    for duck in master.get("duck", []):
        keys = [bus for name in duck["by"] for bus in faders.get(name, [])]
        if duck["layer"] not in faders or not keys:
            continue  # muted: nothing to duck, or nothing ducks it
        # Keys come from the faders, before ducking: layers may duck each other.
        key = _sum(graph, keys, f"{duck['layer']}.duck_key")
        settings = {k: v for k, v in duck.items() if k not in ("layer", "by")}
        buses[duck["layer"]] = [
            graph.node("duck", bus, key, name=f"{_copy_of(bus)}.duck", **settings)
            for bus in faders[duck["layer"]]
        ]
    sends = [
        graph.node(
            "gain",
            bus,
            name=f"{_copy_of(bus)}.send",
            gain_db=scene["layers"][name]["send_db"],
        )
        for name, layer_buses in buses.items()
        if "send_db" in scene["layers"][name]
        for bus in layer_buses
    ]
    everything = [
        graph.node("meter", bus, name=meter_node(_copy_of(bus))) if meters else bus
        for layer_buses in buses.values()
        for bus in layer_buses
    ]
    if sends:
        room = master.get("reverb") or SHARED_REVERB.check(source, (), {})
        everything.append(
            graph.node(
                "reverb",
                _sum(graph, sends, "reverb_send"),
                name=SHARED_REVERB_NODE,
                mix=1.0,
                **room,
            )
        )
    total = _sum(graph, everything, "bus")
    out = graph.node("gain", total, name=TRIM_NODE)
    for name in held_inputs(scene):
        # Glides as the parameters that follow the input do.
        smoothing = {"gain_db": scene["inputs"][name]["smoothing_ms"]}
        out = graph.node("gain", out, name=hold_node(name), smoothing_ms=smoothing)
    graph.output(out)
    return graph


def held_inputs(scene: dict[str, Any]) -> list[str]:
    """Inputs whose effect on loudness the player compensates: those that
    some parameter follows, unless ``master.hold_inputs`` is false."""
    if not scene.get("master", {}).get("hold_inputs", True):
        return []
    followed = {mapping["from"] for *_, mapping in mappings(scene)}
    return [name for name in scene["inputs"] if name in followed]


def hold_node(input_name: str) -> str:
    """The gain node that holds loudness while ``input_name`` moves."""
    return f"hold_{input_name}"


# The scene's shared send reverb (master.reverb, fed by the layers' send_db).
SHARED_REVERB_NODE = "reverb"


def _copy_of(bus: Node) -> str:
    """The layer copy a bus node belongs to (``thunder~2.level``: ``thunder~2``)."""
    return bus.name.rsplit(".", 1)[0]


def _sum(graph: Graph, signals: list[Node], name: str) -> Node:
    """One bus of ``signals`` through a chain of four-input adds."""
    total = signals[0]
    for k in range(1, len(signals), 3):
        total = graph.node("add", total, *signals[k : k + 3], name=f"{name}_{k // 3}")
    return total
