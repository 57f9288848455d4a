"""Talking to a running daemon over OSC on loopback: ``soundscape status``,
``stop``, ``scene NAME`` and ``volume DB``.

Each command sends plain OSC 1.0 datagrams (the daemon's documented addresses,
``docs/osc.md``) from an ephemeral UDP port and reads the replies that come
back to it. UDP keeps order between one sender and one receive thread, so a
``/status`` sent after a command is answered after the command was handled:
its reply both proves the daemon is there and carries the command's effect.

    client = DaemonClient("127.0.0.1", 9000, "/soundscape")
    client.status()                   # a dict, as StatusReport builds it
    client.volume(-12.0, ramp_s=2.0)  # the volume used (clamped to the cap)
    client.scene("rain", fade_s=5.0)  # once /scene/loaded arrives
    client.stop()                     # the fade length; the daemon exits after

No daemon answering within ``timeout_s`` raises :class:`NoDaemon` with one line
naming the address; a refusal raises :class:`DaemonRefused` with the daemon's
reason.

Control thread only (a CLI process).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from typing import Any

from engine.control.monitor_client import status_from_messages
from engine.control.osc_wire import OscError, OscMessage, encode_message, parse

__all__ = ["DaemonClient", "DaemonRefused", "NoDaemon", "format_status"]

DEFAULT_TIMEOUT_S = 2.0
# The first start of a scene measures its loudness (seconds); later, cached.
SCENE_TIMEOUT_S = 60.0


class NoDaemon(ConnectionError):
    """No daemon answered."""


class DaemonRefused(ValueError):
    """The daemon answered ``/error``: the text is its reason."""


class DaemonClient:
    """OSC requests to the daemon at ``host:port`` under ``prefix``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 9000,
        prefix: str = "/soundscape",
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.host = host
        self.port = int(port)
        self.prefix = prefix
        self.timeout_s = float(timeout_s)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        self._sock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> DaemonClient:  # noqa: PYI034 - Self needs 3.11
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Wire -------------------------------------------------------------------------

    def send(self, address: str, args: Sequence[Any] = (), typetags: str = "") -> None:
        """Send ``prefix + address`` with ``args``."""
        packet = encode_message(self.prefix + address, list(args), typetags or None)
        self._sock.sendto(packet, (self.host, self.port))

    def _receive(self, deadline: float) -> list[OscMessage] | None:
        """The messages of the next datagram, or None at the deadline."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._sock.settimeout(left)
            try:
                data, _ = self._sock.recvfrom(65536)
            except TimeoutError:
                return None
            except ConnectionRefusedError:
                # Linux reports an earlier datagram's ICMP "port unreachable"
                # here: nobody listens; keep waiting out the timeout quietly.
                time.sleep(min(0.05, max(left, 0.0)))
                continue
            try:
                return parse(data)
            except OscError:
                continue  # not for us

    def _no_daemon(self, timeout_s: float) -> NoDaemon:
        return NoDaemon(
            f"no soundscape daemon answered on {self.host}:{self.port} "
            f"(prefix {self.prefix}) within {timeout_s:g} s; start one with "
            "`soundscape daemon` (or `systemctl --user start soundscape`)"
        )

    def _wait_for(
        self, wanted: str, timeout_s: float
    ) -> tuple[list[OscMessage], list[OscMessage]]:
        """Read replies until one datagram holds ``prefix + wanted``; returns
        (that datagram's messages, the warnings seen before it). An
        ``/error`` raises :class:`DaemonRefused`."""
        deadline = time.monotonic() + timeout_s
        warnings: list[OscMessage] = []
        while True:
            messages = self._receive(deadline)
            if messages is None:
                raise self._no_daemon(timeout_s)
            for message in messages:
                if message.address == f"{self.prefix}/error":
                    address, reason = (list(message.args) + ["", ""])[:2]
                    raise DaemonRefused(f"{reason} ({address})")
                if message.address == f"{self.prefix}/warning":
                    warnings.append(message)
            if any(m.address.startswith(self.prefix + wanted) for m in messages):
                return messages, warnings

    # Commands ------------------------------------------------------------------

    def status(self, timeout_s: float | None = None) -> dict[str, Any]:
        """The daemon's status bundle as a dict (the status dict, as
        ``engine.control.monitor_client.status_from_messages`` reads it back)."""
        self.send("/status")
        messages, _ = self._wait_for("/status/", timeout_s or self.timeout_s)
        return status_from_messages(messages, self.prefix) or {}

    def volume(self, gain_db: float, ramp_s: float = 0.5) -> tuple[float, list[str]]:
        """Set the master volume; returns (the volume used, warnings)."""
        self.send("/volume", [float(gain_db), float(ramp_s)], "ff")
        self.send("/status")
        _, warnings = self._wait_for("/status/", self.timeout_s)
        notes = [str(w.args[1]) for w in warnings if len(w.args) > 1]
        used = float(gain_db)
        for note in notes:
            # "volume 6 dB clamped to 0 dB (-120..0)"
            if " clamped to " in note:
                used = float(note.split(" clamped to ")[1].split()[0])
        return used, notes

    def scene(self, name: str, fade_s: float | None = None) -> None:
        """Crossfade to scene ``name``; returns once it plays."""
        args: list[Any] = [name]
        tags = "s"
        if fade_s is not None:
            args.append(float(fade_s))
            tags += "f"
        self.send("/scene", args, tags)
        self._wait_for("/scene/loaded", max(self.timeout_s, SCENE_TIMEOUT_S))

    def stop(self) -> float:
        """Ask the daemon to fade out and exit; returns the fade's length."""
        self.send("/stop")
        messages, _ = self._wait_for("/stopping", self.timeout_s)
        stopping = [m for m in messages if m.address == f"{self.prefix}/stopping"]
        return float(stopping[0].args[0]) if stopping and stopping[0].args else 0.0

    def wait_gone(self, timeout_s: float) -> bool:
        """True once the daemon stops answering ``/status`` (it has exited)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                self.status(timeout_s=0.3)
            except NoDaemon:
                return True
            time.sleep(0.1)
        return False


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return (
        f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"
    )


def format_status(status: dict[str, Any]) -> str:
    """The lines ``soundscape status`` prints."""
    lines = [f"scene       {status.get('scene') or '-'}"]
    lines.append(f"state       {status.get('state') or '-'}")
    inputs = status.get("inputs") or {}
    if inputs:
        text = ", ".join(f"{k}={v:.3g}" for k, v in sorted(inputs.items()))
        lines.append(f"inputs      {text}")
    # Each layer: its fade (what the scene asks for) and its meter (what it
    # sounds like), when the engine reports them.
    fades = status.get("layers") or {}
    meters = status.get("layer_meters") or {}
    for name in dict.fromkeys([*fades, *meters]):
        parts = [f"level {fades[name]:.2f}"] if name in fades else []
        if name in meters:
            peak_db, rms_db = meters[name]
            parts.append(f"peak {peak_db:.1f} dBFS, rms {rms_db:.1f} dBFS")
        lines.append(f"layer       {name}: {', '.join(parts)}")
    if "master_peak_dbfs" in status:
        lines.append(
            f"levels      peak {status['master_peak_dbfs']:.1f} dBFS, rms "
            f"{status['master_rms_dbfs']:.1f} dBFS, volume "
            f"{status['volume_db']:.1f} dB"
        )
    output = status.get("output")
    if output:
        text = f"{output['state']} (device {output['device']}, "
        text += f"{output['outages']} outages"
        if output["state"] == "lost":
            text += f"; lost for {output['outage_s']:.1f} s: {output['last_error']}"
        lines.append(f"output      {text})")
    if "underflows" in status:
        lines.append(
            f"underflows  {status['underflows']} in {status['callbacks']} callbacks"
            f" ({status.get('overruns', 0)} the engine's own overruns)"
        )
    if "cpu_percent" in status:
        lines.append(
            f"cpu         {status['cpu_percent']:.1f} % of the block budget "
            f"(max {status['cpu_max_percent']:.0f} %)"
        )
    if "uptime_s" in status:
        lines.append(f"uptime      {_duration(status['uptime_s'])}")
    return "\n".join(lines)
