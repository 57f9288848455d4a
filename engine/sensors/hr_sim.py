"""A realistic, seeded heart-rate simulator, and the sender behind
``soundscape hr-sim``.

Each beat's RR interval is the profile's mean interval plus:

- respiratory sinus arrhythmia (RSA), a sine at the breathing rate
  (about 0.25 Hz at rest), whose rate wanders a few per cent;
- a slower LF component near 0.1 Hz (blood-pressure regulation);
- white noise.

The three share the profile's target RMSSD (60 %, 25 % and 15 % of its
square). A sine of amplitude A sampled once per beat (interval T) has
successive differences of RMS ``sqrt(2) * A * sin(pi * f * T)``, so each
amplitude is solved from its share: the simulated RMSSD matches the target
whatever the heart rate. Profiles move their targets with exponential ramps
(``falling_asleep``: heart rate falls and HRV rises over minutes).

Optional extras: dropouts (spans in which the strap delivers nothing) and
ectopic beats (a premature beat, 60-72 % of the interval, followed by its
compensatory pause, so the pair spans two intervals).

    >>> beats = simulate("rest", seconds=60, seed=1)
    >>> 55 < len(beats) < 75, beats[0].connected
    (True, True)

The same profile, seed and options give the same beats.

Threads: the generator is pure; ``send_beats`` blocks the calling control
thread while it paces the messages. Never on the audio thread.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from engine.naming import did_you_mean
from engine.sensors.bridges import BRIDGES, OscPacket, get_bridge
from engine.sensors.samples import HeartSample

RSA_SHARE = 0.60
LF_SHARE = 0.25
NOISE_SHARE = 0.15
LF_HZ = 0.1
RATE_WANDER = 0.04  # relative wander of the breathing and LF rates
MIN_RR_S = 60.0 / 220.0
MAX_RR_S = 60.0 / 30.0
DEVICE_AVERAGE_BEATS = 4  # straps report bpm averaged over a few beats


@dataclass(frozen=True)
class Ramp:
    """A target that moves from ``start`` toward ``end`` with time constant
    ``tau_s`` (constant when they are equal)."""

    start: float
    end: float
    tau_s: float = 1.0

    def at(self, time_s: float) -> float:
        """The target at ``time_s``."""
        return self.end + (self.start - self.end) * math.exp(-time_s / self.tau_s)


@dataclass(frozen=True)
class Profile:
    """Targets over time: mean heart rate, RMSSD and breathing rate."""

    name: str
    description: str
    hr_bpm: Ramp
    rmssd_ms: Ramp
    breathing_hz: Ramp


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            "rest",
            "seated at rest: 64 bpm, RMSSD 42 ms, 15 breaths a minute",
            Ramp(64.0, 64.0),
            Ramp(42.0, 42.0),
            Ramp(0.25, 0.25),
        ),
        Profile(
            "stress",
            "mental stress: 88 bpm, RMSSD 16 ms, fast shallow breathing",
            Ramp(88.0, 88.0),
            Ramp(16.0, 16.0),
            Ramp(0.32, 0.32),
        ),
        Profile(
            "falling_asleep",
            "drifting off: 68 -> 54 bpm and RMSSD 30 -> 70 ms (8 min time "
            "constant), breathing slows",
            Ramp(68.0, 54.0, 480.0),
            Ramp(30.0, 70.0, 480.0),
            Ramp(0.23, 0.18, 480.0),
        ),
        Profile(
            "exercise",
            "a steady run: 85 -> 150 bpm (90 s time constant), RMSSD 20 -> 4 ms",
            Ramp(85.0, 150.0, 90.0),
            Ramp(20.0, 4.0, 90.0),
            Ramp(0.30, 0.55, 90.0),
        ),
    )
}


def get_profile(name: str) -> Profile:
    """The profile called ``name``, or a ``ValueError`` listing them."""
    profile = PROFILES.get(name)
    if profile is None:
        raise ValueError(
            f"unknown heart-rate profile {name!r}{did_you_mean(name, PROFILES)}; "
            f"profiles: {', '.join(PROFILES)}"
        )
    return profile


@dataclass(frozen=True)
class SimBeat:
    """One simulated beat, ending at ``time_s``.

    ``bpm`` is what a strap would report (averaged over a few beats);
    ``connected`` is False inside a dropout (nothing is delivered);
    ``ectopic`` marks both beats of a planted premature-beat pair.
    """

    time_s: float
    rr_s: float
    bpm: float
    connected: bool
    ectopic: bool


def _amplitude_s(share: float, rmssd_s: float, rate_hz: float, rr_s: float) -> float:
    # Successive differences of A*sin(2*pi*f*t) sampled every T have RMS
    # sqrt(2)*A*sin(pi*f*T); solve for A so this part carries its share.
    gain = math.sqrt(2.0) * abs(math.sin(math.pi * rate_hz * rr_s))
    return math.sqrt(share) * rmssd_s / max(gain, 1e-3)


def beats(
    profile: str | Profile,
    seed: int = 0,
    *,
    dropouts: bool = False,
    ectopic_per_min: float = 0.0,
    mean_dropout_gap_s: float = 75.0,
    dropout_s: tuple[float, float] = (3.0, 20.0),
) -> Iterator[SimBeat]:
    """Simulated beats, forever (see the module docstring).

    ``dropouts`` plants disconnected spans of ``dropout_s`` seconds (uniform)
    about every ``mean_dropout_gap_s``; ``ectopic_per_min`` plants premature
    beats at that mean rate.
    """
    p = get_profile(profile) if isinstance(profile, str) else profile
    if not (math.isfinite(ectopic_per_min) and ectopic_per_min >= 0):
        raise ValueError(f"ectopic_per_min must be >= 0, not {ectopic_per_min}")
    rng = np.random.default_rng(seed)
    rsa_phase, lf_phase = rng.uniform(0.0, 2.0 * math.pi, 2)
    rsa_wander = lf_wander = 0.0
    t = 0.0
    carry_s = 0.0  # compensatory pause owed after an ectopic beat
    recent: list[float] = []
    next_dropout_s = 15.0 + rng.exponential(mean_dropout_gap_s)
    dropout_end_s = -1.0
    while True:
        mean_rr = 60.0 / p.hr_bpm.at(t)
        rmssd_s = p.rmssd_ms.at(t) / 1000.0
        breathing_hz = p.breathing_hz.at(t) * (1.0 + RATE_WANDER * rsa_wander)
        lf_hz = LF_HZ * (1.0 + RATE_WANDER * lf_wander)
        rr = (
            mean_rr
            + _amplitude_s(RSA_SHARE, rmssd_s, breathing_hz, mean_rr)
            * math.sin(rsa_phase)
            + _amplitude_s(LF_SHARE, rmssd_s, lf_hz, mean_rr) * math.sin(lf_phase)
            + math.sqrt(NOISE_SHARE / 2.0) * rmssd_s * rng.standard_normal()
        )
        rr = min(max(rr, MIN_RR_S), MAX_RR_S)
        ectopic = carry_s > 0
        if ectopic:
            rr, carry_s = rr + carry_s, 0.0
        elif ectopic_per_min and rng.random() < ectopic_per_min * rr / 60.0:
            prematurity = rng.uniform(0.60, 0.72)
            carry_s = (1.0 - prematurity) * rr
            rr *= prematurity
            ectopic = True
        rsa_phase += 2.0 * math.pi * breathing_hz * rr
        lf_phase += 2.0 * math.pi * lf_hz * rr
        # Slow AR(1) wander of both rates (unit variance, ~100-beat memory).
        rsa_wander = 0.99 * rsa_wander + 0.141 * rng.standard_normal()
        lf_wander = 0.99 * lf_wander + 0.141 * rng.standard_normal()
        t += rr
        if dropouts and t >= next_dropout_s:
            dropout_end_s = next_dropout_s + rng.uniform(*dropout_s)
            next_dropout_s = dropout_end_s + 15.0 + rng.exponential(mean_dropout_gap_s)
        recent = [*recent[-(DEVICE_AVERAGE_BEATS - 1) :], rr]
        yield SimBeat(
            time_s=t,
            rr_s=rr,
            bpm=60.0 * len(recent) / sum(recent),
            connected=t >= dropout_end_s,
            ectopic=ectopic,
        )


def simulate(
    profile: str | Profile, seconds: float, seed: int = 0, **options: object
) -> list[SimBeat]:
    """The beats of the first ``seconds`` (options as for ``beats``)."""
    out = []
    for beat in beats(profile, seed, **options):  # type: ignore[arg-type]
        if beat.time_s > seconds:
            break
        out.append(beat)
    return out


def to_samples(sim_beats: Iterable[SimBeat]) -> Iterator[HeartSample]:
    """What a source would deliver: a sample per connected beat (bpm, its RR
    and a beat flag), a ``connected=False`` sample where a dropout starts."""
    was_connected = True
    for beat in sim_beats:
        if beat.connected:
            yield HeartSample(beat.time_s, beat.bpm, (beat.rr_s,), True, True)
        elif was_connected:
            yield HeartSample(beat.time_s, connected=False)
        was_connected = beat.connected


def osc_timeline(
    sim_beats: Iterable[SimBeat], bridge: str, prefix: str | None = None
) -> Iterator[tuple[float, OscPacket]]:
    """(time_s, packet) in time order: each beat's packets in ``bridge``'s
    format, its delayed ones (a beat pulse switching off) and a disconnect
    report where a dropout starts, repeated each second while it lasts, as
    the bridges do."""
    encoder = get_bridge(bridge).encoder(prefix)
    queue: list[tuple[float, int, OscPacket]] = []
    order = 0
    was_connected = True
    last_report_s = -math.inf
    for beat in sim_beats:
        if beat.connected:
            timed = encoder.beat(beat.bpm, beat.rr_s)
        elif was_connected or beat.time_s - last_report_s >= 1.0:
            timed = encoder.disconnected()
            last_report_s = beat.time_s
        else:
            timed = []
        was_connected = beat.connected
        while queue and queue[0][0] <= beat.time_s:
            when, _order, packet = heapq.heappop(queue)
            yield when, packet
        for delay_s, packet in timed:
            heapq.heappush(queue, (beat.time_s + delay_s, order, packet))
            order += 1
    while queue:
        when, _order, packet = heapq.heappop(queue)
        yield when, packet


def send_beats(
    sim_beats: Iterable[SimBeat],
    bridge: str,
    host: str = "127.0.0.1",
    port: int = 9000,
    *,
    prefix: str | None = None,
    speed: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    on_packet: Callable[[float, OscPacket], None] | None = None,
) -> int:
    """Send the beats over UDP with python-osc, paced at ``speed`` times real
    time (``speed`` 10 sends a minute in 6 s). Returns the packets sent."""
    from pythonosc.udp_client import UDPClient

    if not (math.isfinite(speed) and speed > 0):
        raise ValueError(f"speed must be a positive number, not {speed}")
    client = UDPClient(host, port)
    started = clock()
    sent = 0
    try:
        for when_s, packet in osc_timeline(sim_beats, bridge, prefix):
            wait_s = started + when_s / speed - clock()
            if wait_s > 0:
                sleep(wait_s)
            client.send(packet.build())
            sent += 1
            if on_packet is not None:
                on_packet(when_s, packet)
    finally:
        client.close()
    return sent


__all__ = [
    "BRIDGES",
    "PROFILES",
    "Profile",
    "Ramp",
    "SimBeat",
    "beats",
    "get_profile",
    "osc_timeline",
    "send_beats",
    "simulate",
    "to_samples",
]
