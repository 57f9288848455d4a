"""Filters: one-pole low/high-pass, state-variable filter, resonant low-pass, Moog
ladder and DC blocker.

Every filter here is a trapezoidal (bilinear, "zero-delay feedback") discretisation
of an analog prototype, pre-warped so the digital cutoff lands exactly on the
analog one: ``g = tan(pi * cutoff_hz / sample_rate)`` (Zavalishin, *The Art of VA
Filter Design*; Simper, *SvfLinearTrapOptimised2*, Cytomic 2013). So a Butterworth
low-pass is exactly -3.01 dB at ``cutoff_hz`` at any sample rate, responses match
the analog prototype mapped by the bilinear transform, and the state form stays
well behaved when the cutoff moves at audio rate (direct-form biquads do not).

Nodes (all are banks: per-voice parameters and state):

- ``onepole_lowpass`` / ``onepole_highpass``: 6 dB/oct, -3 dB at ``cutoff_hz``.
- ``svf``: Simper's SVF with eight ``mode`` responses (RBJ-cookbook shapes, incl.
  peaking and shelving EQ with ``gain_db``) and a ``cutoff_mod`` input in octaves.
- ``rlpf``: a 2-pole resonant low-pass: the ``svf`` low-pass, same compiled
  kernel; ``q`` is SuperCollider RLPF's ``1 / rq``; gain at the cutoff is ``q``.
- ``ladder``: 4-pole Moog-style ladder, ZDF with one tanh saturator where the
  feedback is summed; ``resonance`` 0..1 (self-oscillates from ~0.95), ``drive``.
- ``dc_blocker``: the one-pole high-pass at a low default cutoff (10 Hz).

Cutoffs are clamped to ``[MIN_CUTOFF_HZ, NYQUIST_FRACTION * sample_rate]`` after
modulation; ``cutoff_mod`` is clamped to +-``MAX_MOD_OCTAVES``.

Coefficients: once per segment when every parameter of a voice is steady and
``cutoff_mod`` is unconnected (it reads the zero slot), otherwise per sample from
the linearly ramped parameters. ``tan`` is a rational approximation
(:func:`fast_tan`, relative error < 5e-12 over the whole clamped range, 3x
cheaper than ``math.tan``), used on both paths so they agree bit for bit.

Loop order: the svf/rlpf and ladder steady paths advance voices four at a time,
frames outer, the four voices' states in registers (``_*_fast4``; past the end of
the bank the last voice fills the spare lanes, at no cost in time since the lanes
run in parallel). Measured on the 2-core dev box, 16 voices of the SVF low-pass
core at 48 kHz: voice-outer 3.0 ms per audio second (each voice waits on its own
previous sample), frame-outer/voice-inner with state in memory 6.4 ms (the
program's 16 KiB buffer rows all fall in one L1 cache set; 1.7 ms with padded
rows), four voices in registers 1.0-1.1 ms whatever the row stride. The per-sample
(modulated or ramping) paths and the one-pole use the plain frame-outer,
voice-inner loop with state in memory: less code to compile, and there the
coefficient maths, not the recursion, sets the pace.

Compile time: Numba charges ~0.1-0.3 s per compiled function, so the one-pole,
high-pass and DC blocker share one kernel, and svf and rlpf another (the opcode
in the row picks the behaviour).

Bad values: the ``in`` sample is replaced by 0 when it is NaN, infinite or above
``STATE_CEILING`` (one compare per sample), so nothing bad enters a state or the
output; states pass through :func:`zap` at every segment end (denormals flushed;
the one-pole, whose pole nears 0 at high cutoffs, every sample).

Audio thread: yes (kernels); the ``NodeSpec`` registrations run at import.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from numba import njit

from engine.dsp.jit import JIT, STATE_CEILING, zap
from engine.dsp.layout import I_IN, I_OP, I_OUT, I_VOICES, ZERO_SLOT
from engine.dsp.nodes import NodeSpec, Param, register
from engine.dsp.opcodes import Op

NYQUIST_FRACTION = 0.49
MIN_CUTOFF_HZ = 1.0
MAX_MOD_OCTAVES = 16.0
# Loop gain of the ladder at resonance 1: just above the 4.0 where a linear ladder
# starts to oscillate, so the tanh holds a steady self-oscillation near 1.
LADDER_MAX_FEEDBACK = 4.2
# Where the [7/6] Pade tanh reaches exactly 1: clamping there keeps it continuous,
# monotonic and bounded by 1.
TANH_CLIP = 4.971786858528029
_LN2 = math.log(2.0)
_ONEPOLE_LOWPASS_OP = int(Op.ONEPOLE_LOWPASS)
_RLPF_OP = int(Op.RLPF)
_LN10_OVER_40 = math.log(10.0) / 40.0

SVF_MODES = (
    "lowpass",
    "highpass",
    "bandpass",
    "notch",
    "peak",
    "lowshelf",
    "highshelf",
    "allpass",
)
_LOWPASS, _HIGHPASS, _BANDPASS, _NOTCH, _PEAK, _LOWSHELF, _HIGHSHELF, _ALLPASS = range(
    8
)


# --------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------


@njit(**JIT)
def fast_tan(w: float) -> float:
    """tan(w) for w in [0, 0.49 * pi], relative error < 5e-12, one division.

    Lambert's continued fraction cut at [7/6] gives t = tan(w/2) = p/q to 1.4e-13
    on [0, 0.245 pi]; the double-angle formula 2t / (1 - t^2) = 2pq / (q^2 - p^2)
    then needs no second division. The error grows near pi/2 by (1+t^2)/(1-t^2),
    to 4.4e-12 at the clamp. About 3 ns against ``math.tan``'s 15 ns.
    """
    z = 0.5 * w
    y = z * z
    p = z * (135135.0 - y * (17325.0 - y * (378.0 - y)))
    q = 135135.0 - y * (62370.0 - y * (3150.0 - 28.0 * y))
    return 2.0 * p * q / (q * q - p * p)


@njit(**JIT)
def fast_tanh(x: float) -> float:
    """tanh by its [7/6] Pade approximant, clamped where it reaches 1.

    Error < 1e-6 for |x| < 3, < 1e-4 everywhere; monotonic, |result| <= 1.
    About 3 ns against ``math.tanh``'s 27 ns.
    """
    if x > TANH_CLIP:
        x = TANH_CLIP
    elif x < -TANH_CLIP:
        x = -TANH_CLIP
    y = x * x
    return (
        x
        * (135135.0 + y * (17325.0 + y * (378.0 + y)))
        / (135135.0 + y * (62370.0 + y * (3150.0 + 28.0 * y)))
    )


@njit(**JIT)
def clean(x: float) -> float:
    """The input sample, or 0 if it is NaN, infinite or absurdly large."""
    return x if abs(x) < STATE_CEILING else 0.0


@njit(**JIT)
def prewarp(cutoff_hz: float, mod_octaves: float, sample_rate: float) -> float:
    """``g = tan(pi * fc / fs)`` for ``fc = cutoff_hz * 2**mod_octaves``, clamped
    to [MIN_CUTOFF_HZ, NYQUIST_FRACTION * fs].

    A NaN modulation counts as the lowest (the comparisons are written so that NaN
    fails them).
    """
    if not mod_octaves > -MAX_MOD_OCTAVES:
        mod_octaves = -MAX_MOD_OCTAVES
    elif mod_octaves > MAX_MOD_OCTAVES:
        mod_octaves = MAX_MOD_OCTAVES
    fc = cutoff_hz
    if mod_octaves != 0.0:
        fc *= math.exp(mod_octaves * _LN2)
    top = NYQUIST_FRACTION * sample_rate
    if fc > top:
        fc = top
    elif not fc > MIN_CUTOFF_HZ:
        fc = MIN_CUTOFF_HZ
    return fast_tan(math.pi * fc / sample_rate)


@njit(**JIT)
def all_steady(p0, p1):
    """True when no parameter of any voice moves in this segment."""
    for j in range(p0.shape[0]):
        if p0[j] != p1[j]:
            return False
    return True


def _state_per_voice(per_voice: int):
    def size(voices: int, sample_rate: float, options: Mapping[str, Any]) -> int:
        return per_voice * voices

    return size


def _zero_state(
    state: np.ndarray,
    params: np.ndarray,
    voices: int,
    sample_rate: float,
    options: Mapping[str, Any],
) -> None:
    """Filters start at rest; coefficients come from the parameters each segment."""
    state[:] = 0.0


# --------------------------------------------------------------------------------
# One-pole low/high-pass and DC blocker (TPT one-pole, Zavalishin ch. 3)
# --------------------------------------------------------------------------------

_ONEPOLE_WIDTH = 2  # per voice: s (integrator state), G (coefficient scratch)


@njit(**JIT)
def onepole(bufs, row, p0, p1, state, sample_rate, n_frames):
    """One-pole bank: low-pass, high-pass or DC blocker, by the row's opcode (one
    compiled kernel serves the three node types). Param: cutoff_hz. Input: in.

    Low-pass y = G*x + (1-G)*s with G = g/(1+g): the bilinear transform of
    1/(1+s/wc), -3.01 dB at the cutoff. The high-pass is x - y, which is also the
    classic DC blocker ``y = a*(x - x1) + R*y1`` with ``R = (1-g)/(1+g)``,
    ``a = (1+R)/2``: an exact zero at DC and unity gain at Nyquist.
    State per voice: s, then G (coefficient scratch). The recursion is three
    operations long, so the plain frame-outer, voice-inner loop is enough here.
    """
    voices = row[I_VOICES]
    in_slot, in_stride = row[I_IN], row[I_IN + 1]
    out = row[I_OUT]
    hp = 0.0 if row[I_OP] == _ONEPOLE_LOWPASS_OP else 1.0
    w = _ONEPOLE_WIDTH
    steady = all_steady(p0, p1)
    if steady:
        for voice in range(voices):
            g = prewarp(p1[voice], 0.0, sample_rate)
            state[w * voice + 1] = g / (1.0 + g)
    inv_n = 1.0 / n_frames
    for frame in range(n_frames):
        t = (frame + 1.0) * inv_n
        for voice in range(voices):
            s = w * voice
            if steady:
                big_g = state[s + 1]
            else:
                g = prewarp(p0[voice] + (p1[voice] - p0[voice]) * t, 0.0, sample_rate)
                big_g = g / (1.0 + g)
            x = clean(bufs[in_slot + voice * in_stride, frame])
            v = (x - state[s]) * big_g
            y = v + state[s]
            # Flushed every sample: at high cutoffs the pole is near 0 and the
            # state would fall from 1e-15 into subnormals within one block.
            state[s] = zap(y + v)
            bufs[out + voice, frame] = y + hp * (x - 2.0 * y)


# The interpreter calls these names; one dispatcher compiles once for all three.
onepole_lowpass = onepole
onepole_highpass = onepole
dc_blocker = onepole


# --------------------------------------------------------------------------------
# State-variable filter (Simper, "SvfLinearTrapOptimised2", Cytomic 2013) and RLPF
# --------------------------------------------------------------------------------

_SVF_WIDTH = 8  # per voice: ic1, ic2, then a1, a2, a3, m0, m1, m2 (scratch)


@njit(**JIT)
def _svf_coeffs(cutoff_hz, q, gain_db, mode, mod_octaves, sample_rate):
    """(a1, a2, a3, m0, m1, m2) of the SVF for one set of parameter values.

    The core gives the band-pass v1 = s/(s^2+ks+1) and low-pass v2 = 1/(..) of
    the input v0 (s normalised to the cutoff, k = 1/q); each mode mixes them as
    ``m0*v0 + m1*v1 + m2*v2`` into the RBJ-cookbook analog shape. Peak and shelves
    use A = 10^(gain_db/40) and move k or g as Simper does, so the peak gains
    gain_db at the cutoff and the shelves gain_db at the far end (half of it at
    the cutoff). Band-pass is the constant 0 dB peak-gain kind.
    """
    g = prewarp(cutoff_hz, mod_octaves, sample_rate)
    k = 1.0 / q
    m0 = 0.0
    m1 = 0.0
    m2 = 1.0
    if mode == _HIGHPASS:
        m0, m1, m2 = 1.0, -k, -1.0
    elif mode == _BANDPASS:
        m0, m1, m2 = 0.0, k, 0.0
    elif mode == _NOTCH:
        m0, m1, m2 = 1.0, -k, 0.0
    elif mode == _PEAK:
        a = math.exp(gain_db * _LN10_OVER_40)
        k = 1.0 / (q * a)
        m0, m1, m2 = 1.0, k * (a * a - 1.0), 0.0
    elif mode == _LOWSHELF:
        a = math.exp(gain_db * _LN10_OVER_40)
        g /= math.sqrt(a)
        m0, m1, m2 = 1.0, k * (a - 1.0), a * a - 1.0
    elif mode == _HIGHSHELF:
        a = math.exp(gain_db * _LN10_OVER_40)
        g *= math.sqrt(a)
        m0, m1, m2 = a * a, k * (1.0 - a) * a, 1.0 - a * a
    elif mode == _ALLPASS:
        m0, m1, m2 = 1.0, -2.0 * k, 0.0
    a1 = 1.0 / (1.0 + g * (g + k))
    a2 = g * a1
    return a1, a2, g * a2, m0, m1, m2


@njit(**JIT)
def _svf_step(x, ic1, ic2, a1, a2, a3, m0, m1, m2):
    """One sample of the SVF: (output, ic1, ic2). ic1/ic2 are the trapezoidal
    integrators' states (twice the capacitor currents, in Simper's terms)."""
    v3 = x - ic2
    v1 = a1 * ic1 + a2 * v3
    v2 = ic2 + a2 * ic1 + a3 * v3
    return m0 * x + m1 * v1 + m2 * v2, 2.0 * v1 - ic1, 2.0 * v2 - ic2


@njit(**JIT)
def _four_lanes(bufs, row, first, width):
    """Inputs, outputs and state offsets of voices ``first .. first+3`` for a
    four-voice pass (past the end of the bank the last voice fills the spare
    lanes; ``width`` is the state per voice)."""
    last = row[I_VOICES] - 1
    va, vb, vc, vd = (
        first,
        min(first + 1, last),
        min(first + 2, last),
        min(first + 3, last),
    )
    in_slot, in_stride = row[I_IN], row[I_IN + 1]
    out = row[I_OUT]
    return (
        bufs[in_slot + va * in_stride],
        bufs[in_slot + vb * in_stride],
        bufs[in_slot + vc * in_stride],
        bufs[in_slot + vd * in_stride],
        bufs[out + va],
        bufs[out + vb],
        bufs[out + vc],
        bufs[out + vd],
        width * va,
        width * vb,
        width * vc,
        width * vd,
    )


@njit(**JIT)
def _svf_fast4(bufs, row, state, n_frames, first):
    """Voices ``first .. first+3`` with steady coefficients, states in registers
    (past the end of the bank the last voice fills the spare lanes)."""
    xa, xb, xc, xd, oa, ob, oc, od, a, b, c, d = _four_lanes(
        bufs, row, first, np.int64(_SVF_WIDTH)
    )
    ia, ja, a1a, a2a = state[a], state[a + 1], state[a + 2], state[a + 3]
    a3a, m0a, m1a, m2a = state[a + 4], state[a + 5], state[a + 6], state[a + 7]
    ib, jb, a1b, a2b = state[b], state[b + 1], state[b + 2], state[b + 3]
    a3b, m0b, m1b, m2b = state[b + 4], state[b + 5], state[b + 6], state[b + 7]
    ic, jc, a1c, a2c = state[c], state[c + 1], state[c + 2], state[c + 3]
    a3c, m0c, m1c, m2c = state[c + 4], state[c + 5], state[c + 6], state[c + 7]
    id_, jd, a1d, a2d = state[d], state[d + 1], state[d + 2], state[d + 3]
    a3d, m0d, m1d, m2d = state[d + 4], state[d + 5], state[d + 6], state[d + 7]
    for frame in range(n_frames):
        oa[frame], ia, ja = _svf_step(
            clean(xa[frame]), ia, ja, a1a, a2a, a3a, m0a, m1a, m2a
        )
        ob[frame], ib, jb = _svf_step(
            clean(xb[frame]), ib, jb, a1b, a2b, a3b, m0b, m1b, m2b
        )
        oc[frame], ic, jc = _svf_step(
            clean(xc[frame]), ic, jc, a1c, a2c, a3c, m0c, m1c, m2c
        )
        od[frame], id_, jd = _svf_step(
            clean(xd[frame]), id_, jd, a1d, a2d, a3d, m0d, m1d, m2d
        )
    state[a], state[a + 1] = zap(ia), zap(ja)
    state[b], state[b + 1] = zap(ib), zap(jb)
    state[c], state[c + 1] = zap(ic), zap(jc)
    state[d], state[d + 1] = zap(id_), zap(jd)


@njit(**JIT)
def svf(bufs, row, p0, p1, state, sample_rate, n_frames):
    """State-variable filter bank, and the resonant low-pass (by the opcode).

    svf params: cutoff_hz, q, gain_db, mode; rlpf params: cutoff_hz, q (it is the
    low-pass response, and shares this compiled kernel). Inputs: in, cutoff_mod
    (octaves, audio rate). State per voice: ic1, ic2, then six coefficients
    (scratch for the steady path).
    """
    voices = row[I_VOICES]
    w = _SVF_WIDTH
    full = row[I_OP] != _RLPF_OP
    mod_slot, mod_stride = row[I_IN + 2], row[I_IN + 3]
    gain_db = 0.0
    mode = _LOWPASS
    if mod_slot == ZERO_SLOT and all_steady(p0, p1):
        for voice in range(voices):
            if full:
                gain_db = p1[2 * voices + voice]
                mode = int(p1[3 * voices + voice] + 0.5)
            s = w * voice
            (
                state[s + 2],
                state[s + 3],
                state[s + 4],
                state[s + 5],
                state[s + 6],
                state[s + 7],
            ) = _svf_coeffs(
                p1[voice], p1[voices + voice], gain_db, mode, 0.0, sample_rate
            )
        for first in range(0, voices, 4):
            _svf_fast4(bufs, row, state, n_frames, first)
        return
    in_slot, in_stride = row[I_IN], row[I_IN + 1]
    out = row[I_OUT]
    inv_n = 1.0 / n_frames
    for frame in range(n_frames):
        t = (frame + 1.0) * inv_n
        for voice in range(voices):
            j = voices + voice
            if full:
                k = j + voices
                gain_db = p0[k] + (p1[k] - p0[k]) * t
                # A mode switch takes effect at once (a choice is never ramped).
                mode = int(p1[k + voices] + 0.5)
            a1, a2, a3, m0, m1, m2 = _svf_coeffs(
                p0[voice] + (p1[voice] - p0[voice]) * t,
                p0[j] + (p1[j] - p0[j]) * t,
                gain_db,
                mode,
                bufs[mod_slot + voice * mod_stride, frame],
                sample_rate,
            )
            s = w * voice
            bufs[out + voice, frame], state[s], state[s + 1] = _svf_step(
                clean(bufs[in_slot + voice * in_stride, frame]),
                state[s],
                state[s + 1],
                a1,
                a2,
                a3,
                m0,
                m1,
                m2,
            )
    for voice in range(voices):
        state[w * voice] = zap(state[w * voice])
        state[w * voice + 1] = zap(state[w * voice + 1])


# The interpreter calls this name for rlpf: the same compiled kernel.
rlpf = svf


# --------------------------------------------------------------------------------
# Moog-style ladder (Zavalishin ch. 5 ZDF ladder, one saturator at the feedback sum)
# --------------------------------------------------------------------------------

_LADDER_WIDTH = 11  # per voice: s1..s4, then G, c1..c4, a, b (scratch)


@njit(**JIT)
def _ladder_coeffs(cutoff_hz, resonance, drive, mod_octaves, sample_rate):
    """(G, c1, c2, c3, c4, a, b) of the ladder.

    Four TPT one-poles y_i = G*y_(i-1) + (1-G)*s_i make y4 = G^4*u + S with
    S = c1*s1 + c2*s2 + c3*s3 + c4*s4 known before the sample. The feedback sum
    u = (1+k)*drive*x - k*y4 solved without delay is u = a*x - b*S; the tanh is
    applied to that solution (the cheap "solve linear, then saturate" form: exact
    for small signals, bounded for large ones, no iteration). The (1+k) input
    gain keeps the small-signal gain at DC equal to ``drive`` at any resonance.
    """
    g = prewarp(cutoff_hz, mod_octaves, sample_rate)
    big_g = g / (1.0 + g)
    beta = 1.0 - big_g
    k = LADDER_MAX_FEEDBACK * resonance
    g2 = big_g * big_g
    inv = 1.0 / (1.0 + k * g2 * g2)
    c3 = beta * big_g
    return big_g, c3 * g2, beta * g2, c3, beta, drive * (1.0 + k) * inv, k * inv


@njit(**JIT)
def _ladder_step(x, s1, s2, s3, s4, big_g, c1, c2, c3, c4, a, b):
    """One sample: (output, s1, s2, s3, s4). c4 is (1 - G)."""
    u = fast_tanh(a * x - b * ((c1 * s1 + c2 * s2) + (c3 * s3 + c4 * s4)))
    y = big_g * u + c4 * s1
    s1 = 2.0 * y - s1
    y = big_g * y + c4 * s2
    s2 = 2.0 * y - s2
    y = big_g * y + c4 * s3
    s3 = 2.0 * y - s3
    y = big_g * y + c4 * s4
    s4 = 2.0 * y - s4
    return y, s1, s2, s3, s4


@njit(**JIT)
def _ladder_fast4(bufs, row, state, n_frames, first):
    """Voices ``first .. first+3`` with steady coefficients, states in registers
    (past the end of the bank the last voice fills the spare lanes)."""
    xa, xb, xc, xd, oa, ob, oc, od, a, b, c, d = _four_lanes(
        bufs, row, first, np.int64(_LADDER_WIDTH)
    )
    a1, a2, a3, a4 = state[a], state[a + 1], state[a + 2], state[a + 3]
    ga, e1a, e2a, e3a = state[a + 4], state[a + 5], state[a + 6], state[a + 7]
    e4a, ia, ja = state[a + 8], state[a + 9], state[a + 10]
    b1, b2, b3, b4 = state[b], state[b + 1], state[b + 2], state[b + 3]
    gb, e1b, e2b, e3b = state[b + 4], state[b + 5], state[b + 6], state[b + 7]
    e4b, ib, jb = state[b + 8], state[b + 9], state[b + 10]
    c1, c2, c3, c4 = state[c], state[c + 1], state[c + 2], state[c + 3]
    gc, e1c, e2c, e3c = state[c + 4], state[c + 5], state[c + 6], state[c + 7]
    e4c, ic, jc = state[c + 8], state[c + 9], state[c + 10]
    d1, d2, d3, d4 = state[d], state[d + 1], state[d + 2], state[d + 3]
    gd, e1d, e2d, e3d = state[d + 4], state[d + 5], state[d + 6], state[d + 7]
    e4d, id_, jd = state[d + 8], state[d + 9], state[d + 10]
    for frame in range(n_frames):
        oa[frame], a1, a2, a3, a4 = _ladder_step(
            clean(xa[frame]), a1, a2, a3, a4, ga, e1a, e2a, e3a, e4a, ia, ja
        )
        ob[frame], b1, b2, b3, b4 = _ladder_step(
            clean(xb[frame]), b1, b2, b3, b4, gb, e1b, e2b, e3b, e4b, ib, jb
        )
        oc[frame], c1, c2, c3, c4 = _ladder_step(
            clean(xc[frame]), c1, c2, c3, c4, gc, e1c, e2c, e3c, e4c, ic, jc
        )
        od[frame], d1, d2, d3, d4 = _ladder_step(
            clean(xd[frame]), d1, d2, d3, d4, gd, e1d, e2d, e3d, e4d, id_, jd
        )
    state[a], state[a + 1], state[a + 2], state[a + 3] = (
        zap(a1),
        zap(a2),
        zap(a3),
        zap(a4),
    )
    state[b], state[b + 1], state[b + 2], state[b + 3] = (
        zap(b1),
        zap(b2),
        zap(b3),
        zap(b4),
    )
    state[c], state[c + 1], state[c + 2], state[c + 3] = (
        zap(c1),
        zap(c2),
        zap(c3),
        zap(c4),
    )
    state[d], state[d + 1], state[d + 2], state[d + 3] = (
        zap(d1),
        zap(d2),
        zap(d3),
        zap(d4),
    )


@njit(**JIT)
def ladder(bufs, row, p0, p1, state, sample_rate, n_frames):
    """Moog-style 4-pole ladder bank (24 dB/oct). Params: cutoff_hz, resonance,
    drive. Inputs: in, cutoff_mod (octaves).

    State per voice: s1..s4, then seven coefficients (scratch for the steady
    path).
    """
    voices = row[I_VOICES]
    w = _LADDER_WIDTH
    mod_slot, mod_stride = row[I_IN + 2], row[I_IN + 3]
    if mod_slot == ZERO_SLOT and all_steady(p0, p1):
        for voice in range(voices):
            s = w * voice
            (
                state[s + 4],
                state[s + 5],
                state[s + 6],
                state[s + 7],
                state[s + 8],
                state[s + 9],
                state[s + 10],
            ) = _ladder_coeffs(
                p1[voice],
                p1[voices + voice],
                p1[2 * voices + voice],
                0.0,
                sample_rate,
            )
        for first in range(0, voices, 4):
            _ladder_fast4(bufs, row, state, n_frames, first)
        return
    in_slot, in_stride = row[I_IN], row[I_IN + 1]
    out = row[I_OUT]
    inv_n = 1.0 / n_frames
    for frame in range(n_frames):
        t = (frame + 1.0) * inv_n
        for voice in range(voices):
            j = voices + voice
            k = j + voices
            big_g, c1, c2, c3, c4, a, b = _ladder_coeffs(
                p0[voice] + (p1[voice] - p0[voice]) * t,
                p0[j] + (p1[j] - p0[j]) * t,
                p0[k] + (p1[k] - p0[k]) * t,
                bufs[mod_slot + voice * mod_stride, frame],
                sample_rate,
            )
            s = w * voice
            (
                bufs[out + voice, frame],
                state[s],
                state[s + 1],
                state[s + 2],
                state[s + 3],
            ) = _ladder_step(
                clean(bufs[in_slot + voice * in_stride, frame]),
                state[s],
                state[s + 1],
                state[s + 2],
                state[s + 3],
                big_g,
                c1,
                c2,
                c3,
                c4,
                a,
                b,
            )
    for voice in range(voices):
        for i in range(4):
            state[w * voice + i] = zap(state[w * voice + i])


# --------------------------------------------------------------------------------
# Registration
# --------------------------------------------------------------------------------


def _cutoff(default: float, maximum: float = 24000.0) -> Param:
    return Param(
        "cutoff_hz",
        default,
        "Hz",
        MIN_CUTOFF_HZ,
        maximum,
        smoothing_ms=20.0,
        doc="-3 dB point (clamped below Nyquist at run time)",
    )


def _q(default: float) -> Param:
    return Param(
        "q", default, "", 0.1, 40.0, smoothing_ms=20.0, doc="0.7071 is Butterworth"
    )


CUTOFF_MOD_DOC = "cutoff_mod: octaves added at audio rate (cutoff * 2**cutoff_mod)"

register(
    NodeSpec(
        "onepole_lowpass",
        Op.ONEPOLE_LOWPASS,
        "One-pole low-pass (TPT, bilinear, -3 dB at cutoff_hz), 6 dB/oct.",
        inputs=("in",),
        params=(_cutoff(1000.0),),
        state_size=_state_per_voice(_ONEPOLE_WIDTH),
        init=_zero_state,
    ),
    NodeSpec(
        "onepole_highpass",
        Op.ONEPOLE_HIGHPASS,
        "One-pole high-pass (TPT, bilinear, -3 dB at cutoff_hz), 6 dB/oct.",
        inputs=("in",),
        params=(_cutoff(1000.0),),
        state_size=_state_per_voice(_ONEPOLE_WIDTH),
        init=_zero_state,
    ),
    NodeSpec(
        "svf",
        Op.SVF,
        "State-variable filter (Simper trapezoidal): lowpass, highpass, bandpass, "
        "notch, peak, lowshelf, highshelf, allpass. " + CUTOFF_MOD_DOC,
        inputs=("in", "cutoff_mod"),
        params=(
            _cutoff(1000.0),
            _q(0.7071),
            Param(
                "gain_db",
                0.0,
                "dB",
                -48.0,
                48.0,
                smoothing_ms=20.0,
                doc="peak and shelf gain",
            ),
            Param("mode", 0.0, choices=SVF_MODES, doc="response"),
        ),
        state_size=_state_per_voice(_SVF_WIDTH),
        init=_zero_state,
    ),
    NodeSpec(
        "rlpf",
        Op.RLPF,
        "Resonant 2-pole low-pass (SuperCollider RLPF with q = 1/rq; gain q at "
        "cutoff_hz). " + CUTOFF_MOD_DOC,
        inputs=("in", "cutoff_mod"),
        params=(_cutoff(440.0), _q(1.0)),
        state_size=_state_per_voice(_SVF_WIDTH),
        init=_zero_state,
    ),
    NodeSpec(
        "ladder",
        Op.LADDER,
        "Moog-style 4-pole ladder (ZDF, tanh at the feedback sum), 24 dB/oct; "
        "self-oscillates at cutoff_hz from resonance ~0.95. " + CUTOFF_MOD_DOC,
        inputs=("in", "cutoff_mod"),
        params=(
            _cutoff(1000.0),
            Param(
                "resonance",
                0.0,
                "",
                0.0,
                1.0,
                smoothing_ms=20.0,
                doc="feedback 0..1; self-oscillation near 1",
            ),
            Param(
                "drive",
                1.0,
                "",
                1.0,
                10.0,
                smoothing_ms=20.0,
                doc="input gain into the saturating ladder",
            ),
        ),
        state_size=_state_per_voice(_LADDER_WIDTH),
        init=_zero_state,
    ),
    NodeSpec(
        "dc_blocker",
        Op.DC_BLOCKER,
        "DC blocker: one-pole high-pass, exact zero at DC, default 10 Hz.",
        inputs=("in",),
        params=(_cutoff(10.0, 200.0),),
        state_size=_state_per_voice(_ONEPOLE_WIDTH),
        init=_zero_state,
    ),
)
