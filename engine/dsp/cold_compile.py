"""Fill Numba's empty cache in background processes, what the first program
plays first.

A cold compile is mostly Numba's front end (type inference and lowering, in
Python) plus LLVM, kernel after kernel (benchmarks/RESULTS.md). The kernels
are independent functions (``engine.dsp.dispatch``), so worker processes
compile them into the shared on-disk cache beside this process, and this
process loads them from there.

This process does not wait for the whole cache. At import of
``engine.dsp.interpreter`` it starts the workers and goes on: the entry points
(block renderer, interpreter, audio callback) it compiles itself when it
first needs them, as Numba always does. When a program is compiled, its
kernels are *wanted* (``BackgroundCompile.fetch``): their names go into the
claims directory's ``wanted`` file, which every worker reads before each
claim and prefers; this process compiles any wanted kernel nobody has
claimed yet and waits for the ones a worker has in hand, then loads them from
the cache. So the first block waits for the entry points and its own
kernels, not for all of them. Until a program is known, the workers guess:
the kernels of the master bus and of the built-in demos, costliest first
(``likely_first``). Then the rest, costliest first, and last the entry
points, so that a later live start finds the audio callback too. A worker
renices itself to 19 before the first kernel nobody waits for: one neither
wanted nor guessed, or any once a program exists and this process is not
waiting in ``fetch`` (it may be playing).

Claims: a kernel is taken by creating ``claims/<module>.<name>`` exclusively,
which the file system grants to exactly one process; the file names the
owner (0 is this process, workers 1..n) and says ``done`` once the kernel is
in the cache. When the last worker exits, the cache is marked complete if
every claim is done. A worker that dies costs only time: a wanted kernel it
held is compiled here once the worker is seen to have exited, and the cache
is not marked complete, so the next start fills what is missing. A kernel
compiled here holds the GIL for a second or more: other Python threads (OSC,
the model) wait meanwhile; the audio callback needs no GIL.

Exit: the process waits for its workers when it exits normally (``atexit``),
so none outlives it; a start that renders a few seconds and exits waits there
for the rest of the fill (once per machine and source version). Killed
without a normal exit, workers finish detached, never beyond the fill.

Control thread only (import, graph compile); never the audio thread.
"""

from __future__ import annotations

import atexit
import inspect
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from engine.dsp import cache_guard
from engine.dsp.dispatch import KERNEL_ARGS

# Set in a worker process: the claims directory shared by all processes, and
# the worker's number (1..n; this process is 0).
CLAIMS_ENV = "SOUNDSCAPE_COMPILE_CLAIMS"
WORKER_ENV = "SOUNDSCAPE_COMPILE_WORKER"
# Processes for a cold compile (default: one per core, at most MAX_PROCESSES);
# 1 compiles everything here at import, which tools that read the LLVM IR
# need: Numba keeps no IR for what it loads from the cache.
PROCESSES_ENV = "SOUNDSCAPE_COMPILE_PROCESSES"
MAX_PROCESSES = 4
# The claim a worker takes, after every kernel, to put the entry points in the
# cache (importing engine.rt.callback loads them, or compiles what is missing).
ENTRY_POINTS = "entry-points"
WANTED_FILE = "wanted"
# Present while the rendering process waits in ``fetch`` for kernels.
FETCHING_FILE = "fetching"
# The fill nobody waits for must not take CPU from the audio callback.
BACKGROUND_NICE = 19
# How often a program waiting for a worker's kernel looks at the claims.
POLL_S = 0.01
_WORKER = "from engine.dsp.cold_compile import run_worker\nrun_worker()\n"
_DONE = "done"
_OWNER_HERE = "0"


