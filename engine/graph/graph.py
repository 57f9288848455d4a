"""The graph API: nodes, connections and an output.

Nodes are made with :meth:`Graph.node`, naming a registered node type; signal
inputs are passed positionally (in the type's input order) or by name, parameters
and options by keyword. A node's output is a :class:`Signal` of one channel per
voice; ``node[i]`` picks one channel, ``node[a:b]`` several.

Example::

    g = Graph()
    noise = g.node("brown_noise", amplitude=0.5)
    lfo = g.node("lfo", shape="sine", rate_hz=0.05, depth=1.0)
    dark = g.node("svf", noise, cutoff_mod=lfo, mode="lowpass", cutoff_hz=500.0)
    g.output(g.node("pan", dark, pan=0.0))

Audio thread: no.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.dsp.nodes import NodeSpec, node_types
from engine.naming import did_you_mean


class GraphError(ValueError):
    """A graph that cannot be built or compiled; the message names the node."""


@dataclass(frozen=True)
class Signal:
    """Channels ``offset .. offset + width`` of a node's output (``width`` None:
    all of them from ``offset``)."""

    node: Node
    offset: int = 0
    width: int | None = None


@dataclass(eq=False)
class Node:
    """A node in a :class:`Graph`. Made by :meth:`Graph.node`, not directly."""

    graph: Graph
    index: int
    name: str
    spec: NodeSpec
    inputs: dict[str, Signal] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    voices: int | None = None
    # Per-parameter smoothing (ms to -60 dB) overriding the node type's own.
    smoothing_ms: dict[str, float] = field(default_factory=dict)
    # Per-parameter slew limit (units per second): a straight-line glide.
    slew_per_s: dict[str, float] = field(default_factory=dict)

    def __getitem__(self, key: int | slice) -> Signal:
        if isinstance(key, slice):
            if key.step not in (None, 1):
                raise GraphError(f"{self.name}: channel slices cannot have a step")
            start = key.start or 0
            width = None if key.stop is None else key.stop - start
            return Signal(self, start, width)
        return Signal(self, int(key), 1)

    def __repr__(self) -> str:
        return f"<Node {self.name} ({self.spec.name})>"


class Graph:
    """A DSP graph under construction. Compile it with ``compile_graph``."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.output_signal: Signal | None = None
        self._names: set[str] = set()

    def node(
        self,
        type_name: str,
        *inputs: Node | Signal,
        name: str | None = None,
        voices: int | None = None,
        smoothing_ms: Mapping[str, float] | None = None,
        slew_per_s: Mapping[str, float] | None = None,
        **settings: Any,
    ) -> Node:
        """Add a node of a registered type and return it.

        ``inputs`` connect in the order of the type's inputs; ``settings`` may name
        inputs, parameters (a number, or one per voice) and options.
        ``smoothing_ms`` sets how fast chosen parameters glide to new targets
        (ms to within -60 dB), instead of the node type's default:

            g.node("svf", noise, cutoff_hz=800.0, smoothing_ms={"cutoff_hz": 500})

        ``slew_per_s`` instead moves chosen parameters in a straight line at a
        fixed rate (units per second), however far the target jumps; it suits a
        value that arrives in coarse steps (a 1 Hz heart rate):

            g.node("svf", noise, cutoff_hz=800.0, slew_per_s={"cutoff_hz": 400})
        """
        types = node_types()
        spec = types.get(type_name)
        if spec is None:
            raise GraphError(
                f"unknown node type {type_name!r}{did_you_mean(type_name, types)}"
            )
        if name is None:
            count = sum(1 for n in self.nodes if n.spec.name == type_name)
            name = f"{type_name}_{count + 1}"
        if name in self._names:
            raise GraphError(f"{name}: a node of that name exists already")
        if voices is not None and voices < 1:
            raise GraphError(f"{name}: voices must be at least 1, not {voices}")
        if len(inputs) > len(spec.inputs):
            raise GraphError(
                f"{name}: {type_name} takes {len(spec.inputs)} inputs "
                f"({', '.join(spec.inputs) or 'none'}), got {len(inputs)}"
            )
        node = Node(self, len(self.nodes), name, spec, voices=voices)
        self._set_smoothing(node, "smoothing_ms", smoothing_ms, node.smoothing_ms)
        self._set_smoothing(node, "slew_per_s", slew_per_s, node.slew_per_s)
        for input_name, source in zip(spec.inputs, inputs, strict=False):
            node.inputs[input_name] = self._as_signal(source, name, input_name)
        param_names = [p.name for p in spec.params]
        for key, value in settings.items():
            if key in spec.inputs:
                node.inputs[key] = self._as_signal(value, name, key)
            elif key in param_names:
                node.values[key] = value
            elif key in spec.options:
                node.options[key] = value
            else:
                known = [*spec.inputs, *param_names, *spec.options]
                raise GraphError(
                    f"{name}: {type_name} has no input, parameter or option "
                    f"{key!r}{did_you_mean(key, known)}"
                )
        self._names.add(name)
        self.nodes.append(node)
        return node

    @staticmethod
    def _set_smoothing(
        node: Node,
        what: str,
        given: Mapping[str, float] | None,
        into: dict[str, float],
    ) -> None:
        names = [p.name for p in node.spec.params]
        for param_name, amount in (given or {}).items():
            if param_name not in names:
                raise GraphError(
                    f"{node.name}: {node.spec.name} has no parameter "
                    f"{param_name!r} to smooth{did_you_mean(param_name, names)}"
                )
            if not 0.0 <= float(amount) < math.inf:
                raise GraphError(
                    f"{node.name}.{param_name}: {what} must be >= 0, not {amount!r}"
                )
            into[param_name] = float(amount)

    def input(self, channels: int = 2, name: str = "input") -> Node:
        """An external input of ``channels`` channels, written by the engine."""
        return self.node("input", name=name, voices=channels)

    def output(self, source: Node | Signal) -> None:
        """Set the graph's output: one channel (sent to both sides) or two."""
        self.output_signal = self._as_signal(source, "output", "output")

    def _as_signal(self, source: Any, node_name: str, input_name: str) -> Signal:
        if isinstance(source, Node):
            source = Signal(source)
        if not isinstance(source, Signal):
            raise GraphError(
                f"{node_name}: input {input_name!r} must be a node or a signal, "
                f"not {source!r}"
            )
        if source.node.graph is not self:
            raise GraphError(f"{node_name}: input {input_name!r} is from another graph")
        return source
