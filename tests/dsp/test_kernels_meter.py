"""The meter node by measurement: a sine's peak and RMS against theory, the
peak's and RMS's fall in dB/s in silence, a burst shorter than a block, NaN
and inf kept out of the state, and the audio passed through bit for bit."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.dsp.interpreter import render_program
from engine.dsp.kernels_meter import M_MEAN_SQUARE, M_PEAK
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


def _run(prog, x: np.ndarray, block: int = 128):
    """Feed channels-first ``x``; returns the output and, per block, the
    (peak, rms) readings in dB at the block's end with the frame it ends on."""
    x = np.atleast_2d(x)
    n = x.shape[1]
    out = np.zeros_like(x)
    in_slot = int(prog.info[INFO_IN_SLOT])
    out_slot = int(prog.info[INFO_OUT_SLOT])
    readings = []
    pos = 0
    state = _state(prog)
    while pos < n:
        m = min(block, n - pos)
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
def test_a_burst_shorter_than_a_block_is_caught_in_full(
    block: int, sign: float
) -> None:
    fs = 48000
    x = np.zeros(fs // 2)
    at = 3 * block + block // 3  # inside a block, not on its edge
    x[at] = 0.8 * sign
    x[at + 1] = -0.3 * sign
    _, readings = _run(_program(fs), x, block)
    held = readings[readings[:, 0] > at]
    assert held[0, 1] == pytest.approx(_db(0.8), abs=1e-9)
    # Then it falls at 20 dB/s from the end of the block that caught it.
    later = held[held[:, 0] >= at + fs // 4][0]
    fallen_db = 20.0 * (later[0] - held[0, 0]) / fs
    assert 4.0 < fallen_db < 6.0
    assert later[1] == pytest.approx(_db(0.8) - fallen_db, abs=1e-6)
    before = readings[readings[:, 0] <= at]
    assert np.all(np.isneginf(before[:, 1]))


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


@pytest.mark.parametrize("block", [1, 63, 512, 2048])
def test_a_steady_signal_reads_the_same_whatever_the_block(block: int) -> None:
    fs = 48000
    _, readings = _run(_program(fs, window_ms=100.0), _sine(fs, 1.0, 0.5), block)
    assert readings[-1, 2] == pytest.approx(_db(0.5) + SINE_RMS_DB, abs=0.01)
    # The peak is at most one block's fall under the sine's (0.85 dB at 2048).
    assert _db(0.5) - 0.9 <= readings[-1, 1] <= _db(0.5) + 1e-9


@pytest.mark.parametrize(
    ("options", "named"),
    [({"fall_db_per_s": 0.0}, "fall_db_per_s"), ({"window_ms": 0.5}, "window_ms")],
)
def test_bad_ballistics_are_refused_naming_the_option(options, named) -> None:
    with pytest.raises(GraphError, match=f"m \\(meter\\).*{named}"):
        _program(48000, **options)
