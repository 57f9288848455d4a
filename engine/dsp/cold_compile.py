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
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
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
    "import os, time\n"
    f"worker = os.environ['{WORKER_ENV}']\n"
    "if worker == '1':\n"
    "    import engine.rt.callback\n"
    "from pathlib import Path\n"
    "from engine.dsp.cold_compile import compile_claimed\n"
    "from engine.dsp.interpreter import KERNELS\n"
    f"claims = os.environ['{CLAIMS_ENV}']\n"
    "compile_claimed(KERNELS.values(), claims, worker)\n"
    "(Path(claims) / f'worker-{worker}.finished').write_text(repr(time.time()))\n"
)
_DONE = "done"


@dataclass
class ColdCompileReport:
    """How a cold compile was shared out (for benchmarks/bench_cold_compile.py).

    ``processes``: one dict per process (this one first) with ``cpu_s`` (its
    CPU time compiling; a worker's includes its start and imports, ~1 s),
    ``kernels`` (how many it compiled) and ``finished_s`` (when it was done,
    from the start).
    """

    wall_s: float
    processes: list[dict[str, float]] = field(default_factory=list)

    def as_dict(self) -> dict:
        """Plain data, with each process's ``idle_s`` (wall_s - finished_s)."""
        return {
            "wall_s": self.wall_s,
            "processes": [
                {**p, "idle_s": max(0.0, self.wall_s - p["finished_s"])}
                for p in self.processes
            ],
        }


# The last cold compile this process led, or None.
last_report: ColdCompileReport | None = None


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


def compile_claimed(
    kernels: Iterable[object], claims_dir: str | Path, owner: str = "0"
) -> list[object]:
    """Compile, costliest first, each of ``kernels`` that no other process
    sharing ``claims_dir`` has taken; return the ones compiled here.

    A kernel is taken by creating ``claims_dir/<module>.<name>`` exclusively,
    which the file system grants to exactly one process; the file names the
    ``owner`` and says ``done`` once the kernel is compiled (and cached).
    """
    compiled = []
    for kernel in costliest_first(kernels):
        try:
            fd = os.open(
                Path(claims_dir) / _claim_name(kernel),
                os.O_CREAT | os.O_EXCL | os.O_WRONLY,
            )
        except FileExistsError:
            continue
        try:
            os.write(fd, f"{owner}\n".encode())
            kernel.compile(KERNEL_ARGS)  # type: ignore[attr-defined]
            os.write(fd, f"{_DONE}\n".encode())
        finally:
            os.close(fd)
        compiled.append(kernel)
    return compiled


def all_done(kernels: Iterable[object], claims_dir: str | Path) -> bool:
    """True when every one of ``kernels`` was compiled by some process."""
    for kernel in costliest_first(kernels):
        try:
            lines = (Path(claims_dir) / _claim_name(kernel)).read_text().split()
        except OSError:
            return False
        if lines[-1:] != [_DONE]:
            return False
    return True


def _claims_by_owner(claims_dir: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for path in claims_dir.iterdir():
        if path.name.startswith("worker-"):
            continue
        owner = (path.read_text().split() or ["?"])[0]
        counts[owner] = counts.get(owner, 0) + 1
    return counts


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
    will render. When every kernel was compiled, the cache is marked complete
    (``cache_guard.mark_kernels_compiled``), so the table need not load them
    all to find out: a start loads only what its programs play.
    """
    global last_report
    if os.environ.get(CLAIMS_ENV):
        return True
    count = process_count()
    if count < 2 or cache_guard.kernels_compiled():
        return False
    claims_dir = Path(tempfile.mkdtemp(prefix="soundscape-compile-"))
    try:
        start, start_epoch = time.perf_counter(), time.time()
        workers = _start_workers(count - 1, claims_dir)
        cpu = time.process_time()
        report = ColdCompileReport(wall_s=0.0)
        try:
            compile_claimed(kernels.values(), claims_dir)
        finally:
            report.processes.append(
                {
                    "cpu_s": time.process_time() - cpu,
                    "finished_s": time.perf_counter() - start,
                }
            )
            failed = _wait_for(workers, claims_dir, start_epoch, report)
        report.wall_s = time.perf_counter() - start
        counts = _claims_by_owner(claims_dir)
        for i, process in enumerate(report.processes):
            process["kernels"] = counts.get(str(i), 0)
        last_report = report
        if not failed and all_done(kernels.values(), claims_dir):
            cache_guard.mark_kernels_compiled()
    finally:
        shutil.rmtree(claims_dir, ignore_errors=True)
    return False


def _start_workers(n_workers: int, claims_dir: Path) -> list[subprocess.Popen]:
    package_parent = str(Path(__file__).resolve().parents[2])
    python_path = os.pathsep.join(
        p for p in (package_parent, os.environ.get("PYTHONPATH", "")) if p
    )
    return [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER],
            env={
                **os.environ,
                CLAIMS_ENV: str(claims_dir),
                WORKER_ENV: str(number),
                "PYTHONPATH": python_path,
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for number in range(1, n_workers + 1)
    ]


def _wait_for(
    workers: list[subprocess.Popen],
    claims_dir: Path,
    start_epoch: float,
    report: ColdCompileReport,
) -> bool:
    """Wait for every worker, adding its CPU time and finishing time to
    ``report``; True if any failed."""
    failed = False
    for number, worker in enumerate(workers, 1):
        cpu_s = float("nan")
        if hasattr(os, "wait4"):  # POSIX: also gives the worker's CPU time
            _, status, usage = os.wait4(worker.pid, 0)
            worker.returncode = os.waitstatus_to_exitcode(status)
            cpu_s = usage.ru_utime + usage.ru_stime
        else:
            worker.wait()
        failed |= worker.returncode != 0
        try:
            finished = (claims_dir / f"worker-{number}.finished").read_text()
            finished_s = float(finished) - start_epoch
        except (OSError, ValueError):
            finished_s = time.time() - start_epoch
        report.processes.append({"cpu_s": cpu_s, "finished_s": finished_s})
    return failed
