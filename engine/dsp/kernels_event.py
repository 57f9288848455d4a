"""Event generators: random impulses, grain clouds, gated pulses and heartbeats.

The sources that procedural textures are made of (rain, stream, fire crackle,
birds, insects, heartbeat, isochronic tones). All are banks: every voice has its
own parameters, random stream and events.

- ``dust``: a Poisson process of single-sample impulses at ``rate_hz`` per voice
  (SuperCollider's Dust/Dust2). Onsets come from time rescaling: each voice
  holds an exponential countdown (mean 1) that every sample lowers by
  ``rate_hz / sample_rate``; when it reaches 0 an impulse fires and a new
  exponential draw is added to what is left. Carrying the remainder keeps the
  long-run count exact (not rounded up to whole samples), and a rate change
  takes effect at the next sample, not after the next onset. Amplitudes are
  ``amplitude * 10**(-spread_db * r / 20)`` with ``r`` uniform in [0, 1): the
  loudness spread is even in dB, as in rain and crackle, where quiet events far
  outnumber loud ones. ``bipolar`` gives each impulse a random sign.
- ``grains``: the same Poisson onsets start short sine grains: a start frequency
  drawn log-uniformly between ``freq_lo_hz`` and ``freq_hi_hz``, a glide of
  ``glide_oct`` octaves over the grain (geometric, so the pitch moves evenly in
  octaves: rising for bubbles and droplets, falling for chirps), a duration of
  ``duration_ms * (1 +- duration_spread)``, an amplitude as for dust. Envelopes:
  ``percussive`` rises in 0.5 ms and decays exponentially to exactly 0 at the
  grain's end (-60 dB shape); ``hann`` is sin^2, smooth at both ends. With
  ``repeats`` n > 1 an onset starts a phrase: the same grain n times,
  ``repeat_gap_ms`` of silence apart (a bird repeating its note). A voice plays
  at most ``max_grains`` grains (phrases) at once; an onset beyond that steals
  the oldest, which fades out over 3 ms in a spare slot while the new grain
  starts on time, so a steal never clicks. If the spare slots are all still
  fading (more than ``max_grains`` steals within 3 ms) the onset is dropped.
- ``pulse``: a gate train at ``rate_hz``, 0..1: raised-cosine edges of
  ``edge_ms``, high for ``duty`` of the period measured between the half-height
  points. Multiply a tone by it (``ring_mod``) for isochronic tones. The phase
  accumulates in float64 cycles, so the rate is exact (a 10 Hz pulse drifts by
  less than a nanosecond an hour); the edge is clamped to ``duty`` and ``1 -
  duty`` of the period, so the largest step between samples is
  ``pi / (2 * edge_samples)``.
- ``heartbeat``: "lub-dub" at ``rate_bpm``: two low thumps per beat, each a sine
  whose pitch falls from ``frequency_hz * 2**sweep_oct`` towards
  ``frequency_hz`` (exponential approach, time constant a sixth of the decay)
  with a 4 ms rise and a percussive decay of ``decay_ms``. The second ("dub")
  comes ``spacing`` of a beat after the first, a quarter higher in pitch, a
  quarter shorter and ``dub_gain_db`` softer. The beat phase accumulates like
  ``pulse``'s, so the beat rate is exact.

Grains and heartbeat thumps are the same slot machinery (``_start_grain``,
``_render_slots``): a slot holds a sine's phase and increment, an affine pitch
law ``inc = inc * inc_mul + inc_add`` (geometric glide or exponential approach)
and its envelope. Between onsets the kernels render slot by slot over the whole
stretch of frames (tight loops); onsets are found by a cheap per-sample scan.
Per-grain parameters are read at the onset frame.

Block size: events are decided sample by sample from state that carries across
segments, and random numbers are drawn by counter (``engine.dsp.rng``) only at
events, so a voice's output does not depend on how the engine splits blocks.

Audio thread: yes (kernels); initialisers and registration run on the control
thread.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from numba import njit

from engine.dsp.jit import JIT, SAFE_FASTMATH, zap
from engine.dsp.kernels_osc import sine_lookup
from engine.dsp.layout import I_OUT, I_VOICES
from engine.dsp.nodes import NodeSpec, Param, register
from engine.dsp.opcodes import Op
from engine.dsp.rng import STREAM_STRIDE, seed_from_option, stream_key, uniform

# Without "reassoc": a grain's recurrences (phase, pitch, envelope, fade) must
# round the same however a segment splits its loop, and reassociation lets LLVM
# regroup an unrolled loop body (env * m * m -> env * m**2) differently from the
# remainder loop: the output then depended on the block size in its last bits.
_JIT_EXACT = {**JIT, "fastmath": SAFE_FASTMATH - {"reassoc"}}

# Percussive envelopes decay to this level (-60 dB) at the grain's end, and are
# shifted down by it so they end at exactly 0.
_PERC_FLOOR = 0.001
_PERC_SCALE = 1.0 / (1.0 - _PERC_FLOOR)
GRAIN_ATTACK_MS = 0.5
THUMP_ATTACK_MS = 4.0
STEAL_FADE_MS = 3.0
# Glides stop here so a grain never aliases.
MAX_GRAIN_FREQUENCY = 0.45  # of the sample rate
# At most this many onsets are taken in one sample (rates are capped well below).
_MAX_ONSETS_PER_FRAME = 4
# Heartbeat "dub" relative to "lub".
DUB_PITCH = 1.25
DUB_DECAY = 0.75
# Pitch of a thump approaches its target with this fraction of the decay time.
THUMP_SWEEP_FRACTION = 1.0 / 6.0

ENVELOPES = ("percussive", "hann")
_PERCUSSIVE = 0
_HANN = 1
POLARITIES = ("unipolar", "bipolar")

# Grain slot fields.
_PHASE = 0  # sine phase, cycles in [0, 1)
_INC = 1  # phase increment, cycles per sample
_INC_MUL = 2  # pitch law: inc = inc * inc_mul + inc_add every sample
_INC_ADD = 3
_ENV = 4  # percussive: decaying level; hann: unused
_ENV_MUL = 5  # percussive: decay per sample; hann: 1 / length
_AMP = 6
_AGE = 7  # frames into the current grain
_LEN = 8  # grain length in frames; 0 marks a free slot
_RISE = 9  # percussive attack: 1 / attack frames
_SHAPE = 10
_REPEATS = 11  # repeats still to come after this grain
_GAP = 12  # silent frames between repeats
_WAIT = 13  # silent frames left before the next repeat
_FADE = 14  # steal fade gain, 1 while the grain is live
_FADE_STEP = 15  # < 0 while fading out after a steal
_STAMP = 16  # onset number: the smallest live stamp is the oldest grain
_INC0 = 17  # increment at the grain's start, for repeats
_SLOT = 18


# --------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------


@njit(**_JIT_EXACT)
def _unit(key, counter):
    """Draw ``counter`` of stream ``key`` as a number in [0, 1)."""
    return 0.5 * (uniform(key, counter) + 1.0)


@njit(**_JIT_EXACT)
def _exponential(key, counter):
    """An exponential number with mean 1 (inverse transform; never infinite)."""
    return -math.log(1.0 - _unit(key, counter))


@njit(**_JIT_EXACT)
def _spread_gain(amplitude, spread_db, r):
    """``amplitude`` lowered by up to ``spread_db``, evenly in dB for r in [0, 1)."""
    return amplitude * math.exp(-spread_db * r * (math.log(10.0) / 20.0))


@njit(**_JIT_EXACT)
def _ramped(p0, p1, index, t):
    """A parameter's value a fraction ``t`` through the segment."""
    return p0[index] + (p1[index] - p0[index]) * t