@dataclass
class ColdCompileReport:
    """How a cold compile was shared out (for benchmarks/bench_cold_compile.py).

    ``wall_s``: from the workers' start until the last one exited (the cache
    full). ``processes``: one dict per process (this one first) with
    ``cpu_s`` (this process: its CPU time compiling wanted kernels, not the
    entry points Numba compiled on the way; a worker: all of its CPU time,
    start and imports included, ~1 s), ``kernels`` (how many it compiled) and
    ``finished_s`` (when it was done, from the start).
    """

    wall_s: float
    processes: list[dict[str, float]] = field(default_factory=list)
    complete: bool = False

    def as_dict(self) -> dict:
        """Plain data, with each process's ``idle_s`` (wall_s - finished_s)."""
        return {
            "wall_s": self.wall_s,
            "complete": self.complete,
            "processes": [
                {**p, "idle_s": max(0.0, self.wall_s - p["finished_s"])}
                for p in self.processes
            ],
        }


# The last cold compile this process led, once its workers exited, or None.
last_report: ColdCompileReport | None = None
# The cold compile under way in this process, or None.
_running: BackgroundCompile | None = None


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


def claim_name(kernel: object) -> str:
    """The claim file's name for ``kernel``: ``<module>.<function>``."""
    module = getattr(kernel, "__module__", "") or ""
    return f"{module}.{getattr(kernel, '__name__', id(kernel))}"


def claim_order(
    kernels: Iterable[object],
    wanted: Iterable[str] = (),
    likely: Sequence[object] = (),
) -> list[object]:
    """The order a process takes kernels in: those named in ``wanted`` (the
    programs' own) costliest first, then ``likely`` in its order, then the
    rest costliest first. Each kernel once.

    >>> claim_order([], ["x"], [])
    []
    """
    wanted_names = set(wanted)
    ordered = costliest_first(kernels)
    present = {id(k) for k in ordered}
    first = [k for k in ordered if claim_name(k) in wanted_names]
    guessed = [k for k in dict.fromkeys(likely) if id(k) in present]
    return list(dict.fromkeys([*first, *guessed, *ordered]))


def read_wanted(claims_dir: str | Path) -> list[str]:
    """The claim names the programs of the rendering process asked for."""
    try:
        return (Path(claims_dir) / WANTED_FILE).read_text().split()
    except OSError:
        return []


