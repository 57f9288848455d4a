"""What a receive path that needs no GIL would buy beside a busy Python thread.

    python benchmarks/bench_osc_nogil.py [--seconds 6] [--rounds 3] [--fifo 10]
        [--switch-interval-ms 1] [--json benchmarks/out/osc_nogil.json]

A probe for issue #4's latency target (datagram received -> parameter target
written, p99 < 2 ms beside a busy Python thread), not the engine's code. Two
receive loops take the same datagrams on a UDP socket on 127.0.0.1 from a
sender process (200 messages/s, each carrying its send time), in turn, each
beside the same busy pure-Python thread (bench_osc.BusyThread), with the
switch interval the OSC surface sets (``--switch-interval-ms``; RESULTS.md's
figures were taken at 1 ms) and the receive thread at nice -11, as
``soundscape play`` runs them:

- ``python``: what the engine does today, reduced to its core: a blocking
  ``recvfrom_into`` (the GIL given up while it waits, taken back for the
  datagram), our strict parser (engine/control/osc_wire.py), an exact-address
  dict lookup, and one float64 written into a target array;
- ``nogil``: a Numba ``@njit(nogil=True)`` loop entered once, that calls
  libc's ``recvfrom`` itself (through ctypes), matches the exact address and
  type tags against precomputed bytes, reads the big-endian arguments, checks
  the value (finite, in range) and a token-bucket rate limit, writes the
  target and stamps the time with ``clock_gettime``: it never holds the GIL.

With ``--fifo N`` each loop runs a second time with its receive thread at
SCHED_FIFO priority N instead of nice -11: a GIL-free loop then waits for no
other thread at all, a Python one still waits for the busy thread's GIL.

Both stamp the time right after the write (CLOCK_MONOTONIC, which processes
share). The table gives p50/p99/max per loop and round, with the load
average, the host's CPU steal and how long the busy thread waited for a CPU
(holding the GIL) meanwhile.

Thread: the main thread runs everything; the probe loops run on one receive
thread each.
"""

from __future__ import annotations

import argparse
import ctypes
import math
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_osc import BusyThread, stats_us
from benchmarks.bench_osc_engine import run_delay_ns, steal_ms
from benchmarks.report import write_json
from engine.control.osc_wire import encode_message, parse

HOST = "127.0.0.1"
ADDRESS = "/soundscape/layer/calm/tone/frequency_hz"
RATE_HZ = 200.0
RECEIVE_NICE = -11
CLOCK_MONOTONIC = 1
# The target's range and the rate limit the probe checks (the server's
# defaults: 2000 messages/s per source, 500 in hand).
MINIMUM, MAXIMUM = 20.0, 20000.0
BUCKET_RATE_HZ, BUCKET_BURST = 2000.0, 500.0