@njit(**_JIT_EXACT)
def _start_grain(
    state,
    first,
    pool,
    max_live,
    stamp,
    inc,
    inc_mul,
    inc_add,
    length,
    amp,
    shape,
    rise,
    repeats,
    gap,
    sample_rate,
):
    """Start a grain in a free slot of the ``pool`` slots from ``first``.

    If ``max_live`` grains are live, the oldest starts its steal fade first.
    Returns False when no slot is free (the onset is dropped).
    """
    free = -1
    live = 0
    oldest = -1
    oldest_stamp = math.inf
    for s in range(pool):
        base = first + s * _SLOT
        if state[base + _LEN] == 0.0:
            if free < 0:
                free = base
        elif state[base + _FADE_STEP] == 0.0:
            live += 1
            if state[base + _STAMP] < oldest_stamp:
                oldest_stamp = state[base + _STAMP]
                oldest = base
    if live >= max_live and oldest >= 0:
        state[oldest + _FADE_STEP] = -1.0 / max(
            1.0, STEAL_FADE_MS * 0.001 * sample_rate
        )
    if free < 0:
        return False
    b = free
    state[b + _PHASE] = 0.0
    state[b + _INC] = inc
    state[b + _INC0] = inc
    state[b + _INC_MUL] = inc_mul
    state[b + _INC_ADD] = inc_add
    state[b + _ENV] = 1.0
    if shape == _HANN:
        state[b + _ENV_MUL] = 1.0 / length
    else:
        state[b + _ENV_MUL] = math.exp(math.log(_PERC_FLOOR) / length)
    state[b + _AMP] = amp
    state[b + _AGE] = 0.0
    state[b + _LEN] = length
    state[b + _RISE] = rise
    state[b + _SHAPE] = shape
    state[b + _REPEATS] = repeats
    state[b + _GAP] = gap
    state[b + _WAIT] = 0.0
    state[b + _FADE] = 1.0
    state[b + _FADE_STEP] = 0.0
    state[b + _STAMP] = stamp
    return True


