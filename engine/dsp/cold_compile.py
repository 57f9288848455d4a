"""Compile the kernels in parallel processes when Numba's cache is cold.

A cold compile is mostly Numba's front end (type inference and lowering, in
Python) plus LLVM, kernel after kernel: about 40 s of CPU on the benchmark
machine. The kernels are independent functions (``engine.dsp.dispatch``), so
worker processes each compile a share of them into the shared on-disk cache
while this process compiles its own share; one worker also compiles the block
renderer and the audio callback, which need only the kernel table's
intrinsics, not the kernels. Afterwards this process loads everything from the
cache. A worker that fails costs only time: whatever is missing is compiled
here when the table is installed.

Control thread only: runs once, at import of ``engine.dsp.interpreter``.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from engine.dsp import cache_guard
from engine.dsp.dispatch import KERNEL_ARGS

SHARD_ENV = "SOUNDSCAPE_COMPILE_SHARD"  # "index/count" in a worker process
# Processes for a cold compile (default: one per core, at most MAX_PROCESSES);
# 1 compiles everything here, which tools that read the LLVM IR need: Numba
# keeps no IR for what it loads from the cache.
PROCESSES_ENV = "SOUNDSCAPE_COMPILE_PROCESSES"
MAX_PROCESSES = 4
# Head start in compile cost given to worker 1, which also compiles the block
# renderer and the callback (at 0.18 it took 26 s of CPU against 19 s here).
_ENTRY_POINTS_SHARE = 0.08
_WORKER = (
    "import os, engine.dsp.interpreter\n"
    f"if os.environ['{SHARD_ENV}'].startswith('1/'):\n"
    "    import engine.rt.callback\n"
)


def _weight(kernel: object) -> int:
    """Compile cost estimate: the kernel's source length."""
    try:
        return len(inspect.getsource(kernel.py_func))  # type: ignore[attr-defined]
    except (OSError, TypeError, AttributeError):
        return 1000


def shards(kernels: Sequence[object], count: int) -> list[list[object]]:
    """Split ``kernels`` into ``count`` lists of about equal compile cost
    (largest first onto the lightest share); share 1 carries the entry points."""
    unique = list(dict.fromkeys(kernels))
    weights = {id(k): _weight(k) for k in unique}
    total = sum(weights.values())
    load = [0.0] * count
    if count > 1:
        load[1] = total * _ENTRY_POINTS_SHARE
    out: list[list[object]] = [[] for _ in range(count)]
    for kernel in sorted(unique, key=lambda k: -weights[id(k)]):
        lightest = load.index(min(load))
        out[lightest].append(kernel)
        load[lightest] += weights[id(kernel)]
    return out


def compile_kernels(kernels: Mapping[int, object]) -> bool:
    """Fill Numba's cache with ``kernels`` using every core, if it is cold.

    Returns True in a worker process (which must not go on to install the
    table), False in the process that will render.
    """
    listed = list(kernels.values())
    shard = os.environ.get(SHARD_ENV)
    if shard:
        index, count = (int(x) for x in shard.split("/"))
        for kernel in shards(listed, count)[index]:
            kernel.compile(KERNEL_ARGS)  # type: ignore[attr-defined]
        return True
    count = min(os.cpu_count() or 1, MAX_PROCESSES)
    try:
        count = max(1, int(os.environ.get(PROCESSES_ENV, count)))
    except ValueError:
        raise ValueError(
            f"{PROCESSES_ENV}={os.environ[PROCESSES_ENV]!r} must be a whole number"
        ) from None
    if count < 2 or cache_guard.kernels_compiled():
        return False
    package_parent = str(Path(__file__).resolve().parents[2])
    python_path = os.pathsep.join(
        p for p in (package_parent, os.environ.get("PYTHONPATH", "")) if p
    )
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER],
            env={**os.environ, SHARD_ENV: f"{i}/{count}", "PYTHONPATH": python_path},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in range(1, count)
    ]
    try:
        for kernel in shards(listed, count)[0]:
            kernel.compile(KERNEL_ARGS)  # type: ignore[attr-defined]
    finally:
        for worker in workers:
            worker.wait()
    return False
