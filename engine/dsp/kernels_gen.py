"""Generative pitch: a pad's slowly moving chords and a melodic line, in a scale.

Both nodes take their notes from one scale table (option ``scale``): a mode as
semitones above ``root_hz``, repeated in every octave, equal-tempered. Both draw
their choices from the counter-based generator in ``engine.dsp.rng`` (option
``seed``; the compiler derives it from the program seed and the node's name), so
a seed gives the same music at any block size and two seeds give different
music; the choices form a random walk, so the music never loops.

``chords`` outputs one FREQUENCY control signal (Hz) per voice: wire it into an
oscillator bank's ``fm`` input with ``frequency_hz: 0`` (``fm`` adds Hz) and the
bank plays the chords. Every ``change_s`` seconds a new chord is chosen:

- Its root is another degree of the scale, weighted towards strong motion (a
  fourth or fifth away weighs 4, a third 3, a step 2, the tonic 1 more), never
  the same root twice in a row. Degrees whose chord would hold a tritone are
  skipped (the diminished chord of a major scale, its dominant seventh): an
  ambient pad wants colour, not tension that never resolves.
- The chord stacks scale degrees on that root: option ``chord`` is ``triad``
  (1-3-5), ``seventh`` (1-3-5-7), ``sus2``, ``sus4``, ``add9`` or ``quartal``
  (1-4-7), in the scale's own intervals (so a dorian pad has minor sevenths).
- Voice leading: voice ``i`` sounds chord member ``(r + i) mod n_tones``, in the
  octave nearest to where it is (pulled a quarter of the way towards its home
  pitch), with the rotation ``r`` that costs least: the voices' total motion
  plus a quarter of their total distance from home. Without the home terms the
  voicing wandered up to 17 semitones from ``register_hz`` over 300 chords; with
  them its centre stays within about 6 (quartal chords: 9). Every member sounds
  as long as there are as many voices as members. Voices ``i`` and ``i + n``
  share a member and start an octave apart; nearest-octave moves keep them at
  least an octave apart, so no two voices ever merge into a unison.
- Each voice glides to its new pitch in ``glide_s`` along a smoothstep in
  semitones (no corner at either end; steepest 1.5x the average slope).

``melody`` outputs audio: one melodic line per voice. A line plays notes at
``density_hz`` notes per second on average, on a grid of half, single and double
units (a rest lengthens a gap by two units, the unit scaled so rests do not
change the note rate). Each next note is mostly a step (one or two scale degrees,
sometimes a repeat), with chance ``leap_chance`` a leap of three to five degrees,
more often towards the middle of the ``low_hz``..``high_hz`` register than away
from it, and reflected back into the register at its edges. The voice is a sine
with a little second and third harmonic (``harmonics``), a linear attack, a hold
of ``legato`` times the time to the next note and an exponential release (60 dB
in ``release_ms``). Up to four notes per line overlap (their release tails); a
fifth takes over the quietest.

Why audio and not a pitch and an envelope for a scene to voice: overlapping
release tails need one oscillator per sounding note, and a single pitch signal
would bend the tail of the last note to the next one (a glide or a click). A
scene still shapes the line with filters, reverb and pan downstream.

State: see the ``_C_*`` and ``_M_*`` offsets below.

Audio thread: yes (kernels and the ``register_jitable`` helpers); initialisers
and the scale table run on the control thread.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from numba import njit
from numba.extending import register_jitable

from engine.dsp.jit import JIT, SAFE_FASTMATH
from engine.dsp.kernels_mod import ENVELOPE_FLOOR, _attack_increment, _time_coefficient
from engine.dsp.kernels_osc import sine_lookup
from engine.dsp.layout import I_OUT, I_VOICES
from engine.dsp.nodes import NodeSpec, Param, register
from engine.dsp.opcodes import Op
from engine.dsp.rng import STREAM_STRIDE, seed_from_option, stream_key, uniform
from engine.naming import did_you_mean

# Semitones above the root of each mode, within one octave.
SCALES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "natural_minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
    "pentatonic_major": (0, 2, 4, 7, 9),
    "pentatonic_minor": (0, 3, 5, 7, 10),
}
MAX_SCALE = 7
# Chord members as scale-degree steps above the chord's root.
CHORDS: dict[str, tuple[int, ...]] = {
    "triad": (0, 2, 4),
    "seventh": (0, 2, 4, 6),
    "sus2": (0, 1, 4),
    "sus4": (0, 3, 4),
    "add9": (0, 2, 4, 8),
    "quartal": (0, 3, 6),
}
MAX_CHORD = 4

_HELPER_JIT = {"fastmath": SAFE_FASTMATH, "error_model": "numpy"}
# The glide loop computes exp per sample: with fast-math flags LLVM vectorises it
# and the vector body and the scalar remainder round differently (1 ulp), so the
# output would depend on where blocks split. Strict IEEE keeps it exact; the
# kernel is cheap either way (settled voices are constant fills).
_STRICT_JIT = {**JIT, "fastmath": False}
_STRICT_HELPER_JIT = {"fastmath": False, "error_model": "numpy"}
_SEMITONE_LN = math.log(2.0) / 12.0
# Share of the way from a voice's pitch to its home that the octave choice uses.
_HOME_PULL = 0.25


def scale_semitones(name: str, where: str) -> tuple[int, ...]:
    """The semitones of scale ``name``, or ``ValueError`` naming ``where``.

    >>> scale_semitones("pentatonic_minor", "x")
    (0, 3, 5, 7, 10)
    """
    if not isinstance(name, str) or name not in SCALES:
        raise ValueError(
            f"{where}: unknown scale {name!r}{did_you_mean(str(name), SCALES)}; "
            f"scales: {', '.join(SCALES)}"
        )
    return SCALES[name]


@register_jitable(**_HELPER_JIT)
def degree_semitones(scale, m, degree):
    """Semitones above the root of scale degree ``degree`` (any integer: degree
    ``m`` is the root an octave up, -1 the top note an octave down)."""
    octave = degree // m
    return scale[degree - octave * m] + 12.0 * octave


# chords ------------------------------------------------------------------------

# State: header, then per voice [glide from, glide to, glide position, glide
# length] (semitones above root_hz; frames).
_C_SEED = 0
_C_COUNTER = 1
_C_M = 2  # notes in the scale
_C_TONES = 3  # members in a chord
_C_ROOT = 4  # the current chord's root degree (0 .. m-1)
_C_LEFT = 5  # frames until the next chord
_C_SCALE = 6
_C_STEPS = _C_SCALE + MAX_SCALE
_C_ALLOWED = _C_STEPS + MAX_CHORD  # 1.0 for degrees that may root a chord
_C_VOICES = _C_ALLOWED + MAX_SCALE
_C_VOICE = 4


@register_jitable(**_STRICT_HELPER_JIT)
def _glide_value(start, end, pos, length):
    """Semitones along a smoothstep glide ``pos`` frames into ``length``."""
    if pos >= length:
        return end
    u = pos / length
    return start + (end - start) * (u * u * (3.0 - 2.0 * u))


@register_jitable(**_HELPER_JIT)
def _home(voice, voices, tones, register_semis):
    """Home pitch of a voice: the voicing spaced an octave per ``tones`` voices,
    centred on the register."""
    return register_semis + (voice - 0.5 * (voices - 1)) * (12.0 / tones)


@register_jitable(**_HELPER_JIT)
def _member_near(scale, m, root_degree, step, ref):
    """The pitch of chord member ``step`` (above ``root_degree``) nearest ``ref``;
    a tie goes up."""
    pc = degree_semitones(scale, m, root_degree + step)
    return pc + 12.0 * math.floor((ref - pc) / 12.0 + 0.5)


@register_jitable(**_HELPER_JIT)
def _voice_chord(state, voices, root_degree, register_semis, glide_frames):
    """Move every voice to its member of the chord on ``root_degree``: the
    rotation of members over voices that moves them least, each in the octave
    nearest its pitch pulled towards home. Glides start from where each voice
    is, mid-glide or not."""
    m = int(state[_C_M])
    tones = int(state[_C_TONES])
    scale = state[_C_SCALE : _C_SCALE + MAX_SCALE]
    steps = state[_C_STEPS : _C_STEPS + MAX_CHORD]
    best_rotation = 0
    best_cost = math.inf
    for rotation in range(tones):
        cost = 0.0
        for voice in range(voices):
            base = _C_VOICES + voice * _C_VOICE
            now = _glide_value(
                state[base], state[base + 1], state[base + 2], state[base + 3]
            )
            home = _home(voice, voices, tones, register_semis)
            ref = now + _HOME_PULL * (home - now)
            step = int(steps[(rotation + voice) % tones])
            pitch = _member_near(scale, m, root_degree, step, ref)
            cost += abs(pitch - now) + _HOME_PULL * abs(pitch - home)
        if cost < best_cost:
            best_cost = cost
            best_rotation = rotation
    for voice in range(voices):
        base = _C_VOICES + voice * _C_VOICE
        now = _glide_value(
            state[base], state[base + 1], state[base + 2], state[base + 3]
        )
        ref = now + _HOME_PULL * (_home(voice, voices, tones, register_semis) - now)
        step = int(steps[(best_rotation + voice) % tones])
        state[base] = now
        state[base + 1] = _member_near(scale, m, root_degree, step, ref)
        state[base + 2] = 0.0
        state[base + 3] = glide_frames


@register_jitable(**_HELPER_JIT)
def _next_root(state, key):
    """Draw the next chord's root degree (see the module docstring)."""
    m = int(state[_C_M])
    current = int(state[_C_ROOT])
    total = 0.0
    for k in range(m):
        if state[_C_ALLOWED + k] > 0.0 and k != current:
            d = (k - current) % m
            total += 1.0 + min(d, m - d) + (1.0 if k == 0 else 0.0)
    if total <= 0.0:
        return current
    pick = 0.5 * (uniform(key, state[_C_COUNTER]) + 1.0) * total
    state[_C_COUNTER] += 1.0
    chosen = current
    for k in range(m):
        if state[_C_ALLOWED + k] > 0.0 and k != current:
            d = (k - current) % m
            chosen = k
            pick -= 1.0 + min(d, m - d) + (1.0 if k == 0 else 0.0)
            if pick < 0.0:
                break
    return chosen