@njit(**_JIT_EXACT)
def _render_slot(out, start, stop, state, b):
    """Add one slot's grain (or phrase) to ``out[start:stop]``."""
    frame = start
    while frame < stop:
        length = state[b + _LEN]
        if length == 0.0:
            return
        fade_step = state[b + _FADE_STEP]
        wait = state[b + _WAIT]
        if wait > 0.0:
            if fade_step < 0.0:  # stolen while silent between repeats
                state[b + _LEN] = 0.0
                return
            skip = min(wait, float(stop - frame))
            state[b + _WAIT] = wait - skip
            frame += int(skip)
            continue
        age = state[b + _AGE]
        fade = state[b + _FADE]
        n = int(min(length - age, float(stop - frame)))
        if fade_step < 0.0:
            n = min(n, math.ceil(fade / -fade_step))
        phase = state[b + _PHASE]
        inc = state[b + _INC]
        inc_mul = state[b + _INC_MUL]
        inc_add = state[b + _INC_ADD]
        env = state[b + _ENV]
        env_mul = state[b + _ENV_MUL]
        amp = state[b + _AMP]
        rise = state[b + _RISE]
        hann = state[b + _SHAPE] == _HANN
        for i in range(frame, frame + n):
            if hann:
                w = sine_lookup(0.5 * age * env_mul)
                level = w * w
            else:
                level = min(age * rise, 1.0) * (env - _PERC_FLOOR) * _PERC_SCALE
                env *= env_mul
            out[i] += amp * fade * level * sine_lookup(phase)
            phase += inc
            if phase >= 1.0:
                phase -= 1.0
            inc = inc * inc_mul + inc_add
            fade += fade_step
            age += 1.0
        frame += n
        if fade_step < 0.0 and fade <= 0.0:
            state[b + _LEN] = 0.0
            return
        if age >= length:
            if state[b + _REPEATS] >= 1.0 and fade_step == 0.0:
                state[b + _REPEATS] -= 1.0
                state[b + _WAIT] = state[b + _GAP]
                phase = 0.0
                inc = state[b + _INC0]
                env = 1.0
                age = 0.0
            else:
                state[b + _LEN] = 0.0
                return
        state[b + _PHASE] = phase
        state[b + _INC] = inc
        state[b + _ENV] = zap(env)
        state[b + _AGE] = age
        state[b + _FADE] = fade


@njit(**_JIT_EXACT)
def _render_slots(out, start, stop, state, first, pool):
    """Add every busy slot of a voice to ``out[start:stop]``."""
    if stop <= start:
        return
    for s in range(pool):
        base = first + s * _SLOT
        if state[base + _LEN] != 0.0:
            _render_slot(out, start, stop, state, base)


# --------------------------------------------------------------------------------
# dust
# --------------------------------------------------------------------------------

# Dust state: [seed], then per voice [countdown, counter].
_DUST_VOICE = 2


