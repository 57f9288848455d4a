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

Threads: any control thread.
"""

from __future__ import annotations

import math

from engine.dsp.kernels_meter import M_MEAN_SQUARE, M_PEAK, METER_PREFIX
from engine.dsp.layout import I_STATE
from engine.graph.program import Program
from engine.rt.engine import Engine

__all__ = ["SILENCE_DB", "MeterTaps", "amplitude_db", "clear_meters"]

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

    def read_linear(self) -> dict[str, tuple[float, float]]:
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
        return {
            measured: (amplitude_db(peak), _power_db(mean_square))
            for measured, (peak, mean_square) in self.read_linear().items()
        }


def clear_meters(engine: Engine) -> None:
    """Silence the meters of the program playing and of the master bus, once
    the stream is closed: they would otherwise hold the last block's falling
    reading for as long as nothing renders (a daemon paused after its sleep
    timer)."""
    for program in (engine.current, engine.master):
        if program is not None:
            MeterTaps(program).clear()
