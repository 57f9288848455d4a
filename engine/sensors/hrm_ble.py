"""Bluetooth LE heart-rate straps: the Heart Rate Measurement characteristic.

The parser follows the GATT specification of characteristic 0x2A37 (Heart
Rate service 0x180D)::

    byte 0      flags
                  bit 0    heart rate is uint16 (else uint8)
                  bits 1-2 sensor contact: 0 or 1 not supported,
                           2 supported but not detected, 3 detected
                  bit 3    energy expended present (uint16, kJ)
                  bit 4    RR intervals present (uint16 each, 1/1024 s)
                  bits 5-7 reserved (ignored, as the specification asks)
    byte 1..    heart rate (1 or 2 bytes), then energy expended (2 bytes),
                then RR intervals to the end of the packet; little-endian

    >>> m = parse_heart_rate_measurement(bytes([0x16, 72, 0x00, 0x04]))
    >>> m.bpm, m.contact.value, m.rr_s
    (72, 'detected', (1.0,))

A packet that is truncated or disagrees with its flags raises ``ValueError``
naming the byte offset and the flag.

The live client (``stream_heart_rate``) needs the optional ``bleak`` package
(``pip install 'soundscape-engine[ble]'``), imported only when it is used: it
scans for devices offering the Heart Rate service, connects by address or
name, subscribes to 0x2A37 and reconnects when the link is lost.

Threads: the parser may be called from any thread. The live client is an
asyncio coroutine for a control thread's event loop (``BleHeartRateThread``
runs one in its own thread); it never touches the audio thread.
"""

from __future__ import annotations

import asyncio
import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from engine.sensors.samples import HeartSample

HEART_RATE_SERVICE_UUID = "0000180d-0000-1000-8000-00805f9b34fb"
HEART_RATE_MEASUREMENT_UUID = "00002a37-0000-1000-8000-00805f9b34fb"

FLAG_HR_UINT16 = 0x01
FLAG_CONTACT_DETECTED = 0x02
FLAG_CONTACT_SUPPORTED = 0x04
FLAG_ENERGY_EXPENDED = 0x08
FLAG_RR_INTERVALS = 0x10
RR_UNITS_PER_S = 1024.0

_CHARACTERISTIC = "heart rate measurement (0x2A37)"


class SensorContact(enum.Enum):
    """The sensor-contact bits of the flags."""

    NOT_SUPPORTED = "not supported"
    NOT_DETECTED = "not detected"
    DETECTED = "detected"


@dataclass(frozen=True)
class HeartRateMeasurement:
    """One decoded 0x2A37 notification.

    ``energy_kj`` is None when the flags leave it out; ``rr_s`` holds the RR
    intervals in seconds, oldest first (empty when the flags leave them out).
    """

    flags: int
    bpm: int
    contact: SensorContact
    energy_kj: int | None
    rr_s: tuple[float, ...]

    def to_sample(self, time_s: float) -> HeartSample:
        """The measurement as a ``HeartSample`` received at ``time_s``.

        A strap that reports lost skin contact is not connected (its heart
        rate is then a guess or 0); a zero heart rate carries no reading.
        """
        connected = self.contact is not SensorContact.NOT_DETECTED
        return HeartSample(
            time_s=time_s,
            bpm=float(self.bpm) if self.bpm > 0 and connected else None,
            rr_s=self.rr_s if connected else (),
            connected=connected,
        )


def _need(data: bytes, offset: int, n_bytes: int, flags: int, why: str) -> None:
    if len(data) < offset + n_bytes:
        raise ValueError(
            f"{_CHARACTERISTIC}: byte {offset}: flags 0x{flags:02x} ({why}) need "
            f"bytes {offset}..{offset + n_bytes - 1}, but the packet has "
            f"{len(data)} bytes"
        )


