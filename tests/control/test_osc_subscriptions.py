"""Subscriptions: packets at each subscriber's rate, a bounded table whose
oldest entry gives way, and destinations that keep failing dropped."""

from __future__ import annotations

import threading
import time

import pytest

from engine.control.osc_subscriptions import MAX_RATE_HZ, MIN_RATE_HZ, Subscriptions


class Outbox:
    """A send function that keeps what went where (and can refuse)."""

    def __init__(self, refuse: set | None = None) -> None:
        self.sent: list[tuple] = []
        self.refuse = refuse or set()
        self._lock = threading.Lock()

    def __call__(self, destination, packet: bytes) -> bool:
        if destination in self.refuse:
            return False
        with self._lock:
            self.sent.append((destination, packet))
        return True

    def count(self, destination) -> int:
        with self._lock:
            return sum(1 for d, _ in self.sent if d == destination)


def test_each_subscriber_gets_packets_at_its_rate():
    outbox = Outbox()
    built = []
    subs = Subscriptions(outbox, lambda: built.append(1) or b"status").start()
    try:
        subs.subscribe("fast", 50.0)
        subs.subscribe("slow", 5.0)
        time.sleep(1.0)
        fast, slow = outbox.count("fast"), outbox.count("slow")
    finally:
        subs.stop()
    # About 50 and 5 (the first goes at once); loose bounds for a busy machine.
    assert 20 <= fast <= 52
    assert 2 <= slow <= 7
    assert len(built) <= fast + slow  # one build serves all who are due


def test_rates_are_clamped_and_nan_refused():
    assert Subscriptions.clamp_rate(1000.0) == MAX_RATE_HZ
    assert Subscriptions.clamp_rate(0.0) == MIN_RATE_HZ
    with pytest.raises(ValueError):
        Subscriptions.clamp_rate(float("nan"))


def test_a_full_table_evicts_the_oldest_and_unsubscribe_stops_sending():
    outbox = Outbox()
    subs = Subscriptions(outbox, lambda: b"s", max_subscribers=3)
    for name in "abcd":
        subs.subscribe(name, 1.0)
    assert subs.destinations() == ["b", "c", "d"]
    assert subs.counts["evicted"] == 1
    subs.subscribe("b", 2.0)  # renewing moves it to the back
    subs.subscribe("e", 1.0)
    assert subs.destinations() == ["d", "b", "e"]
    assert subs.unsubscribe("d") and not subs.unsubscribe("d")


def test_a_destination_that_keeps_failing_is_dropped():
    outbox = Outbox(refuse={"gone"})
    subs = Subscriptions(outbox, lambda: b"s").start()
    try:
        subs.subscribe("gone", 60.0)
        subs.subscribe("here", 60.0)
        deadline_s = time.monotonic() + 5.0
        while "gone" in subs.destinations() and time.monotonic() < deadline_s:
            time.sleep(0.01)
        assert subs.destinations() == ["here"]
        assert subs.counts["dropped"] == 1 and subs.counts["failed"] >= 10
    finally:
        subs.stop()
