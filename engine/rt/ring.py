"""Single-producer, single-consumer ring of timed events in shared arrays.

The control thread pushes fixed-size float64 records ``[time, kind, generation,
index, value]``; the audio thread drains those due in the current block and applies
each at its exact frame. Two int64 counters publish progress: the writer fills a
record and then advances ``write``; the reader advances ``read`` after applying.
Neither side ever waits for the other.

Events must be pushed in time order (the scheduler upstream sorts them): the audio
thread stops at the first record that is not yet due.

Audio thread: ``ring_peek_time``/``ring_pop`` yes; :class:`EventRing` methods no.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.dsp.jit import JIT

EV_TIME = 0  # engine frame at which the event applies
EV_KIND = 1
EV_GENERATION = 2  # the program the event is for (Program.generation)
EV_INDEX = 3  # parameter column in that program
EV_VALUE = 4
EV_WIDTH = 5

# Event kinds.
EV_SET = 1  # set a parameter target; the value glides per its smoothing
EV_SET_NOW = 2  # set a parameter and jump to it at this frame
EV_TRIGGER = 3  # add 1 to a counter parameter (fires ar envelopes, triggers)
# Glide from where the parameter is to its target in ``value`` frames, in a
# straight line (push it right after the EV_SET that names the target).
EV_RAMP = 4

# An event stamped with this frame applies at the start of the next block and
# is not counted as late: what "now" means for a message without a timetag.
ASAP = -1

RING_WRITE = 0
RING_READ = 1

NO_EVENT = np.iinfo(np.int64).max


@njit(**JIT)
def ring_peek_time(ring, ring_pos):
    """Frame of the oldest unread event, or ``NO_EVENT``."""
    read = ring_pos[RING_READ]
    if read >= ring_pos[RING_WRITE]:
        return NO_EVENT
    return np.int64(ring[read & (ring.shape[0] - 1), EV_TIME])


@njit(**JIT)
def ring_pop(ring, ring_pos):
    """Index of the oldest unread record; call ``ring_release`` after using it."""
    return ring_pos[RING_READ] & (ring.shape[0] - 1)


@njit(**JIT)
def ring_release(ring_pos):
    ring_pos[RING_READ] += 1


class RingFull(RuntimeError):
    """The audio thread has not caught up; the event was not queued."""


class EventRing:
    """The control side of the event ring: owns the arrays, pushes records.

    >>> ring = EventRing(capacity=8)
    >>> ring.push(480, EV_SET, generation=1, index=0, value=0.5)
    >>> ring.pending
    1
    """

    def __init__(self, capacity: int = 4096) -> None:
        if capacity < 2 or capacity & (capacity - 1):
            raise ValueError(f"ring capacity must be a power of two, not {capacity}")
        self.records = np.zeros((capacity, EV_WIDTH), dtype=np.float64)
        self.positions = np.zeros(2, dtype=np.int64)
        self.overflows = 0

    @property
    def capacity(self) -> int:
        return self.records.shape[0]

    @property
    def pending(self) -> int:
        return int(self.positions[RING_WRITE] - self.positions[RING_READ])

    def push(
        self, time: int, kind: int, generation: int, index: int, value: float
    ) -> None:
        """Queue one event (control thread only). Raises :class:`RingFull`."""
        write = int(self.positions[RING_WRITE])
        if write - int(self.positions[RING_READ]) >= self.capacity:
            self.overflows += 1
            raise RingFull(f"event ring full ({self.capacity} events pending)")
        self.records[write & (self.capacity - 1)] = (
            time,
            kind,
            generation,
            index,
            value,
        )
        # Publish after the record is complete: the reader trusts ``write``.
        self.positions[RING_WRITE] = write + 1
