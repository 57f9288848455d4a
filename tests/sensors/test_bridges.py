"""Bridge tables, both directions: what the encoder puts on the wire (as bytes,
parsed back by python-osc) decodes to the same heart rate, RR, connected flag
and exactly one beat per beat; the addresses, types and scalings are the
bridges' own; bad arguments are refused naming the address."""

from __future__ import annotations

import math
from typing import Any

import pytest
from pythonosc.osc_packet import OscPacket as WirePacket

from engine.sensors.bridges import BRIDGES, OscPacket, check_prefix, get_bridge
from engine.sensors.samples import HeartSample


def wire(packet: OscPacket) -> list[tuple[str, list[Any], str]]:
    """(address, args, type tags) of a packet after a trip through its bytes."""
    parsed = WirePacket(packet.build().dgram)
    return [
        (m.message.address, list(m.message.params), _tags(m.message.dgram))
        for m in parsed.messages
    ]


def _tags(dgram: bytes) -> str:
    start = dgram.index(b",")
    return dgram[start + 1 : dgram.index(b"\0", start)].decode()


def run_beats(
    bridge: str, beats: list[tuple[float, float]], prefix: str | None = None
) -> list[HeartSample]:
    """Encode beats (bpm, rr_s) one second apart, decode every message."""
    encoder = get_bridge(bridge).encoder(prefix)
    decoder = get_bridge(bridge).decoder(prefix)
    timeline = []
    for i, (bpm, rr) in enumerate(beats):
        for delay_s, packet in encoder.beat(bpm, rr):
            timeline.append((float(i) + delay_s, packet))
    samples = []
    for when, packet in sorted(timeline, key=lambda item: item[0]):
        for address, args, _tags in wire(packet):
            sample = decoder.decode(address, args, when)
            assert sample is not None, address
            samples.append(sample)
    return samples


BEATS = [(71.6, 0.838), (64.2, 0.9346), (120.0, 0.5), (58.9, 1.0187)]


@pytest.mark.parametrize("bridge", list(BRIDGES))
def test_encode_then_decode_gives_back_the_beats(bridge: str):
    samples = run_beats(bridge, BEATS)
    bpms = [s.bpm for s in samples if s.bpm is not None]
    exact = bridge == "generic"
    expected = [b for b, _rr in BEATS] if exact else [round(b) for b, _rr in BEATS]
    assert bpms == pytest.approx(expected, abs=1e-4)
    rrs = [s.rr_s[0] for s in samples if s.rr_s]
    if bridge == "generic":
        assert rrs == pytest.approx([rr for _b, rr in BEATS], abs=1e-6)
    elif bridge == "iron-heart":
        assert rrs == [round(1000 * rr) / 1000 for _b, rr in BEATS]
    else:
        assert rrs == []  # these bridges send no RR
    assert {s.connected for s in samples} == {None, True}
    beats = [s.time_s for s in samples if s.beat]
    # The first toggle value only says where the toggle starts.
    first = 1 if bridge in ("iron-heart", "vrcosc") else 0
    assert beats == [float(i) for i in range(first, len(BEATS))]


@pytest.mark.parametrize("bridge", list(BRIDGES))
def test_disconnected_decodes_to_no_reading(bridge: str):
    encoder = get_bridge(bridge).encoder()
    decoder = get_bridge(bridge).decoder()
    samples = [
        decoder.decode(address, args, 1.0)
        for _delay, packet in encoder.disconnected()
        for address, args, _t in wire(packet)
    ]
    assert all(s is not None for s in samples)
    assert {s.connected for s in samples if s} >= {False}
    assert all(s.bpm is None and not s.rr_s and not s.beat for s in samples if s)


