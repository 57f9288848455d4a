"""The event ring's waiting table against a plain model: whatever order records
arrive in, those due come out by frame, and in the order pushed within a frame
(the audio thread's side, driven directly)."""

from __future__ import annotations

import random

import pytest

from engine.rt.ring import (
    ASAP,
    EV_SET,
    EV_TIME,
    EV_VALUE,
    NO_EVENT,
    RING_READ,
    EventRing,
    RingFull,
    ring_head,
    ring_next_due,
    ring_pop_head,
    ring_take,
)


def pop_due(ring: EventRing, now: int) -> list[tuple[int, int]]:
    """What the audio thread applies by frame ``now``: (frame, push number)."""
    out = []
    while True:
        due = ring_next_due(ring.records, ring.positions)
        if due == NO_EVENT or due > now:
            return out
        row = ring_head(ring.records, ring.positions)
        record = ring.records[row]
        out.append((int(record[EV_TIME]), int(record[EV_VALUE])))
        ring_pop_head(ring.positions)


@pytest.mark.parametrize("seed", range(6))
def test_waiting_events_come_out_by_frame_then_in_the_order_pushed(seed: int) -> None:
    rng = random.Random(seed)
    ring = EventRing(capacity=64)
    log: list[tuple[int, int]] = []  # every record pushed: (frame, push number)
    model: list[tuple[int, int]] = []  # the waiting ones, stable-sorted by frame
    now = 0
    for _ in range(500):
        for _ in range(rng.randint(0, 8)):
            # Immediate events, late ones, ties, near and far ahead.
            when = rng.choice(
                [ASAP, now - 3, now, now + 1, now + rng.randint(0, 40), now + 400]
            )
            try:
                ring.push(when, EV_SET, 1, 0, float(len(log)))
            except RingFull:
                break
            log.append((when, len(log)))
        taken_before = int(ring.positions[RING_READ])
        ring_take(ring.records, ring.positions)
        taken = log[taken_before : int(ring.positions[RING_READ])]
        model = sorted(model + taken, key=lambda event: event[0])
        assert pop_due(ring, now) == [e for e in model if e[0] <= now]
        model = [e for e in model if e[0] > now]
        assert ring.waiting == len(model)
        now += rng.randint(1, 12)
    assert len(log) > 1000
    assert ring.pending + ring.waiting < 2 * ring.capacity


def test_a_full_waiting_table_leaves_new_records_in_the_ring() -> None:
    ring = EventRing(capacity=4)
    for k in range(4):
        ring.push(100 + k, EV_SET, 1, 0, float(k))
    ring_take(ring.records, ring.positions)
    ring.push(ASAP, EV_SET, 1, 0, 4.0)
    ring_take(ring.records, ring.positions)
    assert (ring.waiting, ring.pending) == (4, 1)  # no room: it waits its turn
    assert pop_due(ring, 100) == [(100, 0)]
    ring_take(ring.records, ring.positions)
    assert pop_due(ring, 100) == [(ASAP, 4)]
    assert pop_due(ring, 1000) == [(101, 1), (102, 2), (103, 3)]
