"""Noise: white, pink (-3 dB/octave) and brown (-6 dB/octave), in banks.

Every noise node draws one number per voice per sample from the counter-based
generator in ``engine.dsp.rng``: the node's ``seed`` option picks the stream (the
compiler derives it from the program seed and the node's name), voice ``v`` reads
its own stretch of it, and the counter lives in the state. So the same seed gives
the same noise at any block size, and two nodes or two voices are uncorrelated.

``amplitude`` is the long-term RMS level of every colour, so switching colour keeps
the loudness: white noise is uniform in ``[-sqrt(3), sqrt(3)) * amplitude``; pink
and brown are near-Gaussian with peaks about four times the RMS.

Pink and brown noise filter the white stream with a parallel bank of one-pole
low-passes plus a direct term, ``y = d*x + sum_k c_k * s_k``, ``s_k = p_k*s_k + x``
(Paul Kellet's structure). The poles are fixed on a log-frequency grid and the
weights are fitted by least squares to the target magnitude on the control thread,
per sample rate, so the slope holds up to 0.46 * sample_rate instead of bending
near Nyquist as a plain one-pole does:

- pink: poles from 5 Hz to 0.4 * sample_rate, 1.75 octaves apart (8 at
  44.1/48 kHz); |H| follows f^-1/2 within 0.25 dB peak to peak from 20 Hz to
  20 kHz and its local slope stays within -3 +- 0.15 dB/octave. Flat below about
  5 Hz, so it is bounded.
- brown: a leaky integrator with its corner at 10 Hz (the dominant pole), plus two
  small correction poles at 0.2 and 0.4 * sample_rate and the direct term; within
  0.3 dB peak to peak of 1/sqrt(1 + (f/10 Hz)^2) from 20 Hz to 20 kHz (a plain
  one-pole is 2.5-3 dB off near 20 kHz). Leaky, so bounded and with no DC drift.

The filters start where the stream's own past would have left them (the
initialiser runs the bank over the draws that precede counter 0), so the noise
starts at its full level and colour. The three node types are one kernel: the
colour is data (white noise is a bank with no poles and a direct term of
sqrt(3)).

State (per node): ``[seed, counter, n_poles, poles..., weights..., direct,
filter states (voice-major)...]``; white noise is the same with no poles.

Audio thread: yes (the kernels); the design functions run on the control thread.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np
from numba import njit

from engine.dsp.jit import JIT, zap
from engine.dsp.layout import I_OUT, I_VOICES
from engine.dsp.nodes import NodeSpec, Param, register
from engine.dsp.opcodes import Op
from engine.dsp.rng import (
    GAMMA,
    STREAM_STRIDE,
    seed_from_option,
    stream_key,
    uniform_block,
    uniform_from_weyl,
    weyl_state,
)

_SQRT3 = math.sqrt(3.0)

PINK_LOWEST_POLE_HZ = 5.0
PINK_POLE_SPACING_OCTAVES = 1.75
BROWN_CORNER_HZ = 10.0
# Fit the magnitude up to here (as a fraction of the sample rate).
_FIT_TOP = 0.46
# State header: seed, counter, number of poles.
_HEADER = 3


def _fit_parallel_bank(
    sample_rate: float,
    poles_hz: np.ndarray,
    magnitude: Any,
    fit_low_hz: float,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Weights of ``d + sum c_k / (1 - p_k z^-1)`` whose magnitude follows
    ``magnitude(f)`` from ``fit_low_hz`` to 0.46 * sample_rate.

    The poles are fixed, so the complex response is linear in the weights. Fitting
    the magnitude alone is done by alternating projections: fit the target
    magnitude with the phase of the previous fit, take the new phase, repeat
    (relative error, so every frequency counts the same in dB). The result is
    scaled so unit-variance white input gives unit-variance output, then by
    sqrt(3) because the kernels feed uniform numbers in [-1, 1).

    Control thread only.
    """
    poles = np.exp(-2.0 * np.pi * np.asarray(poles_hz, dtype=np.float64) / sample_rate)
    freqs = np.geomspace(fit_low_hz, _FIT_TOP * sample_rate, 600)
    z_inv = np.exp(-2j * np.pi * freqs / sample_rate)
    basis = np.column_stack(
        [1.0 / (1.0 - p * z_inv) for p in poles] + [np.ones_like(z_inv)]
    )
    target = magnitude(freqs)
    relative = basis / target[:, None]
    system = np.vstack([relative.real, relative.imag])
    phase = np.angle(basis @ np.ones(len(poles) + 1))
    weights = np.zeros(len(poles) + 1)
    for _ in range(40):
        want = np.exp(1j * phase)
        weights = np.linalg.lstsq(
            system, np.concatenate([want.real, want.imag]), rcond=None
        )[0]
        phase = np.angle(basis @ weights)
    residues, direct = weights[:-1], float(weights[-1])
    # Output variance for unit-variance white input: the direct path, its
    # correlation with every one-pole (each sees the current sample), and the
    # one-poles with each other.
    pp = poles[:, None] * poles[None, :]
    variance = (
        direct * direct
        + 2.0 * direct * residues.sum()
        + float(residues @ (1.0 / (1.0 - pp)) @ residues)
    )
    scale = _SQRT3 / math.sqrt(variance)
    weights = residues * scale
    # Cached and shared between programs: keep them read-only.
    poles.flags.writeable = False
    weights.flags.writeable = False
    return poles, weights, direct * scale


