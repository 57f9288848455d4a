"""The meter node by measurement: a sine's peak and RMS against theory, the
peak's and RMS's fall in dB/s in silence, the RMS time constant, a burst
shorter than a block, the same readings at the same frame whatever the
blocks (and those of a meter that steps sample by sample), NaN and inf kept
out of the state, and the audio passed through bit for bit."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.dsp.interpreter import render_program
from engine.dsp.kernels_meter import M_FRAMES, M_MEAN_SQUARE, M_PEAK
from engine.dsp.layout import I_N_STATE, I_STATE, INFO_IN_SLOT, INFO_OUT_SLOT
from engine.graph.compile import compile_graph
from engine.graph.graph import Graph, GraphError

SAMPLE_RATES = (44100, 48000)
SINE_RMS_DB = 20.0 * math.log10(math.sqrt(0.5))  # -3.0103 dB


def _program(fs: int = 48000, channels: int = 1, **options):
    g = Graph()
    inp = g.input(channels=channels)
    g.output(g.node("meter", inp, name="m", **options))
    return compile_graph(g, fs, 2048)


def _state(prog) -> np.ndarray:
    row = prog.instr[1]
    return prog.state[row[I_STATE] : row[I_STATE] + row[I_N_STATE]]


def _run(prog, x: np.ndarray, block: int | list[int] = 128):
    """Feed channels-first ``x`` in blocks of ``block`` frames (or of each
    size of a list in turn); returns the output and, per block, the (peak,
    rms) readings in dB at the block's end with the frame it ends on."""
    x = np.atleast_2d(x)
    n = x.shape[1]
    out = np.zeros_like(x)
    in_slot = int(prog.info[INFO_IN_SLOT])
    out_slot = int(prog.info[INFO_OUT_SLOT])
    readings = []
    pos = 0
    state = _state(prog)
    sizes = [block] if isinstance(block, int) else block
    while pos < n:
        m = min(sizes[len(readings) % len(sizes)], n - pos)
        prog.bufs[in_slot : in_slot + x.shape[0], :m] = x[:, pos : pos + m]
        render_program(prog.arrays, float(prog.sample_rate), m)
        out[:, pos : pos + m] = prog.bufs[out_slot : out_slot + x.shape[0], :m]
        pos += m
        readings.append((pos, _db(state[M_PEAK]), _db(math.sqrt(state[M_MEAN_SQUARE]))))
    return out, np.array(readings)


def _db(x: float) -> float:
    return 20.0 * math.log10(x) if x > 0.0 else -math.inf


def _sine(fs: int, seconds: float, amplitude: float, hz: float = 997.0):
    return amplitude * np.sin(2 * np.pi * hz * np.arange(round(fs * seconds)) / fs)


@pytest.mark.parametrize("fs", SAMPLE_RATES)
@pytest.mark.parametrize("amplitude_db", [0.0, -12.0, -40.0])
def test_a_sine_reads_its_peak_and_rms_within_a_tenth_of_a_db(
    fs: int, amplitude_db: float
) -> None:
    amplitude = 10.0 ** (amplitude_db / 20.0)
    # Five time constants of a 100 ms window and more: settled to 0.003 dB.
    _, readings = _run(_program(fs, window_ms=100.0), _sine(fs, 1.0, amplitude))
    peak_db, rms_db = readings[-1, 1], readings[-1, 2]
    assert peak_db == pytest.approx(amplitude_db, abs=0.1)
    assert peak_db <= amplitude_db + 1e-9
    assert rms_db == pytest.approx(amplitude_db + SINE_RMS_DB, abs=0.1)


def test_the_default_window_settles_on_the_sine_rms_too() -> None:
    _, readings = _run(_program(48000), _sine(48000, 3.0, 0.5))
    assert readings[-1, 2] == pytest.approx(_db(0.5) + SINE_RMS_DB, abs=0.01)


def test_stereo_peak_is_the_louder_channel_and_rms_the_mean_over_channels() -> None:
    fs = 48000
    left = _sine(fs, 1.0, 0.5)
    x = np.stack([left, np.zeros_like(left)])
    _, readings = _run(_program(fs, channels=2, window_ms=100.0), x)
    assert readings[-1, 1] == pytest.approx(_db(0.5), abs=0.01)
    # Half the power of the left channel alone: 3.01 dB under its RMS.
    assert readings[-1, 2] == pytest.approx(_db(0.5) + 2 * SINE_RMS_DB, abs=0.05)


