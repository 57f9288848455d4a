"""The engine's block renderer: timed events on their exact frame, crossfades
without clicks, smoothing, guards, determinism and block-size invariance."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from engine.demos import DEMOS
from engine.dsp.layout import P_CURRENT, P_SLEW
from engine.graph import Graph
from engine.rt.core import C_EVENTS_APPLIED, C_EVENTS_LATE, C_REFUSED_PARAMS
from engine.rt.engine import Engine, EngineError
from engine.rt.ring import EV_SET_NOW, RING_READ, RING_WRITE, RingFull

RATE = 48000


def tone(frequency_hz: float, amplitude: float, name: str = "tone") -> Graph:
    g = Graph()
    g.output(g.node("sine", name=name, frequency_hz=frequency_hz, amplitude=amplitude))
    return g


def onset(x: np.ndarray, threshold: float = 1e-4) -> int:
    return int(np.argmax(np.abs(x) > threshold))


def render_with_event(frame: int, block_size: int) -> np.ndarray:
    engine = Engine(sample_rate=RATE)
    engine.load(tone(3000.0, 0.0))
    engine.schedule(frame, "tone", "amplitude", 0.25, kind=EV_SET_NOW)
    return engine.render(frame + 4000, block_size=block_size)[:, 0]


@pytest.mark.parametrize("block_size", [64, 100, 128, 511])
def test_timed_event_lands_on_its_exact_frame(block_size: int) -> None:
    latency = onset(render_with_event(20001, 128)) - 20001
    assert latency == Engine(sample_rate=RATE).latency_frames  # the limiter's 85
    for frame in (20003, 21111):
        x = render_with_event(frame, block_size)
        assert onset(x) == frame + latency


def test_offline_render_is_deterministic_and_seeded() -> None:
    def render(seed: int, block_size: int = 128) -> np.ndarray:
        engine = Engine(sample_rate=RATE, seed=seed)
        engine.load(DEMOS["focus"]())
        return engine.render(RATE // 2, block_size=block_size)

    a = render(7)
    np.testing.assert_array_equal(a, render(7))
    assert not np.array_equal(a, render(8))
    assert np.all(np.isfinite(a)) and np.max(np.abs(a)) > 1e-3


@pytest.mark.parametrize("block_size", [32, 63, 64, 65, 512])
def test_demo_render_does_not_depend_on_block_size(block_size: int) -> None:
    def render(bs: int) -> np.ndarray:
        engine = Engine(sample_rate=RATE, seed=3)
        engine.load(DEMOS["focus"]())
        return engine.render(RATE // 2, block_size=bs)

    np.testing.assert_array_equal(render(block_size), render(128))


def test_nonfinite_parameter_targets_never_reach_the_output() -> None:
    engine = Engine(sample_rate=RATE)
    program = engine.load(DEMOS["focus"]())
    engine.render(RATE // 4)
    n = program.info[5]
    for bad in (np.nan, np.inf, -np.inf):
        program.params[0, :n] = bad
        engine.master.params[0, : engine.master.info[5]] = bad
        x = engine.render(RATE // 4)
        assert np.all(np.isfinite(x))
        assert np.max(np.abs(x)) > 1e-4  # still playing the last good state
    assert engine.ctl[C_REFUSED_PARAMS] >= 3 * n


def _max_step(x: np.ndarray) -> float:
    return float(np.max(np.abs(np.diff(x))))


def test_crossfade_between_programs_does_not_click() -> None:
    amplitude = 0.3
    engine = Engine(sample_rate=RATE)
    engine.load(tone(200.0, amplitude))
    engine.render(RATE // 2)
    engine.load(tone(300.0, amplitude, name="other"), fade_s=0.05)
    x = engine.render(RATE // 4)[:, 0]
    # The steepest the equal-power sum cos(a) s200 + sin(a) s300 can move between
    # samples: the sines' slopes add as a vector of length hypot(200, 300) Hz,
    # plus the fade's own slope over 2400 frames.
    fade_frames = 0.05 * RATE
    bound = amplitude * (
        2 * np.pi * np.hypot(200.0, 300.0) / RATE + 0.5 * np.pi / fade_frames
    )
    assert _max_step(x) < 1.02 * bound
    assert engine.fades_done == 2

    # Without a fade the same switch would step: the check above can fail.
    engine = Engine(sample_rate=RATE)
    engine.load(tone(200.0, amplitude))
    engine.render(RATE // 2 + 37)
    engine.load(tone(300.0, amplitude, name="other"), fade_s=1 / RATE)
    assert _max_step(engine.render(RATE // 4)[:, 0]) > 2 * bound


def test_parameter_jump_is_smoothed_without_zipper_noise() -> None:
    engine = Engine(sample_rate=RATE)
    g = Graph()
    sine = g.node("sine", name="tone", frequency_hz=100.0, amplitude=0.02)
    g.output(g.node("gain", sine, name="level", gain_db=0.0))
    engine.load(g)
    engine.render(RATE // 2)
    engine.set("tone", "amplitude", 0.5)  # a 28 dB jump
    x = engine.render(RATE // 2, block_size=256)[:, 0]
    bound = 0.5 * 2 * np.pi * 100.0 / RATE
    assert _max_step(x) < 1.3 * bound
    # It arrives: the level matches a tone that played 0.5 from the start (the
    # master's DC blocker takes its 0.5 % off a 100 Hz tone in both).
    reference = Engine(sample_rate=RATE)
    sine.values["amplitude"] = 0.5
    reference.load(g)
    y = reference.render(RATE, block_size=256)[:, 0]
    np.testing.assert_allclose(
        np.max(np.abs(x[-RATE // 10 :])), np.max(np.abs(y[-RATE // 10 :])), rtol=1e-4
    )


def test_volume_and_limiter_are_master_parameters() -> None:
    engine = Engine(sample_rate=RATE)
    engine.load(tone(1000.0, 0.5))
    engine.render(RATE // 2)
    engine.set("master.volume", "gain_db", -20.0)
    x = engine.render(RATE // 2)[:, 0]
    np.testing.assert_allclose(np.max(np.abs(x[-4800:])), 0.05, rtol=1e-3)
    with pytest.raises(KeyError, match="no parameter"):
        engine.set("master.volume", "gain", 0.0)


def test_unsupported_settings_are_refused() -> None:
    with pytest.raises(EngineError, match="sample rate 22050 Hz is not supported"):
        Engine(sample_rate=22050)
    engine = Engine()
    engine.load(tone(100.0, 0.1))
    with pytest.raises(EngineError, match="block size 4096 is outside 32..2048"):
        engine.render(100, block_size=4096)
    with pytest.raises(EngineError, match="not finite"):
        engine.schedule(10, "tone", "amplitude", float("nan"))


def test_ring_under_a_concurrent_producer_applies_every_event_in_order() -> None:
    """A producer thread hammers the ring while the engine renders: every event is
    applied, none late, each on its frame (the amplitude changes exactly there)."""
    engine = Engine(sample_rate=RATE)
    program = engine.load(tone(12000.0, 0.0))
    engine.render(RATE // 2)  # past the first fade-in
    column = program.param("tone", "amplitude").column
    start = engine.frame + 1000
    spacing = 37
    n_events = 6000  # more than the ring holds: it wraps around
    frames = start + spacing * np.arange(n_events)
    values = (1 + np.arange(n_events) % 50) / 100.0

    def produce() -> None:
        for frame, value in zip(frames, values, strict=True):
            while True:
                try:
                    engine.ring.push(
                        int(frame), EV_SET_NOW, program.generation, column, value
                    )
                    break
                except RingFull:
                    threading.Event().wait(0.0005)

    producer = threading.Thread(target=produce)
    producer.start()
    out = []
    block = 96
    end = int(frames[-1]) + 2000
    while engine.frame < end:
        # Render only once the events due in this block are in the ring (the live
        # pump keeps a horizon ahead in the same way).
        due = int(np.searchsorted(frames, engine.frame + block))
        while engine.ring.positions[RING_WRITE] < due and producer.is_alive():
            pass
        out.append(engine.render(block, block_size=block)[:, 0])
    producer.join()
    x = np.concatenate(out)
    assert engine.ctl[C_EVENTS_APPLIED] == n_events
    assert engine.ctl[C_EVENTS_LATE] == 0
    assert engine.ring.positions[RING_READ] == engine.ring.positions[RING_WRITE]
    base = RATE // 2
    latency = engine.latency_frames
    for k in range(0, n_events, 7):
        i = int(frames[k]) - base + latency
        # A 12 kHz sine at 48 kHz: every 4 samples hold +A, 0, -A, 0. Consecutive
        # values differ by 0.01; the master's DC blocker adds < 0.001 at a step.
        np.testing.assert_allclose(np.max(np.abs(x[i : i + 4])), values[k], atol=1e-3)
        if k:
            np.testing.assert_allclose(
                np.max(np.abs(x[i - 4 : i])), values[k - 1], atol=1e-3
            )


def _trajectory(engine: Engine, node: str, param: str, blocks: int, block_size: int):
    """The parameter's smoothed value at the end of each block."""
    ref = engine.current.param(node, param)
    values = []
    for _ in range(blocks):
        engine.render(block_size, block_size=block_size)
        values.append(engine.current.params[P_CURRENT, ref.column])
    return np.array(values)


