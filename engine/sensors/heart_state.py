"""Heart-rate samples in, a small steady ``HeartState`` out.

    tracker = HeartTracker(start_s=0.0)
    for sample in samples:                 # HeartSample, in time order
        tracker.update(sample)
    state = tracker.state(now_s)           # HeartState(bpm, rr_s, rmssd_ms, ...)

What it does, and why:

- **Artifact rejection.** An RR interval (or a bpm reading) outside
  ``min_bpm..max_bpm``, or more than ``jump_fraction`` (20 %) away from the
  running reference (the median of the last ``reference_beats`` accepted), is
  rejected. A short beat followed by a long one whose sum is about two
  reference intervals is counted as an *ectopic* pair (a premature beat and
  its compensatory pause); other rejections are *jumps*. Rejected values
  never move the reference. When the heart really changes fast (exercise,
  waking), ``reseed_after`` rejected values in a row that agree with each
  other replace the reference and are accepted; the same rule seeds the
  reference from the first ``seed_beats`` values at the start.
- **HRV** is RMSSD over the successive differences of accepted RR intervals
  in the last ``rmssd_window_s`` seconds. A difference spans two adjacent
  beats only: a rejected beat, a disconnection or a silence longer than
  ``timeout_s`` breaks the chain (differences across a gap measure the gap).
- **Heart rate** is 60 / mean RR over ``bpm_window_s`` (or the mean bpm
  reading when the source sends no RR); **trend** is the least-squares slope
  of beat-by-beat heart rate over ``trend_window_s``, in bpm per minute.
- **Quality** is the fraction of recent values accepted (``quality_window_s``).
- **Dropout.** ``connected`` is False when the source says so or has sent
  nothing for ``timeout_s``. When accepted data stops (dropout, or only
  rejected beats), the values hold for ``hold_s`` from the last accepted
  value (or from an explicit disconnect), then relax along a raised-cosine
  ramp to a neutral state over ``relax_s``, so a lost strap neither freezes
  the soundscape nor jerks it.

All times are seconds on the caller's clock, passed in: the same samples give
the same states, whatever the wall clock does.

Threads: a tracker belongs to one control thread (not thread-safe; feed it
from a queue). Never called on the audio thread.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from engine.sensors.samples import HeartSample


@dataclass(frozen=True)
class HeartConfig:
    """Settings of a ``HeartTracker`` (units in the names)."""

    min_bpm: float = 30.0
    max_bpm: float = 220.0
    jump_fraction: float = 0.2
    reference_beats: int = 5
    seed_beats: int = 3
    reseed_after: int = 5
    rmssd_window_s: float = 60.0
    min_rmssd_pairs: int = 5
    bpm_window_s: float = 5.0
    trend_window_s: float = 120.0
    min_trend_span_s: float = 20.0
    quality_window_s: float = 30.0
    timeout_s: float = 3.0
    hold_s: float = 5.0
    relax_s: float = 20.0
    neutral_bpm: float = 70.0
    neutral_rmssd_ms: float = 40.0

    def __post_init__(self) -> None:
        for name in (
            "min_bpm",
            "max_bpm",
            "jump_fraction",
            "rmssd_window_s",
            "bpm_window_s",
            "trend_window_s",
            "quality_window_s",
            "timeout_s",
            "neutral_bpm",
            "neutral_rmssd_ms",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"HeartConfig.{name} must be positive, not {value}")
        for name in ("hold_s", "relax_s", "min_trend_span_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"HeartConfig.{name} must be >= 0, not {value}")
        for name in ("reference_beats", "seed_beats", "reseed_after"):
            if getattr(self, name) < 1:
                raise ValueError(f"HeartConfig.{name} must be at least 1")
        if self.min_bpm >= self.max_bpm:
            raise ValueError(
                f"HeartConfig: min_bpm {self.min_bpm} must be below "
                f"max_bpm {self.max_bpm}"
            )


@dataclass(frozen=True)
class HeartState:
    """What the heart is doing, as the model sees it.

    - ``bpm``: heart rate; ``rr_s``: the last accepted RR interval (or 60/bpm
      when the source gives no RR)
    - ``rmssd_ms``: HRV, RMSSD over the window
    - ``trend_bpm_per_min``: heart-rate slope, positive when rising
    - ``quality``: 0..1, the fraction of recent values accepted
    - ``connected``: the source is connected and talking
    - ``age_s``: seconds since the last accepted value (since the tracker
      started, before any)

    Every number is finite: before any data and after a dropout's relax time
    the values are the neutral state.
    """

    bpm: float
    rr_s: float
    rmssd_ms: float
    trend_bpm_per_min: float
    quality: float
    connected: bool
    age_s: float


ACCEPTED = "accepted"
OUT_OF_RANGE = "out_of_range"
JUMP = "jump"
ECTOPIC = "ectopic"


class _Decision(NamedTuple):
    time_s: float
    value: float
    verdict: str
    starts_chain: bool = False  # no successive difference with the beat before


class _Reference:
    """Accept or reject a stream of values (RR seconds, or bpm) against the
    median of the recently accepted ones; see the module docstring."""

    def __init__(self, config: HeartConfig, low: float, high: float) -> None:
        self.config = config
        self.low = low
        self.high = high
        self.recent: deque[float] = deque(maxlen=config.reference_beats)
        # Values waiting for a decision, with their provisional verdicts.
        self.pending: list[_Decision] = []

    def _agree(self, values: list[float]) -> bool:
        centre = statistics.median(values)
        limit = self.config.jump_fraction * centre
        return all(abs(v - centre) <= limit for v in values)

    def judge(self, time_s: float, value: float) -> list[_Decision]:
        """The decisions this value settles, oldest first: usually its own;
        none while it waits (seeding, or a run of rejections that may yet
        become the new reference); several when waiting values are settled."""
        if not self.low <= value <= self.high:
            return [_Decision(time_s, value, OUT_OF_RANGE)]
        c = self.config
        seeding = not self.recent
        if not seeding:
            reference = statistics.median(self.recent)
            if abs(value - reference) <= c.jump_fraction * reference:
                settled = self.pending
                self.pending = []
                self.recent.append(value)
                return [*settled, _Decision(time_s, value, ACCEPTED)]
        verdict = JUMP
        if not seeding and self.pending:
            previous = self.pending[-1]
            if (
                previous.verdict == JUMP
                and previous.value < reference < value
                and abs(previous.value + value - 2 * reference)
                <= 0.5 * c.jump_fraction * reference
            ):
                self.pending[-1] = previous._replace(verdict=ECTOPIC)
                verdict = ECTOPIC
        self.pending.append(_Decision(time_s, value, verdict))
        need = c.seed_beats if seeding else c.reseed_after
        settled = self.pending[:-need]
        self.pending = self.pending[-need:]
        if len(self.pending) == need and self._agree([d.value for d in self.pending]):
            # A new reference: the waiting values were the heart, not artifacts.
            self.recent.clear()
            self.recent.extend(d.value for d in self.pending)
            confirmed = [
                d._replace(verdict=ACCEPTED, starts_chain=i == 0)
                for i, d in enumerate(self.pending)
            ]
            self.pending = []
            return [*settled, *confirmed]
        return settled

    def reset(self) -> list[_Decision]:
        """Forget the reference (after a gap); waiting values stay rejected."""
        settled, self.pending = self.pending, []
        self.recent.clear()
        return settled


@dataclass
class _Live:
    """The values while data flows, updated at each accepted value."""

    bpm: float
    rr_s: float
    rmssd_ms: float
    trend_bpm_per_min: float


@dataclass
class HeartTracker:
    """Turns ``HeartSample`` values into ``HeartState`` (see module docstring).

    >>> t = HeartTracker(start_s=0.0)
    >>> for i in range(1, 11):
    ...     t.update(HeartSample(i * 1.0, rr_s=(1.0 if i % 2 else 0.98,)))
    >>> s = t.state(10.0)
    >>> round(s.bpm), round(s.rmssd_ms), s.connected, s.quality
    (61, 20, True, 1.0)
    """

    config: HeartConfig = field(default_factory=HeartConfig)
    start_s: float = 0.0

    def __post_init__(self) -> None:
        c = self.config
        self._rr_ref = _Reference(c, 60.0 / c.max_bpm, 60.0 / c.min_bpm)
        self._bpm_ref = _Reference(c, c.min_bpm, c.max_bpm)
        self._rr: deque[tuple[float, float]] = deque()  # accepted (time_s, rr_s)
        self._diffs: deque[tuple[float, float]] = deque()  # (time_s, diff_s**2)
        self._readings: deque[tuple[float, float]] = deque()  # (time_s, bpm)
        self._trend_rr: deque[tuple[float, float]] = deque()  # (time_s, bpm)
        self._trend_readings: deque[tuple[float, float]] = deque()
        self._decisions: deque[tuple[float, bool]] = deque()  # (time_s, accepted)
        self._last_rr: float | None = None  # previous beat, for the next diff
        self._last_time_s = -math.inf
        self._last_any_s: float | None = None
        self._last_accepted_s: float | None = None
        self._source_connected = False
        self._disconnected_at_s: float | None = None
        self._last_beat_s = -math.inf
        # Verdict counts per stream, and the latest RR verdicts, for monitors.
        self.rr_counts = dict.fromkeys((ACCEPTED, OUT_OF_RANGE, JUMP, ECTOPIC), 0)
        self.bpm_counts = dict(self.rr_counts)
        self.rr_verdicts: deque[tuple[float, float, str]] = deque(maxlen=4096)
        neutral = self._neutral()
        self._live = _Live(neutral.bpm, neutral.rr_s, neutral.rmssd_ms, 0.0)

    # -- input -------------------------------------------------------------

    def update(self, sample: HeartSample) -> None:
        """Take one sample. Samples must come in time order."""
        t = sample.time_s
        if not math.isfinite(t):
            raise ValueError(f"heart sample time must be finite, not {t}")
        if t < self._last_time_s:
            raise ValueError(
                f"heart sample at {t} s arrived after one at {self._last_time_s} s: "
                "samples must come in time order"
            )
        if (
            self._last_any_s is not None
            and t - self._last_any_s > self.config.timeout_s
        ):
            self._break_chain()
        self._last_time_s = t
        if sample.connected is False:
            self._source_connected = False
            self._disconnected_at_s = t
            self._last_any_s = t
            self._break_chain()
            return
        if sample.connected is True or sample.has_data or sample.beat:
            self._source_connected = True
            self._disconnected_at_s = None
            self._last_any_s = t
        if sample.rr_s:
            self._add_rr(t, sample.rr_s)
        if sample.bpm is not None:
            self._add_reading(t, float(sample.bpm))

    def _break_chain(self) -> None:
        self._last_rr = None
        for decision in self._rr_ref.reset():
            self._record(decision, is_rr=True)
        for decision in self._bpm_ref.reset():
            self._record(decision, is_rr=False)

    def _add_rr(self, time_s: float, rr_values: tuple[float, ...]) -> None:
        # Several intervals in one sample (BLE sends up to a few per
        # notification) end one after another, the last at time_s.
        for rr in rr_values:
            if not math.isfinite(rr):
                raise ValueError(f"RR interval must be finite, not {rr}")
        end_s = time_s - sum(rr_values)
        for rr in rr_values:
            end_s += rr
            beat_s = min(max(end_s, self._last_beat_s), time_s)
            self._last_beat_s = beat_s
            for decision in self._rr_ref.judge(beat_s, rr):
                self._record(decision, is_rr=True)

    def _add_reading(self, time_s: float, bpm: float) -> None:
        if not math.isfinite(bpm):
            raise ValueError(f"heart rate must be finite, not {bpm}")
        if bpm <= 0:  # many sources send 0 for "no reading"
            return
        for decision in self._bpm_ref.judge(time_s, bpm):
            self._record(decision, is_rr=False)

    def _record(self, decision: _Decision, is_rr: bool) -> None:
        time_s, value, verdict, starts_chain = decision
        if is_rr:
            self.rr_counts[verdict] += 1
            self.rr_verdicts.append((time_s, value, verdict))
        else:
            self.bpm_counts[verdict] += 1
        accepted = verdict == ACCEPTED
        self._decisions.append((time_s, accepted))
        if not accepted:
            if is_rr:
                self._last_rr = None
            return
        if self._last_accepted_s is not None and self.relax_weight(time_s) > 0:
            # Data is back after a dropout: start from what was being output,
            # so values that need more data to refresh do not jump back to
            # their stale pre-dropout numbers.
            now = self.state(time_s)
            self._live = _Live(now.bpm, now.rr_s, now.rmssd_ms, now.trend_bpm_per_min)
        self._last_accepted_s = max(time_s, self._last_accepted_s or -math.inf)
        if is_rr:
            self._rr.append((time_s, value))
            self._trend_rr.append((time_s, 60.0 / value))
            if self._last_rr is not None and not starts_chain:
                self._diffs.append((time_s, (value - self._last_rr) ** 2))
            self._last_rr = value
        else:
            self._readings.append((time_s, value))
            self._trend_readings.append((time_s, value))
        self._refresh(time_s)

    # -- derived values ----------------------------------------------------

    def _refresh(self, now_s: float) -> None:
        c = self.config
        _trim(self._rr, now_s - c.bpm_window_s)
        _trim(self._readings, now_s - c.bpm_window_s)
        _trim(self._diffs, now_s - c.rmssd_window_s)
        _trim(self._trend_rr, now_s - c.trend_window_s)
        _trim(self._trend_readings, now_s - c.trend_window_s)
        live = self._live
        if self._rr:
            live.bpm = 60.0 / (sum(rr for _t, rr in self._rr) / len(self._rr))
            live.rr_s = self._rr[-1][1]
        elif self._readings:
            live.bpm = sum(b for _t, b in self._readings) / len(self._readings)
            live.rr_s = 60.0 / live.bpm
        if len(self._diffs) >= c.min_rmssd_pairs:
            mean_square = sum(d for _t, d in self._diffs) / len(self._diffs)
            live.rmssd_ms = 1000.0 * math.sqrt(mean_square)
        points = self._trend_rr if len(self._trend_rr) >= 3 else self._trend_readings
        if len(points) >= 3 and points[-1][0] - points[0][0] >= c.min_trend_span_s:
            times = np.fromiter((p[0] for p in points), float, len(points))
            rates = np.fromiter((p[1] for p in points), float, len(points))
            times -= times.mean()
            slope_per_s = float(times @ (rates - rates.mean()) / (times @ times))
            live.trend_bpm_per_min = 60.0 * slope_per_s

    def _neutral(self) -> _Live:
        c = self.config
        return _Live(c.neutral_bpm, 60.0 / c.neutral_bpm, c.neutral_rmssd_ms, 0.0)

    def relax_weight(self, now_s: float) -> float:
        """0 while data flows or during the hold, rising to 1 over the relax
        time (raised cosine: no kink where it starts or ends)."""
        c = self.config
        if self._last_accepted_s is None:
            return 1.0
        if self._source_connected and now_s - self._last_accepted_s <= c.timeout_s:
            return 0.0
        lost_s = self._last_accepted_s
        if self._disconnected_at_s is not None:
            lost_s = max(lost_s, self._disconnected_at_s)
        elapsed_s = now_s - lost_s - c.hold_s
        if elapsed_s <= 0:
            return 0.0
        if elapsed_s >= c.relax_s:
            return 1.0
        return 0.5 - 0.5 * math.cos(math.pi * elapsed_s / c.relax_s)

    def state(self, now_s: float) -> HeartState:
        """The state at ``now_s`` (not before the last sample's time)."""
        c = self.config
        connected = (
            self._source_connected
            and self._last_any_s is not None
            and now_s - self._last_any_s <= c.timeout_s
        )
        weight = self.relax_weight(now_s)
        live, neutral = self._live, self._neutral()

        def blend(value: float, rest: float) -> float:
            return value + (rest - value) * weight

        _trim(self._decisions, now_s - c.quality_window_s)
        quality = 0.0
        if self._decisions:
            accepted = sum(1 for _t, ok in self._decisions if ok)
            quality = accepted / len(self._decisions)
        since_s = self._last_accepted_s
        if since_s is None:
            since_s = self.start_s
        return HeartState(
            bpm=blend(live.bpm, neutral.bpm),
            rr_s=blend(live.rr_s, neutral.rr_s),
            rmssd_ms=blend(live.rmssd_ms, neutral.rmssd_ms),
            trend_bpm_per_min=blend(live.trend_bpm_per_min, 0.0),
            quality=quality * (1.0 - weight),
            connected=connected,
            age_s=max(0.0, now_s - since_s),
        )


def _trim(window: deque[tuple[float, Any]], since_s: float) -> None:
    """Drop entries older than ``since_s`` (windows are in time order)."""
    while window and window[0][0] < since_s:
        window.popleft()
