"""libc functions that jitted code calls by name.

Numba's JIT links a call to an external C function by its symbol name, and
machine code loaded from Numba's cache refers to it by name too: a new
process must make the name resolvable before it compiles or loads such code.
``engine.rt.clock`` (``clock_gettime``) and ``engine.control.osc_fast_path``
(``recvfrom``) do so at import.

Control thread only (at import).
"""

from __future__ import annotations

import ctypes
import ctypes.util

import llvmlite.binding as llvm_binding

__all__ = ["link_libc_symbol"]


def link_libc_symbol(name: str) -> None:
    """Make libc's ``name`` resolvable by Numba's JIT linker.

    >>> link_libc_symbol("clock_gettime")
    """
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
    address = ctypes.cast(getattr(libc, name), ctypes.c_void_p).value
    if address is None:  # pragma: no cover - every POSIX libc has these
        raise ImportError(f"libc has no {name}")
    llvm_binding.add_symbol(name, address)
