"""Heart-rate bridges over OSC, as presets: their addresses in, scene inputs out.

    heart = OscHeartRate(server, "all", on_state=write_inputs)
    heart.start()        # HRtoVRChat_OSC, iron-heart, VRCOSC and ours, as sent
    ...
    heart.state()        # HeartState(bpm=64.2, rmssd_ms=48.0, connected=True...)

A preset registers a bridge's addresses (``engine.sensors.bridges``: the same
tables the simulator sends with) on the OSC server. Each message is decoded to a
``HeartSample`` and fed to a :class:`HeartTracker` (artifact rejection, RMSSD,
dropout hold and relax), whose state is handed ``tick_hz`` times a second to
``on_state`` (once at start, then from the first sample on: a surface that no
bridge talks to has no thread waking ten times a second): :func:`scene_input_writer` writes it to the scene inputs that
exist among :data:`HEART_INPUTS` (``heart_rate_bpm``, ``hrv_rmssd_ms``,
``hr_connected``, ``hr_trend_bpm_per_min``, ``hr_quality``).

``bridges`` names one preset, several (``"vrcosc,generic"``), ``"all"`` or
``"none"``. Bridges that share an address (HRtoVRChat_OSC and iron-heart both
send ``/avatar/parameters/HR``) decode it once, by the first that has it in
:data:`PRESET_ORDER`. The generic preset lives under the surface's prefix
(``/soundscape/hr/bpm``...).

Threads: the handlers run on the OSC receive threads and only enqueue (a
bounded queue; overflow is counted). One worker thread owns the decoders and the
tracker (neither is thread-safe) and calls ``on_state`` and ``on_error``.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from engine.control.osc_server import OscSender, OscServer
from engine.control.osc_wire import OscMessage
from engine.naming import did_you_mean
from engine.sensors.bridges import BRIDGES, BridgeDecoder
from engine.sensors.heart_state import HeartState, HeartTracker

__all__ = [
    "HEART_INPUTS",
    "PRESET_ORDER",
    "OscHeartRate",
    "parse_bridges",
    "scene_input_writer",
]

log = logging.getLogger(__name__)

# Shared addresses go to the first bridge here that has them.
PRESET_ORDER = ("generic", "vrcosc", "hrtovrchat", "iron-heart")
# Scene input name -> what of the HeartState it receives.
HEART_INPUTS: dict[str, Callable[[HeartState], float]] = {
    "heart_rate_bpm": lambda s: s.bpm,
    "hrv_rmssd_ms": lambda s: s.rmssd_ms,
    "hr_connected": lambda s: 1.0 if s.connected else 0.0,
    "hr_trend_bpm_per_min": lambda s: s.trend_bpm_per_min,
    "hr_quality": lambda s: s.quality,
}
DEFAULT_TICK_HZ = 10.0
_QUEUE_SIZE = 1024


def parse_bridges(text: str) -> tuple[str, ...]:
    """The presets ``text`` names (``"all"``, ``"none"``, or names joined by
    commas), in :data:`PRESET_ORDER`; ValueError with a suggestion otherwise.

    >>> parse_bridges("vrcosc,generic")
    ('generic', 'vrcosc')
    """
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["all"]:
        return PRESET_ORDER
    if names in ([], ["none"]):
        return ()
    for name in names:
        if name not in BRIDGES:
            choices = [*PRESET_ORDER, "all", "none"]
            raise ValueError(
                f"unknown heart-rate bridge {name!r}{did_you_mean(name, choices)}; "
                f"choose {', '.join(choices)} (or several, joined by commas)"
            )
    return tuple(n for n in PRESET_ORDER if n in names)


def scene_input_writer(player: Any) -> Callable[[HeartState], None]:
    """An ``on_state`` that writes the heart state to ``player``'s scene inputs
    named in :data:`HEART_INPUTS` (those the playing scene has; a value that did
    not move is not written again)."""
    last: dict[str, float] = {}

    def write(state: HeartState) -> None:
        inputs = player.inputs
        if inputs is None:
            return
        for name, pick in HEART_INPUTS.items():
            if name not in inputs.specs:
                continue
            value = pick(state)
            if last.get(name) == value and inputs.values.get(name) == value:
                continue
            last[name] = player.set_input(name, value)

    return write


class OscHeartRate:
    """Bridge presets on an :class:`OscServer`, feeding one tracker.

    Args:
        server: where the addresses are registered.
        bridges: presets, as :func:`parse_bridges` reads them.
        on_state: called with the :class:`HeartState`, ``tick_hz`` times a
            second, from the worker thread.
        prefix: the prefix of the generic preset.
        on_error: called as ``(message, sender, reason)`` for a message a
            decoder refused (the OSC surface turns it into an error reply).
        clock: seconds, monotonic (the tracker's time).
    """

    def __init__(
        self,
        server: OscServer,
        bridges: str = "all",
        on_state: Callable[[HeartState], None] | None = None,
        *,
        prefix: str = "/soundscape",
        on_error: Callable[[OscMessage, OscSender, str], None] | None = None,
        tick_hz: float = DEFAULT_TICK_HZ,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (math.isfinite(tick_hz) and tick_hz > 0):
            raise ValueError(f"OscHeartRate: tick_hz must be > 0, not {tick_hz!r}")
        self.server = server
        self.presets = parse_bridges(bridges)
        self.on_state = on_state
        self.on_error = on_error
        self.tick_s = 1.0 / tick_hz
        self.clock = clock
        self.decoders: dict[str, BridgeDecoder] = {}
        for name in self.presets:
            bridge = BRIDGES[name]
            decoder = bridge.decoder(prefix if name == "generic" else None)
            for address in decoder.params:
                self.decoders.setdefault(address, decoder)
        self.tracker = HeartTracker(start_s=clock())
        self._state = self.tracker.state(clock())
        # Messages with their arrival time; None wakes the worker to stop.
        self._queue: queue.Queue[tuple[OscMessage, OscSender, float] | None] = (
            queue.Queue(_QUEUE_SIZE)
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_log_s = -math.inf
        self._last_time_s = -math.inf
        self._count_lock = threading.Lock()  # two receive threads count here
        self.counts = {"messages": 0, "dropped": 0, "refused": 0, "samples": 0}
        self.ticks = 0  # states handed to on_state (worker thread)

    @property
    def addresses(self) -> list[str]:
        return list(self.decoders)

    def handle(self, message: OscMessage, sender: OscSender) -> None:
        """The server handler: enqueue, never wait."""
        try:
            self._queue.put_nowait((message, sender, self.clock()))
            outcome = "messages"
        except queue.Full:
            outcome = "dropped"
        with self._count_lock:
            self.counts[outcome] += 1

    def start(self) -> OscHeartRate:
        """Register the addresses and start the worker thread."""
        for address in self.decoders:
            self.server.add_handler(address, self.handle)
        if self._thread is None and self.decoders:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name="soundscape-heart", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the worker and remove the addresses."""
        self._stop.set()
        try:
            self._queue.put_nowait(None)  # wakes an idle worker
        except queue.Full:
            pass  # a full queue: the worker is not waiting on it
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None
        for address in self.decoders:
            self.server.remove_handler(address)

    def state(self) -> HeartState:
        """The latest state handed to ``on_state``."""
        return self._state

    def _run(self) -> None:
        next_tick_s = self.clock()
        while not self._stop.is_set():
            # Until a bridge sends its first sample the state cannot change:
            # after the first tick, sleep until a message comes instead of
            # taking the GIL ten times a second (beside a busy Python thread,
            # an OSC message arriving meanwhile waits one more switch interval).
            idle = self.ticks > 0 and self.counts["samples"] == 0
            timeout_s = None if idle else max(0.0, next_tick_s - self.clock())
            try:
                item = self._queue.get(timeout=timeout_s)
            except queue.Empty:
                pass
            else:
                if item is None:  # stop()
                    continue
                self._decode(*item)
                if idle:
                    next_tick_s = self.clock()
            now_s = self.clock()
            if now_s >= next_tick_s:
                next_tick_s = max(next_tick_s + self.tick_s, now_s)
                self._tick(now_s)

    def _decode(self, message: OscMessage, sender: OscSender, time_s: float) -> None:
        decoder = self.decoders.get(message.address)
        if decoder is None:
            return
        # UDP and TCP enqueue from two threads: keep the tracker's time in order.
        time_s = max(time_s, self._last_time_s)
        self._last_time_s = time_s
        try:
            sample = decoder.decode(message.address, message.args, time_s)
            if sample is None:
                return
            self.tracker.update(sample)
            with self._count_lock:
                self.counts["samples"] += 1
        except ValueError as error:
            with self._count_lock:
                self.counts["refused"] += 1
            if self.on_error is not None:
                self.on_error(message, sender, str(error))

    def _tick(self, now_s: float) -> None:
        self.ticks += 1
        try:
            self._state = self.tracker.state(now_s)
            if self.on_state is not None:
                self.on_state(self._state)
        except Exception as error:  # noqa: BLE001 - the worker must live
            # A scene without room for the value, a scene switch under way:
            # the next tick tries again; say so at most once a second.
            now_s = self.clock()
            if now_s - self._last_log_s >= 1.0:
                self._last_log_s = now_s
                log.warning("heart rate to scene inputs: %s", error)