@njit(**_STRICT_JIT)
def chords(bufs, row, p0, p1, state, sample_rate, n_frames):
    """Chord progression bank: one frequency (Hz) per voice.

    Params (chord-wide, one value): root_hz (ramped), change_s, glide_s,
    register_hz (read as they stand at the end of the segment, when a chord
    changes). State: header ``_C_*``, then per voice ``[from, to, position,
    length]`` of its glide in semitones above the root.
    """
    voices = row[I_VOICES]
    out_slot = row[I_OUT]
    key = stream_key(state[_C_SEED])
    root = p0[0]
    root_step = (p1[0] - root) / n_frames
    change_frames = max(1.0, math.floor(p1[voices] * sample_rate + 0.5))
    glide_frames = math.floor(p1[2 * voices] * sample_rate + 0.5)
    register_semis = 12.0 * math.log2(p1[3 * voices] / p1[0])
    left = state[_C_LEFT]
    frame = 0
    while frame < n_frames:
        if left <= 0.0:
            root_degree = _next_root(state, key)
            state[_C_ROOT] = root_degree
            _voice_chord(state, voices, root_degree, register_semis, glide_frames)
            left = change_frames
        run = min(n_frames - frame, int(left))
        for voice in range(voices):
            out = bufs[out_slot + voice]
            base = _C_VOICES + voice * _C_VOICE
            start = state[base]
            end = state[base + 1]
            pos = state[base + 2]
            length = state[base + 3]
            if pos >= length and root_step == 0.0:
                # Settled (the usual case): a constant, no exp per sample.
                held = root * math.exp(end * _SEMITONE_LN)
                for f in range(frame, frame + run):
                    out[f] = held
                continue
            for f in range(frame, frame + run):
                if pos < length:
                    pos += 1.0
                semis = _glide_value(start, end, pos, length)
                out[f] = (root + root_step * (f + 1)) * math.exp(semis * _SEMITONE_LN)
            state[base + 2] = pos
        left -= run
        frame += run
    state[_C_LEFT] = left


