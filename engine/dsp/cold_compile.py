"""Compile the kernels in parallel processes when Numba's cache is cold.

A cold compile is mostly Numba's front end (type inference and lowering, in
Python) plus LLVM, kernel after kernel (benchmarks/RESULTS.md). The kernels
are independent functions (``engine.dsp.dispatch``), so worker processes
compile them into the shared on-disk cache beside this process; afterwards
this process loads everything from the cache. A worker that fails costs only
time: whatever is missing is compiled here when the table is installed.

The work is shared out as it goes, not in fixed shares: every process walks
the kernels from the costliest down and takes the next one nobody has taken
(an exclusive file create in a claims directory is the claim), so processes
finish within about one small kernel of each other however wrong the cost
estimates are or however busy the other cores. Worker 1 first compiles the
block renderer and the audio callback (they need only the kernel table's
intrinsics, not the kernels): only a worker can, since this process is still
importing the module that defines the renderer.

Control thread only: runs once, at import of ``engine.dsp.interpreter``.
"""

from __future__ import annotations

import inspect
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from engine.dsp import cache_guard
from engine.dsp.dispatch import KERNEL_ARGS

# Set in a worker process: the claims directory shared by all processes, and
# the worker's number (1 is the one that compiles the entry points).
CLAIMS_ENV = "SOUNDSCAPE_COMPILE_CLAIMS"
WORKER_ENV = "SOUNDSCAPE_COMPILE_WORKER"
# Processes for a cold compile (default: one per core, at most MAX_PROCESSES);
# 1 compiles everything here, which tools that read the LLVM IR need: Numba
# keeps no IR for what it loads from the cache.
PROCESSES_ENV = "SOUNDSCAPE_COMPILE_PROCESSES"
MAX_PROCESSES = 4
_WORKER = (
    "import os\n"
    f"if os.environ['{WORKER_ENV}'] == '1':\n"
    "    import engine.rt.callback\n"
    "from engine.dsp.cold_compile import compile_claimed\n"
    "from engine.dsp.interpreter import KERNELS\n"
    f"compile_claimed(KERNELS.values(), os.environ['{CLAIMS_ENV}'])\n"
)


def _weight(kernel: object) -> int:
    """Compile cost estimate: the kernel's source length."""
    try:
        return len(inspect.getsource(kernel.py_func))  # type: ignore[attr-defined]
    except (OSError, TypeError, AttributeError):
        return 1000


def costliest_first(kernels: Iterable[object]) -> list[object]:
    """Each kernel once (a function registered for two opcodes is one
    compile), the costliest first, ties in the given order."""
    unique = list(dict.fromkeys(kernels))
    return sorted(unique, key=lambda k: -_weight(k))


def _claim_name(kernel: object) -> str:
    module = getattr(kernel, "__module__", "") or ""
    return f"{module}.{getattr(kernel, '__name__', id(kernel))}"


def compile_claimed(kernels: Iterable[object], claims_dir: str | Path) -> list[object]:
    """Compile, costliest first, each of ``kernels`` that no other process
    sharing ``claims_dir`` has taken; return the ones compiled here.

    A kernel is taken by creating ``claims_dir/<module>.<name>`` exclusively,
    which the file system grants to exactly one process.
    """
    done = []
    for kernel in costliest_first(kernels):
        try:
            fd = os.open(
                Path(claims_dir) / _claim_name(kernel),
                os.O_CREAT | os.O_EXCL | os.O_WRONLY,
            )
        except FileExistsError:
            continue
        os.close(fd)
        kernel.compile(KERNEL_ARGS)  # type: ignore[attr-defined]
        done.append(kernel)
    return done


def process_count() -> int:
    """Processes for a cold compile: ``SOUNDSCAPE_COMPILE_PROCESSES`` or one per
    core (at most ``MAX_PROCESSES``)."""
    default = min(os.cpu_count() or 1, MAX_PROCESSES)
    raw = os.environ.get(PROCESSES_ENV)
    if raw is None:
        return default
    try:
        return max(1, int(raw))
    except ValueError:
        raise ValueError(f"{PROCESSES_ENV}={raw!r} must be a whole number") from None


def compile_kernels(kernels: Mapping[int, object]) -> bool:
    """Fill Numba's cache with ``kernels`` using every core, if it is cold.

    Returns True in a worker process (which must not go on to install the
    table: it compiles its share after the import), False in the process that
    will render.
    """
    if os.environ.get(CLAIMS_ENV):
        return True
    count = process_count()
    if count < 2 or cache_guard.kernels_compiled():
        return False
    package_parent = str(Path(__file__).resolve().parents[2])
    python_path = os.pathsep.join(
        p for p in (package_parent, os.environ.get("PYTHONPATH", "")) if p
    )
    claims_dir = tempfile.mkdtemp(prefix="soundscape-compile-")
    try:
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", _WORKER],
                env={
                    **os.environ,
                    CLAIMS_ENV: claims_dir,
                    WORKER_ENV: str(i),
                    "PYTHONPATH": python_path,
                },
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for i in range(1, count)
        ]
        try:
            compile_claimed(kernels.values(), claims_dir)
        finally:
            for worker in workers:
                worker.wait()
    finally:
        shutil.rmtree(claims_dir, ignore_errors=True)
    return False
