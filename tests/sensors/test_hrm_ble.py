"""Heart Rate Measurement (0x2A37) parsing from byte vectors laid out as the GATT
specification describes them, every flag combination; and the live client's
reconnect loop against an in-process stand-in for bleak (no BLE hardware here)."""

from __future__ import annotations

import asyncio
import itertools
import struct
import sys
import types
from typing import Any

import pytest

from engine.sensors.hrm_ble import (
    HEART_RATE_MEASUREMENT_UUID,
    BleUnavailableError,
    SensorContact,
    parse_heart_rate_measurement,
    require_bleak,
    stream_heart_rate,
)
from engine.sensors.samples import HeartSample

CONTACT_BITS = {
    0b00: SensorContact.NOT_SUPPORTED,
    0b01: SensorContact.NOT_SUPPORTED,
    0b10: SensorContact.NOT_DETECTED,
    0b11: SensorContact.DETECTED,
}
RR_UNITS = [1024, 820, 1, 65535]  # 1 s, 0.80 s, the smallest and largest


def packet(wide: bool, contact: int, energy: bool, rr: bool, bpm: int) -> bytes:
    """A 0x2A37 value laid out by hand from the specification's field table."""
    flags = int(wide) | contact << 1 | int(energy) << 3 | int(rr) << 4
    out = struct.pack("<B", flags)
    out += struct.pack("<H", bpm) if wide else struct.pack("<B", bpm)
    if energy:
        out += struct.pack("<H", 4321)
    if rr:
        out += struct.pack(f"<{len(RR_UNITS)}H", *RR_UNITS)
    return out


@pytest.mark.parametrize(
    ("wide", "contact", "energy", "rr"),
    list(itertools.product([False, True], [0, 1, 2, 3], [False, True], [False, True])),
)
def test_every_flag_combination(wide: bool, contact: int, energy: bool, rr: bool):
    bpm = 300 if wide else 187  # 300 does not fit in 8 bits
    m = parse_heart_rate_measurement(packet(wide, contact, energy, rr, bpm))
    assert m.bpm == bpm
    assert m.contact is CONTACT_BITS[contact]
    assert m.energy_kj == (4321 if energy else None)
    expected_rr = (1.0, 0.80078125, 1 / 1024, 65535 / 1024) if rr else ()
    assert m.rr_s == pytest.approx(expected_rr, abs=1e-12)


def test_literal_vectors():
    # uint8 bpm 60, contact detected, one RR of 0x032d = 813/1024 s.
    m = parse_heart_rate_measurement(bytes.fromhex("163c2d03"))
    assert (m.bpm, m.contact, m.energy_kj) == (60, SensorContact.DETECTED, None)
    assert m.rr_s == (813 / 1024,)
    # uint16 bpm 0x0102 = 258, energy 0xffff (saturated), two RRs.
    m = parse_heart_rate_measurement(bytes.fromhex("19 0201 ffff 0004 0002"))
    assert (m.bpm, m.energy_kj, m.rr_s) == (258, 65535, (1.0, 0.5))
    assert m.contact is SensorContact.NOT_SUPPORTED
    # bytearray (what bleak hands to callbacks) works the same.
    assert parse_heart_rate_measurement(bytearray(b"\x00\x48")).bpm == 72


def test_reserved_bits_are_ignored():
    m = parse_heart_rate_measurement(bytes([0xE0 | 0x06, 80]))
    assert (m.bpm, m.contact, m.rr_s) == (80, SensorContact.DETECTED, ())


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", ["byte 0", "empty"]),
        (b"\x00", ["byte 1", "0x00", "8-bit heart rate"]),
        (b"\x01\x48", ["byte 1", "0x01", "bit 0: 16-bit heart rate", "2 bytes"]),
        (b"\x08\x48\x10", ["byte 2", "0x08", "bit 3: energy expended"]),
        (b"\x09\x48\x00\x10", ["byte 3", "0x09", "bit 3: energy expended"]),
        (b"\x10\x48", ["byte 2", "0x10", "bit 4: RR intervals", "at least one"]),
        (b"\x10\x48\x00\x04\x01", ["byte 4", "0x10", "bit 4", "3 bytes", "byte 2"]),
        (b"\x18\x48\x01\x00\x00", ["byte 4", "0x18", "not whole 16-bit"]),
        (b"\x06\x48\x00\x04", ["byte 2", "2 bytes after", "0x06", "bit 4 clear"]),
    ],
)
def test_truncated_or_inconsistent_packets_name_offset_and_flag(
    data: bytes, words: list[str]
):
    with pytest.raises(ValueError) as info:
        parse_heart_rate_measurement(data)
    message = str(info.value)
    assert "0x2A37" in message
    for word in words:
        assert word in message


