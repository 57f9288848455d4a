"""Flush-to-zero / denormals-are-zero control for the audio thread.

Subnormal floats make IIR filters, reverbs and decaying envelopes crawl
(DESIGN.md §5). On x86 the MXCSR register has two bits that make the SSE/AVX
units treat them as zero: FTZ (bit 15, results) and DAZ (bit 6, inputs). The
register is per thread, so the audio callback sets it itself, once per call:

    previous = rt_enable_flush_denormals()   # first thing in the @cfunc
    ...render...
    rt_restore_fpu_state(previous)           # optional: leave the host's state

Setting it is two instructions (stmxcsr/ldmxcsr) and is harmless to repeat.
LLVM does not model the FP environment, so it may move arithmetic on values
it already holds in registers across the call (and fold constants at compile
time); work on data loaded from memory after the call, which is all of a
block's rendering, runs under the new flags (tested in tests/rt).
On other architectures both functions are no-ops returning 0 (AArch64's FPCR.FZ
would be the analogue; add it here if the engine ever ships there).

This does not replace flushing tiny feedback states at block end
(``zap_gremlins``): offline rendering on a control thread must produce the same
bits, and it does not run with these flags unless it sets them too.

Audio thread: yes (both functions, from jitted code; also callable from Python,
where they change the calling thread's flags).
"""

from __future__ import annotations

import platform

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = [
    "HAS_MXCSR",
    "MXCSR_DAZ",
    "MXCSR_FTZ",
    "rt_enable_flush_denormals",
    "rt_read_fpu_state",
    "rt_restore_fpu_state",
]

MXCSR_FTZ: int = 0x8000
"""MXCSR flush-to-zero bit: subnormal results become zero."""
MXCSR_DAZ: int = 0x0040
"""MXCSR denormals-are-zero bit: subnormal inputs are read as zero."""

HAS_MXCSR: bool = platform.machine().lower() in {"x86_64", "amd64", "i386", "i686"}
"""True where the MXCSR intrinsics are emitted (x86); elsewhere the calls are no-ops."""

_JIT = {"nogil": True, "cache": True}


def _mxcsr_functions(builder):  # type: ignore[no-untyped-def]
    i8_pointer = ir.IntType(8).as_pointer()
    function_type = ir.FunctionType(ir.VoidType(), [i8_pointer])
    store = cgutils.get_or_insert_function(
        builder.module, function_type, "llvm.x86.sse.stmxcsr"
    )
    load = cgutils.get_or_insert_function(
        builder.module, function_type, "llvm.x86.sse.ldmxcsr"
    )
    return store, load, i8_pointer


@intrinsic
def _read_mxcsr(typingctx):  # type: ignore[no-untyped-def]
    sig = types.uint32()

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        i32 = ir.IntType(32)
        if not HAS_MXCSR:
            return ir.Constant(i32, 0)
        store, _, i8_pointer = _mxcsr_functions(builder)
        slot = cgutils.alloca_once(builder, i32)
        builder.call(store, [builder.bitcast(slot, i8_pointer)])
        return builder.load(slot)

    return sig, codegen


@intrinsic
def _write_mxcsr(typingctx, value):  # type: ignore[no-untyped-def]
    if not isinstance(value, types.Integer):
        return None
    sig = types.void(value)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        if HAS_MXCSR:
            i32 = ir.IntType(32)
            _, load, i8_pointer = _mxcsr_functions(builder)
            slot = cgutils.alloca_once(builder, i32)
            builder.store(builder.trunc(args[0], i32), slot)
            builder.call(load, [builder.bitcast(slot, i8_pointer)])
        return context.get_dummy_value()

    return sig, codegen


@njit(**_JIT)
def rt_read_fpu_state() -> int:
    """Return the calling thread's MXCSR value (0 on non-x86).

    Audio thread: yes.
    """
    return _read_mxcsr()


@njit(**_JIT)
def rt_enable_flush_denormals() -> int:
    """Set FTZ and DAZ for the calling thread; return the previous MXCSR value.

    Audio thread: yes. A no-op returning 0 on non-x86.
    """
    previous = _read_mxcsr()
    _write_mxcsr(previous | (MXCSR_FTZ | MXCSR_DAZ))
    return previous


@njit(**_JIT)
def rt_restore_fpu_state(previous: int) -> None:
    """Restore an MXCSR value returned by :func:`rt_enable_flush_denormals`.

    Audio thread: yes. A no-op on non-x86.
    """
    if previous != 0:
        _write_mxcsr(previous)
