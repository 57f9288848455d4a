"""True peak by physics: a sine's reconstructed peak is its amplitude wherever its
samples fall, and the meter matches scipy's independent 4x resampler. Loudness
by the standard: its own filter coefficients, the EBU Tech 3341 test signals,
and agreement with pyloudnorm."""

from __future__ import annotations

import numpy as np
import pyloudnorm
import pytest
from scipy.signal import resample_poly

from engine.analysis import (
    find_clicks,
    integrated_loudness_lufs,
    k_weighting,
    sample_peak_db,
    true_peak_dbtp,
)

RATE = 48000


@pytest.mark.parametrize("frequency_hz", [997.0, 5000.0, 11025.0, 12000.0])
def test_sine_true_peak_is_its_amplitude_between_the_samples(
    frequency_hz: float,
) -> None:
    t = np.arange(RATE // 4) / RATE
    amplitude = np.sqrt(2.0)
    x = amplitude * np.sin(2 * np.pi * frequency_hz * t + np.pi / 4)
    assert true_peak_dbtp(x, skip_frames=100) == pytest.approx(3.0103, abs=0.02)
    if frequency_hz == RATE / 4:
        # Every sample sits at +-1: the sample peak misses the true peak by 3 dB.
        assert sample_peak_db(x) == pytest.approx(0.0, abs=1e-9)


def test_agrees_with_an_independent_resampler_on_noise_and_squares() -> None:
    rng = np.random.default_rng(3)
    t = np.arange(RATE // 2) / RATE
    signals = [
        rng.standard_normal((RATE // 2, 2)),
        np.sign(np.sin(2 * np.pi * 997.0 * t + 0.1)),
    ]
    for x in signals:
        up = resample_poly(np.atleast_2d(x.T), 4, 1, axis=-1)[:, 400:-400]
        reference_db = 20 * np.log10(np.max(np.abs(up)))
        assert true_peak_dbtp(x, skip_frames=100) == pytest.approx(
            reference_db, abs=0.1
        )


def test_abrupt_ends_do_not_count() -> None:
    t = np.arange(RATE // 10) / RATE
    x = 0.5 * np.sin(2 * np.pi * 12000.0 * t + np.pi / 4)  # cut while at full swing
    assert true_peak_dbtp(x) == pytest.approx(20 * np.log10(0.5), abs=0.02)
    # The same cut inside the recording is a real overshoot, and it is counted.
    padded = np.concatenate([np.zeros(200), x, np.zeros(200)])
    assert true_peak_dbtp(padded) > 20 * np.log10(0.5) + 0.05


def test_silence_and_too_short_input() -> None:
    assert true_peak_dbtp(np.zeros(1000)) == -np.inf
    with pytest.raises(ValueError, match="needs more than"):
        true_peak_dbtp(np.zeros(10))


# --- loudness ------------------------------------------------------------------


def _sine(level_dbfs: float, seconds: float, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return 10 ** (level_dbfs / 20) * np.sin(2 * np.pi * 997.0 * t)


def test_k_weighting_at_48_khz_is_the_standards_own() -> None:
    b, a = k_weighting(48000)
    # ITU-R BS.1770-4, tables 1 and 2.
    np.testing.assert_allclose(
        b[0], [1.53512485958697, -2.69169618940638, 1.19839281085285], atol=1e-8
    )
    np.testing.assert_allclose(
        a[0], [1.0, -1.69065929318241, 0.73248077421585], atol=1e-8
    )
    np.testing.assert_allclose(b[1], [1.0, -2.0, 1.0])
    np.testing.assert_allclose(
        a[1], [1.0, -1.99004745483398, 0.99007225036621], atol=1e-8
    )


@pytest.mark.parametrize("rate", [44100, 48000])
def test_ebu_tech_3341_sines(rate: int) -> None:
    # A stereo 1 kHz sine at -23 dBFS reads -23.0 LUFS, at -33 dBFS -33.0.
    for level in (-23.0, -33.0):
        tone = _sine(level, 5.0, rate)
        stereo = np.stack([tone, tone], axis=1)
        assert integrated_loudness_lufs(stereo, rate) == pytest.approx(level, abs=0.1)
    # One channel carries half the power: 3 dB less.
    mono = _sine(-23.0, 5.0, rate)
    assert integrated_loudness_lufs(mono, rate) == pytest.approx(-26.01, abs=0.1)


def test_the_gates_leave_out_quiet_passages() -> None:
    # EBU Tech 3341 case 3: -36 dBFS for 10 s, -23 for 60 s, -36 for 10 s.
    quiet, loud = _sine(-36.0, 10.0), _sine(-23.0, 60.0)
    tone = np.concatenate([quiet, loud, quiet])
    stereo = np.stack([tone, tone], axis=1)
    assert integrated_loudness_lufs(stereo, RATE) == pytest.approx(-23.0, abs=0.1)
    assert integrated_loudness_lufs(np.zeros((RATE, 2)), RATE) == -np.inf
    faint = _sine(-80.0, 2.0)
    assert integrated_loudness_lufs(np.stack([faint, faint], 1), RATE) == -np.inf
    with pytest.raises(ValueError, match="at least 0.4 s"):
        integrated_loudness_lufs(np.zeros(100), RATE)


@pytest.mark.parametrize("rate", [44100, 48000])
def test_agrees_with_pyloudnorm_on_noise_with_quiet_parts(rate: int) -> None:
    rng = np.random.default_rng(2)
    noise = 0.1 * rng.standard_normal((10 * rate, 2))
    noise[: 3 * rate] *= 0.01
    reference = pyloudnorm.Meter(rate).integrated_loudness(noise)
    assert integrated_loudness_lufs(noise, rate) == pytest.approx(reference, abs=0.1)


def _bed(seconds: float = 3.0) -> np.ndarray:
    """A smooth test bed: a chord and a slow sweep, with a little noise."""
    t = np.arange(round(seconds * RATE)) / RATE
    chord = sum(0.15 * np.sin(2 * np.pi * f * t) for f in (110.0, 164.8, 220.0))
    sweep = 0.1 * np.sin(2 * np.pi * (200.0 * t + 300.0 * t * t))
    noise = 0.001 * np.random.default_rng(3).standard_normal(t.size)
    return chord + sweep + noise


@pytest.mark.parametrize(
    ("kind", "size"), [("step", 0.02), ("spike", 0.03), ("kink", 0.0)]
)
def test_click_detector_finds_planted_clicks_and_nothing_else(
    kind: str, size: float
) -> None:
    x = _bed()
    assert find_clicks(x, RATE).size == 0
    planted = [31_000, 77_777, 120_001]
    for frame in planted:
        if kind == "step":
            x[frame:] += size
        elif kind == "spike":
            x[frame] += size
        else:  # the sound stops dead: a kink to silence
            x[frame:] = 0.0
            break
    found = find_clicks(x, RATE)
    expected = planted[:1] if kind == "kink" else planted
    assert len(found) == len(expected)
    assert np.all(np.abs(found - np.array(expected)) <= 2)


def test_click_detector_ignores_smooth_fades_and_stereo_finds_either_side() -> None:
    x = _bed()
    fade = np.clip(np.linspace(2.0, -1.0, x.size), 0.0, 1.0)  # 1 s linear fade
    assert find_clicks(x * fade, RATE).size == 0
    stereo = np.stack([x, x.copy()], axis=1)
    stereo[50_000:, 1] += 0.02
    assert find_clicks(stereo, RATE).tolist() == [50_000]
