"""Audio-to-control statistics: one shared int64 array, written by the callback.

The callback owns every field after the stream starts: it only increments,
overwrites or maxes them, so the control plane reads without a lock (aligned
8-byte loads are not torn on x86-64 or AArch64). Fields are named by index:

    stats = Stats()                              # control side, before start
    table[SLOT_STATS] = stats.address            # into the callback's pointer table

    # inside the @cfunc (audio thread):
    s = as_int64_array(table[SLOT_STATS], STATS_SIZE)
    start_ns = rt_stats_begin(s, n_frames, status_flags, block_size)
    ...render...
    rt_stats_end(s, start_ns)

    # control side, any time:
    snap = stats.snapshot()
    snap.callbacks, snap.output_underflows, snap.callback_us_max

Status flags are PortAudio's ``PaStreamCallbackFlags``; the ``PA_*`` constants
below mirror ``portaudio.h``.

Audio thread: ``rt_stats_begin``/``rt_stats_end`` yes (jitted code; no
allocation, no locks, no exceptions). ``Stats``/``StatsSnapshot``: control only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from numba import njit

from engine.rt.clock import rt_now_ns, rt_thread_cpu_ns
from engine.rt.pointers import address_of

__all__ = [
    "PA_INPUT_OVERFLOW",
    "PA_INPUT_UNDERFLOW",
    "PA_OUTPUT_OVERFLOW",
    "PA_OUTPUT_UNDERFLOW",
    "PA_PRIMING_OUTPUT",
    "STATS_CALLBACKS",
    "STATS_CALLBACK_CPU_NS_LAST",
    "STATS_CALLBACK_CPU_NS_MAX",
    "STATS_CALLBACK_CPU_NS_TOTAL",
    "STATS_CALLBACK_NS_LAST",
    "STATS_CALLBACK_NS_MAX",
    "STATS_CALLBACK_NS_TOTAL",
    "STATS_CPU_OVER_BUDGET",
    "STATS_CPU_START_NS",
    "STATS_FRAMES",
    "STATS_FRAMES_MISMATCHES",
    "STATS_LAST_CALLBACK_START_NS",
    "STATS_OUTPUT_OVERFLOWS",
    "STATS_OUTPUT_UNDERFLOWS",
    "STATS_PRIMING_CALLBACKS",
    "STATS_SIZE",
    "STATS_STATUS_FLAGS",
    "STATS_WALL_OVER_BUDGET",
    "Stats",
    "StatsSnapshot",
    "rt_stats_begin",
    "rt_stats_end",
]

# PortAudio PaStreamCallbackFlags (portaudio.h).
PA_INPUT_UNDERFLOW: int = 0x1
PA_INPUT_OVERFLOW: int = 0x2
PA_OUTPUT_UNDERFLOW: int = 0x4
PA_OUTPUT_OVERFLOW: int = 0x8
PA_PRIMING_OUTPUT: int = 0x10

# Field indices in the int64 stats array.
STATS_CALLBACKS: int = 0
"""Callbacks run."""
STATS_FRAMES: int = 1
"""Frames delivered (sum of ``n_frames``)."""
STATS_OUTPUT_UNDERFLOWS: int = 2
"""Callbacks whose status flags had ``paOutputUnderflow`` (a gap was heard)."""
STATS_OUTPUT_OVERFLOWS: int = 3
"""Callbacks whose status flags had ``paOutputOverflow``."""
STATS_PRIMING_CALLBACKS: int = 4
"""Callbacks whose status flags had ``paPrimingOutput``."""
STATS_STATUS_FLAGS: int = 5
"""Bitwise OR of every status flag seen."""
STATS_FRAMES_MISMATCHES: int = 6
"""Callbacks where ``n_frames`` differed from the configured ``block_size``."""
STATS_CALLBACK_NS_LAST: int = 7
"""Duration of the last callback, ns (begin to end, as measured by the callback)."""
STATS_CALLBACK_NS_MAX: int = 8
"""Longest callback so far, ns."""
STATS_CALLBACK_NS_TOTAL: int = 9
"""Sum of callback durations, ns (divide by callbacks for the mean)."""
STATS_LAST_CALLBACK_START_NS: int = 10
"""``rt_now_ns()`` when the last callback began (same clock as time.monotonic_ns)."""
STATS_CPU_START_NS: int = 11
"""``rt_thread_cpu_ns()`` when the current callback began (the callback's own)."""
STATS_CALLBACK_CPU_NS_LAST: int = 12
"""CPU time the last callback's thread ran during it, ns."""
STATS_CALLBACK_CPU_NS_MAX: int = 13
"""Most CPU time one callback has taken so far, ns."""
STATS_CALLBACK_CPU_NS_TOTAL: int = 14
"""Sum of callbacks' CPU times, ns."""
STATS_CPU_OVER_BUDGET: int = 15
"""Callbacks whose own CPU time exceeded the time their frames last: a gap
the engine itself would cause, on any machine."""
STATS_WALL_OVER_BUDGET: int = 16
"""Callbacks that took longer than their frames last by the wall clock (the
engine was slow, or its thread lost the CPU meanwhile)."""
STATS_SIZE: int = 17
"""Length of the stats array."""

_JIT = {"nogil": True, "cache": True}


@njit(**_JIT)
def rt_stats_begin(stats, n_frames, status_flags, block_size):  # type: ignore[no-untyped-def]
    """Count one callback and its status flags; return its start time in ns.

    Call first thing in the callback. ``stats`` is an int64 view of length
    ``STATS_SIZE``; ``block_size`` is the frames per callback the stream was
    opened with.

    Audio thread: yes.
    """
    start_ns = rt_now_ns()
    stats[STATS_LAST_CALLBACK_START_NS] = start_ns
    stats[STATS_CPU_START_NS] = rt_thread_cpu_ns()
    stats[STATS_CALLBACKS] += 1
    stats[STATS_FRAMES] += n_frames
    flags = np.int64(status_flags)
    if flags != 0:
        stats[STATS_STATUS_FLAGS] |= flags
        if flags & PA_OUTPUT_UNDERFLOW:
            stats[STATS_OUTPUT_UNDERFLOWS] += 1
        if flags & PA_OUTPUT_OVERFLOW:
            stats[STATS_OUTPUT_OVERFLOWS] += 1
        if flags & PA_PRIMING_OUTPUT:
            stats[STATS_PRIMING_CALLBACKS] += 1
    if n_frames != block_size:
        stats[STATS_FRAMES_MISMATCHES] += 1
    return start_ns


@njit(**_JIT)
def rt_stats_end(stats, start_ns, budget_ns):  # type: ignore[no-untyped-def]
    """Record the duration of the callback that began at ``start_ns``, by the
    wall clock and by its thread's CPU clock, and whether either exceeded
    ``budget_ns`` (the time the callback's frames last at the stream's rate).

    Call last thing in the callback, after the output is written.

    Audio thread: yes.
    """
    cpu_ns = rt_thread_cpu_ns() - stats[STATS_CPU_START_NS]
    elapsed_ns = rt_now_ns() - start_ns
    stats[STATS_CALLBACK_NS_LAST] = elapsed_ns
    stats[STATS_CALLBACK_NS_TOTAL] += elapsed_ns
    stats[STATS_CALLBACK_NS_MAX] = max(stats[STATS_CALLBACK_NS_MAX], elapsed_ns)
    stats[STATS_CALLBACK_CPU_NS_LAST] = cpu_ns
    stats[STATS_CALLBACK_CPU_NS_TOTAL] += cpu_ns
    stats[STATS_CALLBACK_CPU_NS_MAX] = max(stats[STATS_CALLBACK_CPU_NS_MAX], cpu_ns)
    if cpu_ns > budget_ns:
        stats[STATS_CPU_OVER_BUDGET] += 1
    if elapsed_ns > budget_ns:
        stats[STATS_WALL_OVER_BUDGET] += 1


@dataclass(frozen=True)
class StatsSnapshot:
    """A copy of the stats array at one moment, with named fields.

    Audio thread: no.
    """

    callbacks: int
    frames: int
    output_underflows: int
    output_overflows: int
    priming_callbacks: int
    status_flags: int
    frames_mismatches: int
    callback_ns_last: int
    callback_ns_max: int
    callback_ns_total: int
    last_callback_start_ns: int
    callback_cpu_ns_last: int
    callback_cpu_ns_max: int
    callback_cpu_ns_total: int
    cpu_over_budget: int
    wall_over_budget: int

    @classmethod
    def from_array(cls, values: np.ndarray) -> StatsSnapshot:
        """Build a snapshot from a copy of the stats array."""
        return cls(
            callbacks=int(values[STATS_CALLBACKS]),
            frames=int(values[STATS_FRAMES]),
            output_underflows=int(values[STATS_OUTPUT_UNDERFLOWS]),
            output_overflows=int(values[STATS_OUTPUT_OVERFLOWS]),
            priming_callbacks=int(values[STATS_PRIMING_CALLBACKS]),
            status_flags=int(values[STATS_STATUS_FLAGS]),
            frames_mismatches=int(values[STATS_FRAMES_MISMATCHES]),
            callback_ns_last=int(values[STATS_CALLBACK_NS_LAST]),
            callback_ns_max=int(values[STATS_CALLBACK_NS_MAX]),
            callback_ns_total=int(values[STATS_CALLBACK_NS_TOTAL]),
            last_callback_start_ns=int(values[STATS_LAST_CALLBACK_START_NS]),
            callback_cpu_ns_last=int(values[STATS_CALLBACK_CPU_NS_LAST]),
            callback_cpu_ns_max=int(values[STATS_CALLBACK_CPU_NS_MAX]),
            callback_cpu_ns_total=int(values[STATS_CALLBACK_CPU_NS_TOTAL]),
            cpu_over_budget=int(values[STATS_CPU_OVER_BUDGET]),
            wall_over_budget=int(values[STATS_WALL_OVER_BUDGET]),
        )

    @property
    def callback_us_max(self) -> float:
        """Longest callback so far, microseconds."""
        return self.callback_ns_max / 1000.0

    @property
    def callback_us_mean(self) -> float:
        """Mean callback duration, microseconds (0.0 before the first callback)."""
        if self.callbacks == 0:
            return 0.0
        return self.callback_ns_total / self.callbacks / 1000.0

    @property
    def callback_cpu_us_max(self) -> float:
        """Most CPU time one callback has taken so far, microseconds."""
        return self.callback_cpu_ns_max / 1000.0

    @property
    def callback_cpu_us_mean(self) -> float:
        """Mean CPU time per callback, microseconds (0.0 before the first)."""
        if self.callbacks == 0:
            return 0.0
        return self.callback_cpu_ns_total / self.callbacks / 1000.0

    def since(self, earlier: StatsSnapshot) -> StatsSnapshot:
        """Counters accumulated between ``earlier`` and this snapshot.

        Counts and totals are differenced; ``status_flags``, the maxima and
        the ``last`` fields are this snapshot's own (they cannot be split).
        """
        return StatsSnapshot(
            callbacks=self.callbacks - earlier.callbacks,
            frames=self.frames - earlier.frames,
            output_underflows=self.output_underflows - earlier.output_underflows,
            output_overflows=self.output_overflows - earlier.output_overflows,
            priming_callbacks=self.priming_callbacks - earlier.priming_callbacks,
            status_flags=self.status_flags,
            frames_mismatches=self.frames_mismatches - earlier.frames_mismatches,
            callback_ns_last=self.callback_ns_last,
            callback_ns_max=self.callback_ns_max,
            callback_ns_total=self.callback_ns_total - earlier.callback_ns_total,
            last_callback_start_ns=self.last_callback_start_ns,
            callback_cpu_ns_last=self.callback_cpu_ns_last,
            callback_cpu_ns_max=self.callback_cpu_ns_max,
            callback_cpu_ns_total=self.callback_cpu_ns_total
            - earlier.callback_cpu_ns_total,
            cpu_over_budget=self.cpu_over_budget - earlier.cpu_over_budget,
            wall_over_budget=self.wall_over_budget - earlier.wall_over_budget,
        )


class Stats:
    """Owner of the shared stats array, and its control-side reader.

    Allocate before the stream starts, put :attr:`address` in the callback's
    pointer table, and keep this object alive as long as the stream runs.

    Audio thread: no.
    """

    def __init__(self) -> None:
        self.array: np.ndarray = np.zeros(STATS_SIZE, dtype=np.int64)

    @property
    def address(self) -> int:
        """Data address of the stats array, for the pointer table."""
        return address_of(self.array)

    def snapshot(self) -> StatsSnapshot:
        """Copy the array now and return it with named fields."""
        return StatsSnapshot.from_array(self.array.copy())


def host_steal_ms() -> float:
    """CPU time the hypervisor has taken from this machine since boot, in ms
    (Linux's ``steal`` in ``/proc/stat``; 0 where it is not reported).

    On a virtual machine a host that deschedules the guest makes every audio
    deadline inside it slip, whatever the engine does: the difference over a
    run says whether the machine, not the engine, lost time. Control only.
    """
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
    except OSError:
        return 0.0
    steal_ticks = int(fields[8]) if len(fields) > 8 else 0
    return 1000.0 * steal_ticks / os.sysconf("SC_CLK_TCK")
