"""Band equaliser: ten octave bands (31.25 Hz .. 16 kHz) with slow random motion.

``bands`` shapes a sound (coloured noise above all) by octave: ``gain_31hz_db``
.. ``gain_16khz_db`` set each band's level, and ``animate_db`` with
``animate_rate_hz`` lets every band drift on its own smooth random curve
(``lfo``'s monotone cubic ``smooth_random``: it never overshoots its points, so
a band's drift stays within +-``animate_db``). Option ``linked`` (default true)
gives every voice the same drift, so a stereo bed keeps its image; false gives
each voice its own.

Design: a cascade of ten peaking filters (the ``svf`` kernel's Simper
trapezoidal peak, centres 1000 * 2**(k - 5) Hz, pre-warped, q = 1, about 1.4
octaves wide at half gain). A peaking filter at 0 dB is the identity bit for bit
(its band-pass weight is exactly 0), so all gains at 0 dB pass the input
unchanged: a null test holds exactly. Wide bells overlap, so a band's level at
its centre is its own gain plus its neighbours' skirts; narrow bells would leave
dips between the centres when all bands are raised. So the filters run wide and
their gains are solved for: the level at every centre is the sum over bands of
``10 * log10(|H_j(f_k)|^2)``, which has a closed form in the band gain (the
bilinear map of the analog prototype at ``f_k`` is a pure imaginary ``s``), and
each update takes one Newton-like step ``g += M^-1 (want - level(g))``, with
``M`` the interaction matrix at 12 dB (as in Valimaki and Liski, "Accurate
cascade graphic equalizer", 2017, which iterates the same matrix offline). The
step starts from the previous solution, so a steady setting converges within a
few updates (the initialiser solves it fully, so the first sample is right) and
a moving one is tracked. Measured with random settings in -24..+12 dB per band,
even alternating ones: within 0.01 dB after ten updates; within -12..+12, 1e-7
dB. Settings no cascade of these bells can reach (neighbours 40 dB apart) settle
at the nearest reachable levels; the filter gains are held within +-48 dB.

Updates run every ``UPDATE_FRAMES`` frames of the node's own clock (not per
segment), so the output does not depend on the block size; between updates the
coefficients are constant. 64 frames is 1.3 ms at 48 kHz: a 12 dB gain change
smoothed over 50 ms moves in 0.3 dB steps, the animation in steps far below
0.01 dB. When nothing moves (steady parameters, no animation, solved) the update
is skipped.

State: ``[seed, frames_to_update, U (100), V (100), M^-1 (100)]``, then
per voice ``[gains (10), coefficients (10 x a1 a2 a3 m1), filter states (10 x
2), animation (10 x phase counter p0 p1 p2 p3), scratch (20), settled]``.

Audio thread: yes (the kernel); the design and initialiser run on the control
thread.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np
from numba import njit

from engine.dsp.jit import JIT, zap
from engine.dsp.kernels_filter import _PEAK, _svf_coeffs, _svf_step, all_steady, clean
from engine.dsp.kernels_mod import _smooth_random
from engine.dsp.layout import I_IN, I_OUT, I_VOICES
from engine.dsp.nodes import NodeSpec, Param, register
from engine.dsp.opcodes import Op
from engine.dsp.rng import (
    STREAM_STRIDE,
    seed_from_option,
    stream_key,
    uniform,
    uniform_block,
)

N_BANDS = 10
BAND_CENTRES_HZ = tuple(1000.0 * 2.0 ** (k - 5) for k in range(N_BANDS))
BAND_LABELS = ("31hz", "63hz", "125hz", "250hz", "500hz", "1khz", "2khz", "4khz")
BAND_LABELS += ("8khz", "16khz")
BAND_Q = 1.0
UPDATE_FRAMES = 64
# The interaction matrix is measured with every band at this gain.
_REFERENCE_DB = 12.0
# Wanted levels and filter gains are held within these bounds.
WANT_LIMIT_DB = (-36.0, 24.0)
FILTER_LIMIT_DB = 48.0
# Solved when no centre is further than this from its wanted level.
_SETTLED_DB = 1e-9
_LN10_OVER_20 = math.log(10.0) / 20.0

_N2 = N_BANDS * N_BANDS
_H_SEED, _H_UNTIL = 0, 1
_H_U = 2
_H_V = _H_U + _N2
_H_MINV = _H_V + _N2
_HEADER = _H_MINV + _N2
# Per voice.
_V_GAIN = 0
_V_COEF = _V_GAIN + N_BANDS  # a1, a2, a3, m1 per band
_V_FILT = _V_COEF + 4 * N_BANDS  # ic1, ic2 per band
_V_ANIM = _V_FILT + 2 * N_BANDS  # phase, counter, four points per band
_V_SCRATCH = _V_ANIM + 6 * N_BANDS  # A^2 per band, then the error per centre
_V_SETTLED = _V_SCRATCH + 2 * N_BANDS
_VOICE = _V_SETTLED + 1
# Parameter rows.
_P_DEPTH = N_BANDS
_P_RATE = N_BANDS + 1


@lru_cache(maxsize=16)
def band_design(sample_rate: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(U, V, M^-1)`` for ``sample_rate``: ``|H_j(f_k)|^2 = (U + A2 V) / (U + V /
    A2)`` with ``A2 = 10**(gain_j / 20)`` ([k, j] arrays), and the inverse of the
    interaction matrix at 12 dB.

    At ``f_k`` the pre-warped bilinear map gives ``s = i * W``, ``W = tan(pi f_k /
    fs) / tan(pi f_j / fs)``, so the peak ``(s^2 + s A/q + 1) / (s^2 + s/(q A) +
    1)`` has that magnitude with ``U = (1 - W^2)^2`` and ``V = (W / q)^2``.
    Control thread only.
    """
    warped = np.tan(np.pi * np.asarray(BAND_CENTRES_HZ) / sample_rate)
    w = warped[:, None] / warped[None, :]
    u = (1.0 - w * w) ** 2
    v = (w / BAND_Q) ** 2
    a2 = 10.0 ** (_REFERENCE_DB / 20.0)
    # Column j: the level at every centre of band j alone at the reference gain.
    interaction = 10.0 * np.log10((u + a2 * v) / (u + v / a2)) / _REFERENCE_DB
    minv = np.linalg.inv(interaction)
    for array in (u, v, minv):
        array.flags.writeable = False
    return u, v, minv


