"""Oscillators by their physics: frequency, harmonics, aliasing, DC, FM, start-up,
block-size invariance and bad values on the fm input."""

from __future__ import annotations

import numpy as np
import pytest

from engine.dsp.layout import INFO_IN_SLOT, P_TARGET
from engine.graph.compile import compile_graph
from engine.graph.graph import Graph
from engine.rt.render import render_graph

SAMPLE_RATES = (44100, 48000)
BLEP_KINDS = ("saw", "square", "triangle")
BLOCK_SIZES = (1, 63, 64, 65, 512)


def _render(kind: str, n: int, fs: int = 48000, block: int = 256, **settings):
    g = Graph()
    g.output(g.node(kind, **settings))
    return render_graph(g, n, block, fs)[0]


def _peak_hz(x: np.ndarray, fs: float) -> float:
    """Frequency of the strongest FFT bin, refined by a parabola through the
    log magnitudes of it and its neighbours (Hann window)."""
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    k = int(np.argmax(spectrum[1:])) + 1
    a, b, c = np.log(spectrum[k - 1 : k + 2])
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * fs / len(x)


def _line_powers(x: np.ndarray, fs: float, f0: float) -> tuple[np.ndarray, float]:
    """Power of each harmonic of ``f0`` below Nyquist, and of everything else
    (DC excluded), from a Blackman-windowed FFT; each line is summed over +-30 Hz."""
    spectrum = np.abs(np.fft.rfft(x * np.blackman(len(x)))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1.0 / fs)
    on_line = np.abs(freqs) < 30.0
    harmonics = []
    for k in range(1, int(fs / 2 / f0) + 1):
        near = np.abs(freqs - k * f0) < 30.0
        harmonics.append(spectrum[near].sum())
        on_line |= near
    return np.array(harmonics), float(spectrum[~on_line].sum())


def _naive_saw(fs: float, f0: float, n: int) -> np.ndarray:
    phase = (np.arange(n) * f0 / fs) % 1.0
    return 2.0 * phase - 1.0


@pytest.mark.parametrize("fs", SAMPLE_RATES)
@pytest.mark.parametrize("kind", ("sine", *BLEP_KINDS))
def test_fundamental_frequency_by_fft(kind: str, fs: int) -> None:
    x = _render(kind, fs, fs, frequency_hz=1234.5)
    assert _peak_hz(x, fs) == pytest.approx(1234.5, abs=0.1)


def test_saw_aliases_are_40_db_below_the_fundamental_where_naive_is_not() -> None:
    fs, f0 = 48000, 5000.0
    x = _render("saw", fs, fs, frequency_hz=f0)[1000:]
    harmonics, alias = _line_powers(x, fs, f0)
    alias_db = 10 * np.log10(alias / harmonics[0])
    naive_harmonics, naive_alias = _line_powers(_naive_saw(fs, f0, len(x)), fs, f0)
    naive_db = 10 * np.log10(naive_alias / naive_harmonics[0])
    assert naive_db > -10.0  # the naive saw folds back its harmonics 5, 6, 7...
    assert alias_db < -40.0  # measured: -88 dB
    assert alias_db < naive_db - 60.0


@pytest.mark.parametrize("fs", SAMPLE_RATES)
@pytest.mark.parametrize("kind", BLEP_KINDS)
@pytest.mark.parametrize("f0", (3100.0, 5000.0, 7300.0))
def test_aliases_stay_40_db_down(kind: str, fs: int, f0: float) -> None:
    x = _render(kind, fs, fs, frequency_hz=f0)[1000:]
    harmonics, alias = _line_powers(x, fs, f0)
    assert 10 * np.log10(alias / harmonics[0]) < -40.0