def _chords_state(voices: int, sample_rate: float, options: Mapping[str, Any]) -> int:
    return _C_VOICES + voices * _C_VOICE


def _allowed_roots(scale: tuple[int, ...], steps: tuple[int, ...]) -> list[bool]:
    """Degrees whose chord holds no tritone."""
    m = len(scale)
    allowed = []
    for root in range(m):
        pcs = [int(degree_semitones(scale, m, root + s)) % 12 for s in steps]
        allowed.append(all((a - b) % 12 != 6 for a in pcs for b in pcs))
    return allowed


def _chord_wide(params: np.ndarray, voices: int, names: tuple[str, ...]) -> None:
    for j, name in enumerate(names):
        values = params[j * voices : (j + 1) * voices]
        if np.any(values != values[0]):
            raise ValueError(
                f"{name} is chord-wide: give one value (set the number of notes "
                "in a chord with voices)"
            )


def _init_chords(
    state: np.ndarray,
    params: np.ndarray,
    voices: int,
    sample_rate: float,
    options: Mapping[str, Any],
) -> None:
    scale = scale_semitones(options["scale"], "scale")
    chord = options["chord"]
    if chord not in CHORDS:
        raise ValueError(
            f"chord: unknown chord {chord!r}{did_you_mean(str(chord), CHORDS)}; "
            f"chords: {', '.join(CHORDS)}"
        )
    _chord_wide(params, voices, tuple(p.name for p in _CHORD_PARAMS))
    steps = CHORDS[chord]
    allowed = _allowed_roots(scale, steps)
    root_hz, change_s, _glide_s, register_hz = params[::voices][:4]
    state[:] = 0.0
    state[_C_SEED] = seed_from_option(options["seed"])
    state[_C_COUNTER] = 0.0
    state[_C_M] = len(scale)
    state[_C_TONES] = len(steps)
    state[_C_SCALE : _C_SCALE + len(scale)] = scale
    state[_C_STEPS : _C_STEPS + len(steps)] = steps
    state[_C_ALLOWED : _C_ALLOWED + len(scale)] = allowed
    # The first chord is on the tonic (or the first degree that may root one).
    state[_C_ROOT] = allowed.index(True)
    state[_C_LEFT] = max(1.0, math.floor(change_s * sample_rate + 0.5))
    register_semis = 12.0 * math.log2(register_hz / root_hz)
    for voice in range(voices):
        base = _C_VOICES + voice * _C_VOICE
        home = _home(voice, voices, len(steps), register_semis)
        state[base : base + 2] = home
    # Voicing from the home pitches, with no glide: the first chord sounds at
    # once.
    _voice_chord(state, voices, int(state[_C_ROOT]), register_semis, 0.0)


