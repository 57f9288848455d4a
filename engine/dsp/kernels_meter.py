"""Level meters measured on the audio thread: peak and RMS of a signal.

A ``meter`` node passes its input through unchanged (bit for bit) and keeps two
numbers in its state that the control plane reads without a lock (aligned
float64 loads, DESIGN.md section 3): the peak and the mean square, both linear,
over all its channels. The scene compiler puts one after each layer's level
(``<layer>.meter``) and the engine one after the master limiter
(``master.meter``); ``engine.control.level_meters`` turns them into dBFS.

Ballistics (options, fixed while playing):

- **peak**: instant attack, then a fall of ``fall_db_per_s`` (20 dB/s, about
  what an IEC 60268-10 peak meter's 1.7 s return over 20 dB shows). The block's
  largest sample is taken as it is and the fall starts at the next block, so
  a burst shorter than a block is caught in full; the reading is at most one
  block's fall high (0.05 dB at 128 frames, 48 kHz). Sample peak, not true peak.
- **RMS**: an exponential mean square with time constant ``window_ms`` (300 ms,
  a VU meter's integration time), integrated per block: the mean square of the
  block is weighed in with ``1 - exp(-n_frames / tau)``. For a steady signal
  this is exact whatever the block size; the RMS of a full-scale sine reads
  -3.01 dBFS. After a signal stops it falls at ``10 / ln 10 / window_s``
  dB/s (14.5 dB/s at 300 ms).

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

# State layout. The first two are what the control plane reads.
M_PEAK = 0  # linear peak, with its fall applied up to the end of the last block
M_MEAN_SQUARE = 1  # exponential mean square (linear, amplitude squared)
_M_FALL_PER_FRAME = 2  # ln of the peak's fall per frame (negative)
_M_KEEP_PER_FRAME = 3  # -1 / tau in frames: ln of what the mean square keeps
_M_CACHED_N = 4  # n_frames the two factors below were computed for
_M_FALL_N = 5  # exp(n * fall per frame)
_M_KEEP_N = 6  # exp(n * keep per frame)
_M_SIZE = 7

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
    state[_M_FALL_PER_FRAME] = -fall_db_per_s / sample_rate * math.log(10.0) / 20.0
    state[_M_KEEP_PER_FRAME] = -1.0 / (window_ms * 1e-3 * sample_rate)


# Bits of a float64 with the sign cleared, and of the largest level a meter
# takes (as the mean square's ceiling); inf's and NaN's bits are above it.
_ABS_MASK = 0x7FFFFFFFFFFFFFFF
_CEILING_BITS = int(np.array(STATE_CEILING).view(np.int64))


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
    bit. State (``M_*``): the linear peak and mean square at the end of the
    last block, then the ballistics' per-frame logarithms and the factors for
    the last ``n_frames`` (two ``exp`` per block size, not per block).
    """
    voices = row[I_VOICES]
    in_slot, in_stride = row[I_IN], row[I_IN + 1]
    # The peak is found on the bits: for non-negative floats their order is
    # the integers' order, and an integer max vectorises where a float max
    # (which must keep NaN's semantics) is one long dependency chain; this
    # halves the meter's cost (measured: benchmarks/bench_meters.py).
    peak_bits = 0
    square_sum = 0.0
    for voice in range(voices):
        x = bufs[in_slot + voice * in_stride]
        out = bufs[row[I_OUT] + voice]
        for frame in range(n_frames):
            sample = x[frame]
            out[frame] = sample
            bits = _float_bits(sample) & _ABS_MASK
            # NaN and inf (and absurd levels) read as 0: never in the state.
            bits = bits if bits < _CEILING_BITS else 0
            peak_bits = max(peak_bits, bits)
            level = abs(sample)
            level = level if level < STATE_CEILING else 0.0
            square_sum += level * level
    block_peak = _bits_float(peak_bits)
    if state[_M_CACHED_N] != n_frames:
        state[_M_CACHED_N] = n_frames
        state[_M_FALL_N] = math.exp(n_frames * state[_M_FALL_PER_FRAME])
        state[_M_KEEP_N] = math.exp(n_frames * state[_M_KEEP_PER_FRAME])
    peak = max(state[M_PEAK] * state[_M_FALL_N], block_peak)
    block_mean_square = square_sum / (voices * n_frames)
    keep = state[_M_KEEP_N]
    mean_square = block_mean_square + (state[M_MEAN_SQUARE] - block_mean_square) * keep
    # Both decay towards 0 for ever in silence: flush them before subnormals.
    state[M_PEAK] = zap(peak)
    state[M_MEAN_SQUARE] = zap(mean_square)


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
