"""Tell systemd how the daemon is doing: the ``sd_notify`` protocol, in Python.

systemd passes a unix datagram socket in ``$NOTIFY_SOCKET`` (a path, or an
abstract name written with a leading ``@``); each datagram is newline-separated
``KEY=VALUE`` lines. The daemon sends ``READY=1`` once the audio plays (a
``Type=notify`` unit counts as started only then), ``STATUS=...`` for
``systemctl status``, ``WATCHDOG=1`` at least every half watchdog interval,
``RELOADING=1`` with ``MONOTONIC_USEC`` on SIGHUP (then ``READY=1`` again), and
``STOPPING=1`` when it begins to fade out.

    notifier = Notifier.from_environment()      # does nothing outside systemd
    notifier.ready("playing focus")
    interval_s = watchdog_interval_s()          # None when no watchdog is set
    notifier.watchdog()

Without ``$NOTIFY_SOCKET`` every call is a no-op that returns False, so the
daemon calls these unconditionally. Sending never blocks (the socket is
non-blocking: a datagram systemd cannot take now is dropped and reported by
the return value, never waited for).

Any thread may call; one lock serialises the sends.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Mapping

# sd_watchdog_enabled(3): the watchdog is for the pid named in WATCHDOG_PID,
# or for whoever reads it if that is unset.


def watchdog_interval_s(env: Mapping[str, str] | None = None) -> float | None:
    """The watchdog timeout systemd set for this process, in seconds, or None.

    ``None`` when ``$WATCHDOG_USEC`` is unset or invalid, or when
    ``$WATCHDOG_PID`` names another process (a child that inherited the
    environment must not ping for its parent). Ping at least twice per interval.
    """
    env = os.environ if env is None else env
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    pid = env.get("WATCHDOG_PID", "")
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec) / 1e6


def socket_address(notify_socket: str) -> str | bytes:
    """The address to send to: a path, or an abstract name (``@`` → NUL)."""
    if notify_socket.startswith("@"):
        return b"\0" + notify_socket[1:].encode()
    if notify_socket.startswith("/"):
        return notify_socket
    raise ValueError(
        f"NOTIFY_SOCKET={notify_socket!r}: expected an absolute path or "
        "an @abstract name (vsock addresses are not supported)"
    )


class Notifier:
    """Sends ``sd_notify`` messages to one socket (or nowhere)."""

    def __init__(self, notify_socket: str | None) -> None:
        self.address = socket_address(notify_socket) if notify_socket else None
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        if self.address is not None:
            self._socket = socket.socket(
                socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
            )
            self._socket.setblocking(False)

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> Notifier:
        """A notifier for ``$NOTIFY_SOCKET``, or a silent one without it."""
        env = os.environ if env is None else env
        return cls(env.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        """True when there is a socket to tell."""
        return self._socket is not None

    def send(self, **fields: str | int) -> bool:
        """Send ``KEY=VALUE`` lines in one datagram; True if it was sent.

        >>> Notifier(None).send(READY=1)
        False
        """
        if self._socket is None or self.address is None:
            return False
        lines = []
        for key, value in fields.items():
            text = str(value)
            if "\n" in text:
                raise ValueError(f"sd_notify {key}: a value is one line, got {text!r}")
            lines.append(f"{key}={text}")
        data = ("\n".join(lines) + "\n").encode()
        with self._lock:
            try:
                self._socket.sendto(data, self.address)
            except OSError:
                # systemd gone, queue full or socket removed: the daemon plays on.
                return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Started (or reloaded): ``READY=1`` and an optional status line."""
        if status is None:
            return self.send(READY=1)
        return self.send(READY=1, STATUS=status)

    def status(self, text: str) -> bool:
        """A one-line status for ``systemctl status``."""
        return self.send(STATUS=text)

    def watchdog(self) -> bool:
        """Still alive: ``WATCHDOG=1``."""
        return self.send(WATCHDOG=1)

    def reloading(self) -> bool:
        """Reloading config (SIGHUP): ``RELOADING=1`` with ``MONOTONIC_USEC``,
        the CLOCK_MONOTONIC time systemd needs to order it. Send ``ready()``
        when done."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send(RELOADING=1, MONOTONIC_USEC=usec)

    def stopping(self, status: str | None = None) -> bool:
        """Shutting down: ``STOPPING=1``."""
        if status is None:
            return self.send(STOPPING=1)
        return self.send(STOPPING=1, STATUS=status)

    def close(self) -> None:
        with self._lock:
            sock, self._socket = self._socket, None
        if sock is not None:
            sock.close()
