"""Wall-clock times (OSC timetags) to engine frames, on the audio clock.

An OSC bundle's timetag is a wall-clock time; the engine schedules on its own
sample clock (``Engine.frame``). :class:`FrameClock` holds one linear map
between the two, ``frame = anchor_frame + (t - anchor_s) * sample_rate``,
plus a fixed scheduling latency, so bundles timed 10 ms apart land exactly
480 frames apart at 48 kHz: the map does not move from one bundle to the next.

    clock = FrameClock.for_live(engine, live_player)    # anchored to callbacks
    frame = clock.frame_at(message.time_s)               # -> engine.schedule(frame)

The anchor comes from the audio callback's own statistics (when the last
callback began, and which frames it rendered), so it follows the sound card,
not the system clock. It moves only when the two clocks disagree by more than
``tolerance_s`` (a sound card drifting a few ppm, a stream that stalled); each
move is counted in :attr:`FrameClock.resyncs`, and only bundles straddling it
lose their exact spacing.

``latency_s`` (default 50 ms) is added to every timetag: a bundle timed ``t``
applies on the frame the engine renders at ``t + latency_s``. It gives the
event pump time to deliver the event before that frame is rendered, as
SuperCollider clients add a latency to their timetags; a bundle that still
arrives after its frame was rendered applies at the next block (the caller
counts it as late).

Threads: any control thread (the OSC receive threads call :meth:`frame_at`;
a re-anchor is one tuple assignment). Never the audio thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["DEFAULT_LATENCY_S", "DEFAULT_TOLERANCE_S", "FrameClock"]

DEFAULT_LATENCY_S = 0.05
# Larger than a block (a reading taken while a callback runs is one block off)
# and far smaller than anything a listener would call late.
DEFAULT_TOLERANCE_S = 0.02

Observation = tuple[int, float]  # (engine frame, Unix seconds it was rendered)


class _Engine(Protocol):
    sample_rate: int

    @property
    def frame(self) -> int: ...


class FrameClock:
    """Maps Unix seconds to engine frames (see the module docstring).

    Args:
        sample_rate: the engine's rate, frames per second.
        observe: returns ``(frame, unix_s)``, a frame and the Unix time the
            engine rendered it; None for a fixed map (offline, tests).
        anchor: the initial ``(frame, unix_s)``; default: ``observe()``.
        latency_s: added to every time before mapping.
        tolerance_s: re-anchor when an observation disagrees by more.

    >>> clock = FrameClock(48000, anchor=(0, 1000.0), latency_s=0.0)
    >>> clock.frame_at(1000.5)
    24000
    """

    def __init__(
        self,
        sample_rate: int,
        observe: Callable[[], Observation] | None = None,
        *,
        anchor: Observation | None = None,
        latency_s: float = DEFAULT_LATENCY_S,
        tolerance_s: float = DEFAULT_TOLERANCE_S,
    ) -> None:
        if observe is None and anchor is None:
            raise ValueError("FrameClock: give observe, anchor or both")
        if not latency_s >= 0 or not tolerance_s > 0:
            raise ValueError(
                f"FrameClock: latency_s must be >= 0 and tolerance_s > 0, got "
                f"{latency_s!r} and {tolerance_s!r}"
            )
        self.sample_rate = int(sample_rate)
        self._observe = observe
        self.latency_frames = round(latency_s * sample_rate)
        self.tolerance_frames = tolerance_s * sample_rate
        frame, unix_s = anchor if anchor is not None else observe()  # type: ignore[misc]
        self._anchor = (int(frame), float(unix_s))
        self.resyncs = 0

    @property
    def anchor(self) -> Observation:
        """The ``(frame, unix_s)`` the map runs through now."""
        return self._anchor

    def frame_at(self, unix_s: float) -> int:
        """The engine frame for a timetag at ``unix_s`` (Unix seconds)."""
        if self._observe is not None:
            self._check_anchor()
        frame0, unix0 = self._anchor
        return frame0 + round((unix_s - unix0) * self.sample_rate) + self.latency_frames

    def _check_anchor(self) -> None:
        frame, unix_s = self._observe()  # type: ignore[misc]
        frame0, unix0 = self._anchor
        predicted = frame0 + (unix_s - unix0) * self.sample_rate
        if abs(frame - predicted) > self.tolerance_frames:
            self._anchor = (int(frame), float(unix_s))
            self.resyncs += 1

    # Observers -------------------------------------------------------------

    @classmethod
    def for_engine(cls, engine: _Engine, **options: Any) -> FrameClock:
        """A clock that reads ``engine.frame`` against the wall clock: for an
        engine rendered by a loop that keeps time (not for offline renders
        faster than real time: give a fixed ``anchor`` there)."""
        return cls(engine.sample_rate, lambda: (engine.frame, time.time()), **options)

    @classmethod
    def for_live(cls, engine: _Engine, live: Any, **options: Any) -> FrameClock:
        """A clock anchored to ``live``'s audio callbacks (a
        :class:`engine.rt.live.LivePlayer`): the frame a callback started
        rendering, at the time it started. Before the first callback it
        follows ``engine.frame``."""
        from engine.rt.stats import STATS_CALLBACKS, STATS_LAST_CALLBACK_START_NS

        stats = live.stats.array
        block_size = int(live.block_size)

        def observe() -> Observation:
            unix_now = time.time()
            mono_now_ns = time.monotonic_ns()
            if stats[STATS_CALLBACKS] == 0:
                return engine.frame, unix_now
            started_ns = int(stats[STATS_LAST_CALLBACK_START_NS])
            # The callback updates the engine frame when it ends: read while it
            # runs, this is one block early (inside the tolerance).
            block_start = engine.frame - block_size
            return block_start, unix_now - (mono_now_ns - started_ns) / 1e9

        return cls(engine.sample_rate, observe, **options)
