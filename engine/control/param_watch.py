"""The parameters worth watching in a playing scene, read back from the engine:
each one's target (what the control plane asked for) and its smoothed value
(what the audio thread has reached).

    watch = ParamWatch.for_player(player)
    watch.names                   # ["tense.tone.frequency_hz", ...]
    watch.read(player.engine)     # {"tense.tone.frequency_hz": (1200.0, 871.3)}
    watch.contracts(player.engine)
    # {"tense.tone.frequency_hz": {"follows": "danger", "slew_per_s": 600.0, ...}}

A scene's watched parameters are the ones that follow an input (its mappings;
a layer voiced by a trigger is read on its first copy). The model control loop
adds the parameters its outputs drive with :meth:`ParamWatch.add`. Values are
read from the program's parameter rows (``engine/dsp/layout.py``: ``P_TARGET``,
``P_CURRENT``) without a lock, as the design allows for aligned 8-byte values:
live, a value may be one block newer than the frame read beside it; offline,
between blocks, it is exact.

Threads: any control thread (the trace ticker, the status builder, the model
loop); never the audio thread.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from engine.dsp.layout import P_CURRENT, P_SLEW_BASE, P_TARGET, P_TAU

__all__ = ["MAX_WATCHED", "ParamWatch", "WatchedParam"]

# The status bundle carries every watched parameter ten times a second: a bound
# keeps it small (a scene with more mappings shows its first ones).
MAX_WATCHED = 32
_LN_1000 = math.log(1000.0)


@dataclass(frozen=True)
class WatchedParam:
    """One parameter: ``name`` as users write it (``layer.node.param``), the
    engine node it lives on (``layer.node``, or a trigger layer's first copy),
    and the input or model output that drives it (``follows``)."""

    name: str
    node: str
    param: str
    follows: str = ""


class ParamWatch:
    """A fixed list of parameters and how to read them from an engine."""

    def __init__(self, params: list[WatchedParam] | None = None) -> None:
        self.params: list[WatchedParam] = []
        for param in params or []:
            self.add(param)

    @classmethod
    def for_player(cls, player: Any) -> ParamWatch:
        """The parameters that follow an input or a model output in
        ``player``'s scene (none for no scene or a built-in demo). A model
        not loaded yet (live play loads it on the model thread) binds no
        output: ask again once ``player.model.loaded``."""
        from engine.scenes.format import layer_copies, mappings

        try:
            scene = player.scene
        except ValueError:  # no scene loaded
            return cls()
        watched = []
        for layer, node, param, mapping in mappings(scene):
            if scene["layers"][layer]["muted"]:
                continue
            first = layer_copies(scene, layer)[0]
            watched.append(
                WatchedParam(
                    f"{layer}.{node}.{param}",
                    f"{first}.{node}",
                    param,
                    str(mapping.get("from", "")),
                )
            )
        loop = getattr(player, "model", None)
        for output, bindings in (loop.bindings if loop is not None else {}).items():
            for binding in bindings:
                first = layer_copies(scene, binding["layer"])[0]
                watched.append(
                    WatchedParam(
                        binding["to"],
                        f"{first}.{binding['node']}",
                        binding["param"],
                        f"model.{output}",
                    )
                )
        return cls(watched[:MAX_WATCHED])

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def add(self, param: WatchedParam) -> None:
        """Watch one more parameter (a name already watched is replaced)."""
        self.params = [p for p in self.params if p.name != param.name]
        if len(self.params) >= MAX_WATCHED:
            raise ValueError(
                f"at most {MAX_WATCHED} parameters can be watched; "
                f"{param.name!r} is one too many"
            )
        self.params.append(param)

    def _column(self, program: Any, param: WatchedParam) -> int | None:
        try:
            return program.param(param.node, param.param).column
        except KeyError:  # the scene changed under us: not in this program
            return None

    def read(self, engine: Any) -> dict[str, tuple[float | None, float | None]]:
        """``{name: (target, smoothed)}`` from the engine's playing program;
        ``(None, None)`` for a parameter it does not have, None for a value
        that is not finite."""
        program = engine.current
        values: dict[str, tuple[float | None, float | None]] = {}
        for param in self.params:
            column = None if program is None else self._column(program, param)
            if column is None:
                values[param.name] = (None, None)
                continue
            values[param.name] = (
                _finite(program.params[P_TARGET, column]),
                _finite(program.params[P_CURRENT, column]),
            )
        return values

    def contracts(self, engine: Any) -> dict[str, dict[str, Any]]:
        """How each parameter glides, from the program's own rows:
        ``smoothing_s`` (one-pole, time to within -60 dB; 0: it jumps) or
        ``slew_per_s`` (a straight line), the node and what drives it."""
        program = engine.current
        rate = float(engine.sample_rate)
        contracts: dict[str, dict[str, Any]] = {}
        for param in self.params:
            entry: dict[str, Any] = {
                "node": param.node,
                "param": param.param,
                "follows": param.follows,
            }
            column = None if program is None else self._column(program, param)
            if column is not None:
                slew = float(program.params[P_SLEW_BASE, column])
                if slew > 0.0:
                    entry["slew_per_s"] = slew * rate
                else:
                    tau = float(program.params[P_TAU, column])
                    entry["smoothing_s"] = tau * _LN_1000 / rate
            contracts[param.name] = entry
        return contracts


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None
