"""Device-loss benchmark: kill and restart a JACK server while the engine plays
under an OutputSupervisor, and time each loss's detection and recovery.

    python benchmarks/bench_device_loss.py [--cycles 20] [--down-s 0.5]
        [--json benchmarks/out/device_loss.json]

Per cycle: the server (a private ``jackd -d dummy``) is killed with SIGKILL, as
a crash would; ``detect ms`` is from the kill to the supervisor calling the
output lost, ``stall ms`` from the last audio callback to that moment. After
``--down-s`` the server is started again; ``recover s`` is from the moment it
answers ``jack_lsp`` to the first callback of the new stream (to a block), and
``frames`` checks that the same engine resumed where it stopped, not from 0.
Targets (issue #6): detection < 250 ms, recovery < 5 s, no hang, no exit.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import machine, write_json

RATE = 48000
BLOCK = 128
DEMO = "focus"
TIMEOUT_S = 30.0


def _wait(predicate, timeout_s: float = TIMEOUT_S) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.002)
    return False


def run(cycles: int, down_s: float, play_s: float) -> dict:
    from engine.daemon.output_supervisor import OutputState, OutputSupervisor
    from engine.demos import DEMOS
    from engine.rt.audio_io import JackServer, refresh_devices
    from engine.rt.engine import Engine

    server = JackServer(sample_rate=RATE, period_frames=BLOCK)
    server.start()
    os.environ["JACK_DEFAULT_SERVER"] = server.name
    refresh_devices()
    engine = Engine(sample_rate=RATE)
    engine.load(DEMOS[DEMO]())
    supervisor = OutputSupervisor(engine, device="system", block_size=BLOCK)
    supervisor.start()
    rows = []
    try:
        if not _wait(lambda: supervisor.status().callbacks > 100):
            raise RuntimeError(f"never started: {supervisor.status()}")
        for cycle in range(cycles):
            time.sleep(play_s)
            frame_before = engine.frame
            assert server.process is not None
            killed = time.monotonic()
            server.process.kill()
            server.process.wait()
            server.process = None
            lost = _wait(lambda: supervisor.status().state == OutputState.LOST)
            outage = supervisor.history[-1] if lost else {}
            time.sleep(down_s)
            server.start()
            back = time.monotonic()
            resumed = _wait(
                lambda: (
                    supervisor.status().state == OutputState.PLAYING
                    and supervisor.status().callbacks > 10
                )
            )
            status = supervisor.status()
            first = outage.get("first_callback")
            rows.append(
                {
                    "cycle": cycle + 1,
                    "detected": lost,
                    "detect_ms": round(1000 * (outage["detected"] - killed), 1)
                    if lost
                    else None,
                    "stall_ms": round(outage["stall_ms"], 1) if lost else None,
                    "resumed": resumed,
                    "recover_s": round(first - back, 3)
                    if resumed and first is not None
                    else None,
                    "frames_before": frame_before,
                    "frames_after": engine.frame,
                    "portaudio_copies": status.portaudio_copies,
                }
            )
            print(
                f"cycle {cycle + 1}: detect {rows[-1]['detect_ms']} ms, "
                f"recover {rows[-1]['recover_s']} s",
                flush=True,
            )
            if not (lost and resumed):
                break
    finally:
        stopped = supervisor.stop(timeout_s=5.0)
        server.stop()
    return {"rows": rows, "stopped_cleanly": stopped}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--down-s", type=float, default=0.5)
    parser.add_argument("--play-s", type=float, default=1.0)
    parser.add_argument("--json", default=str(ROOT / "benchmarks/out/device_loss.json"))
    args = parser.parse_args()
    os.environ.setdefault("JACK_NO_START_SERVER", "1")

    from engine.rt.audio_io import JackServer

    if not JackServer.available():
        print("jackd is not installed: `bash scripts/bootstrap.sh setup` installs it")
        return 1
    result = run(args.cycles, args.down_s, args.play_s)
    rows = result["rows"]
    print(
        f"\n{'cycle':>5} {'detect ms':>9} {'stall ms':>8} {'recover s':>9} "
        f"{'frames before':>13} {'frames after':>12}"
    )
    for r in rows:
        print(
            f"{r['cycle']:>5} {r['detect_ms'] or '-':>9} {r['stall_ms'] or '-':>8} "
            f"{r['recover_s'] if r['recover_s'] is not None else '-':>9} "
            f"{r['frames_before']:>13} {r['frames_after']:>12}"
        )
    detects = [r["detect_ms"] for r in rows if r["detect_ms"] is not None]
    recovers = [r["recover_s"] for r in rows if r["recover_s"] is not None]
    ok = (
        len(rows) == args.cycles
        and all(r["detected"] and r["resumed"] for r in rows)
        and max(detects) < 250
        and max(recovers) < 5
    )
    summary = {
        "cycles": len(rows),
        "detect_ms_median": round(statistics.median(detects), 1) if detects else None,
        "detect_ms_max": max(detects) if detects else None,
        "recover_s_median": round(statistics.median(recovers), 3) if recovers else None,
        "recover_s_max": max(recovers) if recovers else None,
        "all_within_targets": ok,
        "stopped_cleanly": result["stopped_cleanly"],
    }
    print(
        f"\ndetect ms: median {summary['detect_ms_median']}, max "
        f"{summary['detect_ms_max']} (target < 250); recover s: median "
        f"{summary['recover_s_median']}, max {summary['recover_s_max']} "
        f"(target < 5); server down {args.down_s} s per cycle"
    )
    report = {
        "machine": machine(),
        "sample_rate": RATE,
        "block_size": BLOCK,
        "scene": DEMO,
        "down_s": args.down_s,
        "summary": summary,
        "cycles": rows,
    }
    write_json(args.json, report)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
