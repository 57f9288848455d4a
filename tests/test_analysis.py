"""True peak by physics: a sine's reconstructed peak is its amplitude wherever its
samples fall, and the meter matches scipy's independent 4x resampler."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import resample_poly

from engine.analysis import sample_peak_db, true_peak_dbtp

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
