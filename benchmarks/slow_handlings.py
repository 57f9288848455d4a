"""Why a datagram's handling took long: a probe around the OSC server's
``_receive`` for benchmarks (never installed by the engine itself).

For every handling it takes the wall and the receive thread's own CPU clock,
the thread's scheduler counters (``/proc/self/task/<tid>/schedstat``: time
run, time runnable but waiting for a CPU, times put on a CPU) and, with
``SIOCGSTAMP``, when the kernel received the datagram. For each handling
longer than ``threshold_ms`` it keeps a record that splits the wall time:

- ``cpu_ms``: the thread ran (the handler's own work; ours);
- ``cpu_wait_ms``: runnable, waiting for a CPU (other threads or processes
  had both cores);
- ``off_ms``: neither: blocked (waiting for the GIL or a lock) if the thread
  left the CPU meanwhile (``switches`` > 0), else its vCPU was taken by the
  host (steal is not counted as run time on a paravirtual guest);
- ``before_ms``: the datagram's arrival to the handler's start (the loop's
  wake-up and the GIL taken back after the GIL-free loop returned);
- ``others_ms``: CPU time each other thread of the process ran in a window
  around the handling (``window_ms``: the full snapshot before it is at most
  ``snapshot_every_ms`` old, to keep the probe's cost a few % of a core);
  the Python threads among them are the ones that could hold the GIL;
- ``others_cpu_wait_ms``: how long each of them waited for a CPU meanwhile
  (a Python thread preempted while it holds the GIL stalls the receive
  thread as long);
- ``steal_ms``: host steal over the same window (10 ms ticks).

Threads: install on the control thread before the server runs; the wrapper
then runs on the server's receive threads (one writer per record list).
"""

from __future__ import annotations

import fcntl
import os
import struct
import threading
import time
from typing import Any

SIOCGSTAMP = 0x8906  # struct timeval of the last datagram read on a socket


def _schedstat(fd: int) -> tuple[int, int, int]:
    """(ns run, ns waiting for a CPU, times run) of one thread."""
    run_ns, wait_ns, n_runs = os.pread(fd, 96, 0).split()[:3]
    return int(run_ns), int(wait_ns), int(n_runs)


class SlowHandlingProbe:
    """Wraps ``server._receive``; :attr:`records` holds the slow handlings.

    Example::

        probe = SlowHandlingProbe(server, threshold_ms=2.0)
        ...  # run traffic
        for record in probe.records: print(record["address"], record["cause"])
    """

    def __init__(
        self,
        server: Any,
        threshold_ms: float = 2.0,
        snapshot_every_ms: float = 1.0,
        keep: int = 2000,
    ) -> None:
        self.server = server
        self.threshold_ns = int(threshold_ms * 1e6)
        self.snapshot_every_ns = int(snapshot_every_ms * 1e6)
        self.keep = keep
        self.records: list[dict] = []
        self.n_handlings = 0
        self._own: dict[int, int] = {}  # receive thread id -> schedstat fd
        self._tasks: dict[int, int] = {}  # every thread id -> schedstat fd
        self._stat_fd = os.open("/proc/stat", os.O_RDONLY)
        self._ticks_ms = 1000.0 / os.sysconf("SC_CLK_TCK")
        self._snapshot: tuple[int, dict[int, tuple[int, int]], int] | None = None
        self._stamp_ok = True
        receive = server._receive

        def probed(data, n_bytes, sender, source, buckets, counts):
            self._before(source)
            try:
                receive(data, n_bytes, sender, source, buckets, counts)
            finally:
                self._after(data)

        server._receive = probed
        self._local = threading.local()

    # --- snapshots ----------------------------------------------------------------

    def _steal_ticks(self) -> int:
        return int(os.pread(self._stat_fd, 128, 0).split()[8])

    def _all_threads(self) -> dict[int, tuple[int, int]]:
        tids = {int(t) for t in os.listdir("/proc/self/task")}
        for tid in set(self._tasks) - tids:
            os.close(self._tasks.pop(tid))
        ran: dict[int, tuple[int, int]] = {}
        for tid in tids:
            fd = self._tasks.get(tid)
            try:
                if fd is None:
                    fd = os.open(f"/proc/self/task/{tid}/schedstat", os.O_RDONLY)
                    self._tasks[tid] = fd
                ran[tid] = _schedstat(fd)[:2]
            except OSError:
                continue
        return ran

    def _own_fd(self) -> int:
        tid = threading.get_native_id()
        fd = self._own.get(tid)
        if fd is None:
            fd = os.open(f"/proc/self/task/{tid}/schedstat", os.O_RDONLY)
            self._own[tid] = fd
        return fd

    def _arrival_ns(self) -> int:
        """When the kernel received the datagram just read (CLOCK_REALTIME),
        0 if unknown (the first call only switches stamping on)."""
        sock = self.server._udp_sock
        if not self._stamp_ok or sock is None:
            return 0
        try:
            raw = fcntl.ioctl(sock.fileno(), SIOCGSTAMP, bytes(16))
        except OSError:
            return 0
        seconds, micros = struct.unpack("qq", raw)
        return seconds * 1_000_000_000 + micros * 1000

    # --- around one handling ------------------------------------------------------

    def _before(self, source: Any) -> None:
        local = self._local
        local.wall_ns = time.monotonic_ns()
        local.real_ns = time.time_ns()
        local.cpu_ns = time.thread_time_ns()
        local.sched = _schedstat(self._own_fd())
        # TCP frames come from a stream: no per-datagram arrival time.
        local.arrival_ns = self._arrival_ns() if isinstance(source, tuple) else 0
        snapshot = self._snapshot
        if snapshot is None or local.wall_ns - snapshot[0] > self.snapshot_every_ns:
            self._snapshot = (local.wall_ns, self._all_threads(), self._steal_ticks())

    def _after(self, data: Any) -> None:
        local = self._local
        wall_ns = time.monotonic_ns() - local.wall_ns
        self.n_handlings += 1
        if wall_ns <= self.threshold_ns or len(self.records) >= self.keep:
            return
        cpu_ns = time.thread_time_ns() - local.cpu_ns
        _, wait_ns, n_runs = _schedstat(self._own_fd())
        wait_ns -= local.sched[1]
        switches = n_runs - local.sched[2]
        off_ns = max(0, wall_ns - cpu_ns - wait_ns)
        record: dict[str, Any] = {
            # Parsed after the run: parsing here would count in the
            # server's own timing of this handling.
            "datagram": bytes(data),
            "wall_ms": round(wall_ns / 1e6, 2),
            "cpu_ms": round(cpu_ns / 1e6, 2),
            "cpu_wait_ms": round(wait_ns / 1e6, 2),
            "off_ms": round(off_ns / 1e6, 2),
            "switches": switches,
            "before_ms": (
                round((local.real_ns - local.arrival_ns) / 1e6, 2)
                if local.arrival_ns
                else None
            ),
        }
        snapshot = self._snapshot
        if snapshot is not None:
            # Only numbers here (preopened files): thread names, the cause
            # and the address are worked out in finish(), outside the
            # server's own timing of this handling.
            taken_ns, ran_before, steal_before = snapshot
            record["_threads"] = (ran_before, self._all_threads())
            record["window_ms"] = round((time.monotonic_ns() - taken_ns) / 1e6, 2)
            record["steal_ms"] = round(
                (self._steal_ticks() - steal_before) * self._ticks_ms
            )
        self.records.append(record)

    def finish(self) -> list[dict]:
        """The records, each with its first address, the other threads by
        name (call while the threads still run) and its cause."""
        names = _thread_names()
        own = set(self._own)
        for record in self.records:
            if "datagram" in record:
                record["address"] = _first_address(record.pop("datagram"))
            if "_threads" in record:
                ran_before, ran_after = record.pop("_threads")
                others: dict[str, float] = {}
                waited: dict[str, float] = {}
                for tid, (run_ns, wait_ns) in ran_after.items():
                    if tid not in ran_before or tid in own:
                        continue
                    name = f"{names.get(tid, '?')}:{tid}"
                    if run_ns - ran_before[tid][0] > 50_000:
                        others[name] = round((run_ns - ran_before[tid][0]) / 1e6, 2)
                    if wait_ns - ran_before[tid][1] > 50_000:
                        waited[name] = round((wait_ns - ran_before[tid][1]) / 1e6, 2)
                record["others_ms"] = dict(
                    sorted(others.items(), key=lambda item: -item[1])
                )
                # A thread waiting for a CPU while holding the GIL stalls the
                # receive thread too.
                record["others_cpu_wait_ms"] = dict(
                    sorted(waited.items(), key=lambda item: -item[1])
                )
            record["cause"] = classify(record)
        return self.records

    def close(self) -> None:
        for fd in (*self._own.values(), *self._tasks.values(), self._stat_fd):
            os.close(fd)
        self._own.clear()
        self._tasks.clear()


