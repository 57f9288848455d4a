"""Sample playback by measurement, on WAV and FLAC files made here: loop mode
reproduces the file away from the seam and crosses the seam of a file whose
ends do not match without a click; resampling keeps pitch and level; granular
output has the source's spectrum (within the pitch jitter) and the asked grain
rate; errors name the path; block-size invariance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine.dsp.kernels_sample import MAX_SAMPLE_SECONDS, resample
from engine.graph.compile import compile_graph
from engine.graph.graph import Graph, GraphError
from engine.rt.render import render_graph

FS = 48000
BLOCK_SIZES = (1, 63, 64, 1000)


def _write(path: Path, audio: np.ndarray, fs: int = FS, subtype: str = "FLOAT") -> str:
    """Write ``audio`` (``[frames]`` or ``[frames, channels]``) exactly: float WAV
    (FLAC holds 24-bit integers, so FLAC tests compare with what is read back)."""
    sf.write(path, audio, fs, subtype=subtype)
    return str(path)


def _render(
    path: str,
    seconds: float,
    block: int = 1000,
    seed: int = 0,
    fs: int = FS,
    **settings,
) -> np.ndarray:
    g = Graph()
    g.output(g.node("sample", name="smp", path=path, **settings))
    prog = compile_graph(g, fs, block, seed)
    return render_graph(prog, int(seconds * fs), block)


NOISE_RMS = 0.02


def _noise_with_mismatched_ends(n: int, seed: int = 1) -> np.ndarray:
    """Noise on a ramp from -0.5 to +0.5: the ends differ by a whole unit."""
    rng = np.random.default_rng(seed)
    return NOISE_RMS * rng.standard_normal(n) + np.linspace(-0.5, 0.5, n)


# loop --------------------------------------------------------------------------


def test_loop_reproduces_the_file_away_from_the_seam(tmp_path: Path) -> None:
    n, fade = FS, 2400  # one second, 50 ms crossfade
    left = _noise_with_mismatched_ends(n, 1).astype(np.float32)
    right = np.sin(2 * np.pi * 330 * np.arange(n) / FS).astype(np.float32)
    path = _write(tmp_path / "stereo.wav", np.column_stack([left, right]))
    y = _render(path, 3.2, mode="loop", crossfade_ms=50.0)
    # First pass: the file from its first frame up to the fade.
    np.testing.assert_array_equal(y[0, : n - fade], left[: n - fade])
    np.testing.assert_array_equal(y[1, : n - fade], right[: n - fade])
    # Later passes: the file after the faded head, period n - fade.
    period = n - fade
    for k in (1, 2):
        start = n + (k - 1) * period
        np.testing.assert_array_equal(
            y[0, start : start + period - fade], left[fade : n - fade]
        )


@pytest.mark.parametrize("suffix", ("wav", "flac"))
def test_loop_seam_has_no_click(tmp_path: Path, suffix: str) -> None:
    n = FS // 2
    x = _noise_with_mismatched_ends(n, 2)
    path = _write(tmp_path / f"ramp.{suffix}", x, subtype="PCM_24")
    stored, _ = sf.read(path)
    own_step = np.abs(np.diff(stored)).max()
    y = _render(path, 2.0, mode="loop", crossfade_ms=40.0)[0]
    fade = round(0.040 * FS)
    seams = n + np.arange(3) * (n - fade)  # each pass ends here
    for seam in seams:
        around = y[seam - 2 * fade : seam + fade]
        assert np.abs(np.diff(around)).max() <= 1.1 * own_step
        # Equal power: the level through the fade stays the file's (the ramp's
        # two ends cross; take the noise's RMS about the local mean).
        fade_zone = y[seam - fade : seam]
        local = fade_zone - np.convolve(fade_zone, np.ones(101) / 101, "same")
        assert np.std(local[200:-200]) == pytest.approx(NOISE_RMS, rel=0.2)
    # The check can fail: the same file without a crossfade jumps at the seam.
    hard = _render(path, 1.2, mode="loop", crossfade_ms=0.0)[0]
    assert np.abs(np.diff(hard[n - 5 : n + 5])).max() > 5 * own_step


def test_mono_file_plays_on_both_sides_and_gain_db_scales(tmp_path: Path) -> None:
    x = (0.5 * np.sin(2 * np.pi * 220 * np.arange(FS) / FS)).astype(np.float32)
    path = _write(tmp_path / "mono.wav", x)
    y = _render(path, 0.5, mode="loop", gain_db=-6.0206)
    np.testing.assert_array_equal(y[0], y[1])
    np.testing.assert_allclose(y[0], 0.5 * x[: FS // 2], atol=1e-6)


@pytest.mark.parametrize(("file_rate", "engine_rate"), [(44100, 48000), (96000, 44100)])
def test_file_at_another_rate_keeps_pitch_and_level(
    tmp_path: Path, file_rate: int, engine_rate: int
) -> None:
    tone_hz = 1000.0
    t = np.arange(2 * file_rate) / file_rate
    path = _write(
        tmp_path / "tone.wav", 0.5 * np.sin(2 * np.pi * tone_hz * t), file_rate
    )
    y = _render(path, 1.5, fs=engine_rate, mode="loop", crossfade_ms=0.0)[0]
    middle = y[engine_rate // 4 : engine_rate]
    spectrum = np.abs(np.fft.rfft(middle * np.hanning(len(middle)), 8 * len(middle)))
    peak_hz = np.argmax(spectrum) * engine_rate / (8 * len(middle))
    assert peak_hz == pytest.approx(tone_hz, abs=0.2)
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.5 / np.sqrt(2), rel=1e-3)


def test_resample_matches_the_analytic_signal() -> None:
    rate_in, rate_out = 44100, 48000
    tone_hz = 0.3 * rate_in / 2
    x = np.sin(2 * np.pi * tone_hz * np.arange(rate_in) / rate_in)[None, :]
    y = resample(x, rate_in, rate_out)[0]
    assert len(y) == rate_out
    want = np.sin(2 * np.pi * tone_hz * np.arange(rate_out) / rate_out)
    # Away from the edges (the kernel reaches 16 samples past them).
    assert np.abs(y[100:-100] - want[100:-100]).max() < 1e-3
    # A tone above the new Nyquist frequency is removed, not aliased.
    high = np.sin(2 * np.pi * 23000 * np.arange(48000) / 48000)[None, :]
    down = resample(high, 48000, 44100)[0]
    assert np.sqrt(np.mean(down[100:-100] ** 2)) < 1e-4  # -80 dB


# granular ----------------------------------------------------------------------


def _centroid_hz(y: np.ndarray, fs: int, low_hz: float, high_hz: float) -> float:
    """Power-weighted mean frequency between ``low_hz`` and ``high_hz``: grains at
    random phases give a noisy fine structure, whose highest bin can sit a few
    Hz off; their mean does not."""
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y)))) ** 2
    freqs = np.fft.rfftfreq(len(y), 1 / fs)
    band = (freqs >= low_hz) & (freqs <= high_hz)
    return float(np.sum(freqs[band] * spectrum[band]) / np.sum(spectrum[band]))


def _band_share(y: np.ndarray, fs: int, low_hz: float, high_hz: float) -> float:
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y)))) ** 2
    freqs = np.fft.rfftfreq(len(y), 1 / fs)
    return float(
        spectrum[(freqs >= low_hz) & (freqs <= high_hz)].sum() / spectrum.sum()
    )


@pytest.fixture
def tone_file(tmp_path: Path) -> str:
    t = np.arange(2 * FS) / FS
    return _write(
        tmp_path / "tone.flac", 0.5 * np.sin(2 * np.pi * 440 * t), FS, "PCM_24"
    )


def test_granular_spectrum_is_the_source_tone(tone_file: str) -> None:
    y = _render(tone_file, 6.0, mode="granular", grain_ms=120.0, density_hz=25.0)
    for side in y:
        assert _centroid_hz(side, FS, 220.0, 880.0) == pytest.approx(440.0, abs=0.5)
        # Hann grains smear it only by their own bandwidth (~2 / 120 ms).
        assert _band_share(side, FS, 400.0, 480.0) > 0.99


def test_granular_pitch_and_pitch_jitter_stay_in_their_band(tone_file: str) -> None:
    up = _render(tone_file, 6.0, mode="granular", pitch_cents=700.0)[0]
    fifth = 440.0 * 2 ** (700 / 1200)
    assert _centroid_hz(up, FS, 330.0, 1320.0) == pytest.approx(fifth, abs=0.5)
    assert _band_share(up, FS, fifth - 20.0, fifth + 20.0) > 0.99
    jitter = 100.0  # +-1 semitone
    wide = _render(
        tone_file, 12.0, mode="granular", grain_ms=150.0, pitch_jitter_cents=jitter
    )[0]
    low, high = 440.0 * 2 ** (-jitter / 1200), 440.0 * 2 ** (jitter / 1200)
    margin = 15.0  # Hann main lobe of a 150 ms grain: +-13 Hz
    assert _band_share(wide, FS, low - margin, high + margin) > 0.99
    # ...and the jitter spreads it: well under all of it within +-0.3 semitone.
    assert (
        _band_share(wide, FS, 440.0 * 2 ** (-0.3 / 12), 440.0 * 2 ** (0.3 / 12)) < 0.7
    )


def test_granular_grain_rate_follows_density(tmp_path: Path) -> None:
    path = _write(tmp_path / "dc.wav", np.full(FS, 0.5, dtype=np.float32))
    for density in (4.0, 15.0):
        y = _render(
            path,
            20.0,
            mode="granular",
            grain_ms=20.0,
            density_hz=density,
            position_jitter_ms=0.0,
            spread=0.0,
        )[0]
        # Each grain of a constant is one Hann bump: count the bumps.
        active = y > 1e-3
        onsets = np.count_nonzero(active[1:] & ~active[:-1]) + int(active[0])
        assert onsets / 20.0 == pytest.approx(density, rel=0.12)
        # A lone grain of a constant peaks at the constant (natural level).
        assert y.max() == pytest.approx(0.5, rel=1e-3)


def test_granular_spread_pans_grains_and_dense_clouds_keep_their_level(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(3)
    path = _write(
        tmp_path / "noise.wav", (0.2 * rng.standard_normal(2 * FS)).astype(np.float32)
    )
    centred = _render(
        path,
        5.0,
        mode="granular",
        spread=0.0,
        density_hz=200.0,
        grain_ms=100.0,
        position_jitter_ms=800.0,
    )
    np.testing.assert_allclose(centred[0], centred[1], rtol=0, atol=1e-12)
    # 20 grains deep: scaled by the overlap, so the RMS stays near the source's.
    assert np.sqrt(np.mean(centred[0] ** 2)) == pytest.approx(0.2, rel=0.2)
    wide = _render(
        path,
        5.0,
        mode="granular",
        spread=1.0,
        density_hz=200.0,
        grain_ms=100.0,
        position_jitter_ms=800.0,
    )
    assert abs(np.corrcoef(wide[0], wide[1])[0, 1]) < 0.9


def test_granular_and_loop_block_size_invariance(
    tone_file: str, tmp_path: Path
) -> None:
    ends = _write(
        tmp_path / "ends.wav", _noise_with_mismatched_ends(FS // 4).astype(np.float32)
    )
    for path, settings in (
        (
            tone_file,
            {"mode": "granular", "pitch_jitter_cents": 30.0, "density_hz": 60.0},
        ),
        (ends, {"mode": "loop", "crossfade_ms": 30.0}),
    ):
        renders = [_render(path, 1.0, block=b, **settings) for b in BLOCK_SIZES]
        assert np.abs(renders[0]).max() > 0.1
        for block, other in zip(BLOCK_SIZES[1:], renders[1:], strict=True):
            assert np.array_equal(renders[0], other), (settings["mode"], block)


def test_granular_is_seeded(tone_file: str) -> None:
    kwargs = {"mode": "granular", "pitch_jitter_cents": 50.0, "density_hz": 10.0}
    a = _render(tone_file, 2.0, seed=1, **kwargs)
    assert np.array_equal(a, _render(tone_file, 2.0, seed=1, **kwargs))
    assert not np.array_equal(a, _render(tone_file, 2.0, seed=2, **kwargs))


# errors ------------------------------------------------------------------------


def _compile_error(**settings) -> str:
    g = Graph()
    g.output(g.node("sample", name="bed", **settings))
    with pytest.raises(GraphError) as caught:
        compile_graph(g)
    return str(caught.value)


def test_errors_name_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nowhere.wav"
    message = _compile_error(path=str(missing))
    assert "bed (sample)" in message and str(missing) in message
    assert "not found" in message
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF this is not audio" * 10)
    message = _compile_error(path=str(garbage))
    assert str(garbage) in message and "cannot read" in message
    assert "path option is required" in _compile_error()
    surround = _write(tmp_path / "six.wav", np.zeros((100, 3), dtype=np.float32))
    assert "3 channels" in _compile_error(path=surround)
    long_file = _write(
        tmp_path / "long.wav",
        np.zeros(int(8000 * (MAX_SAMPLE_SECONDS + 1)), np.float32),
        8000,
    )
    message = _compile_error(path=long_file)
    assert long_file in message and "limited to" in message
    # A relative path resolves against the current directory, and is named as
    # given when it is missing.
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "here.wav", np.zeros(1000, dtype=np.float32))
    g = Graph()
    g.output(g.node("sample", path="here.wav"))
    compile_graph(g)
    assert "gone.wav" in _compile_error(path="gone.wav")


def test_unknown_mode_suggests_the_near_one(tone_file: str) -> None:
    message = _compile_error(path=tone_file, mode="granulr")
    assert "bed (sample)" in message and "did you mean 'granular'" in message


def test_scene_file_error_names_the_sample_path(tmp_path: Path) -> None:
    from engine.scenes.errors import SceneError
    from engine.scenes.format import load_scene_file

    scene = tmp_path / "field.yaml"
    scene.write_text(
        "name: field\n"
        "description: a field recording, looped\n"
        "layers:\n"
        "  bed:\n"
        "    nodes:\n"
        "      loop: {type: sample, path: no-such-recording.flac, mode: loop}\n"
        "    output: loop\n"
    )
    with pytest.raises(SceneError) as caught:
        load_scene_file(scene)
    message = str(caught.value)
    assert "field.yaml" in message and "no-such-recording.flac" in message