@njit(**_JIT_EXACT)
def dust(bufs, row, p0, p1, state, sample_rate, n_frames):
    """Random impulse bank. Params: rate_hz, amplitude, spread_db, polarity.

    State: ``[seed]``, then per voice ``[countdown, counter]``.
    """
    voices = row[I_VOICES]
    out_slot = row[I_OUT]
    key = stream_key(state[0])
    inv_sr = 1.0 / sample_rate
    inv_n = 1.0 / n_frames
    for voice in range(voices):
        out = bufs[out_slot + voice]
        base = 1 + voice * _DUST_VOICE
        countdown = state[base]
        counter = state[base + 1]
        rate = p0[voice] * inv_sr
        rate_step = (p1[voice] - p0[voice]) * inv_sr * inv_n
        bipolar = p1[3 * voices + voice] > 0.5
        for frame in range(n_frames):
            rate += rate_step
            countdown -= rate
            value = 0.0
            taken = 0
            while countdown <= 0.0 and taken < _MAX_ONSETS_PER_FRAME:
                t = (frame + 1.0) * inv_n
                pulse = _spread_gain(
                    _ramped(p0, p1, voices + voice, t),
                    _ramped(p0, p1, 2 * voices + voice, t),
                    _unit(key, counter),
                )
                if bipolar and uniform(key, counter + 1.0) < 0.0:
                    pulse = -pulse
                value += pulse
                countdown += _exponential(key, counter + 2.0)
                counter += 3.0
                taken += 1
            if countdown <= 0.0:  # more onsets than a sample holds: let them go
                countdown = _exponential(key, counter)
                counter += 1.0
            out[frame] = value
        if counter >= (voice + 1) * STREAM_STRIDE:
            counter -= STREAM_STRIDE
        state[base] = countdown
        state[base + 1] = counter


def _dust_state(voices: int, sample_rate: float, options: Mapping[str, Any]) -> int:
    return 1 + voices * _DUST_VOICE


def _onset_init(per_voice: int) -> Any:
    """Initialiser for Poisson voices: the first countdown is drawn as the
    kernels draw (counter 0 of each voice's stretch), the state after it zero."""

    def init(
        state: np.ndarray,
        params: np.ndarray,
        voices: int,
        sample_rate: float,
        options: Mapping[str, Any],
    ) -> None:
        from engine.dsp.rng import reference_uniform

        seed = seed_from_option(options["seed"])
        state[:] = 0.0
        state[0] = seed
        for voice in range(voices):
            base = 1 + voice * per_voice
            first = int(voice * STREAM_STRIDE)
            u = 0.5 * (reference_uniform(int(seed), first) + 1.0)
            state[base] = -math.log(1.0 - u)
            state[base + 1] = first + 1

    return init


# --------------------------------------------------------------------------------
# grains
# --------------------------------------------------------------------------------

# Grains state: [seed, max_grains], then per voice [countdown, counter, onsets,
# dropped] and 2 * max_grains slots.
_GRAIN_VOICE_HEADER = 4
_G_RATE, _G_LO, _G_HI, _G_GLIDE, _G_DUR, _G_DUR_SPREAD = 0, 1, 2, 3, 4, 5
_G_AMP, _G_SPREAD_DB, _G_ENVELOPE, _G_REPEATS, _G_GAP = 6, 7, 8, 9, 10


def _grains_voice_width(max_grains: int) -> int:
    return _GRAIN_VOICE_HEADER + 2 * max_grains * _SLOT


@njit(**_JIT_EXACT)
def _grain_onset(p0, p1, voices, voice, t, key, counter, sample_rate):
    """Draw one grain's start increment, pitch ratio, length and amplitude."""
    lo = _ramped(p0, p1, _G_LO * voices + voice, t)
    hi = _ramped(p0, p1, _G_HI * voices + voice, t)
    top = MAX_GRAIN_FREQUENCY * sample_rate
    freq = min(lo * math.exp(math.log(hi / lo) * _unit(key, counter)), top)
    spread = _ramped(p0, p1, _G_DUR_SPREAD * voices + voice, t)
    duration_ms = _ramped(p0, p1, _G_DUR * voices + voice, t)
    duration_ms *= 1.0 + spread * uniform(key, counter + 1.0)
    length = max(2.0, math.floor(duration_ms * 0.001 * sample_rate + 0.5))
    glide = min(_ramped(p0, p1, _G_GLIDE * voices + voice, t), math.log2(top / freq))
    amp = _spread_gain(
        _ramped(p0, p1, _G_AMP * voices + voice, t),
        _ramped(p0, p1, _G_SPREAD_DB * voices + voice, t),
        _unit(key, counter + 2.0),
    )
    return freq / sample_rate, math.exp(glide * math.log(2.0) / length), length, amp


