"""Scene inputs at run time: a value for a named input becomes parameter targets.

    scene, graph = load_scene_file("scenes/rain.yaml")
    engine.load(graph)
    inputs = SceneInputs(scene, engine)
    inputs.set("intensity", 0.8)     # every parameter following it glides there

Each mapped parameter glides with its input's ``smoothing_ms`` (set when the
graph was built), so a 60 Hz game value and a 1 Hz heart rate both sound smooth.
A bad value (unknown input, not a number, NaN or inf) raises ``ValueError`` and
changes nothing: the last good state stays. Values outside an input's range are
clamped to it; true and false count as 1 and 0.

``values`` reads and writes a float64 array (``values.array``, one slot per
input in ``values.index``), so that the OSC fast path
(engine/control/osc_fast_path.py), which sets inputs without the GIL, leaves
them where status, the model loop, states and reloads read them.

Control threads only (the OSC fast path writes ``values.array`` from its
receive thread: one aligned 8-byte store per input, no lock needed).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, MutableMapping
from typing import Any

import numpy as np

from engine.naming import did_you_mean
from engine.rt.engine import Engine
from engine.scenes.format import layer_copies, map_input, mappings


class InputValues(MutableMapping[str, float]):
    """Input name -> value, kept in a float64 array (one slot per input).

    >>> values = InputValues({"danger": 0.25})
    >>> values["danger"] = 0.5
    >>> dict(values), values.array[values.index["danger"]]
    ({'danger': 0.5}, np.float64(0.5))
    """

    def __init__(self, initial: dict[str, float]) -> None:
        self.index = {name: slot for slot, name in enumerate(initial)}
        self.array = np.array([float(v) for v in initial.values()], dtype=np.float64)

    def __getitem__(self, name: str) -> float:
        return float(self.array[self.index[name]])

    def __setitem__(self, name: str, value: float) -> None:
        slot = self.index.get(name)
        if slot is None:
            raise KeyError(f"no input {name!r}: inputs are fixed by the scene")
        self.array[slot] = value

    def __delitem__(self, name: str) -> None:
        raise KeyError(f"input {name!r}: inputs are fixed by the scene")

    def __iter__(self) -> Iterator[str]:
        return iter(self.index)

    def __len__(self) -> int:
        return len(self.index)

    def __repr__(self) -> str:
        return f"InputValues({dict(self)!r})"


class SceneInputs:
    """The current value of each scene input, applied to an engine."""

    def __init__(self, scene: dict[str, Any], engine: Engine) -> None:
        self.engine = engine
        self.specs: dict[str, dict[str, Any]] = scene["inputs"]
        self.values = InputValues(
            {name: spec["default"] for name, spec in self.specs.items()}
        )
        self._followers: dict[str, list[tuple[str, str, dict[str, Any]]]] = {
            name: [] for name in self.specs
        }
        for layer, node, param, mapping in mappings(scene):
            if scene["layers"][layer]["muted"]:
                continue
            for copy in layer_copies(scene, layer):
                self._followers[mapping["from"]].append(
                    (f"{copy}.{node}", param, mapping)
                )

    def followers(self, name: str) -> list[tuple[str, str, dict[str, Any]]]:
        """The parameters input ``name`` moves: ``(node, param, mapping)``,
        one per layer copy, as :meth:`set` writes them."""
        return list(self._followers[name])

    def set(self, name: str, value: Any, frame: int | None = None) -> float:
        """Set input ``name`` now, or at an engine ``frame``; returns the value
        used (clamped to its range)."""
        spec = self.specs.get(name)
        if spec is None:
            known = ", ".join(self.specs) or "none"
            raise ValueError(
                f"no input {name!r}{did_you_mean(name, self.specs)} (inputs: {known})"
            )
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"input {name!r}: expected a number, got {value!r}"
            ) from None
        if not math.isfinite(number):
            raise ValueError(f"input {name!r}: {value!r} is not a finite number")
        number = min(max(number, spec["minimum"]), spec["maximum"])
        self.values[name] = number
        for node, param, mapping in self._followers[name]:
            target = map_input(mapping, spec, number)
            if frame is None:
                self.engine.set(node, param, target)
            else:
                self.engine.schedule(frame, node, param, target)
        return number
