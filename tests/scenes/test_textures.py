"""Textures measured from their audio: each does what its parameters say."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.rt.engine import Engine
from engine.scenes.format import load_scene_file
from engine.scenes.textures import TEXTURES

RATE = 48000


def render_texture(
    tmp_path: Path, name: str, seconds: float, seed: int = 1, **params: object
) -> np.ndarray:
    settings = ", ".join(f"{k}: {v}" for k, v in params.items())
    text = (
        f"name: t\ndescription: one texture\nlayers:\n  x:\n    texture: {name}\n"
        f"    params: {{{settings}}}\n"
    )
    if TEXTURES[name].trigger:
        text += "triggers:\n  go: {layer: x}\n"
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    _, graph = load_scene_file(path)
    engine = Engine(sample_rate=RATE, seed=seed)
    engine.load(graph)
    return engine.render(round(seconds * RATE), block_size=256)


# The sample texture needs a file: it has its own test below.
@pytest.mark.parametrize("name", sorted(set(TEXTURES) - {"sample"}))
def test_every_texture_sounds_and_stays_finite_and_under_the_ceiling(
    tmp_path: Path, name: str
) -> None:
    x = render_texture(tmp_path, name, 4.0)
    assert np.all(np.isfinite(x))
    if not TEXTURES[name].trigger:
        rms_db = 20 * np.log10(np.sqrt(np.mean(x[RATE:] ** 2)))
        assert -50.0 < rms_db < -10.0, rms_db
    assert np.max(np.abs(x)) <= 10 ** (-1 / 20) + 1e-6


def _onsets_per_s(x: np.ndarray, band_hz: tuple[float, float]) -> float:
    """Transients per second in a band: rises of the band's 2 ms energy by 6 dB
    over the previous 20 ms."""
    spectrum = np.fft.rfft(x)
    f = np.fft.rfftfreq(x.size, 1 / RATE)
    spectrum[(f < band_hz[0]) | (f > band_hz[1])] = 0
    y = np.fft.irfft(spectrum, x.size)
    hop = RATE // 500
    energy = np.sqrt(np.mean(y[: y.size // hop * hop].reshape(-1, hop) ** 2, axis=1))
    background = np.convolve(energy, np.ones(10) / 10)[: energy.size]
    rising = energy[1:] > 2.0 * background[:-1] + 1e-6
    onsets = np.flatnonzero(rising[1:] & ~rising[:-1])
    return onsets.size / (x.size / RATE)


def test_rain_is_broadband_and_its_drops_follow_droplet_rate(tmp_path: Path) -> None:
    slow = render_texture(tmp_path, "rain", 20.0, droplet_rate_hz=10)[RATE:, 0]
    fast = render_texture(tmp_path, "rain", 20.0, droplet_rate_hz=80)[RATE:, 0]
    power = np.abs(np.fft.rfft(fast)) ** 2
    f = np.fft.rfftfreq(fast.size, 1 / RATE)
    octaves = [(250, 500), (1000, 2000), (4000, 8000)]
    levels = [10 * np.log10(power[(f >= a) & (f < b)].sum()) for a, b in octaves]
    assert max(levels) - min(levels) < 20.0  # broadband: no octave far below
    rate_slow = _onsets_per_s(slow, (2500, 9000))
    rate_fast = _onsets_per_s(fast, (2500, 9000))
    # Half go to each ear, and the quietest (18 dB spread) hide in the hiss.
    assert 1.5 < rate_slow < 10.0
    assert rate_fast > 3.0 * rate_slow


def test_waves_swell_at_the_set_period(tmp_path: Path) -> None:
    x = render_texture(tmp_path, "waves", 70.0, swell_period_s=7)[5 * RATE :, 0]
    hop = RATE // 20
    envelope = np.sqrt(np.mean(x[: x.size // hop * hop].reshape(-1, hop) ** 2, axis=1))
    envelope -= envelope.mean()
    spectrum = np.abs(
        np.fft.rfft(envelope * np.hanning(envelope.size), 16 * envelope.size)
    )
    f = np.fft.rfftfreq(16 * envelope.size, hop / RATE)
    band = (f > 0.03) & (f < 2.0)
    peak_hz = f[band][np.argmax(spectrum[band])]
    assert 1 / peak_hz == pytest.approx(7.0, rel=0.05)


def _peak_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size), 4 * x.size))
    k = int(np.argmax(spectrum))
    # Parabolic interpolation between bins.
    a, b, c = np.log(spectrum[k - 1 : k + 2])
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * RATE / (4 * x.size)


def test_binaural_beat_is_the_exact_difference_between_the_ears(
    tmp_path: Path,
) -> None:
    x = render_texture(tmp_path, "binaural", 10.0, carrier_hz=200, beat_hz=6.5)
    left, right = _peak_hz(x[RATE:, 0]), _peak_hz(x[RATE:, 1])
    assert right - left == pytest.approx(6.5, abs=0.01)
    assert (left + right) / 2 == pytest.approx(200.0, abs=0.01)


def _envelope_rate_hz(x: np.ndarray, low: float, high: float) -> float:
    envelope = np.abs(x) - np.mean(np.abs(x))
    spectrum = np.abs(np.fft.rfft(envelope * np.hanning(envelope.size)))
    f = np.fft.rfftfreq(envelope.size, 1 / RATE)
    band = (f > low) & (f < high)
    k = np.flatnonzero(band)[np.argmax(spectrum[band])]
    a, b, c = np.log(spectrum[k - 1 : k + 2])
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * RATE / envelope.size


@pytest.mark.parametrize(("name", "rate_hz"), [("isochronic", 10.0), ("am", 16.0)])
def test_entrainment_rate_is_exact(tmp_path: Path, name: str, rate_hz: float) -> None:
    x = render_texture(tmp_path, name, 31.0, rate_hz=rate_hz)[RATE:, 0]
    assert _envelope_rate_hz(x, 0.5, 40.0) == pytest.approx(rate_hz, abs=0.01)


def test_noise_tilt_adds_its_slope(tmp_path: Path) -> None:
    def slope_db_per_octave(tilt: float) -> float:
        x = render_texture(tmp_path, "noise", 20.0, color="pink", tilt_db=tilt)
        power = np.abs(np.fft.rfft(x[RATE:, 0])) ** 2
        f = np.fft.rfftfreq(x.shape[0] - RATE, 1 / RATE)
        centres = 125.0 * 2.0 ** np.arange(6)  # 125 Hz .. 4 kHz
        levels = [
            10 * np.log10(power[(f >= c / 2**0.5) & (f < c * 2**0.5)].mean())
            for c in centres
        ]
        return float(np.polyfit(np.log2(centres), levels, 1)[0])

    flat = slope_db_per_octave(0.0)
    assert flat == pytest.approx(-3.0, abs=0.5)
    assert slope_db_per_octave(-2.0) - flat == pytest.approx(-2.0, abs=0.5)


def test_heartbeat_beats_at_its_rate(tmp_path: Path) -> None:
    x = render_texture(tmp_path, "heartbeat", 21.0, rate_bpm=72)[RATE:, 0]
    hop = RATE // 100
    envelope = np.sqrt(np.mean(x[: x.size // hop * hop].reshape(-1, hop) ** 2, axis=1))
    envelope -= envelope.mean()
    ac = np.correlate(envelope, envelope, "full")[envelope.size - 1 :]
    lags = np.arange(ac.size) * hop / RATE
    window = (lags > 0.5) & (lags < 1.5)
    period = lags[window][np.argmax(ac[window])]
    assert 60.0 / period == pytest.approx(72.0, rel=0.02)


def test_thunder_rolls_only_when_fired(tmp_path: Path) -> None:
    x = render_texture(tmp_path, "thunder", 3.0)
    assert np.max(np.abs(x)) == 0.0  # silent until its trigger fires


def test_pad_plays_chords_of_its_scale(tmp_path: Path) -> None:
    x = render_texture(tmp_path, "pad", 6.0, scale="major", root_hz=110, change_s=20)
    spectrum = np.abs(np.fft.rfft(x[3 * RATE :, 0]))
    f = np.fft.rfftfreq(3 * RATE, 1 / RATE)
    # The strongest partials below 400 Hz sit on notes of A major.
    low = (f > 80) & (f < 400)
    top = f[low][np.argsort(spectrum[low])[-4:]]
    semitones = 12 * np.log2(top / 110.0)
    degrees = np.round(semitones) % 12
    assert np.all(np.abs(semitones - np.round(semitones)) < 0.25)
    assert set(degrees.astype(int)) <= {0, 2, 4, 5, 7, 9, 11}


def test_sample_texture_reads_a_file_next_to_the_scene(tmp_path: Path) -> None:
    import soundfile

    t = np.arange(2 * RATE) / RATE
    soundfile.write(tmp_path / "tone.wav", 0.3 * np.sin(2 * np.pi * 330 * t), RATE)
    x = render_texture(tmp_path, "sample", 3.0, path="tone.wav", room=0)
    assert _peak_hz(x[RATE // 2 : 3 * RATE // 2, 0]) == pytest.approx(330.0, abs=1.0)