@pytest.mark.parametrize("fs", SAMPLE_RATES)
@pytest.mark.parametrize(("fall_db_per_s", "window_ms"), [(20.0, 300.0), (10.0, 50.0)])
def test_in_silence_the_readings_fall_at_the_stated_rates(
    fs: int, fall_db_per_s: float, window_ms: float
) -> None:
    prog = _program(fs, fall_db_per_s=fall_db_per_s, window_ms=window_ms)
    loud = _sine(fs, 1.0, 1.0)
    _run(prog, loud)
    _, readings = _run(prog, np.zeros(fs * 3), block=256)
    t_s = readings[:, 0] / fs
    # Straight lines in dB: fit over the first second and a half.
    early = t_s < 1.5
    peak_slope = np.polyfit(t_s[early], readings[early, 1], 1)[0]
    rms_slope = np.polyfit(t_s[early], readings[early, 2], 1)[0]
    assert peak_slope == pytest.approx(-fall_db_per_s, rel=0.01)
    expected_rms = -10.0 / math.log(10.0) / (window_ms * 1e-3)
    assert rms_slope == pytest.approx(expected_rms, rel=0.01)


def test_silence_lands_on_exact_zero_so_no_subnormal_stays() -> None:
    fs = 48000
    prog = _program(fs)
    _run(prog, _sine(fs, 0.5, 1.0))
    # 300 dB at 20 dB/s is 15 s: then both numbers are flushed to 0.
    _, readings = _run(prog, np.zeros(fs * 16), block=2048)
    state = _state(prog)
    assert state[M_PEAK] == 0.0
    assert state[M_MEAN_SQUARE] == 0.0
    # Before landing, the peak passed -120 dB about 6 s in.
    below = readings[readings[:, 1] < -120.0, 0][0] / fs
    assert below == pytest.approx(6.0, abs=0.1)


@pytest.mark.parametrize("sign", [1.0, -1.0])
@pytest.mark.parametrize("block", [64, 512])
def test_a_burst_shorter_than_a_block_is_caught_and_falls_from_its_own_frame(
    block: int, sign: float
) -> None:
    fs = 48000
    x = np.zeros(fs // 2)
    at = 3 * block + block // 3  # inside a block, not on its edge
    x[at] = 0.8 * sign
    x[at + 1] = -0.3 * sign
    _, readings = _run(_program(fs), x, block)
    held = readings[readings[:, 0] > at]
    # Already fallen for the frames between the burst and the block's end
    # (the reading is the meter's after frame pos - 1).
    assert held[0, 1] == pytest.approx(_db(0.8) - 20.0 * (held[0, 0] - 1 - at) / fs)
    # Then 20 dB/s, counted from the burst's frame at every block's end.
    fallen_db = 20.0 * (held[:, 0] - 1 - at) / fs
    np.testing.assert_allclose(held[:, 1], _db(0.8) - fallen_db, atol=1e-9)
    before = readings[readings[:, 0] <= at]
    assert np.all(np.isneginf(before[:, 1]))


@pytest.mark.parametrize("fs", SAMPLE_RATES)
@pytest.mark.parametrize("window_ms", [50.0, 300.0])
@pytest.mark.parametrize("block", [32, 2048])
def test_the_rms_rises_to_1_minus_1_over_e_in_one_time_constant(
    fs: int, window_ms: float, block: int
) -> None:
    """A step from silence to a steady level: the mean square follows
    1 - exp(-t / tau), so it passes 63.2 % of the level's at t = tau."""
    level = 0.5
    n = round(3 * window_ms * 1e-3 * fs)
    _, readings = _run(_program(fs, window_ms=window_ms), np.full(n, level), block)
    t_s = readings[:, 0] / fs
    mean_square = 10.0 ** (readings[:, 2] / 10.0)
    expected = level**2 * (1.0 - np.exp(-t_s / (window_ms * 1e-3)))
    np.testing.assert_allclose(mean_square, expected, rtol=1e-9)
    # The time constant from the readings alone: ln(1 - ms / level**2) is a
    # straight line of slope -1 / tau (whatever frames the blocks end on).
    remaining = 1.0 - mean_square / level**2
    slope = np.polyfit(t_s[remaining > 1e-6], np.log(remaining[remaining > 1e-6]), 1)[0]
    assert -1.0 / slope == pytest.approx(window_ms * 1e-3, rel=1e-6)


def test_nan_and_inf_do_not_stick_in_the_state_and_pass_through_untouched() -> None:
    fs = 48000
    x = _sine(fs, 1.0, 0.25)
    x[1000] = np.nan
    x[5000] = np.inf
    x[9000] = -np.inf
    prog = _program(fs, window_ms=50.0)
    out, readings = _run(prog, x)
    assert np.all(np.isfinite(readings[:, 1:][readings[:, 1:] > -np.inf]))
    assert readings[-1, 1] == pytest.approx(_db(0.25), abs=0.1)
    assert readings[-1, 2] == pytest.approx(_db(0.25) + SINE_RMS_DB, abs=0.1)
    # The meter only looks: what it passes on is its input, NaN included.
    np.testing.assert_array_equal(out, np.atleast_2d(x))
    state = _state(prog)
    assert np.all(np.isfinite(state))


@pytest.mark.parametrize("block", [1, 63, 64, 65, 512])
def test_the_audio_passes_bit_for_bit_whatever_the_block(block: int) -> None:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 4000)) * 0.3
    out, _ = _run(_program(48000, channels=2), x, block)
    np.testing.assert_array_equal(out, x)


