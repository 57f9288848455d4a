"""What a shorter GIL switch interval costs Python work in the engine process.

    python benchmarks/bench_switch_interval.py [--seconds 2] [--rounds 5]
        [--json benchmarks/out/switch_interval.json]

The OSC surface sets ``sys.setswitchinterval`` so that a receive thread waiting
for the GIL beside a busy Python thread waits less (benchmarks/RESULTS.md, "OSC
against a scene playing live"). A switch is only forced when a second thread
wants the GIL, so the interval costs something only where two threads want
it at once. Two cases, for intervals 5 (CPython's default), 1, 0.5 and 0.25 ms:

- ``two busy threads``: two pure-Python threads that never sleep (a model's
  glue and a game bridge's, say): they hand the GIL over once per interval;
- ``busy + 200 Hz waker``: one busy thread beside a thread that wakes 200
  times a second and does a few microseconds of Python (an OSC sender's
  messages, as bench_osc_engine.py sends them).

The figures are the busy threads' loops per second of their own CPU time (read
from /proc/self/task/<id>/schedstat), so time the machine's other processes
take is left out, and how often they gave up the CPU to wait (voluntary
context switches: GIL hand-overs, counted by the kernel, immune to the
machine's noise); rounds alternate the intervals and the best round counts.

Thread: the main thread runs everything.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_osc import BusyThread
from benchmarks.bench_osc_engine import run_time_ns
from benchmarks.report import machine, write_json

INTERVALS_MS = (5.0, 1.0, 0.5, 0.25)
WAKER_RATE_HZ = 200.0


def _waker(stop: threading.Event) -> None:
    next_s = time.monotonic()
    while not stop.is_set():
        total = 0
        for i in range(100):  # a few microseconds of Python, as a handler does
            total += i
        next_s += 1.0 / WAKER_RATE_HZ
        time.sleep(max(0.0, next_s - time.monotonic()))


def waits(native_id: int) -> int:
    """Voluntary context switches of a thread of this process so far."""
    with open(f"/proc/self/task/{native_id}/status") as status:
        for line in status:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    return 0


def measure(case: str, interval_ms: float, seconds: float) -> tuple[float, float]:
    """Loops per CPU second of the busy thread(s), and their waits per second."""
    sys.setswitchinterval(interval_ms / 1000.0)
    n_busy = 2 if case == "two busy threads" else 1
    busy = [BusyThread() for _ in range(n_busy)]
    stop = threading.Event()
    waker = threading.Thread(target=_waker, args=(stop,), daemon=True)
    for thread in busy:
        thread.start()
    if case != "two busy threads":
        waker.start()
    time.sleep(0.2)  # past the threads' start
    ids = [thread._thread.native_id for thread in busy]
    loops = [thread.loops for thread in busy]
    cpu_ns = [run_time_ns(i) for i in ids]
    switches = sum(waits(i) for i in ids)
    time.sleep(seconds)
    switches = sum(waits(i) for i in ids) - switches
    loops = [thread.loops - n for thread, n in zip(busy, loops, strict=True)]
    cpu_ns = [run_time_ns(i) - n for i, n in zip(ids, cpu_ns, strict=True)]
    stop.set()
    for thread in busy:
        thread.stop()
    if waker.is_alive():
        waker.join()
    return sum(loops) / (sum(cpu_ns) / 1e9), switches / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--json", default=str(ROOT / "benchmarks/out/switch_interval.json")
    )
    args = parser.parse_args()
    old_interval_s = sys.getswitchinterval()
    measured_on = machine()
    print(f"machine: {measured_on}")
    cases = ("two busy threads", "busy + 200 Hz waker")
    results: dict = {case: {str(ms): [] for ms in INTERVALS_MS} for case in cases}
    switch_rates: dict = {case: {str(ms): [] for ms in INTERVALS_MS} for case in cases}
    try:
        for _ in range(args.rounds):
            for case in cases:
                for interval_ms in INTERVALS_MS:
                    rate, per_s = measure(case, interval_ms, args.seconds)
                    results[case][str(interval_ms)].append(round(rate, 1))
                    switch_rates[case][str(interval_ms)].append(round(per_s))
    finally:
        sys.setswitchinterval(old_interval_s)
    print(f"\nbusy loops per CPU second (best of {args.rounds}), vs 5 ms")
    print(f"{'case':<22}" + "".join(f"{ms:>10g} ms" for ms in INTERVALS_MS))
    summary = {}
    for case in cases:
        best = {ms: max(results[case][str(ms)]) for ms in INTERVALS_MS}
        summary[case] = {str(ms): best[ms] for ms in INTERVALS_MS}
        print(
            f"{case:<22}"
            + "".join(
                f"{best[ms]:>8.0f} {100 * best[ms] / best[5.0] - 100:+3.0f}%"
                for ms in INTERVALS_MS
            )
        )
    print("\nwaits for the GIL per second (median), both busy threads together")
    medians = {}
    for case in cases:
        medians[case] = {
            str(ms): int(np.median(switch_rates[case][str(ms)])) for ms in INTERVALS_MS
        }
        print(
            f"{case:<22}"
            + "".join(f"{medians[case][str(ms)]:>13}" for ms in INTERVALS_MS)
        )
    measured_on["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    write_json(
        args.json,
        {
            "machine": measured_on,
            "best": summary,
            "runs": results,
            "waits_per_s_median": medians,
            "waits_per_s": switch_rates,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