def test_timed_ramp_is_a_straight_line_that_lands_on_its_frame() -> None:
    engine = Engine(sample_rate=RATE)
    engine.load(tone(440.0, 0.1))
    engine.render(RATE // 10)
    start = engine.frame + 960
    engine.ramp("tone", "amplitude", 0.5, 0.1, frame=start)  # 4800 frames
    values = _trajectory(engine, "tone", "amplitude", 150, 48)
    ends = engine.frame - 48 * 150 + 48 * np.arange(1, 151)
    expected = np.clip(0.1 + 0.4 * (ends - start) / 4800, 0.1, 0.5)
    np.testing.assert_allclose(values, expected, atol=1e-12)
    # Landed: the parameter's own one-pole is back for the next change.
    ref = engine.current.param("tone", "amplitude")
    assert engine.current.params[P_SLEW, ref.column] == 0.0
    engine.set("tone", "amplitude", 0.1)
    after = _trajectory(engine, "tone", "amplitude", 4, 48)
    steps = np.diff(np.concatenate([[0.5], after]))
    assert np.all(steps < 0) and abs(steps[1] / steps[0] - steps[2] / steps[1]) < 1e-9


def test_a_ramp_to_where_the_parameter_is_leaves_no_slew_behind() -> None:
    # A state change ramps every layer, also those already at their level; a
    # leftover slew made the next plain change crawl for ever.
    engine = Engine(sample_rate=RATE)
    engine.load(tone(440.0, 0.1))
    engine.render(RATE // 10)
    engine.ramp("tone", "amplitude", 0.1, 0.5)
    engine.render(RATE // 10)
    ref = engine.current.param("tone", "amplitude")
    assert engine.current.params[P_SLEW, ref.column] == 0.0
    engine.set("tone", "amplitude", 0.3)
    values = _trajectory(engine, "tone", "amplitude", 100, 48)
    assert values[-1] == pytest.approx(0.3, abs=1e-6)


def test_level_ramp_fades_to_exact_digital_silence() -> None:
    engine = Engine(sample_rate=RATE)
    g = Graph()
    sine = g.node("sine", name="tone", frequency_hz=1000.0, amplitude=0.3)
    g.output(g.node("gain", sine, name="fader"))
    engine.load(g)
    engine.render(RATE // 2)
    engine.ramp("fader", "level", 0.0, 0.5)
    x = engine.render(RATE, block_size=128)[:, 0]
    # Peaks per 10 ms fall in a straight line, then the output is exactly 0.
    peaks = np.abs(x[: RATE // 2]).reshape(50, -1).max(axis=1)
    slope = np.diff(peaks[5:45])
    assert np.all(slope < 0)
    assert np.ptp(slope) < 0.15 * abs(np.mean(slope))
    tail = x[RATE // 2 + 128 + engine.latency_frames + 2000 :]
    assert np.all(tail == 0.0)


@pytest.mark.parametrize("block_size", [64, 100])
def test_slew_contract_moves_at_its_rate_whatever_the_block_size(
    block_size: int,
) -> None:
    engine = Engine(sample_rate=RATE)
    g = Graph()
    g.output(
        g.node(
            "sine",
            name="tone",
            frequency_hz=100.0,
            amplitude=0.1,
            slew_per_s={"frequency_hz": 1000.0},
        )
    )
    engine.load(g)
    engine.set("tone", "frequency_hz", 1100.0)
    n_blocks = RATE // 2 // block_size
    values = _trajectory(engine, "tone", "frequency_hz", n_blocks, block_size)
    seconds = block_size * np.arange(1, n_blocks + 1) / RATE
    np.testing.assert_allclose(values, 100.0 + 1000.0 * seconds, rtol=1e-9)
    # A second jump uses the same contract (a slew contract is not a one-off).
    engine.render(RATE // 2 + block_size)
    engine.set("tone", "frequency_hz", 600.0)
    values = _trajectory(engine, "tone", "frequency_hz", 2, block_size)
    np.testing.assert_allclose(values[-1], 1100.0 - 1000.0 * 2 * block_size / RATE)


def test_asap_events_apply_next_block_and_are_not_late() -> None:
    engine = Engine(sample_rate=RATE)
    engine.load(tone(3000.0, 0.0))
    engine.render(1000)
    engine.schedule(None, "tone", "amplitude", 0.25, kind=EV_SET_NOW)
    x = engine.render(2000, block_size=128)[:, 0]
    # The same as an event stamped with the block's first frame.
    assert onset(x) == onset(render_with_event(1000, 128)) - 1000
    assert engine.ctl[C_EVENTS_LATE] == 0 and engine.ctl[C_EVENTS_APPLIED] == 1


def _render_events(events: list[tuple[int | None, float]], pumped_first: int) -> tuple:
    """Render a silent tone whose amplitude the events set (EV_SET_NOW), the
    first ``pumped_first`` of them pushed into the ring 200 ms ahead before the
    others are scheduled; returns the output and the engine."""
    engine = Engine(sample_rate=RATE)
    engine.load(tone(3000.0, 0.0))
    engine.render(RATE // 2)  # past the first fade-in
    for frame, value in events[:pumped_first]:
        engine.schedule(frame, "tone", "amplitude", value, kind=EV_SET_NOW)
    engine.pump(round(0.2 * RATE))
    assert engine.ring.pending == pumped_first
    for frame, value in events[pumped_first:]:
        engine.schedule(frame, "tone", "amplitude", value, kind=EV_SET_NOW)
    return engine.render(RATE // 4, block_size=128)[:, 0], engine


def test_immediate_event_lands_next_block_behind_pending_timed_events() -> None:
    """Events timed 150 ms ahead wait in the ring; an immediate set pushed
    behind them applies at the very next block, as if it were stamped with
    that block's first frame, and the timed ones still land on their frames."""
    start = RATE // 2
    ahead = start + round(0.15 * RATE)
    timed = [(ahead, 0.0), (ahead + 1000, 0.1)]
    x, engine = _render_events([*timed, (None, 0.25)], pumped_first=2)
    reference, _ = _render_events([(start, 0.25), *timed], pumped_first=0)
    np.testing.assert_array_equal(x, reference)
    # From the first frame of the next block (the sine starts at phase 0).
    latency = engine.latency_frames
    assert not x[:latency].any() and abs(x[latency + 1]) > 0.01
    assert engine.ctl[C_EVENTS_APPLIED] == 3 and engine.ctl[C_EVENTS_LATE] == 0
    assert engine.ring.positions[RING_READ] == engine.ring.positions[RING_WRITE]


def test_timed_event_pushed_after_a_later_one_keeps_its_frame() -> None:
    """The ring need not be in time order: an event due sooner than one
    already waiting there applies on its own frame, not after the other."""
    start = RATE // 2
    later = (start + 7000, 0.0)
    sooner = (start + 2001, 0.25)
    x, engine = _render_events([later, sooner], pumped_first=1)
    reference, _ = _render_events([sooner, later], pumped_first=0)
    np.testing.assert_array_equal(x, reference)
    assert onset(x) == 2001 + engine.latency_frames
    assert engine.ctl[C_EVENTS_LATE] == 0


def test_cancel_withdraws_tagged_events_and_later_ones_with_the_tag_stay() -> None:
    engine = Engine(sample_rate=RATE)
    engine.load(tone(3000.0, 0.0))
    engine.render(1000)
    engine.schedule(5000, "tone", "amplitude", 0.25, kind=EV_SET_NOW, tag="x")
    engine.schedule(5000, "tone", "amplitude", 0.5, kind=EV_SET_NOW, tag="y")
    assert engine.cancel("x") == 1
    assert engine.cancel("x") == 0
    assert engine.cancel("y") == 1
    assert not engine.render(6000)[:, 0].any()  # neither applied
    engine.schedule(9001, "tone", "amplitude", 0.25, kind=EV_SET_NOW, tag="x")
    x = engine.render(4000)[:, 0]
    start = 9001 + engine.latency_frames - 7000
    assert onset(x) in (start, start + 1)  # +1 if the sine starts at a zero
    # Timers cancelled and set again and again (a sleep timer over OSC), due
    # hours ahead: the heap does not keep every cancelled one.
    for _ in range(5000):
        engine.cancel("sleep")
        engine.schedule(10**9, "tone", "amplitude", 0.1, tag="sleep")
    assert len(engine._scheduled) <= 2048
    assert engine.cancel("sleep") == 1


def test_delivering_ahead_hands_events_within_the_horizon_to_the_ring_at_once() -> None:
    """Live, an event due within the pump's horizon goes to the ring on the
    thread that schedules it; later ones wait for the pump. Either way each
    lands on the frame it would offline."""
    horizon = round(0.2 * RATE)
    start = RATE // 2
    timed = [(start + 2001, 0.25), (start + RATE // 4, 0.0), (start + RATE, 0.5)]
    x, _ = _render_events(timed, pumped_first=0)

    engine = Engine(sample_rate=RATE)
    engine.load(tone(3000.0, 0.0))
    engine.render(start)
    engine.deliver_ahead(horizon)
    for frame, value in timed:
        engine.schedule(frame, "tone", "amplitude", value, kind=EV_SET_NOW)
    assert engine.ring.pending == 1  # the first; the others are beyond 200 ms
    engine.schedule(None, "tone", "amplitude", 0.0, kind=EV_SET_NOW)
    assert engine.ring.pending == 2
    y = engine.render(RATE // 4, block_size=128)[:, 0]
    # The immediate set of 0.0 changes nothing: the tone is silent until 2001.
    np.testing.assert_array_equal(y, x)
    assert engine.ctl[C_EVENTS_LATE] == 0
    engine.deliver_ahead(0)
    engine.schedule(None, "tone", "amplitude", 0.5, kind=EV_SET_NOW)
    assert engine.ring.pending == 0  # offline again: the render pumps


def _waiting(engine: Engine, horizon: int, max_wait_s: float | None = None):
    """Run ``engine.wait_for_due`` on a thread (as the event pump does);
    returns an Event set when it returns."""
    returned = threading.Event()

    def run() -> None:
        engine.wait_for_due(horizon, max_wait_s)
        returned.set()

    threading.Thread(target=run, daemon=True).start()
    return returned


def test_the_pump_sleeps_until_the_next_event_nears_or_an_earlier_one_comes() -> None:
    horizon = round(0.2 * RATE)
    engine = Engine(sample_rate=RATE)
    engine.load(tone(3000.0, 0.0))
    engine.render(1000)  # the audio clock stands still at frame 1000 from here
    now = engine.frame

    # Nothing scheduled: it sleeps until woken.
    returned = _waiting(engine, horizon)
    assert not returned.wait(0.3)
    engine.wake_pump()
    assert returned.wait(10.0)

    # The head 60 s beyond the horizon: asleep; an immediate event handed to
    # the ring on the scheduling thread does not wake it.
    engine.deliver_ahead(horizon)
    engine.schedule(now + horizon + 60 * RATE, "tone", "amplitude", 0.1)
    returned = _waiting(engine, horizon)
    engine.schedule(None, "tone", "amplitude", 0.2)
    assert engine.ring.pending == 1
    assert not returned.wait(0.3)
    # An event that becomes the head (0.5 s beyond the horizon) wakes it.
    engine.schedule(now + horizon + RATE // 2, "tone", "amplitude", 0.3)
    assert returned.wait(10.0)
    # Asleep again for that one: it wakes when the head is due by the wall
    # clock (here the audio clock stands still), not before.
    returned = _waiting(engine, horizon)
    assert not returned.wait(0.1)
    assert returned.wait(10.0)
    # Something due within the horizon: no wait at all.
    engine.deliver_ahead(0)
    engine.schedule(now + horizon - 1, "tone", "amplitude", 0.4)
    started_s = time.monotonic()
    engine.wait_for_due(horizon, 30.0)
    assert time.monotonic() - started_s < 10.0
    assert engine.pump(horizon) == 1