_CHORD_PARAMS = (
    Param(
        "root_hz",
        110.0,
        "Hz",
        20.0,
        2000.0,
        smoothing_ms=50.0,
        doc="the key: frequency of the scale's first degree",
    ),
    Param(
        "change_s",
        8.0,
        "s",
        0.05,
        3600.0,
        smoothing_ms=0.0,
        doc="seconds per chord",
    ),
    Param(
        "glide_s",
        1.5,
        "s",
        0.0,
        600.0,
        smoothing_ms=0.0,
        doc="portamento time from one chord to the next",
    ),
    Param(
        "register_hz",
        220.0,
        "Hz",
        20.0,
        8000.0,
        smoothing_ms=0.0,
        doc="pitch the voicing is centred on",
    ),
)


# melody ------------------------------------------------------------------------

# Rhythm grid in units; a rest adds REST_UNITS to the gap after a note.
# An array, not a tuple: a tuple indexed at run time compiles an IndexError.
_NOTE_UNITS = np.array([0.5, 1.0, 1.0, 2.0])
MEAN_NOTE_UNITS = sum(_NOTE_UNITS) / len(_NOTE_UNITS)
REST_UNITS = 2.0
NOTES_PER_LINE = 4
# Draws per note: rest, length, step kind, direction, velocity.
_DRAWS_PER_NOTE = 5
# Envelope stages (idle is release at level 0).
_RELEASE = 0.0
_ATTACK = 1.0
_HOLD = 2.0