def band_levels_db(gains_db: np.ndarray, sample_rate: float) -> np.ndarray:
    """Level at each band centre (dB) of the cascade with filter gains
    ``gains_db`` (the closed form the kernel iterates on). Control thread."""
    u, v, _ = band_design(float(sample_rate))
    a2 = 10.0 ** (np.asarray(gains_db, dtype=np.float64) / 20.0)
    return 10.0 * np.log10(np.prod(u + a2 * v, axis=1) / np.prod(u + v / a2, axis=1))


def solve_band_gains(
    want_db: np.ndarray, sample_rate: float, steps: int = 40
) -> np.ndarray:
    """Filter gains whose cascade has ``want_db`` at the centres, by the kernel's
    step repeated. Control thread only.

    >>> g = solve_band_gains(np.linspace(6, -6, 10), 48000)
    >>> bool(np.allclose(band_levels_db(g, 48000), np.linspace(6, -6, 10)))
    True
    """
    _, _, minv = band_design(float(sample_rate))
    want = np.clip(np.asarray(want_db, dtype=np.float64), *WANT_LIMIT_DB)
    gains = np.zeros(N_BANDS)
    for _ in range(steps):
        gains += minv @ (want - band_levels_db(gains, sample_rate))
        np.clip(gains, -FILTER_LIMIT_DB, FILTER_LIMIT_DB, out=gains)
    return gains


