"""The whole OSC control surface of a playing scene, built in one call: the
server, the address space, the heart-rate bridge presets, the alias table,
status and subscriptions. ``soundscape play`` and the daemon both use it.

    surface = OscSurface(player, OscSettings(port=9000, hr_bridge="vrcosc"),
                         live=live_player).start()
    ...
    surface.counters()   # {"server": {...}, "api": {...}, "heart": {...}}
    surface.stop()

What it wires together:

- :class:`engine.control.osc_server.OscServer` on ``host:port`` (UDP and TCP);
- :class:`engine.control.osc_api.OscApi` under ``prefix``, with timetags mapped
  to engine frames by a :class:`FrameClock` anchored to the live callbacks
  (or to ``engine.frame`` against the wall clock when there is no live player);
- :class:`engine.control.osc_heart.OscHeartRate` for ``hr_bridge``, writing
  the heart state to the scene's ``heart_rate_bpm``/``hrv_rmssd_ms``/...
  inputs;
- an :class:`engine.control.osc_aliases.AliasTable` from ``aliases_file``,
  driving scene inputs (installed last: an alias wins over a preset address);
- :class:`engine.control.status.StatusReport` for ``/status`` and subscribers.

Switch interval: while the surface runs, ``sys.setswitchinterval`` is set to
``switch_interval_s`` (0.25 ms). A thread waiting for the GIL waits for a busy
one to give it up, which CPython asks for every switch interval (5 ms by
default): beside a busy Python thread (the model loop, a game's glue), OSC
handling waits about that long. Measured beside a busy thread (benchmarks/
RESULTS.md): median 1.3-1.5 ms at 1 ms, 0.55-0.68 ms at 0.25 ms; what it cost
the busy threads' work was lost in the shared machine's noise (a switch is
only forced when a second thread wants the GIL). The audio callback never
takes the GIL, so it costs the audio nothing. The old value comes back when
the last surface running stops.

Priority: the receive threads run at ``thread_nice`` (-11, what RTKit gives
audio control threads), so that on a busy machine a datagram's thread runs
when it arrives; the UDP one, which serves plain input sets without the GIL
(engine/control/osc_fast_path.py), at SCHED_FIFO ``udp_fifo_priority`` (5,
and below the audio callback's real-time priority) where the process may,
so that it runs at once: measured, the GIL-free loop needs both to keep p99
under 2 ms beside a busy thread (benchmarks/RESULTS.md). The whole process is left alone: raised too, the busy
thread it waits for competes with it as an equal (measured no better).
But the engine's own threads that take the GIL for short moments while
datagrams arrive (the event pump, the heart-rate worker, the subscriptions
sender: ``GIL_TAKER_THREADS``) get ``thread_nice`` too while the surface
runs: one preempted by another process while it holds the GIL stalls the
receive thread as long (measured in the OSC fuzz, 2-16 ms).
Without CAP_SYS_NICE the threads keep their priority (logged).

Garbage collector: with Numba and a scene loaded the process tracks about
120,000 objects, and a full collection scans them all: 140 ms with the GIL
held, on whichever thread allocates when it falls due (an OSC receive thread,
or the busy thread it waits for). With ``freeze_gc`` (the default) ``start``
collects once and freezes what is there (``gc.freeze``), and each scene load
freezes again, so later collections scan only what was made since (measured:
0.003 ms instead of 140 ms). ``stop`` unfreezes. Frozen objects that become
cyclic garbage are never freed: at most a scene's worth per load.

Threads: build, start and stop from one control thread; the parts run on their
own threads (see each module).
"""

from __future__ import annotations

import gc
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.control.frame_clock import DEFAULT_LATENCY_S, FrameClock
from engine.control.osc_aliases import AliasTable, load_aliases
from engine.control.osc_api import DEFAULT_PREFIX, OscApi
from engine.control.osc_heart import OscHeartRate, parse_bridges, scene_input_writer
from engine.control.osc_server import (
    DEFAULT_BURST,
    DEFAULT_OSC_HOST,
    DEFAULT_OSC_PORT,
    DEFAULT_RATE_HZ,
    OscServer,
)
from engine.control.status import StatusReport
from engine.sensors.bridges import check_prefix

__all__ = ["DEFAULT_SWITCH_INTERVAL_S", "OscSettings", "OscSurface"]

DEFAULT_SWITCH_INTERVAL_S = 0.00025
# What RTKit gives PipeWire's and PulseAudio's control threads: ahead of
# ordinary work when a datagram arrives, behind the audio thread (real-time).
DEFAULT_THREAD_NICE = -11
# The engine's threads that take the GIL briefly while datagrams arrive
# (engine/rt/live.py's pump, osc_heart's worker, osc_subscriptions' sender).
GIL_TAKER_THREADS = (
    "soundscape-events",
    "soundscape-heart",
    "soundscape-osc-subscriptions",
)
# Within what RTKit grants (1..20) and below JACK's clients (jackd -P 10).
DEFAULT_UDP_FIFO_PRIORITY = 5


