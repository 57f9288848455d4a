"""The band equaliser by measurement: each band's level at its centre (cross
spectrum of white noise in and out), the exact null at 0 dB, a smooth tilt,
animation within +-animate_db and independent per band, linked voices,
block-size invariance and option checks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import csd, stft, welch

from engine.dsp.kernels_eq import (
    BAND_CENTRES_HZ,
    BAND_LABELS,
)
from engine.graph.compile import compile_graph
from engine.graph.graph import Graph, GraphError
from engine.rt.render import render_graph

FS = 48000
NAMES = tuple(f"gain_{label}_db" for label in BAND_LABELS)


def _through_bands(
    seconds: float,
    fs: int = FS,
    block: int = 1000,
    gains: tuple[float, ...] | None = None,
    voices: int = 1,
    **settings,
) -> tuple[np.ndarray, np.ndarray]:
    """White noise, and the same noise through ``bands`` (same program seed and
    node name, so the same samples)."""
    n = int(seconds * fs)
    for name, value in zip(NAMES, gains or (), strict=False):
        settings[name] = value

    def render(with_bands: bool) -> np.ndarray:
        g = Graph()
        node = g.node("white_noise", name="noise", voices=voices, amplitude=0.25)
        if with_bands:
            node = g.node("bands", node, name="eq", **settings)
        g.output(node[0:2] if voices == 2 else node)
        return render_graph(compile_graph(g, fs, block, 7), n, block)

    return render(False), render(True)


def _levels_at_centres(x: np.ndarray, y: np.ndarray, fs: int) -> np.ndarray:
    """|H| in dB at each band centre from the cross spectrum (H = Pxy / Pxx),
    averaged over +-1/24 octave."""
    freqs, pxy = csd(x, y, fs, nperseg=1 << 15)
    _, pxx = welch(x, fs, nperseg=1 << 15)
    h_db = 20 * np.log10(np.abs(pxy / pxx))
    levels = []
    for centre in BAND_CENTRES_HZ:
        near = (freqs > centre * 2 ** (-1 / 24)) & (freqs < centre * 2 ** (1 / 24))
        levels.append(h_db[near].mean())
    return np.array(levels)


@pytest.mark.parametrize("fs", (44100, 48000))
@pytest.mark.parametrize(
    "gains",
    (
        (6.0, -6.0, 9.0, -3.0, 0.0, -12.0, 4.0, -9.0, 12.0, -6.0),
        (-24.0, -18.0, -12.0, -6.0, 0.0, 3.0, 6.0, 9.0, 12.0, 12.0),
        (0.0, 0.0, 0.0, 0.0, 12.0, 0.0, 0.0, 0.0, 0.0, -20.0),
    ),
)
def test_each_band_hits_its_gain_at_its_centre(
    fs: int, gains: tuple[float, ...]
) -> None:
    x, y = _through_bands(20, fs, gains=gains)
    measured = _levels_at_centres(x[0], y[0], fs)
    np.testing.assert_allclose(measured, gains, atol=1.0)


def test_all_bands_at_zero_db_is_exactly_the_input() -> None:
    x, y = _through_bands(2, voices=2)
    assert np.array_equal(x, y)
    # Also after the gains have moved and come back to 0 dB.
    g = Graph()
    noise = g.node("white_noise", name="noise", amplitude=0.25)
    g.output(g.node("bands", noise, name="eq", gain_1khz_db=6.0))
    prog = compile_graph(g, FS, 512, 7)
    render_graph(prog, FS, 512)
    prog.set_target("eq", "gain_1khz_db", 0.0)
    render_graph(prog, FS, 512)  # 50 ms smoothing: settled long before
    reference = Graph()
    reference.output(reference.node("white_noise", name="noise", amplitude=0.25))
    ref_prog = compile_graph(reference, FS, 512, 7)
    render_graph(ref_prog, 2 * FS, 512)
    assert np.array_equal(render_graph(prog, FS, 512), render_graph(ref_prog, FS, 512))


def test_a_tilt_is_smooth_between_the_centres() -> None:
    # A sound designer's tilt (+6 dB at the bottom to -6 dB at the top): the
    # response between centres stays within 1 dB of the straight line (up to
    # 8 kHz: above, the bilinear map squeezes the top band towards Nyquist).
    gains = tuple(np.linspace(6.0, -6.0, 10))
    x, y = _through_bands(20, gains=gains)
    freqs, pxy = csd(x[0], y[0], FS, nperseg=1 << 15)
    _, pxx = welch(x[0], FS, nperseg=1 << 15)
    band = (freqs > 40) & (freqs < 8000)
    h_db = 20 * np.log10(np.abs(pxy / pxx))[band]
    line = np.interp(np.log2(freqs[band]), np.log2(BAND_CENTRES_HZ), gains)
    assert np.abs(h_db - line).max() < 1.0


def _band_levels_over_time(x: np.ndarray, y: np.ndarray, nperseg: int) -> np.ndarray:
    """[band, window] level change in dB at each band centre: per window, the
    median of |Y| / |X| over the bins within 1/24 octave of the centre, or the
    nearest bin (the input is known, so each bin's ratio is the filter's gain,
    up to the window's leakage)."""
    freqs, _, sx = stft(x, FS, nperseg=nperseg)
    _, _, sy = stft(y, FS, nperseg=nperseg)
    ratio_db = 20 * np.log10(np.abs(sy) / np.maximum(np.abs(sx), 1e-12))
    rows = []
    for centre in BAND_CENTRES_HZ:
        near = (freqs > centre * 2 ** (-1 / 24)) & (freqs < centre * 2 ** (1 / 24))
        near[np.argmin(np.abs(freqs - centre))] = True
        rows.append(np.median(ratio_db[near], axis=0))
    return np.array(rows)[:, 2:-2]


def test_animation_stays_within_depth_and_moves_each_band_on_its_own() -> None:
    depth_db = 6.0
    x, y = _through_bands(
        60, gains=(3.0,) * 10, animate_db=depth_db, animate_rate_hz=0.5, voices=2
    )
    levels = _band_levels_over_time(x[0], y[0], 1 << 15)
    # Within +-depth of the set 3 dB, give or take the short-window measure's
    # own error: a bin or two per window at 31 and 63 Hz, many above.
    slack = np.where(np.array(BAND_CENTRES_HZ) < 100, 1.0, 0.3)
    assert np.all(levels.min(axis=1) >= 3.0 - depth_db - slack)
    assert np.all(levels.max(axis=1) <= 3.0 + depth_db + slack)
    # ...and every band uses a good part of that range.
    spans = levels.max(axis=1) - levels.min(axis=1)
    assert np.all(spans > depth_db)
    # Each band has its own curve.
    corr = np.corrcoef(levels)[np.triu_indices(10, 1)]
    assert np.abs(corr).max() < 0.8


@pytest.mark.parametrize("linked", (True, False))
def test_linked_voices_drift_together(linked: bool) -> None:
    # One noise into two voices: linked (the default), the voices' outputs are
    # the same; unlinked, each band drifts its own way in each voice.
    g = Graph()
    noise = g.node("white_noise", name="noise", amplitude=0.25)
    eq = g.node(
        "bands", noise, voices=2, animate_db=6.0, animate_rate_hz=0.5, linked=linked
    )
    g.output(eq[0:2])
    x = render_graph(compile_graph(g, FS, 1000, 3), 30 * FS, 1000)
    if linked:
        assert np.array_equal(x[0], x[1])
    else:
        _, _, s0 = stft(x[0], FS, nperseg=1 << 15)
        _, _, s1 = stft(x[1], FS, nperseg=1 << 15)
        # The same input: the voices' ratio is the ratio of their gains.
        diff_db = 20 * np.log10(np.abs(s1) / np.maximum(np.abs(s0), 1e-12))
        assert np.percentile(np.abs(diff_db), 90) > 3.0


def test_block_size_invariance_with_animation() -> None:
    renders = [
        _through_bands(
            0.5,
            block=b,
            gains=(2.0, -3.0),
            animate_db=4.0,
            animate_rate_hz=5.0,
            voices=2,
        )[1]
        for b in (1, 63, 64, 1000)
    ]
    for other in renders[1:]:
        assert np.array_equal(renders[0], other)


def test_bad_settings_are_refused_with_the_name() -> None:
    g = Graph()
    g.output(g.node("bands", g.node("white_noise"), gain_1khz_db=30.0))
    with pytest.raises(GraphError, match="gain_1khz_db"):
        compile_graph(g)
    g = Graph()
    g.output(g.node("bands", g.node("white_noise"), linked="yes"))
    with pytest.raises(GraphError, match="linked"):
        compile_graph(g)