_M_SEED = 0
_M_M = 1
_M_SCALE = 2
_M_VOICES = _M_SCALE + MAX_SCALE
# Per note slot: phase (cycles), increment (cycles/sample), level, stage, frames
# left to hold, gain.
_M_NOTE = 6
# Per line: counter, frames to the next note, degree, then the note slots.
_M_VOICE = 3 + NOTES_PER_LINE * _M_NOTE


@register_jitable(**_HELPER_JIT)
def _degree_at_or_above(scale, m, semis):
    """Lowest degree whose pitch is at least ``semis`` (within a micro-cent)."""
    k = math.floor(semis / 12.0) * m
    while degree_semitones(scale, m, k) < semis - 1e-6:
        k += 1
    return k


@register_jitable(**_HELPER_JIT)
def _degree_at_or_below(scale, m, semis):
    """Highest degree whose pitch is at most ``semis``."""
    k = (math.floor(semis / 12.0) + 1) * m
    while degree_semitones(scale, m, k) > semis + 1e-6:
        k -= 1
    return k


@register_jitable(**_HELPER_JIT)
def _next_degree(degree, lowest, highest, leap_chance, u_kind, u_dir):
    """The next note's degree: a step, a repeat or a leap, leaning towards the
    middle of the register and reflected back into it."""
    if u_kind < leap_chance:
        size = 3 + min(int(u_kind / leap_chance * 3.0), 2)
    else:
        v = (u_kind - leap_chance) / (1.0 - leap_chance)
        size = 0 if v < 0.1 else (1 if v < 0.8 else 2)
    span = highest - lowest
    where = 0.5 if span <= 0 else (degree - lowest) / span
    up_chance = min(max(0.5 - 0.8 * (where - 0.5), 0.1), 0.9)
    degree += size if u_dir < up_chance else -size
    if degree > highest:
        degree = 2 * highest - degree
    if degree < lowest:
        degree = 2 * lowest - degree
    return min(max(degree, lowest), max(highest, lowest))


