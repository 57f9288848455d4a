"""OSC formats of heart-rate bridges, in both directions.

One table per bridge says, for each address, its OSC type and what it means.
The same table drives the simulator's sender (``encoder``: heart rate in,
OSC packets out) and the engine's receiver (``decoder``: OSC message in,
``HeartSample`` out), so the two cannot drift apart.

Formats, as the bridges' sources and documentation define them:

- ``generic`` (ours; prefix ``/soundscape``): ``/hr/bpm f``, ``/hr/rr f``
  (seconds), ``/hr/connected i`` (0/1), ``/hr/beat`` (no arguments).
- ``hrtovrchat`` (HRtoVRChat_OSC; ``/avatar/parameters``): ``HR`` int
  0-255, ``HRPercent`` float = HR between MinHR 0 and MaxHR 150 (its
  defaults) clamped to 0-1, ``onesHR``/``tensHR``/``hundredsHR`` int digits,
  ``isHRConnected`` and ``isHRActive`` bool, ``isHRBeat`` bool (true at a
  beat, false 100 ms later).
- ``iron-heart`` (nullstalgia's iron-heart; ``/avatar/parameters``), sent as
  bundles: ``HR`` int 0-255, ``floatHR`` float = HR/255 * 2 - 1,
  ``RRInterval`` int milliseconds, ``isHRConnected`` bool (false with HR 0),
  ``HeartBeatToggle`` bool (flips at each beat), ``isHRBeat`` bool (100 ms
  pulse).
- ``vrcosc`` (VolcanicArts' VRCOSC heart-rate module;
  ``/avatar/parameters/VRCOSC/Heartrate``): ``Value`` int bpm,
  ``Normalised`` float = bpm between 0 and 240 (its defaults) clamped to
  0-1, ``Connected`` bool, ``Enabled`` bool (the older name of Connected),
  ``Beat`` bool (toggles at each beat, its default beat mode).

Decoding takes one source per meaning, so a beat is not counted twice: the
integer or float heart rate (not the scaled copies), RR where the bridge
sends it, the connected flag, and the toggle (or pulse, or trigger) for
beats. A toggle counts a beat when its value changes; a pulse when it rises.
A heart rate of 0 means "no reading", as all three VRChat bridges send it
while disconnected. Redundant addresses decode to an empty sample (known,
nothing new); unknown addresses to None.

    >>> decoder = get_bridge("vrcosc").decoder()
    >>> decoder.decode("/avatar/parameters/VRCOSC/Heartrate/Value", (72,), 3.0)
    HeartSample(time_s=3.0, bpm=72.0, rr_s=(), connected=None, beat=False)

Threads: encoders and decoders keep per-stream state (toggles); give each
stream its own, on one control thread.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.naming import did_you_mean
from engine.sensors.samples import HeartSample

# What an address carries. Encoders write every kind; decoders read the kinds
# in _DECODED and treat the rest as redundant copies.
BPM_INT = "bpm_int"  # int, rounded, clamped to 0..255 (0: no reading)
BPM_FLOAT = "bpm_float"  # float bpm
BPM_SCALED = "bpm_scaled"  # float, bpm mapped linearly (Param.scale)
BPM_DIGIT = "bpm_digit"  # int, one decimal digit of the rounded bpm
RR_S = "rr_s"  # float seconds
RR_MS_INT = "rr_ms_int"  # int milliseconds
CONNECTED = "connected"  # bool (T/F), or int 0/1 with Param.osc_type "i"
BEAT_PULSE = "beat_pulse"  # bool, true at a beat, false pulse_s later
BEAT_TOGGLE = "beat_toggle"  # bool, flips at each beat
BEAT_TRIGGER = "beat_trigger"  # no arguments, one message per beat

_INVALID_ADDRESS_CHARS = re.compile(r"[\s#*,?\[\]{}]")


@dataclass(frozen=True)
class Param:
    """One address of a bridge: its name under the prefix, OSC type tag
    (``i``, ``f``, ``T`` for bool, ``""`` for none), kind and meaning.

    ``scale`` (for ``BPM_SCALED``) is (bpm_low, bpm_high, out_low, out_high),
    clamped to the output range; ``digit`` (for ``BPM_DIGIT``) is the power
    of ten; ``decoded`` False marks a redundant copy the decoder skips.
    """

    name: str
    osc_type: str
    kind: str
    doc: str
    scale: tuple[float, float, float, float] | None = None
    digit: int = 0
    decoded: bool = True


@dataclass(frozen=True)
class Bridge:
    """A bridge's address table and habits (see the module docstring)."""

    name: str
    description: str
    default_prefix: str
    params: tuple[Param, ...]
    bundle: bool = False  # sends each beat's messages as one OSC bundle
    pulse_s: float = 0.1

    def address(self, param: Param, prefix: str | None = None) -> str:
        """The full address of ``param`` under ``prefix`` (default: the
        bridge's own)."""
        base = check_prefix(self.default_prefix if prefix is None else prefix)
        return f"{base.rstrip('/')}/{param.name}"

    def addresses(self, prefix: str | None = None) -> dict[str, Param]:
        """Every full address of the bridge, with its parameter."""
        return {self.address(p, prefix): p for p in self.params}

    def encoder(self, prefix: str | None = None) -> BridgeEncoder:
        """A sender for one stream of beats."""
        return BridgeEncoder(self, prefix)

    def decoder(self, prefix: str | None = None) -> BridgeDecoder:
        """A receiver for one stream of messages."""
        return BridgeDecoder(self, prefix)