def test_measurement_to_sample():
    ok = parse_heart_rate_measurement(bytes.fromhex("16482d03"))
    assert ok.to_sample(3.5) == HeartSample(3.5, 72.0, (813 / 1024,), True)
    # Lost skin contact: the strap still notifies, but its numbers are void.
    off = parse_heart_rate_measurement(bytes.fromhex("14482d03"))
    assert off.to_sample(4.0) == HeartSample(4.0, None, (), False)
    # Contact not supported: connected as long as notifications arrive.
    plain = parse_heart_rate_measurement(bytes([0x00, 0]))
    assert plain.to_sample(5.0) == HeartSample(5.0, None, (), True)


def test_missing_bleak_says_how_to_install(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "bleak", None)  # import bleak now fails
    with pytest.raises(BleUnavailableError, match=r"soundscape-engine\[ble\]"):
        require_bleak()


# ---------------------------------------------------------------------------
# The reconnect loop, against a stand-in with bleak's surface: a scanner that
# finds the strap by name, and a client that sends notifications, then drops
# the link on the first connection.


class _BleakError(Exception):
    pass


def fake_bleak(
    script: list[list[bytes]], scan_failures: int = 0
) -> types.SimpleNamespace:
    """Connection i sends the packets of script[i]; all but the last then drop.
    The first ``scan_failures`` scans fail as they do with no adapter."""
    device = types.SimpleNamespace(address="AA:BB:CC:DD:EE:FF", name="Strap 1")
    connections: list[int] = []
    failures = [scan_failures]

    class Scanner:
        @staticmethod
        async def find_device_by_filter(match: Any, timeout: float) -> Any:
            if failures[0]:
                failures[0] -= 1
                raise FileNotFoundError(2, "No such file or directory")
            return device if match(device, types.SimpleNamespace()) else None

    class Client:
        def __init__(self, dev: Any, disconnected_callback: Any) -> None:
            assert dev is device
            self.drop = disconnected_callback

        async def __aenter__(self) -> Any:
            connections.append(1)
            return self

        async def __aexit__(self, *exc: object) -> None:
            return None

        async def start_notify(self, uuid: str, callback: Any) -> None:
            assert uuid == HEART_RATE_MEASUREMENT_UUID
            index = len(connections) - 1
            packets = script[index]

            async def send() -> None:
                for data in packets:
                    await asyncio.sleep(0)
                    callback(None, bytearray(data))
                if index < len(script) - 1:
                    self.drop(self)

            asyncio.get_running_loop().create_task(send())

    return types.SimpleNamespace(
        BleakScanner=Scanner,
        BleakClient=Client,
        exc=types.SimpleNamespace(BleakError=_BleakError),
        connections=connections,
    )


def test_stream_reconnects_after_a_lost_link():
    backend = fake_bleak(
        [
            [bytes([0x16, 60, 0x00, 0x04]), b"\x01", b"\x01"],  # one bad, twice
            [bytes([0x06, 61]), bytes([0x06, 62])],
        ]
    )
    samples: list[HeartSample] = []
    status: list[str] = []
    ticks = itertools.count()

    async def main() -> None:
        stop = asyncio.Event()

        def on_sample(sample: HeartSample) -> None:
            samples.append(sample)
            if sample.bpm == 62:
                stop.set()

        await asyncio.wait_for(
            stream_heart_rate(
                "strap 1",  # names match without regard to case
                on_sample,
                stop,
                clock=lambda: float(next(ticks)),
                on_status=status.append,
                reconnect_delay_s=0.001,
                backend=backend,  # type: ignore[arg-type]
            ),
            timeout=10,
        )

    asyncio.run(main())
    assert len(backend.connections) == 2
    seen = [(s.connected, s.bpm, s.rr_s) for s in samples]
    assert seen == [
        (True, None, ()),
        (True, 60.0, (1.0,)),
        (False, None, ()),
        (True, None, ()),
        (True, 61.0, ()),
        (True, 62.0, ()),
        (False, None, ()),
    ]
    assert [s.time_s for s in samples] == sorted(s.time_s for s in samples)
    skipped = [m for m in status if "skipped a packet" in m]
    assert len(skipped) == 1 and "byte 1" in skipped[0]
    assert any("reconnecting" in m for m in status)


def test_stream_survives_scans_that_fail():
    backend = fake_bleak([[bytes([0x06, 70])]], scan_failures=2)
    samples: list[HeartSample] = []
    status: list[str] = []

    async def main() -> None:
        stop = asyncio.Event()

        def on_sample(sample: HeartSample) -> None:
            samples.append(sample)
            if sample.bpm == 70:
                stop.set()

        await asyncio.wait_for(
            stream_heart_rate(
                "AA:BB:CC:DD:EE:FF",
                on_sample,
                stop,
                on_status=status.append,
                reconnect_delay_s=0.001,
                backend=backend,  # type: ignore[arg-type]
            ),
            timeout=10,
        )

    asyncio.run(main())
    assert sum("cannot scan" in m for m in status) == 2
    assert [s.bpm for s in samples if s.bpm] == [70.0]
