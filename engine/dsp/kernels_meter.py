"""Level meters measured on the audio thread: peak and RMS of a signal.

A ``meter`` node passes its input through unchanged (bit for bit) and keeps
numbers in its state that the control plane reads without a lock (aligned
float64 loads, DESIGN.md section 3): the peak and the mean square, both linear,
over all its channels, and the frames it has measured (which tells the control
plane how far a reading carried over a scene change has decayed). The scene compiler puts one after each layer's level
(``<layer>.meter``) and the engine one after the master limiter
(``master.meter``); ``engine.control.level_meters`` turns them into dBFS.

Ballistics (options, fixed while playing), those of a meter that looks at
every sample, whatever the block size:

- **peak**: instant attack, then a fall of ``fall_db_per_s`` (20 dB/s, about
  what an IEC 60268-10 peak meter's 1.7 s return over 20 dB shows), per
  sample: ``peak = max(peak * g, |x|)`` with ``g`` the fall of one frame.
  Sample peak, not true peak.
- **RMS**: an exponential mean square with time constant ``window_ms``
  (300 ms, a VU meter's integration time), per sample:
  ``ms = k * ms + (1 - k) * x**2`` with ``k = exp(-1 / tau)``. The RMS of a
  full-scale sine reads -3.01 dBFS. After a signal stops it falls at
  ``10 / ln 10 / window_s`` dB/s (14.5 dB/s at 300 ms).

Neither recursion is run sample by sample (each step would wait on the one
before): the block runs them on ``SUB_FRAMES`` lanes at once, lane ``i``
taking frames ``i, i + SUB_FRAMES, ...`` counted back from the block's end
(the lane's fall and keep over ``SUB_FRAMES`` frames between its samples),
and the lanes are then brought to the block's end with a table of factors,
``g**(SUB_FRAMES - 1 - i)`` and ``(1 - k) * k**(SUB_FRAMES - 1 - i)``. That
is the closed form ``peak = max(g**n * peak, max(g**(n-1-i) |x_i|))``,
``ms = k**n * ms + (1 - k) * sum(k**(n-1-i) x_i**2)``; neighbouring samples
go to different lanes, so the loop does not wait on itself and vectorises. The readings after a frame are
the same (to rounding, 1e-12) whatever the blocks were: a reading never
runs a block's fall behind.

With several channels, the peak is the largest of any channel and the mean
square is the mean over channels (a centred stereo pair reads as one channel).
Non-finite input samples read as 0 (the output guard counts and mutes them),
and both numbers are flushed to 0 below 1e-15 (-300 dB), so neither NaN nor a
subnormal can stay in the state.

Audio thread: yes (``meter``); no (the control-plane helpers that size and
initialise state).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from engine.dsp.jit import JIT, STATE_CEILING, zap
from engine.dsp.layout import I_IN, I_OUT, I_VOICES
from engine.dsp.nodes import NodeSpec, register
from engine.dsp.opcodes import Op

DEFAULT_FALL_DB_PER_S = 20.0
DEFAULT_WINDOW_MS = 300.0

# Lanes of the ballistics run at once: the lanes and their tables are
# 4 * SUB_FRAMES floats of state per meter. Measured in a stand-alone loop
# at 128 frames: 16, 32 and 64 lanes cost the same, 0.6-0.8 ns a sample
# (the meter before them, which fell at block ends, 0.5); a reduction per
# 32-frame stretch instead of lanes cost 2-3 ns.
SUB_FRAMES = 32

# State layout. The first three are what the control plane reads.
M_PEAK = 0  # linear peak, as a per-sample meter has it after the last frame
M_MEAN_SQUARE = 1  # exponential mean square (linear, amplitude squared)
M_FRAMES = 2  # frames measured since the program was compiled
M_FALL_PER_FRAME = 3  # ln of the peak's fall per frame, ln g (negative)
M_KEEP_PER_FRAME = 4  # -1 / tau in frames: ln k, ln of what the mean square keeps
_M_CACHED_N = 5  # n_frames the two factors below were computed for
_M_FALL_N = 6  # g**n
_M_KEEP_N = 7  # k**n
_M_FALL_SUB = 8  # g**SUB_FRAMES
_M_KEEP_SUB = 9  # k**SUB_FRAMES
# Lane i's factor to the block's end:
_M_FALL_TABLE = 10  # g**(SUB_FRAMES - 1 - i)
_M_KEEP_TABLE = _M_FALL_TABLE + SUB_FRAMES  # (1 - k) * k**(SUB_FRAMES - 1 - i)
# The lanes (scratch: cleared at each block's start): peak, sum of squares.
_M_PEAK_LANES = _M_KEEP_TABLE + SUB_FRAMES
_M_SQUARE_LANES = _M_PEAK_LANES + SUB_FRAMES
_M_SIZE = _M_SQUARE_LANES + SUB_FRAMES

# Meter nodes the engine places are named ``meter:<what they measure>`` (a
# layer copy, ``master``): the colon keeps them apart from scene node names.
METER_PREFIX = "meter:"


def meter_node(measured: str) -> str:
    """The name of the meter node that measures ``measured``."""
    return f"{METER_PREFIX}{measured}"


def _meter_state(voices: int, sample_rate: float, options: Mapping[str, Any]) -> int:
    return _M_SIZE


def _meter_init(
    state: np.ndarray,
    params: np.ndarray,
    voices: int,
    sample_rate: float,
    options: Mapping[str, Any],
) -> None:
    fall_db_per_s = float(options["fall_db_per_s"])
    window_ms = float(options["window_ms"])
    if not (math.isfinite(fall_db_per_s) and 0.0 < fall_db_per_s <= 1000.0):
        raise ValueError(
            f"meter: fall_db_per_s={fall_db_per_s!r} must be in (0, 1000]. "
            "Use 10-30 dB/s."
        )
    if not (math.isfinite(window_ms) and 1.0 <= window_ms <= 10000.0):
        raise ValueError(
            f"meter: window_ms={window_ms!r} must be in [1, 10000]. Use 50-3000 ms."
        )
    state[:] = 0.0
    fall_per_frame = -fall_db_per_s / sample_rate * math.log(10.0) / 20.0
    keep_per_frame = -1.0 / (window_ms * 1e-3 * sample_rate)
    state[M_FALL_PER_FRAME] = fall_per_frame
    state[M_KEEP_PER_FRAME] = keep_per_frame
    state[_M_FALL_SUB] = math.exp(SUB_FRAMES * fall_per_frame)
    state[_M_KEEP_SUB] = math.exp(SUB_FRAMES * keep_per_frame)
    to_end = np.arange(SUB_FRAMES - 1, -1, -1, dtype=np.float64)
    fall_table = np.exp(to_end * fall_per_frame)
    # -expm1 keeps 1 - k exact where k is within 1e-5 of 1 (a 3 s window).
    keep_table = -math.expm1(keep_per_frame) * np.exp(to_end * keep_per_frame)
    state[_M_FALL_TABLE : _M_FALL_TABLE + SUB_FRAMES] = fall_table
    state[_M_KEEP_TABLE : _M_KEEP_TABLE + SUB_FRAMES] = keep_table


@intrinsic
def _float_bits(typingctx, x):  # type: ignore[no-untyped-def]
    """The IEEE 754 bits of a float64 as an int64 (jitted code only)."""
    if x != types.float64:
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(types.float64), codegen


@intrinsic
def _bits_float(typingctx, bits):  # type: ignore[no-untyped-def]
    """The float64 whose IEEE 754 bits are ``bits`` (jitted code only)."""
    if bits != types.int64:
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@njit(**JIT)
def meter(bufs, row, p0, p1, state, sample_rate, n_frames):
    """Pass the input through and measure its peak and mean square.

    Input ``in`` (any number of channels), output the same channels, bit for
    bit. State (``M_*``): the linear peak and mean square after the last
    frame, the frames measured, the ballistics' per-frame logarithms, the
    factors for the last ``n_frames`` (two ``exp`` per block size, not per
    block) and for ``SUB_FRAMES``, the lanes' tables, and the lanes.
    """
    voices = row[I_VOICES]
    in_slot, in_stride = row[I_IN], row[I_IN + 1]
    out_slot = row[I_OUT]
    n_full = n_frames // SUB_FRAMES
    # The lanes end on the block's end: the frames before the first full
    # stretch go to the last lanes.
    first = n_frames - n_full * SUB_FRAMES
    lane0 = SUB_FRAMES - first
    for lane in range(SUB_FRAMES):
        state[_M_PEAK_LANES + lane] = 0.0
        state[_M_SQUARE_LANES + lane] = 0.0
    for voice in range(voices):
        x = bufs[in_slot + voice * in_stride]
        out = bufs[out_slot + voice]
        for frame in range(first):
            sample = x[frame]
            out[frame] = sample
            # NaN and inf (and absurd levels) read as 0: never in the state.
            level = abs(sample)
            level = level if level < STATE_CEILING else 0.0
            held = state[_M_PEAK_LANES + lane0 + frame]
            state[_M_PEAK_LANES + lane0 + frame] = max(held, level)
            state[_M_SQUARE_LANES + lane0 + frame] += level * level
    fall_sub = state[_M_FALL_SUB]
    keep_sub = state[_M_KEEP_SUB]
    for sub in range(n_full):
        start = first + sub * SUB_FRAMES
        for voice in range(voices):
            x = bufs[in_slot + voice * in_stride]
            out = bufs[out_slot + voice]
            # The lanes fall once a stretch; the other channels only add in.
            fall = fall_sub if voice == 0 else 1.0
            keep = keep_sub if voice == 0 else 1.0
            for lane in range(SUB_FRAMES):
                sample = x[start + lane]
                out[start + lane] = sample
                level = abs(sample)
                level = level if level < STATE_CEILING else 0.0
                held = state[_M_PEAK_LANES + lane] * fall
                state[_M_PEAK_LANES + lane] = max(held, level)
                square = state[_M_SQUARE_LANES + lane] * keep + level * level
                state[_M_SQUARE_LANES + lane] = square
    # The peak is found on the bits: for non-negative floats their order is
    # the integers' order, and an integer max vectorises where a float max
    # (which must keep NaN's semantics) is one long dependency chain.
    peak_bits = 0
    square_sum = 0.0
    for lane in range(SUB_FRAMES):
        lane_peak = state[_M_PEAK_LANES + lane] * state[_M_FALL_TABLE + lane]
        peak_bits = max(peak_bits, _float_bits(lane_peak))
        square_sum += state[_M_SQUARE_LANES + lane] * state[_M_KEEP_TABLE + lane]
    if state[_M_CACHED_N] != n_frames:
        state[_M_CACHED_N] = n_frames
        state[_M_FALL_N] = math.exp(n_frames * state[M_FALL_PER_FRAME])
        state[_M_KEEP_N] = math.exp(n_frames * state[M_KEEP_PER_FRAME])
    peak = max(state[M_PEAK] * state[_M_FALL_N], _bits_float(peak_bits))
    mean_square = state[M_MEAN_SQUARE] * state[_M_KEEP_N] + square_sum / voices
    # Both decay towards 0 for ever in silence: flush them before subnormals.
    state[M_PEAK] = zap(peak)
    state[M_MEAN_SQUARE] = zap(mean_square)
    state[M_FRAMES] += n_frames


register(
    NodeSpec(
        "meter",
        Op.METER,
        "Level meter: passes its input through and measures peak (instant "
        "attack, falls fall_db_per_s) and RMS (exponential, window_ms).",
        inputs=("in",),
        options={
            "fall_db_per_s": DEFAULT_FALL_DB_PER_S,
            "window_ms": DEFAULT_WINDOW_MS,
        },
        state_size=_meter_state,
        init=_meter_init,
    )
)
