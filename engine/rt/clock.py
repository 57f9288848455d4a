"""GIL-free clocks for jitted code, including the audio callback.

``rt_now_ns()`` reads ``clock_gettime(CLOCK_MONOTONIC)`` through a direct C call
emitted by a Numba intrinsic: no ctypes wrapper, no GIL, no allocation (the
``timespec`` lives on the stack). On Linux the call goes through the vDSO and
costs a few tens of nanoseconds; ``tests/rt/test_audio_io.py`` checks it stays
under 100 ns. It is the same clock as Python's ``time.monotonic_ns()``, so
timestamps taken in the callback and on the control side can be compared.

``rt_thread_cpu_ns()`` reads the calling thread's CPU-time clock the same
way, so the callback can tell its own cost from time it lost the CPU.

POSIX only (Linux, macOS); that is where the engine runs.

Audio thread: yes (``rt_now_ns`` from jitted code). ``rt_now_ns`` may also be
called from Python (through its dispatcher) on any thread.
"""

from __future__ import annotations

import sys

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from engine.rt.libc_symbols import link_libc_symbol

__all__ = [
    "CLOCK_MONOTONIC",
    "CLOCK_THREAD_CPUTIME_ID",
    "rt_now_ns",
    "rt_thread_cpu_ns",
]

CLOCK_MONOTONIC: int = 6 if sys.platform == "darwin" else 1
"""The ``clockid_t`` of the monotonic clock on this platform."""
CLOCK_THREAD_CPUTIME_ID: int = 16 if sys.platform == "darwin" else 3
"""The ``clockid_t`` of the calling thread's CPU-time clock on this platform."""


# Before any function using it is compiled or loaded from the cache.
link_libc_symbol("clock_gettime")


def _clock_reader(clock_id: int, name: str):  # type: ignore[no-untyped-def]
    """An intrinsic reading ``clock_gettime(clock_id)`` as int64 nanoseconds
    (jitted code only; the ``timespec`` lives on the stack)."""

    def reader(typingctx):  # type: ignore[no-untyped-def]
        sig = types.int64()

        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            i32 = ir.IntType(32)
            i64 = ir.IntType(64)
            timespec_type = ir.LiteralStructType([i64, i64])  # tv_sec, tv_nsec
            function_type = ir.FunctionType(i32, [i32, timespec_type.as_pointer()])
            function = cgutils.get_or_insert_function(
                builder.module, function_type, "clock_gettime"
            )
            timespec = cgutils.alloca_once(builder, timespec_type)
            builder.call(function, [ir.Constant(i32, clock_id), timespec])
            seconds = builder.load(cgutils.gep_inbounds(builder, timespec, 0, 0))
            nanoseconds = builder.load(cgutils.gep_inbounds(builder, timespec, 0, 1))
            return builder.add(
                builder.mul(seconds, ir.Constant(i64, 1_000_000_000)), nanoseconds
            )

        return sig, codegen

    reader.__name__ = reader.__qualname__ = name
    return intrinsic(reader)


_monotonic_ns = _clock_reader(CLOCK_MONOTONIC, "_monotonic_ns")
_thread_cpu_ns = _clock_reader(CLOCK_THREAD_CPUTIME_ID, "_thread_cpu_ns")


@njit(nogil=True, cache=True)
def rt_now_ns() -> int:
    """Monotonic time in integer nanoseconds (same clock as ``time.monotonic_ns``).

    Audio thread: yes. Never allocates, locks or raises.
    """
    return _monotonic_ns()


@njit(nogil=True, cache=True)
def rt_thread_cpu_ns() -> int:
    """CPU time the calling thread has run, in integer nanoseconds.

    Time the thread waits for a CPU is not counted, nor, on a virtual machine
    whose kernel accounts steal time (Linux ``PARAVIRT_TIME_ACCOUNTING``),
    time the host took the virtual CPU away: the difference across a callback
    is what the engine itself cost, where ``rt_now_ns`` also counts every
    moment the thread was not running. A system call (no vDSO path), well
    under a microsecond.

    Audio thread: yes. Never allocates, locks or raises.
    """
    return _thread_cpu_ns()