class _SwitchInterval:
    """The interpreter's switch interval, shared by the surfaces running: the
    first to start saves it, the last to stop restores it (surfaces stopped
    in any order used to leave one's setting behind). The shortest asked for
    holds while several run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._asked: list[float] = []
        self._saved_s = 0.0

    def take(self, interval_s: float) -> None:
        with self._lock:
            if not self._asked:
                self._saved_s = sys.getswitchinterval()
            self._asked.append(interval_s)
            sys.setswitchinterval(min(self._asked))

    def give_back(self, interval_s: float) -> None:
        with self._lock:
            self._asked.remove(interval_s)
            sys.setswitchinterval(min(self._asked, default=self._saved_s))


_switch_interval = _SwitchInterval()


@dataclass(frozen=True)
class OscSettings:
    """How the OSC surface is set up (``soundscape play --osc-...`` options).

    ``hr_bridge``: ``all``, ``none``, or bridge names joined by commas
    (``hrtovrchat``, ``iron-heart``, ``vrcosc``, ``generic``).
    ``aliases_file``: a YAML alias table (:mod:`engine.control.osc_aliases`).
    ``allow_networks``: needed to bind beyond loopback (CIDR strings).
    ``switch_interval_s``: None leaves the interpreter's setting alone.
    ``freeze_gc``: freeze the garbage collector's view of start-up objects.
    ``thread_nice``: the OSC receive threads' nice value (None: unchanged).
    ``udp_fifo_priority``: SCHED_FIFO priority of the UDP receive thread
    where allowed (None: ``thread_nice`` only).
    ``fast_path``: the GIL-free path for input sets (None: on unless
    ``SOUNDSCAPE_OSC_FAST_PATH=0``).
    """

    host: str = DEFAULT_OSC_HOST
    port: int = DEFAULT_OSC_PORT
    prefix: str = DEFAULT_PREFIX
    hr_bridge: str = "all"
    aliases_file: str | None = None
    allow_networks: tuple[str, ...] = ()
    switch_interval_s: float | None = DEFAULT_SWITCH_INTERVAL_S
    freeze_gc: bool = True
    thread_nice: int | None = DEFAULT_THREAD_NICE
    udp_fifo_priority: int | None = DEFAULT_UDP_FIFO_PRIORITY
    fast_path: bool | None = None
    timetag_latency_s: float = DEFAULT_LATENCY_S
    max_subscribers: int = 8
    rate_hz: float = DEFAULT_RATE_HZ
    burst: float = DEFAULT_BURST

    def check(self) -> None:
        """ValueError naming the first setting that cannot work."""
        check_prefix(self.prefix)
        if self.prefix.endswith("/") or self.prefix == "":
            raise ValueError(f"OSC prefix {self.prefix!r} must not end with '/'")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"OSC port must be 0..65535, not {self.port}")
        parse_bridges(self.hr_bridge)
        if self.switch_interval_s is not None and not self.switch_interval_s > 0:
            raise ValueError(
                f"switch_interval_s must be > 0, not {self.switch_interval_s}"
            )


class OscSurface:
    """Everything OSC for one :class:`ScenePlayer` (see the module docstring).

    Args:
        player: the scene player to drive (a scene need not be loaded yet).
        settings: :class:`OscSettings`.
        live: the :class:`engine.rt.live.LivePlayer` playing ``player.engine``,
            or None (offline, tests): timetags then follow ``engine.frame``
            against the wall clock, and nothing pumps events ahead.
        scene_folders: where ``/scene`` finds scenes by name (default: the
            shipped ``scenes/`` folder).
        clock: a :class:`FrameClock` to use instead of the default one.
        on_stop: serves ``/stop`` (the daemon: begin the fade-out, return its
            length in seconds); without it ``/stop`` is refused.
        extra_status: called with each status snapshot dict to add to it
            (the daemon adds its output's state under ``"output"``).
    """

    def __init__(
        self,
        player: Any,
        settings: OscSettings | None = None,
        live: Any = None,
        *,
        scene_folders: list[Path] | None = None,
        clock: FrameClock | None = None,
        on_stop: Any = None,
        extra_status: Any = None,
    ) -> None:
        self.settings = settings = settings or OscSettings()
        settings.check()
        self.player = player
        self.live = live
        engine = player.engine
        self.server = OscServer(
            settings.host,
            settings.port,
            rate_hz=settings.rate_hz,
            burst=settings.burst,
            allow_networks=settings.allow_networks,
            thread_nice=settings.thread_nice,
            fast_path=settings.fast_path,
            udp_fifo_priority=settings.udp_fifo_priority,
        )
        if clock is None:
            options = {"latency_s": settings.timetag_latency_s}
            if live is not None:
                clock = FrameClock.for_live(engine, live, **options)
            else:
                clock = FrameClock.for_engine(engine, **options)
        self.clock = clock
        self.heart: OscHeartRate | None = None
        if parse_bridges(settings.hr_bridge):
            self.heart = OscHeartRate(
                self.server,
                settings.hr_bridge,
                scene_input_writer(player),
                prefix=settings.prefix,
                on_error=self._heart_error,
            )
        self.extra_status = extra_status
        self.report = StatusReport(player, live, extra=self._add_extra)
        self.api = OscApi(
            self.server,
            player,
            prefix=settings.prefix,
            clock=clock,
            status=self.report.snapshot,
            scene_folders=scene_folders,
            pump_events=live is not None,
            max_subscribers=settings.max_subscribers,
            on_stop=on_stop,
            on_scene_loaded=self._scene_loaded,
        )
        self.aliases: AliasTable | None = None
        if settings.aliases_file is not None:
            known = None
            if player.inputs is not None:
                known = list(player.inputs.specs)
            self.aliases = load_aliases(
                settings.aliases_file, self._alias_value, known_inputs=known
            )
        self._set_switch_interval = False
        self._gc_frozen = False
        self._raised: dict[int, int] = {}  # thread id -> its nice before start

    def _alias_value(self, name: str, value: float) -> None:
        self.player.set_input(name, value)

    def _heart_error(self, message: Any, sender: Any, reason: str) -> None:
        self.api.reply_problem("error", message.address, reason, sender)

    def _add_extra(self, snapshot: dict[str, Any]) -> None:
        self._add_heart(snapshot)
        if self.extra_status is not None:
            self.extra_status(snapshot)

    def _add_heart(self, snapshot: dict[str, Any]) -> None:
        if self.heart is None:
            return
        state = self.heart.state()
        snapshot["heart"] = {
            "bpm": round(state.bpm, 2),
            "rmssd_ms": round(state.rmssd_ms, 2),
            "connected": state.connected,
            "quality": round(state.quality, 3),
        }

    @property
    def port(self) -> int:
        """The port the server listens on (UDP and TCP)."""
        return self.server.port

    def start(self) -> OscSurface:
        """Bind the port and start every part; returns the surface.

        Raises OSError if the port is taken.
        """
        self.server.start()
        try:
            self.api.install()
            if self.heart is not None:
                self.heart.start()
            if self.aliases is not None:
                self.aliases.install(self.server)
        except BaseException:
            self.stop()
            raise
        if self.settings.switch_interval_s is not None:
            _switch_interval.take(self.settings.switch_interval_s)
            self._set_switch_interval = True
        if self.settings.freeze_gc:
            gc.collect()
            gc.freeze()
            self._gc_frozen = True
        self._raise_gil_takers()
        return self

    def _raise_gil_takers(self) -> None:
        nice = self.settings.thread_nice
        if nice is None:
            return
        for thread in threading.enumerate():
            tid = thread.native_id
            if thread.name not in GIL_TAKER_THREADS or tid is None:
                continue
            try:
                before = os.getpriority(os.PRIO_PROCESS, tid)
                if before > nice:
                    os.setpriority(os.PRIO_PROCESS, tid, nice)
                    self._raised[tid] = before
            except OSError:  # gone meanwhile, or no CAP_SYS_NICE: as it was
                continue

    def _restore_gil_takers(self) -> None:
        # The pump belongs to the live player, which outlives the surface.
        for tid, before in self._raised.items():
            try:
                os.setpriority(os.PRIO_PROCESS, tid, before)
            except OSError:  # the thread ended
                pass
        self._raised.clear()

    def _scene_loaded(self) -> None:
        if self._gc_frozen:
            gc.freeze()  # the new scene's objects: no collect, it holds the GIL

    def stop(self) -> None:
        """Stop every part and the server; restore the switch interval and
        the garbage collector."""
        if self._gc_frozen:
            gc.unfreeze()
            self._gc_frozen = False
        if self._set_switch_interval:
            assert self.settings.switch_interval_s is not None
            _switch_interval.give_back(self.settings.switch_interval_s)
            self._set_switch_interval = False
        if self.heart is not None:
            self.heart.stop()
        self.api.close()
        self.server.stop()
        self._restore_gil_takers()

    def counters(self) -> dict[str, dict[str, int]]:
        """The server's, the API's and the heart-rate presets' counters."""
        counts = {
            "server": self.server.counters(),
            "api": self.api.counters(),
            "subscriptions": dict(self.api.subscriptions.counts),
        }
        if self.heart is not None:
            counts["heart"] = dict(self.heart.counts)
        counts["clock"] = {"resyncs": self.clock.resyncs}
        return counts

    def __enter__(self) -> OscSurface:  # noqa: PYI034 - Self needs Python 3.11
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