@pytest.mark.parametrize("fs", SAMPLE_RATES)
def test_saw_harmonics_fall_as_one_over_n(fs: int) -> None:
    x = _render("saw", fs, fs, frequency_hz=1000.0)[1000:]
    harmonics, _ = _line_powers(x, fs, 1000.0)
    n = np.arange(1, 6)
    level_db = 10 * np.log10(harmonics[:5] / harmonics[0])
    np.testing.assert_allclose(level_db, -20 * np.log10(n), atol=0.05)
    # The fundamental itself: a saw of peak 1 has a first harmonic of 2/pi
    # (Parseval: a line of amplitude A sums to A^2/4 * N * sum(w^2)).
    window_power = len(x) * np.sum(np.blackman(len(x)) ** 2)
    amplitude = 2.0 * np.sqrt(harmonics[0] / window_power)
    assert amplitude == pytest.approx(2 / np.pi, rel=0.005)


def test_saw_harmonics_near_nyquist_keep_their_level() -> None:
    # 5 kHz at 48 kHz: harmonics up to 15 kHz within 0.1 dB of 1/n, 20 kHz within 1.
    x = _render("saw", 48000, 48000, frequency_hz=5000.0)[1000:]
    harmonics, _ = _line_powers(x, 48000, 5000.0)
    error_db = 10 * np.log10(harmonics[:4] / harmonics[0]) + 20 * np.log10(
        np.arange(1, 5)
    )
    assert np.all(np.abs(error_db[:3]) < 0.1)
    assert abs(error_db[3]) < 1.0


@pytest.mark.parametrize("fs", SAMPLE_RATES)
def test_square_has_no_dc_and_no_even_harmonics_at_half_width(fs: int) -> None:
    x = _render("square", fs, fs, frequency_hz=1000.0, pulse_width=0.5)
    assert abs(x.mean()) < 1e-3
    harmonics, _ = _line_powers(x[1000:], fs, 1000.0)
    level_db = 10 * np.log10(harmonics[:6] / harmonics[0])
    assert level_db[1] < -80 and level_db[3] < -80 and level_db[5] < -80
    assert level_db[2] == pytest.approx(-20 * np.log10(3), abs=0.05)
    assert level_db[4] == pytest.approx(-20 * np.log10(5), abs=0.05)


@pytest.mark.parametrize("width", (0.1, 0.25, 0.8))
def test_pulse_width_sets_mean_and_spectrum(width: float) -> None:
    fs = 48000
    x = _render("square", fs, fs, frequency_hz=1000.0, pulse_width=width)
    assert x.mean() == pytest.approx(2 * width - 1, abs=2e-3)
    # A pulse's k-th harmonic is proportional to |sin(pi k width)| / k.
    harmonics, _ = _line_powers(x[1000:], fs, 1000.0)
    k = np.arange(1, 4)
    expected = np.abs(np.sin(np.pi * k * width)) / k
    np.testing.assert_allclose(
        np.sqrt(harmonics[:3] / harmonics[0]), expected / expected[0], rtol=0.01
    )


def test_triangle_harmonics_fall_as_one_over_n_squared_odd_only() -> None:
    x = _render("triangle", 48000, 48000, frequency_hz=1000.0)[1000:]
    harmonics, _ = _line_powers(x, 48000, 1000.0)
    level_db = 10 * np.log10(harmonics[:5] / harmonics[0])
    assert level_db[2] == pytest.approx(-40 * np.log10(3), abs=0.05)
    assert level_db[4] == pytest.approx(-40 * np.log10(5), abs=0.05)
    assert level_db[1] < -80 and level_db[3] < -80


def test_waveform_shapes_and_phase_match_the_documentation() -> None:
    # At 48 Hz the band-limiting is invisible away from the edges: compare the
    # samples a quarter period from any jump with the naive shapes.
    fs, f0, n = 48000, 48.0, 4000
    phase = (np.arange(n) * f0 / fs) % 1.0
    away = np.abs(((phase * 4) % 1.0) - 0.5) < 0.4
    naive = {
        "saw": 2 * phase - 1,
        "square": np.where(phase < 0.5, 1.0, -1.0),
        "triangle": np.where(
            phase < 0.25,
            4 * phase,
            np.where(phase < 0.75, 2 - 4 * phase, 4 * phase - 4),
        ),
        "sine": np.sin(2 * np.pi * phase),
    }
    for kind, want in naive.items():
        got = _render(kind, n, fs, frequency_hz=f0)
        np.testing.assert_allclose(got[away], want[away], atol=2e-3, err_msg=kind)