def parse_heart_rate_measurement(data: bytes | bytearray) -> HeartRateMeasurement:
    """Decode one Heart Rate Measurement value (see the module docstring).

    Raises ``ValueError`` naming the byte offset and the flag when the packet
    is truncated or disagrees with its flags.
    """
    data = bytes(data)
    if not data:
        raise ValueError(f"{_CHARACTERISTIC}: byte 0: empty packet, expected flags")
    flags = data[0]
    offset = 1
    if flags & FLAG_HR_UINT16:
        _need(data, offset, 2, flags, "bit 0: 16-bit heart rate")
        bpm = int.from_bytes(data[offset : offset + 2], "little")
        offset += 2
    else:
        _need(data, offset, 1, flags, "bit 0 clear: 8-bit heart rate")
        bpm = data[offset]
        offset += 1
    if not flags & FLAG_CONTACT_SUPPORTED:
        contact = SensorContact.NOT_SUPPORTED
    elif flags & FLAG_CONTACT_DETECTED:
        contact = SensorContact.DETECTED
    else:
        contact = SensorContact.NOT_DETECTED
    energy_kj = None
    if flags & FLAG_ENERGY_EXPENDED:
        _need(data, offset, 2, flags, "bit 3: energy expended")
        energy_kj = int.from_bytes(data[offset : offset + 2], "little")
        offset += 2
    rest = len(data) - offset
    rr_s: tuple[float, ...] = ()
    if flags & FLAG_RR_INTERVALS:
        if rest == 0:
            raise ValueError(
                f"{_CHARACTERISTIC}: byte {offset}: flags 0x{flags:02x} (bit 4: RR "
                "intervals) promise at least one RR interval, but the packet ends"
            )
        if rest % 2:
            raise ValueError(
                f"{_CHARACTERISTIC}: byte {len(data) - 1}: flags 0x{flags:02x} "
                f"(bit 4: RR intervals): {rest} bytes of RR intervals from byte "
                f"{offset} are not whole 16-bit values"
            )
        rr_s = tuple(
            int.from_bytes(data[i : i + 2], "little") / RR_UNITS_PER_S
            for i in range(offset, len(data), 2)
        )
    elif rest:
        raise ValueError(
            f"{_CHARACTERISTIC}: byte {offset}: {rest} bytes after the last field, "
            f"but flags 0x{flags:02x} (bit 4 clear) say no RR intervals follow"
        )
    return HeartRateMeasurement(flags, bpm, contact, energy_kj, rr_s)


# ---------------------------------------------------------------------------
# Live client (optional: needs bleak)


class BleUnavailableError(RuntimeError):
    """The optional ``bleak`` package is not installed."""


def require_bleak() -> ModuleType:
    """The ``bleak`` module, or ``BleUnavailableError`` saying how to get it."""
    try:
        import bleak
    except ImportError as exc:
        raise BleUnavailableError(
            "Bluetooth LE heart-rate straps need the optional 'bleak' package: "
            "pip install 'soundscape-engine[ble]' (or pip install bleak)"
        ) from exc
    return bleak


@dataclass(frozen=True)
class BleDevice:
    """A device that advertises the Heart Rate service."""

    address: str
    name: str


async def scan_heart_rate_devices(
    timeout_s: float = 5.0, backend: ModuleType | None = None
) -> list[BleDevice]:
    """Devices advertising the Heart Rate service 0x180D, found in ``timeout_s``."""
    bleak = backend or require_bleak()
    found = await bleak.BleakScanner.discover(
        timeout=timeout_s, service_uuids=[HEART_RATE_SERVICE_UUID]
    )
    return [BleDevice(d.address, d.name or "") for d in found]


async def _find_device(bleak: ModuleType, target: str, timeout_s: float) -> Any:
    """The first device whose address or advertised name is ``target``."""
    wanted = target.casefold()

    def matches(device: Any, _advertisement: Any) -> bool:
        # An explicit address or name is enough: some straps leave the service
        # out of their advertisement and only show it once connected.
        return wanted in {
            (device.address or "").casefold(),
            (device.name or "").casefold(),
        }

    return await bleak.BleakScanner.find_device_by_filter(matches, timeout=timeout_s)


