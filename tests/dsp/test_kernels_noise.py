"""Noise by its physics: spectral slopes (Welch), RMS level, a null test against a
SciPy reference of the same filter bank, seeding and independence, block-size
invariance and the numerics rules."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.signal import lfilter, welch

from engine.dsp.kernels_noise import brown_design, pink_design, warmup_frames
from engine.dsp.layout import I_N_STATE, I_STATE, P_TARGET
from engine.dsp.rng import STREAM_STRIDE, uniform_block
from engine.graph.compile import compile_graph, node_seed
from engine.graph.graph import Graph
from engine.rt.render import render_graph

SAMPLE_RATES = (44100, 48000)
KINDS = ("white_noise", "pink_noise", "brown_noise")
SLOPE_DB_PER_OCTAVE = {
    "white_noise": 0.0,
    "pink_noise": -3.0103,
    "brown_noise": -6.0206,
}
BLOCK_SIZES = (1, 63, 64, 65, 512)
TINY = np.finfo(np.float64).tiny


def _graph(kind: str, voices: int | None = None, name: str = "noise", **settings):
    g = Graph()
    node = g.node(kind, name=name, voices=voices, **settings)
    g.output(node[0:2] if voices == 2 else node)
    return g


def _render(kind: str, n: int, fs: int = 48000, seed: int = 0, block: int = 512, **kw):
    return render_graph(_graph(kind, **kw), n, block, fs, seed)


def _slope_db_per_octave(x: np.ndarray, fs: float, low_hz: float, high_hz: float):
    """Least-squares slope of the Welch PSD, averaged in third-octave bands so
    every octave weighs the same."""
    freqs, psd = welch(x, fs, nperseg=8192)
    edges = low_hz * 2.0 ** (np.arange(0.0, np.log2(high_hz / low_hz) + 1e-9, 1 / 3))
    centres, levels = [], []
    for lo, hi in itertools.pairwise(edges):
        band = (freqs >= lo) & (freqs < hi)
        centres.append(np.sqrt(lo * hi))
        levels.append(10 * np.log10(psd[band].mean()))
    return np.polyfit(np.log2(centres), levels, 1)[0]


def _node_state(prog, name: str) -> np.ndarray:
    row = prog.instr[prog.node_names.index(name)]
    return prog.state[row[I_STATE] : row[I_STATE] + row[I_N_STATE]]


@pytest.mark.parametrize("fs", SAMPLE_RATES)
@pytest.mark.parametrize("kind", KINDS)
def test_spectral_slope(kind: str, fs: int) -> None:
    x = _render(kind, 10 * fs, fs, amplitude=0.5)[0]
    want = SLOPE_DB_PER_OCTAVE[kind]
    tolerance = 0.3 if kind == "white_noise" else 0.5
    assert _slope_db_per_octave(x, fs, 100.0, 5000.0) == pytest.approx(
        want, abs=tolerance
    )
    # Measured: within 0.05 dB/octave over 100 Hz - 10 kHz as well.
    assert _slope_db_per_octave(x, fs, 100.0, 10000.0) == pytest.approx(want, abs=0.15)


def _bank_response(design, fs: float, freqs: np.ndarray) -> np.ndarray:
    poles, weights, direct = design(float(fs))
    z_inv = np.exp(-2j * np.pi * freqs / fs)
    return direct + sum(
        w / (1.0 - p * z_inv) for p, w in zip(poles, weights, strict=True)
    )


@pytest.mark.parametrize("fs", (22050, *SAMPLE_RATES, 96000))
def test_pink_design_follows_minus_3_db_per_octave_from_20_hz_to_20_khz(fs) -> None:
    freqs = np.geomspace(20.0, min(20000.0, 0.45 * fs), 400)
    level = 20 * np.log10(np.abs(_bank_response(pink_design, fs, freqs)))
    error = level + 10 * np.log10(freqs)
    assert np.ptp(error) < 0.5  # measured: 0.2 to 0.4 dB peak to peak
    octaves = np.log2(freqs)
    local = [
        np.polyfit(octaves[m], level[m], 1)[0]
        for start in np.arange(octaves[0], octaves[-1] - 1, 0.25)
        if (m := (octaves >= start) & (octaves <= start + 1)).sum() > 3
    ]
    assert min(local) > -3.0103 - 0.3 and max(local) < -3.0103 + 0.3


@pytest.mark.parametrize("fs", (22050, *SAMPLE_RATES, 96000))
def test_brown_design_is_a_leaky_integrator_up_to_20_khz(fs) -> None:
    freqs = np.geomspace(20.0, min(20000.0, 0.45 * fs), 400)
    level = 20 * np.log10(np.abs(_bank_response(brown_design, fs, freqs)))
    ideal = -10 * np.log10(1 + (freqs / 10.0) ** 2)
    assert np.ptp(level - ideal) < 0.5  # measured: 0.1 to 0.25 dB
    # Bounded, no DC drift: finite gain at DC.
    dc = abs(_bank_response(brown_design, fs, np.array([0.0]))[0])
    assert np.isfinite(dc) and dc < 1e3


@pytest.mark.parametrize("kind", KINDS)
def test_amplitude_is_the_rms_level(kind: str) -> None:
    fs = 48000
    x = _render(kind, 60 * fs, fs, amplitude=0.3)[0]
    rms_db = 20 * np.log10(np.sqrt(np.mean(x**2)) / 0.3)
    assert abs(rms_db) < (0.05 if kind == "white_noise" else 0.5)
    if kind == "white_noise":
        assert np.max(np.abs(x)) <= np.sqrt(3) * 0.3


@pytest.mark.parametrize("kind", KINDS)
def test_null_against_numpy_scipy_reference(kind: str) -> None:
    # Voice 1 of a bank, program seed 3: the stream is uniform_block(seed, S + n);
    # the filters start from the stream's own past (warm-up).
    fs, n = 48000, 20000
    seed = node_seed(3, "noise")
    out = _render(kind, n, fs, seed=3, voices=2, amplitude=1.0)[1]
    start = int(STREAM_STRIDE)
    if kind == "white_noise":
        ref = np.sqrt(3.0) * uniform_block(seed, start, n)
    else:
        design = pink_design if kind == "pink_noise" else brown_design
        poles, weights, direct = design(float(fs))
        n_past = warmup_frames(poles)
        x = np.concatenate(
            [
                uniform_block(seed, 2 * start - n_past, n_past),
                uniform_block(seed, start, n),
            ]
        )
        y = direct * x
        for p, w in zip(poles, weights, strict=True):
            y += w * lfilter([1.0], [1.0, -p], x)
        ref = y[n_past:]
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-9)


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_noise_and_independent_streams(kind: str) -> None:
    fs, n = 48000, 5 * 48000

    def whitened(x: np.ndarray) -> np.ndarray:
        # Correlation of low-frequency noise converges slowly (brown: about 300
        # independent values in 10 s); its first difference has the same streams
        # behind it and converges like white noise (sigma 1/sqrt(n) = 0.002).
        return x if kind == "white_noise" else np.diff(x)

    def corr(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.corrcoef(whitened(a), whitened(b))[0, 1])

    base = _render(kind, n, fs, seed=1, voices=2)
    assert np.array_equal(base, _render(kind, n, fs, seed=1, voices=2))
    other_seed = _render(kind, n, fs, seed=2, voices=2)[0]
    other_node = _render(kind, n, fs, seed=1, voices=2, name="other")[0]
    assert abs(corr(base[0], other_seed)) < 0.02
    assert abs(corr(base[0], other_node)) < 0.02
    assert abs(corr(base[0], base[1])) < 0.02  # voices
    # The seed option overrides the per-node seed: two nodes, one stream.
    g1 = _graph(kind, name="a", seed=1234)
    g2 = _graph(kind, name="b", seed=1234)
    assert np.array_equal(
        render_graph(g1, 4800, 64, fs, 5), render_graph(g2, 4800, 64, fs, 7)
    )


@pytest.mark.parametrize("kind", KINDS)
def test_block_size_invariance(kind: str) -> None:
    renders = [
        _render(kind, 6000, 48000, seed=4, block=b, voices=2) for b in BLOCK_SIZES
    ]
    for block, other in zip(BLOCK_SIZES[1:], renders[1:], strict=True):
        assert np.array_equal(renders[0], other), block


@pytest.mark.parametrize("kind", KINDS)
def test_silence_after_a_burst_leaves_no_subnormals_and_bad_targets_are_refused(
    kind: str,
) -> None:
    fs = 48000
    prog = compile_graph(_graph(kind, voices=2), fs, 512)
    burst = render_graph(prog, fs // 10, 512)
    assert np.all(np.isfinite(burst)) and np.max(np.abs(burst)) > 0.1
    prog.set_target("noise", "amplitude", 0.0)
    silence = render_graph(prog, 120 * fs, 512)
    state = _node_state(prog, "noise")
    for values in (silence, state):
        assert np.count_nonzero((values != 0) & (np.abs(values) < TINY)) == 0
    assert np.all(silence[:, fs:] == 0.0)
    ref = prog.param("noise", "amplitude")
    for bad in (np.nan, np.inf, -np.inf):
        prog.params[P_TARGET, ref.column] = bad
        out = render_graph(prog, 4800, 512)
        assert np.all(np.isfinite(out)) and np.all(np.isfinite(prog.state))
    prog.set_target("noise", "amplitude", 0.25)
    assert np.max(np.abs(render_graph(prog, fs, 512)[:, fs // 2 :])) > 0.1
