"""Node specifications: what a node is called, what it reads, what it exposes.

A node is one kernel plus a declared list of inputs, parameters and compile-time
options, a state size and an initialiser. Kernel modules declare their nodes with
:class:`NodeSpec` and :func:`register`; the graph compiler reads them from
:data:`REGISTRY`.

Every kernel has the same signature so the interpreter can run any of them::

    kernel(bufs, row, p0, p1, state, sample_rate, n_frames)

``bufs`` is the program's 2-D signal arena, ``row`` the node's instruction row
(see ``engine.dsp.layout``), ``p0``/``p1`` the node's parameter values at the start
and end of this segment (ramp linearly between them), ``state`` the node's state
slice. Kernels loop over frames and voices in whichever order is fastest for
them; the result must not depend on it (DESIGN.md section 2).

Audio thread: no (this module is control-plane bookkeeping).
"""

from __future__ import annotations

import functools
import importlib
import math
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Param:
    """One parameter of a node: a smoothed, clamped float per voice.

    ``smoothing_ms`` is the time to come within -60 dB of a new target (the
    convention of SuperCollider's ``Lag``); 0 jumps at once. ``choices`` turns the
    parameter into a named option (stored as its index, never smoothed).
    """

    name: str
    default: float
    unit: str = ""
    minimum: float = -math.inf
    maximum: float = math.inf
    smoothing_ms: float = 20.0
    choices: tuple[str, ...] = ()
    doc: str = ""

    def coerce(self, value: Any, where: str) -> float:
        """Turn a user value into the stored float, or raise ``ValueError``."""
        if self.choices:
            if isinstance(value, str):
                if value not in self.choices:
                    raise ValueError(
                        f"{where} must be one of "
                        f"{', '.join(self.choices)}, not {value!r}"
                    )
                return float(self.choices.index(value))
            index = int(value)
            if not 0 <= index < len(self.choices):
                raise ValueError(f"{where}: choice index {value!r} out of range")
            return float(index)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where} must be a number, not {value!r}") from None
        if not math.isfinite(number):
            raise ValueError(f"{where} must be finite, not {value!r}")
        if not self.minimum <= number <= self.maximum:
            raise ValueError(
                f"{where}={number:g} is outside "
                f"[{self.minimum:g}, {self.maximum:g}] {self.unit}".rstrip()
            )
        return number

    @property
    def smoothing_s(self) -> float:
        return 0.0 if self.choices else self.smoothing_ms / 1000.0


StateSize = Callable[[int, float, Mapping[str, Any]], int]
InitFn = Callable[[np.ndarray, np.ndarray, int, float, Mapping[str, Any]], None]


def _no_state(voices: int, sample_rate: float, options: Mapping[str, Any]) -> int:
    return 0


def _no_init(
    state: np.ndarray,
    params: np.ndarray,
    voices: int,
    sample_rate: float,
    options: Mapping[str, Any],
) -> None:
    """Default initialiser: state starts at zero."""


@dataclass(frozen=True)
class NodeSpec:
    """Declaration of a node type.

    - ``inputs``: names of signal inputs, in the order the kernel reads them;
      unconnected inputs read silence.
    - ``params``: smoothed control parameters (see :class:`Param`).
    - ``options``: compile-time settings (``seed``, ``max_delay_s``...) with
      defaults; they size and initialise state and never change while playing.
    - ``state_size(voices, sample_rate, options)``: total state elements.
    - ``init(state, params, voices, sample_rate, options)``: fills the state from
      the initial parameter values (``params[j * voices + v]``), so the first
      sample is already right. ``reset`` means: run ``init`` again.
    - ``output_width(voices)``: output channels (default: one per voice).
    - ``fixed_voices``: the node always runs this many voices (stereo nodes: 2).
    """

    name: str
    opcode: int
    doc: str
    inputs: tuple[str, ...] = ()
    params: tuple[Param, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    state_size: StateSize = _no_state
    init: InitFn = _no_init
    output_width: Callable[[int], int] = lambda voices: voices
    fixed_voices: int | None = None
    voices_from_input: bool = True

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)


REGISTRY: dict[str, NodeSpec] = {}


def register(*specs: NodeSpec) -> None:
    """Add node types to the registry (called by each kernel module at import)."""
    for spec in specs:
        if spec.name in REGISTRY:
            raise RuntimeError(f"node type {spec.name!r} registered twice")
        REGISTRY[spec.name] = spec


@functools.cache
def _import_kernel_modules() -> None:
    # The kernel modules register their nodes; the interpreter is not needed
    # (importing it fills the kernel table, which checking a graph must not).
    # Every engine/dsp/kernels_*.py is one: a new module needs no list here.
    # Once per process: listing the folder costs ~3 ms, and loading a scene
    # asks for the node types about a hundred times.
    import engine.dsp

    for module in pkgutil.iter_modules(engine.dsp.__path__):
        if module.name.startswith("kernels_"):
            importlib.import_module(f"engine.dsp.{module.name}")


def node_types() -> dict[str, NodeSpec]:
    """All node types, after importing every kernel module."""
    _import_kernel_modules()
    return dict(REGISTRY)


def _register_plumbing() -> None:
    from engine.dsp.opcodes import Op

    register(
        NodeSpec(
            "input",
            Op.INPUT,
            "External input: channels the engine writes before the graph runs.",
            voices_from_input=False,
        )
    )


_register_plumbing()
