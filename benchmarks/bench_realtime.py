"""Real-time benchmark: the engine played live for a minute beside a busy Python
thread, under a private JACK dummy server at 48 kHz, at 128 and 64 frames.

    python benchmarks/bench_realtime.py [--seconds 60] [--json benchmarks/out/realtime.json]

For each block size it reports callbacks run against those the clock expected,
output underflows after the first 0.5 s, and the callback's time (mean, max) by
the wall clock and by its thread's CPU clock. "Overruns" are callbacks whose own
CPU time exceeded the time their frames last: the gaps the engine itself
caused. The server's xruns are split by cause from its log (its timer woke
late; a client was still running; a client had not started). It first runs the
same JACK server for the same time with no client at all and counts the xruns
it logs by itself: on a virtual machine whose host deschedules it, that is the
floor no client can go under.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import machine, write_json

RATE = 48000
WARMUP_S = 0.5
DEMO = "focus"


def idle_server_xruns(seconds: float, period_frames: int) -> dict:
    """Xruns a JACK dummy server logs with no client connected, and the CPU
    time the host took from this machine meanwhile."""
    from engine.rt.audio_io import JackServer
    from engine.rt.stats import host_steal_ms

    server = JackServer(sample_rate=RATE, period_frames=period_frames)
    server.start()
    try:
        steal_before = host_steal_ms()
        time.sleep(seconds)
        causes = server.xrun_causes()
        return {
            "xruns": sum(causes.values()),
            "xrun_causes": causes,
            "host_steal_ms": round(host_steal_ms() - steal_before, 1),
        }
    finally:
        server.stop()


def _spin(stop: threading.Event, counter: list[int]) -> None:
    n = 0
    while not stop.is_set():
        n += 1  # pure Python: holds the GIL as much as the interpreter allows
    counter.append(n)


def play_minute(seconds: float, block_size: int) -> dict:
    """Play the demo live beside a busy Python thread; stats after warm-up."""
    import sounddevice as sd

    from engine.demos import DEMOS
    from engine.rt.audio_io import JackServer, refresh_devices
    from engine.rt.engine import Engine
    from engine.rt.live import LivePlayer
    from engine.rt.stats import host_steal_ms

    server = JackServer(sample_rate=RATE, period_frames=block_size)
    server.start()
    os.environ["JACK_DEFAULT_SERVER"] = server.name
    refresh_devices()
    try:
        engine = Engine(sample_rate=RATE)
        engine.load(DEMOS[DEMO]())
        player = LivePlayer(engine, block_size=block_size)
        stop = threading.Event()
        spins: list[int] = []
        spinner = threading.Thread(target=_spin, args=(stop, spins))
        player.start()
        spinner.start()
        try:
            time.sleep(WARMUP_S)
            warm = player.snapshot()
            steal_before = host_steal_ms()
            time.sleep(seconds)
            end = player.snapshot()
            steal_ms = host_steal_ms() - steal_before
        finally:
            stop.set()
            spinner.join()
            player.stop()
        causes = server.xrun_causes()
    finally:
        sd._terminate()  # drop PortAudio's JACK client before its server goes
        server.stop()
        sd._initialize()
    run = end.since(warm)
    elapsed_s = (end.last_callback_start_ns - warm.last_callback_start_ns) / 1e9
    expected = elapsed_s * RATE / block_size
    return {
        "block_size": block_size,
        "seconds": round(elapsed_s, 3),
        "callbacks_expected": round(expected, 1),
        "callbacks_run": run.callbacks,
        "callbacks_run_pct": round(100 * run.callbacks / expected, 3),
        "underflows_after_warmup": run.output_underflows,
        "server_xruns_logged": sum(causes.values()),
        "server_xrun_causes": causes,
        "overruns": run.cpu_over_budget,
        "wall_over_budget": run.wall_over_budget,
        "callback_cpu_us_mean": round(run.callback_cpu_us_mean, 1),
        "callback_cpu_us_max": round(end.callback_cpu_us_max, 1),
        "host_steal_ms": round(steal_ms, 1),
        "callback_us_mean": round(end.callback_us_mean, 1),
        "callback_us_max": round(end.callback_us_max, 1),
        "block_budget_us": round(1e6 * block_size / RATE, 1),
        "python_spins": spins[0] if spins else 0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--json", default=str(ROOT / "benchmarks/out/realtime.json"))
    args = parser.parse_args()
    os.environ.setdefault("JACK_NO_START_SERVER", "1")

    from engine.rt.audio_io import JackServer

    if not JackServer.available():
        print("jackd is not installed: `bash scripts/bootstrap.sh setup` installs it")
        return 1
    results: dict = {
        "machine": machine(),
        "sample_rate": RATE,
        "scene": DEMO,
        "idle_server_xruns": {},
        "runs": [],
    }
    for block_size in (128, 64):
        idle = idle_server_xruns(args.seconds, block_size)
        results["idle_server_xruns"][str(block_size)] = idle
        results["runs"].append(play_minute(args.seconds, block_size))

    print(
        f"\n{'block':>5} {'run/expected':>15} {'%':>7} {'underfl':>7} "
        f"{'overruns':>8} {'xruns t/r/w':>12} {'steal ms':>8} "
        f"{'idle xruns':>10} {'idle steal':>10} {'cpu mean':>8} {'cpu max':>8} "
        f"{'wall max':>8} {'budget':>7}"
    )
    for r in results["runs"]:
        idle = results["idle_server_xruns"][str(r["block_size"])]
        c = r["server_xrun_causes"]
        split = f"{c['timer']}/{c['client_running']}/{c['client_waiting']}"
        print(
            f"{r['block_size']:>5} "
            f"{r['callbacks_run']:>7}/{r['callbacks_expected']:<7.0f} "
            f"{r['callbacks_run_pct']:>7.2f} {r['underflows_after_warmup']:>7} "
            f"{r['overruns']:>8} {split:>12} {r['host_steal_ms']:>8.0f} "
            f"{idle['xruns']:>10} {idle['host_steal_ms']:>10.0f} "
            f"{r['callback_cpu_us_mean']:>8.1f} {r['callback_cpu_us_max']:>8.1f} "
            f"{r['callback_us_max']:>8.1f} {r['block_budget_us']:>7.1f}"
        )
    print(
        f"\n{args.seconds:.0f} s each; times in us. 'overruns': callbacks whose "
        "own CPU time exceeded their frames' duration (the engine's gaps); "
        "'xruns t/r/w': the server's, by cause (its timer woke late / a client "
        "still running / a client not started); 'idle': the same JACK server "
        "alone, no client, for the same time; 'steal': CPU the VM's host took "
        "meanwhile"
    )
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
