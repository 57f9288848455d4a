"""Measurements of rendered audio: sample peak, true peak and loudness.

Used by the tests, the benchmarks and ``soundscape render``'s summary. Offline
only (whole arrays).

Audio thread: no.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

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


# --- loudness (ITU-R BS.1770-4) ---------------------------------------------------

# The K-weighting stages as analog prototypes (shelf gain, centre, Q; high-pass
# corner, Q), chosen so that at 48 kHz they give the standard's own coefficients
# (checked in the tests); any other rate gets the same curve.
_SHELF_GAIN_DB = 3.999843853973347
_SHELF_HZ = 1681.974450955533
_SHELF_Q = 0.7071752369554196
_SHELF_BANDWIDTH = 0.4996667741545416
_HIGHPASS_HZ = 38.13547087602444
_HIGHPASS_Q = 0.5003270373238773
_BLOCK_S = 0.4
_STEP_S = 0.1
_ABSOLUTE_GATE_LUFS = -70.0
_RELATIVE_GATE_LU = -10.0


def k_weighting(sample_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """The two K-weighting biquads at ``sample_rate``: ``(b, a)``, each 2 x 3."""
    k = math.tan(math.pi * _SHELF_HZ / sample_rate)
    vh = 10.0 ** (_SHELF_GAIN_DB / 20.0)
    vb = vh**_SHELF_BANDWIDTH
    a0 = 1.0 + k / _SHELF_Q + k * k
    shelf_b = [
        (vh + vb * k / _SHELF_Q + k * k) / a0,
        2.0 * (k * k - vh) / a0,
        (vh - vb * k / _SHELF_Q + k * k) / a0,
    ]
    shelf_a = [1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / _SHELF_Q + k * k) / a0]
    k = math.tan(math.pi * _HIGHPASS_HZ / sample_rate)
    a0 = 1.0 + k / _HIGHPASS_Q + k * k
    high_b = [1.0, -2.0, 1.0]
    high_a = [1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / _HIGHPASS_Q + k * k) / a0]
    return np.array([shelf_b, high_b]), np.array([shelf_a, high_a])


@njit(cache=True, nogil=True)
def _biquads_squared(x, b, a):  # pragma: no cover - compiled
    """Run ``x`` through the biquads in series and return the squares."""
    y = x.copy()
    for stage in range(b.shape[0]):
        b0, b1, b2 = b[stage, 0], b[stage, 1], b[stage, 2]
        a1, a2 = a[stage, 1], a[stage, 2]
        x1 = x2 = y1 = y2 = 0.0
        for n in range(y.size):
            xn = y[n]
            yn = b0 * xn + b1 * x1 + b2 * x2 - a1 * y1 - a2 * y2
            x2, x1 = x1, xn
            y2, y1 = y1, yn
            y[n] = yn
    return y * y


def integrated_loudness_lufs(audio: np.ndarray, sample_rate: float) -> float:
    """Integrated loudness in LUFS (ITU-R BS.1770-4 / EBU R 128): K-weighted,
    400 ms blocks every 100 ms, gated at -70 LUFS and then 10 LU under the
    ungated mean. ``audio`` is ``(n_frames,)`` or ``(n_frames, n_channels)``
    with left/right (weight 1); ``-inf`` if everything is gated away.

    >>> t = np.arange(48000 * 3) / 48000
    >>> tone = 10 ** (-23 / 20) * np.sin(2 * np.pi * 997 * t)   # -23 dBFS sine
    >>> round(integrated_loudness_lufs(np.stack([tone, tone], 1), 48000), 1)
    -23.0
    """
    frames = np.asarray(audio, dtype=np.float64)
    if frames.ndim == 1:
        frames = frames[:, None]
    block = round(_BLOCK_S * sample_rate)
    step = round(_STEP_S * sample_rate)
    if frames.shape[0] < block:
        raise ValueError(
            f"integrated loudness needs at least {_BLOCK_S} s, got "
            f"{frames.shape[0] / sample_rate:.3f} s"
        )
    b, a = k_weighting(sample_rate)
    n_blocks = 1 + (frames.shape[0] - block) // step
    power = np.zeros(n_blocks)
    for channel in frames.T:
        squared = _biquads_squared(np.ascontiguousarray(channel), b, a)
        running = np.concatenate([[0.0], np.cumsum(squared)])
        starts = np.arange(n_blocks) * step
        power += (running[starts + block] - running[starts]) / block
    with np.errstate(divide="ignore"):
        block_lufs = -0.691 + 10.0 * np.log10(power)
    gated = power[block_lufs > _ABSOLUTE_GATE_LUFS]
    if gated.size == 0:
        return -math.inf
    relative_gate = -0.691 + 10.0 * math.log10(gated.mean()) + _RELATIVE_GATE_LU
    gated = power[(block_lufs > _ABSOLUTE_GATE_LUFS) & (block_lufs > relative_gate)]
    return float(-0.691 + 10.0 * math.log10(gated.mean()))


def _lpc_residual(x: np.ndarray, start: int, stop: int, order: int) -> np.ndarray:
    """Prediction error of ``x[start:stop]`` from an order-``order`` linear
    predictor fitted to that stretch (autocorrelation method, Hann window)."""
    lo = max(start - order, 0)
    segment = x[lo:stop]
    windowed = segment * np.hanning(segment.size)
    r = np.correlate(windowed, windowed, "full")[segment.size - 1 :][: order + 1]
    if r[0] <= 0.0:
        return np.zeros(stop - start)
    r[0] *= 1.0 + 1e-6  # a pure tone makes the system singular; keep it solvable
    toeplitz = r[np.abs(np.arange(order)[:, None] - np.arange(order)[None, :])]
    coefficients = np.linalg.solve(toeplitz, r[1 : order + 1])
    predicted = np.convolve(segment, np.concatenate([[0.0], coefficients]))[
        : segment.size
    ]
    return (segment - predicted)[start - lo :]


def find_clicks(
    audio: np.ndarray,
    sample_rate: float,
    ratio: float = 10.0,
    order: int = 16,
    block_ms: float = 40.0,
    floor_db: float = -90.0,
) -> np.ndarray:
    """Frames where the audio clicks: a discontinuity the sound around it does
    not explain.

    Each ``block_ms`` stretch is fitted with a linear predictor of ``order``
    taps, as declickers do: tones and coloured noise are predictable, a step
    or a spike is not, so it stands out in the prediction error. A click is a
    frame whose error is ``ratio`` times the block's robust error level (the
    median absolute error where there is sound, scaled to an RMS) and above
    ``floor_db`` (dBFS).
    A sound that starts abruptly out of silence counts too: that is a click.
    Every channel is checked; returns the sorted first frame of each click.

    >>> t = np.arange(48000) / 48000
    >>> x = 0.5 * np.sin(2 * np.pi * 220 * t); x[30000:] += 0.05
    >>> find_clicks(x, 48000).tolist()
    [30000]
    """
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    block = max(4 * order, round(block_ms / 1000.0 * sample_rate))
    floor = 10.0 ** (floor_db / 20.0)
    found: list[int] = []
    for channel in range(x.shape[1]):
        signal = x[:, channel]
        for start in range(0, signal.size, block):
            stop = min(start + block, signal.size)
            error = np.abs(_lpc_residual(signal, start, stop, order))
            # Digital silence predicts itself exactly; it says nothing of the
            # level of the sound around a click.
            sounding = error[error > 0.0]
            if sounding.size == 0:
                continue
            level = 1.4826 * np.median(sounding)
            hits = np.flatnonzero((error > ratio * level) & (error > floor))
            # The first frames have no history to be predicted from.
            found.extend(int(h) + start for h in hits if h + start >= order)
    clicks: list[int] = []
    for frame in sorted(found):
        if not clicks or frame - clicks[-1] > order:
            clicks.append(frame)
    return np.array(clicks, dtype=np.int64)