@njit(**_JIT_EXACT)
def grains(bufs, row, p0, p1, state, sample_rate, n_frames):
    """Sine grain cloud bank. Params: rate_hz, freq_lo_hz, freq_hi_hz, glide_oct,
    duration_ms, duration_spread, amplitude, spread_db, envelope, repeats,
    repeat_gap_ms (all but rate_hz read at each onset).

    State: ``[seed, max_grains]``, then per voice ``[countdown, counter, onsets,
    dropped]`` and ``2 * max_grains`` slots (the spare half holds stolen grains
    while they fade).
    """
    voices = row[I_VOICES]
    out_slot = row[I_OUT]
    key = stream_key(state[0])
    max_live = state[1]
    pool = int(2.0 * max_live)
    width = _GRAIN_VOICE_HEADER + pool * _SLOT
    inv_sr = 1.0 / sample_rate
    inv_n = 1.0 / n_frames
    attack = GRAIN_ATTACK_MS * 0.001 * sample_rate
    for voice in range(voices):
        out = bufs[out_slot + voice]
        for frame in range(n_frames):
            out[frame] = 0.0
        base = 2 + voice * width
        first = base + _GRAIN_VOICE_HEADER
        countdown = state[base]
        counter = state[base + 1]
        rate = p0[voice] * inv_sr
        rate_step = (p1[voice] - p0[voice]) * inv_sr * inv_n
        start = np.int64(0)  # not a literal 0: see LITERALS in engine.dsp.jit
        for frame in range(n_frames):
            rate += rate_step
            countdown -= rate
            if countdown > 0.0:
                continue
            _render_slots(out, start, frame, state, first, pool)
            start = frame
            taken = 0
            t = (frame + 1.0) * inv_n
            while countdown <= 0.0:
                if taken == _MAX_ONSETS_PER_FRAME:
                    countdown = _exponential(key, counter)
                    counter += 1.0
                    break
                inc, inc_mul, length, amp = _grain_onset(
                    p0, p1, voices, voice, t, key, counter, sample_rate
                )
                shape = int(p1[_G_ENVELOPE * voices + voice] + 0.5)
                repeats = math.floor(p1[_G_REPEATS * voices + voice] + 0.5) - 1.0
                gap = math.floor(
                    _ramped(p0, p1, _G_GAP * voices + voice, t) * 0.001 * sample_rate
                    + 0.5
                )
                state[base + 2] += 1.0
                if not _start_grain(
                    state,
                    first,
                    pool,
                    max_live,
                    state[base + 2],
                    inc,
                    inc_mul,
                    0.0,
                    length,
                    amp,
                    shape,
                    1.0 / max(1.0, min(attack, length / 8)),
                    repeats,
                    gap,
                    sample_rate,
                ):
                    state[base + 3] += 1.0
                countdown += _exponential(key, counter + 3.0)
                counter += 4.0
                taken += 1
        _render_slots(out, start, n_frames, state, first, pool)
        if counter >= (voice + 1) * STREAM_STRIDE:
            counter -= STREAM_STRIDE
        state[base] = countdown
        state[base + 1] = counter


def _max_grains(options: Mapping[str, Any], check: bool = True) -> int:
    """The ``max_grains`` option; out of range it raises, or (``check`` False,
    when only sizing state before the initialiser checks it) is clamped."""
    value = options["max_grains"]
    whole = type(value) in (int, float) and math.isfinite(value) and value == int(value)
    if not whole or not 1 <= value <= 64:
        if not check:
            return 1
        raise ValueError(
            f"grains: max_grains={value!r} must be a whole number from 1 to 64. "
            "Set max_grains to the overlapping grains a voice may hold."
        )
    return int(value)


def _grains_state(voices: int, sample_rate: float, options: Mapping[str, Any]) -> int:
    return 2 + voices * _grains_voice_width(_max_grains(options, check=False))


def _grains_init(
    state: np.ndarray,
    params: np.ndarray,
    voices: int,
    sample_rate: float,
    options: Mapping[str, Any],
) -> None:
    from engine.dsp.rng import reference_uniform

    max_grains = _max_grains(options)
    seed = seed_from_option(options["seed"])
    state[:] = 0.0
    state[0] = seed
    state[1] = max_grains
    width = _grains_voice_width(max_grains)
    for voice in range(voices):
        base = 2 + voice * width
        first = int(voice * STREAM_STRIDE)
        u = 0.5 * (reference_uniform(int(seed), first) + 1.0)
        state[base] = -math.log(1.0 - u)
        state[base + 1] = first + 1


