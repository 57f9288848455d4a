"""Measured levels: each layer's and the master's peak and RMS, in dBFS.

The audio thread measures them in ``meter`` nodes (``engine.dsp.kernels_meter``):
one per layer copy (``meter:wind``, ``meter:thunder~2``), placed by the scene
compiler where the layer joins the bus (after its level, pan and ducking), and
one after the master limiter (``meter:master``). This module finds those
nodes' state in a program once and reads it without a lock (aligned float64
loads: a reading may mix two blocks, never a torn value).

    taps = MeterTaps(engine.current)
    taps.read()   # {"wind": (-18.2, -24.9), "thunder": (-120.0, -120.0)}

A layer built as several copies (a trigger's voices) reads as one: the largest
peak, and the copies' mean squares added (they sound at once). Silence, and
anything below it, reads ``SILENCE_DB`` instead of -inf (OSC floats and JSON
take it).

A scene change compiles a new program, whose meters start from nothing: read
alone, every layer would dip for a RMS window (300 ms) and rise again while
its sound went on. :class:`LayerMeters` reads the layers as they are heard
across a crossfade instead:

    meters = LayerMeters(engine)
    meters.read()   # as MeterTaps.read, for whichever program plays

- Each layer of the new program carries on from the reading of the layer of
  the same name in the program it replaces, as if its meter had been
  measuring all along: the carried reading decays with the meter's own
  ballistics (peak ``g**a``, mean square ``k**a`` after ``a`` frames), so a
  layer whose sound goes on reads steady, and one that went quieter falls
  at the meter's rate (the meters' ballistics are linear in their history:
  adding the decayed reading is exactly seeding the meter's state, without
  writing to a program the audio thread renders).
- While the crossfade runs, both programs are heard: the old one's readings
  weighed by the fade-out gain, the new one's by the fade-in gain (equal
  power, as ``engine.rt.core`` mixes them: ``cos``/``sin`` of a quarter
  turn; mean squares by the gains squared, and the peaks as the powers,
  ``hypot(cos * old, sin * new)``, the fade being equal power for
  uncorrelated sound). A layer only in the old scene
  fades out of the readings with its sound (-3 dB at the midpoint), one
  only in the new fades in; after the fade only the new program's layers
  are read.

Threads: any control thread.
"""

from __future__ import annotations

import math

from engine.dsp.kernels_meter import (
    M_FALL_PER_FRAME,
    M_FRAMES,
    M_KEEP_PER_FRAME,
    M_MEAN_SQUARE,
    M_PEAK,
    METER_PREFIX,
)
from engine.dsp.layout import I_STATE
from engine.graph.program import Program
from engine.rt.core import C_ACCEPTED, C_FADE_FRAMES, C_FADE_POS, C_FADING, C_REQUEST
from engine.rt.engine import Engine

__all__ = ["SILENCE_DB", "LayerMeters", "MeterTaps", "amplitude_db", "clear_meters"]

# (peak, mean square), linear, by what is measured.
Readings = dict[str, tuple[float, float]]

SILENCE_DB = -120.0


def amplitude_db(amplitude: float) -> float:
    """A linear amplitude in dB, floored at ``SILENCE_DB`` (also for 0, NaN).

    >>> amplitude_db(0.5), amplitude_db(0.0)
    (-6.020599913279624, -120.0)
    """
    if not amplitude > 0.0:
        return SILENCE_DB
    return max(20.0 * math.log10(amplitude), SILENCE_DB)


def _power_db(mean_square: float) -> float:
    if not mean_square > 0.0:
        return SILENCE_DB
    return max(10.0 * math.log10(mean_square), SILENCE_DB)


