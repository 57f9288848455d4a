"""Filters by their physics: gain at the cutoff, slopes, analog-prototype responses
(bilinear transform), resonance, self-oscillation, DC removal, null tests against
SciPy, bank independence, block-size invariance and bad values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import signal

from engine.dsp.interpreter import render_program
from engine.dsp.kernels_filter import (
    LADDER_MAX_FEEDBACK,
    SVF_MODES,
    fast_tan,
    fast_tanh,
)
from engine.dsp.layout import I_N_STATE, I_OUT, I_STATE, I_VOICES, P_TARGET
from engine.graph.compile import compile_graph
from engine.graph.graph import Graph
from engine.graph.program import Program

SAMPLE_RATES = (44100, 48000)
BLOCK_SIZES = (1, 63, 64, 65, 512)
ALL_FILTERS = (
    "onepole_lowpass",
    "onepole_highpass",
    "svf",
    "rlpf",
    "ladder",
    "dc_blocker",
)
MODULATED = ("svf", "rlpf", "ladder")
TINY = np.finfo(np.float64).tiny


# ------------------------------------------------------------------------------
# Harness: feed arrays through "input" nodes, read every voice of the filter.
# ------------------------------------------------------------------------------


def _program(
    kind: str,
    voices: int = 1,
    fs: int = 48000,
    block: int = 2048,
    mod_channels: int = 0,
    **settings,
) -> Program:
    g = Graph()
    source = g.input(channels=voices, name="in")
    if mod_channels:
        settings["cutoff_mod"] = g.input(channels=mod_channels, name="mod")
    node = g.node(kind, source, name="f", voices=voices, **settings)
    g.output(node[0])
    return compile_graph(g, sample_rate=fs, max_block_size=block)


def _row(prog: Program, name: str) -> np.ndarray:
    return prog.instr[prog.node_names.index(name)]


def _state(prog: Program) -> np.ndarray:
    row = _row(prog, "f")
    return prog.state[row[I_STATE] : row[I_STATE] + row[I_N_STATE]]


def _run(
    prog: Program,
    x: np.ndarray,
    mod: np.ndarray | None = None,
    block: int = 512,
) -> np.ndarray:
    """Render ``x`` ([voices or 1, n]) through node "f"; returns [voices, n]."""
    x = np.atleast_2d(x)
    n = x.shape[1]
    row = _row(prog, "f")
    voices, out = int(row[I_VOICES]), int(row[I_OUT])
    in_slot = int(_row(prog, "in")[I_OUT])
    mod_slot = int(_row(prog, "mod")[I_OUT]) if mod is not None else 0
    if mod is not None:
        mod = np.atleast_2d(mod)
    y = np.empty((voices, n))
    bufs, arrays = prog.bufs, prog.arrays
    for pos in range(0, n, block):
        nb = min(block, n - pos)
        bufs[in_slot : in_slot + x.shape[0], :nb] = x[:, pos : pos + nb]
        if mod is not None:
            bufs[mod_slot : mod_slot + mod.shape[0], :nb] = mod[:, pos : pos + nb]
        render_program(arrays, float(prog.sample_rate), nb)
        y[:, pos : pos + nb] = bufs[out : out + voices, :nb]
    return y


def _impulse_response(kind: str, fs: int, n: int = 1 << 15, amp: float = 1.0, **kw):
    x = np.zeros(n)
    x[0] = amp
    return _run(_program(kind, fs=fs, **kw), x)[0] / amp


def _response_db(h: np.ndarray, freqs_hz, fs: float) -> np.ndarray:
    """Magnitude (dB) of an impulse response at exact frequencies (DTFT)."""
    n = np.arange(len(h))
    freqs = np.atleast_1d(np.asarray(freqs_hz, dtype=float))
    z = np.exp(-2j * np.pi * np.outer(freqs, n) / fs)
    return 20.0 * np.log10(np.abs(z @ h))


def _bilinear_db(analog, freqs_hz, cutoff_hz: float, fs: float) -> np.ndarray:
    """Analog prototype ``analog(s)`` (s normalised to the cutoff) seen through the
    bilinear transform pre-warped at the cutoff."""
    freqs = np.atleast_1d(np.asarray(freqs_hz, dtype=float))
    s = 1j * np.tan(np.pi * freqs / fs) / np.tan(np.pi * cutoff_hz / fs)
    return 20.0 * np.log10(np.abs(analog(s)))


def _noise(n: int, seed: int = 1, voices: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (voices, n))


# ------------------------------------------------------------------------------
# Approximations
# ------------------------------------------------------------------------------


def test_fast_tan_and_tanh_accuracy() -> None:
    w = np.linspace(1e-6, 0.49 * np.pi, 20001)
    tan_err = max(abs(fast_tan(x) / math.tan(x) - 1.0) for x in w)
    assert tan_err < 5e-12
    x = np.linspace(-8.0, 8.0, 20001)
    th = np.array([fast_tanh(v) for v in x])
    assert np.max(np.abs(th - np.tanh(x))) < 1e-4
    assert np.all(np.diff(th) >= 0.0) and np.max(np.abs(th)) <= 1.0
    near = np.abs(x) < 3.0
    assert np.max(np.abs(th[near] - np.tanh(x[near]))) < 1e-6


# ------------------------------------------------------------------------------
# One-pole low/high-pass and DC blocker
# ------------------------------------------------------------------------------


@pytest.mark.parametrize("fs", SAMPLE_RATES)
@pytest.mark.parametrize("kind", ("onepole_lowpass", "onepole_highpass"))
@pytest.mark.parametrize("cutoff_hz", (100.0, 1000.0, 8000.0))
def test_onepole_is_3_db_down_at_cutoff(kind: str, fs: int, cutoff_hz: float) -> None:
    h = _impulse_response(kind, fs, cutoff_hz=cutoff_hz)
    assert _response_db(h, cutoff_hz, fs)[0] == pytest.approx(-3.0103, abs=0.005)


@pytest.mark.parametrize("fs", SAMPLE_RATES)
def test_onepole_lowpass_slope_is_6_db_per_octave_above_cutoff(fs: int) -> None:
    h = _impulse_response("onepole_lowpass", fs, cutoff_hz=50.0)
    g1, g2, g4 = _response_db(h, [1000.0, 2000.0, 4000.0], fs)
    assert g1 - g2 == pytest.approx(6.02, abs=0.1)
    assert g2 - g4 == pytest.approx(6.02, abs=0.25)  # bilinear warping steepens it
    # Highpass: flat far above the cutoff, the complement below.
    hp = _impulse_response("onepole_highpass", fs, cutoff_hz=50.0)
    assert abs(_response_db(hp, 4000.0, fs)[0]) < 0.01


@pytest.mark.parametrize("kind", ("onepole_lowpass", "onepole_highpass"))
def test_onepole_nulls_against_scipy_bilinear(kind: str) -> None:
    fs, fc = 48000, 700.0
    wc = 2.0 * fs * math.tan(math.pi * fc / fs)
    b_analog = [1.0, 0.0] if kind == "onepole_highpass" else [0.0, wc]
    b, a = signal.bilinear(b_analog, [1.0, wc], fs)
    x = _noise(20000)[0]
    y = _run(_program(kind, fs=fs, cutoff_hz=fc), x)[0]
    assert np.max(np.abs(y - signal.lfilter(b, a, x))) < 1e-10


@pytest.mark.parametrize("fs", SAMPLE_RATES)
def test_dc_blocker_removes_dc_and_passes_100_hz(fs: int) -> None:
    n = 3 * fs
    t = np.arange(n) / fs
    sine = 0.5 * np.sin(2 * np.pi * 100.0 * t)
    y = _run(_program("dc_blocker", fs=fs), 0.5 + sine)[0]
    tail = y[-fs:]  # one second: exactly 100 periods of the sine
    assert 20 * np.log10(abs(tail.mean()) / 0.5 + 1e-300) < -80.0
    h = _impulse_response("dc_blocker", fs, n=1 << 17)
    assert abs(_response_db(h, 100.0, fs)[0]) < 0.05
    assert _response_db(h, 10.0, fs)[0] == pytest.approx(-3.0103, abs=0.01)


# ------------------------------------------------------------------------------
# State-variable filter
# ------------------------------------------------------------------------------


def _rbj(mode: str, q: float, gain_db: float):
    """RBJ-cookbook analog prototypes, s normalised to the cutoff."""
    a = 10.0 ** (gain_db / 40.0)
    sa = math.sqrt(a)
    shapes = {
        "lowpass": lambda s: 1 / (s * s + s / q + 1),
        "highpass": lambda s: s * s / (s * s + s / q + 1),
        "bandpass": lambda s: (s / q) / (s * s + s / q + 1),
        "notch": lambda s: (s * s + 1) / (s * s + s / q + 1),
        "peak": lambda s: (s * s + s * a / q + 1) / (s * s + s / (a * q) + 1),
        "lowshelf": lambda s: (
            a * (s * s + sa / q * s + a) / (a * s * s + sa / q * s + 1)
        ),
        "highshelf": lambda s: (
            a * (a * s * s + sa / q * s + 1) / (s * s + sa / q * s + a)
        ),
        "allpass": lambda s: (s * s - s / q + 1) / (s * s + s / q + 1),
    }
    return shapes[mode]


@pytest.mark.parametrize("fs", SAMPLE_RATES)
@pytest.mark.parametrize("mode", SVF_MODES)
def test_svf_matches_the_bilinear_analog_prototype(mode: str, fs: int) -> None:
    fc, q, gain_db = 1500.0, 2.0, 9.0
    h = _impulse_response("svf", fs, cutoff_hz=fc, q=q, gain_db=gain_db, mode=mode)
    freqs = [40.0, 300.0, 750.0, 1400.0, 1500.0, 1600.0, 3000.0, 6000.0, 15000.0]
    if mode == "notch":
        freqs.remove(1500.0)  # -inf dB: checked on its own below
    expected = _bilinear_db(_rbj(mode, q, gain_db), freqs, fc, fs)
    np.testing.assert_allclose(_response_db(h, freqs, fs), expected, atol=0.02)


@pytest.mark.parametrize("fs", SAMPLE_RATES)
def test_svf_shapes_at_the_cutoff(fs: int) -> None:
    fc = 2000.0

    def at(mode: str, f: float, **kw) -> float:
        h = _impulse_response("svf", fs, cutoff_hz=fc, mode=mode, **kw)
        return _response_db(h, f, fs)[0]

    assert at("lowpass", fc, q=0.7071) == pytest.approx(-3.01, abs=0.01)
    assert at("highpass", fc, q=0.7071) == pytest.approx(-3.01, abs=0.01)
    assert at("bandpass", fc, q=4.0) == pytest.approx(0.0, abs=0.01)
    assert at("notch", fc, q=1.0) < -100.0
    assert at("peak", fc, q=1.0, gain_db=-12.0) == pytest.approx(-12.0, abs=0.01)
    assert at("peak", fc, q=3.0, gain_db=6.0) == pytest.approx(6.0, abs=0.01)
    assert at("lowshelf", 20.0, gain_db=8.0) == pytest.approx(8.0, abs=0.05)
    assert at("lowshelf", fc, gain_db=8.0) == pytest.approx(4.0, abs=0.01)
    assert at("highshelf", 0.45 * fs, gain_db=-10.0) == pytest.approx(-10.0, abs=0.1)
    assert at("highshelf", fc, gain_db=-10.0) == pytest.approx(-5.0, abs=0.01)
    for f in (100.0, fc, 10000.0):
        assert at("allpass", f, q=0.8) == pytest.approx(0.0, abs=1e-6)


def test_svf_lowpass_nulls_against_scipy() -> None:
    fs, fc, q = 48000, 900.0, 3.0
    wc = 2.0 * fs * math.tan(math.pi * fc / fs)
    b, a = signal.bilinear([wc * wc], [1.0, wc / q, wc * wc], fs)
    x = _noise(20000)[0]
    for kind in ("svf", "rlpf"):
        y = _run(_program(kind, fs=fs, cutoff_hz=fc, q=q), x)[0]
        assert np.max(np.abs(y - signal.lfilter(b, a, x))) < 1e-9


def test_svf_survives_audio_rate_cutoff_modulation() -> None:
    fs = 48000
    n = 10 * fs
    mod = 4.0 * np.sin(2 * np.pi * 2000.0 * np.arange(n) / fs)
    for mode in ("lowpass", "bandpass", "peak", "highshelf"):
        prog = _program(
            "svf",
            fs=fs,
            mod_channels=1,
            cutoff_hz=1000.0,
            q=8.0,
            mode=mode,
            gain_db=12.0,
        )
        y = _run(prog, _noise(n, seed=3), mod=mod, block=2048)[0]
        assert np.all(np.isfinite(y))
        assert np.max(np.abs(y)) < 50.0
        assert np.std(y) > 0.01


def test_cutoff_mod_moves_the_cutoff_by_octaves() -> None:
    fs = 48000
    n = 1 << 15
    x = np.zeros(n)
    x[0] = 1.0
    for kind in MODULATED:
        settings = {"resonance": 0.0} if kind == "ladder" else {"q": 0.7071}
        direct = _run(_program(kind, fs=fs, cutoff_hz=2000.0, **settings), x * 1e-4)
        prog = _program(kind, fs=fs, mod_channels=1, cutoff_hz=500.0, **settings)
        modded = _run(prog, x * 1e-4, mod=np.full(n, 2.0))
        np.testing.assert_allclose(modded, direct, rtol=1e-9, atol=1e-16)


# ------------------------------------------------------------------------------
# Resonant low-pass
# ------------------------------------------------------------------------------


@pytest.mark.parametrize("fs", SAMPLE_RATES)
def test_rlpf_resonance_peak_height_follows_q(fs: int) -> None:
    fc = 1000.0
    n_fft = 1 << 21  # 0.02 Hz bins: the peak is read to well under 0.01 dB
    for q in (2.0, 5.0, 10.0, 20.0):
        h = _impulse_response("rlpf", fs, n=1 << 16, cutoff_hz=fc, q=q)
        peak_db = 20 * np.log10(np.abs(np.fft.rfft(h, n_fft)).max())
        expected = 20 * np.log10(q / math.sqrt(1.0 - 1.0 / (4.0 * q * q)))
        assert peak_db == pytest.approx(expected, abs=0.02)
        assert _response_db(h, fc, fs)[0] == pytest.approx(20 * np.log10(q), abs=0.01)
        assert _response_db(h, 20.0, fs)[0] == pytest.approx(0.0, abs=0.01)


# ------------------------------------------------------------------------------
# Ladder
# ------------------------------------------------------------------------------


@pytest.mark.parametrize("fs", SAMPLE_RATES)
def test_ladder_slope_is_24_db_per_octave(fs: int) -> None:
    h = _impulse_response("ladder", fs, amp=1e-4, cutoff_hz=200.0, resonance=0.0)
    g1, g2, g4 = _response_db(h, [1000.0, 2000.0, 4000.0], fs)
    assert g1 - g2 == pytest.approx(24.0, abs=1.0)
    assert g2 - g4 == pytest.approx(24.0, abs=1.0)
    assert _response_db(h, 200.0, fs)[0] == pytest.approx(-12.04, abs=0.05)
    assert _response_db(h, 5.0, fs)[0] == pytest.approx(-0.0109, abs=0.002)


def test_ladder_resonance_peak_rises_with_resonance() -> None:
    fs, fc = 48000, 1000.0
    peaks = []
    for resonance in (0.0, 0.3, 0.6, 0.8, 0.9):
        h = _impulse_response(
            "ladder", fs, n=1 << 16, amp=1e-5, cutoff_hz=fc, resonance=resonance
        )
        low = _response_db(h, 10.0, fs)[0]
        assert low == pytest.approx(0.0, abs=0.01)  # DC gain kept at any resonance
        peaks.append(_response_db(h, fc, fs)[0])
        k = LADDER_MAX_FEEDBACK * resonance
        assert peaks[-1] == pytest.approx(20 * np.log10((1 + k) / (4 - k)), abs=0.05)
    assert np.all(np.diff(peaks) > 2.0)


@pytest.mark.parametrize("fs", SAMPLE_RATES)
def test_ladder_self_oscillates_at_cutoff(fs: int) -> None:
    fc = 1000.0
    n = 3 * fs
    x = np.zeros(n)
    x[:64] = _noise(64, seed=5)[0] * 0.1
    y = _run(_program("ladder", fs=fs, cutoff_hz=fc, resonance=1.0), x)[0]
    tail = y[-fs:]
    assert np.sqrt(np.mean(tail**2)) > 0.02  # still ringing after 2 s
    spectrum = np.abs(np.fft.rfft(tail * np.hanning(len(tail))))
    peak_hz = np.argmax(spectrum) * fs / len(tail)
    assert peak_hz == pytest.approx(fc, rel=0.02)
    # Below the threshold the ring dies away.
    y = _run(_program("ladder", fs=fs, cutoff_hz=fc, resonance=0.85), x)[0]
    assert np.max(np.abs(y[-fs:])) < 1e-6


def test_ladder_output_is_bounded_with_drive() -> None:
    fs = 48000
    x = 4.0 * _noise(2 * fs, seed=7)[0]
    for cutoff_hz in (50.0, 1000.0, 20000.0):
        for resonance in (0.0, 1.0):
            prog = _program(
                "ladder", fs=fs, cutoff_hz=cutoff_hz, resonance=resonance, drive=10.0
            )
            y = _run(prog, x)[0]
            assert np.all(np.isfinite(y))
            assert np.max(np.abs(y)) < 2.0


# ------------------------------------------------------------------------------
# Banks, block sizes, bad values
# ------------------------------------------------------------------------------

SETTINGS = {
    "onepole_lowpass": {"cutoff_hz": [300.0, 900.0, 2700.0, 8100.0, 12000.0]},
    "onepole_highpass": {"cutoff_hz": [300.0, 900.0, 2700.0, 8100.0, 12000.0]},
    "dc_blocker": {"cutoff_hz": [5.0, 10.0, 20.0, 40.0, 80.0]},
    "svf": {
        "cutoff_hz": [300.0, 900.0, 2700.0, 8100.0, 12000.0],
        "q": [0.5, 0.7071, 2.0, 8.0, 30.0],
        "mode": [0, 2, 4, 5, 6],
        "gain_db": 6.0,
    },
    "rlpf": {"cutoff_hz": [300.0, 900.0, 2700.0, 8100.0, 12000.0], "q": 5.0},
    "ladder": {
        "cutoff_hz": [300.0, 900.0, 2700.0, 8100.0, 12000.0],
        "resonance": [0.0, 0.5, 0.9, 0.95, 1.0],
        "drive": 2.0,
    },
}


def _subnormal(a: np.ndarray) -> int:
    return int(np.count_nonzero((a != 0.0) & (np.abs(a) < TINY)))


def _one_voice(settings: dict, v: int) -> dict:
    return {
        k: (val[v] if isinstance(val, list) else val) for k, val in settings.items()
    }


@pytest.mark.parametrize("kind", ALL_FILTERS)
def test_bank_voices_are_independent_filters(kind: str) -> None:
    """Five voices (one full group of four and one spare) equal five single-voice
    filters, bit for bit."""
    n = 3000
    x = _noise(n, seed=11, voices=5)
    bank = _run(_program(kind, voices=5, **SETTINGS[kind]), x)
    for v in range(5):
        single = _run(_program(kind, **_one_voice(SETTINGS[kind], v)), x[v])
        # Bit-exact for the register-lane kernels; the one-pole's voice loop may
        # be vectorised differently for 5 voices than for 1 (1e-16 apart).
        np.testing.assert_allclose(bank[v], single[0], rtol=0, atol=1e-14)


@pytest.mark.parametrize("kind", ALL_FILTERS)
def test_block_size_invariance(kind: str) -> None:
    n = 4000
    x = _noise(n, seed=12, voices=5)
    mod_channels = 1 if kind in MODULATED else 0
    mod = 0.5 * np.sin(np.arange(n) * 0.01) if mod_channels else None
    outs = []
    for block in BLOCK_SIZES:
        prog = _program(
            kind, voices=5, block=block, mod_channels=mod_channels, **SETTINGS[kind]
        )
        outs.append(_run(prog, x, mod=mod, block=block))
    for other in outs[1:]:
        np.testing.assert_array_equal(other, outs[0])


@pytest.mark.parametrize("kind", ALL_FILTERS)
def test_parameter_ramps_stay_smooth_and_finite(kind: str) -> None:
    """A cutoff jump mid-stream is smoothed: no step larger than the signal's own."""
    fs = 48000
    prog = _program(kind, fs=fs, cutoff_hz=1000.0 if kind != "dc_blocker" else 20.0)
    x = np.sin(2 * np.pi * 440.0 * np.arange(fs) / fs)
    first = _run(prog, x[: fs // 2])[0]
    prog.set_target("f", "cutoff_hz", 5000.0 if kind != "dc_blocker" else 100.0)
    second = _run(prog, x[fs // 2 :])[0]
    y = np.concatenate([first, second])
    assert np.all(np.isfinite(y))
    assert np.max(np.abs(np.diff(y))) < 0.2


@pytest.mark.parametrize("kind", ALL_FILTERS)
def test_no_subnormals_after_a_burst_and_two_minutes_of_silence(kind: str) -> None:
    fs = 48000
    settings = _one_voice(SETTINGS[kind], 3)
    if kind == "ladder":
        settings["resonance"] = 0.9  # must decay: at 1.0 it rings for ever
    prog = _program(kind, voices=1, fs=fs, block=2048, **settings)
    n = 120 * fs
    x = np.zeros(n)
    x[: fs // 10] = _noise(fs // 10, seed=13)[0]
    y = _run(prog, x, block=2048)[0]
    assert np.max(np.abs(y[: fs // 10])) > 0.01
    assert _subnormal(y) == 0
    assert _subnormal(_state(prog)) == 0
    assert np.all(y[-fs:] == 0.0)


_PARAMS = {
    "onepole_lowpass": ("cutoff_hz",),
    "onepole_highpass": ("cutoff_hz",),
    "dc_blocker": ("cutoff_hz",),
    "svf": ("cutoff_hz", "q", "gain_db"),
    "rlpf": ("cutoff_hz", "q"),
    "ladder": ("cutoff_hz", "resonance", "drive"),
}


@pytest.mark.parametrize("kind", ALL_FILTERS)
def test_nan_targets_never_reach_the_output(kind: str) -> None:
    x = _noise(4000, seed=14)[0]
    reference = _run(_program(kind, **_one_voice(SETTINGS[kind], 2)), x)[0]
    for name in _PARAMS[kind]:
        for bad in (np.nan, np.inf, -np.inf):
            prog = _program(kind, **_one_voice(SETTINGS[kind], 2))
            first = _run(prog, x[:1000])[0]
            prog.params[P_TARGET, prog.param("f", name).column] = bad
            rest = _run(prog, x[1000:])[0]
            y = np.concatenate([first, rest])
            assert np.all(np.isfinite(y)), (name, bad)
            np.testing.assert_array_equal(y, reference)  # the bad target is refused


@pytest.mark.parametrize("kind", ALL_FILTERS)
def test_nan_and_inf_inputs_never_reach_the_output(kind: str) -> None:
    n = 6000
    x = _noise(n, seed=15)[0]
    bad = x.copy()
    bad[1000] = np.nan
    bad[1500:1510] = np.inf
    bad[2000] = -np.inf
    bad[2500] = 1e300
    zeroed = np.where(np.isfinite(bad) & (np.abs(bad) < 1e15), bad, 0.0)
    mod_channels = 1 if kind in MODULATED else 0
    mod = np.zeros(n) if mod_channels else None
    settings = _one_voice(SETTINGS[kind], 2)
    y = _run(_program(kind, mod_channels=mod_channels, **settings), bad, mod=mod)[0]
    assert np.all(np.isfinite(y))
    expected = _run(
        _program(kind, mod_channels=mod_channels, **settings), zeroed, mod=mod
    )
    np.testing.assert_array_equal(y, expected[0])
    if mod_channels:
        mod[3000] = np.nan
        mod[3100:3200] = np.inf
        mod[3300] = -np.inf
        y = _run(_program(kind, mod_channels=1, **settings), x, mod=mod)[0]
        assert np.all(np.isfinite(y))
        assert np.max(np.abs(y)) < 100.0
