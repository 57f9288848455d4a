"""Mixing: gain, equal-power pan, stereo width, sums, ring and amplitude modulation.

Audio thread: yes.
"""

from __future__ import annotations

import math

from numba import njit

from engine.dsp.jit import JIT
from engine.dsp.layout import I_IN, I_OUT, I_VOICES
from engine.dsp.nodes import NodeSpec, Param, register
from engine.dsp.opcodes import Op

_QUARTER_PI = 0.25 * math.pi
_LN10_OVER_20 = math.log(10.0) / 20.0


@njit(**JIT)
def gain(bufs, row, p0, p1, state, sample_rate, n_frames):
    """Gain per voice: ``gain_db`` times a linear ``level`` (0..1).

    The dB value ramps across the block, so a level change in dB is linear in
    dB (what the ear hears as even); ``level`` ramps linearly in amplitude, so a
    fade to or from silence (states, sleep timers) has a set length and ends at
    exactly 0.
    """
    voices = row[I_VOICES]
    in_slot, in_stride = row[I_IN], row[I_IN + 1]
    inv_n = 1.0 / n_frames
    for voice in range(voices):
        x = bufs[in_slot + voice * in_stride]
        out = bufs[row[I_OUT] + voice]
        g0 = p0[voice]
        g1 = p1[voice]
        a0 = p0[voices + voice]
        a1 = p1[voices + voice]
        if g0 == g1 and a0 == a1:
            g = math.exp(g1 * _LN10_OVER_20) * a1
            for frame in range(n_frames):
                out[frame] = x[frame] * g
        else:
            step = (g1 - g0) * inv_n
            a_step = (a1 - a0) * inv_n
            for frame in range(n_frames):
                out[frame] = (
                    x[frame]
                    * math.exp((g0 + step * (frame + 1)) * _LN10_OVER_20)
                    * (a0 + a_step * (frame + 1))
                )


@njit(**JIT)
def pan(bufs, row, p0, p1, state, sample_rate, n_frames):
    """Equal-power pan of every voice into a stereo pair, summed.

    ``pan`` -1 is hard left, 0 centre (each side -3 dB), +1 hard right; the sum of
    squared gains is 1 at every position, so loudness does not move.
    """
    voices = row[I_VOICES]
    in_slot, in_stride = row[I_IN], row[I_IN + 1]
    left = bufs[row[I_OUT]]
    right = bufs[row[I_OUT] + 1]
    for frame in range(n_frames):
        left[frame] = 0.0
        right[frame] = 0.0
    inv_n = 1.0 / n_frames
    for voice in range(voices):
        x = bufs[in_slot + voice * in_stride]
        a0 = (p0[voice] + 1.0) * _QUARTER_PI
        a1 = (p1[voice] + 1.0) * _QUARTER_PI
        gl, gr = math.cos(a0), math.sin(a0)
        dl = (math.cos(a1) - gl) * inv_n
        dr = (math.sin(a1) - gr) * inv_n
        for frame in range(n_frames):
            gl += dl
            gr += dr
            left[frame] += x[frame] * gl
            right[frame] += x[frame] * gr


@njit(**JIT)
def width(bufs, row, p0, p1, state, sample_rate, n_frames):
    """Stereo width by mid/side: 0 is mono, 1 unchanged, 2 twice as wide."""
    in_slot, in_stride = row[I_IN], row[I_IN + 1]
    xl = bufs[in_slot]
    xr = bufs[in_slot + in_stride]
    left = bufs[row[I_OUT]]
    right = bufs[row[I_OUT] + 1]
    w = p0[0]
    step = (p1[0] - w) * (1.0 / n_frames)
    for frame in range(n_frames):
        w += step
        mid = 0.5 * (xl[frame] + xr[frame])
        side = 0.5 * (xl[frame] - xr[frame]) * w
        left[frame] = mid + side
        right[frame] = mid - side


@njit(**JIT)
def mix(bufs, row, p0, p1, state, sample_rate, n_frames):
    """Sum all voices into one channel, each voice with its own ``gain_db``."""
    voices = row[I_VOICES]
    in_slot, in_stride = row[I_IN], row[I_IN + 1]
    out = bufs[row[I_OUT]]
    for frame in range(n_frames):
        out[frame] = 0.0
    inv_n = 1.0 / n_frames
    for voice in range(voices):
        x = bufs[in_slot + voice * in_stride]
        g = math.exp(p0[voice] * _LN10_OVER_20)
        step = (math.exp(p1[voice] * _LN10_OVER_20) - g) * inv_n
        for frame in range(n_frames):
            g += step
            out[frame] += x[frame] * g


