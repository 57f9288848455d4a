"""Single-producer, single-consumer ring of timed events in shared arrays.

The control thread pushes fixed-size float64 records ``[time, kind, generation,
index, value]``; the audio thread applies each at its exact frame. Two int64
counters publish progress: the writer fills a record and then advances
``write``; the reader advances ``read`` once it has taken the record. Neither
side ever waits for the other.

Records need not arrive in time order. Each block the audio thread takes every
new record out of the ring at once into its *waiting table* (the second half
of ``records``, which only it touches), kept sorted by frame, and applies the
table's head whenever it is due. So an immediate message pushed behind an
event timed 150 ms ahead lands in the next block instead of waiting behind
it, and ring slots are free again at once. A record arriving in time order
(the usual case: the pump sends them sorted) goes to the table's tail in one
step, one due before everything waiting (an immediate event) to its head in
one step; one that must go between others shifts the later ones, a row each. Records due at
the same frame apply in the order they were pushed (a ramp follows the set
that names its target). With the table full (``capacity`` events waiting), new
records stay in the ring until a slot frees.

Layout: ``records[:capacity]`` the ring, ``records[capacity:]`` the waiting
table (circular); ``positions`` ``[write, read, head, count]``, the last two
the table's (audio thread).

Audio thread: ``ring_take``/``ring_next_due``/``ring_head``/``ring_pop_head``
yes; :class:`EventRing` methods no.
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
RING_WAIT_HEAD = 2  # audio thread: the waiting table's first row (a counter)
RING_WAIT_COUNT = 3  # audio thread: rows waiting
RING_POS_WIDTH = 4

NO_EVENT = np.iinfo(np.int64).max


@njit(**JIT)
def ring_take(ring, ring_pos):
    """Move every new record from the ring into the waiting table, in frame
    order (stable), and free their ring slots."""
    capacity = ring.shape[0] >> 1  # a shift: no division check compiled in
    mask = capacity - 1
    read = ring_pos[RING_READ]
    write = ring_pos[RING_WRITE]
    head = ring_pos[RING_WAIT_HEAD]
    count = ring_pos[RING_WAIT_COUNT]
    while read < write and count < capacity:
        source = read & mask
        due = ring[source, EV_TIME]
        # j: how many waiting records go before it (those due at or before
        # it: the same frame keeps the order pushed). Found from the nearer
        # end, and the rows on that side move a row to make room.
        j = count
        if count > 0:
            first = ring[capacity + (head & mask), EV_TIME]
            last = ring[capacity + ((head + count - 1) & mask), EV_TIME]
            if due < first:  # before everything: an immediate event
                head -= 1
                j = 0
            elif due < last and due - first < last - due:
                j = 0
                while ring[capacity + ((head + j) & mask), EV_TIME] <= due:
                    j += 1
                for i in range(j):  # the front moves back a row
                    to_row = capacity + ((head + i - 1) & mask)
                    from_row = capacity + ((head + i) & mask)
                    for field in range(EV_WIDTH):
                        ring[to_row, field] = ring[from_row, field]
                head -= 1
            elif due < last:  # the tail moves up a row
                while j > 0:
                    before = capacity + ((head + j - 1) & mask)
                    if ring[before, EV_TIME] <= due:
                        break
                    after = capacity + ((head + j) & mask)
                    for field in range(EV_WIDTH):
                        ring[after, field] = ring[before, field]
                    j -= 1
        row = capacity + ((head + j) & mask)
        for field in range(EV_WIDTH):
            ring[row, field] = ring[source, field]
        count += 1
        read += 1
    ring_pos[RING_WAIT_HEAD] = head
    ring_pos[RING_WAIT_COUNT] = count
    ring_pos[RING_READ] = read


@njit(**JIT)
def ring_next_due(ring, ring_pos):
    """Frame of the earliest waiting event, or ``NO_EVENT``."""
    if ring_pos[RING_WAIT_COUNT] == 0:
        return NO_EVENT
    return np.int64(ring[ring_head(ring, ring_pos), EV_TIME])


@njit(**JIT)
def ring_head(ring, ring_pos):
    """Row of the earliest waiting event (there must be one)."""
    capacity = ring.shape[0] >> 1  # a shift: no division check compiled in
    return capacity + (ring_pos[RING_WAIT_HEAD] & (capacity - 1))


@njit(**JIT)
def ring_pop_head(ring_pos):
    """Forget the earliest waiting event (after applying it)."""
    ring_pos[RING_WAIT_HEAD] += 1
    ring_pos[RING_WAIT_COUNT] -= 1


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
        # The ring, then the audio thread's waiting table: one array, so the
        # callback's pointer table and render_block's arguments stay as they are.
        self.records = np.zeros((2 * capacity, EV_WIDTH), dtype=np.float64)
        self.positions = np.zeros(RING_POS_WIDTH, dtype=np.int64)
        self.overflows = 0

    @property
    def capacity(self) -> int:
        return self.records.shape[0] // 2

    @property
    def pending(self) -> int:
        """Records pushed that the audio thread has not taken yet."""
        return int(self.positions[RING_WRITE] - self.positions[RING_READ])

    @property
    def waiting(self) -> int:
        """Events the audio thread holds for a later frame (a snapshot)."""
        return int(self.positions[RING_WAIT_COUNT])

    def push(
        self, time: int, kind: int, generation: int, index: int, value: float
    ) -> None:
        """Queue one event (control thread only). Raises :class:`RingFull`."""
        write = int(self.positions[RING_WRITE])
        capacity = self.capacity
        if write - int(self.positions[RING_READ]) >= capacity:
            self.overflows += 1
            raise RingFull(f"event ring full ({capacity} events pending)")
        self.records[write & (capacity - 1)] = (
            time,
            kind,
            generation,
            index,
            value,
        )
        # Publish after the record is complete: the reader trusts ``write``.
        self.positions[RING_WRITE] = write + 1
