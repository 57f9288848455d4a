"""Master-bus processing: a stereo-linked look-ahead true-peak limiter.

The engine's output ends here (DESIGN.md section 5: nothing leaves above the
configured ceiling, default -1 dBTP). The limiter delays the audio by a fixed
latency, see :func:`limiter_latency_frames`; the engine reports it as output
latency.

Audio thread: yes (``limiter``); no (the control-plane helpers that size and
initialise state).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from numba import njit

from engine.dsp.jit import JIT, zap
from engine.dsp.layout import I_IN, I_OUT
from engine.dsp.nodes import NodeSpec, Param, register
from engine.dsp.opcodes import Op

# Sidechain interpolator: 4x oversampling by a windowed-sinc polyphase FIR with
# _TAPS taps per phase. BS.1770-4 annex 2 suggests 4 x 12; measured against a
# 4x scipy resample_poly meter, 12 taps under-read naive square waves and white
# noise by up to 0.6 dB, 24 taps (Kaiser beta 8) by at most 0.06 dB. Phase 0
# is the sample itself; phases 1-3 are the points a quarter, a half and three
# quarters of a sample after it.
_TAPS = 24
_OVERSAMPLE = 4
_KAISER_BETA = 8.0
_HOLD = 4  # extra frames the gain stays down around each peak (even)
# The gain aims this far under the ceiling: two good 4x interpolators (this
# sidechain's, a meter's) still disagree by up to ~0.09 dB on the peaks of
# densely limited noise, so the output should not sit exactly on the line.
_MARGIN_DB = 0.05
_MARGIN = 10.0 ** (-_MARGIN_DB / 20.0)
_INV_LN10_20 = math.log(10.0) / 20.0


def _interpolator_phases() -> np.ndarray:
    """Taps of phases 1..3, reversed to run over the history oldest-first."""
    length = _OVERSAMPLE * _TAPS
    centre = length // 2  # an integer multiple of 4: phase 0 is a pure delay
    j = np.arange(length + 1)
    taps = np.sinc((j - centre) / _OVERSAMPLE) * np.kaiser(length + 1, _KAISER_BETA)
    phases = np.empty((_OVERSAMPLE - 1, _TAPS))
    for phase in range(1, _OVERSAMPLE):
        h = taps[phase + _OVERSAMPLE * np.arange(_TAPS)]
        # Unity gain at DC for every phase, so a flat signal reads flat.
        phases[phase - 1] = (h / h.sum())[::-1]
    return phases


_PHASES = _interpolator_phases()
# No interpolated point can exceed the largest |x| in the history times this, so
# while every recent sample is below ceiling / _L1 the sidechain can be skipped
# (the result, "no reduction", is the same bit for bit).
_L1 = max(1.0, float(np.max(np.sum(np.abs(_PHASES), axis=1))))
# The oversampled points belong to the sample _TAPS // 2 frames before the
# newest one (the centre of the interpolator).
_SIDECHAIN_DELAY = _TAPS // 2


def _lookahead_frames(sample_rate: float, options: Mapping[str, Any]) -> int:
    lookahead_ms = float(options["lookahead_ms"])
    if not (math.isfinite(lookahead_ms) and 0.0 < lookahead_ms <= 100.0):
        raise ValueError(
            f"limiter: lookahead_ms={lookahead_ms!r} must be in (0, 100]. Use 1-5 ms."
        )
    return max(1, round(lookahead_ms * 1e-3 * sample_rate))


def limiter_latency_frames(sample_rate: float, lookahead_ms: float = 1.5) -> int:
    """Frames between a sample entering the limiter and leaving it.

    The attack ramp spans the look-ahead window; the sidechain interpolator and
    the hold around each peak add a few frames: 85 at 48 kHz, 79 at 44.1 kHz with
    the default 1.5 ms.
    """
    window = _lookahead_frames(sample_rate, {"lookahead_ms": lookahead_ms})
    return window - 1 + _SIDECHAIN_DELAY + _HOLD // 2


def _pow2_at_least(n: int) -> int:
    return 1 << max(1, math.ceil(math.log2(max(n, 2))))


# State layout: scalars, then the arrays.
_L_FRAME = 0  # frames processed (exact in float64 for 5000 years at 48 kHz)
_L_HEAD = 1  # sliding-minimum deque: first and one-past-last entry, absolute
_L_TAIL = 2
_L_RELEASED = 3  # window minimum after the release smoothing
_L_SUM = 4  # running sum of the last `window` released gains
_L_UNTIL_RESUM = 5  # frames until that sum is recomputed exactly
_L_WINDOW = 6  # look-ahead window, frames
_L_LATENCY = 7
_L_HIST_POS = 8
_L_RELEASE_MS = 9  # release_ms the coefficient below was made for
_L_RELEASE_COEF = 10
_L_DELAY_LEN = 11  # ring lengths (powers of two)
_L_DEQUE_LEN = 12
_L_BOX_LEN = 13
_L_LOUD = 14  # frames until the last loud sample leaves the sidechain history
_L_SCALARS = 15


def _limiter_sizes(sample_rate: float, options: Mapping[str, Any]):
    window = _lookahead_frames(sample_rate, options)
    latency = window - 1 + _SIDECHAIN_DELAY + _HOLD // 2
    delay_len = _pow2_at_least(latency + 1)
    deque_len = _pow2_at_least(window + _HOLD + 1)
    box_len = _pow2_at_least(window)
    return window, latency, delay_len, deque_len, box_len


def _limiter_state(voices: int, sample_rate: float, options: Mapping[str, Any]) -> int:
    _, _, delay_len, deque_len, box_len = _limiter_sizes(sample_rate, options)
    return _L_SCALARS + 4 * _TAPS + 2 * delay_len + 2 * deque_len + box_len


def _release_coef(release_ms: float, sample_rate: float) -> float:
    return math.exp(-1.0 / (release_ms * 1e-3 * sample_rate))


def _limiter_init(
    state: np.ndarray,
    params: np.ndarray,
    voices: int,
    sample_rate: float,
    options: Mapping[str, Any],
) -> None:
    window, latency, delay_len, deque_len, box_len = _limiter_sizes(
        sample_rate, options
    )
    state[:] = 0.0
    state[_L_RELEASED] = 1.0
    state[_L_SUM] = float(window)
    state[_L_UNTIL_RESUM] = float(window)
    state[_L_WINDOW] = window
    state[_L_LATENCY] = latency
    state[_L_DELAY_LEN] = delay_len
    state[_L_DEQUE_LEN] = deque_len
    state[_L_BOX_LEN] = box_len
    # params: [ceiling_dbtp L, R, release_ms L, R]; the left values rule.
    state[_L_RELEASE_MS] = params[2]
    state[_L_RELEASE_COEF] = _release_coef(params[2], sample_rate)
    box_start = _L_SCALARS + 4 * _TAPS + 2 * delay_len + 2 * deque_len
    state[box_start : box_start + box_len] = 1.0  # no gain reduction yet


@njit(**JIT)
def limiter(bufs, row, p0, p1, state, sample_rate, n_frames):
    """Stereo-linked look-ahead true-peak limiter.

    Params: ``ceiling_dbtp`` (true-peak ceiling, -20..0 dBTP), ``release_ms``
    (time constant of the gain's exponential recovery). Option ``lookahead_ms``
    (default 1.5): the attack time, and most of the latency
    (:func:`limiter_latency_frames`: 85 frames at 48 kHz). Input ``in``: one
    channel (fed to both sides) or two; output: two.

    Per frame: the sidechain interpolates 4x (24-tap windowed-sinc phases) and
    takes the largest ``|x|`` over both channels and the four points of the
    interval; the required gain is ``min(1, target / peak)``, the target being
    0.05 dB under the ceiling (margin for meters that interpolate a little
    differently; at most 0.09 dB was seen). A sliding minimum over the
    look-ahead window plus a small hold, a release smoother that can only
    follow it down at once and up exponentially, then a moving average
    over the window: the gain ramps down linearly and is at or below the
    required gain by the time the peak (and two frames on either side of it)
    leaves the delay line. Output = delayed input * gain, then clamped at the
    ceiling as a last resort (normally inactive; it catches the interpolator's
    small under-estimates of the true peak).

    A signal whose interpolated peaks stay under the target passes bit-exactly
    (delayed); the sidechain is not even computed while every recent sample is
    under target / 2.2 (the interpolator's worst-case gain). The
    input is zapped (NaN, inf and denormals read as 0), so a bad sample cannot
    reach the gain state.

    State: see the ``_L_*`` offsets: scalars, the sidechain history (two
    channels, written twice so the last 24 frames are contiguous), the audio
    delay ring (interleaved), the deque of (gain, frame) and the ring of
    released gains the moving average runs over.
    """
    out_left = bufs[row[I_OUT]]
    out_right = bufs[row[I_OUT] + 1]
    in_left = bufs[row[I_IN]]
    in_right = bufs[row[I_IN] + row[I_IN + 1]]

    window = int(state[_L_WINDOW])
    latency = int(state[_L_LATENCY])
    # Masks known to be non-negative drop the negative-index wrap on reads.
    delay_mask = (int(state[_L_DELAY_LEN]) - 1) & 0x7FFFFFFF
    deque_len = int(state[_L_DEQUE_LEN])
    deque_mask = (deque_len - 1) & 0x7FFFFFFF
    box_len = int(state[_L_BOX_LEN])
    box_mask = (box_len - 1) & 0x7FFFFFFF
    hist = state[_L_SCALARS : _L_SCALARS + 4 * _TAPS]
    start = _L_SCALARS + 4 * _TAPS
    delay_ring = state[start : start + 2 * (delay_mask + 1)]
    start += 2 * (delay_mask + 1)
    deque_gain = state[start : start + deque_len]
    deque_frame = state[start + deque_len : start + 2 * deque_len]
    start += 2 * deque_len
    box = state[start : start + box_len]

    inv_n = 1.0 / n_frames
    ceiling = math.exp(p0[0] * _INV_LN10_20)
    ceiling_step = (math.exp(p1[0] * _INV_LN10_20) - ceiling) * inv_n
    coef = state[_L_RELEASE_COEF]
    coef_end = coef
    if p1[2] != state[_L_RELEASE_MS]:
        coef_end = math.exp(-1.0 / (p1[2] * 1e-3 * sample_rate))
        state[_L_RELEASE_MS] = p1[2]
        state[_L_RELEASE_COEF] = coef_end
    coef_step = (coef_end - coef) * inv_n
    # While the ceiling moves, treat every sample as loud (no skipping).
    loud_threshold = -1.0 if ceiling_step != 0.0 else ceiling * _MARGIN / _L1
    loud = int(state[_L_LOUD])

    frame_count = int(state[_L_FRAME])
    head = int(state[_L_HEAD])
    tail = int(state[_L_TAIL])
    released = state[_L_RELEASED]
    total = state[_L_SUM]
    until_resum = int(state[_L_UNTIL_RESUM])
    hp = int(state[_L_HIST_POS])
    span = window + _HOLD  # frames the sliding minimum looks back over

    for frame in range(n_frames):
        ceiling += ceiling_step
        coef += coef_step
        xl = zap(in_left[frame])
        xr = zap(in_right[frame])

        # Sidechain: history written twice so the newest _TAPS frames are the
        # contiguous run hp + 1 .. hp + _TAPS, oldest first.
        hp += 1
        if hp == _TAPS:
            hp = 0
        hist[hp] = xl
        hist[hp + _TAPS] = xl
        hist[2 * _TAPS + hp] = xr
        hist[3 * _TAPS + hp] = xr
        if abs(xl) > loud_threshold or abs(xr) > loud_threshold:
            loud = _TAPS
        elif loud > 0:
            loud -= 1
        need = 1.0
        if loud > 0:
            centre = hp + _TAPS - _SIDECHAIN_DELAY
            peak = max(abs(hist[centre]), abs(hist[2 * _TAPS + centre]))
            for phase in range(_OVERSAMPLE - 1):
                acc_l = 0.0
                acc_r = 0.0
                for t in range(_TAPS):
                    h = _PHASES[phase, t]
                    acc_l += h * hist[hp + 1 + t]
                    acc_r += h * hist[2 * _TAPS + hp + 1 + t]
                peak = max(peak, abs(acc_l), abs(acc_r))
            target = ceiling * _MARGIN
            if peak > target:
                need = target / peak

        # Sliding minimum of `need` over the last `span` frames (a monotonic
        # deque: amortised O(1) per frame).
        while tail > head and deque_gain[(tail - 1) & deque_mask] >= need:
            tail -= 1
        deque_gain[tail & deque_mask] = need
        deque_frame[tail & deque_mask] = frame_count
        tail += 1
        while deque_frame[head & deque_mask] <= frame_count - span:
            head += 1
        floor = deque_gain[head & deque_mask]

        # Release: down at once, up exponentially; never above the minimum.
        if floor < released:
            released = floor
        else:
            released = floor + coef * (released - floor)

        # Moving average over the window: a linear ramp into every dip that is
        # complete when the peak comes out of the delay line.
        slot = frame_count & box_mask
        total += released - box[(frame_count - window) & box_mask]
        box[slot] = released
        until_resum -= 1
        if until_resum == 0:
            # Re-add exactly, so rounding in the running sum cannot creep.
            until_resum = window
            total = 0.0
            for back in range(window):
                total += box[(frame_count - back) & box_mask]
        gain = total / window
        gain = min(gain, 1.0)

        write = frame_count & delay_mask
        delay_ring[2 * write] = xl
        delay_ring[2 * write + 1] = xr
        read = (frame_count - latency) & delay_mask
        yl = delay_ring[2 * read] * gain
        yr = delay_ring[2 * read + 1] * gain
        out_left[frame] = min(max(yl, -ceiling), ceiling)
        out_right[frame] = min(max(yr, -ceiling), ceiling)
        frame_count += 1

    state[_L_FRAME] = frame_count
    state[_L_HEAD] = head
    state[_L_TAIL] = tail
    state[_L_RELEASED] = zap(released)
    state[_L_SUM] = total
    state[_L_UNTIL_RESUM] = until_resum
    state[_L_HIST_POS] = hp
    state[_L_LOUD] = loud


def _stereo(voices: int) -> int:
    return 2


register(
    NodeSpec(
        "limiter",
        Op.LIMITER,
        "Stereo-linked look-ahead true-peak limiter (4x oversampled detector).",
        inputs=("in",),
        params=(
            Param(
                "ceiling_dbtp",
                -1.0,
                "dBTP",
                -20.0,
                0.0,
                smoothing_ms=50.0,
                doc="true-peak ceiling",
            ),
            Param(
                "release_ms",
                80.0,
                "ms",
                1.0,
                5000.0,
                smoothing_ms=0.0,
                doc="time constant of the gain's recovery",
            ),
        ),
        options={"lookahead_ms": 1.5},
        state_size=_limiter_state,
        init=_limiter_init,
        fixed_voices=2,
        output_width=_stereo,
    ),
)