# --------------------------------------------------------------------------------
# pulse
# --------------------------------------------------------------------------------


@njit(**_JIT_EXACT)
def _gate(u, duty, edge):
    """The gate at phase ``u``: raised-cosine rise over [0, edge), high until
    ``duty``, raised-cosine fall over [duty, duty + edge)."""
    if u < edge:
        c = sine_lookup(0.25 + 0.5 * u / edge)  # cos(pi * u / edge)
        return 0.5 - 0.5 * c
    if u < duty:
        return 1.0
    if u < duty + edge:
        c = sine_lookup(0.25 + 0.5 * (u - duty) / edge)
        return 0.5 + 0.5 * c
    return 0.0


@njit(**_JIT_EXACT)
def pulse(bufs, row, p0, p1, state, sample_rate, n_frames):
    """Gated pulse bank, output 0..1. Params: rate_hz, duty, edge_ms (ramped).

    State: one phase per voice, in cycles [0, 1).
    """
    voices = row[I_VOICES]
    out_slot = row[I_OUT]
    inv_sr = 1.0 / sample_rate
    inv_n = 1.0 / n_frames
    for voice in range(voices):
        out = bufs[out_slot + voice]
        phase = state[voice]
        rate = p0[voice]
        rate_step = (p1[voice] - rate) * inv_n
        duty = p0[voices + voice]
        duty_step = (p1[voices + voice] - duty) * inv_n
        edge_s = p0[2 * voices + voice] * 0.001
        edge_step = (p1[2 * voices + voice] * 0.001 - edge_s) * inv_n
        for frame in range(n_frames):
            # The edge in cycles, at most what the duty leaves on either side
            # (half of it: the rise is centred on the half-height point).
            edge = min(edge_s * rate, duty, 1.0 - duty)
            # The half-height points sit at edge / 2 and duty + edge / 2, so
            # the high part lasts exactly ``duty`` of the period.
            out[frame] = _gate(phase, duty, edge)
            rate += rate_step
            duty += duty_step
            edge_s += edge_step
            phase += rate * inv_sr
            if phase >= 1.0:
                phase -= math.floor(phase)
        state[voice] = phase if (phase >= 0.0 and phase < 1.0) else 0.0


def _pulse_state(voices: int, sample_rate: float, options: Mapping[str, Any]) -> int:
    return voices


def _pulse_init(
    state: np.ndarray,
    params: np.ndarray,
    voices: int,
    sample_rate: float,
    options: Mapping[str, Any],
) -> None:
    state[:voices] = float(options["phase"]) % 1.0


# --------------------------------------------------------------------------------
# heartbeat
# --------------------------------------------------------------------------------

# Heartbeat state per voice: [beat phase, dub pending, thumps so far], then 4
# slots (lub, dub and their steal spares).
_HB_HEADER = 3
_HB_POOL = 4
_HB_VOICE = _HB_HEADER + _HB_POOL * _SLOT
_H_RATE, _H_FREQ, _H_SWEEP, _H_DECAY, _H_DUB_DB, _H_SPACING, _H_AMP = range(7)


@njit(**_JIT_EXACT)
def _thump(state, first, stamp, freq, sweep_oct, decay_ms, amp, sample_rate):
    """Start one thump: pitch from freq * 2**sweep_oct approaching freq."""
    length = max(2.0, math.floor(decay_ms * 0.001 * sample_rate + 0.5))
    target = min(freq, MAX_GRAIN_FREQUENCY * sample_rate) / sample_rate
    begin = min(target * math.exp(sweep_oct * math.log(2.0)), MAX_GRAIN_FREQUENCY)
    k = math.exp(-1.0 / max(1.0, THUMP_SWEEP_FRACTION * length))
    rise = 1.0 / max(1.0, min(THUMP_ATTACK_MS * 0.001 * sample_rate, length / 4))
    _start_grain(
        state,
        first,
        np.int64(_HB_POOL),
        2.0,
        stamp,
        begin,
        k,
        target * (1.0 - k),
        length,
        amp,
        np.int64(_PERCUSSIVE),
        rise,
        0.0,
        np.int64(0),  # gap: an integer, as grains passes it (one compile)
        sample_rate,
    )


