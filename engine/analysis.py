"""Measurements of rendered audio: sample peak and true peak.

Used by the tests, the benchmarks and ``soundscape render``'s summary. Offline
only (NumPy on whole arrays).

Audio thread: no.
"""

from __future__ import annotations

import numpy as np

OVERSAMPLING = 4
# The interpolator: a Kaiser-windowed sinc, 24 taps per polyphase branch.
# BS.1770-4's example uses 12, which under-reads naive square waves by 0.6 dB;
# 24 reads sines to 0.003 dB up to fs/4. Content right at Nyquist has no single
# true peak (limited white noise reads 1 dB higher through a 128-tap filter), so
# the filter is fixed here, and the limiter's detector uses the same design.
_TAPS_PER_PHASE = 24
_KAISER_BETA = 8.0


def _interpolator() -> np.ndarray:
    half = OVERSAMPLING * _TAPS_PER_PHASE // 2
    n = np.arange(-half, half + 1)
    # A windowed sinc with its cutoff at the original Nyquist; sinc(n/4) is 1 at
    # n = 0 and 0 at the other multiples of 4, so original samples pass unchanged.
    return np.sinc(n / OVERSAMPLING) * np.kaiser(n.size, _KAISER_BETA)


_KERNEL = _interpolator()


def sample_peak_db(audio: np.ndarray) -> float:
    """Largest absolute sample value in dBFS (``-inf`` for silence)."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    return float(20.0 * np.log10(peak)) if peak > 0.0 else -np.inf


def true_peak_dbtp(audio: np.ndarray, skip_frames: int = 0) -> float:
    """True peak in dBTP, measured 4x oversampled as ITU-R BS.1770 describes.

    ``audio`` is ``(n_frames,)`` or ``(n_frames, n_channels)``. The first
    ``skip_frames`` are left out, and so are the frames at either end that the
    interpolator would fill from beyond the recording (an abrupt cut rings).

    >>> t = np.arange(4800) / 48000
    >>> x = np.sqrt(2) * np.sin(2 * np.pi * 12000 * t + np.pi / 4)  # samples +-1
    >>> round(true_peak_dbtp(x, skip_frames=100), 1)
    3.0
    """
    frames = np.asarray(audio, dtype=np.float64)
    if frames.ndim == 1:
        frames = frames[:, None]
    n_frames = frames.shape[0]
    edge = _TAPS_PER_PHASE
    first = max(skip_frames, edge)
    if n_frames <= first + edge:
        raise ValueError(
            f"true_peak_dbtp needs more than {first + edge} frames, got {n_frames}"
        )
    half = _KERNEL.size // 2
    peak = 0.0
    for channel in frames.T:
        stuffed = np.zeros(n_frames * OVERSAMPLING)
        stuffed[::OVERSAMPLING] = channel
        up = np.convolve(stuffed, _KERNEL)[half : half + stuffed.size]
        kept = up[OVERSAMPLING * first : OVERSAMPLING * (n_frames - edge)]
        peak = max(peak, float(np.max(np.abs(kept))))
    return float(20.0 * np.log10(peak)) if peak > 0.0 else -np.inf