@lru_cache(maxsize=16)
def pink_design(sample_rate: float) -> tuple[np.ndarray, np.ndarray, float]:
    """(poles, weights, direct) of the pink filter bank at ``sample_rate``."""
    top_hz = max(0.4 * sample_rate, 4.0 * PINK_LOWEST_POLE_HZ)
    octaves = math.log2(top_hz / PINK_LOWEST_POLE_HZ)
    n_poles = math.ceil(octaves / PINK_POLE_SPACING_OCTAVES) + 1
    poles_hz = np.geomspace(PINK_LOWEST_POLE_HZ, top_hz, n_poles)
    return _fit_parallel_bank(
        sample_rate,
        poles_hz,
        lambda f: (f / 1000.0) ** -0.5,
        2.0 * PINK_LOWEST_POLE_HZ,
    )


@lru_cache(maxsize=16)
def brown_design(sample_rate: float) -> tuple[np.ndarray, np.ndarray, float]:
    """(poles, weights, direct) of the brown filter bank at ``sample_rate``."""
    poles_hz = np.array([BROWN_CORNER_HZ, 0.2 * sample_rate, 0.4 * sample_rate])
    return _fit_parallel_bank(
        sample_rate,
        poles_hz,
        lambda f: 1.0 / np.sqrt(1.0 + (f / BROWN_CORNER_HZ) ** 2),
        0.2 * BROWN_CORNER_HZ,
    )


@njit(**JIT)
def noise_bank(bufs, row, p0, p1, state, sample_rate, n_frames):
    """White, pink or brown noise bank: the generator's uniform numbers through
    the parallel one-pole bank stored in ``state`` (white noise: no poles, only
    the direct term). Param: amplitude (RMS), ramped across the segment.

    One kernel serves the three node types (``white_noise``, ``pink_noise`` and
    ``brown_noise`` are this function), so the interpreter compiles it once; the
    colour is data.
    """
    voices = row[I_VOICES]
    out_slot = row[I_OUT]
    key = stream_key(state[0])
    counter = state[1]
    n_poles = int(state[2])
    poles = state[_HEADER : _HEADER + n_poles]
    weights = state[_HEADER + n_poles : _HEADER + 2 * n_poles]
    direct = state[_HEADER + 2 * n_poles]
    first = _HEADER + 2 * n_poles + 1
    filt = state[first : first + voices * n_poles]
    inv_n = 1.0 / n_frames
    # The counter wraps inside this block at frame `wrap` (once in 265 days).
    wrap = n_frames
    if counter + n_frames > STREAM_STRIDE:
        wrap = int(STREAM_STRIDE - counter)
    for voice in range(voices):
        out = bufs[out_slot + voice]
        base = voice * n_poles
        amp0 = p0[voice]
        amp_span = p1[voice] - amp0
        first_count = counter + voice * STREAM_STRIDE
        weyl = weyl_state(key, first_count)
        for frame in range(n_frames):
            if frame == wrap:
                weyl = weyl_state(key, first_count + frame - STREAM_STRIDE)
            x = uniform_from_weyl(weyl)
            weyl += GAMMA
            y = direct * x
            for k in range(n_poles):
                s = poles[k] * filt[base + k] + x
                filt[base + k] = s
                y += weights[k] * s
            out[frame] = (amp0 + amp_span * ((frame + 1) * inv_n)) * y
    for i in range(voices * n_poles):
        filt[i] = zap(filt[i])
    # Wrap before running into the next voice's stretch (after 2**40 draws:
    # 265 days at 48 kHz); the stream then repeats.
    counter += n_frames
    state[1] = counter - STREAM_STRIDE if counter >= STREAM_STRIDE else counter


