"""One glibc malloc arena for the whole daemon process.

glibc gives each thread that allocates while another holds the main arena an
arena of its own (up to eight per core), and memory freed in one arena is never
reused by another. The daemon has a dozen threads (OSC, the model, the output
supervisor, the scene watcher...); the one that matters here is the model
thread, which imports onnxruntime and opens its session (~10 MB) after the main
thread has measured a scene's loudness and freed its buffers. Measured with
the daemon playing `focus` (benchmarks/RESULTS.md): one arena, 302 MB resident
instead of 310 MB after a first start that measured the loudness, 301 instead
of 303 MB with the measurement cached. Python's own small objects do not come
from malloc, and the audio callback never allocates, so the one lock this adds
costs nothing that a listener hears.

    use_one_malloc_arena()    # True when glibc took it

Main thread, before other threads start (arenas made earlier stay).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

__all__ = ["M_ARENA_MAX", "use_one_malloc_arena"]

# glibc's malloc.h: the mallopt parameter for the arena limit.
M_ARENA_MAX = -8


def use_one_malloc_arena() -> bool:
    """Ask glibc to keep every thread's allocations in the main arena (as
    ``MALLOC_ARENA_MAX=1`` would); False where there is no glibc ``mallopt``
    or it refused (another C library: nothing changes), or where the user
    set ``MALLOC_ARENA_MAX`` (theirs stands)."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt(M_ARENA_MAX, 1) == 1