def _try_claim(claims_dir: Path, name: str, owner: str) -> int | None:
    """An open descriptor on the new claim file, or None if it was taken."""
    try:
        fd = os.open(claims_dir / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return None
    os.write(fd, f"{owner}\n".encode())
    return fd


def compile_claimed(
    kernels: Iterable[object],
    claims_dir: str | Path,
    owner: str = _OWNER_HERE,
    likely: Sequence[object] = (),
    on_background: Callable[[], None] | None = None,
) -> list[object]:
    """Compile each of ``kernels`` that no other process sharing
    ``claims_dir`` has taken, in ``claim_order`` (the ``wanted`` file is read
    again before each claim); return the ones compiled here.

    ``on_background`` is called once, before the first claim that nothing
    waits for: a kernel neither wanted nor ``likely``, or any kernel once a
    program was asked for while the rendering process is not waiting in
    ``fetch`` (it may be playing). A worker lowers its priority there, for
    good (only a privileged process may raise it again); a program loaded
    later compiles what nobody has taken itself.
    The claim file names the ``owner`` and says ``done`` once the kernel is
    compiled (and cached).
    """
    claims = Path(claims_dir)
    kernels = list(kernels)
    compiled: list[object] = []
    likely_names = {claim_name(k) for k in likely}
    while True:
        wanted = read_wanted(claims)
        foreground = likely_names.union(wanted)
        if wanted and not (claims / FETCHING_FILE).exists():
            foreground = set()
        for kernel in claim_order(kernels, wanted, likely):
            name = claim_name(kernel)
            if (claims / name).exists():
                continue
            fd = _try_claim(claims, name, owner)
            if fd is None:
                continue
            try:
                if on_background is not None and name not in foreground:
                    on_background()
                    on_background = None
                kernel.compile(KERNEL_ARGS)  # type: ignore[attr-defined]
                os.write(fd, f"{_DONE}\n".encode())
            finally:
                os.close(fd)
            compiled.append(kernel)
            break
        else:
            return compiled


def claim_state(claims_dir: str | Path, name: str) -> tuple[str, bool] | None:
    """``(owner, done)`` of a claim, or None if nobody has taken it."""
    try:
        words = (Path(claims_dir) / name).read_text().split()
    except FileNotFoundError:
        return None
    except OSError:
        return ("?", False)
    # An owner's number is written at the create: an empty file is a claim
    # being written this instant.
    return (words[0] if words else "?", words[-1:] == [_DONE])


def all_done(kernels: Iterable[object], claims_dir: str | Path) -> bool:
    """True when every one of ``kernels`` was compiled by some process."""
    for kernel in costliest_first(kernels):
        state = claim_state(claims_dir, claim_name(kernel))
        if state is None or not state[1]:
            return False
    return True


def _claims_by_owner(claims_dir: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for path in claims_dir.iterdir():
        if path.name.startswith("worker-") or path.name in (
            WANTED_FILE,
            FETCHING_FILE,
        ):
            continue
        if path.name.endswith(".tmp"):
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


def likely_first(kernels: Mapping[int, object]) -> list[object]:
    """The kernels a first program most likely plays, before it is known:
    the master bus's (every engine has one) and the built-in demos',
    costliest first. Once the program is known, what is left of its kernels
    is then mostly small ones, which the processes share out evenly (the
    longest-first rule for a short finish). Graphs only, no compile: ~15 ms
    in a worker."""
    try:
        from engine.demos import DEMOS
        from engine.rt.engine import master_graph
    except ImportError:
        return []  # no guess: the costliest first
    graphs = [master_graph(), *(build() for build in DEMOS.values())]
    ops = {node.spec.opcode for graph in graphs for node in graph.nodes}
    return costliest_first(kernels[op] for op in sorted(ops) if op in kernels)


def run_worker() -> None:
    """A worker process's whole life (``python -c`` of ``_WORKER``): compile
    what nobody has claimed, wanted kernels first, then the entry points."""
    claims = Path(os.environ[CLAIMS_ENV])
    worker = os.environ[WORKER_ENV]
    from engine.dsp.interpreter import KERNELS

    def lower_priority() -> None:
        try:
            os.nice(BACKGROUND_NICE - os.nice(0))
        except OSError:
            pass  # a platform without nice: the fill runs at normal priority

    compile_claimed(
        KERNELS.values(), claims, worker, likely_first(KERNELS), lower_priority
    )
    fd = _try_claim(claims, ENTRY_POINTS, worker)
    if fd is not None:
        try:
            lower_priority()
            import engine.rt.callback  # noqa: F401 (compiles or loads them)

            os.write(fd, f"{_DONE}\n".encode())
        finally:
            os.close(fd)
    (claims / f"worker-{worker}.finished").write_text(repr(time.time()))


class BackgroundCompile:
    """A cold compile under way: the claims directory, the workers, and the
    threads that reap them (control thread; one per process, ``_running``)."""

    def __init__(
        self,
        kernels: Mapping[int, object],
        n_workers: int,
        worker_code: str = _WORKER,
        on_complete: Callable[[], None] = cache_guard.mark_kernels_compiled,
    ) -> None:
        """Start ``n_workers`` processes running ``worker_code`` (``python
        -c``; tests give their own) on a new claims directory.
        ``on_complete`` runs once every claim is done."""
        self.kernels = kernels
        self._on_complete = on_complete
        self.claims_dir = Path(tempfile.mkdtemp(prefix="soundscape-compile-"))
        self._lock = threading.Lock()  # the wanted file and the counters
        self._wanted: list[str] = []
        self._exited: dict[str, tuple[float, float, int]] = {}
        self._cpu_here_s = 0.0
        self._finished_here_s = 0.0
        self._start = time.perf_counter()
        self._start_epoch = time.time()
        self._workers = _start_workers(n_workers, self.claims_dir, worker_code)
        self._reapers = [
            threading.Thread(
                target=self._reap,
                args=(str(number), worker),
                name=f"compile-reaper-{number}",
                daemon=True,
            )
            for number, worker in enumerate(self._workers, 1)
        ]
        for reaper in self._reapers:
            reaper.start()
        self._finish_lock = threading.Lock()
        self._report: ColdCompileReport | None = None

    def _reap(self, number: str, worker: subprocess.Popen) -> None:
        """Wait for one worker; record its exit time, CPU and status."""
        cpu_s = float("nan")
        if hasattr(os, "wait4"):  # POSIX: also gives the worker's CPU time
            _, status, usage = os.wait4(worker.pid, 0)
            worker.returncode = os.waitstatus_to_exitcode(status)
            cpu_s = usage.ru_utime + usage.ru_stime
        else:
            worker.wait()
        with self._lock:
            self._exited[number] = (
                time.perf_counter() - self._start,
                cpu_s,
                int(worker.returncode or 0),
            )
            last = len(self._exited) == len(self._workers)
        if last:
            self._finish()

    def _exited_owner(self, owner: str) -> bool:
        with self._lock:
            return owner in self._exited

    def _want(self, names: Iterable[str]) -> None:
        with self._lock:
            new = [n for n in names if n not in self._wanted]
            if not new:
                return
            self._wanted.extend(new)
            temp = self.claims_dir / f"{WANTED_FILE}.tmp"
            temp.write_text("\n".join(self._wanted) + "\n")
            # A rename replaces the list whole: a worker never reads half of it.
            os.replace(temp, self.claims_dir / WANTED_FILE)

    def fetch(self, kernels: Iterable[object]) -> None:
        """Make sure each of ``kernels`` is in the cache: ask the workers for
        them first, compile here those nobody has taken, and wait for the
        ones a worker is compiling (taking over one whose worker exited
        without finishing it). Returns when all are done; loading them into
        the table is the caller's (``kernel.compile`` finds them cached)."""
        wanted = costliest_first(kernels)
        fetching = self.claims_dir / FETCHING_FILE
        try:
            fetching.touch()
            try:
                self._want(claim_name(k) for k in wanted)
                self._wait_or_compile(wanted)
            finally:
                fetching.unlink(missing_ok=True)
        except FileNotFoundError:
            # The fill ended meanwhile and its claims went: installing the
            # kernels loads them from the cache (or compiles what a dead
            # worker left).
            if self.claims_dir.exists():
                raise

    def _wait_or_compile(self, kernels: list[object]) -> None:
        pending = list(kernels)
        while pending:
            waiting = []
            for kernel in pending:
                name = claim_name(kernel)
                state = claim_state(self.claims_dir, name)
                if state is None:
                    fd = _try_claim(self.claims_dir, name, _OWNER_HERE)
                    if fd is None:
                        waiting.append(kernel)  # taken this instant
                        continue
                    self._compile_here(kernel, fd)
                elif not state[1]:
                    owner = state[0]
                    if owner != _OWNER_HERE and self._exited_owner(owner):
                        self._take_over(kernel, name)
                    else:
                        waiting.append(kernel)
            pending = waiting
            if pending:
                time.sleep(POLL_S)

    def _compile_here(self, kernel: object, fd: int) -> None:
        cpu = time.process_time()
        try:
            kernel.compile(KERNEL_ARGS)  # type: ignore[attr-defined]
            os.write(fd, f"{_DONE}\n".encode())
        finally:
            os.close(fd)
            with self._lock:
                self._cpu_here_s += time.process_time() - cpu
                self._finished_here_s = time.perf_counter() - self._start

    def _take_over(self, kernel: object, name: str) -> None:
        """Compile a kernel whose worker died holding it, and mark it ours."""
        path = self.claims_dir / name
        temp = self.claims_dir / f"{name}.tmp"
        fd = os.open(temp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY)
        os.write(fd, f"{_OWNER_HERE}\n".encode())
        self._compile_here(kernel, fd)
        os.replace(temp, path)

    def progress(self) -> tuple[list[str], list[str]]:
        """``(done, not done)``: the kernels' claim names, and the entry
        points' (``ENTRY_POINTS``), by whether they are in the cache yet."""
        names = [claim_name(k) for k in costliest_first(self.kernels.values())]
        done, left = [], []
        for name in [*names, ENTRY_POINTS]:
            state = claim_state(self.claims_dir, name)
            (done if state is not None and state[1] else left).append(name)
        return done, left

    def wait(self, timeout_s: float | None = None) -> ColdCompileReport | None:
        """Wait for every worker to exit (the cache full, or a worker dead),
        then remove the claims. Returns the report, or None if ``timeout_s``
        ran out first. (When the last worker exits, the cache is marked
        complete if every claim is done, and ``last_report`` is set.)"""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for reaper in self._reapers:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            reaper.join(left)
            if reaper.is_alive():
                return None
        report = self._finish()  # with no workers, nobody else does
        shutil.rmtree(self.claims_dir, ignore_errors=True)
        return report

    def _finish(self) -> ColdCompileReport:
        with self._finish_lock:
            if self._report is None:
                self._report = self._make_report()
            return self._report

    def _make_report(self) -> ColdCompileReport:
        global last_report, _running
        _, left = self.progress()
        report = ColdCompileReport(wall_s=time.perf_counter() - self._start)
        counts = _claims_by_owner(self.claims_dir)
        report.processes.append(
            {
                "cpu_s": self._cpu_here_s,
                "finished_s": self._finished_here_s,
                "kernels": counts.get(_OWNER_HERE, 0),
            }
        )
        for number in range(1, len(self._workers) + 1):
            finished_s, cpu_s, _ = self._exited[str(number)]
            try:
                stamp = (self.claims_dir / f"worker-{number}.finished").read_text()
                finished_s = float(stamp) - self._start_epoch
            except (OSError, ValueError):
                pass
            report.processes.append(
                {
                    "cpu_s": cpu_s,
                    "finished_s": finished_s,
                    "kernels": counts.get(str(number), 0),
                }
            )
        report.complete = not left
        if report.complete:
            self._on_complete()
        last_report = report
        if _running is self:
            _running = None
        return report


def compile_kernels(kernels: Mapping[int, object]) -> bool:
    """Start filling Numba's cache with ``kernels`` in background processes,
    if it is cold; return at once.

    Returns True in a worker process (which must not go on to install the
    table: it compiles its share after the import), False in the process that
    will render. While the fill runs, ``fetch`` gets a program's kernels
    first. When every kernel and entry point was compiled, the cache is marked
    complete (``cache_guard.mark_kernels_compiled``), so a later start loads
    only what its programs play and starts no workers.
    """
    global _running
    if os.environ.get(CLAIMS_ENV):
        return True
    count = process_count()
    if count < 2 or _running is not None or cache_guard.kernels_compiled():
        return False
    _running = BackgroundCompile(kernels, count - 1)
    # No worker outlives a normal exit: they finish the fill first.
    atexit.register(_running.wait)
    return False


def running() -> BackgroundCompile | None:
    """The cold compile under way in this process, or None."""
    return _running


def fetch(kernels: Iterable[object]) -> None:
    """Get ``kernels`` into the cache ahead of the rest if a cold compile is
    under way (``BackgroundCompile.fetch``); nothing otherwise."""
    compile_run = _running
    if compile_run is not None:
        compile_run.fetch(kernels)


def wait_for_fill(timeout_s: float | None = None) -> ColdCompileReport | None:
    """Wait until the background compile has filled the cache (benchmarks,
    tests; a normal exit does it too). Returns its report (``last_report``),
    or None if there was none or ``timeout_s`` ran out."""
    compile_run = _running
    if compile_run is None:
        return last_report
    return compile_run.wait(timeout_s)


def _start_workers(
    n_workers: int, claims_dir: Path, code: str
) -> list[subprocess.Popen]:
    package_parent = str(Path(__file__).resolve().parents[2])
    python_path = os.pathsep.join(
        p for p in (package_parent, os.environ.get("PYTHONPATH", "")) if p
    )
    return [
        subprocess.Popen(
            [sys.executable, "-c", code],
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