@pytest.mark.parametrize("kind", ("sine", *BLEP_KINDS))
def test_fm_input_adds_hertz(kind: str) -> None:
    fs = 48000
    g = Graph()
    shift = g.node("lfo", rate_hz=0.0, depth=0.0, offset=250.0)
    g.output(g.node(kind, shift, frequency_hz=1000.0))
    x = render_graph(g, fs, 256, fs)[0]
    assert _peak_hz(x, fs) == pytest.approx(1250.0, abs=0.1)


@pytest.mark.parametrize("kind", BLEP_KINDS)
def test_fm_through_zero_runs_backwards_and_stays_band_limited(kind: str) -> None:
    fs = 48000
    g = Graph()
    shift = g.node("lfo", rate_hz=0.0, depth=0.0, offset=-6000.0)
    g.output(g.node(kind, shift, frequency_hz=1000.0))  # -5000 Hz
    x = render_graph(g, fs, 256, fs)[0][1000:]
    assert _peak_hz(x, fs) == pytest.approx(5000.0, abs=0.1)
    harmonics, alias = _line_powers(x, fs, 5000.0)
    assert 10 * np.log10(alias / harmonics[0]) < -40.0


def test_saw_with_negative_frequency_ramps_down() -> None:
    # 1000 Hz + fm -1500 Hz: the phase runs backwards at 500 Hz, so the ramp
    # falls by 2 * 500 / fs per sample and jumps up once a period.
    fs = 48000
    g = Graph()
    shift = g.node("lfo", rate_hz=0.0, depth=0.0, offset=-1500.0)
    g.output(g.node("saw", shift, frequency_hz=1000.0))
    steps = np.diff(render_graph(g, 4800, 256, fs)[0])
    assert np.median(steps) == pytest.approx(-2 * 500 / fs, rel=1e-6)
    # One (band-limited, two-sample) jump per period.
    jumps = np.sum(np.diff((steps > 0.2).astype(int)) == 1)
    assert jumps == pytest.approx(50, abs=1)


def test_fm_from_a_sine_makes_bessel_sidebands() -> None:
    # Linear FM: carrier 6 kHz, modulator 500 Hz, deviation 500 Hz (index 1):
    # lines at 6000 + k * 500 Hz with amplitudes |J_k(1)|.
    from scipy.special import jv

    fs = 48000
    g = Graph()
    mod = g.node("lfo", rate_hz=500.0, depth=500.0)
    g.output(g.node("sine", mod, frequency_hz=6000.0))
    x = render_graph(g, fs, 256, fs)[0]
    spectrum = np.abs(np.fft.rfft(x * np.blackman(fs)))
    lines = np.array([spectrum[6000 + k * 500] for k in range(-2, 3)])
    np.testing.assert_allclose(
        lines / lines[2], np.abs(jv(np.arange(-2, 3), 1.0)) / jv(0, 1.0), rtol=0.01
    )


@pytest.mark.parametrize("kind", ("sine", *BLEP_KINDS))
def test_block_size_invariance(kind: str) -> None:
    renders = []
    for block in BLOCK_SIZES:
        g = Graph()
        mod = g.node("lfo", rate_hz=3.0, depth=800.0)
        g.output(g.node(kind, mod, frequency_hz=2345.6, phase=0.3, voices=2)[0:2])
        renders.append(render_graph(g, 6000, block, 48000))
    for block, other in zip(BLOCK_SIZES[1:], renders[1:], strict=True):
        assert np.array_equal(renders[0], other), block