@njit(**JIT)
def melody(bufs, row, p0, p1, state, sample_rate, n_frames):
    """Generative melodic lines, one per voice (audio).

    Params per line: root_hz, density_hz, low_hz, high_hz, legato, leap_chance,
    rest_chance, attack_ms, release_ms, harmonics (read as they stand at the end
    of the segment, at note starts), amplitude (ramped). State: header ``_M_*``,
    then per line ``[counter, frames to next note, degree]`` and four note slots
    ``[phase, increment, level, stage, hold, gain]``.
    """
    voices = row[I_VOICES]
    out_slot = row[I_OUT]
    key = stream_key(state[_M_SEED])
    m = int(state[_M_M])
    scale = state[_M_SCALE : _M_SCALE + MAX_SCALE]
    inv_sr = 1.0 / sample_rate
    inv_n = 1.0 / n_frames
    for voice in range(voices):
        root = p1[voice]
        density = p1[voices + voice]
        lowest = _degree_at_or_above(
            scale, m, 12.0 * math.log2(p1[2 * voices + voice] / root)
        )
        highest = _degree_at_or_below(
            scale, m, 12.0 * math.log2(p1[3 * voices + voice] / root)
        )
        legato = p1[4 * voices + voice]
        leap_chance = p1[5 * voices + voice]
        rest_chance = p1[6 * voices + voice]
        rise = _attack_increment(p1[7 * voices + voice], sample_rate)
        fall = _time_coefficient(p1[8 * voices + voice], sample_rate)
        h2 = 0.5 * p1[9 * voices + voice]
        h3 = 0.5 * h2
        amp = p0[10 * voices + voice]
        amp_step = (p1[10 * voices + voice] - amp) * inv_n
        unit_frames = sample_rate / (
            density * (MEAN_NOTE_UNITS + REST_UNITS * rest_chance)
        )
        base = _M_VOICES + voice * _M_VOICE
        slots = state[base + 3 : base + _M_VOICE]
        out = bufs[out_slot + voice]
        for f in range(n_frames):
            out[f] = 0.0
        frame = 0
        while frame < n_frames:
            if state[base + 1] <= 0.0:
                counter = state[base]
                u_rest = 0.5 * (uniform(key, counter) + 1.0)
                u_len = 0.5 * (uniform(key, counter + 1.0) + 1.0)
                u_kind = 0.5 * (uniform(key, counter + 2.0) + 1.0)
                u_dir = 0.5 * (uniform(key, counter + 3.0) + 1.0)
                u_vel = 0.5 * (uniform(key, counter + 4.0) + 1.0)
                state[base] = counter + _DRAWS_PER_NOTE
                units = _NOTE_UNITS[min(int(u_len * 4.0), 3)]
                note_frames = max(1.0, math.floor(units * unit_frames + 0.5))
                gap = 0.0
                if u_rest < rest_chance:
                    gap = math.floor(REST_UNITS * unit_frames + 0.5)
                state[base + 1] = note_frames + gap
                degree = _next_degree(
                    int(state[base + 2]), lowest, highest, leap_chance, u_kind, u_dir
                )
                state[base + 2] = degree
                freq = root * math.exp(
                    degree_semitones(scale, m, degree) * _SEMITONE_LN
                )
                # The quietest slot takes the note (an idle one is at 0).
                slot = 0
                for k in range(1, NOTES_PER_LINE):
                    if slots[k * _M_NOTE + 2] < slots[slot * _M_NOTE + 2]:
                        slot = k
                s = slot * _M_NOTE
                if slots[s + 2] == 0.0:
                    slots[s] = 0.0  # from silence, start the sine at 0
                slots[s + 1] = freq * inv_sr
                slots[s + 3] = _ATTACK
                slots[s + 4] = max(1.0, math.floor(legato * note_frames + 0.5))
                slots[s + 5] = 0.7 + 0.3 * u_vel
            run = min(n_frames - frame, int(state[base + 1]))
            for k in range(NOTES_PER_LINE):
                s = k * _M_NOTE
                level = slots[s + 2]
                stage = slots[s + 3]
                if level == 0.0 and stage == _RELEASE:
                    continue
                phase = slots[s]
                inc = slots[s + 1]
                hold = slots[s + 4]
                gain = slots[s + 5]
                for f in range(frame, frame + run):
                    if stage == _ATTACK:
                        level += rise
                        if level >= 1.0:
                            level = 1.0
                            stage = _HOLD
                    hold -= 1.0
                    if hold <= 0.0:
                        stage = _RELEASE
                    if stage == _RELEASE:
                        level *= fall
                        if level < ENVELOPE_FLOOR:
                            level = 0.0
                    # Harmonics from the fundamental's sine and cosine:
                    # sin 2x = 2 sin x cos x, sin 3x = 3 sin x - 4 sin^3 x (two
                    # table reads instead of three, and less code to compile).
                    sin1 = sine_lookup(phase)
                    cos_phase = phase + 0.25
                    if cos_phase >= 1.0:
                        cos_phase -= 1.0
                    cos1 = sine_lookup(cos_phase)
                    wave = (
                        sin1
                        + h2 * (2.0 * sin1 * cos1)
                        + h3 * sin1 * (3.0 - 4.0 * sin1 * sin1)
                    )
                    out[f] += (gain * level) * wave
                    phase += inc
                    if phase >= 1.0:
                        phase -= 1.0
                slots[s] = phase
                slots[s + 2] = level
                slots[s + 3] = stage
                slots[s + 4] = max(hold, 0.0)
            state[base + 1] -= run
            frame += run
        norm = 1.0 / (1.0 + h2 + h3)
        for f in range(n_frames):
            amp += amp_step
            out[f] *= amp * norm


def _melody_state(voices: int, sample_rate: float, options: Mapping[str, Any]) -> int:
    return _M_VOICES + voices * _M_VOICE


