"""Time-based effects: a fractional delay line with feedback, and a stereo reverb.

``delay`` is a bank: one Hermite-interpolated delay line per voice, with a damped
feedback path (a tape-echo model). ``reverb`` is a fixed stereo node: predelay,
input diffusion and an 8-line feedback delay network (Jot) whose per-line
absorption filters make the reverberation time frequency dependent.

Both keep their delay memory inside the node's state slice, sized at compile time
from the ``sample_rate`` (and, for ``delay``, the ``max_delay_s`` option).

Audio thread: yes (kernels); no (``_delay_state`` and the other control-plane
helpers that size and initialise state).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from numba import njit

from engine.dsp.jit import JIT, zap
from engine.dsp.layout import I_IN, I_OUT, I_VOICES
from engine.dsp.nodes import NodeSpec, Param, register
from engine.dsp.opcodes import Op

_EXP_MINUS_PI = math.exp(-math.pi)


@njit(**JIT)
def damping_pole(damping_hz: float, sample_rate: float) -> float:
    """Pole ``p`` of the one-pole low-pass ``y = (1 - p) x + p y[n-1]``.

    ``p = exp(-2 pi f / fs)`` is the usual choice, but it never reaches 0, so even
    ``damping_hz`` at Nyquist would dull every pass round a feedback loop. Taking
    away the straight line ``exp(-pi) * f / (fs / 2)`` makes ``p`` exactly 0 (a
    transparent filter) at Nyquist and above, while moving the -3 dB point by less
    than 2 % for cutoffs below ``fs / 48`` (1 kHz at 48 kHz). It stays positive
    and falls monotonically with ``damping_hz``.
    """
    x = damping_hz / (0.5 * sample_rate)
    if x >= 1.0:
        return 0.0
    x = max(x, 0.0)
    return math.exp(-math.pi * x) - _EXP_MINUS_PI * x


# --------------------------------------------------------------------------------
# delay
# --------------------------------------------------------------------------------

# Header: write position, ring length in frames, longest delay in samples.
_D_POS = 0
_D_LENGTH = 1
_D_MAX = 2
_D_HEADER = 3


def _delay_ring_frames(sample_rate: float, options: Mapping[str, Any]) -> int:
    max_delay_s = float(options["max_delay_s"])
    if not (math.isfinite(max_delay_s) and 0.0 < max_delay_s <= 600.0):
        raise ValueError(
            f"delay: max_delay_s={max_delay_s!r} must be in (0, 600] seconds. "
            "Set a positive max_delay_s."
        )
    # Cubic interpolation reads one sample past the longest delay; two spare.
    return math.ceil(max_delay_s * sample_rate) + 4


def _delay_state(voices: int, sample_rate: float, options: Mapping[str, Any]) -> int:
    return _D_HEADER + 4 * voices + _delay_ring_frames(sample_rate, options) * voices


def _delay_init(
    state: np.ndarray,
    params: np.ndarray,
    voices: int,
    sample_rate: float,
    options: Mapping[str, Any],
) -> None:
    max_delay_s = float(options["max_delay_s"])
    longest = float(np.max(params[0:voices]))
    if longest > max_delay_s:
        raise ValueError(
            f"delay: delay_s={longest:g} exceeds max_delay_s={max_delay_s:g}. "
            "Reduce delay_s or raise max_delay_s."
        )
    state[:] = 0.0
    state[_D_LENGTH] = _delay_ring_frames(sample_rate, options)
    state[_D_MAX] = max_delay_s * sample_rate
    for voice in range(voices):
        damping_hz = params[3 * voices + voice]
        pole = damping_pole(damping_hz, sample_rate)
        state[_D_HEADER + voices + voice] = pole
        state[_D_HEADER + 2 * voices + voice] = pole
        state[_D_HEADER + 3 * voices + voice] = damping_hz


@njit(**JIT)
def delay(bufs, row, p0, p1, state, sample_rate, n_frames):
    """Fractional delay line with damped feedback, per voice (a tape echo).

    Params: ``delay_s`` (seconds), ``feedback`` (-0.99..0.99), ``mix`` (0 dry ..
    1 wet), ``damping_hz`` (one-pole low-pass inside the feedback path; at or
    above Nyquist it is exactly transparent). Inputs: ``in``; ``delay_mod`` adds
    seconds to ``delay_s`` at audio rate (chorus, flanger, wow).

    The line holds ``w = in + feedback * lowpass(tap)``, ``tap`` being ``w`` read
    ``delay_s`` ago; the output is ``(1 - mix) * in + mix * tap``. At
    ``sample_rate`` 100, ``delay_s`` 0.1, ``feedback`` 0.5, ``mix`` 1, an impulse
    comes out as 1 at sample 10, 0.5 at 20, 0.25 at 30.

    The read point is interpolated with a 4-point cubic Hermite (Catmull-Rom), so
    fractional and moving delays stay clean (amplitude error < 1e-4 at fs/48).
    ``delay_s`` is smoothed over about 50 ms so a change glides like tape
    instead of clicking. The delay (with ``delay_mod``) is clamped to
    [1 sample, ``max_delay_s``]: a longer ``delay_s`` plays at ``max_delay_s``
    (at compile time the graph refuses it: "delay: delay_s exceeds max_delay_s.
    Reduce delay_s or raise max_delay_s.").

    Non-finite input samples are read as 0; every value written into the line is
    flushed of denormals, so no NaN or subnormal can circulate.

    State: ``[write_pos, ring_frames, max_delay_samples]``, then four blocks of
    one value per voice (low-pass state, damping pole at the start and end of the
    segment, the ``damping_hz`` the pole was made for), then the ring,
    interleaved by voice (``ring[frame * voices + v]``).
    """
    voices = row[I_VOICES]
    out_slot = row[I_OUT]
    in_slot = row[I_IN]
    in_stride = row[I_IN + 1]
    mod_slot = row[I_IN + 2]
    mod_stride = row[I_IN + 3]
    pos = int(state[_D_POS])
    length = int(state[_D_LENGTH])
    max_delay = state[_D_MAX]
    lp = state[_D_HEADER : _D_HEADER + voices]
    pole_start = state[_D_HEADER + voices : _D_HEADER + 2 * voices]
    pole_end = state[_D_HEADER + 2 * voices : _D_HEADER + 3 * voices]
    pole_hz = state[_D_HEADER + 3 * voices : _D_HEADER + 4 * voices]
    ring = state[_D_HEADER + 4 * voices :]
    inv_n = 1.0 / n_frames
    damp = 3 * voices
    # The pole costs an exp: once per voice per segment when damping_hz moved
    # (compared with the value it was made for, so a jump is caught too), then
    # ramped linearly across the segment.
    for voice in range(voices):
        target_hz = p1[damp + voice]
        if target_hz != pole_hz[voice]:
            pole_end[voice] = damping_pole(target_hz, sample_rate)
            pole_hz[voice] = target_hz
        else:
            pole_end[voice] = pole_start[voice]
    for frame in range(n_frames):
        t = (frame + 1) * inv_n
        for voice in range(voices):
            x = zap(bufs[in_slot + voice * in_stride, frame])
            dm = bufs[mod_slot + voice * mod_stride, frame]
            if not (abs(dm) < 1e6):
                dm = 0.0
            d_s = p0[voice] + (p1[voice] - p0[voice]) * t
            j = voices + voice
            fb = p0[j] + (p1[j] - p0[j]) * t
            j += voices
            mix = p0[j] + (p1[j] - p0[j]) * t
            pole = pole_start[voice] + (pole_end[voice] - pole_start[voice]) * t
            d = (d_s + dm) * sample_rate
            if not (d >= 1.0):
                d = 1.0
            d = min(d, max_delay)
            whole = int(d)
            frac = d - whole
            # Ring indices of the samples ``whole - 1 .. whole + 2`` ago.
            i1 = pos - whole
            if i1 < 0:
                i1 += length
            i2 = i1 - 1
            if i2 < 0:
                i2 += length
            i3 = i2 - 1
            if i3 < 0:
                i3 += length
            y1 = ring[i1 * voices + voice]
            y2 = ring[i2 * voices + voice]
            y3 = ring[i3 * voices + voice]
            if whole >= 2:
                i0 = i1 + 1
                if i0 == length:
                    i0 = 0
                y0 = ring[i0 * voices + voice]
            else:
                # The sample "0 ago" is being computed now; the input is its exact
                # value without feedback and a close guess with it.
                y0 = x
            c1 = 0.5 * (y2 - y0)
            c2 = y0 - 2.5 * y1 + 2.0 * y2 - 0.5 * y3
            c3 = 0.5 * (y3 - y0) + 1.5 * (y1 - y2)
            tap = ((c3 * frac + c2) * frac + c1) * frac + y1
            filtered = tap + pole * (lp[voice] - tap)
            lp[voice] = filtered
            ring[pos * voices + voice] = zap(x + fb * filtered)
            bufs[out_slot + voice, frame] = x + mix * (tap - x)
        pos += 1
        if pos == length:
            pos = 0
    state[_D_POS] = pos
    for voice in range(voices):
        lp[voice] = zap(lp[voice])
        pole_start[voice] = pole_end[voice]


# --------------------------------------------------------------------------------
# reverb
# --------------------------------------------------------------------------------

_N_LINES = 8
# FDN line lengths in ms at size 1: spread over a 2.3:1 range, none sharing a
# small common factor, so the modes of the lines interleave instead of piling up.
_LINE_MS = np.array([43.1, 48.7, 55.3, 61.9, 67.3, 74.9, 83.3, 97.1])
_SIZE_MIN_SCALE = 0.2  # size 0 still leaves 8.6-19 ms lines (a small room)
_MOD_DEPTH_MS = 0.3  # slow line-length wobble that breaks up metallic modes
_MOD_RATE_HZ = np.array([0.31, 0.37, 0.41, 0.47, 0.53, 0.59, 0.61, 0.67])
# Input diffusers: 4 Schroeder all-passes per side (left 0..3, right 4..7),
# slightly different per side so the two inputs decorrelate before the FDN.
_DIFFUSER_MS = np.array([4.77, 3.59, 12.73, 9.30, 4.99, 3.37, 13.37, 8.83])
_DIFFUSER_GAIN = np.array([0.75, 0.75, 0.625, 0.625, 0.75, 0.75, 0.625, 0.625])
_MAX_PREDELAY_MS = 500.0
_HADAMARD_SCALE = 1.0 / math.sqrt(8.0)
_MAX_CHUNK = 64
# Modulation phases are integers modulo 2^32 (exact, like a hardware oscillator).
_PHASE_ONE = 1 << 32
_PHASE_MASK = _PHASE_ONE - 1
_PHASE_SCALE = 2.0 / _PHASE_ONE  # phase -> [0, 2), then minus 1 -> [-1, 1)

# State layout: scalars, per-line blocks of 8, chunk buffers, then the rings.
_R_POS = 0  # write counter, modulo the largest ring
_R_DECAY = 1  # decay_s, damping_hz and size the coefficients were made for
_R_DAMPING = 2
_R_SIZE = 3
_R_WET = 4  # output gain that keeps the wet level independent of decay_s
_R_WET_TARGET = 5
_R_PRE_LEN = 6  # ring lengths (powers of two)
_R_DIFF_LEN = 7
_R_LINE_LEN = 8
_R_WRAP = 9
_R_CHUNK = 10  # frames per inner chunk (shorter than every feedback delay)
_R_SCALARS = 11
_R_LENGTH = _R_SCALARS  # line lengths in samples at the segment start
_R_GAIN = _R_LENGTH + 8  # per-line gain at DC
_R_POLE = _R_GAIN + 8  # per-line absorption pole
_R_LENGTH_T = _R_POLE + 8  # the three above at the segment end
_R_GAIN_T = _R_LENGTH_T + 8
_R_POLE_T = _R_GAIN_T + 8
_R_LOWPASS = _R_POLE_T + 8  # absorption filter states
_R_PHASE = _R_LOWPASS + 8  # modulation phases, 2^32 per cycle
_R_PHASE_INC = _R_PHASE + 8  # their increments per sample
_R_DIFF_DELAY = _R_PHASE_INC + 8  # diffuser lengths, samples
_R_CHUNK_BUF = _R_DIFF_DELAY + 8  # 8 line feedbacks, 2 diffused, 2 dry inputs
_R_RINGS = _R_CHUNK_BUF + 12 * _MAX_CHUNK


@njit(**JIT)
def _flush(x: float) -> float:
    """Flush values below 1e-30 to 0: zap without its NaN/inf half, which the
    reverb's feedback cannot produce (inputs are zapped, the network is stable).

    Sums and differences of flushed values are multiples of at least 1e-46, so
    nothing built from them downstream can be subnormal either.
    """
    return x if abs(x) > 1e-30 else 0.0


def _pow2_at_least(n: float) -> int:
    return 1 << max(1, math.ceil(math.log2(max(n, 2.0))))


def _reverb_ring_frames(sample_rate: float) -> tuple[int, int, int]:
    pre = _pow2_at_least(_MAX_PREDELAY_MS * 1e-3 * sample_rate + 2.0)
    diff = _pow2_at_least(float(np.max(_DIFFUSER_MS)) * 1e-3 * sample_rate + 2.0)
    line_ms = float(np.max(_LINE_MS)) + _MOD_DEPTH_MS
    line = _pow2_at_least(line_ms * 1e-3 * sample_rate + 4.0)
    return pre, diff, line


def _reverb_chunk(sample_rate: float) -> int:
    """Frames processed line by line at once: fewer than any feedback delay.

    The shortest line (at size 0, minus its modulation) and the shortest
    diffuser only read samples written before the chunk began, so each line can
    run through the chunk alone, its state in registers.
    """
    shortest_ms = min(
        float(np.min(_LINE_MS)) * _SIZE_MIN_SCALE - _MOD_DEPTH_MS,
        float(np.min(_DIFFUSER_MS)),
    )
    return max(1, min(_MAX_CHUNK, math.floor(shortest_ms * 1e-3 * sample_rate) - 2))


def _reverb_state(voices: int, sample_rate: float, options: Mapping[str, Any]) -> int:
    pre, diff, line = _reverb_ring_frames(sample_rate)
    return _R_RINGS + 2 * pre + _N_LINES * diff + _N_LINES * line


@njit(**JIT)
def _reverb_targets(state, decay_s, damping_hz, size, sample_rate):
    """Per-line length, gain and absorption pole for these settings (Jot).

    Each line's gain at DC, ``10 ** (-3 m / (decay_s fs))``, loses 60 dB per
    ``decay_s`` whatever its length ``m``, so all lines die together. Each line's
    one-pole low-pass then adds, at ``damping_hz``, the same loss again per
    second (solved exactly for the pole): the reverberation time is ``decay_s``
    well below ``damping_hz``, half of it at ``damping_hz`` and shorter above.
    Also sets the wet gain target ``sqrt(1 - g^2) / g`` for the mean line's gain
    ``g``: the steady-state power of the tank's outputs for white noise is about
    ``g^2 / (1 - g^2)`` times the input's, so the wet level does not grow with
    the decay time.
    Writes the ``_R_*_T`` targets and the settings they were made for.
    """
    scale = _SIZE_MIN_SCALE + (1.0 - _SIZE_MIN_SCALE) * size
    omega = min(2.0 * math.pi * damping_hz / sample_rate, 0.95 * math.pi)
    cos_w = math.cos(omega)
    per_sample_db = 60.0 / (decay_s * sample_rate)
    mean_length = 0.0
    for i in range(_N_LINES):
        m = _LINE_MS[i] * 1e-3 * sample_rate * scale
        mean_length += m
        state[_R_LENGTH_T + i] = m
        loss_db = per_sample_db * m
        state[_R_GAIN_T + i] = 10.0 ** (-loss_db / 20.0)
        # (1-p)^2 / (1 - 2p cos w + p^2) = 10^(-loss/10), solved for p < 1.
        big = 10.0 ** (loss_db / 10.0)
        b = (big - cos_w) / (big - 1.0)
        state[_R_POLE_T + i] = 1.0 / (b + math.sqrt(b * b - 1.0))
    mean_length /= _N_LINES
    g = 10.0 ** (-per_sample_db * mean_length / 20.0)
    state[_R_WET_TARGET] = math.sqrt(1.0 - g * g) / g
    state[_R_DECAY] = decay_s
    state[_R_DAMPING] = damping_hz
    state[_R_SIZE] = size


def _reverb_init(
    state: np.ndarray,
    params: np.ndarray,
    voices: int,
    sample_rate: float,
    options: Mapping[str, Any],
) -> None:
    state[:] = 0.0
    pre, diff, line = _reverb_ring_frames(sample_rate)
    state[_R_PRE_LEN] = pre
    state[_R_DIFF_LEN] = diff
    state[_R_LINE_LEN] = line
    state[_R_WRAP] = max(pre, diff, line)
    state[_R_CHUNK] = _reverb_chunk(sample_rate)
    # params are [decay_s, damping_hz, size, predelay_ms, mix, width] x 2 voices.
    _reverb_targets(state, params[0], params[2], params[4], float(sample_rate))
    for block in (_R_LENGTH, _R_GAIN, _R_POLE):
        state[block : block + 8] = state[block + 24 : block + 32]
    state[_R_WET] = state[_R_WET_TARGET]
    state[_R_PHASE : _R_PHASE + 8] = np.arange(8) * (_PHASE_ONE // 8)
    state[_R_PHASE_INC : _R_PHASE_INC + 8] = np.round(
        _MOD_RATE_HZ / sample_rate * _PHASE_ONE
    )
    state[_R_DIFF_DELAY : _R_DIFF_DELAY + 8] = np.round(
        _DIFFUSER_MS * 1e-3 * sample_rate
    )


@njit(**JIT)
def reverb(bufs, row, p0, p1, state, sample_rate, n_frames):
    """Stereo reverb: predelay, input diffusion, 8-line feedback delay network.

    Params (one value per side; the left one is used): ``decay_s`` (RT60 at low
    and mid frequencies, 0.1-30 s), ``damping_hz`` (where the reverberation time
    has fallen to half; higher frequencies die faster still), ``size`` (0-1,
    scales the line lengths from 20 % to 100 % of 43-97 ms; glides slowly, with a
    tape-like pitch bend while it moves), ``predelay_ms`` (0-500), ``mix`` (0 dry
    .. 1 wet, linear), ``width`` (0 mono .. 1 full stereo tail). Input ``in``: one
    channel (fed to both sides) or two.

    Signal path: predelay (linear interpolation, so changes glide) -> per side 4
    Schroeder all-passes (diffusion: a click becomes a dense burst before it
    enters the tank) -> left input into lines 0-3, right into 4-7 -> each line:
    modulated read (+-0.3 ms at 0.3-0.7 Hz, linear interpolation), one-pole
    absorption filter and gain -> orthonormal Hadamard mix -> written back. The
    outputs are two orthogonal Hadamard rows of the absorbed line outputs (two of
    the transform's results), so the tail is decorrelated (|corr| ~0.02);
    ``width`` scales its side signal. The wet gain keeps the wet level
    independent of ``decay_s`` (white noise, ``damping_hz`` 20 kHz: about -4 dB
    re the input; darker settings lower), so ``mix`` means the same at any decay.
    The linear interpolation of the modulated reads damps the top octave a
    little on its own (RT60 at 8 kHz about 0.5-0.65 of ``decay_s`` even with
    ``damping_hz`` 20 kHz); ambient settings damp far more than that anyway.

    Work goes in chunks shorter than every feedback delay (up to 64 frames),
    stage by stage and line by line (two lines at a time, their states in
    registers); the arithmetic per sample is the same whatever the chunking, so
    the output does not depend on the block size.

    Inputs are zapped (NaN, inf, denormals read as 0) and every value fed back
    (line feedbacks, diffuser states) is flushed below 1e-30, so silence after
    a tail decays to exact zeros and no subnormal is ever stored. The absorption
    filter states are zapped at the end of each segment.

    State: see the ``_R_*`` offsets: scalars, per-line coefficients at the
    segment start and end (ramped linearly across a segment when a parameter
    moves), filter states, modulation phases, chunk buffers, then the predelay
    ring (2 interleaved channels), 8 diffuser rings and 8 line rings.
    """
    out_left = bufs[row[I_OUT]]
    out_right = bufs[row[I_OUT] + 1]
    in_left = bufs[row[I_IN]]
    in_right = bufs[row[I_IN] + row[I_IN + 1]]
    pre_len = int(state[_R_PRE_LEN])
    diff_len = int(state[_R_DIFF_LEN])
    line_len = int(state[_R_LINE_LEN])
    wrap_mask = int(state[_R_WRAP]) - 1
    chunk = int(state[_R_CHUNK])
    # Masks known to be non-negative let the compiler drop the negative-index
    # wrap-around on every ring read.
    pre_mask = (pre_len - 1) & 0x7FFFFFFF
    diff_mask = (diff_len - 1) & 0x7FFFFFFF
    line_mask = (line_len - 1) & 0x7FFFFFFF
    pre_ring = state[_R_RINGS : _R_RINGS + 2 * pre_len]
    diff_start = _R_RINGS + 2 * pre_len
    diff_ring = state[diff_start : diff_start + 8 * diff_len]
    line_start = diff_start + 8 * diff_len
    line_ring = state[line_start : line_start + 8 * line_len]
    feed = state[_R_CHUNK_BUF : _R_CHUNK_BUF + 8 * _MAX_CHUNK]
    diffused = state[_R_CHUNK_BUF + 8 * _MAX_CHUNK : _R_CHUNK_BUF + 10 * _MAX_CHUNK]
    dry = state[_R_CHUNK_BUF + 10 * _MAX_CHUNK : _R_CHUNK_BUF + 12 * _MAX_CHUNK]
    inv_n = 1.0 / n_frames

    # Coefficients cost pow and sqrt: only when decay, damping or size moved (or
    # jumped); then they ramp from the segment-start values to the new ones.
    if (
        p1[0] != state[_R_DECAY]
        or p1[2] != state[_R_DAMPING]
        or p1[4] != state[_R_SIZE]
    ):
        _reverb_targets(state, p1[0], p1[2], p1[4], sample_rate)
    wet = state[_R_WET]
    wet_step = (state[_R_WET_TARGET] - wet) * inv_n
    pre_ms = p0[6]
    pre_step = (p1[6] - pre_ms) * inv_n
    mix = p0[8]
    mix_step = (p1[8] - mix) * inv_n
    width = p0[10]
    width_step = (p1[10] - width) * inv_n
    ms_to_samples = 1e-3 * sample_rate
    # 4 s (1 - |s|) peaks at 1; the depth is in samples.
    mod_depth = 4.0 * _MOD_DEPTH_MS * 1e-3 * sample_rate
    pos = int(state[_R_POS])

    start = 0
    while start < n_frames:
        n = min(chunk, n_frames - start)

        # Predelay, per frame: written, then read, so 0 ms is no delay.
        for f in range(n):
            k = start + f + 1
            w = (pos + f) & pre_mask
            xl = zap(in_left[start + f])
            xr = zap(in_right[start + f])
            dry[f] = xl
            dry[_MAX_CHUNK + f] = xr
            pre_ring[2 * w] = xl
            pre_ring[2 * w + 1] = xr
            d = (pre_ms + pre_step * k) * ms_to_samples
            whole = int(d)
            frac = d - whole
            ia = 2 * ((pos + f - whole) & pre_mask)
            ib = 2 * ((pos + f - whole - 1) & pre_mask)
            diffused[f] = pre_ring[ia] + frac * (pre_ring[ib] - pre_ring[ia])
            diffused[_MAX_CHUNK + f] = pre_ring[ia + 1] + frac * (
                pre_ring[ib + 1] - pre_ring[ia + 1]
            )

        # Diffusion, one all-pass at a time: v = u + g v[n-M]; y = v[n-M] - g v.
        for a in range(8):
            ring = diff_ring[a * diff_len : (a + 1) * diff_len]
            gain = _DIFFUSER_GAIN[a]
            lag = int(state[_R_DIFF_DELAY + a])
            io = 0 if a < 4 else _MAX_CHUNK
            for f in range(n):
                old = ring[(pos + f - lag) & diff_mask]
                v = diffused[io + f] + gain * old
                ring[(pos + f) & diff_mask] = _flush(v)
                diffused[io + f] = old - gain * v

        # The tank, two lines per pass (lines i and i + 4, so two independent
        # recursions overlap in the CPU): modulated read, absorption, gain.
        for i in range(4):
            j = i + 4
            ring_i = line_ring[i * line_len : (i + 1) * line_len]
            ring_j = line_ring[j * line_len : (j + 1) * line_len]
            m_i = state[_R_LENGTH + i]
            m_j = state[_R_LENGTH + j]
            dm_i = (state[_R_LENGTH_T + i] - m_i) * inv_n
            dm_j = (state[_R_LENGTH_T + j] - m_j) * inv_n
            # The Hadamard matrix's 1/sqrt(8) rides on the line gains.
            g_i = state[_R_GAIN + i] * _HADAMARD_SCALE
            g_j = state[_R_GAIN + j] * _HADAMARD_SCALE
            dg_i = (state[_R_GAIN_T + i] * _HADAMARD_SCALE - g_i) * inv_n
            dg_j = (state[_R_GAIN_T + j] * _HADAMARD_SCALE - g_j) * inv_n
            q_i = state[_R_POLE + i]
            q_j = state[_R_POLE + j]
            dq_i = (state[_R_POLE_T + i] - q_i) * inv_n
            dq_j = (state[_R_POLE_T + j] - q_j) * inv_n
            lp_i = state[_R_LOWPASS + i]
            lp_j = state[_R_LOWPASS + j]
            # Integer phases: exact, so the modulation cannot drift with the
            # chunking, and no add chain runs from sample to sample.
            ph_i = int(state[_R_PHASE + i])
            ph_j = int(state[_R_PHASE + j])
            inc_i = int(state[_R_PHASE_INC + i])
            inc_j = int(state[_R_PHASE_INC + j])
            for f in range(n):
                k = start + f + 1
                # Parabolic sine of the phase: smooth (C1), cheap, shape unheard.
                s_i = ((ph_i + inc_i * (f + 1)) & _PHASE_MASK) * _PHASE_SCALE - 1.0
                s_j = ((ph_j + inc_j * (f + 1)) & _PHASE_MASK) * _PHASE_SCALE - 1.0
                d_i = m_i + dm_i * k + mod_depth * s_i * (1.0 - abs(s_i))
                d_j = m_j + dm_j * k + mod_depth * s_j * (1.0 - abs(s_j))
                w_i = int(d_i)
                w_j = int(d_j)
                fr_i = d_i - w_i
                fr_j = d_j - w_j
                a_i = ring_i[(pos + f - w_i) & line_mask]
                a_j = ring_j[(pos + f - w_j) & line_mask]
                y_i = a_i + fr_i * (ring_i[(pos + f - w_i - 1) & line_mask] - a_i)
                y_j = a_j + fr_j * (ring_j[(pos + f - w_j - 1) & line_mask] - a_j)
                # One-pole as q * lp + (1 - q) * y: one fused step on the chain.
                c_i = q_i + dq_i * k
                c_j = q_j + dq_j * k
                lp_i = c_i * lp_i + (1.0 - c_i) * y_i
                lp_j = c_j * lp_j + (1.0 - c_j) * y_j
                # Flushed here, off the recursion: everything downstream (ring,
                # outputs) is a sum of these and of zapped inputs, so no
                # subnormal can form there.
                feed[i * _MAX_CHUNK + f] = _flush((g_i + dg_i * k) * lp_i)
                feed[j * _MAX_CHUNK + f] = _flush((g_j + dg_j * k) * lp_j)
            state[_R_LOWPASS + i] = lp_i
            state[_R_LOWPASS + j] = lp_j
            state[_R_PHASE + i] = (ph_i + inc_i * n) & _PHASE_MASK
            state[_R_PHASE + j] = (ph_j + inc_j * n) & _PHASE_MASK

        # Hadamard mix: an in-place fast Walsh-Hadamard transform across the 8
        # lines, whole chunk rows at a time (the inner loop is SIMD over frames).
        half = 1
        while half < 8:
            for first in range(0, 8, 2 * half):
                for line in range(first, first + half):
                    row_a = line * _MAX_CHUNK
                    row_b = (line + half) * _MAX_CHUNK
                    for f in range(n):
                        a = feed[row_a + f]
                        b = feed[row_b + f]
                        feed[row_a + f] = a + b
                        feed[row_b + f] = a - b
            half *= 2
        # Write back with the diffused input: left into lines 0-3, right 4-7.
        for line in range(8):
            ring = line_ring[line * line_len : (line + 1) * line_len]
            row_in = 0 if line < 4 else _MAX_CHUNK
            for f in range(n):
                ring[(pos + f) & line_mask] = (
                    feed[line * _MAX_CHUNK + f] + diffused[row_in + f]
                )
        # Outputs: Hadamard rows 1 and 2 of the absorbed line outputs, which the
        # transform has just computed (what lines 1 and 2 are fed).
        for f in range(n):
            k = start + f + 1
            tap_l = feed[_MAX_CHUNK + f]
            tap_r = feed[2 * _MAX_CHUNK + f]
            g_wet = wet + wet_step * k
            mid = 0.5 * (tap_l + tap_r) * g_wet
            side = 0.5 * (tap_l - tap_r) * g_wet * (width + width_step * k)
            m = mix + mix_step * k
            xl = dry[f]
            xr = dry[_MAX_CHUNK + f]
            out_left[start + f] = xl + m * (mid + side - xl)
            out_right[start + f] = xr + m * (mid - side - xr)

        pos = (pos + n) & wrap_mask
        start += n

    state[_R_POS] = pos
    for i in range(8):
        state[_R_LOWPASS + i] = zap(state[_R_LOWPASS + i])
        state[_R_LENGTH + i] = state[_R_LENGTH_T + i]
        state[_R_GAIN + i] = state[_R_GAIN_T + i]
        state[_R_POLE + i] = state[_R_POLE_T + i]
    state[_R_WET] = state[_R_WET_TARGET]


def _stereo(voices: int) -> int:
    return 2


register(
    NodeSpec(
        "delay",
        Op.DELAY,
        "Fractional delay line with damped feedback per voice (cubic interpolation).",
        inputs=("in", "delay_mod"),
        params=(
            Param(
                "delay_s",
                0.25,
                "s",
                0.0,
                600.0,
                smoothing_ms=50.0,
                doc="delay time; clamped to [1 sample, max_delay_s]",
            ),
            Param(
                "feedback",
                0.3,
                "",
                -0.99,
                0.99,
                smoothing_ms=20.0,
                doc="gain of the delayed signal fed back into the line",
            ),
            Param("mix", 0.5, "", 0.0, 1.0, smoothing_ms=20.0, doc="0 dry .. 1 wet"),
            Param(
                "damping_hz",
                20000.0,
                "Hz",
                20.0,
                96000.0,
                smoothing_ms=50.0,
                doc="one-pole low-pass cutoff in the feedback path",
            ),
        ),
        options={"max_delay_s": 2.0},
        state_size=_delay_state,
        init=_delay_init,
    ),
    NodeSpec(
        "reverb",
        Op.REVERB,
        "Stereo reverb: predelay, diffusion, 8-line feedback delay network.",
        inputs=("in",),
        params=(
            Param(
                "decay_s",
                3.0,
                "s",
                0.1,
                30.0,
                smoothing_ms=200.0,
                doc="reverberation time (RT60) below damping_hz",
            ),
            Param(
                "damping_hz",
                6000.0,
                "Hz",
                200.0,
                20000.0,
                smoothing_ms=200.0,
                doc="frequency where the reverberation time is halved",
            ),
            Param(
                "size",
                0.8,
                "",
                0.0,
                1.0,
                smoothing_ms=1000.0,
                doc="scales the delay lines from 20 % to 100 %",
            ),
            Param(
                "predelay_ms",
                20.0,
                "ms",
                0.0,
                _MAX_PREDELAY_MS,
                smoothing_ms=200.0,
                doc="gap before the reverb starts",
            ),
            Param("mix", 0.3, "", 0.0, 1.0, smoothing_ms=50.0, doc="0 dry .. 1 wet"),
            Param(
                "width",
                1.0,
                "",
                0.0,
                1.0,
                smoothing_ms=50.0,
                doc="stereo width of the tail: 0 mono, 1 fully decorrelated",
            ),
        ),
        state_size=_reverb_state,
        init=_reverb_init,
        fixed_voices=2,
        output_width=_stereo,
    ),
)