def run_sender(port: int, n_messages: int) -> None:
    """Send ``n_messages`` (send ns, sequence) at RATE_HZ, then one stop."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        os.setpriority(os.PRIO_PROCESS, 0, RECEIVE_NICE)
    except OSError:
        pass
    start_s = time.monotonic()
    for sequence in range(n_messages):
        sock.sendto(
            encode_message(ADDRESS, [time.monotonic_ns(), sequence], "hi"),
            (HOST, port),
        )
        delay_s = start_s + (sequence + 1) / RATE_HZ - time.monotonic()
        if delay_s > 0:
            time.sleep(delay_s)
    sock.sendto(encode_message("/stop", [], ""), (HOST, port))


# --- the GIL-free loop -------------------------------------------------------------


def _libc_functions():
    libc = ctypes.CDLL(None, use_errno=True)
    recvfrom = libc.recvfrom
    recvfrom.argtypes = [
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    recvfrom.restype = ctypes.c_ssize_t
    clock_gettime = libc.clock_gettime
    clock_gettime.argtypes = [ctypes.c_int, ctypes.c_void_p]
    clock_gettime.restype = ctypes.c_int
    return recvfrom, clock_gettime


def build_nogil_loop():
    """Compile the probe's receive loop (a few seconds, once)."""
    from numba import njit

    recvfrom, clock_gettime = _libc_functions()

    @njit(nogil=True, cache=False)
    def read_be(buffer, at, n_bytes):
        value = 0
        for i in range(n_bytes):
            value = (value << 8) | buffer[at + i]
        return value

    @njit(nogil=True, cache=False)
    def receive(fd, buffer, peer, peer_len, now, prefix, targets, column, state, out):
        """Handle datagrams without the GIL until one is not a plain set of
        ``prefix`` (returns its size: Python's turn) or ``out`` is full
        (returns 0). state: [tokens, last_ns, applied, rejected,
        rate_limited]; ``out[k]``: the k-th applied set's latency in ns."""
        while state[2] < out.shape[0]:
            peer_len[0] = peer.shape[0]
            n = recvfrom(
                fd,
                buffer.ctypes.data,
                buffer.shape[0],
                0,
                peer.ctypes.data,
                peer_len.ctypes.data,
            )
            if n != prefix.shape[0] + 12:
                return n  # not ours: the Python path takes it
            for i in range(prefix.shape[0]):
                if buffer[i] != prefix[i]:
                    return n
            at = prefix.shape[0]
            send_ns = read_be(buffer, at, 8)
            sequence = read_be(buffer, at + 8, 4)
            # The value the engine bench's handler derives from the sequence.
            value = 300.0 + 500.0 * (0.2 + 0.6 * ((sequence * 7919) % 1000) / 1000.0)
            clock_gettime(CLOCK_MONOTONIC, now.ctypes.data)
            now_ns = now[0] * 1_000_000_000 + now[1]
            tokens = min(
                BUCKET_BURST,
                state[0] + (now_ns - state[1]) * 1e-9 * BUCKET_RATE_HZ,
            )
            state[1] = now_ns
            if tokens < 1.0:
                state[0] = tokens
                state[4] += 1
                continue
            state[0] = tokens - 1.0
            if not (math.isfinite(value) and MINIMUM <= value <= MAXIMUM):
                state[3] += 1
                continue
            targets[column] = value
            clock_gettime(CLOCK_MONOTONIC, now.ctypes.data)
            out[int(state[2])] = now[0] * 1_000_000_000 + now[1] - send_ns
            state[2] += 1
        return 0

    # Compile now (Numba compiles at the first call): compiled in the first
    # round instead, it held the first datagrams for a second.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        sock.sendto(encode_message("/stop", [], ""), sock.getsockname())
        nogil_probe(sock, 1, receive)
    return receive


def nogil_probe(sock: socket.socket, n_messages: int, receive) -> list[float]:
    buffer = np.zeros(16_385, dtype=np.uint8)
    peer = np.zeros(128, dtype=np.uint8)
    peer_len = np.zeros(1, dtype=np.uint32)
    now = np.zeros(2, dtype=np.int64)
    prefix = np.frombuffer(
        encode_message(ADDRESS, [0, 0], "hi")[:-12], dtype=np.uint8
    ).copy()
    targets = np.zeros(8, dtype=np.float64)
    state = np.array([BUCKET_BURST, time.monotonic_ns(), 0, 0, 0], dtype=np.float64)
    out = np.zeros(n_messages, dtype=np.int64)
    while state[2] < n_messages:
        result = receive(
            sock.fileno(), buffer, peer, peer_len, now, prefix, targets, 0, state, out
        )
        if result < 0:
            raise OSError(ctypes.get_errno(), "recvfrom")
        if result > 0:
            # Python's turn: here, only the sender's /stop.
            messages = parse(bytes(buffer[:result]))
            if messages and messages[0].address == "/stop":
                break
    return list(out[: int(state[2])] / 1e3)


def python_probe(sock: socket.socket, n_messages: int) -> list[float]:
    targets = np.zeros(8, dtype=np.float64)
    latencies_us: list[float] = []

    def on_set(message) -> None:
        send_ns, sequence = message.args
        value = 300.0 + 500.0 * (0.2 + 0.6 * ((sequence * 7919) % 1000) / 1000.0)
        if math.isfinite(value) and MINIMUM <= value <= MAXIMUM:
            targets[0] = value
        latencies_us.append((time.monotonic_ns() - send_ns) / 1e3)

    handlers = {ADDRESS: on_set}
    buffer = bytearray(16_385)
    view = memoryview(buffer)
    while len(latencies_us) < n_messages:
        n_bytes, _ = sock.recvfrom_into(buffer)
        for message in parse(view[:n_bytes]):
            if message.address == "/stop":
                return latencies_us
            handler = handlers.get(message.address)
            if handler is not None:
                handler(message)
    return latencies_us