def _init_melody(
    state: np.ndarray,
    params: np.ndarray,
    voices: int,
    sample_rate: float,
    options: Mapping[str, Any],
) -> None:
    scale = scale_semitones(options["scale"], "scale")
    m = len(scale)
    state[:] = 0.0
    state[_M_SEED] = seed_from_option(options["seed"])
    state[_M_M] = m
    state[_M_SCALE : _M_SCALE + m] = scale
    table = np.asarray(scale, dtype=np.float64)
    for voice in range(voices):
        root = float(params[voice])
        low_hz = float(params[2 * voices + voice])
        high_hz = float(params[3 * voices + voice])
        if high_hz < low_hz:
            raise ValueError(
                f"high_hz ({high_hz:g}) is below low_hz ({low_hz:g}); swap them"
            )
        lowest = _degree_at_or_above(table, m, 12.0 * math.log2(low_hz / root))
        highest = _degree_at_or_below(table, m, 12.0 * math.log2(high_hz / root))
        base = _M_VOICES + voice * _M_VOICE
        state[base] = voice * STREAM_STRIDE
        state[base + 1] = 0.0  # the first note starts at frame 0
        # Lines start in the middle of their register.
        state[base + 2] = (lowest + max(highest, lowest)) // 2


register(
    NodeSpec(
        "chords",
        Op.CHORDS,
        "Slowly evolving chords in a scale: one frequency (Hz) per voice, to "
        "feed an oscillator bank's fm input (frequency_hz 0). voices = notes per "
        "chord.",
        params=_CHORD_PARAMS,
        options={"scale": "major", "chord": "triad", "seed": None},
        state_size=_chords_state,
        init=_init_chords,
        voices_from_input=False,
    ),
    NodeSpec(
        "melody",
        Op.MELODY,
        "A never-repeating melodic line in a scale: soft sine notes, mostly "
        "steps, some leaps and rests, density_hz notes per second.",
        params=(
            Param(
                "root_hz",
                220.0,
                "Hz",
                20.0,
                2000.0,
                smoothing_ms=0.0,
                doc="the key: frequency of the scale's first degree",
            ),
            Param(
                "density_hz",
                1.5,
                "Hz",
                0.05,
                20.0,
                smoothing_ms=0.0,
                doc="notes per second, on average",
            ),
            Param(
                "low_hz",
                220.0,
                "Hz",
                20.0,
                5000.0,
                smoothing_ms=0.0,
                doc="lowest note of the register",
            ),
            Param(
                "high_hz",
                880.0,
                "Hz",
                20.0,
                5000.0,
                smoothing_ms=0.0,
                doc="highest note of the register",
            ),
            Param(
                "legato",
                0.9,
                "",
                0.05,
                4.0,
                smoothing_ms=0.0,
                doc="note length as a share of the time to the next note",
            ),
            Param(
                "leap_chance",
                0.15,
                "",
                0.0,
                1.0,
                smoothing_ms=0.0,
                doc="share of notes that leap 3-5 degrees instead of stepping",
            ),
            Param(
                "rest_chance",
                0.2,
                "",
                0.0,
                1.0,
                smoothing_ms=0.0,
                doc="share of notes followed by a rest",
            ),
            Param(
                "attack_ms",
                40.0,
                "ms",
                0.0,
                10000.0,
                smoothing_ms=0.0,
                doc="note fade-in time",
            ),
            Param(
                "release_ms",
                900.0,
                "ms",
                0.0,
                30000.0,
                smoothing_ms=0.0,
                doc="note fade-out time (to -60 dB)",
            ),
            Param(
                "harmonics",
                0.3,
                "",
                0.0,
                1.0,
                smoothing_ms=0.0,
                doc="brightness: level of the 2nd and 3rd harmonics",
            ),
            Param(
                "amplitude",
                0.25,
                "",
                0.0,
                1.0,
                smoothing_ms=20.0,
                doc="peak level of one note",
            ),
        ),
        options={"scale": "major", "seed": None},
        state_size=_melody_state,
        init=_init_melody,
    ),
)