# The names the interpreter dispatches to.
white_noise = noise_bank
pink_noise = noise_bank
brown_noise = noise_bank


def white_design(sample_rate: float) -> tuple[np.ndarray, np.ndarray, float]:
    """White noise as a bank with no poles: unit variance from uniform input."""
    return np.empty(0), np.empty(0), _SQRT3


def warmup_frames(poles: np.ndarray) -> int:
    """Frames after which the slowest pole has forgotten 80 dB."""
    slowest = float(np.max(np.abs(poles)))
    return max(1, math.ceil(math.log(1e-4) / math.log(slowest)))


def _bank_state_size(design: Any) -> Any:
    def size(voices: int, sample_rate: float, options: Mapping[str, Any]) -> int:
        n_poles = len(design(float(sample_rate))[0])
        return _HEADER + 2 * n_poles + 1 + voices * n_poles

    return size


def _bank_init(design: Any) -> Any:
    def init(
        state: np.ndarray,
        params: np.ndarray,
        voices: int,
        sample_rate: float,
        options: Mapping[str, Any],
    ) -> None:
        poles, weights, direct = design(float(sample_rate))
        n = len(poles)
        seed = seed_from_option(options["seed"])
        state[0] = seed
        state[1] = 0.0
        state[2] = n
        state[_HEADER : _HEADER + n] = poles
        state[_HEADER + n : _HEADER + 2 * n] = weights
        state[_HEADER + 2 * n] = direct
        # Start the filters where the stream's own past would have left them, so
        # the noise begins at full level instead of building its low octaves up
        # over 0.1 s. The counter wraps every STREAM_STRIDE draws, so the draws
        # just before counter 0 are the last ones of the voice's stretch.
        if n == 0:
            return
        n_past = warmup_frames(poles)
        powers = poles[None, :] ** np.arange(n_past)[:, None]  # [age, pole]
        filt = state[_HEADER + 2 * n + 1 :].reshape(voices, n)
        for voice in range(voices):
            end = int((voice + 1) * STREAM_STRIDE)
            past = uniform_block(int(seed), end - n_past, n_past)
            filt[voice] = past[::-1] @ powers

    return init


AMPLITUDE = Param(
    "amplitude",
    0.25,
    "",
    0.0,
    4.0,
    smoothing_ms=20.0,
    doc="long-term RMS level (0.25 is -12 dBFS RMS)",
)
NOISE_OPTIONS = {"seed": None}

register(
    NodeSpec(
        "white_noise",
        Op.WHITE_NOISE,
        "White noise bank (uniform, counter-based generator); amplitude is RMS.",
        params=(AMPLITUDE,),
        options=NOISE_OPTIONS,
        state_size=_bank_state_size(white_design),
        init=_bank_init(white_design),
    ),
    NodeSpec(
        "pink_noise",
        Op.PINK_NOISE,
        "Pink noise bank, -3 dB/octave (fitted one-pole bank); amplitude is RMS.",
        params=(AMPLITUDE,),
        options=NOISE_OPTIONS,
        state_size=_bank_state_size(pink_design),
        init=_bank_init(pink_design),
    ),
    NodeSpec(
        "brown_noise",
        Op.BROWN_NOISE,
        "Brown noise bank, -6 dB/octave above 10 Hz (leaky integrator); "
        "amplitude is RMS.",
        params=(AMPLITUDE,),
        options=NOISE_OPTIONS,
        state_size=_bank_state_size(brown_design),
        init=_bank_init(brown_design),
    ),
)