@njit(**JIT)
def add(bufs, row, p0, p1, state, sample_rate, n_frames):
    """Sum of inputs ``a`` and ``b`` (a bus), per voice."""
    voices = row[I_VOICES]
    for voice in range(voices):
        a = bufs[row[I_IN] + voice * row[I_IN + 1]]
        b = bufs[row[I_IN + 2] + voice * row[I_IN + 3]]
        c = bufs[row[I_IN + 4] + voice * row[I_IN + 5]]
        d = bufs[row[I_IN + 6] + voice * row[I_IN + 7]]
        out = bufs[row[I_OUT] + voice]
        for frame in range(n_frames):
            out[frame] = a[frame] + b[frame] + c[frame] + d[frame]


@njit(**JIT)
def ring_mod(bufs, row, p0, p1, state, sample_rate, n_frames):
    """Ring modulation: ``a * b`` per voice."""
    voices = row[I_VOICES]
    for voice in range(voices):
        a = bufs[row[I_IN] + voice * row[I_IN + 1]]
        b = bufs[row[I_IN + 2] + voice * row[I_IN + 3]]
        out = bufs[row[I_OUT] + voice]
        for frame in range(n_frames):
            out[frame] = a[frame] * b[frame]


@njit(**JIT)
def am(bufs, row, p0, p1, state, sample_rate, n_frames):
    """Amplitude modulation: ``carrier * (1 - depth/2 + depth/2 * modulator)``.

    A modulator in [-1, 1] moves the level between ``1 - depth`` and 1, so
    ``depth`` 1 swings fully to silence and back (entrainment, tremolo).
    """
    voices = row[I_VOICES]
    inv_n = 1.0 / n_frames
    for voice in range(voices):
        a = bufs[row[I_IN] + voice * row[I_IN + 1]]
        m = bufs[row[I_IN + 2] + voice * row[I_IN + 3]]
        out = bufs[row[I_OUT] + voice]
        depth = p0[voice]
        step = (p1[voice] - depth) * inv_n
        for frame in range(n_frames):
            depth += step
            half = 0.5 * depth
            out[frame] = a[frame] * (1.0 - half + half * m[frame])


def _stereo(voices: int) -> int:
    return 2


def _mono(voices: int) -> int:
    return 1


register(
    NodeSpec(
        "gain",
        Op.GAIN,
        "Gain per voice: gain_db (ramped in dB) times a linear level (for fades).",
        inputs=("in",),
        params=(
            Param("gain_db", 0.0, "dB", -120.0, 24.0, smoothing_ms=30.0),
            Param(
                "level",
                1.0,
                "",
                0.0,
                1.0,
                smoothing_ms=30.0,
                doc="linear amplitude for fades: 0 is silence",
            ),
        ),
    ),
    NodeSpec(
        "pan",
        Op.PAN,
        "Equal-power pan of each voice into stereo, summed.",
        inputs=("in",),
        params=(Param("pan", 0.0, "", -1.0, 1.0, smoothing_ms=30.0),),
        output_width=_stereo,
    ),
    NodeSpec(
        "width",
        Op.WIDTH,
        "Stereo width (mid/side): 0 mono, 1 unchanged, 2 wide.",
        inputs=("in",),
        params=(Param("width", 1.0, "", 0.0, 2.0, smoothing_ms=50.0),),
        fixed_voices=2,
        output_width=_stereo,
    ),
    NodeSpec(
        "mix",
        Op.MIX,
        "Sum every voice into one channel, each with its own gain in dB.",
        inputs=("in",),
        params=(Param("gain_db", 0.0, "dB", -120.0, 24.0, smoothing_ms=30.0),),
        output_width=_mono,
    ),
    NodeSpec(
        "add",
        Op.ADD,
        "Sum of up to four signals (a bus).",
        inputs=("a", "b", "c", "d"),
    ),
    NodeSpec(
        "ring_mod",
        Op.RING_MOD,
        "Ring modulation a * b.",
        inputs=("a", "b"),
    ),
    NodeSpec(
        "am",
        Op.AM,
        "Amplitude modulation of a carrier by a modulator in [-1, 1].",
        inputs=("carrier", "modulator"),
        params=(Param("depth", 1.0, "", 0.0, 1.0, smoothing_ms=30.0),),
    ),
)
