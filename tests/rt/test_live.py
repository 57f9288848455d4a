"""The engine played live through the real @cfunc callback on a JACK dummy
server: no dropouts beside a busy Python thread, and bit-identical to offline."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

from engine.demos import DEMOS
from engine.rt.engine import Engine
from engine.rt.live import LivePlayer
from engine.rt.ring import EV_SET_NOW
from engine.rt.stats import host_steal_ms

RATE = 48000
WARMUP_S = 0.5


def _spin(stop: threading.Event) -> None:
    x = 0
    while not stop.is_set():
        x += 1  # pure Python: holds the GIL as much as the interpreter allows


# The bar: every callback on time and no underflow after warm-up. It is
# the bar with SOUNDSCAPE_STRICT_RT=1 (bare metal). CI runs in a nested 2-vCPU VM
# whose host deschedules it for milliseconds at a time: an idle jackd dummy server
# with no client at all logs xruns there (benchmarks/RESULTS.md has the counts),
# so by default a window may lose 2 % of its callbacks to the machine. A Python
# callback that needs the GIL loses ~60 % beside a busy thread (DESIGN.md 1), and
# an engine too slow for its budget loses every deadline: both still fail.
STRICT_RT = os.environ.get("SOUNDSCAPE_STRICT_RT") == "1"
MIN_CALLBACK_RATIO = 0.999 if STRICT_RT else 0.98
MAX_UNDERFLOW_RATIO = 0.0 if STRICT_RT else 0.01  # underflows / callbacks
WINDOW_S = 3.0
MAX_WINDOWS = 5  # a window the host's CPU steal hits is run again


@pytest.mark.parametrize("block_size", [128, 64])
def test_no_underflows_beside_a_busy_python_thread(
    jack_server: str, block_size: int, allowed_overruns
) -> None:
    engine = Engine(sample_rate=RATE)
    engine.load(DEMOS["focus"]())
    player = LivePlayer(engine, block_size=block_size)
    stop = threading.Event()
    spinner = threading.Thread(target=_spin, args=(stop,))
    player.start()
    spinner.start()
    windows = []
    passed = False
    budget_us = 1e6 * block_size / RATE
    try:
        time.sleep(WARMUP_S)
        for _ in range(MAX_WINDOWS):
            steal_before = host_steal_ms()
            warm = player.snapshot()
            time.sleep(WINDOW_S)
            end = player.snapshot()
            steal = host_steal_ms() - steal_before
            run = end.since(warm)
            elapsed_s = (end.last_callback_start_ns - warm.last_callback_start_ns) / 1e9
            expected = elapsed_s * RATE / block_size
            windows.append(
                (
                    run.callbacks,
                    round(expected, 1),
                    run.output_underflows,
                    run.cpu_over_budget,
                    steal,
                )
            )
            assert run.frames_mismatches == 0
            if (
                run.callbacks >= MIN_CALLBACK_RATIO * expected
                and run.output_underflows <= MAX_UNDERFLOW_RATIO * run.callbacks
                # The engine's own part in any miss: a callback whose own CPU
                # time (not time its thread lost the CPU) overran its frames.
                and run.cpu_over_budget == 0
            ):
                passed = True
                break
            # A miss in a window the host took no CPU from is the engine's.
            # Overruns beyond what the host's steal explains are the engine's.
            assert run.cpu_over_budget <= allowed_overruns(steal), windows
            assert steal > 0.0, (
                "deadlines missed while the host took no CPU "
                f"(callbacks run, expected, underflows, overruns, steal ms): {windows}"
            )
    finally:
        stop.set()
        spinner.join()
        player.stop()
    if not passed:
        pytest.skip(
            f"the host took CPU from this VM in every {WINDOW_S} s window, so "
            "deadlines say nothing about the engine "
            f"(callbacks run, expected, underflows, overruns, steal ms): {windows}"
        )
    # The engine's own cost, which no host stall inflates.
    assert end.callback_cpu_us_mean < 0.25 * budget_us, (
        end.callback_cpu_us_mean,
        budget_us,
    )


def test_live_output_is_bit_identical_to_offline_render(jack_server: str) -> None:
    n_frames = RATE  # one second captured from the callback
    events = [
        (12000, "level", "gain_db", -9.0, EV_SET_NOW),
        (30001, "bed_filter", "cutoff_hz", 900.0, EV_SET_NOW),
        (36000, "master.volume", "gain_db", -3.0, EV_SET_NOW),
    ]

    def prepared() -> Engine:
        engine = Engine(sample_rate=RATE, seed=11)
        engine.load(DEMOS["focus"]())
        for frame, node, param, value, kind in events:
            engine.schedule(frame, node, param, value, kind=kind)
        return engine

    live_engine = prepared()
    player = LivePlayer(live_engine, block_size=128, capture_frames=n_frames)
    player.start()
    deadline = time.monotonic() + 5.0
    while live_engine.frame < n_frames + 1024 and time.monotonic() < deadline:
        time.sleep(0.02)
    player.stop()
    live = player.capture.reshape(n_frames, 2)

    offline = prepared().render(n_frames, block_size=128)
    assert np.max(np.abs(offline)) > 1e-3
    np.testing.assert_array_equal(live, offline)


def test_event_pump_sleeps_while_nothing_is_due_and_events_land_live(
    jack_server: str,
) -> None:
    """The pump has no timer: idle, it never wakes (it used to, 100 times a
    second, taking the GIL from whatever else ran); events scheduled while
    playing, beyond its horizon, still land on their exact frames."""
    n_frames = 3 * RATE
    engine = Engine(sample_rate=RATE, seed=11)
    engine.load(DEMOS["focus"]())
    player = LivePlayer(engine, block_size=128, capture_frames=n_frames)
    events: list[tuple[int, str, str, float]] = []
    player.start()
    try:
        time.sleep(0.3)  # the pump frees the silent program the load replaced
        before_idle = player.pump_wakeups
        time.sleep(0.5)
        idle_wakeups = player.pump_wakeups - before_idle
        now = engine.frame
        events = [
            (now + 24001, "level", "gain_db", -9.0),
            (now + 33333, "bed_filter", "cutoff_hz", 900.0),
            (now + 33333, "master.volume", "gain_db", -3.0),
        ]
        for frame, node, param, value in events:
            engine.schedule(frame, node, param, value, kind=EV_SET_NOW)
        deadline = time.monotonic() + 10.0
        while engine.frame < n_frames + 1024 and time.monotonic() < deadline:
            time.sleep(0.02)
        wakeups = player.pump_wakeups - before_idle
        # A scene switch wakes it, to free the program it replaced.
        engine.load(DEMOS["focus"]())
        deadline = time.monotonic() + 10.0
        while engine.retiring and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not engine.retiring
    finally:
        player.stop()
    assert idle_wakeups == 0
    # Woken by the first schedule, then once as each head nears: a few times
    # (a 10 ms timer would have woken ~150 times by now).
    assert wakeups <= 8
    if events[-1][0] + 4096 > n_frames:
        pytest.skip("the machine was too slow to schedule within the capture")
    live = player.capture.reshape(n_frames, 2)
    offline_engine = Engine(sample_rate=RATE, seed=11)
    offline_engine.load(DEMOS["focus"]())
    for frame, node, param, value in events:
        offline_engine.schedule(frame, node, param, value, kind=EV_SET_NOW)
    offline = offline_engine.render(n_frames, block_size=128)
    np.testing.assert_array_equal(live, offline)
    # ... and they did something there.
    untouched = Engine(sample_rate=RATE, seed=11)
    untouched.load(DEMOS["focus"]())
    plain = untouched.render(n_frames, block_size=128)
    first = events[0][0] + untouched.latency_frames
    np.testing.assert_array_equal(plain[:first], offline[:first])
    assert not np.array_equal(plain[first:], offline[first:])