def test_addresses_types_and_scalings_are_the_bridges_own():
    def sent(bridge: str, bpm: float, rr: float) -> dict[str, tuple[Any, str]]:
        packets = get_bridge(bridge).encoder().beat(bpm, rr)
        return {a: (args[0] if args else None, t) for a, args, t in wire(packets[0][1])}

    hr2 = sent("hrtovrchat", 123.4, 0.486)
    p = "/avatar/parameters/"
    assert hr2[p + "HR"] == (123, "i")
    assert hr2[p + "HRPercent"][0] == pytest.approx(123 / 150)
    assert hr2[p + "HRPercent"][1] == "f"
    assert (hr2[p + "onesHR"], hr2[p + "tensHR"], hr2[p + "hundredsHR"]) == (
        (3, "i"),
        (2, "i"),
        (1, "i"),
    )
    assert hr2[p + "isHRConnected"] == (True, "T")
    assert hr2[p + "isHRBeat"] == (True, "T")
    assert sent("hrtovrchat", 200.0, 0.3)[p + "HRPercent"][0] == 1.0  # clamped

    iron = sent("iron-heart", 72.0, 0.8337)
    assert iron[p + "HR"] == (72, "i")
    assert iron[p + "floatHR"][0] == pytest.approx(72 / 255 * 2 - 1)
    assert iron[p + "RRInterval"] == (834, "i")
    assert iron[p + "HeartBeatToggle"] == (True, "T")
    assert get_bridge("iron-heart").encoder().beat(72, 0.8)[0][1].bundle

    v = "/avatar/parameters/VRCOSC/Heartrate/"
    vrc = sent("vrcosc", 72.0, 0.8)
    assert vrc[v + "Value"] == (72, "i")
    assert vrc[v + "Normalised"][0] == pytest.approx(72 / 240)
    assert vrc[v + "Connected"] == (True, "T")
    assert vrc[v + "Beat"] == (True, "T")

    gen = sent("generic", 72.5, 0.8276)
    assert gen["/soundscape/hr/bpm"] == (72.5, "f")
    assert gen["/soundscape/hr/rr"][0] == pytest.approx(0.8276)
    assert gen["/soundscape/hr/connected"] == (1, "i")
    assert gen["/soundscape/hr/beat"] == (None, "")


def test_pulse_falls_after_pulse_time():
    timed = get_bridge("hrtovrchat").encoder().beat(70, 0.86)
    assert [delay for delay, _p in timed] == [0.0, 0.1]
    assert wire(timed[1][1]) == [("/avatar/parameters/isHRBeat", [False], "F")]


def test_toggle_and_pulse_beat_rules():
    decoder = get_bridge("vrcosc").decoder()
    beat = "/avatar/parameters/VRCOSC/Heartrate/Beat"
    flags = [True, True, False, False, True]
    seen = [decoder.decode(beat, (f,), float(i)).beat for i, f in enumerate(flags)]
    assert seen == [False, False, True, False, True]  # beats where it changes
    pulse = get_bridge("hrtovrchat").decoder()
    address = "/avatar/parameters/isHRBeat"
    flags = [True, False, False, True, True, 0, 1]  # ints 0/1 work as flags
    seen = [pulse.decode(address, (f,), float(i)).beat for i, f in enumerate(flags)]
    assert seen == [True, False, False, True, False, False, True]


def test_prefix_override_and_unknown_addresses():
    decoder = get_bridge("generic").decoder("/game/player1")
    assert decoder.decode("/game/player1/hr/bpm", (80.0,), 0.0) == HeartSample(
        0.0, bpm=80.0
    )
    assert decoder.decode("/soundscape/hr/bpm", (80.0,), 0.0) is None
    assert (
        get_bridge("hrtovrchat").decoder().decode("/avatar/parameters/X", (1,), 0)
        is None
    )
    for bad in ("soundscape", "/a b", "/a//b", "/a/*"):
        with pytest.raises(ValueError, match="must start with '/'"):
            check_prefix(bad)


@pytest.mark.parametrize(
    ("address", "args", "words"),
    [
        ("/soundscape/hr/bpm", (), "expected 1 argument"),
        ("/soundscape/hr/bpm", (1.0, 2.0), "got 2"),
        ("/soundscape/hr/bpm", ("fast",), "expected a heart rate"),
        ("/soundscape/hr/bpm", (math.nan,), "nan"),
        ("/soundscape/hr/bpm", (-5.0,), ">= 0"),
        ("/soundscape/hr/bpm", (True,), "True"),
        ("/soundscape/hr/rr", (math.inf,), "RR interval in seconds"),
        ("/soundscape/hr/connected", (2,), "expected true/false or 0/1"),
    ],
)
def test_bad_arguments_are_refused_naming_the_address(
    address: str, args: tuple[Any, ...], words: str
):
    with pytest.raises(ValueError, match=words) as info:
        get_bridge("generic").decoder().decode(address, args, 0.0)
    assert str(info.value).startswith(address + ":")


def test_unknown_format_suggests_the_near_miss():
    with pytest.raises(ValueError, match="did you mean 'vrcosc'"):
        get_bridge("vrcosk")


def test_zero_heart_rate_is_no_reading():
    decoder = get_bridge("iron-heart").decoder()
    assert decoder.decode("/avatar/parameters/HR", (0,), 1.0) == HeartSample(1.0)
    sample = decoder.decode("/avatar/parameters/RRInterval", (0,), 1.0)
    assert sample == HeartSample(1.0)
