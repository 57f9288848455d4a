"""The adaptive loop: a scene's model turns inputs into parameter targets.

A scene with a ``model`` section gets a :class:`ModelLoop` when the
:class:`~engine.scenes.player.ScenePlayer` loads it (``player.model``). Each
tick it builds the state vector, runs the model and writes each bound output
through :meth:`ScenePlayer.set_param`: the same path as OSC and scripts, so
the audio thread glides to the target with the binding's ``smoothing_ms``::

    model input  <- scene input of that name (heart_rate_bpm, danger...), or
                    clock.time_of_day_h (local hours), clock.minutes_since_start
                    (engine frames since the scene loaded), clock.mode (the
                    index of the scene's state; 0 without states)
    model output -> layer.node.param (value as is, or mapped from the output's
                    range to the binding's range, linear or exp), or
                    layer.level (a dB offset on the layer's gain_db)

Two ways to run it, one tick function:

- live: :class:`ModelThread` ticks ``player.model`` at its ``rate_hz`` on the
  wall clock, following scene changes;
- offline: :func:`render_with_model` ticks on the first block boundary at or
  after each tick's frame, with no thread and no wall clock (``player.model_clock`` fixes the
  time of day), so renders stay reproducible.

Loading: the onnxruntime session opens in :meth:`ModelLoop.load`, at once
(offline renders: before the first frame, so they stay reproducible) or, for
a player made with ``defer_model_load=True`` (``play`` and the daemon), on the
loop's first tick, on the model thread. Importing onnxruntime and opening the
session take about half a second that the first audio then does not wait
for: the stream starts on the scene's own settings and mappings (what a model
that fails to load leaves), and the first tick after the load writes the
bound outputs, which glide there with each binding's ``smoothing_ms``. Until
then ``loop.loaded`` is False and ``loop.bindings`` is empty; readers that
list the bound parameters (``ParamWatch.for_player``, status, traces) call
:meth:`ModelLoop.load` or look again once ``loaded`` turns True.

For monitors and traces: ``loop.last_tick`` is a :class:`TickRecord` (frame,
inputs, outputs, targets written), and every callable in
``player.model_listeners`` is called with each record.

A model that fails to load or run, or an output that is bad, is reported once
(``player.on_error``) and leaves the last good targets in place; parameters
that follow scene inputs keep following them. Nothing here raises into the
thread that ticks.

Threads: ticks come from one thread at a time (the model thread live, the
rendering thread offline); the player's methods take its lock. Never the
audio thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.control.offline_ticks import render_ticking
from engine.naming import did_you_mean

if TYPE_CHECKING:
    # onnxruntime is imported when a model loads, not with this module.
    from engine.model.runtime import ModelRunner
    from engine.scenes.player import ScenePlayer

__all__ = [
    "ModelLoop",
    "ModelThread",
    "TickRecord",
    "map_output",
    "render_with_model",
]

CLOCK_PREFIX = "clock."
DEFAULT_OFFLINE_TIME_OF_DAY_H = 12.0


@dataclass(frozen=True)
class TickRecord:
    """One tick of the loop: what went in, what came out, what was written
    (``targets``: ``layer.node.param`` -> value, only those that moved)."""

    frame: int
    inputs: dict[str, float]
    outputs: dict[str, float]
    targets: dict[str, float] = field(default_factory=dict)


def map_output(binding: Mapping[str, Any], low: float, high: float, y: float) -> float:
    """The parameter value a binding gives for output value ``y`` in
    ``low..high`` (clamped to the parameter's range).

    >>> map_output({"range": [200, 800], "curve": "exp", "minimum": 20,
    ...             "maximum": 20000}, 0.0, 1.0, 0.5)
    400.0
    """
    span = binding.get("range")
    if span is None:
        value = y
    else:
        t = min(max((y - low) / (high - low), 0.0), 1.0)
        a, b = span
        if binding.get("curve") == "exp":
            value = a * (b / a) ** t
        else:
            value = a + (b - a) * t
    return float(min(max(value, binding["minimum"]), binding["maximum"]))


def _local_hours() -> float:
    now = time.localtime()
    return now.tm_hour + now.tm_min / 60.0 + now.tm_sec / 3600.0


class ModelLoop:
    """A loaded scene's model and bindings (one per scene load).

    Args:
        player: the player whose scene this is (its inputs, state, engine).
        scene: the checked scene (``scene["model"]`` present).
        report: one line per fault, once each.
        load: open the model now (default); False leaves it to :meth:`load`
            or the first :meth:`tick`.
    """

    def __init__(
        self,
        player: ScenePlayer,
        scene: dict[str, Any],
        report: Callable[[str], None],
        *,
        load: bool = True,
    ) -> None:
        model = scene["model"]
        self.player = player
        self.scene = scene
        self.report = report
        self.rate_hz = float(model["rate_hz"])
        rate = player.engine.sample_rate
        self.period_frames = max(1, round(rate / self.rate_hz))
        self.runner: ModelRunner | None = None
        self.start_frame = 0
        self.next_frame = 0
        self.last_tick: TickRecord | None = None
        self.ticks = 0
        self._written: dict[str, float] = {}
        self._reported: set[str] = set()
        self.sources: dict[str, str | None] = {}
        self.bindings: dict[str, list[dict[str, Any]]] = {}
        self._load_lock = threading.Lock()
        if load:
            self.load()

    @property
    def loaded(self) -> bool:
        """True once :meth:`load` has run (whether or not the model works)."""
        return self.runner is not None

    def load(self) -> None:
        """Open the model's session and bind its outputs; once (later calls,
        from any control thread, return when the first is done). A model
        that does not load is reported and binds nothing."""
        if self.runner is not None:
            return
        with self._load_lock:
            if self.runner is not None:
                return
            file = self.scene["model"]["file"]
            try:
                from engine.model.runtime import ModelRunner
            except ImportError as error:  # an install without onnxruntime
                self._once(
                    "import",
                    f"{file}: cannot run the model: {error}; keeping "
                    "the scene's own settings",
                )
                return
            runner = ModelRunner(file, self.report)
            self.sources, self.bindings = self._bind(runner)
            # Last: whoever sees the runner sees its bindings too.
            self.runner = runner

    def _bind(
        self, runner: ModelRunner
    ) -> tuple[dict[str, str | None], dict[str, list[dict[str, Any]]]]:
        """The source of each model input and the bindings of each output
        the model has (what it lacks is reported and skipped)."""
        scene = self.scene
        model = scene["model"]
        sources: dict[str, str | None] = {}
        bindings: dict[str, list[dict[str, Any]]] = {}
        contract = runner.contract
        if contract is None:
            return sources, bindings
        explicit = model["inputs"]
        for port in contract.inputs:
            source = explicit.get(port.name)
            if source is None:
                if port.name in scene["inputs"]:
                    source = port.name
                elif f"{CLOCK_PREFIX}{port.name}" in _clock_names():
                    source = f"{CLOCK_PREFIX}{port.name}"
            sources[port.name] = source
        for name in explicit:
            if name not in contract.input_names:
                self._once(
                    f"input:{name}",
                    f"{model['file']}: the scene feeds model input {name!r}, which "
                    f"the model does not have{did_you_mean(name, contract.input_names)}"
                    f" (inputs: {', '.join(contract.input_names)})",
                )
        for output, items in model["bindings"].items():
            if output not in contract.output_names:
                self._once(
                    f"output:{output}",
                    f"{model['file']}: the scene binds output {output!r}, which the "
                    f"model does not have{did_you_mean(output, contract.output_names)}"
                    f" (outputs: {', '.join(contract.output_names)}); it is skipped",
                )
                continue
            playing = [b for b in items if not scene["layers"][b["layer"]]["muted"]]
            if playing:
                bindings[output] = playing
        return sources, bindings

    def _once(self, key: str, message: str) -> None:
        if key not in self._reported:
            self._reported.add(key)
            self.report(message)

    def start(self, frame: int) -> None:
        """The scene starts at engine ``frame``: minutes count from here and
        the first tick is due now."""
        self.start_frame = self.next_frame = int(frame)

    def status(self) -> dict[str, Any]:
        """For status replies and monitors: the file, whether it is loaded
        and runs, the ticks so far, the faults counted and the last tick's
        values."""
        last = self.last_tick
        runner = self.runner
        return {
            "file": str(runner.path if runner else self.scene["model"]["file"]),
            "loaded": runner is not None,
            "ok": runner is not None and runner.ok,
            "error": runner.error if runner else None,
            "rate_hz": self.rate_hz,
            "ticks": self.ticks,
            "faults": runner.faults if runner else 0,
            "inputs": dict(last.inputs) if last else {},
            "outputs": dict(last.outputs) if last else {},
        }

    def clock(self, frame: int) -> dict[str, float]:
        """The clock sources at ``frame`` (``player.model_clock`` overrides)."""
        fixed = self.player.model_clock
        states = list(self.scene["states"])
        state = self.player.state
        values = {
            "time_of_day_h": _local_hours(),
            "minutes_since_start": (frame - self.start_frame)
            / self.player.engine.sample_rate
            / 60.0,
            "mode": float(states.index(state)) if state in states else 0.0,
        }
        values.update(fixed)
        return values

    def state_inputs(self, frame: int) -> dict[str, float]:
        """The model's inputs at ``frame``, by model input name (a missing
        source leaves the input out: the runner uses its default)."""
        scene_values = self.player.inputs.values if self.player.inputs else {}
        clock = self.clock(frame)
        values: dict[str, float] = {}
        for name, source in self.sources.items():
            if source is None:
                continue
            if source.startswith(CLOCK_PREFIX):
                values[name] = float(clock[source.removeprefix(CLOCK_PREFIX)])
            elif source in scene_values:
                values[name] = float(scene_values[source])
        return values

    def tick(self, frame: int | None = None) -> TickRecord | None:
        """Run the model once and write the bound outputs that moved; the
        record also becomes :attr:`last_tick` and goes to the listeners. The
        first tick of a loop made with ``load=False`` loads the model first."""
        self.load()
        frame = self.player.engine.frame if frame is None else int(frame)
        self.next_frame = max(self.next_frame + self.period_frames, frame + 1)
        try:
            record = self._tick(frame)
        except Exception as error:  # noqa: BLE001 - the loop must live
            path = self.scene["model"]["file"]
            self._once("tick", f"{path}: model tick failed: {error}")
            return None
        self.last_tick = record
        self.ticks += 1
        for listener in list(self.player.model_listeners):
            try:
                listener(record)
            except Exception as error:  # noqa: BLE001 - a listener's bug is its own
                self._once("listener", f"model listener failed: {error}")
        return record

    def _tick(self, frame: int) -> TickRecord:
        inputs = self.state_inputs(frame)
        runner = self.runner
        outputs = runner.run(inputs) if runner is not None else {}
        targets: dict[str, float] = {}
        contract = runner.contract if runner is not None else None
        if self.player.model is not self:
            # The scene changed while this tick ran: its bindings are stale.
            return TickRecord(frame, inputs, dict(outputs))
        for output, value in outputs.items():
            port = contract.output(output) if contract is not None else None
            for binding in self.bindings.get(output, ()):
                assert port is not None
                mapped = map_output(binding, port.minimum, port.maximum, value)
                if binding["level"]:
                    layer = self.scene["layers"][binding["layer"]]
                    mapped = min(layer["gain_db"] + mapped, 24.0)
                key = binding["to"]
                previous = self._written.get(key)
                if previous is not None and abs(previous - mapped) <= 1e-9 * (
                    1.0 + abs(mapped)
                ):
                    continue
                try:
                    self.player.set_param(
                        binding["layer"], binding["node"], binding["param"], mapped
                    )
                except ValueError as error:
                    self._once(f"write:{key}", f"model output {output!r}: {error}")
                    continue
                self._written[key] = mapped
                targets[key] = mapped
        return TickRecord(frame, inputs, dict(outputs), targets)


def _clock_names() -> tuple[str, ...]:
    from engine.scenes.format import CLOCK_SOURCES

    return tuple(f"{CLOCK_PREFIX}{c}" for c in CLOCK_SOURCES)


def render_with_model(
    player: ScenePlayer,
    n_frames: int,
    render: Callable[[int], None],
    block_size: int = 128,
) -> None:
    """Render ``n_frames`` through ``render(n)`` (blocks of ``block_size`` from
    the start of each call), ticking ``player.model`` on the first block
    boundary at or after each tick's frame (offline: no thread, no wall clock).

    The rule is :mod:`engine.control.offline_ticks`'s, shared with traces.
    """

    def due() -> int | None:
        loop = player.model  # a scene change brings another loop, or none
        return loop.next_frame if loop is not None else None

    def tick(frame: int) -> None:
        player.model.tick(frame)

    render_ticking(render, player.engine.frame, n_frames, due, tick, block_size)


class ModelThread:
    """Ticks ``player.model`` at its rate on a control thread (live play);
    scene changes are followed at the next tick.

    >>> thread = ModelThread(player).start()   # doctest: +SKIP
    >>> thread.stop()                          # doctest: +SKIP
    """

    IDLE_S = 0.1

    def __init__(
        self, player: ScenePlayer, resting: Callable[[], bool] | None = None
    ) -> None:
        self.player = player
        # While resting() is true (the daemon's output paused after the sleep
        # timer), the model does not tick: nothing would hear it.
        self.resting = resting or (lambda: False)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> ModelThread:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name="soundscape-model", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None

    def _run(self) -> None:
        next_s = time.monotonic()
        while not self._stop.is_set():
            loop = self.player.model
            if loop is None or self.resting():
                self._stop.wait(self.IDLE_S)
                next_s = time.monotonic()
                continue
            loop.tick()
            period_s = 1.0 / loop.rate_hz
            # On the grid, but never a burst of ticks to catch up after a stall.
            next_s = max(next_s + period_s, time.monotonic())
            self._stop.wait(max(0.0, next_s - time.monotonic()))