@njit(**_JIT_EXACT)
def heartbeat(bufs, row, p0, p1, state, sample_rate, n_frames):
    """Heartbeat bank. Params: rate_bpm, frequency_hz, sweep_oct, decay_ms,
    dub_gain_db, spacing, amplitude (thump parameters read at each thump).

    State per voice: ``[beat phase, dub pending, thumps so far]`` and four thump
    slots.
    """
    voices = row[I_VOICES]
    out_slot = row[I_OUT]
    inv_n = 1.0 / n_frames
    beat_scale = 1.0 / (60.0 * sample_rate)
    for voice in range(voices):
        out = bufs[out_slot + voice]
        for frame in range(n_frames):
            out[frame] = 0.0
        base = voice * _HB_VOICE
        first = base + _HB_HEADER
        phase = state[base]
        dub_pending = state[base + 1]
        rate = p0[voice] * beat_scale
        rate_step = (p1[voice] - p0[voice]) * beat_scale * inv_n
        start = np.int64(0)  # not a literal 0: see LITERALS in engine.dsp.jit
        for frame in range(n_frames):
            lub = phase >= 1.0
            if lub:
                phase -= math.floor(phase)
                dub_pending = 1.0
            t = (frame + 1.0) * inv_n
            spacing = _ramped(p0, p1, _H_SPACING * voices + voice, t)
            dub = dub_pending > 0.0 and phase >= spacing
            if lub or dub:
                _render_slots(out, start, frame, state, first, np.int64(_HB_POOL))
                start = frame
                freq = _ramped(p0, p1, _H_FREQ * voices + voice, t)
                sweep = _ramped(p0, p1, _H_SWEEP * voices + voice, t)
                decay = _ramped(p0, p1, _H_DECAY * voices + voice, t)
                amp = _ramped(p0, p1, _H_AMP * voices + voice, t)
                if lub:
                    state[base + 2] += 1.0
                    _thump(
                        state,
                        first,
                        state[base + 2],
                        freq,
                        sweep,
                        decay,
                        amp,
                        sample_rate,
                    )
                if dub:
                    dub_pending = 0.0
                    state[base + 2] += 1.0
                    dub_db = _ramped(p0, p1, _H_DUB_DB * voices + voice, t)
                    _thump(
                        state,
                        first,
                        state[base + 2],
                        freq * DUB_PITCH,
                        sweep,
                        decay * DUB_DECAY,
                        amp * 10.0 ** (dub_db / 20.0),
                        sample_rate,
                    )
            rate += rate_step
            phase += rate
        _render_slots(out, start, n_frames, state, first, np.int64(_HB_POOL))
        state[base] = phase if phase < 4.0 else 0.0
        state[base + 1] = dub_pending


def _heartbeat_state(
    voices: int, sample_rate: float, options: Mapping[str, Any]
) -> int:
    return voices * _HB_VOICE


def _heartbeat_init(
    state: np.ndarray,
    params: np.ndarray,
    voices: int,
    sample_rate: float,
    options: Mapping[str, Any],
) -> None:
    """A beat starts at the first sample."""
    state[:] = 0.0
    state[0::_HB_VOICE] = 1.0


# --------------------------------------------------------------------------------
# Registration
# --------------------------------------------------------------------------------


def _amplitude(default: float, doc: str) -> Param:
    return Param("amplitude", default, "", 0.0, 4.0, smoothing_ms=20.0, doc=doc)


SPREAD_DB = Param(
    "spread_db",
    0.0,
    "dB",
    0.0,
    60.0,
    smoothing_ms=0.0,
    doc="each event is up to this much softer (random, even in dB)",
)