def _first_address(data: Any) -> str:
    from engine.control.osc_wire import OscError, parse

    try:
        messages = parse(bytes(data))
    except OscError:
        return "(malformed)"
    if not messages:
        return "(empty)"
    first = messages[0].address[:60]
    return first if len(messages) == 1 else f"{first} (+{len(messages) - 1})"


def _thread_names() -> dict[int, str]:
    """Thread id -> Python thread name (``py:`` prefix: it can hold the GIL),
    or the kernel's name for threads Python did not start (JACK's, Numba's)."""
    names = {
        t.native_id: f"py:{t.name}"
        for t in threading.enumerate()
        if t.native_id is not None
    }
    for tid in os.listdir("/proc/self/task"):
        if int(tid) not in names:
            try:
                with open(f"/proc/self/task/{tid}/comm") as comm:
                    names[int(tid)] = comm.read().strip()
            except OSError:
                pass
    return names


def classify(record: dict) -> str:
    """The largest share of a slow handling's wall time: ``ours`` (the
    thread ran), ``cpu wait``, ``GIL wait (<thread>)`` when Python threads of
    the process ran or waited for a CPU meanwhile for at least half of the
    time off (``preempted``: the holder mostly waited for a CPU), else
    ``steal`` (off the CPU with no thread of ours to wait for: the vCPU)."""
    shares = {
        "ours": record["cpu_ms"],
        "cpu wait": record["cpu_wait_ms"],
        "off": record["off_ms"],
    }
    cause = max(shares, key=shares.__getitem__)
    if cause != "off":
        return cause
    ran = {n: ms for n, ms in record.get("others_ms", {}).items() if "py:" in n}
    waited = {
        n: ms for n, ms in record.get("others_cpu_wait_ms", {}).items() if "py:" in n
    }
    held = {n: ran.get(n, 0.0) + waited.get(n, 0.0) for n in {*ran, *waited}}
    if record["switches"] == 0 or sum(held.values()) < 0.5 * record["off_ms"]:
        return "steal"
    holder = max(held, key=held.__getitem__)
    name = holder.split(":")[1]
    if waited.get(holder, 0.0) > ran.get(holder, 0.0):
        return f"GIL wait ({name}, preempted)"
    return f"GIL wait ({name})"


def summarize(records: list[dict], over_ms: float = 5.0) -> dict[str, int]:
    """How many handlings over ``over_ms`` each cause explains."""
    causes: dict[str, int] = {}
    for record in records:
        if record["wall_ms"] > over_ms:
            causes[record["cause"]] = causes.get(record["cause"], 0) + 1
    return causes
