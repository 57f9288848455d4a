"""The remote side of ``soundscape monitor``: subscribe to a running engine's
status over OSC (UDP, loopback by default) and turn each status bundle back
into the status dict that :mod:`engine.control.monitor_view` draws.

    with StatusSubscriber("127.0.0.1", 9000) as subscriber:
        status = subscriber.next_status(timeout_s=3.0)   # NoAnswer if silent
        ...

It sends ``<prefix>/subscribe f:rate_hz`` from its own socket (the replies come
back to it), subscribes again whenever the status stops for a while (the
engine restarted, or the subscription gave way to newer ones), and sends
``<prefix>/unsubscribe`` when closed. The bundle's layout is in docs/osc.md;
:func:`status_from_messages` is the inverse of ``OscApi.status_packet``.

Threads: one control thread per subscriber.
"""

from __future__ import annotations

import math
import socket
import time
from collections.abc import Iterable
from typing import Any

from engine.control.osc_wire import OscError, OscMessage, encode_message, parse

__all__ = ["NoAnswer", "StatusSubscriber", "status_from_messages"]

DEFAULT_RATE_HZ = 10.0
# Without a status for this long, subscribe again (once per this period).
RESUBSCRIBE_S = 1.0


class NoAnswer(RuntimeError):
    """Nothing answered at the address asked."""


def _value(number: Any) -> float | None:
    number = float(number)
    return number if math.isfinite(number) else None


def status_from_messages(
    messages: Iterable[OscMessage], prefix: str = "/soundscape"
) -> dict[str, Any] | None:
    """The status dict carried by a status bundle's messages, or None if they
    are not a status bundle (no ``<prefix>/status/scene``)."""
    head = f"{prefix}/status/"
    status: dict[str, Any] = {
        "inputs": {},
        "input_ranges": {},
        "params": {},
        "layers": {},
        "layer_meters": {},
    }
    seen_scene = False
    for message in messages:
        if not message.address.startswith(head):
            continue
        kind, _, name = message.address[len(head) :].partition("/")
        args = message.args
        try:
            if kind == "scene":
                status["scene"], status["state"] = str(args[0]), str(args[1])
                seen_scene = True
            elif kind == "input" and name:
                status["inputs"][name] = float(args[0])
            elif kind == "range" and name:
                status["input_ranges"][name] = [float(args[0]), float(args[1])]
            elif kind == "layer" and name:
                status["layers"][name] = float(args[0])
            elif kind == "meter" and name:
                status["layer_meters"][name] = [float(args[0]), float(args[1])]
            elif kind == "param" and name:
                status["params"][name.replace("/", ".")] = {
                    "target": _value(args[0]),
                    "value": _value(args[1]),
                }
            elif kind == "model" and name:
                status.setdefault("model", {})[name] = _value(args[0])
            elif kind == "levels":
                (
                    status["master_peak_dbfs"],
                    status["master_rms_dbfs"],
                    status["volume_db"],
                ) = (float(a) for a in args[:3])
            elif kind == "cpu":
                status["cpu_percent"], status["cpu_max_percent"] = (
                    float(a) for a in args[:2]
                )
            elif kind == "underflows":
                status["underflows"], status["callbacks"] = (int(a) for a in args[:2])
                if len(args) > 2:
                    status["overruns"] = int(args[2])
            elif kind == "uptime":
                status["uptime_s"] = float(args[0])
            elif kind == "device":
                status["device"] = str(args[0])
            elif kind == "output":
                status["output"] = {
                    "state": str(args[0]),
                    "device": str(args[1]),
                    "outages": int(args[2]),
                    "outage_s": float(args[3]),
                    "last_error": str(args[4]),
                }
            elif kind == "hr":
                status["heart"] = {
                    "bpm": float(args[0]),
                    "rmssd_ms": float(args[1]),
                    "connected": bool(args[2]),
                    "quality": float(args[3]),
                }
            elif kind == "osc":
                status["osc"] = {
                    "applied": int(args[0]),
                    "rejected": int(args[1]),
                    "late": int(args[2]),
                }
        except (IndexError, TypeError, ValueError):
            continue  # a newer engine's message we do not read the same way
    return status if seen_scene else None


