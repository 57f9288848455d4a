"""Timetags to engine frames: an exact linear map that keeps bundle spacing, and
re-anchors only when the audio clock really moved away."""

from __future__ import annotations

import time

import numpy as np
import pytest

from engine.control.frame_clock import FrameClock
from engine.rt.stats import (
    STATS_CALLBACKS,
    STATS_LAST_CALLBACK_START_NS,
    Stats,
)

RATE = 48000


def test_a_fixed_map_keeps_exact_spacing_and_adds_the_latency():
    clock = FrameClock(RATE, anchor=(1000, 5000.0), latency_s=0.05)
    assert clock.frame_at(5000.0) == 1000 + 2400
    assert clock.frame_at(5000.01) - clock.frame_at(5000.0) == 480
    assert clock.frame_at(5001.0) - clock.frame_at(5000.0) == RATE
    assert clock.resyncs == 0


def test_observations_within_tolerance_keep_the_anchor_beyond_it_move_it():
    observed = [(0, 100.0)]
    clock = FrameClock(RATE, lambda: observed[0], latency_s=0.0, tolerance_s=0.02)
    observed[0] = (RATE + 500, 101.0)  # 10 ms of jitter: kept
    assert clock.frame_at(102.0) == 2 * RATE
    assert clock.resyncs == 0
    observed[0] = (RATE + 2000, 101.0)  # 42 ms off: the audio clock moved
    assert clock.frame_at(102.0) == 2 * RATE + 2000
    assert clock.resyncs == 1


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="observe, anchor"):
        FrameClock(RATE)
    with pytest.raises(ValueError, match="latency_s"):
        FrameClock(RATE, anchor=(0, 0.0), latency_s=-1.0)


class _Engine:
    """The two things the clock reads of an engine: its rate and frame."""

    sample_rate = RATE

    def __init__(self) -> None:
        self.frame = 0


class _Live:
    def __init__(self) -> None:
        self.stats = Stats()
        self.block_size = 128


def test_live_clock_follows_the_callbacks_own_times():
    engine, live = _Engine(), _Live()
    clock = FrameClock.for_live(engine, live, latency_s=0.0)
    start = clock.frame_at(time.time())
    assert abs(start - 0) < RATE * 0.01  # before any callback: engine.frame now
    # A callback began 20 ms ago and rendered frames 96000..96128.
    engine.frame = 96128
    live.stats.array[STATS_CALLBACKS] = 750
    live.stats.array[STATS_LAST_CALLBACK_START_NS] = time.monotonic_ns() - 20_000_000
    now_frame = clock.frame_at(time.time())
    assert clock.resyncs == 1
    assert abs(now_frame - (96000 + 960)) < RATE * 0.005
    spacing = [clock.frame_at(100.0 + k * 0.01) for k in range(3)]
    assert np.diff(spacing).tolist() == [480, 480]