def check_prefix(prefix: str) -> str:
    """``prefix`` if it is a valid OSC address prefix, else ``ValueError``."""
    if (
        not prefix.startswith("/")
        or _INVALID_ADDRESS_CHARS.search(prefix)
        or "//" in prefix
    ):
        raise ValueError(
            f"OSC prefix {prefix!r} must start with '/' and hold no spaces, "
            "'//' or any of #*,?[]{}"
        )
    return prefix


_B = Param
BRIDGES: dict[str, Bridge] = {
    b.name: b
    for b in (
        Bridge(
            "generic",
            "the engine's own addresses",
            "/soundscape",
            (
                _B("hr/bpm", "f", BPM_FLOAT, "heart rate, bpm"),
                _B("hr/rr", "f", RR_S, "RR interval of the beat, seconds"),
                _B("hr/connected", "i", CONNECTED, "1 connected, 0 not"),
                _B("hr/beat", "", BEAT_TRIGGER, "one message per heartbeat"),
            ),
        ),
        Bridge(
            "hrtovrchat",
            "HRtoVRChat_OSC",
            "/avatar/parameters",
            (
                _B("HR", "i", BPM_INT, "heart rate, bpm, 0-255"),
                _B(
                    "HRPercent",
                    "f",
                    BPM_SCALED,
                    "HR between MinHR 0 and MaxHR 150, clamped to 0-1",
                    scale=(0.0, 150.0, 0.0, 1.0),
                    decoded=False,
                ),
                _B("onesHR", "i", BPM_DIGIT, "ones digit", digit=0, decoded=False),
                _B("tensHR", "i", BPM_DIGIT, "tens digit", digit=1, decoded=False),
                _B(
                    "hundredsHR",
                    "i",
                    BPM_DIGIT,
                    "hundreds digit",
                    digit=2,
                    decoded=False,
                ),
                _B("isHRConnected", "T", CONNECTED, "source connected"),
                _B("isHRActive", "T", CONNECTED, "device connected", decoded=False),
                _B("isHRBeat", "T", BEAT_PULSE, "true at a beat, false 100 ms on"),
            ),
        ),
        Bridge(
            "iron-heart",
            "iron-heart (BLE bridge in Rust)",
            "/avatar/parameters",
            (
                _B("HR", "i", BPM_INT, "heart rate, bpm, 0-255"),
                _B(
                    "floatHR",
                    "f",
                    BPM_SCALED,
                    "HR/255 mapped to -1..1",
                    scale=(0.0, 255.0, -1.0, 1.0),
                    decoded=False,
                ),
                _B("RRInterval", "i", RR_MS_INT, "latest RR interval, ms"),
                _B("isHRConnected", "T", CONNECTED, "strap connected (HR > 0)"),
                _B("HeartBeatToggle", "T", BEAT_TOGGLE, "flips at each beat"),
                _B(
                    "isHRBeat",
                    "T",
                    BEAT_PULSE,
                    "true for 100 ms at each beat",
                    decoded=False,
                ),
            ),
            bundle=True,
        ),
        Bridge(
            "vrcosc",
            "VRCOSC heart-rate module",
            "/avatar/parameters/VRCOSC/Heartrate",
            (
                _B("Value", "i", BPM_INT, "heart rate, bpm"),
                _B(
                    "Normalised",
                    "f",
                    BPM_SCALED,
                    "bpm between 0 and 240, clamped to 0-1",
                    scale=(0.0, 240.0, 0.0, 1.0),
                    decoded=False,
                ),
                _B("Connected", "T", CONNECTED, "connected and receiving"),
                _B("Enabled", "T", CONNECTED, "older name of Connected"),
                _B("Beat", "T", BEAT_TOGGLE, "toggles at each beat"),
            ),
        ),
    )
}


