"""One malloc arena: threads that allocate while another holds the lock share
the main arena (counted in glibc's own ``malloc_info`` report), unless the
user set ``MALLOC_ARENA_MAX``."""

from __future__ import annotations

import sys

import pytest

# Eight threads allocate and free 64 KB blocks at once (contention makes glibc
# hand out new arenas), then malloc_info's XML counts the heaps: one per arena.
PROBE = """
import ctypes, ctypes.util, sys, tempfile, threading
from engine.daemon.malloc_arenas import use_one_malloc_arena
took = use_one_malloc_arena() if sys.argv[1] == "one" else None
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
start = threading.Barrier(8)
def churn():
    start.wait()
    for _ in range(2000):
        libc.free(libc.malloc(65536))
threads = [threading.Thread(target=churn) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
path = tempfile.mktemp()
stream = libc.fopen(path.encode(), b"w")
libc.malloc_info(0, stream)
libc.fclose(stream)
print(took, open(path).read().count("<heap nr="))
"""


def _arenas(run_python, mode: str, **env: str) -> tuple[str, int]:  # type: ignore[no-untyped-def]
    out = run_python(PROBE, mode, env=env, drop=["MALLOC_ARENA_MAX"])
    took, heaps = out.split()
    return took, int(heaps)


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's malloc")
def test_threads_share_one_arena_once_asked(run_python):
    assert _arenas(run_python, "one") == ("True", 1)


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's malloc")
def test_without_it_contending_threads_get_arenas_of_their_own(run_python):
    # The control: what the daemon had before (more than one heap).
    took, heaps = _arenas(run_python, "default")
    assert took == "None" and heaps > 1


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's malloc")
def test_a_limit_the_user_set_stands(run_python):
    took, heaps = _arenas(run_python, "one", MALLOC_ARENA_MAX="4")
    assert took == "False" and heaps > 1
