"""The engine: two program slots, a master program, the event ring and the
shared control array, plus the control-side calls that drive them.

One :class:`Engine` serves both live playback (``engine.rt.live`` hands its arrays
to the audio callback) and offline rendering (:meth:`Engine.render` runs the very
same ``render_block``). That is why a render with the same seed and the same timed
events is bit-identical to what was played.

Audio thread: no. Every method here runs on a control thread; the audio thread only
sees the arrays.
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from engine.dsp.kernels_master import limiter_latency_frames
from engine.dsp.kernels_meter import meter_node
from engine.graph.compile import compile_graph
from engine.graph.graph import Graph
from engine.graph.program import Program
from engine.rt.core import (
    C_ACCEPTED,
    C_DONE,
    C_FADE_FRAMES,
    C_FADING,
    C_FRAME,
    C_REQUEST,
    new_ctl,
    render_block,
)
from engine.rt.ring import (
    ASAP,
    EV_RAMP,
    EV_SET,
    EV_SET_NOW,
    EV_TRIGGER,
    NO_EVENT,
    EventRing,
)

SUPPORTED_SAMPLE_RATES = (44100, 48000)
MIN_BLOCK_SIZE = 32
MAX_BLOCK_SIZE = 2048
DEFAULT_FADE_S = 0.05
FIRST_FADE_S = 0.25


class EngineError(RuntimeError):
    """An engine call that cannot be carried out; the message says why."""


def check_audio_settings(sample_rate: int, block_size: int) -> None:
    """Raise :class:`EngineError` for an unsupported sample rate or block size."""
    if sample_rate not in SUPPORTED_SAMPLE_RATES:
        raise EngineError(
            f"sample rate {sample_rate} Hz is not supported; use "
            f"{' or '.join(str(r) for r in SUPPORTED_SAMPLE_RATES)}"
        )
    if not MIN_BLOCK_SIZE <= block_size <= MAX_BLOCK_SIZE:
        raise EngineError(
            f"block size {block_size} is outside {MIN_BLOCK_SIZE}..{MAX_BLOCK_SIZE}"
        )


def silent_graph() -> Graph:
    """The program a slot holds before anything is loaded."""
    g = Graph()
    g.output(g.node("gain", name="silence"))
    return g


# The master bus's output meter (engine.control.level_meters reads it).
MASTER_METER = meter_node("master")


def master_graph(
    ceiling_dbtp: float = -1.0, volume_db: float = 0.0, *, meter: bool = True
) -> Graph:
    """Master bus: volume, DC blocker, true-peak limiter, and a level meter
    on what leaves it (``meter=False`` leaves it out; the sound is the same)."""
    g = Graph()
    bus = g.input(2, name="bus")
    volume = g.node("gain", bus, name="volume", gain_db=volume_db)
    dc = g.node("dc_blocker", volume, name="dc")
    out = g.node("limiter", dc, name="limiter", ceiling_dbtp=ceiling_dbtp)
    if meter:
        out = g.node("meter", out, name=MASTER_METER)
    g.output(out)
    return g


class _Scheduled(NamedTuple):
    """A scheduled event, ordered by (frame, order): a plain tuple, so the
    heap compares in C (a dataclass's generated ``__lt__`` cost half of
    scheduling an event)."""

    frame: int
    order: int
    kind: int
    generation: int
    index: int
    value: float
    tag: tuple[str, int] | None = None  # (tag, the tag's epoch when scheduled)


class Engine:
    """Program slots, master bus and control arrays for one output stream.

    >>> from engine.graph import Graph
    >>> g = Graph(); g.output(g.node("sine", name="tone", amplitude=0.1))
    >>> engine = Engine(sample_rate=48000)
    >>> program = engine.load(g)
    >>> engine.render(4800).shape
    (4800, 2)
    """

    def __init__(
        self,
        sample_rate: int = 48000,
        channels: int = 2,
        max_block_size: int = MAX_BLOCK_SIZE,
        seed: int = 0,
        ceiling_dbtp: float = -1.0,
        volume_db: float = 0.0,
    ) -> None:
        check_audio_settings(sample_rate, max_block_size)
        if channels not in (1, 2):
            raise EngineError(f"channels must be 1 or 2, not {channels}")
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self.max_block_size = int(max_block_size)
        self.seed = int(seed)
        self.ctl = new_ctl()
        self.ring = EventRing()
        self.slots: list[Program] = [self.compile(silent_graph()) for _ in range(2)]
        self.master = self.compile(master_graph(ceiling_dbtp, volume_db))
        self.current: Program | None = None
        self.loads = 0
        self._retired: list[tuple[int, Program]] = []
        self._scheduled: list[_Scheduled] = []
        # Cancelling is lazy: it moves the tag to a new epoch, and the pump
        # drops events of an old one. A scan of the heap cost milliseconds
        # with thousands of timed events waiting (each /sleep over OSC).
        self._tag_epochs: dict[str, int] = {}
        self._tag_waiting: dict[tuple[str, int], int] = {}
        self._stale = 0  # cancelled events still in the heap
        self._order = itertools.count()
        # Several control threads schedule (OSC, the model loop, the player);
        # whoever holds this lock moves events into the single-producer ring
        # (the pump, or a scheduling thread delivering within the horizon).
        self._schedule_lock = threading.Lock()
        # Live, the event pump sleeps on this until the schedule's head nears
        # (see wait_for_due); an event scheduled ahead of what it waits for
        # wakes it. No 100 Hz GIL taker beside the OSC receive threads.
        self._pump_wake = threading.Condition(self._schedule_lock)
        self._pump_waits_for = NO_EVENT  # frame of the head the pump sleeps for
        self._deliver_frames = 0  # see deliver_ahead
        # Called with (slot, program) after a slot's arrays change, before the
        # switch is published: the live callback's pointer table listens here.
        self.on_slot_change: Callable[[int, Program], None] | None = None

    # Programs -----------------------------------------------------------------

    def compile(self, graph: Graph) -> Program:
        """Compile a graph for this engine (rate, block size, seed) without
        loading it: to adjust it first, or to load it later."""
        return compile_graph(
            graph,
            sample_rate=self.sample_rate,
            max_block_size=self.max_block_size,
            seed=self.seed,
        )

    @property
    def frame(self) -> int:
        """Frames rendered so far (the engine's sample clock)."""
        return int(self.ctl[C_FRAME])

    @property
    def latency_frames(self) -> int:
        """Frames between the graph writing a sample and the engine's output:
        the master limiter's look-ahead (85 at 48 kHz). Add the device's own
        output latency for the time to the speaker."""
        return limiter_latency_frames(self.sample_rate)

    @property
    def switching(self) -> bool:
        """True while a published program has not finished fading in."""
        return bool(self.ctl[C_FADING]) or self.ctl[C_REQUEST] != self.ctl[C_ACCEPTED]

    def load(
        self,
        graph: Graph | Program,
        fade_s: float | None = None,
        wait_s: float = 2.0,
    ) -> Program:
        """Crossfade to a new graph over ``fade_s`` seconds (equal power).

        The first load fades in from silence. If a previous switch is still
        fading, this waits for it up to ``wait_s`` (live), then raises.
        """
        program = graph if isinstance(graph, Program) else self.compile(graph)
        if program.sample_rate != self.sample_rate:
            raise EngineError(
                f"program is for {program.sample_rate} Hz, engine runs "
                f"{self.sample_rate} Hz"
            )
        if program.max_block_size < self.max_block_size:
            raise EngineError("program max_block_size is below the engine's")
        deadline = time.monotonic() + wait_s
        while self.switching:
            if time.monotonic() > deadline:
                raise EngineError("previous scene switch is still fading")
            time.sleep(0.005)
        if fade_s is None:
            fade_s = FIRST_FADE_S if self.loads == 0 else DEFAULT_FADE_S
        idle = 1 - int(self.ctl[1])  # C_ACTIVE
        with self._schedule_lock:  # the pump thread frees retired programs
            self._retired.append((self.frame, self.slots[idle]))
        self.slots[idle] = program
        if self.on_slot_change is not None:
            self.on_slot_change(idle, program)
        self.ctl[C_FADE_FRAMES] = max(1, round(fade_s * self.sample_rate))
        # Publish last: the audio thread starts the fade when it sees this move.
        self.ctl[C_REQUEST] += 1
        self.current = program
        self.loads += 1
        self._free_retired()
        with self._pump_wake:
            # A sleeping live pump frees the replaced program once the audio
            # thread can no longer be reading it.
            self._pump_wake.notify()
        return program

    def _free_retired(self) -> None:
        # A replaced program may still be read by a callback that started before
        # the swap; keep it until two blocks' worth of frames have passed.
        horizon = self.frame - 2 * self.max_block_size
        # Under the lock: a program retired by a load on another thread
        # meanwhile must not be dropped with the list (the callback may
        # still read it).
        with self._schedule_lock:
            self._retired = [(f, p) for f, p in self._retired if f > horizon]

    @property
    def retiring(self) -> bool:
        """True while a replaced program waits to be freed (by the pump)."""
        return bool(self._retired)

    @property
    def fades_done(self) -> int:
        return int(self.ctl[C_DONE])

    # Parameters and events -----------------------------------------------------

    def _target(self, node: str, param: str) -> tuple[Program, int, int]:
        program = self.current
        if program is None:
            raise EngineError("no program loaded")
        if node.startswith("master."):
            program = self.master
            node = node.removeprefix("master.")
        ref = program.param(node, param)
        return program, ref.column, ref.voices

    def set(self, node: str, param: str, value: float | str) -> None:
        """Set a parameter target now; it glides per its smoothing. Nodes of the
        master bus are named ``master.volume``, ``master.limiter``."""
        program, _, _ = self._target(node, param)
        program.set_target(node.removeprefix("master."), param, value)

    def schedule(
        self,
        frame: int | None,
        node: str,
        param: str,
        value: float = 0.0,
        kind: int = EV_SET,
        voice: int | None = None,
        tag: str | None = None,
    ) -> None:
        """Apply an event at an exact engine frame (kinds: EV_SET, EV_SET_NOW,
        EV_TRIGGER, EV_RAMP), or at the start of the next block when ``frame``
        is None; to every voice of the parameter, or to one. A ``tag`` lets
        :meth:`cancel` withdraw the event while it is still waiting. Events
        reach the audio thread through :meth:`pump`."""
        if kind not in (EV_SET, EV_SET_NOW, EV_TRIGGER, EV_RAMP):
            raise EngineError(f"unknown event kind {kind}")
        program, column, voices = self._target(node, param)
        value = float(value)
        if not math.isfinite(value):
            raise EngineError(f"{node}.{param}: {value!r} is not finite")
        if voice is not None and not 0 <= voice < voices:
            raise EngineError(f"{node}.{param}: no voice {voice} (has {voices})")
        when = ASAP if frame is None else int(frame)
        chosen = range(voices) if voice is None else (voice,)
        with self._schedule_lock:
            key = None
            if tag is not None:
                key = (tag, self._tag_epochs.get(tag, 0))
                self._tag_waiting[key] = self._tag_waiting.get(key, 0) + len(chosen)
            for v in chosen:
                heapq.heappush(
                    self._scheduled,
                    _Scheduled(
                        when,
                        next(self._order),
                        kind,
                        program.generation,
                        column + v,
                        value,
                        key,
                    ),
                )
            if self._deliver_frames:
                limit = self.frame + self._deliver_frames
                if when < limit:
                    self._pump_locked(limit)
            if self._scheduled and self._scheduled[0].frame < self._pump_waits_for:
                self._pump_wake.notify()

    def deliver_ahead(self, horizon_frames: int) -> None:
        """Live playback: hand each event due within ``horizon_frames`` to the
        audio thread's ring as it is scheduled, on the scheduling thread, so
        that the event pump (:meth:`wait_for_due`) only wakes when a waiting
        event comes within the horizon. 0 (offline, the default): events wait
        for :meth:`pump`."""
        with self._schedule_lock:
            self._deliver_frames = max(0, int(horizon_frames))
            if self._deliver_frames:
                self._pump_locked(self.frame + self._deliver_frames)

    def wait_for_due(self, horizon_frames: int, max_wait_s: float | None) -> None:
        """Block the event pump until :meth:`pump` with ``horizon_frames`` has
        something to move (the schedule's head comes within the horizon, by
        the audio clock), an earlier event is scheduled, :meth:`wake_pump`
        is called or ``max_wait_s`` passes (None: no limit). Returns at once
        if something is due already.

        The wait is worked out from the frame clock at ``sample_rate``; one
        longer than a second waits 0.9 of it and plans again, so a device
        clock a little off the wall clock never makes an event late.
        """
        with self._pump_wake:
            wait_s = max_wait_s
            if self._scheduled:
                head = self._scheduled[0].frame
                if self.ring.pending >= self.ring.capacity:
                    # The audio thread has not taken the ring yet: a block.
                    lead_s = self.max_block_size / self.sample_rate
                else:
                    lead_frames = head - horizon_frames - self.frame
                    if lead_frames < 0:
                        return
                    # Just after the head enters the horizon, not just before
                    # (that would wake to find nothing to move).
                    lead_s = (lead_frames + 1) / self.sample_rate
                    if lead_s > 1.0:
                        lead_s *= 0.9
                wait_s = lead_s if wait_s is None else min(wait_s, lead_s)
                self._pump_waits_for = head
            try:
                self._pump_wake.wait(wait_s)
            finally:
                self._pump_waits_for = NO_EVENT

    def wake_pump(self) -> None:
        """End a :meth:`wait_for_due` now (to stop the pump)."""
        with self._pump_wake:
            self._pump_wake.notify_all()

    def cancel(self, tag: str) -> int:
        """Withdraw scheduled events with ``tag`` that have not reached the
        audio thread yet; returns how many."""
        with self._schedule_lock:
            epoch = self._tag_epochs.get(tag, 0)
            self._tag_epochs[tag] = epoch + 1
            withdrawn = self._tag_waiting.pop((tag, epoch), 0)
            self._stale += withdrawn
            # Stale events due hours ahead (a sleep timer) would pile up:
            # sweep them out once they are half the heap (amortised O(1)).
            if self._stale > max(1024, len(self._scheduled) // 2):
                epochs = self._tag_epochs
                self._scheduled = [
                    e
                    for e in self._scheduled
                    if e.tag is None or e.tag[1] == epochs.get(e.tag[0], 0)
                ]
                heapq.heapify(self._scheduled)
                self._stale = 0
            return withdrawn

    def _is_stale(self, event: _Scheduled) -> bool:
        return event.tag is not None and event.tag[1] != self._tag_epochs.get(
            event.tag[0], 0
        )

    def ramp(
        self,
        node: str,
        param: str,
        value: float,
        seconds: float,
        frame: int | None = None,
        tag: str | None = None,
    ) -> None:
        """Glide a parameter in a straight line to ``value`` over ``seconds``,
        starting at ``frame`` (None: the next block). 0 seconds jumps.

        >>> engine.ramp("master.volume", "gain_db", -12.0, 2.0)  # doctest: +SKIP
        """
        seconds = float(seconds)
        if not 0.0 <= seconds < math.inf:
            raise EngineError(f"{node}.{param}: ramp time {seconds!r} must be >= 0 s")
        n_frames = round(seconds * self.sample_rate)
        if n_frames < 1:
            self.schedule(frame, node, param, value, EV_SET_NOW, tag=tag)
            return
        # The ramp reads the target the set wrote: same frame, set first (the
        # heap keeps insertion order within a frame).
        self.schedule(frame, node, param, value, EV_SET, tag=tag)
        self.schedule(frame, node, param, float(n_frames), EV_RAMP, tag=tag)

    def pump(self, horizon_frames: int) -> int:
        """Move scheduled events due before ``frame + horizon_frames`` into the
        ring, in time order. Returns how many moved."""
        with self._schedule_lock:
            return self._pump_locked(self.frame + horizon_frames)

    def _pump_locked(self, limit: int) -> int:
        # Called with the schedule lock held: one producer at a time.
        moved = 0
        while self._scheduled and self._scheduled[0].frame < limit:
            if self.ring.pending >= self.ring.capacity:
                break
            event = heapq.heappop(self._scheduled)
            if event.tag is not None:
                if self._is_stale(event):
                    self._stale -= 1
                    continue  # cancelled
                left = self._tag_waiting[event.tag] - 1
                if left:
                    self._tag_waiting[event.tag] = left
                else:
                    del self._tag_waiting[event.tag]
            self.ring.push(
                event.frame,
                event.kind,
                event.generation,
                event.index,
                event.value,
            )
            moved += 1
        return moved

    # Offline -------------------------------------------------------------------

    def render_into(self, out: np.ndarray, n_frames: int) -> None:
        """Render one block into a float32 interleaved array (any thread that is
        not already rendering; the live callback calls ``render_block`` itself)."""
        render_block(
            out,
            n_frames,
            self.channels,
            self.ctl,
            self.ring.records,
            self.ring.positions,
            self.slots[0].arrays,
            self.slots[1].arrays,
            self.master.arrays,
            float(self.sample_rate),
            self.ctl[C_REQUEST],
        )

    def render(
        self,
        n_frames: int,
        block_size: int = 128,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Render ``n_frames`` offline; returns float32 ``[n_frames, channels]``."""
        check_audio_settings(self.sample_rate, block_size)
        if block_size > self.max_block_size:
            raise EngineError("block_size exceeds the engine's max_block_size")
        out = np.zeros(n_frames * self.channels, dtype=np.float32)
        block = np.zeros(block_size * self.channels, dtype=np.float32)
        pos = 0
        while pos < n_frames:
            n = min(block_size, n_frames - pos)
            self.pump(n)
            self.render_into(block, n)
            out[pos * self.channels : (pos + n) * self.channels] = block[
                : n * self.channels
            ]
            pos += n
            if progress is not None:
                progress(pos)
        return out.reshape(n_frames, self.channels)
