"""The output supervisor's live players seen as one, for status and timetags.

The supervisor opens a new :class:`~engine.rt.live.LivePlayer` (with its own
statistics array) every time the output comes back, while the OSC surface is
built once. :class:`SupervisedOutput` stands in for "the live player" where
``engine.control.status.StatusReport`` and the OSC timetag clock expect one:

- :meth:`SupervisedOutput.snapshot` adds up the statistics of every player so
  far (callbacks, underflows, callback time), so counts never go backwards
  when a player is replaced;
- :meth:`SupervisedOutput.frame_clock` maps timetags to engine frames through
  whichever player plays now (through ``engine.frame`` while none does).

    view = SupervisedOutput(supervisor)
    OscSurface(player, settings, live=view, clock=view.frame_clock(engine))

Any control thread (the OSC receive threads, the subscription sender, the
daemon's main loop); a small lock guards the running totals.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from engine.control.frame_clock import DEFAULT_LATENCY_S, FrameClock
from engine.rt.stats import (
    STATS_CALLBACKS,
    STATS_LAST_CALLBACK_START_NS,
    STATS_SIZE,
    StatsSnapshot,
)

__all__ = ["SupervisedOutput", "add_snapshots"]

ZERO = StatsSnapshot.from_array(np.zeros(STATS_SIZE, dtype=np.int64))


def add_snapshots(done: StatsSnapshot, current: StatsSnapshot) -> StatsSnapshot:
    """Totals of a finished player's statistics (``done``) and the running
    one's (``current``): counts and times add up, the longest callback is the
    longer of the two, and the ``last`` fields are the running player's.

    >>> from dataclasses import replace
    >>> one = replace(ZERO, callbacks=10, cpu_over_budget=1)
    >>> total = add_snapshots(one, one)
    >>> total.callbacks, total.cpu_over_budget
    (20, 2)
    """
    latest = current if current.callbacks else done
    return StatsSnapshot(
        callbacks=done.callbacks + current.callbacks,
        frames=done.frames + current.frames,
        output_underflows=done.output_underflows + current.output_underflows,
        output_overflows=done.output_overflows + current.output_overflows,
        priming_callbacks=done.priming_callbacks + current.priming_callbacks,
        status_flags=latest.status_flags,
        frames_mismatches=done.frames_mismatches + current.frames_mismatches,
        callback_ns_last=latest.callback_ns_last,
        callback_ns_max=max(done.callback_ns_max, current.callback_ns_max),
        callback_ns_total=done.callback_ns_total + current.callback_ns_total,
        last_callback_start_ns=latest.last_callback_start_ns,
        callback_cpu_ns_last=latest.callback_cpu_ns_last,
        callback_cpu_ns_max=max(done.callback_cpu_ns_max, current.callback_cpu_ns_max),
        callback_cpu_ns_total=done.callback_cpu_ns_total
        + current.callback_cpu_ns_total,
        cpu_over_budget=done.cpu_over_budget + current.cpu_over_budget,
        wall_over_budget=done.wall_over_budget + current.wall_over_budget,
    )


class SupervisedOutput:
    """What ``StatusReport`` reads from a live player, over all the players an
    :class:`~engine.daemon.output_supervisor.OutputSupervisor` opens."""

    def __init__(self, supervisor: Any) -> None:
        self.supervisor = supervisor
        self.block_size = int(supervisor.block_size)
        self._lock = threading.Lock()
        self._player: Any = None
        self._done = ZERO

    def snapshot(self) -> StatsSnapshot:
        """Statistics of every player so far, added up."""
        with self._lock:
            player = self.supervisor.player
            if player is not self._player:
                if self._player is not None:
                    self._done = add_snapshots(self._done, self._player.snapshot())
                self._player = player
            current = player.snapshot() if player is not None else ZERO
            return add_snapshots(self._done, current)

    def frame_clock(
        self, engine: Any, latency_s: float = DEFAULT_LATENCY_S
    ) -> FrameClock:
        """A timetag clock anchored to the callbacks of whichever player plays
        (as ``FrameClock.for_live`` does for one player)."""
        block_size = self.block_size

        def observe() -> tuple[int, float]:
            unix_now = time.time()
            mono_now_ns = time.monotonic_ns()
            player = self.supervisor.player
            if player is None:
                return engine.frame, unix_now
            stats = player.stats.array
            if stats[STATS_CALLBACKS] == 0:
                return engine.frame, unix_now
            started_ns = int(stats[STATS_LAST_CALLBACK_START_NS])
            # The callback moves the engine's frame when it ends: read while
            # one runs, this is a block early (within the clock's tolerance).
            return engine.frame - block_size, unix_now - (
                mono_now_ns - started_ns
            ) / 1e9

        return FrameClock(engine.sample_rate, observe, latency_s=latency_s)