def _per_sample_meter(
    x: np.ndarray, fs: int, fall_db_per_s: float = 20.0, window_ms: float = 300.0
) -> tuple[np.ndarray, np.ndarray]:
    """The ballistics stepped one frame at a time (the meter's definition):
    the linear peak and mean square after each frame."""
    fall = 10.0 ** (-fall_db_per_s / fs / 20.0)
    keep = math.exp(-1.0 / (window_ms * 1e-3 * fs))
    levels = np.abs(np.atleast_2d(x)).max(axis=0)
    squares = np.mean(np.atleast_2d(x) ** 2, axis=0)
    peaks = np.empty_like(levels)
    mean_squares = np.empty_like(levels)
    peak = mean_square = 0.0
    for frame, (level, square) in enumerate(zip(levels, squares, strict=True)):
        peak = max(peak * fall, level)
        mean_square = keep * mean_square + (1.0 - keep) * square
        peaks[frame] = peak
        mean_squares[frame] = mean_square
    return peaks, mean_squares


def _bursty(fs: int, seconds: float) -> np.ndarray:
    """Stereo noise in bursts with clicks: peaks and levels that move inside
    any block."""
    rng = np.random.default_rng(11)
    n = round(fs * seconds)
    envelope = (np.sin(2 * np.pi * 3.0 * np.arange(n) / fs) > 0.3) * 0.4 + 0.05
    x = rng.standard_normal((2, n)) * envelope * 0.3
    x[0, n // 3] = 0.95
    x[1, n // 2 + 7] = -0.9
    return x


BLOCKS = [32, 63, 64, 128, 333, 1024, 2048, [32, 2048, 100, 1, 777]]


@pytest.mark.parametrize("block", BLOCKS, ids=str)
def test_the_readings_at_a_frame_are_the_same_whatever_the_blocks(block) -> None:
    """At every block's end, the peak and the RMS are those of a meter that
    steps sample by sample, to 1e-9 dB (a fall applied at block ends read
    up to 0.85 dB high at 2048 frames): so runs in any blocks agree at any
    frame where their blocks both end."""
    fs = 48000
    x = _bursty(fs, 1.0)
    _, readings = _run(_program(fs, channels=2), x, block)
    peaks, mean_squares = _per_sample_meter(x, fs)
    frames = readings[:, 0].astype(int) - 1
    np.testing.assert_allclose(
        readings[:, 1], 20.0 * np.log10(peaks[frames]), rtol=0, atol=1e-9
    )
    np.testing.assert_allclose(
        readings[:, 2], 10.0 * np.log10(mean_squares[frames]), rtol=0, atol=1e-9
    )


@pytest.mark.parametrize("block", [1, 63, 512, 2048])
def test_a_steady_signal_reads_the_same_whatever_the_block(block: int) -> None:
    fs = 48000
    _, readings = _run(_program(fs, window_ms=100.0), _sine(fs, 1.0, 0.5), block)
    assert readings[-1, 2] == pytest.approx(_db(0.5) + SINE_RMS_DB, abs=0.01)
    # The sine's last crest was at most half a period (0.5 ms) ago.
    assert _db(0.5) - 0.011 <= readings[-1, 1] <= _db(0.5) + 1e-9


def test_the_meter_counts_the_frames_it_measured() -> None:
    prog = _program(48000)
    _run(prog, np.zeros(10_000), [128, 2048, 1])
    assert _state(prog)[M_FRAMES] == 10_000


@pytest.mark.parametrize(
    ("options", "named"),
    [({"fall_db_per_s": 0.0}, "fall_db_per_s"), ({"window_ms": 0.5}, "window_ms")],
)
def test_bad_ballistics_are_refused_naming_the_option(options, named) -> None:
    with pytest.raises(GraphError, match=f"m \\(meter\\).*{named}"):
        _program(48000, **options)
