"""Single-producer, single-consumer ring of timed events in shared arrays.

The control thread pushes fixed-size float64 records ``[time, kind, generation,
index, value]``; the audio thread applies each at its exact frame. Two int64
counters publish progress: the writer fills a record and then advances ``write``;
the reader advances ``read`` past records it has applied. Neither side ever waits
for the other.

Records need not arrive in time order. Every block the audio thread looks at all
unread records (``engine.rt.core``): it applies those due, marks them ``EV_DONE`` in
place, and finds the next one due, so an immediate message pushed behind an
event timed 150 ms ahead lands in the next block instead of waiting behind it.
Records due at the same frame apply in the order they were pushed (a ramp
follows the set that names its target). ``read`` moves over the applied head
only: a record waiting for its frame holds the slots after it, so the ring must
hold every event within the pump's horizon (4096 records, 200 ms: 20,000
events a second).

Audio thread: ``ring_release_done`` yes; :class:`EventRing`
methods no.
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
EV_DONE = 0  # written by the audio thread over a record it has applied
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
def ring_release_done(ring, ring_pos):
    """Move ``read`` past the applied records at the head, freeing their slots
    for the writer."""
    mask = ring.shape[0] - 1
    read = ring_pos[RING_READ]
    write = ring_pos[RING_WRITE]
    while read < write and ring[read & mask, EV_KIND] == EV_DONE:
        read += 1
    ring_pos[RING_READ] = read


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
