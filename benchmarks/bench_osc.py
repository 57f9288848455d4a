"""OSC benchmark: datagram sent -> handler called latency, parser and pattern
throughput, and a one-source flood against the rate limit.

    python benchmarks/bench_osc.py [--quick] [--json benchmarks/out/osc.json]

Senders run in separate processes (as a game would), so the server process
holds only the server and, for the "busy" rows, one pure-Python thread that
never sleeps (model glue, logging). Times on both sides come from
CLOCK_MONOTONIC (``time.monotonic_ns``), which all processes share on Linux.

- latency: one message every 2 ms carrying its send time; p50/p99/max of
  handler-call time minus send time; idle, and beside the busy thread with
  CPython's default switch interval (5 ms: how long a thread waiting for the
  GIL lets a busy one run) and with ``sys.setswitchinterval`` at 1 and 0.5 ms.
- parser: messages parsed per second for typical datagrams; pattern matches.
- flood: one source sends 10,000 messages/s for 10 s at the default limit
  (2000/s, burst 500) while a second source sends 20/s: how many were
  rate-limited, and whether every message of the second source was handled.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import machine, write_json
from engine.control.osc_pattern import AddressSet
from engine.control.osc_server import DEFAULT_BURST, DEFAULT_RATE_HZ, OscServer
from engine.control.osc_wire import encode_bundle, encode_message, parse

HOST = "127.0.0.1"


# --- the sender process -----------------------------------------------------


def run_sender(port: int, address: str, rate_hz: float, seconds: float) -> None:
    """Send ``address`` with (send time ns, sequence) at ``rate_hz`` for
    ``seconds``, in batches every 2 ms or less, on an absolute schedule."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    n_total = int(rate_hz * seconds)
    batch_s = 0.002 if rate_hz > 500 else 1.0 / rate_hz
    per_batch = max(1, round(rate_hz * batch_s))
    start_s = time.monotonic()
    sent = 0
    while sent < n_total:
        for _ in range(min(per_batch, n_total - sent)):
            data = encode_message(address, [time.monotonic_ns(), sent], "hi")
            try:
                sock.sendto(data, (HOST, port))
            except OSError:
                pass  # a full socket buffer under flood: the datagram is lost
            sent += 1
        delay_s = start_s + (sent / per_batch) * batch_s - time.monotonic()
        if delay_s > 0:
            time.sleep(delay_s)


def start_sender(port: int, address: str, rate_hz: float, seconds: float):
    return subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--send",
            f"{port},{address},{rate_hz},{seconds}",
        ]
    )


# --- measurements -----------------------------------------------------------