def get_bridge(name: str) -> Bridge:
    """The bridge called ``name``, or a ``ValueError`` listing them."""
    bridge = BRIDGES.get(name)
    if bridge is None:
        raise ValueError(
            f"unknown heart-rate OSC format {name!r}{did_you_mean(name, BRIDGES)}; "
            f"formats: {', '.join(BRIDGES)}"
        )
    return bridge


@dataclass(frozen=True)
class OscPacket:
    """Messages to send together: (address, arguments) pairs, as one bundle
    (timetag "immediately") when ``bundle`` is set."""

    messages: tuple[tuple[str, tuple[Any, ...]], ...]
    bundle: bool = False

    def build(self) -> Any:
        """The python-osc ``OscMessage`` or ``OscBundle`` to send."""
        from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
        from pythonosc.osc_message_builder import OscMessageBuilder

        built = []
        for address, args in self.messages:
            builder = OscMessageBuilder(address=address)
            for arg in args:
                builder.add_arg(arg)
            built.append(builder.build())
        if not self.bundle and len(built) == 1:
            return built[0]
        bundle = OscBundleBuilder(IMMEDIATELY)
        for message in built:
            bundle.add_content(message)  # type: ignore[arg-type]
        return bundle.build()


def _scaled(bpm: float, scale: tuple[float, float, float, float]) -> float:
    low, high, out_low, out_high = scale
    x = min(max((bpm - low) / (high - low), 0.0), 1.0)
    return out_low + x * (out_high - out_low)


