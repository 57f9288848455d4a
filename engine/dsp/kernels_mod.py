"""Modulation sources: LFO, ADSR and AR envelopes, and a linear ramp.

They output control signals (one per voice) to wire into other nodes' inputs or
to multiply audio with (``ring_mod``, ``am``).

- ``lfo``: ``offset + depth * wave``, wave in [-1, 1]: ``sine`` (table),
  ``triangle`` (in phase with the sine: 0 rising to 1 at a quarter cycle) or
  ``smooth_random``: a new random point in [-1, 1) every cycle (``rate_hz``
  points per second), joined by monotone cubic Hermite segments
  (Fritsch-Butland tangents). Monotone segments never overshoot their two
  points, so the output stays in range, and the curve and its slope are
  continuous: a step between samples is at most ``4 * depth * rate_hz /
  sample_rate``. Each voice draws its own stream from the ``seed`` option.
- ``adsr``: ``gate`` > 0.5 holds the envelope, <= 0.5 releases it. Attack is a
  linear rise at ``1 / attack_ms`` per ms, from wherever the level is (a retrigger
  during release or decay never clicks), so from silence it reaches 1 after
  ``attack_ms``. Decay and release are exponential (linear in dB):
  ``decay_ms`` takes the distance to ``sustain`` down by 60 dB, ``release_ms``
  takes the level down by 60 dB (the convention of smoothing times and of
  SuperCollider's ``Lag``). The release snaps to 0 below -120 dB.
- ``ar``: the same attack and release with no sustain; it fires whenever the
  ``trigger`` parameter changes value (write a counter: 1, 2, 3...), starting
  the attack from the current level.
- ``ramp``: whenever ``value`` changes, the output glides in a straight line from
  where it is to the new value in ``time_s``, landing exactly.

``gate``, ``trigger`` and ``value`` have no smoothing and are read as they stand at
the end of the segment: a write takes effect at the first sample of the next
segment, which the engine starts at the event's timestamp.

The envelopes run voice by voice: their recursion is a branchy state machine
that does not vectorise across voices, and per-voice coefficients are computed
once per segment outside the sample loop.

Audio thread: yes (kernels); initialisers run on the control thread.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from numba import njit

from engine.dsp.jit import JIT, zap
from engine.dsp.kernels_osc import sine_lookup
from engine.dsp.layout import I_OP, I_OUT, I_VOICES
from engine.dsp.nodes import NodeSpec, Param, register
from engine.dsp.opcodes import Op
from engine.dsp.rng import (
    STREAM_STRIDE,
    seed_from_option,
    stream_key,
    uniform,
    uniform_block,
)

_LN_1000 = math.log(1000.0)
# Releases end here (-120 dB) instead of creeping through subnormals.
ENVELOPE_FLOOR = 1e-6
# A decay this close to its sustain level has arrived.
_SUSTAIN_SNAP = 1e-9

LFO_SINE = 0
LFO_TRIANGLE = 1
LFO_SMOOTH_RANDOM = 2
# LFO state: [seed], then per voice [phase, counter, four random points].
_LFO_VOICE = 6

_AR_OP = int(Op.AR)
# Envelope stages.
_RELEASE = 0.0  # also idle, at level 0
_ATTACK = 1.0
_DECAY = 2.0  # decay, then sustain


@njit(**JIT)
def _triangle_wave(phase):
    if phase < 0.25:
        return 4.0 * phase
    if phase < 0.75:
        return 2.0 - 4.0 * phase
    return 4.0 * phase - 4.0


@njit(**JIT)
def _monotone_tangent(before, after):
    """Fritsch-Butland tangent at a point between secants ``before`` and
    ``after``: their harmonic mean, 0 at a turning point (never overshoots)."""
    if before * after <= 0.0:
        return 0.0
    return 2.0 * before * after / (before + after)


@njit(**JIT)
def _smooth_random(u, a, b, c, d):
    """Monotone cubic Hermite between ``b`` and ``c`` at ``u`` in [0, 1)."""
    span = c - b
    tb = _monotone_tangent(b - a, span)
    tc = _monotone_tangent(span, d - c)
    u2 = u * u
    u3 = u2 * u
    return b + (u3 - 2.0 * u2 + u) * tb + (3.0 * u2 - 2.0 * u3) * span + (u3 - u2) * tc


@njit(**JIT)
def lfo(bufs, row, p0, p1, state, sample_rate, n_frames):
    """LFO bank. Params: shape, rate_hz, depth, offset (the last three ramped).

    State: ``[seed]``, then per voice ``[phase, counter, p0, p1, p2, p3]``: the
    phase in cycles, the voice's next stream counter and the four random points
    the current smooth_random segment (between p1 and p2) is built from.
    """
    voices = row[I_VOICES]
    out_slot = row[I_OUT]
    key = stream_key(state[0])
    inv_sr = 1.0 / sample_rate
    inv_n = 1.0 / n_frames
    for voice in range(voices):
        out = bufs[out_slot + voice]
        shape = int(p1[voice] + 0.5)
        rate = p0[voices + voice]
        rate_step = (p1[voices + voice] - rate) * inv_n
        depth = p0[2 * voices + voice]
        depth_step = (p1[2 * voices + voice] - depth) * inv_n
        offset = p0[3 * voices + voice]
        offset_step = (p1[3 * voices + voice] - offset) * inv_n
        base = 1 + voice * _LFO_VOICE
        phase = state[base]
        counter = state[base + 1]
        a = state[base + 2]
        b = state[base + 3]
        c = state[base + 4]
        d = state[base + 5]
        for frame in range(n_frames):
            rate += rate_step
            depth += depth_step
            offset += offset_step
            if shape == LFO_SINE:
                wave = sine_lookup(phase)
            elif shape == LFO_TRIANGLE:
                wave = _triangle_wave(phase)
            else:
                wave = _smooth_random(phase, a, b, c, d)
            out[frame] = offset + depth * wave
            phase += rate * inv_sr
            if phase >= 1.0:
                phase -= 1.0  # rate_hz is at most 1 kHz: under one cycle a step
                # Points advance with the phase whatever the shape, so switching
                # shape never changes the random sequence.
                a = b
                b = c
                c = d
                d = uniform(key, counter)
                counter += 1.0
                if counter >= (voice + 1) * STREAM_STRIDE:
                    counter -= STREAM_STRIDE
        state[base] = phase if (phase >= 0.0 and phase < 1.0) else 0.0
        state[base + 1] = counter
        state[base + 2] = a
        state[base + 3] = b
        state[base + 4] = c
        state[base + 5] = d


def _lfo_state(voices: int, sample_rate: float, options: Mapping[str, Any]) -> int:
    return 1 + voices * _LFO_VOICE


def _init_lfo(
    state: np.ndarray,
    params: np.ndarray,
    voices: int,
    sample_rate: float,
    options: Mapping[str, Any],
) -> None:
    seed = seed_from_option(options["seed"])
    state[0] = seed
    phase = float(options["phase"]) % 1.0
    for voice in range(voices):
        base = 1 + voice * _LFO_VOICE
        first = int(voice * STREAM_STRIDE)
        state[base] = phase
        state[base + 1] = first + 4
        state[base + 2 : base + 6] = uniform_block(int(seed), first, 4)


@njit(**JIT)
def _time_coefficient(time_ms, sample_rate):
    """Per-sample factor that falls 60 dB in ``time_ms`` (0 ms: at once)."""
    n = time_ms * 0.001 * sample_rate
    if n < 1.0:
        return 0.0
    return math.exp(-_LN_1000 / n)


@njit(**JIT)
def _attack_increment(attack_ms, sample_rate):
    """Per-sample rise that goes from 0 to 1 in ``attack_ms`` (0 ms: one sample)."""
    n = attack_ms * 0.001 * sample_rate
    if n < 1.0:
        return 1.0
    return 1.0 / n


@njit(**JIT)
def _run_envelope(out, n_frames, level, stage, rise, decay, sus0, sus_step, fall):
    """Attack / decay-to-sustain / release state machine for one voice.

    ``decay`` < 0 means no sustain stage (AR): the attack goes straight into the
    release. Returns the level and stage at the end.
    """
    sustain = sus0
    for frame in range(n_frames):
        sustain += sus_step
        if stage == _ATTACK:
            level += rise
            # Tolerance: n additions of 1/n may fall an ulp short of 1.
            if level >= 1.0 - 1e-12:
                level = 1.0
                stage = _DECAY if decay >= 0.0 else _RELEASE
        elif stage == _DECAY:
            level = sustain + (level - sustain) * decay
            if abs(level - sustain) < _SUSTAIN_SNAP:
                level = sustain
        else:
            level *= fall
            if level < ENVELOPE_FLOOR:
                level = 0.0
        out[frame] = level
    return level, stage


@njit(**JIT)
def envelope(bufs, row, p0, p1, state, sample_rate, n_frames):
    """ADSR or AR envelope bank (the opcode in ``row`` says which); output 0..1.

    ADSR params: gate, attack_ms, decay_ms, sustain, release_ms. AR params:
    trigger, attack_ms, release_ms. One kernel serves both node types (``adsr``
    and ``ar`` are this function) so the interpreter compiles it once.

    State per voice: ``[level, stage, gate_was_held]`` (ADSR) or ``[level, stage,
    last_trigger]`` (AR).
    """
    is_ar = row[I_OP] == _AR_OP
    voices = row[I_VOICES]
    out_slot = row[I_OUT]
    inv_n = 1.0 / n_frames
    for voice in range(voices):
        base = 3 * voice
        level = state[base]
        stage = state[base + 1]
        rise = _attack_increment(p1[voices + voice], sample_rate)
        if is_ar:
            trigger = p1[voice]
            if trigger != state[base + 2]:
                stage = _ATTACK
                state[base + 2] = trigger
            decay = -1.0  # no sustain stage
            sus0 = 0.0
            sus_step = 0.0
            fall = _time_coefficient(p1[2 * voices + voice], sample_rate)
        else:
            held = p1[voice] > 0.5
            was_held = state[base + 2] > 0.5
            if held and not was_held:
                stage = _ATTACK
            elif was_held and not held:
                stage = _RELEASE
            state[base + 2] = 1.0 if held else 0.0
            decay = _time_coefficient(p1[2 * voices + voice], sample_rate)
            sus0 = p0[3 * voices + voice]
            sus_step = (p1[3 * voices + voice] - sus0) * inv_n
            fall = _time_coefficient(p1[4 * voices + voice], sample_rate)
        level, stage = _run_envelope(
            bufs[out_slot + voice],
            n_frames,
            level,
            stage,
            rise,
            decay,
            sus0,
            sus_step,
            fall,
        )
        state[base] = zap(level)
        state[base + 1] = stage


# The names the interpreter dispatches to.
adsr = envelope
ar = envelope


def _envelope_state(voices: int, sample_rate: float, options: Mapping[str, Any]) -> int:
    return 3 * voices


def _init_adsr(
    state: np.ndarray,
    params: np.ndarray,
    voices: int,
    sample_rate: float,
    options: Mapping[str, Any],
) -> None:
    """Silent and released: a gate that starts held fires on the first block."""
    state[:] = 0.0


def _init_ar(
    state: np.ndarray,
    params: np.ndarray,
    voices: int,
    sample_rate: float,
    options: Mapping[str, Any],
) -> None:
    """Silent; the initial trigger value counts as seen, so nothing fires until
    it changes."""
    state[:] = 0.0
    state[2::3] = params[:voices]


@njit(**JIT)
def ramp(bufs, row, p0, p1, state, sample_rate, n_frames):
    """Linear glide bank. Params: value (the destination), time_s.

    State per voice: ``[current, target, step, frames_left]``.
    """
    voices = row[I_VOICES]
    out_slot = row[I_OUT]
    for voice in range(voices):
        out = bufs[out_slot + voice]
        base = 4 * voice
        current = state[base]
        target = state[base + 1]
        step = state[base + 2]
        left = state[base + 3]
        value = p1[voice]
        if value != target:
            target = value
            left = math.floor(p1[voices + voice] * sample_rate + 0.5)
            if left < 1.0:
                current = target
                left = 0.0
            else:
                step = (target - current) / left
        for frame in range(n_frames):
            if left > 0.0:
                left -= 1.0
                # Land exactly: repeated adds drift by a few ulps.
                current = target if left <= 0.0 else current + step
            out[frame] = current
        state[base] = current
        state[base + 1] = target
        state[base + 2] = step
        state[base + 3] = left


def _ramp_state(voices: int, sample_rate: float, options: Mapping[str, Any]) -> int:
    return 4 * voices


def _init_ramp(
    state: np.ndarray,
    params: np.ndarray,
    voices: int,
    sample_rate: float,
    options: Mapping[str, Any],
) -> None:
    """Start at the initial value, not gliding."""
    view = state.reshape(voices, 4)
    view[:, 0] = params[:voices]
    view[:, 1] = params[:voices]
    view[:, 2:] = 0.0


def _time_param(name: str, default: float, maximum: float, doc: str) -> Param:
    return Param(name, default, "ms", 0.0, maximum, smoothing_ms=0.0, doc=doc)


register(
    NodeSpec(
        "lfo",
        Op.LFO,
        "Low-frequency oscillator bank: offset + depth * (sine, triangle or "
        "smooth random).",
        params=(
            Param(
                "shape",
                0.0,
                choices=("sine", "triangle", "smooth_random"),
                smoothing_ms=0.0,
                doc="waveform",
            ),
            Param(
                "rate_hz",
                1.0,
                "Hz",
                0.0,
                1000.0,
                doc="cycles (or random points) per second",
            ),
            Param("depth", 1.0, "", -1e9, 1e9, doc="half the peak-to-peak swing"),
            Param("offset", 0.0, "", -1e9, 1e9, doc="centre value"),
        ),
        options={"seed": None, "phase": 0.0},
        state_size=_lfo_state,
        init=_init_lfo,
    ),
    NodeSpec(
        "adsr",
        Op.ADSR,
        "ADSR envelope bank (linear attack, exponential decay and release), 0..1.",
        params=(
            Param("gate", 0.0, "", 0.0, 1.0, smoothing_ms=0.0, doc="> 0.5 holds"),
            _time_param("attack_ms", 10.0, 600000.0, "time to rise from 0 to 1"),
            _time_param(
                "decay_ms", 100.0, 600000.0, "time to fall 60 dB towards sustain"
            ),
            Param("sustain", 0.7, "", 0.0, 1.0, smoothing_ms=20.0, doc="held level"),
            _time_param("release_ms", 300.0, 600000.0, "time to fall 60 dB"),
        ),
        state_size=_envelope_state,
        init=_init_adsr,
    ),
    NodeSpec(
        "ar",
        Op.AR,
        "Attack-release envelope bank fired by any change of trigger, 0..1.",
        params=(
            Param("trigger", 0.0, "", smoothing_ms=0.0, doc="fires when it changes"),
            _time_param("attack_ms", 10.0, 600000.0, "time to rise from 0 to 1"),
            _time_param("release_ms", 300.0, 600000.0, "time to fall 60 dB"),
        ),
        state_size=_envelope_state,
        init=_init_ar,
    ),
    NodeSpec(
        "ramp",
        Op.RAMP,
        "Linear glide to value over time_s whenever value changes.",
        params=(
            Param("value", 0.0, "", smoothing_ms=0.0, doc="where the output goes"),
            Param("time_s", 1.0, "s", 0.0, 86400.0, smoothing_ms=0.0, doc="glide time"),
        ),
        state_size=_ramp_state,
        init=_init_ramp,
    ),
)
