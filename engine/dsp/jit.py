"""Numba compilation flags and the small helpers every kernel shares.

Audio thread: yes (the helpers are inlined into kernels).
"""

from __future__ import annotations

import math

from numba import njit

# Never "nnan"/"ninf": with them LLVM assumes no NaN or inf exists and deletes the
# guards that keep a bad value out of filter state (DESIGN.md section 5).
SAFE_FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
# No jitted function is called through a C function pointer (the kernel table
# takes each kernel's native entry, engine.dsp.dispatch), so Numba need not
# build a C wrapper around each one: 5 % of a cold compile (benchmarks/RESULTS.md).
JIT = {
    "nogil": True,
    "cache": True,
    "error_model": "numpy",
    "fastmath": SAFE_FASTMATH,
    "no_cfunc_wrapper": True,
}
JIT_INLINE = {**JIT, "inline": "always"}
# LITERALS: Numba compiles a jitted helper once per argument type, and a constant
# argument (``_POOL``, ``0`` before a loop reassigns it) has a type of its own,
# Literal[int](4), so a call with a constant compiles a second copy of the
# helper; while a variable's type is still being inferred, a literal start
# compiles one that is then thrown away. Helpers called with integer constants
# get them as ``np.int64(...)``; measured: 2-3 s of a cold compile.

TWO_PI = 2.0 * math.pi
# Feedback states smaller than this are flushed to zero (scsynth's zapgremlins):
# far below 24-bit resolution, far above the subnormal range.
DENORMAL_FLOOR = 1e-15
STATE_CEILING = 1e15


@njit(**JIT)
def zap(x: float) -> float:
    """Flush denormals, infinities and NaN to 0 (SuperCollider's zapgremlins)."""
    ax = abs(x)
    return x if (ax > DENORMAL_FLOOR and ax < STATE_CEILING) else 0.0


@njit(**JIT)
def db_to_gain(gain_db: float) -> float:
    """Decibels to linear gain: ``db_to_gain(-6.0206) ~= 0.5``."""
    return 10.0 ** (gain_db / 20.0)


@njit(**JIT)
def gain_to_db(gain: float) -> float:
    """Linear gain to decibels, floored at -400 dB for zero."""
    return 20.0 * math.log10(max(abs(gain), 1e-20))