class MeterTaps:
    """Where a program's meters keep their state, by what they measure.

    Args:
        program: a compiled program (a scene's, or the master bus's).
    """

    def __init__(self, program: Program) -> None:
        self.program = program
        # What is measured (a layer, ``master``) -> state offsets of its meters.
        self.offsets: dict[str, list[int]] = {}
        for index, name in enumerate(program.node_names[: program.n_instr]):
            if program.node_types[index] != "meter":
                continue
            if not name.startswith(METER_PREFIX):
                continue
            copy = name[len(METER_PREFIX) :]
            # A trigger's extra voices are copies ``layer~2``, ``layer~3``...
            measured = copy.split("~", 1)[0]
            offset = int(program.instr[index, I_STATE])
            self.offsets.setdefault(measured, []).append(offset)

    def carried(self, seed: Readings) -> Readings:
        """:meth:`read_linear`, each reading as if the meter had started from
        ``seed``'s reading of the same name: that reading decayed by the
        meter's ballistics over the frames measured, the peak held against
        it and the mean square added to it."""
        readings = self.read_linear()
        state = self.program.state
        for measured, (seed_peak, seed_mean_square) in seed.items():
            offsets = self.offsets.get(measured)
            if offsets is None or not (seed_peak > 0.0 or seed_mean_square > 0.0):
                continue
            first = offsets[0]
            frames = float(state[first + M_FRAMES])
            fall = math.exp(frames * float(state[first + M_FALL_PER_FRAME]))
            keep = math.exp(frames * float(state[first + M_KEEP_PER_FRAME]))
            peak, mean_square = readings[measured]
            readings[measured] = (
                max(peak, seed_peak * fall),
                mean_square + seed_mean_square * keep,
            )
        return readings

    def read_linear(self) -> Readings:
        """(peak, mean square), linear, of each measured thing."""
        state = self.program.state
        readings = {}
        for measured, offsets in self.offsets.items():
            peak = 0.0
            mean_square = 0.0
            for offset in offsets:
                peak = max(peak, float(state[offset + M_PEAK]))
                mean_square += float(state[offset + M_MEAN_SQUARE])
            readings[measured] = (peak, mean_square)
        return readings

    def clear(self) -> None:
        """Set every meter to silence. Only while no audio thread renders the
        program (a closed stream): a block in progress would undo it."""
        for offsets in self.offsets.values():
            for offset in offsets:
                self.program.state[offset + M_PEAK] = 0.0
                self.program.state[offset + M_MEAN_SQUARE] = 0.0

    def read(self) -> dict[str, tuple[float, float]]:
        """(peak_dbfs, rms_dbfs) of each measured thing, ``SILENCE_DB`` floored."""
        return _db(self.read_linear())


def _db(readings: Readings) -> dict[str, tuple[float, float]]:
    return {
        measured: (amplitude_db(peak), _power_db(mean_square))
        for measured, (peak, mean_square) in readings.items()
    }


class LayerMeters:
    """Each layer's peak and RMS as heard, whichever program plays, carried
    over scene changes (see the module docstring).

    Args:
        engine: the engine whose ``current`` program is read (it may change
            between reads).

    One control thread at a time (``StatusReport`` reads it under its lock).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # The program read, and the readings it carries on from.
        self._current: tuple[MeterTaps, Readings] | None = None
        # While a crossfade may run: the program it fades out, and its seed.
        self._previous: tuple[MeterTaps, Readings] | None = None

    def _follow(self, program: Program) -> None:
        """Start reading ``program``, seeded from the program it replaces."""
        old = next((slot for slot in self.engine.slots if slot is not program), None)
        previous = None
        if old is not None:
            seed: Readings = {}
            if self._current is not None and self._current[0].program is old:
                seed = self._current[1]
            previous = (MeterTaps(old), seed)
        self._previous = previous
        start = previous[0].carried(previous[1]) if previous is not None else {}
        self._current = (MeterTaps(program), start)

    def _fade_done(self) -> float:
        """How far the crossfade to the current program has gone, 0..1, as
        the audio thread counts it (1: over, or no fade)."""
        ctl = self.engine.ctl
        if ctl[C_FADING]:
            return min(
                float(ctl[C_FADE_POS]) / max(float(ctl[C_FADE_FRAMES]), 1.0), 1.0
            )
        # Published, not started yet: only the old program is heard.
        return 0.0 if ctl[C_REQUEST] != ctl[C_ACCEPTED] else 1.0

    def read_linear(self) -> Readings:
        """(peak, mean square), linear, of each layer as heard now."""
        program = self.engine.current
        if program is None:
            return {}
        if self._current is None or self._current[0].program is not program:
            self._follow(program)
        assert self._current is not None
        taps, seed = self._current
        new = taps.carried(seed)
        done = self._fade_done()
        if done >= 1.0:
            self._previous = None  # let the old program go
            return new
        old = self._previous[0].carried(self._previous[1]) if self._previous else {}
        gain_in = math.sin(0.5 * math.pi * done)
        gain_out = math.cos(0.5 * math.pi * done)
        heard: Readings = {}
        for layer in [*new, *(name for name in old if name not in new)]:
            old_peak, old_mean_square = old.get(layer, (0.0, 0.0))
            new_peak, new_mean_square = new.get(layer, (0.0, 0.0))
            # The fade is equal power for uncorrelated sound: the peaks are
            # combined as the powers are (a layer that sounds on through a
            # reload reads steady; one in one program alone, at its gain).
            heard[layer] = (
                math.hypot(gain_out * old_peak, gain_in * new_peak),
                gain_out**2 * old_mean_square + gain_in**2 * new_mean_square,
            )
        return heard

    def read(self) -> dict[str, tuple[float, float]]:
        """(peak_dbfs, rms_dbfs) of each layer as heard, ``SILENCE_DB``
        floored."""
        return _db(self.read_linear())


def clear_meters(engine: Engine) -> None:
    """Silence the meters of the program playing and of the master bus, once
    the stream is closed: they would otherwise hold the last block's falling
    reading for as long as nothing renders (a daemon paused after its sleep
    timer)."""
    for program in (engine.current, engine.master):
        if program is not None:
            MeterTaps(program).clear()