class StatusSubscriber:
    """A UDP socket subscribed to an engine's status.

    Args:
        host: the engine's OSC host (an IP address or ``localhost``).
        port: its OSC port.
        prefix: its address prefix.
        rate_hz: status bundles per second to ask for.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 9000,
        *,
        prefix: str = "/soundscape",
        rate_hz: float = DEFAULT_RATE_HZ,
    ) -> None:
        if not 0 < port < 65536:
            raise ValueError(f"port must be 1..65535, not {port}")
        if not prefix.startswith("/") or prefix.endswith("/"):
            raise ValueError(f"prefix {prefix!r} must start and not end with '/'")
        try:
            address = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_DGRAM)
        except socket.gaierror as error:
            raise ValueError(f"host {host!r}: {error.strerror}") from None
        self.destination = address[0][4]
        self.prefix = prefix
        self.rate_hz = rate_hz
        self.errors: list[str] = []  # error replies from the engine
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        loopback = str(self.destination[0]).startswith("127.")
        self._socket.bind(("127.0.0.1" if loopback else "", 0))
        self._subscribed_at: float | None = None
        self._last_status_s: float | None = None

    @property
    def where(self) -> str:
        return f"{self.destination[0]}:{self.destination[1]}{self.prefix}"

    def _send(self, address: str, args: list[Any], tags: str) -> None:
        try:
            self._socket.sendto(encode_message(address, args, tags), self.destination)
        except OSError:
            pass  # nobody there yet: the wait for an answer says so
        self._subscribed_at = time.monotonic()

    def subscribe(self) -> None:
        self._send(f"{self.prefix}/subscribe", [float(self.rate_hz)], "f")

    def next_status(self, timeout_s: float) -> dict[str, Any] | None:
        """The next status dict; None if none came within ``timeout_s`` (it
        subscribes again meanwhile). Error replies are kept in ``errors``."""
        deadline_s = time.monotonic() + timeout_s
        while True:
            now_s = time.monotonic()
            if self._subscribed_at is None or (
                now_s - self._subscribed_at >= RESUBSCRIBE_S
                and (
                    self._last_status_s is None
                    or now_s - self._last_status_s >= RESUBSCRIBE_S
                )
            ):
                self.subscribe()
            wait_s = min(deadline_s - now_s, RESUBSCRIBE_S)
            if wait_s <= 0:
                return None
            self._socket.settimeout(wait_s)
            try:
                packet = self._socket.recv(65536)
            except TimeoutError:
                continue
            except ConnectionRefusedError:  # loopback: nothing on that port
                time.sleep(min(0.1, max(deadline_s - time.monotonic(), 0.0)))
                continue
            try:
                messages = parse(packet)
            except OscError:
                continue
            for message in messages:
                if message.address == f"{self.prefix}/error" and message.args:
                    self.errors.append(" ".join(str(a) for a in message.args))
            status = status_from_messages(messages, self.prefix)
            if status is not None:
                self._last_status_s = time.monotonic()
                return status

    def first_status(self, timeout_s: float) -> dict[str, Any]:
        """The first status, or :class:`NoAnswer` saying where nothing answered."""
        status = self.next_status(timeout_s)
        if status is None:
            why = f" (it replied: {self.errors[-1]})" if self.errors else ""
            raise NoAnswer(
                f"nothing answers at {self.where} after {timeout_s:g} s{why}: "
                "is `soundscape play` (or the daemon) running with OSC on that "
                "port? (--port, --prefix)"
            )
        return status

    def close(self) -> None:
        """Unsubscribe and close the socket."""
        if self._last_status_s is not None:
            self._send(f"{self.prefix}/unsubscribe", [], "")
        self._socket.close()

    def __enter__(self) -> StatusSubscriber:  # noqa: PYI034 - Self needs Python 3.11
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