def measure(loop: str, seconds: float, receive, fifo_priority: int = 0) -> dict:
    n_messages = int(RATE_HZ * seconds)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    port = sock.getsockname()[1]
    result: dict = {}

    def run() -> None:
        try:
            if fifo_priority:
                os.sched_setscheduler(
                    threading.get_native_id(),
                    os.SCHED_FIFO,
                    os.sched_param(fifo_priority),
                )
            else:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), RECEIVE_NICE)
        except OSError as error:
            result["priority_refused"] = str(error)
        if loop == "nogil":
            result["latencies"] = nogil_probe(sock, n_messages, receive)
        else:
            result["latencies"] = python_probe(sock, n_messages)

    receiver = threading.Thread(target=run, name=f"probe-{loop}")
    steal_before = steal_ms()
    with BusyThread() as busy:
        busy_id = busy._thread.native_id
        busy_wait_ns = run_delay_ns(busy_id)
        started_s = time.monotonic()
        receiver.start()
        time.sleep(0.2)
        sender = subprocess.Popen(
            [sys.executable, __file__, "--send", f"{port}|{n_messages}"]
        )
        sender.wait()
        receiver.join(10.0)
        elapsed_s = time.monotonic() - started_s
        busy_wait_ns = run_delay_ns(busy_id) - busy_wait_ns
    sock.close()
    latencies = result.get("latencies", [])[20:]  # the first meet a cold path
    return {
        "loop": loop,
        "receive_priority": f"SCHED_FIFO {fifo_priority}"
        if fifo_priority
        else f"nice {RECEIVE_NICE}",
        "priority_refused": result.get("priority_refused"),
        **stats_us(latencies),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "steal_ms": round(steal_ms() - steal_before),
        "busy_thread_waiting_for_cpu_pct": round(
            100 * busy_wait_ns / 1e9 / elapsed_s, 1
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", default=str(ROOT / "benchmarks/out/osc_nogil.json"))
    parser.add_argument(
        "--fifo",
        type=int,
        default=0,
        help="also run each loop with its receive thread at this SCHED_FIFO "
        "priority (what RTKit grants; below JACK's audio thread)",
    )
    parser.add_argument(
        "--switch-interval-ms", type=float, help="default: the OSC surface's"
    )
    parser.add_argument("--send", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.send:
        port, n_messages = args.send.split("|")
        run_sender(int(port), int(n_messages))
        return 0
    from engine.control.osc_surface import DEFAULT_SWITCH_INTERVAL_S

    interval_s = (
        args.switch_interval_ms / 1000.0
        if args.switch_interval_ms is not None
        else DEFAULT_SWITCH_INTERVAL_S
    )
    receive = build_nogil_loop()
    sys.setswitchinterval(interval_s)
    machine = {
        "python": platform.python_version(),
        "cores": os.cpu_count(),
        "switch_interval_ms": interval_s * 1e3,
        "receive_nice": RECEIVE_NICE,
        "rate_hz": RATE_HZ,
    }
    print(f"machine: {machine}")
    rows = []
    print(
        f"{'loop':<12} {'round':>5} {'n':>5} {'p50 us':>7} {'p99 us':>7} "
        f"{'max us':>7} {'load':>5} {'steal ms':>8} {'busy cpu-wait %':>15}"
    )
    priorities = (0, args.fifo) if args.fifo else (0,)
    for round_index in range(args.rounds):
        for loop, fifo in ((lp, f) for f in priorities for lp in ("python", "nogil")):
            row = measure(loop, args.seconds, receive, fifo)
            row["round"] = round_index + 1
            rows.append(row)
            name = f"{loop}{'+fifo' if fifo else ''}"
            print(
                f"{name:<12} {row['round']:>5} {row['n']:>5} {row['p50_us']:>7.0f} "
                f"{row['p99_us']:>7.0f} {row['max_us']:>7.0f} "
                f"{row['load_average_1min']:>5.2f} {row['steal_ms']:>8} "
                f"{row['busy_thread_waiting_for_cpu_pct']:>15}"
            )
    write_json(args.json, {"machine": machine, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
