"""Heart-rate processing against hand-computed values: artifact rejection, RMSSD,
heart rate, trend, quality, and the dropout hold/relax timeline."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import pytest

from engine.sensors.heart_state import (
    ACCEPTED,
    ECTOPIC,
    JUMP,
    OUT_OF_RANGE,
    HeartConfig,
    HeartTracker,
)
from engine.sensors.samples import HeartSample


def feed_rr(
    tracker: HeartTracker, rr_s: Sequence[float], start_s: float = 0.0
) -> float:
    """One sample per beat at the beat's end; returns the last beat's time."""
    t = start_s
    for rr in rr_s:
        t += rr
        tracker.update(HeartSample(t, rr_s=(rr,)))
    return t


def rmssd_ms(rr_s: Sequence[float]) -> float:
    diffs = [b - a for a, b in itertools.pairwise(rr_s)]
    return 1000 * math.sqrt(sum(d * d for d in diffs) / len(diffs))


def test_neutral_before_any_data():
    tracker = HeartTracker(start_s=10.0)
    state = tracker.state(12.5)
    config = HeartConfig()
    assert (state.bpm, state.rr_s) == (config.neutral_bpm, 60 / config.neutral_bpm)
    assert (state.rmssd_ms, state.trend_bpm_per_min, state.quality) == (40.0, 0, 0)
    assert state.connected is False
    assert state.age_s == 2.5


def test_rmssd_and_heart_rate_match_hand_computed_values():
    tracker = HeartTracker()
    rr = [0.80, 0.82, 0.79, 0.81, 0.80, 0.83, 0.80]
    end = feed_rr(tracker, rr)
    state = tracker.state(end)
    # Squared differences 4, 9, 4, 1, 9, 9 (x 1e-4 s^2): mean 6e-4 s^2.
    assert state.rmssd_ms == pytest.approx(1000 * math.sqrt(6e-4))
    assert state.rmssd_ms == pytest.approx(rmssd_ms(rr))
    # Heart rate over the last 5 s: the beats ending at 0.80+0.82 s and later.
    in_window = [r for r, t in zip(rr, _ends(rr), strict=True) if t >= end - 5.0]
    assert state.bpm == pytest.approx(60 / (sum(in_window) / len(in_window)))
    assert state.rr_s == 0.80
    assert (state.quality, state.connected, state.age_s) == (1.0, True, 0.0)


def _ends(rr: Sequence[float]) -> list[float]:
    out, t = [], 0.0
    for r in rr:
        t += r
        out.append(t)
    return out


def test_planted_artifacts_are_rejected_and_clean_beats_kept():
    tracker = HeartTracker()
    clean_head = [0.80, 0.81, 0.79, 0.80, 0.82]
    # Premature beat (0.52) and its compensatory pause (1.08): sum 1.60 = 2 x 0.80.
    ectopic_pair = [0.52, 1.08]
    middle = [0.80, 0.79, 0.81]
    jump = [1.05]  # +31 %, alone: a missed beat detection
    out_of_range = [0.2, 2.5]  # 300 and 24 bpm
    tail = [0.80, 0.78, 0.80, 0.81]
    rr = clean_head + ectopic_pair + middle + jump + out_of_range + tail
    feed_rr(tracker, rr)
    expected = (
        [ACCEPTED] * 5
        + [ECTOPIC, ECTOPIC]
        + [ACCEPTED] * 3
        + [JUMP]
        + [OUT_OF_RANGE, OUT_OF_RANGE]
        + [ACCEPTED] * 4
    )
    # Verdicts settle in batches (waiting values), so compare them in time order.
    by_time = sorted(tracker.rr_verdicts)
    assert [r for _t, r, _v in by_time] == rr
    assert [v for _t, _r, v in by_time] == expected
    # RMSSD uses only differences between adjacent accepted beats.
    runs = [clean_head, middle, tail]
    squares = [(b - a) ** 2 for run in runs for a, b in itertools.pairwise(run)]
    state = tracker.state(sum(rr))
    assert state.rmssd_ms == pytest.approx(1000 * math.sqrt(sum(squares) / 9))
    assert state.quality == pytest.approx(12 / 17)
    assert tracker.rr_counts == {ACCEPTED: 12, ECTOPIC: 2, JUMP: 1, OUT_OF_RANGE: 2}


def test_a_sustained_change_reseeds_the_reference():
    tracker = HeartTracker()
    end = feed_rr(tracker, [1.0] * 10)
    end = feed_rr(tracker, [0.6] * 12, end)  # 60 -> 100 bpm in one step
    by_time = sorted(tracker.rr_verdicts)
    # The first five fast beats wait, then agree, and become the reference.
    assert [v for _t, _r, v in by_time[10:]] == [ACCEPTED] * 12
    state = tracker.state(end)
    assert state.bpm == pytest.approx(100.0)
    # The step itself is not a successive difference: RMSSD stays 0.
    assert state.rmssd_ms == pytest.approx(0.0)


def test_seeding_skips_a_first_artifact():
    tracker = HeartTracker()
    feed_rr(tracker, [0.4, 0.9, 0.91, 0.89, 0.9])
    by_time = sorted(tracker.rr_verdicts)
    assert [v for _t, _r, v in by_time] == [JUMP] + [ACCEPTED] * 4


def test_several_rr_in_one_sample_are_spread_back_in_time():
    tracker = HeartTracker()
    tracker.update(HeartSample(3.0, bpm=70.0, rr_s=(0.8, 0.9, 0.85)))
    times = [t for t, _r, _v in tracker.rr_verdicts]
    assert times == pytest.approx([1.25, 2.15, 3.0])


def test_bpm_only_source():
    tracker = HeartTracker()
    for i in range(60):
        tracker.update(HeartSample(float(i), bpm=60.0 + 0.5 * i))  # +30 bpm/min
    state = tracker.state(59.0)
    # Mean of the readings in the last 5 s (t = 54..59).
    assert state.bpm == pytest.approx(60 + 0.5 * (54 + 59) / 2)
    assert state.rr_s == pytest.approx(60 / state.bpm)
    assert state.trend_bpm_per_min == pytest.approx(30.0)
    assert state.rmssd_ms == 40.0  # no RR: HRV stays neutral
    tracker.update(HeartSample(60.0, bpm=0.0))  # "no reading": ignored
    assert tracker.bpm_counts[ACCEPTED] == 60
    assert sum(tracker.bpm_counts.values()) == 60


def steady(tracker: HeartTracker, until_s: float, rr: float = 0.75) -> float:
    """Alternate rr and rr + 20 ms (RMSSD 20 ms) until ``until_s``."""
    t, i = 0.0, 0
    while t + rr < until_s:
        beat = rr + 0.02 * (i % 2)
        t += beat
        i += 1
        tracker.update(HeartSample(t, bpm=60 / beat, rr_s=(beat,)))
    return t


def test_dropout_holds_then_relaxes_to_neutral():
    config = HeartConfig(hold_s=5.0, relax_s=20.0, timeout_s=3.0)
    tracker = HeartTracker(config)
    last = steady(tracker, 100.0)
    live = tracker.state(last)
    assert live.connected and live.rmssd_ms == pytest.approx(20.0)
    assert live.bpm == pytest.approx(60 / 0.76, rel=0.02)
    tracker.update(HeartSample(100.0, connected=False))
    held = tracker.state(104.9)  # within hold_s of the disconnect
    assert held.connected is False
    assert (held.bpm, held.rmssd_ms, held.rr_s) == (live.bpm, live.rmssd_ms, live.rr_s)
    assert held.age_s == pytest.approx(104.9 - last)
    half = tracker.state(115.0)  # half way through the relax time
    neutral_bpm = config.neutral_bpm
    assert half.bpm == pytest.approx((live.bpm + neutral_bpm) / 2)
    assert half.rmssd_ms == pytest.approx((20.0 + 40.0) / 2)
    quarter = tracker.state(110.0)  # raised cosine: 14.6 % of the way
    w = 0.5 - 0.5 * math.cos(math.pi * 5 / 20)
    assert quarter.bpm == pytest.approx(live.bpm + (neutral_bpm - live.bpm) * w)
    done = tracker.state(125.0)
    assert (done.bpm, done.rmssd_ms, done.trend_bpm_per_min) == (neutral_bpm, 40, 0)
    assert done.quality == 0.0
    # Monotonic relax: every step moves toward neutral.
    path = [tracker.state(100 + 0.5 * k).bpm for k in range(60)]
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(path))


def test_silence_times_out_and_holds_from_the_last_beat():
    config = HeartConfig(hold_s=5.0, relax_s=10.0, timeout_s=3.0)
    tracker = HeartTracker(config)
    last = steady(tracker, 50.0)
    live = tracker.state(last)
    assert tracker.state(last + 2.9).connected is True
    assert tracker.state(last + 3.1).connected is False
    assert tracker.state(last + 4.9).bpm == live.bpm  # hold counts from the beat
    assert tracker.state(last + 10.0).bpm == pytest.approx(
        (live.bpm + config.neutral_bpm) / 2
    )
    assert tracker.state(last + 15.0).bpm == config.neutral_bpm


def test_data_after_a_long_dropout_starts_from_the_relaxed_state():
    tracker = HeartTracker(HeartConfig(hold_s=5.0, relax_s=20.0))
    last = steady(tracker, 60.0)
    tracker.update(HeartSample(last, connected=False))
    t = last + 100.0  # long after the relax: neutral, old differences expired
    assert tracker.state(t).rmssd_ms == 40.0
    for rr in (0.9, 0.92, 0.9):
        t += rr
        tracker.update(HeartSample(t, rr_s=(rr,)))
    state = tracker.state(t)
    assert state.connected and state.bpm == pytest.approx(60 / (2.72 / 3))
    # Two differences are not enough for RMSSD: it stays where the relax left it,
    # not back at the stale 20 ms from before the dropout.
    assert state.rmssd_ms == 40.0


def test_beats_that_are_all_rejected_count_as_a_dropout():
    config = HeartConfig(hold_s=2.0, relax_s=10.0, timeout_s=3.0)
    tracker = HeartTracker(config)
    last = steady(tracker, 30.0)
    live = tracker.state(last)
    t = last
    for k in range(12):  # alternating garbage that never agrees with itself
        t += 0.5
        tracker.update(HeartSample(t, rr_s=(0.3 if k % 2 else 1.6,)))
    state = tracker.state(t)
    assert state.connected is True  # the strap talks, but makes no sense
    assert state.age_s == pytest.approx(6.0)
    # 6 s after the last good beat: 2 s hold, then 4 s into a 10 s relax.
    w = 0.5 - 0.5 * math.cos(math.pi * 4 / 10)
    assert state.bpm == pytest.approx(live.bpm + (config.neutral_bpm - live.bpm) * w)
    assert state.quality < 0.7 * live.quality


def test_samples_must_come_in_time_order_and_be_finite():
    tracker = HeartTracker()
    tracker.update(HeartSample(5.0, bpm=60.0))
    with pytest.raises(ValueError, match="4.0 s arrived after one at 5.0 s"):
        tracker.update(HeartSample(4.0, bpm=60.0))
    with pytest.raises(ValueError, match="finite"):
        tracker.update(HeartSample(6.0, bpm=math.nan))
    with pytest.raises(ValueError, match="finite"):
        tracker.update(HeartSample(6.0, rr_s=(math.inf,)))


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("jump_fraction", 0.0, "jump_fraction must be positive"),
        ("hold_s", -1.0, "hold_s must be >= 0"),
        ("max_bpm", 20.0, "min_bpm 30.0 must be below max_bpm 20.0"),
        ("reseed_after", 0, "reseed_after must be at least 1"),
    ],
)
def test_config_errors_name_the_field(field: str, value: float, words: str):
    with pytest.raises(ValueError, match=words):
        HeartConfig(**{field: value})