@njit(**JIT)
def _bands_update(state, vb, p0, p1, voices, voice, t, key, steady, sample_rate):
    """Animate, solve one step for the filter gains, and set the coefficients of
    one voice (``vb``: its first state element), at ``t`` through the segment."""
    depth = p0[_P_DEPTH * voices + voice]
    depth += (p1[_P_DEPTH * voices + voice] - depth) * t
    rate = p0[_P_RATE * voices + voice]
    rate += (p1[_P_RATE * voices + voice] - rate) * t
    step = rate * UPDATE_FRAMES / sample_rate
    lo, hi = WANT_LIMIT_DB
    err = vb + _V_SCRATCH + N_BANDS
    for band in range(N_BANDS):
        a = vb + _V_ANIM + 6 * band
        phase = state[a]
        want = p0[band * voices + voice]
        want += (p1[band * voices + voice] - want) * t
        if depth != 0.0:
            drift = _smooth_random(
                phase, state[a + 2], state[a + 3], state[a + 4], state[a + 5]
            )
            want += depth * drift
        state[err + band] = min(max(want, lo), hi)
        phase += step
        if phase >= 1.0:
            # At most 10 Hz: under one point per update.
            phase -= 1.0
            counter = state[a + 1]
            state[a + 2] = state[a + 3]
            state[a + 3] = state[a + 4]
            state[a + 4] = state[a + 5]
            # A band draws at most 10 points a second: its stretch of 2**40
            # draws lasts millennia, so the counter needs no wrap.
            state[a + 5] = uniform(key, counter)
            state[a + 1] = counter + 1.0
        state[a] = phase
    if steady and depth == 0.0 and state[vb + _V_SETTLED] > 0.0:
        return
    # One step of g += M^-1 (want - level(g)).
    a2 = vb + _V_SCRATCH
    for band in range(N_BANDS):
        state[a2 + band] = math.exp(state[vb + _V_GAIN + band] * _LN10_OVER_20)
    worst = 0.0
    for k in range(N_BANDS):
        num = 1.0
        den = 1.0
        for j in range(N_BANDS):
            u = state[_H_U + k * N_BANDS + j]
            v = state[_H_V + k * N_BANDS + j]
            g2 = state[a2 + j]
            num *= u + g2 * v
            den *= u + v / g2
        e = state[err + k] - 10.0 * math.log10(num / den)
        state[err + k] = e
        worst = max(worst, abs(e))
    state[vb + _V_SETTLED] = 1.0 if worst < _SETTLED_DB else 0.0
    for j in range(N_BANDS):
        delta = 0.0
        for k in range(N_BANDS):
            delta += state[_H_MINV + j * N_BANDS + k] * state[err + k]
        g = state[vb + _V_GAIN + j] + delta
        g = min(max(g, -FILTER_LIMIT_DB), FILTER_LIMIT_DB)
        if not abs(g) > 1e-9:  # exactly 0 dB is exactly the identity (and NaN: 0)
            g = 0.0
        state[vb + _V_GAIN + j] = g
        a1, a2_, a3, _, m1, _ = _svf_coeffs(
            # A float exponent: an int one compiles a check that can raise.
            1000.0 * 2.0 ** float(j - 5),
            BAND_Q,
            g,
            np.int64(_PEAK),
            0.0,
            sample_rate,
        )
        c = vb + _V_COEF + 4 * j
        state[c] = a1
        state[c + 1] = a2_
        state[c + 2] = a3
        state[c + 3] = m1


@njit(**JIT)
def bands(bufs, row, p0, p1, state, sample_rate, n_frames):
    """Ten-band octave equaliser bank. Params: gain_31hz_db .. gain_16khz_db,
    animate_db, animate_rate_hz. Input: in.

    The bands run band by band over each stretch between updates, each band's
    two states in registers.
    """
    voices = row[I_VOICES]
    in_slot, in_stride = row[I_IN], row[I_IN + 1]
    out_slot = row[I_OUT]
    key = stream_key(state[_H_SEED])
    until = int(state[_H_UNTIL])
    steady = all_steady(p0, p1)
    inv_n = 1.0 / n_frames
    frame = 0
    while frame < n_frames:
        if until <= 0:
            t = (frame + 1.0) * inv_n
            for voice in range(voices):
                _bands_update(
                    state,
                    _HEADER + voice * _VOICE,
                    p0,
                    p1,
                    voices,
                    voice,
                    t,
                    key,
                    steady,
                    sample_rate,
                )
            until = UPDATE_FRAMES
        stop = min(n_frames, frame + until)
        for voice in range(voices):
            x = bufs[in_slot + voice * in_stride]
            out = bufs[out_slot + voice]
            for i in range(frame, stop):
                out[i] = clean(x[i])
            vb = _HEADER + voice * _VOICE
            for band in range(N_BANDS):
                c = vb + _V_COEF + 4 * band
                a1 = state[c]
                a2 = state[c + 1]
                a3 = state[c + 2]
                m1 = state[c + 3]
                f = vb + _V_FILT + 2 * band
                ic1 = state[f]
                ic2 = state[f + 1]
                for i in range(frame, stop):
                    out[i], ic1, ic2 = _svf_step(
                        out[i], ic1, ic2, a1, a2, a3, 1.0, m1, 0.0
                    )
                state[f] = ic1
                state[f + 1] = ic2
        until -= stop - frame
        frame = stop
    state[_H_UNTIL] = until
    for voice in range(voices):
        f = _HEADER + voice * _VOICE + _V_FILT
        for i in range(2 * N_BANDS):
            state[f + i] = zap(state[f + i])


