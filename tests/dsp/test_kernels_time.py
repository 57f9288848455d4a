"""Delay and reverb by their physics.

Delay: exact impulse responses at a tiny sample rate, a null test against a SciPy
reference of the same recursion, the phase and level of a fractional delay, time
and block-size invariance, echo decay and the damping filter's -3 dB point, a
glide without a click, the clamp, and the numerics rules.

Reverb: RT60 from the Schroeder energy decay curve in octave bands, the damping
frequency where the decay time halves, stereo decorrelation, echo density and a
smooth envelope, wet level against decay time, predelay and size, block-size
invariance and the numerics rules.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import butter, lfilter, sosfilt
from scipy.special import erfc

from engine.dsp.interpreter import render_program
from engine.dsp.kernels_time import _R_RINGS, damping_pole
from engine.dsp.layout import (
    I_N_STATE,
    I_STATE,
    INFO_IN_SLOT,
    INFO_OUT_SLOT,
    INFO_OUT_STRIDE,
    P_CURRENT,
    P_GOOD,
    P_START,
    P_TARGET,
)
from engine.graph.compile import compile_graph
from engine.graph.graph import Graph

SAMPLE_RATES = (44100, 48000)
BLOCK_SIZES = (1, 63, 64, 65, 512)
TINY = np.finfo(np.float64).tiny


# Helpers -------------------------------------------------------------------------


def _program(kind: str, fs: int, channels: int = 1, block: int = 2048, **settings):
    """``kind`` fed by an external input of ``channels`` channels.

    ``delay_mod=True`` connects a second input channel to the delay_mod input.
    """
    g = Graph()
    inp = g.input(channels=channels)
    if settings.pop("delay_mod", False):
        node = g.node(kind, inp[0], delay_mod=inp[1], name="fx", **settings)
    else:
        node = g.node(kind, inp, name="fx", **settings)
    g.output(node)
    return compile_graph(g, fs, block)


def _run(prog, x: np.ndarray, block: int = 512, on_block=None) -> np.ndarray:
    """Render ``prog`` with ``x`` ([channels, n]) written into its input."""
    x = np.atleast_2d(x)
    n = x.shape[1]
    out = np.zeros((2, n))
    in_slot = int(prog.info[INFO_IN_SLOT])
    left = int(prog.info[INFO_OUT_SLOT])
    right = left + int(prog.info[INFO_OUT_STRIDE])
    pos = 0
    while pos < n:
        m = min(block, n - pos)
        if on_block is not None:
            on_block(prog, pos)
        prog.bufs[in_slot : in_slot + x.shape[0], :m] = x[:, pos : pos + m]
        render_program(prog.arrays, float(prog.sample_rate), m)
        out[0, pos : pos + m] = prog.bufs[left, :m]
        out[1, pos : pos + m] = prog.bufs[right, :m]
        pos += m
    return out


def _impulse(n: int, at: int = 0) -> np.ndarray:
    x = np.zeros(n)
    x[at] = 1.0
    return x


def _node_state(prog) -> np.ndarray:
    row = prog.instr[prog.node_names.index("fx")]
    return prog.state[row[I_STATE] : row[I_STATE] + row[I_N_STATE]]


def _subnormals(x: np.ndarray) -> int:
    return int(np.count_nonzero((x != 0) & (np.abs(x) < TINY)))


def _set(prog, param: str, value: float) -> None:
    ref = prog.param("fx", param)
    prog.params[P_TARGET, ref.column : ref.column + ref.voices] = value


# Delay ---------------------------------------------------------------------------


def test_delay_impulse_response_exact_at_100_hz() -> None:
    prog = _program("delay", 100, delay_s=0.1, feedback=0.5, mix=1.0)
    y = _run(prog, _impulse(60), block=7)[0]
    want = np.zeros(60)
    want[10::10] = 0.5 ** np.arange(5)
    np.testing.assert_array_equal(y, want)
    # Negative feedback alternates the sign; mix 0.5 keeps half the dry impulse.
    prog = _program("delay", 100, delay_s=0.1, feedback=-0.5, mix=0.5)
    y = _run(prog, _impulse(60), block=7)[0]
    want = np.zeros(60)
    want[0] = 0.5
    want[10::10] = 0.5 * (-0.5) ** np.arange(5)
    np.testing.assert_array_equal(y, want)


@pytest.mark.parametrize("fs", SAMPLE_RATES)
def test_delay_null_against_scipy_reference(fs: int) -> None:
    """Integer delay: w = x + fb * lowpass(w[n - D]), y = (1 - mix) x + mix w[n-D]."""
    delay_samples, fb, mix, damping_hz = 441, 0.7, 0.6, 3000.0
    prog = _program(
        "delay",
        fs,
        delay_s=delay_samples / fs,
        feedback=fb,
        mix=mix,
        damping_hz=damping_hz,
    )
    x = np.random.default_rng(1).standard_normal(fs // 2)
    y = _run(prog, x, block=256)[0]
    p = damping_pole(damping_hz, float(fs))
    a = np.zeros(delay_samples + 1)
    a[0], a[1] = 1.0, -p
    a[delay_samples] -= fb * (1.0 - p)
    w = lfilter([1.0, -p], a, x)
    tap = np.concatenate([np.zeros(delay_samples), w[:-delay_samples]])
    np.testing.assert_allclose(y, (1 - mix) * x + mix * tap, rtol=0, atol=1e-12)


@pytest.mark.parametrize("fs", SAMPLE_RATES)
def test_fractional_delay_shifts_the_phase_of_a_sine(fs: int) -> None:
    freq_hz, delay_samples = 1000.0, 592.37
    prog = _program("delay", fs, delay_s=delay_samples / fs, feedback=0.0, mix=1.0)
    n = np.arange(fs // 2)
    x = np.sin(2 * np.pi * freq_hz / fs * n)
    y = _run(prog, x)[0]
    want = np.sin(2 * np.pi * freq_hz / fs * (n - delay_samples))
    settled = slice(1000, None)
    # Cubic Hermite: within 5e-5 of the exact shifted sine. Rounding the delay to
    # whole samples would be 0.05 off, linear interpolation 2e-3.
    assert np.max(np.abs(y[settled] - want[settled])) < 5e-5


def test_fractional_delay_below_two_samples_is_exact_without_feedback() -> None:
    fs = 48000
    prog = _program("delay", fs, delay_s=1.25 / fs, feedback=0.0, mix=1.0)
    n = np.arange(4800)
    x = np.sin(2 * np.pi * 300.0 / fs * n)
    y = _run(prog, x)[0]
    want = np.sin(2 * np.pi * 300.0 / fs * (n - 1.25))
    assert np.max(np.abs(y[10:] - want[10:])) < 1e-6


@pytest.mark.parametrize("shift", [1, 64])
def test_delay_is_time_invariant(shift: int) -> None:
    fs = 48000
    x = np.random.default_rng(2).standard_normal(fs // 4)
    settings = {"delay_s": 0.0123456, "feedback": 0.8, "mix": 0.7, "damping_hz": 2500.0}
    y = _run(_program("delay", fs, **settings), x)[0]
    x_shifted = np.concatenate([np.zeros(shift), x])
    y_shifted = _run(_program("delay", fs, **settings), x_shifted)[0]
    np.testing.assert_allclose(y_shifted[shift:], y, rtol=0, atol=1e-10)


def test_delay_block_size_invariance_with_audio_rate_modulation() -> None:
    fs = 48000
    n = fs // 2
    rng = np.random.default_rng(3)
    wobble = 0.003 * np.sin(2 * np.pi * 0.7 * np.arange(n) / fs)
    x = np.vstack([rng.standard_normal(n), wobble])
    outs = []
    for block in BLOCK_SIZES:
        prog = _program(
            "delay",
            fs,
            channels=2,
            delay_mod=True,
            voices=1,
            delay_s=0.01,
            feedback=0.6,
            mix=0.5,
            damping_hz=4000.0,
        )
        outs.append(_run(prog, x, block))
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])


def test_delay_feedback_decay_and_damping_cutoff() -> None:
    fs = 48000
    delay_samples = 4800
    damping_hz = 1000.0
    prog = _program(
        "delay",
        fs,
        delay_s=delay_samples / fs,
        feedback=0.9,
        mix=1.0,
        damping_hz=damping_hz,
    )
    y = _run(prog, _impulse(4 * delay_samples))[0]
    echo1 = y[delay_samples : 2 * delay_samples]
    echo2 = y[2 * delay_samples : 3 * delay_samples]
    echo3 = y[3 * delay_samples : 4 * delay_samples]
    freqs = np.fft.rfftfreq(delay_samples, 1 / fs)
    ratio_db = 20 * np.log10(np.abs(np.fft.rfft(echo2)) / np.abs(np.fft.rfft(echo1)))
    # Each round trip: feedback times the one-pole low-pass.
    fb_db = 20 * np.log10(0.9)
    assert ratio_db[freqs == 0.0][0] == pytest.approx(fb_db, abs=0.01)
    assert ratio_db[freqs == damping_hz][0] == pytest.approx(fb_db - 3.0, abs=0.1)
    # The whole curve is the one-pole's |H|: (1 - p)^2 / (1 - 2p cos w + p^2).
    p = damping_pole(damping_hz, float(fs))
    w = 2 * np.pi * freqs / fs
    want_db = fb_db + 10 * np.log10((1 - p) ** 2 / (1 - 2 * p * np.cos(w) + p**2))
    audible = freqs <= 16000.0
    np.testing.assert_allclose(ratio_db[audible], want_db[audible], atol=0.01)
    assert np.sum(echo3) == pytest.approx(0.9**2, rel=1e-9)  # DC gain per trip


def test_damping_at_nyquist_is_transparent() -> None:
    assert damping_pole(24000.0, 48000.0) == 0.0
    assert damping_pole(20000.0, 48000.0) < 0.04
    poles = [damping_pole(f, 48000.0) for f in np.geomspace(20.0, 24000.0, 50)]
    assert np.all(np.diff(poles) < 0) and min(poles) >= 0.0


def test_delay_time_change_glides_without_a_click() -> None:
    fs = 48000
    n = fs // 2
    x = np.sin(2 * np.pi * 100.0 / fs * np.arange(n))

    change = 12800  # a multiple of the block size

    def move(prog, pos):
        if pos == change:
            _set(prog, "delay_s", 0.1005)

    prog = _program("delay", fs, delay_s=0.1, feedback=0.0, mix=1.0)
    y = _run(prog, x, 64, on_block=move)[0]
    steady_slope = 2 * np.pi * 100.0 / fs
    # A 24-sample jump at 100 Hz would step the output by up to 0.31; gliding
    # over ~50 ms it only bends the pitch by a few percent.
    assert np.max(np.abs(np.diff(y[fs // 8 :]))) < 1.1 * steady_slope
    # ...and after the glide the delay is the new one.
    t = np.arange(n)
    want = np.sin(2 * np.pi * 100.0 / fs * (t - 0.1005 * fs))
    assert np.max(np.abs(y[change + 4800 :] - want[change + 4800 :])) < 1e-4
    assert np.max(np.abs(y[: change + 4800] - want[: change + 4800])) > 0.2


def test_delay_is_clamped_to_max_delay_and_refused_beyond_it_at_compile() -> None:
    fs = 1000
    with pytest.raises(ValueError, match="delay_s=3 exceeds max_delay_s=2"):
        _program("delay", fs, delay_s=3.0)
    prog = _program("delay", fs, delay_s=0.5, max_delay_s=1.0, feedback=0.0, mix=1.0)
    prog.set_target("fx", "delay_s", 5.0)
    for field in (P_GOOD, P_START, P_CURRENT):  # jump there at once
        prog.params[field, :] = prog.params[P_TARGET, :]
    y = _run(prog, _impulse(3000))[0]
    assert np.flatnonzero(y)[0] == 1000  # played at max_delay_s
    # And the shortest delay is one sample.
    prog = _program("delay", fs, delay_s=0.0, feedback=0.5, mix=1.0)
    y = _run(prog, _impulse(5))[0]
    np.testing.assert_array_equal(y, [0.0, 1.0, 0.5, 0.25, 0.125])


def test_delay_voices_are_independent() -> None:
    fs = 1000
    g = Graph()
    inp = g.input(channels=1)
    node = g.node(
        "delay", inp, name="fx", voices=2, delay_s=[0.01, 0.02], mix=1.0, feedback=0.0
    )
    g.output(node)
    y = _run(compile_graph(g, fs, 256), _impulse(50))
    assert np.flatnonzero(y[0]).tolist() == [10]
    assert np.flatnonzero(y[1]).tolist() == [20]


def test_delay_bad_values_never_reach_output_or_state() -> None:
    fs = 48000
    prog = _program(
        "delay", fs, channels=2, delay_mod=True, voices=1, feedback=0.95, mix=0.5
    )
    n = fs // 2
    x = np.vstack([np.random.default_rng(4).standard_normal(n), np.zeros(n)])
    x[0, 1000:1010] = [np.nan, np.inf, -np.inf, np.nan, 1e300, 0, 0, 0, 0, 0]
    x[1, 2000:2003] = [np.nan, np.inf, -np.inf]
    for param in ("delay_s", "feedback", "mix", "damping_hz"):
        ref = prog.param("fx", param)
        prog.params[P_TARGET, ref.column] = np.nan
    y = _run(prog, x)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(prog.state))
    assert np.max(np.abs(y)) < 100.0


@pytest.mark.parametrize("fs", SAMPLE_RATES)
def test_delay_silence_after_noise_leaves_no_subnormals(fs: int) -> None:
    prog = _program(
        "delay", fs, voices=1, delay_s=0.0371, feedback=0.97, damping_hz=500.0
    )
    x = np.zeros(120 * fs)
    x[: fs // 2] = np.random.default_rng(5).standard_normal(fs // 2)
    y = _run(prog, x, 2048)
    assert _subnormals(y) == 0 and _subnormals(_node_state(prog)) == 0
    assert np.all(y[:, -fs:] == 0.0)  # it decayed to exact silence


# Reverb --------------------------------------------------------------------------


def _rt60(ir: np.ndarray, fs: int, band_hz: float | None = None) -> float:
    """RT60 from the Schroeder backward-integrated energy decay curve (T30 fit,
    -5 to -35 dB), optionally in one octave band."""
    if band_hz is not None:
        sos = butter(
            3,
            [band_hz / np.sqrt(2), band_hz * np.sqrt(2)],
            "bandpass",
            fs=fs,
            output="sos",
        )
        ir = sosfilt(sos, ir, axis=-1)
    energy = np.sum(np.atleast_2d(ir) ** 2, axis=0)
    edc = np.cumsum(energy[::-1])[::-1]
    edc_db = 10 * np.log10(edc / edc[0])
    start = int(np.argmax(edc_db <= -5.0))
    stop = int(np.argmax(edc_db <= -35.0))
    slope = np.polyfit(np.arange(start, stop) / fs, edc_db[start:stop], 1)[0]
    return -60.0 / slope


def _reverb_ir(fs: int, seconds: float, block: int = 1024, **settings) -> np.ndarray:
    settings = {"predelay_ms": 0.0, "mix": 1.0, **settings}
    prog = _program("reverb", fs, **settings)
    return _run(prog, _impulse(int(seconds * fs)), block)


def _ned(x: np.ndarray) -> float:
    """Normalised echo density (Abel & Huang): 1 for Gaussian noise."""
    return float(np.mean(np.abs(x) > np.std(x)) / erfc(1 / np.sqrt(2)))


@pytest.mark.parametrize("fs", SAMPLE_RATES)
@pytest.mark.parametrize(("decay_s", "damping_hz"), [(1.0, 8000.0), (4.0, 4000.0)])
def test_reverb_rt60_from_energy_decay_curve(
    fs: int, decay_s: float, damping_hz: float
) -> None:
    ir = _reverb_ir(fs, 1.3 * decay_s, decay_s=decay_s, damping_hz=damping_hz)
    # Measured 0.92-1.00 of decay_s in the 500 Hz and 1 kHz octaves, 0.88-0.89
    # broadband (the damped highs pull the full-band decay down a little).
    for band_hz in (500.0, 1000.0):
        assert _rt60(ir, fs, band_hz) == pytest.approx(decay_s, rel=0.15)
    assert _rt60(ir, fs) == pytest.approx(decay_s, rel=0.2)
    # At damping_hz the decay time is designed to halve (measured 0.50-0.53).
    assert _rt60(ir, fs, damping_hz) == pytest.approx(0.5 * decay_s, rel=0.15)
    assert _rt60(ir, fs, 2 * damping_hz if damping_hz < 8000 else 11000.0) < (
        0.5 * decay_s
    )


def test_reverb_tail_is_decorrelated_and_width_zero_is_mono() -> None:
    fs = 48000
    ir = _reverb_ir(fs, 1.0, decay_s=2.0)
    tail = ir[:, int(0.1 * fs) :]
    assert abs(np.corrcoef(tail)[0, 1]) < 0.1  # measured 0.02
    mono = _reverb_ir(fs, 1.0, decay_s=2.0, width=0.0)
    np.testing.assert_allclose(mono[0], mono[1], rtol=0, atol=1e-15)
    # Same energy on both sides (within 1 dB).
    assert 10 * np.log10(np.sum(tail[0] ** 2) / np.sum(tail[1] ** 2)) == pytest.approx(
        0.0, abs=1.0
    )


@pytest.mark.parametrize("size", [0.0, 0.8])
def test_reverb_echo_density_rises_to_noise_and_envelope_is_smooth(size: float) -> None:
    fs = 48000
    ir = _reverb_ir(fs, 0.7, decay_s=2.0, damping_hz=8000.0, size=size)
    window = int(0.02 * fs)
    start = int(np.flatnonzero(ir[0])[0])
    first = _ned(ir[0, start : start + window])
    late = [
        _ned(ir[0, i : i + window]) for i in range(int(0.1 * fs), int(0.6 * fs), window)
    ]
    assert min(late) > 0.8  # Gaussian-like: no discrete echoes left
    assert first < min(late)
    # 5 ms energy envelope after 100 ms: within 3 dB of its exponential fit
    # (a discrete echo would stick out by far more; measured max 1.7 dB).
    win = int(0.005 * fs)
    seg = np.sum(ir[:, int(0.1 * fs) : int(0.6 * fs)] ** 2, axis=0)
    energy_db = 10 * np.log10(seg[: seg.size // win * win].reshape(-1, win).sum(1))
    t = np.arange(energy_db.size)
    resid = energy_db - np.polyval(np.polyfit(t, energy_db, 1), t)
    assert np.max(np.abs(resid)) < 3.0


def test_reverb_wet_level_does_not_grow_with_decay() -> None:
    fs = 48000
    x = np.random.default_rng(6).standard_normal(3 * fs)
    levels = []
    for decay_s in (0.5, 8.0):
        prog = _program("reverb", fs, decay_s=decay_s, damping_hz=20000.0, mix=1.0)
        y = _run(prog, x, 1024)[:, 2 * fs :]
        levels.append(10 * np.log10(np.mean(y**2)))
    assert levels[0] == pytest.approx(levels[1], abs=2.0)
    assert -8.0 < levels[1] < 1.0  # measured about -4 dB re the input


def test_reverb_mix_zero_is_dry_and_mono_input_feeds_both_sides() -> None:
    fs = 48000
    x = np.random.default_rng(7).standard_normal((2, fs // 4))
    y = _run(_program("reverb", fs, channels=2, mix=0.0), x)
    np.testing.assert_array_equal(y, x)
    mono = _run(_program("reverb", fs, channels=1, mix=0.5), x[0])
    both = _run(_program("reverb", fs, channels=2, mix=0.5), np.vstack([x[0], x[0]]))
    np.testing.assert_array_equal(mono, both)


def test_reverb_predelay_and_size_move_the_first_arrival() -> None:
    fs = 48000
    onset = {}
    for predelay_ms, size in ((0.0, 1.0), (100.0, 1.0), (0.0, 0.5)):
        ir = _reverb_ir(fs, 0.3, predelay_ms=predelay_ms, size=size)
        onset[(predelay_ms, size)] = int(np.flatnonzero(np.abs(ir[0]) > 1e-12)[0])
    # The lines' +-0.3 ms modulation moves the first arrival by up to 15 samples.
    assert abs(onset[(100.0, 1.0)] - onset[(0.0, 1.0)] - 4800) <= 15
    # First arrival: shortest line (43.1 ms at size 1, scaled 0.2 + 0.8 size)
    # plus the diffusers' onset; halving size moves it about 60 % of the way.
    assert onset[(0.0, 1.0)] == pytest.approx(0.0431 * fs, abs=0.0015 * fs)
    assert onset[(0.0, 0.5)] == pytest.approx(0.0431 * 0.6 * fs, abs=0.0015 * fs)


def test_reverb_block_size_invariance() -> None:
    fs = 48000
    x = np.random.default_rng(8).standard_normal((2, fs // 3))
    outs = [
        _run(_program("reverb", fs, channels=2, mix=0.5, predelay_ms=7.3), x, block)
        for block in BLOCK_SIZES
    ]
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])


def test_reverb_parameter_moves_are_smooth_and_finite() -> None:
    fs = 48000
    x = np.random.default_rng(9).standard_normal((2, fs))

    def move(prog, pos):
        if pos == 12800:
            for name, value in (("size", 0.1), ("decay_s", 0.5), ("damping_hz", 900.0)):
                _set(prog, name, value)

    prog = _program("reverb", fs, channels=2, mix=1.0)
    y = _run(prog, x, 128, on_block=move)
    assert np.all(np.isfinite(y))
    # The coefficients landed on the new targets (size glides over ~1 s).
    state = _node_state(prog)
    assert state[1] == pytest.approx(0.5, rel=1e-9)
    assert state[2] == pytest.approx(900.0, rel=1e-9)


def test_reverb_bad_values_never_reach_output_or_state() -> None:
    fs = 48000
    prog = _program("reverb", fs, channels=2, mix=0.5)
    x = np.random.default_rng(10).standard_normal((2, fs // 2))
    x[0, 100:104] = [np.nan, np.inf, -np.inf, 1e300]
    x[1, 5000] = np.nan
    for param in ("decay_s", "damping_hz", "size", "predelay_ms", "mix", "width"):
        ref = prog.param("fx", param)
        prog.params[P_TARGET, ref.column : ref.column + 2] = np.nan
    y = _run(prog, x)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(prog.state))
    assert np.max(np.abs(y)) < 20.0


def test_reverb_silence_after_noise_leaves_no_subnormals() -> None:
    fs = 48000
    prog = _program("reverb", fs, channels=2, decay_s=2.0, damping_hz=20000.0)
    x = np.zeros((2, 120 * fs))
    x[:, : fs // 2] = np.random.default_rng(11).standard_normal((2, fs // 2))
    y = _run(prog, x, 2048)
    assert _subnormals(y) == 0 and _subnormals(_node_state(prog)) == 0
    # 60 dB per 2 s: long before the end the tail has reached exact zeros.
    assert np.all(y[:, -10 * fs :] == 0.0)
    assert np.all(_node_state(prog)[_R_RINGS:] == 0.0)
