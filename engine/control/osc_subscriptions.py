"""Periodic status for OSC subscribers: each gets a packet at its own rate.

    subscriptions = Subscriptions(send=server.send_packet, build=make_status)
    subscriptions.start()
    subscriptions.subscribe(("127.0.0.1", 9001), rate_hz=10.0)   # 10 a second
    subscriptions.unsubscribe(("127.0.0.1", 9001))

One small sender thread sleeps until the next subscriber is due, builds the
packet once for all who are due together, and sends it (``send`` must not block:
``OscServer.send_packet`` uses non-blocking sockets). The number of subscribers
is bounded: when it is full, the one subscribed longest ago gives way (a game
that restarts gets a new ephemeral port each time, and its old subscriptions
would otherwise fill the table for good); that is counted in ``evicted``. A
destination whose sends keep failing (a TCP peer gone) is dropped.

Threads: ``subscribe``/``unsubscribe``/``counters`` from any control thread
(the OSC receive threads); ``build`` and ``send`` run on the sender thread.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

__all__ = [
    "DEFAULT_MAX_SUBSCRIBERS",
    "MAX_RATE_HZ",
    "MIN_RATE_HZ",
    "Subscriptions",
]

DEFAULT_MAX_SUBSCRIBERS = 8
MIN_RATE_HZ = 0.1
# A meter at 60 Hz follows the eye; more only loads the receive side.
MAX_RATE_HZ = 60.0
_MAX_FAILURES = 10  # sends in a row that failed before a subscriber is dropped


@dataclass
class _Subscriber:
    destination: Hashable
    period_s: float
    due_s: float
    failures: int = 0


class Subscriptions:
    """Subscribers and the thread that feeds them.

    Args:
        send: ``send(destination, packet) -> bool`` (False: it did not go).
        build: returns the packet to send (called once per round).
        max_subscribers: the bound on the table.
        clock: monotonic seconds.
    """

    def __init__(
        self,
        send: Callable[[Hashable, bytes], bool],
        build: Callable[[], bytes],
        *,
        max_subscribers: int = DEFAULT_MAX_SUBSCRIBERS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_subscribers < 1:
            raise ValueError(f"max_subscribers must be >= 1, not {max_subscribers}")
        self.send = send
        self.build = build
        self.max_subscribers = max_subscribers
        self.clock = clock
        self._subscribers: OrderedDict[Hashable, _Subscriber] = OrderedDict()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.counts = {"sent": 0, "failed": 0, "evicted": 0, "dropped": 0}

    @staticmethod
    def clamp_rate(rate_hz: float) -> float:
        """``rate_hz`` within MIN_RATE_HZ..MAX_RATE_HZ (NaN: ValueError)."""
        if math.isnan(rate_hz):
            raise ValueError("rate is not a number")
        return min(max(rate_hz, MIN_RATE_HZ), MAX_RATE_HZ)

    def subscribe(self, destination: Hashable, rate_hz: float) -> float:
        """Send to ``destination`` ``rate_hz`` times a second (clamped; a
        second call changes the rate). Returns the rate used; the first
        packet goes at once."""
        rate_hz = self.clamp_rate(rate_hz)
        with self._lock:
            self._subscribers.pop(destination, None)
            while len(self._subscribers) >= self.max_subscribers:
                self._subscribers.popitem(last=False)
                self.counts["evicted"] += 1
            self._subscribers[destination] = _Subscriber(
                destination, 1.0 / rate_hz, self.clock()
            )
        self._wake.set()
        return rate_hz

    def unsubscribe(self, destination: Hashable) -> bool:
        """Stop sending to ``destination``; False if it was not subscribed."""
        with self._lock:
            return self._subscribers.pop(destination, None) is not None

    def destinations(self) -> list[Hashable]:
        with self._lock:
            return list(self._subscribers)

    def start(self) -> Subscriptions:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name="soundscape-osc-subscriptions", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            now_s = self.clock()
            with self._lock:
                due = [s for s in self._subscribers.values() if s.due_s <= now_s]
                upcoming = [s.due_s for s in self._subscribers.values()]
            if due:
                try:
                    packet = self.build()
                except Exception:  # noqa: BLE001 - the sender must live
                    packet = None
                    self.counts["failed"] += len(due)
                for subscriber in due:
                    # Keep the schedule (no drift), but never queue up a backlog.
                    subscriber.due_s = max(
                        subscriber.due_s + subscriber.period_s, now_s
                    )
                    if packet is None:
                        continue
                    self._deliver(subscriber, packet)
                continue
            wait_s = min(upcoming) - now_s if upcoming else None
            self._wake.wait(wait_s)
            self._wake.clear()

    def _deliver(self, subscriber: _Subscriber, packet: bytes) -> None:
        try:
            sent = self.send(subscriber.destination, packet)
        except Exception:  # noqa: BLE001 - one bad destination must not stop others
            sent = False
        if sent:
            subscriber.failures = 0
            self.counts["sent"] += 1
            return
        self.counts["failed"] += 1
        subscriber.failures += 1
        if subscriber.failures >= _MAX_FAILURES:
            with self._lock:
                if self._subscribers.get(subscriber.destination) is subscriber:
                    del self._subscribers[subscriber.destination]
                    self.counts["dropped"] += 1
