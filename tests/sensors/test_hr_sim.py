"""The simulator by physics: each profile's mean heart rate and RMSSD, measured
both by our processing and by a direct numpy computation, match its targets;
falling asleep trends down; planted ectopic beats and dropouts are caught.
And hr-sim by the wire: real UDP datagrams to a python-osc server and to
liblo's oscdump, decoded back through the bridge tables to the same bpm."""

from __future__ import annotations

import itertools
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import BlockingOSCUDPServer

from engine.cli import main
from engine.sensors.bridges import get_bridge
from engine.sensors.heart_state import ACCEPTED, HeartTracker
from engine.sensors.hr_sim import (
    PROFILES,
    SimBeat,
    beats,
    get_profile,
    osc_timeline,
    send_beats,
    simulate,
    to_samples,
)


def arrays(sim: list[SimBeat]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = np.array([b.time_s for b in sim])
    rr = np.array([b.rr_s for b in sim])
    ectopic = np.array([b.ectopic for b in sim])
    return t, rr, ectopic


def numpy_hr_and_rmssd(sim: list[SimBeat], start_s: float, end_s: float):
    """Mean heart rate (60 / mean RR) and RMSSD (ms) of the clean beats."""
    t, rr, ectopic = arrays(sim)
    inside = (t >= start_s) & (t < end_s) & ~ectopic
    pairs = inside[1:] & inside[:-1]
    diffs = np.diff(rr)[pairs]
    return 60.0 / rr[inside].mean(), 1000.0 * np.sqrt(np.mean(diffs**2))


def tracked(sim: list[SimBeat], at_s: list[float]) -> list[Any]:
    """Our processing's state at each time in ``at_s`` (ascending)."""
    tracker = HeartTracker()
    states = []
    pending = list(at_s)
    for sample in to_samples(sim):
        while pending and pending[0] < sample.time_s:
            states.append(tracker.state(pending.pop(0)))
        tracker.update(sample)
    states.extend(tracker.state(t) for t in pending)
    return states


@pytest.mark.parametrize("profile", ["rest", "stress"])
@pytest.mark.parametrize("seed", [1, 2])
def test_steady_profiles_hit_their_targets(profile: str, seed: int):
    p = get_profile(profile)
    sim = simulate(profile, 420, seed=seed)
    hr, rmssd = numpy_hr_and_rmssd(sim, 60, 420)
    assert hr == pytest.approx(p.hr_bpm.end, abs=1.0)
    assert rmssd == pytest.approx(p.rmssd_ms.end, rel=0.1)
    states = tracked(sim, [float(t) for t in range(120, 421, 20)])
    assert np.mean([s.rmssd_ms for s in states]) == pytest.approx(rmssd, rel=0.08)
    assert np.mean([s.bpm for s in states]) == pytest.approx(hr, abs=2.0)
    assert all(s.quality == 1.0 and s.connected for s in states)


def test_exercise_climbs_and_loses_hrv():
    p = get_profile("exercise")
    sim = simulate("exercise", 600, seed=3)
    hr_start, rmssd_start = numpy_hr_and_rmssd(sim, 0, 20)
    hr_end, rmssd_end = numpy_hr_and_rmssd(sim, 480, 600)
    assert hr_start == pytest.approx(p.hr_bpm.at(10), abs=3.0)
    assert hr_end == pytest.approx(p.hr_bpm.at(540), abs=1.0)
    assert rmssd_end == pytest.approx(p.rmssd_ms.at(540), rel=0.15)
    assert rmssd_start > 3 * rmssd_end
    late = tracked(sim, [500.0, 550.0, 600.0])
    assert np.mean([s.bpm for s in late]) == pytest.approx(hr_end, abs=2.0)
    assert np.mean([s.rmssd_ms for s in late]) == pytest.approx(rmssd_end, rel=0.15)


def test_falling_asleep_slows_the_heart_and_raises_hrv():
    p = get_profile("falling_asleep")
    sim = simulate("falling_asleep", 1500, seed=4)
    for start in (60, 1380):  # early and late windows against the ramps
        hr, rmssd = numpy_hr_and_rmssd(sim, start, start + 120)
        centre = start + 60
        assert hr == pytest.approx(p.hr_bpm.at(centre), abs=1.0)
        assert rmssd == pytest.approx(p.rmssd_ms.at(centre), rel=0.12)
    times = [float(t) for t in range(150, 601, 10)]
    states = tracked(sim, times)
    trend = np.mean([s.trend_bpm_per_min for s in states])
    # d/dt of the heart-rate ramp, in bpm per minute, averaged over the span.
    slope = (p.hr_bpm.end - p.hr_bpm.start) / p.hr_bpm.tau_s * 60  # bpm/min at 0
    expected = np.mean([slope * np.exp(-t / p.hr_bpm.tau_s) for t in times])
    assert trend < 0
    assert trend == pytest.approx(expected, rel=0.3)  # a 2-min window lags a little
    late = tracked(sim, [1440.0, 1500.0])
    assert late[-1].bpm < states[0].bpm - 5
    assert late[-1].rmssd_ms > states[0].rmssd_ms + 15


def test_same_seed_same_beats_other_seed_other_beats():
    a = simulate("stress", 60, seed=7, dropouts=True, ectopic_per_min=3)
    assert a == simulate("stress", 60, seed=7, dropouts=True, ectopic_per_min=3)
    assert a != simulate("stress", 60, seed=8, dropouts=True, ectopic_per_min=3)


@pytest.mark.parametrize("profile", ["rest", "stress", "exercise"])
def test_planted_ectopic_beats_are_rejected_and_clean_ones_kept(profile: str):
    sim = simulate(profile, 600, seed=5, ectopic_per_min=2.0)
    _t, _rr, ectopic = arrays(sim)
    assert ectopic.sum() >= 20  # premature beat and pause, both marked
    tracker = HeartTracker()
    for sample in to_samples(sim):
        tracker.update(sample)
    verdict = {t: v for t, _rr, v in tracker.rr_verdicts}
    assert set(verdict) == {b.time_s for b in sim}  # every beat was judged
    planted = [verdict[b.time_s] for b in sim if b.ectopic]
    clean = [verdict[b.time_s] for b in sim if not b.ectopic]
    assert ACCEPTED not in planted
    assert clean.count(ACCEPTED) >= 0.99 * len(clean)


def test_dropouts_disconnect_and_come_back():
    sim = simulate("rest", 600, seed=6, dropouts=True)
    spans = []  # (first missing beat, last missing beat)
    for previous, beat in itertools.pairwise(sim):
        if not beat.connected and previous.connected:
            spans.append([beat.time_s, beat.time_s])
        elif not beat.connected:
            spans[-1][1] = beat.time_s
    assert len(spans) >= 3
    samples = list(to_samples(sim))
    assert [s.time_s for s in samples if s.connected is False] == [a for a, _b in spans]
    probes = sorted(
        [(end, False) for _start, end in spans]  # nothing arrives inside a span
        + [(end + 8.0, True) for _start, end in spans]  # beats again after it
    )
    states = tracked(sim, [t for t, _c in probes])
    assert [s.connected for s in states] == [c for _t, c in probes]


def test_unknown_profile_suggests_the_near_miss():
    with pytest.raises(ValueError, match="did you mean 'falling_asleep'"):
        next(beats("falling-asleep"))
    assert set(PROFILES) == {"rest", "stress", "falling_asleep", "exercise"}


def test_timeline_is_in_time_order_with_pulses_between_beats():
    sim = simulate("exercise", 120, seed=1, dropouts=True)
    timeline = list(osc_timeline(sim, "hrtovrchat"))
    times = [t for t, _p in timeline]
    assert times == sorted(times)
    assert len(timeline) > 2 * sum(b.connected for b in sim) - 5


# ---------------------------------------------------------------------------
# Real datagrams


class Receiver:
    """A python-osc UDP server on an ephemeral port, recording every message."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, tuple[Any, ...]]] = []
        dispatcher = Dispatcher()
        dispatcher.set_default_handler(self._record)
        self.server = BlockingOSCUDPServer(("127.0.0.1", 0), dispatcher)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(
            target=self.server.serve_forever, args=(0.05,), daemon=True
        )

    def _record(self, address: str, *args: Any) -> None:
        self.messages.append((address, args))

    def wait_for(self, count: int, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.01)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.mark.parametrize("bridge", ["generic", "hrtovrchat", "iron-heart", "vrcosc"])
def test_send_beats_reaches_a_python_osc_server(receiver: Receiver, bridge: str):
    sim = simulate("rest", 20, seed=2)
    expected_messages = sum(
        len(p.messages) for _t, p in osc_timeline(sim, bridge, None)
    )
    send_beats(sim, bridge, "127.0.0.1", receiver.port, speed=200.0)
    receiver.wait_for(expected_messages)
    decoder = get_bridge(bridge).decoder()
    decoded = [decoder.decode(a, args, 0.0) for a, args in receiver.messages]
    bpms = [s.bpm for s in decoded if s is not None and s.bpm is not None]
    sent = [b.bpm if bridge == "generic" else round(b.bpm) for b in sim]
    assert bpms == pytest.approx(sent, abs=1e-3)  # float32 on the wire
    assert sum(1 for s in decoded if s is not None and s.beat) >= len(sim) - 1


def test_speed_paces_the_sending(receiver: Receiver):
    sim = simulate("stress", 10, seed=1)
    started = time.monotonic()
    send_beats(sim, "generic", "127.0.0.1", receiver.port, speed=20.0)
    # Only a lower bound: a loaded machine may be slower, never faster.
    assert time.monotonic() - started >= sim[-1].time_s / 20.0 - 0.01
    with pytest.raises(ValueError, match="speed"):
        send_beats(sim, "generic", "127.0.0.1", receiver.port, speed=0.0)


def test_cli_hr_sim_sends_the_profile(receiver: Receiver, capsys: Any):
    args = ["hr-sim", "--profile", "stress", "--format", "vrcosc", "--seed", "3"]
    args += ["--port", str(receiver.port), "--seconds", "8", "--speed", "100"]
    assert main(args) == 0
    out = capsys.readouterr().out
    sim = simulate("stress", 8, seed=3)
    assert f"sent {len(sim)} beats" in out
    receiver.wait_for(5 * len(sim))
    values = [
        args[0]
        for address, args in receiver.messages
        if address == "/avatar/parameters/VRCOSC/Heartrate/Value"
    ]
    assert values == [round(b.bpm) for b in sim]


def test_cli_hr_sim_prefix_and_errors(receiver: Receiver, capsys: Any):
    args = ["hr-sim", "--prefix", "/game/hr1", "--port", str(receiver.port)]
    assert main([*args, "--seconds", "3", "--speed", "100"]) == 0
    receiver.wait_for(4)
    assert receiver.messages[0][0].startswith("/game/hr1/hr/")
    capsys.readouterr()
    assert main(["hr-sim", "--format", "vrcosk", "--seconds", "1"]) == 1
    assert "did you mean 'vrcosc'" in capsys.readouterr().err
    assert main(["hr-sim", "--prefix", "game", "--seconds", "1"]) == 1
    assert "must start with '/'" in capsys.readouterr().err
    assert main(["hr-sim", "--port", "70000", "--seconds", "1"]) == 1
    assert "--port must be 1..65535" in capsys.readouterr().err


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(shutil.which("oscdump") is None, reason="liblo-tools missing")
def test_oscdump_receives_hr_sim(tmp_path: Any):
    port = _free_udp_port()
    out = (tmp_path / "dump.txt").open("w")
    dump = subprocess.Popen(["oscdump", "-L", str(port)], stdout=out, text=True)
    try:
        # Wait until oscdump listens: its port is taken when a bind fails.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    break
            time.sleep(0.05)
        args = ["hr-sim", "--profile", "rest", "--format", "iron-heart"]
        args += ["--port", str(port), "--seconds", "6", "--speed", "50", "--seed", "9"]
        assert main(args) == 0
        sim = simulate("rest", 6, seed=9)
        deadline = time.monotonic() + 10
        text = ""
        while time.monotonic() < deadline:
            text = (tmp_path / "dump.txt").read_text()
            if text.count("/avatar/parameters/HR ") >= len(sim):
                break
            time.sleep(0.05)
    finally:
        dump.terminate()
        dump.wait(10)
        out.close()
    decoder = get_bridge("iron-heart").decoder()
    bpms = []
    for line in text.splitlines():
        # "<timetag> /avatar/parameters/HR i 64"
        parts = line.split()
        address, tag, value = parts[1], parts[2], parts[3]
        args = (int(value),) if tag == "i" else (float(value),) if tag == "f" else ()
        if tag in ("T", "F"):
            args = (tag == "T",)
        sample = decoder.decode(address, args, 0.0)
        if sample is not None and sample.bpm is not None:
            bpms.append(sample.bpm)
    assert bpms == [round(b.bpm) for b in sim]