@pytest.mark.parametrize("kind", BLEP_KINDS)
def test_first_sample_is_already_the_steady_state(kind: str) -> None:
    # A fresh oscillator at phase p must match one that started 1000 samples
    # earlier and has reached p: the initialiser pre-runs the look-ahead.
    fs, f0 = 48000, 1234.5
    dt = f0 / fs
    fresh = _render(kind, 2000, fs, frequency_hz=f0, phase=0.3)
    early = _render(kind, 3000, fs, frequency_hz=f0, phase=(0.3 - 1000 * dt) % 1.0)
    np.testing.assert_allclose(fresh, early[1000:], atol=1e-9)


def test_sine_fast_path_matches_the_modulated_path_exactly() -> None:
    # An unmodulated sine takes a shortcut; with fm and pm wired to a zero signal
    # it takes the general loop. Both must give the same samples, frequency
    # glide included: to the last bit of the fixed-point phase (LLVM may fuse
    # the glide's multiply-adds differently in the two loops; measured 1.5e-12).
    def render(connect: bool) -> np.ndarray:
        g = Graph()
        zero = g.node("lfo", rate_hz=0.0, depth=0.0, offset=0.0)
        inputs = {"fm": zero, "pm": zero} if connect else {}
        g.output(
            g.node("sine", name="osc", frequency_hz=[441.0, 20000.0], **inputs)[0:2]
        )
        prog = compile_graph(g, 22050, 64)
        first = render_graph(prog, 3000, 64)
        prog.set_target("osc", "frequency_hz", 23999.0)  # above Nyquist: wraps
        return np.concatenate([first, render_graph(prog, 3000, 64)], axis=1)

    np.testing.assert_allclose(render(False), render(True), rtol=0, atol=1e-10)


def test_voices_run_their_own_frequencies() -> None:
    fs = 48000
    g = Graph()
    g.output(g.node("saw", frequency_hz=[300.0, 700.0])[0:2])
    out = render_graph(g, fs, 256, fs)
    assert _peak_hz(out[0], fs) == pytest.approx(300.0, abs=0.1)
    assert _peak_hz(out[1], fs) == pytest.approx(700.0, abs=0.1)


@pytest.mark.parametrize("kind", ("sine", *BLEP_KINDS))
def test_bad_values_on_fm_or_parameters_never_reach_the_output(kind: str) -> None:
    fs = 48000
    g = Graph()
    fm = g.input(channels=1)
    g.output(g.node(kind, fm, name="osc", frequency_hz=440.0))
    prog = compile_graph(g, fs, 256)
    in_slot = int(prog.info[INFO_IN_SLOT])
    for bad in (np.nan, np.inf, -np.inf):
        prog.bufs[in_slot, :] = bad
        assert np.all(np.isfinite(render_graph(prog, 1024, 256)))
    ref = prog.param("osc", "frequency_hz")
    prog.params[P_TARGET, ref.column] = np.nan
    prog.bufs[in_slot, :] = 0.0
    after = render_graph(prog, fs, 256)[0]
    assert np.all(np.isfinite(after))
    assert np.all(np.isfinite(prog.state))
    # ...and the oscillator recovers: still 440 Hz.
    assert _peak_hz(after, fs) == pytest.approx(440.0, abs=0.2)


def test_sine_bad_values_on_pm_never_reach_the_output() -> None:
    g = Graph()
    pm = g.input(channels=1)
    g.output(g.node("sine", pm=pm, frequency_hz=440.0))
    prog = compile_graph(g, 48000, 256)
    in_slot = int(prog.info[INFO_IN_SLOT])
    for bad in (np.nan, np.inf, -np.inf, -1e-300):
        prog.bufs[in_slot, :] = bad
        out = render_graph(prog, 1024, 256)
        assert np.all(np.isfinite(out)) and np.max(np.abs(out)) <= 1.0
