"""Recorded CSV files: strict parsing with file:line:column errors, replay through
the processing against hand-computed values, and paced real-time replay."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from engine.sensors.heart_state import ACCEPTED, ECTOPIC, HeartTracker
from engine.sensors.replay import (
    ReplayError,
    parse_heart_csv,
    read_heart_csv,
    replay_realtime,
)
from engine.sensors.samples import HeartSample


def test_parses_blank_cells_and_optional_columns(tmp_path: Path):
    path = tmp_path / "rec.csv"
    path.write_text(
        "time_s, bpm ,rr_ms,connected\n"
        "0.0,64,,\n"
        "\n"
        "0.93,,930,\n"
        "1.85,65.5,921,1\n"
        "9.0,,,0\n"
    )
    assert read_heart_csv(path) == [
        HeartSample(0.0, bpm=64.0),
        HeartSample(0.93, rr_s=(0.93,)),
        HeartSample(1.85, bpm=65.5, rr_s=(0.921,), connected=True),
        HeartSample(9.0, connected=False),
    ]
    assert parse_heart_csv("rr_ms,time_s\n800,1\n") == [HeartSample(1.0, rr_s=(0.8,))]


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        ("", "f.csv:1:1", "empty file"),
        ("time_s,bmp\n", "f.csv:1:8", "unknown column 'bmp' (did you mean 'bpm'?)"),
        ("time_s,rr_ms,rr_ms\n", "f.csv:1:14", "column 'rr_ms' twice"),
        ("bpm,rr_ms\n", "f.csv:1:1", "needs time_s"),
        ("time_s,connected\n", "f.csv:1:1", "at least one of bpm, rr_ms"),
        ('"time_s",bpm\n', "f.csv:1:1", "quotes"),
        ("time_s,bpm\n0,60\n1, fast\n", "f.csv:3:4", "column 'bpm': expected a number"),
        ("time_s,rr_ms\n0,800\n1,-5\n", "f.csv:3:3", "column 'rr_ms': expected a pos"),
        ("time_s,rr_ms\n0,0\n", "f.csv:2:3", "positive number of milliseconds"),
        ("time_s,bpm\n0,nan\n", "f.csv:2:3", "expected a number of beats"),
        ("time_s,bpm\n2,60\n1,60\n", "f.csv:3:1", "time 1 s comes after 2 s"),
        ("time_s,bpm\n,60\n", "f.csv:2:1", "column 'time_s': time is required"),
        ("time_s,bpm\n1,60,7\n", "f.csv:2:6", "3 cells, but the header has 2"),
        ("time_s,bpm\n1\n", "f.csv:2:2", "1 cells, but the header has 2"),
        ("time_s,bpm,connected\n1,60,yes\n", "f.csv:2:6", "expected 0 or 1"),
    ],
)
def test_errors_name_file_line_and_column(text: str, where: str, words: str):
    with pytest.raises(ReplayError) as info:
        parse_heart_csv(text, "f.csv")
    message = str(info.value)
    assert message.startswith(where + ":"), message
    assert words in message


def test_unreadable_file_names_the_path(tmp_path: Path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(ReplayError, match=r"nope\.csv:1:1: cannot read"):
        read_heart_csv(missing)


def test_replayed_recording_gives_hand_computed_rejection_and_rmssd():
    # Beats at 800 +- 10 ms, one premature beat with its compensatory pause
    # (500 + 1100 ms) and one 25 % jump; times are the beats' ends.
    rr_ms = [800, 810, 790, 800, 820, 500, 1100, 800, 790, 1000, 800, 810, 800]
    lines, t = ["time_s,rr_ms"], 0.0
    for rr in rr_ms:
        t += rr / 1000
        lines.append(f"{t:.3f},{rr}")
    tracker = HeartTracker()
    for sample in parse_heart_csv("\n".join(lines) + "\n", "beats.csv"):
        tracker.update(sample)
    verdicts = [v for _t, _rr, v in sorted(tracker.rr_verdicts)]
    assert verdicts[5:7] == [ECTOPIC, ECTOPIC]
    assert verdicts[9] == "jump"
    assert verdicts.count(ACCEPTED) == len(rr_ms) - 3
    # Adjacent accepted pairs: 800-810-790-800-820 | 800-790 | 800-810-800.
    diffs_ms = [10, -20, 10, 20, -10, 10, -10]
    expected = math.sqrt(sum(d * d for d in diffs_ms) / len(diffs_ms))
    assert tracker.state(t).rmssd_ms == pytest.approx(expected, abs=1e-6)


def test_realtime_replay_keeps_order_and_pace():
    samples = [HeartSample(10.0 + 0.5 * i, bpm=60.0 + i) for i in range(9)]
    started = time.monotonic()
    out = list(replay_realtime(samples, speed=40.0))
    elapsed = time.monotonic() - started
    assert out == samples  # recorded times kept
    assert elapsed >= 4.0 / 40.0 - 0.005  # never faster than asked


def test_realtime_replay_follows_its_clock():
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    samples = [HeartSample(t, bpm=60.0) for t in (5.0, 6.0, 6.0, 9.0)]
    list(replay_realtime(samples, speed=2.0, clock=lambda: now[0], sleep=sleep))
    assert slept == [0.5, 1.5]
    with pytest.raises(ValueError, match="speed"):
        list(replay_realtime(samples, speed=math.inf))