def _bands_state(voices: int, sample_rate: float, options: Mapping[str, Any]) -> int:
    return _HEADER + voices * _VOICE


def _bands_init(
    state: np.ndarray,
    params: np.ndarray,
    voices: int,
    sample_rate: float,
    options: Mapping[str, Any],
) -> None:
    """Design for the sample rate, solve the initial gains fully (so the first
    sample is right), and draw every band's first four animation points."""
    linked = options["linked"]
    if linked is not True and linked is not False:
        raise ValueError(f"bands: linked must be true or false, not {linked!r}")
    u, v, minv = band_design(float(sample_rate))
    seed = seed_from_option(options["seed"])
    state[:] = 0.0
    state[_H_SEED] = seed
    state[_H_UNTIL] = 0.0  # update at the first frame
    state[_H_U : _H_U + _N2] = u.ravel()
    state[_H_V : _H_V + _N2] = v.ravel()
    state[_H_MINV : _H_MINV + _N2] = minv.ravel()
    per_band = params[: N_BANDS * voices].reshape(N_BANDS, voices)
    depth = params[_P_DEPTH * voices : (_P_DEPTH + 1) * voices]
    for voice in range(voices):
        vb = _HEADER + voice * _VOICE
        anim = state[vb + _V_ANIM : vb + _V_ANIM + 6 * N_BANDS].reshape(N_BANDS, 6)
        for band in range(N_BANDS):
            stream = band if linked else voice * N_BANDS + band
            first = int(stream * STREAM_STRIDE)
            anim[band, 1] = first + 4
            anim[band, 2:] = uniform_block(int(seed), first, 4)
        # The kernel's first update evaluates the drift at phase 0, where the
        # curve is at its second point: start from the solution there.
        want = per_band[:, voice] + depth[voice] * anim[:, 3]
        state[vb + _V_GAIN : vb + _V_GAIN + N_BANDS] = solve_band_gains(
            want, sample_rate
        )


def _band_param(label: str, centre_hz: float) -> Param:
    return Param(
        f"gain_{label}_db",
        0.0,
        "dB",
        -24.0,
        12.0,
        smoothing_ms=50.0,
        doc=f"level of the octave around {centre_hz:g} Hz",
    )


register(
    NodeSpec(
        "bands",
        Op.BANDS,
        "Ten-band octave equaliser (31 Hz..16 kHz) that hits each band's level "
        "at its centre; animate_db lets every band drift slowly on its own. "
        "Colours noise; all bands at 0 dB leave the sound untouched.",
        inputs=("in",),
        params=(
            *(
                _band_param(label, centre)
                for label, centre in zip(BAND_LABELS, BAND_CENTRES_HZ, strict=True)
            ),
            Param(
                "animate_db",
                0.0,
                "dB",
                0.0,
                12.0,
                smoothing_ms=200.0,
                doc="how far each band drifts from its level, at most",
            ),
            Param(
                "animate_rate_hz",
                0.2,
                "Hz",
                0.0,
                10.0,
                smoothing_ms=200.0,
                doc="new random drift targets per second",
            ),
        ),
        options={"seed": None, "linked": True},
        state_size=_bands_state,
        init=_bands_init,
    ),
)