register(
    NodeSpec(
        "dust",
        Op.DUST,
        "Random clicks (single-sample impulses) at rate_hz on average, each "
        "voice its own Poisson stream: raindrops, crackle, triggers for filters.",
        params=(
            Param(
                "rate_hz",
                10.0,
                "Hz",
                0.0,
                20000.0,
                smoothing_ms=50.0,
                doc="average impulses per second",
            ),
            _amplitude(1.0, "height of the loudest impulses"),
            SPREAD_DB,
            Param(
                "polarity",
                0.0,
                choices=POLARITIES,
                smoothing_ms=0.0,
                doc="unipolar: 0..amplitude; bipolar: random sign",
            ),
        ),
        options={"seed": None},
        state_size=_dust_state,
        init=_onset_init(_DUST_VOICE),
    ),
    NodeSpec(
        "grains",
        Op.GRAINS,
        "A cloud of short sine grains at random times (rate_hz on average) and "
        "pitches, gliding up or down: droplets and bubbles (rising), chirps and "
        "crackle; repeats turns each grain into a phrase, like a bird's call.",
        params=(
            Param(
                "rate_hz",
                5.0,
                "Hz",
                0.0,
                2000.0,
                smoothing_ms=50.0,
                doc="average grains (or phrases) per second",
            ),
            Param(
                "freq_lo_hz",
                800.0,
                "Hz",
                20.0,
                20000.0,
                smoothing_ms=0.0,
                doc="lowest start pitch",
            ),
            Param(
                "freq_hi_hz",
                3000.0,
                "Hz",
                20.0,
                20000.0,
                smoothing_ms=0.0,
                doc="highest start pitch (drawn evenly in octaves)",
            ),
            Param(
                "glide_oct",
                0.0,
                "oct",
                -4.0,
                4.0,
                smoothing_ms=0.0,
                doc="pitch change over each grain: + rises (bubbles), - falls",
            ),
            Param(
                "duration_ms",
                30.0,
                "ms",
                1.0,
                2000.0,
                smoothing_ms=0.0,
                doc="grain length",
            ),
            Param(
                "duration_spread",
                0.3,
                "",
                0.0,
                0.9,
                smoothing_ms=0.0,
                doc="random length change, +- this fraction",
            ),
            _amplitude(0.5, "peak level of the loudest grains"),
            SPREAD_DB,
            Param(
                "envelope",
                0.0,
                choices=ENVELOPES,
                smoothing_ms=0.0,
                doc="percussive (struck, decaying) or hann (smooth swell)",
            ),
            Param(
                "repeats",
                1.0,
                "",
                1.0,
                16.0,
                smoothing_ms=0.0,
                doc="times each grain plays in its phrase",
            ),
            Param(
                "repeat_gap_ms",
                40.0,
                "ms",
                0.0,
                2000.0,
                smoothing_ms=0.0,
                doc="silence between the repeats of a phrase",
            ),
        ),
        options={"seed": None, "max_grains": 8},
        state_size=_grains_state,
        init=_grains_init,
    ),
    NodeSpec(
        "pulse",
        Op.PULSE,
        "Gate that switches 0..1 at exactly rate_hz with smooth (raised-cosine) "
        "edges; multiply a tone by it (ring_mod) for isochronic tones.",
        params=(
            Param(
                "rate_hz",
                10.0,
                "Hz",
                0.0,
                1000.0,
                smoothing_ms=20.0,
                doc="pulses per second",
            ),
            Param(
                "duty",
                0.5,
                "",
                0.0,
                1.0,
                smoothing_ms=20.0,
                doc="fraction of each period the gate is open (at half height)",
            ),
            Param(
                "edge_ms",
                5.0,
                "ms",
                0.0,
                1000.0,
                smoothing_ms=20.0,
                doc="rise and fall time (shortened if the period is too short)",
            ),
        ),
        options={"phase": 0.0},
        state_size=_pulse_state,
        init=_pulse_init,
    ),
    NodeSpec(
        "heartbeat",
        Op.HEARTBEAT,
        "Heartbeat: a low lub-dub (two falling thumps, the second softer) at rate_bpm.",
        params=(
            Param(
                "rate_bpm",
                60.0,
                "bpm",
                20.0,
                240.0,
                smoothing_ms=500.0,
                doc="beats per minute",
            ),
            Param(
                "frequency_hz",
                50.0,
                "Hz",
                20.0,
                400.0,
                smoothing_ms=0.0,
                doc="pitch the thumps fall to",
            ),
            Param(
                "sweep_oct",
                1.0,
                "oct",
                0.0,
                4.0,
                smoothing_ms=0.0,
                doc="how far above frequency_hz each thump starts",
            ),
            Param(
                "decay_ms",
                150.0,
                "ms",
                20.0,
                1000.0,
                smoothing_ms=0.0,
                doc="thump length (to -60 dB)",
            ),
            Param(
                "dub_gain_db",
                -4.0,
                "dB",
                -40.0,
                6.0,
                smoothing_ms=0.0,
                doc="level of the second thump against the first",
            ),
            Param(
                "spacing",
                0.32,
                "",
                0.1,
                0.7,
                smoothing_ms=200.0,
                doc="second thump's delay, as a fraction of the beat",
            ),
            _amplitude(0.8, "peak level of the first thump"),
        ),
        state_size=_heartbeat_state,
        init=_heartbeat_init,
    ),
)