@dataclass
class BridgeEncoder:
    """Turns beats into a bridge's packets (for the simulator)."""

    bridge: Bridge
    prefix: str | None = None
    _toggle: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self._addresses = list(self.bridge.addresses(self.prefix).items())

    def _value(self, param: Param, bpm: float, rr_s: float, connected: bool) -> Any:
        rounded = min(max(round(bpm), 0), 255) if connected else 0
        kind = param.kind
        if kind == BPM_INT:
            return rounded
        if kind == BPM_FLOAT:
            return float(bpm)
        if kind == BPM_SCALED:
            return _scaled(rounded if connected else 0.0, param.scale or (0, 1, 0, 1))
        if kind == BPM_DIGIT:
            return rounded // 10**param.digit % 10
        if kind == RR_S:
            return float(rr_s)
        if kind == RR_MS_INT:
            return round(1000.0 * rr_s) if connected else 0
        if kind == CONNECTED:
            return int(connected) if param.osc_type == "i" else connected
        if kind == BEAT_PULSE:
            return connected
        if kind == BEAT_TOGGLE:
            return self._toggle
        raise AssertionError(kind)

    def beat(self, bpm: float, rr_s: float) -> list[tuple[float, OscPacket]]:
        """(delay_s, packet) for one beat: its messages now, and a pulse's
        falling edge ``pulse_s`` later."""
        self._toggle = not self._toggle
        now: list[tuple[str, tuple[Any, ...]]] = []
        later: list[tuple[str, tuple[Any, ...]]] = []
        for address, param in self._addresses:
            if param.kind == BEAT_TRIGGER:
                now.append((address, ()))
                continue
            now.append((address, (self._value(param, bpm, rr_s, True),)))
            if param.kind == BEAT_PULSE:
                later.append((address, (False,)))
        out = [(0.0, OscPacket(tuple(now), self.bridge.bundle))]
        if later:
            out.append(
                (self.bridge.pulse_s, OscPacket(tuple(later), self.bridge.bundle))
            )
        return out

    def disconnected(self) -> list[tuple[float, OscPacket]]:
        """(delay_s, packet) saying the source is disconnected: the connected
        flags false and, for bridges that send a heart rate, 0."""
        messages = []
        for address, param in self._addresses:
            if param.kind in (CONNECTED, BPM_INT, BPM_SCALED, RR_MS_INT):
                messages.append((address, (self._value(param, 0.0, 0.0, False),)))
        return [(0.0, OscPacket(tuple(messages), self.bridge.bundle))]


def _number(address: str, value: Any, what: str, minimum: float = 0.0) -> float:
    # OSC senders differ on int or float; bools and strings are mistakes.
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    number = float(value) if is_number else math.nan
    if not math.isfinite(number) or number < minimum:
        bound = f" (>= {minimum:g})" if math.isfinite(minimum) else ""
        raise ValueError(f"{address}: expected {what}{bound}, got {value!r}")
    return number


def _flag(address: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    raise ValueError(f"{address}: expected true/false or 0/1, got {value!r}")


@dataclass
class BridgeDecoder:
    """Turns a bridge's messages back into ``HeartSample`` values."""

    bridge: Bridge
    prefix: str | None = None

    def __post_init__(self) -> None:
        self.params = self.bridge.addresses(self.prefix)
        self._last_flag: dict[str, bool] = {}

    def decode(
        self, address: str, args: Sequence[Any], time_s: float
    ) -> HeartSample | None:
        """The sample one message carries, received at ``time_s``; None for an
        address that is not this bridge's. Wrong argument counts or types
        raise ``ValueError`` naming the address."""
        param = self.params.get(address)
        if param is None:
            return None
        if param.kind == BEAT_TRIGGER:
            return HeartSample(time_s, beat=True)
        if len(args) != 1:
            raise ValueError(
                f"{address}: expected 1 argument ({param.doc}), got {len(args)}"
            )
        value = args[0]
        kind = param.kind
        if kind in (BEAT_PULSE, BEAT_TOGGLE, CONNECTED):
            flag = _flag(address, value)
            previous = self._last_flag.get(address)
            self._last_flag[address] = flag
            if not param.decoded:
                return HeartSample(time_s)
            if kind == CONNECTED:
                return HeartSample(time_s, connected=flag)
            if kind == BEAT_PULSE:
                return HeartSample(time_s, beat=flag and previous is not True)
            return HeartSample(time_s, beat=previous is not None and flag != previous)
        if kind == RR_S:
            rr_s = _number(address, value, "an RR interval in seconds")
            return HeartSample(time_s, rr_s=(rr_s,) if rr_s > 0 else ())
        if kind == RR_MS_INT:
            rr_ms = _number(address, value, "an RR interval in milliseconds")
            return HeartSample(time_s, rr_s=(rr_ms / 1000.0,) if rr_ms > 0 else ())
        if not param.decoded:  # a scaled or split copy of the heart rate
            _number(address, value, param.doc, minimum=-math.inf)
            return HeartSample(time_s)
        number = _number(address, value, "a heart rate in bpm")
        return HeartSample(time_s, bpm=number if number > 0 else None)