class BusyThread:
    """A pure-Python thread that never sleeps, holding the GIL most of the time."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.loops = 0

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            for i in range(10_000):
                total += i * i
            self.loops += 1

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> BusyThread:  # noqa: PYI034 - Self needs Python 3.11
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stats_us(latencies_us) -> dict:
    """Count, p50, p99 and max of latencies in microseconds."""
    values = np.asarray(latencies_us, dtype=np.float64)
    return {
        "n": int(values.size),
        "p50_us": float(np.percentile(values, 50)),
        "p99_us": float(np.percentile(values, 99)),
        "max_us": float(values.max()),
    }


def measure_latency(seconds: float, busy: bool, switch_interval_s: float) -> dict:
    latencies: list[int] = []

    def handler(message, sender):
        latencies.append(time.monotonic_ns() - message.args[0])

    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(switch_interval_s)
    try:
        with OscServer(port=0) as server:
            server.add_handler("/soundscape/input/danger", handler)
            busy_thread = BusyThread() if busy else None
            if busy_thread is not None:
                busy_thread.start()
            try:
                sender = start_sender(
                    server.port, "/soundscape/input/danger", 500.0, seconds
                )
                sender.wait()
                time.sleep(0.2)
            finally:
                if busy_thread is not None:
                    busy_thread.stop()
            counts = server.counters()
    finally:
        sys.setswitchinterval(old_interval)
    # The first messages meet a cold process (imports, first allocations).
    stats = stats_us(np.asarray(latencies[50:]) / 1000.0)
    stats["received"] = counts["received"]
    stats["max_handling_us"] = counts["max_handling_us"]
    return stats


def measure_parser(seconds: float) -> dict:
    cases = {
        "/soundscape/input/danger f": encode_message("/soundscape/input/danger", [0.5]),
        "/soundscape/layer/rain/gain_db fsi": encode_message(
            "/soundscape/layer/rain/gain_db", [-6.0, "ramp", 200]
        ),
        "bundle of 10 x f": encode_bundle(
            [encode_message(f"/soundscape/input/i{k}", [k * 0.1]) for k in range(10)]
        ),
    }
    results = {}
    for name, data in cases.items():
        n_messages = len(parse(data))
        count = 0
        start_s = time.perf_counter()
        while time.perf_counter() - start_s < seconds:
            for _ in range(1000):
                parse(data)
            count += 1000
        elapsed_s = time.perf_counter() - start_s
        results[name] = {
            "datagram_bytes": len(data),
            "messages_per_s": count * n_messages / elapsed_s,
            "us_per_datagram": 1e6 * elapsed_s / count,
        }
    addresses = AddressSet(
        [f"/soundscape/layer/l{i}/param{j}" for i in range(20) for j in range(20)]
    )
    for pattern in [
        "/soundscape/layer/*/param3",
        "//param1{0,1}",
        "/" + "*" * 14 + "b",
        "/" + "*a" * 127 + "b",
    ]:
        count = 0
        start_s = time.perf_counter()
        while time.perf_counter() - start_s < seconds / 4:
            addresses.match(pattern)
            count += 1
        elapsed_s = time.perf_counter() - start_s
        results[f"pattern {pattern[:28]} vs 400 addresses"] = {
            "us_per_match": 1e6 * elapsed_s / count,
            "matches": len(addresses.match(pattern)),
        }
    return results


def measure_flood(seconds: float) -> dict:
    second_latencies: list[int] = []
    flood_handled = [0]

    def flood_handler(message, sender):
        flood_handled[0] += 1

    def second_handler(message, sender):
        second_latencies.append(time.monotonic_ns() - message.args[0])

    with OscServer(port=0) as server:
        server.add_handler("/game/flood", flood_handler)
        server.add_handler("/bridge/heart_rate", second_handler)
        cpu0 = time.process_time()
        flood = start_sender(server.port, "/game/flood", 10_000.0, seconds)
        second = start_sender(server.port, "/bridge/heart_rate", 20.0, seconds)
        flood.wait()
        second.wait()
        time.sleep(0.3)
        cpu_s = time.process_time() - cpu0
        counts = server.counters()
    sent = int(10_000 * seconds)
    return {
        "seconds": seconds,
        "flood_sent": sent,
        "flood_received": counts["received"] - len(second_latencies),
        "flood_handled": flood_handled[0],
        "rate_limited": counts["rate_limited"],
        "lost_before_server": sent + int(20 * seconds) - counts["received"],
        "limit_hz": DEFAULT_RATE_HZ,
        "burst": DEFAULT_BURST,
        "second_sent": int(20 * seconds),
        "second_handled": len(second_latencies),
        "second_latency": stats_us(np.asarray(second_latencies) / 1000.0)
        if second_latencies
        else None,
        "server_cpu_percent": 100.0 * cpu_s / seconds,
        "internal_errors": counts["internal_errors"],
        "max_handling_us": counts["max_handling_us"],
        "slow_handlings_over_5ms": counts["slow_handlings"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (smoke)")
    parser.add_argument("--json", default=str(ROOT / "benchmarks/out/osc.json"))
    parser.add_argument("--send", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.send:
        port, address, rate_hz, seconds = args.send.split(",")
        run_sender(int(port), address, float(rate_hz), float(seconds))
        return 0

    latency_s = 1.0 if args.quick else 6.0
    flood_s = 2.0 if args.quick else 10.0
    measured_on = machine()
    print(f"machine: {measured_on}")
    results: dict = {"machine": measured_on}

    latency = {
        "idle": measure_latency(latency_s, busy=False, switch_interval_s=0.005),
        "busy thread": measure_latency(latency_s, busy=True, switch_interval_s=0.005),
        "busy thread, switch 1 ms": measure_latency(
            latency_s, busy=True, switch_interval_s=0.001
        ),
        "busy thread, switch 0.5 ms": measure_latency(
            latency_s, busy=True, switch_interval_s=0.0005
        ),
    }
    results["latency_send_to_handler"] = latency
    print("\ndatagram sent -> handler called (500 msgs/s from another process)")
    print(f"{'case':<28} {'n':>6} {'p50 us':>8} {'p99 us':>8} {'max us':>9}")
    for name, row in latency.items():
        print(
            f"{name:<28} {row['n']:>6} {row['p50_us']:>8.0f} {row['p99_us']:>8.0f} "
            f"{row['max_us']:>9.0f}"
        )

    throughput = measure_parser(0.5 if args.quick else 2.0)
    results["parser"] = throughput
    print("\nparser and patterns")
    for name, row in throughput.items():
        if "messages_per_s" in row:
            print(
                f"{name:<40} {row['messages_per_s']:>10.0f} msgs/s "
                f"{row['us_per_datagram']:>7.1f} us/datagram"
            )
        else:
            print(f"{name:<40} {row['us_per_match']:>10.1f} us/match")

    flood = measure_flood(flood_s)
    results["flood"] = flood
    print(f"\nflood: 10,000 msgs/s from one source for {flood_s:g} s")
    for key, value in flood.items():
        print(f"  {key}: {value}")

    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
