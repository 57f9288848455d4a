"""Raw addresses to typed array views, for code running inside the audio callback.

The audio callback is a Numba ``@cfunc`` that PortAudio calls with one opaque
``void* userdata``. The engine makes ``userdata`` the address of an int64
*pointer table*: each slot holds the address (or a length, or an index) of an
array the control plane allocated and keeps alive. Inside the callback:

    table = as_int64_array(userdata_address, TABLE_SIZE)   # or voidptr_as_int64_array
    out = as_float32_array(table[SLOT_CAPTURE], table[SLOT_CAPTURE_LEN])

The views are non-owning: building one allocates nothing, takes no lock and
touches no Python object, so every function here is safe on the audio thread.
The control plane must keep the underlying arrays alive (and never resize them)
for as long as any callback may read the table.

On the control side, get an address with :func:`address_of` (a C-contiguous
numpy array) and write it into the table.

Audio thread: yes (the ``as_*``/``address_as_voidptr``/``voidptr_as_*`` helpers);
``address_of`` is control thread only.
"""

from __future__ import annotations

import numpy as np
from numba import carray, njit, types
from numba.extending import intrinsic

__all__ = [
    "address_as_voidptr",
    "address_of",
    "as_float32_array",
    "as_float64_array",
    "as_int64_array",
    "voidptr_as_int64_array",
]

_JIT = {"nogil": True, "cache": True}


@intrinsic
def address_as_voidptr(typingctx, address):  # type: ignore[no-untyped-def]
    """Reinterpret an integer address as a ``void*`` (LLVM ``inttoptr``).

    Audio thread: yes. Callable only from jitted code (``@njit``/``@cfunc``).
    """
    if not isinstance(address, types.Integer):
        return None
    sig = types.voidptr(address)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        (value,) = args
        return builder.inttoptr(value, context.get_value_type(types.voidptr))

    return sig, codegen


@njit(**_JIT)
def as_float32_array(address: int, n: int) -> np.ndarray:
    """View ``n`` float32 values starting at integer ``address`` as a 1-D array.

    Audio thread: yes (no allocation). Jitted code only.
    """
    return carray(address_as_voidptr(address), (n,), np.float32)


@njit(**_JIT)
def as_float64_array(address: int, n: int) -> np.ndarray:
    """View ``n`` float64 values starting at integer ``address`` as a 1-D array.

    Audio thread: yes (no allocation). Jitted code only.
    """
    return carray(address_as_voidptr(address), (n,), np.float64)


@njit(**_JIT)
def as_int64_array(address: int, n: int) -> np.ndarray:
    """View ``n`` int64 values starting at integer ``address`` as a 1-D array.

    Audio thread: yes (no allocation). Jitted code only.
    """
    return carray(address_as_voidptr(address), (n,), np.int64)


@njit(**_JIT)
def voidptr_as_int64_array(pointer, n: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    """View ``n`` int64 values at a ``void*`` (e.g. the callback's ``userdata``).

    Audio thread: yes (no allocation). Jitted code only.
    """
    return carray(pointer, (n,), np.int64)


def address_of(array: np.ndarray) -> int:
    """Return the data address of a C-contiguous, aligned numpy array.

    Raises ``ValueError`` for a non-contiguous or unaligned array, since the
    ``as_*`` views assume a dense, naturally aligned layout.

    Audio thread: no.
    """
    if not array.flags.c_contiguous:
        raise ValueError("address_of: array is not C-contiguous. Pass a dense copy.")
    if not array.flags.aligned:
        raise ValueError("address_of: array is not aligned. Allocate it with numpy.")
    return int(array.ctypes.data)