async def stream_heart_rate(
    target: str,
    on_sample: Callable[[HeartSample], None],
    stop: asyncio.Event,
    *,
    clock: Callable[[], float] = time.monotonic,
    on_status: Callable[[str], None] = lambda message: None,
    scan_timeout_s: float = 10.0,
    reconnect_delay_s: float = 1.0,
    max_reconnect_delay_s: float = 30.0,
    backend: ModuleType | None = None,
) -> None:
    """Stream a strap's measurements as samples until ``stop`` is set.

    ``target`` is the device's address or advertised name. Each notification
    becomes ``on_sample(measurement.to_sample(clock()))``; losing the link
    sends a ``connected=False`` sample, then the client scans and connects
    again, waiting ``reconnect_delay_s`` doubled after each failure up to
    ``max_reconnect_delay_s``. A malformed packet is reported through
    ``on_status`` once per distinct error and skipped.
    """
    bleak = backend or require_bleak()
    errors_seen: set[str] = set()

    def handle(_characteristic: Any, data: bytearray) -> None:
        try:
            measurement = parse_heart_rate_measurement(data)
        except ValueError as error:
            if str(error) not in errors_seen:
                errors_seen.add(str(error))
                on_status(f"{target}: skipped a packet: {error}")
            return
        on_sample(measurement.to_sample(clock()))

    delay_s = reconnect_delay_s
    while not stop.is_set():
        device = None
        try:
            device = await _find_device(bleak, target, scan_timeout_s)
            if device is None:
                on_status(f"{target}: no device found in {scan_timeout_s:g} s")
        except (bleak.exc.BleakError, OSError, asyncio.TimeoutError) as error:
            # No adapter or no BlueZ yet: it may come back (USB dongle, resume).
            on_status(f"{target}: cannot scan: {error!r}")
        if device is not None:
            lost = asyncio.Event()
            try:
                async with bleak.BleakClient(
                    device, disconnected_callback=lambda _client, lost=lost: lost.set()
                ) as client:
                    await client.start_notify(HEART_RATE_MEASUREMENT_UUID, handle)
                    on_status(f"{target}: connected")
                    on_sample(HeartSample(clock(), connected=True))
                    delay_s = reconnect_delay_s
                    waiters = [
                        asyncio.ensure_future(lost.wait()),
                        asyncio.ensure_future(stop.wait()),
                    ]
                    _done, pending = await asyncio.wait(
                        waiters, return_when=asyncio.FIRST_COMPLETED
                    )
                    for waiter in pending:
                        waiter.cancel()
            except (bleak.exc.BleakError, OSError, asyncio.TimeoutError) as error:
                on_status(f"{target}: connection failed: {error}")
            on_sample(HeartSample(clock(), connected=False))
            if not stop.is_set():
                on_status(f"{target}: link lost, reconnecting")
        if stop.is_set():
            break
        try:
            await asyncio.wait_for(stop.wait(), timeout=delay_s)
        except asyncio.TimeoutError:
            pass
        delay_s = min(delay_s * 2.0, max_reconnect_delay_s)


class BleHeartRateThread:
    """``stream_heart_rate`` in its own thread and event loop.

        source = BleHeartRateThread("Polar H10 1234ABCD", tracker_queue.put)
        source.start()
        ...
        source.stop()

    ``on_sample`` is called on this thread: hand samples to the consumer
    through a queue or a lock.
    """

    def __init__(
        self,
        target: str,
        on_sample: Callable[[HeartSample], None],
        on_status: Callable[[str], None] = print,
        **options: Any,
    ) -> None:
        require_bleak()
        self.target = target
        self._on_sample = on_sample
        self._on_status = on_status
        self._options = options
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"ble-hr {target}", daemon=True
        )

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._ready.set()
            await stream_heart_rate(
                self.target,
                self._on_sample,
                self._stop,
                on_status=self._on_status,
                **self._options,
            )

        asyncio.run(main())

    def start(self) -> None:
        """Start scanning and streaming in the background."""
        self._thread.start()
        self._ready.wait()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Disconnect and end the thread."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout_s)
