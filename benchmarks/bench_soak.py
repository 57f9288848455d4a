"""Soak: the real daemon playing a scene for minutes in real time under steady
OSC traffic, watched for underflows, memory growth and CPU drift.

    python benchmarks/bench_soak.py [--minutes 30] [--scene focus] [--rate 100]
        [--json benchmarks/out/soak.json]

The daemon runs as a subprocess on a private ``jackd -d dummy`` (real time,
128-frame blocks). This process sends ``--rate`` OSC messages per second over
UDP, round-robin over the scene's inputs (``/input/<name>``, values swept
across their range) and its layers' gains (``/layer/<layer>/gain_db``
between -3 and 0 dB); a scene with a model (issue #5) is driven the same way
by passing its name. Every ``SAMPLE_S`` it reads the daemon's ``/status``
(callbacks, underflows), its RSS (``/proc/PID/status``) and its CPU time
(``/proc/PID/stat``, every thread: audio, OSC, pump, model).

Reported, after a warm-up (``--warmup-s``, default 60 s):

- underflows after warm-up (target 0);
- RSS growth from the end of warm-up to the end (target < 5 MB);
- CPU per audio second (ms of CPU per second of audio played) in the first and
  the last window (5 minutes, or a third of the run after warm-up when that
  is shorter), and their ratio (target within 10 %);
- host CPU steal over the run (a VM's host taking the CPU explains misses).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import machine, write_json

sys.path.insert(0, str(ROOT / "tests" / "daemon"))

SAMPLE_S = 5.0
RATE_HZ = 48000
BLOCK = 128


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Traffic:
    """``rate_hz`` OSC messages per second to the daemon, on a thread."""

    def __init__(self, port: int, status: dict, rate_hz: float) -> None:
        from engine.control.osc_wire import encode_message

        self.packets: list[list[bytes]] = []
        for name in status.get("inputs", {}):
            self.packets.append(
                [
                    encode_message(f"/soundscape/input/{name}", [k / 10.0], "f")
                    for k in range(11)
                ]
            )
        for layer in status.get("layers", {}):
            self.packets.append(
                [
                    encode_message(
                        f"/soundscape/layer/{layer}/gain_db", [-k / 3.0], "f"
                    )
                    for k in range(10)
                ]
            )
        if not self.packets:
            raise RuntimeError("the scene has no inputs or layers to drive")
        self.port = port
        self.rate_hz = rate_hz
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)

    def _run(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        period_s = 1.0 / self.rate_hz
        next_s = time.monotonic()
        while not self._stop.is_set():
            family = self.packets[self.sent % len(self.packets)]
            packet = family[(self.sent // len(self.packets)) % len(family)]
            sock.sendto(packet, ("127.0.0.1", self.port))
            self.sent += 1
            next_s += period_s
            delay_s = next_s - time.monotonic()
            if delay_s > 0:
                time.sleep(delay_s)
            elif delay_s < -1.0:
                next_s = time.monotonic()  # fell behind (host paused us): resync
        sock.close()


def run(minutes: float, scene: str, rate_hz: float, warmup_s: float) -> dict:
    from daemon_process import DaemonProcess, daemon_env, free_port

    from engine.rt.audio_io import JackServer
    from engine.rt.stats import host_steal_ms

    home = Path(tempfile.mkdtemp(prefix="soundscape-soak-"))
    server = JackServer(f"soundscape-soak-{os.getpid()}", RATE_HZ, BLOCK)
    server.start()
    port = free_port()
    daemon = DaemonProcess(
        daemon_env(home, server.name, home / "cache"), port, "--scene", scene
    )
    samples = []
    traffic = None
    try:
        first = daemon.wait_ready()
        traffic = Traffic(port, first, rate_hz)
        traffic.start()
        started = time.monotonic()
        steal_before = host_steal_ms()
        end = started + 60.0 * minutes
        while time.monotonic() < end:
            time.sleep(min(SAMPLE_S, max(end - time.monotonic(), 0.0)))
            status = daemon.status(timeout_s=2.0)
            samples.append(
                {
                    "t_s": round(time.monotonic() - started, 2),
                    "callbacks": status["callbacks"],
                    "underflows": status["underflows"],
                    "overruns": status["overruns"],
                    "rss_mb": round(rss_mb(daemon.pid), 2),
                    "cpu_s": round(cpu_s(daemon.pid), 3),
                    "osc_applied": status["osc"]["applied"],
                    "osc_rejected": status["osc"]["rejected"],
                    "output": status["output"]["state"],
                }
            )
            s = samples[-1]
            print(
                f"{s['t_s']:>7.0f} s  underflows {s['underflows']:>4}  rss "
                f"{s['rss_mb']:7.1f} MB  cpu {s['cpu_s']:7.1f} s  osc "
                f"{s['osc_applied']}",
                flush=True,
            )
        steal_ms = host_steal_ms() - steal_before
    finally:
        if traffic is not None:
            traffic.stop()
        exit_code = daemon.stop()
        server.stop()
    return {
        "samples": samples,
        "sent": traffic.sent if traffic else 0,
        "exit_code": exit_code,
        "host_steal_ms": round(steal_ms, 1),
        "warmup_s": warmup_s,
    }


def cpu_ms_per_audio_s(a: dict, b: dict) -> float:
    audio_s = (b["callbacks"] - a["callbacks"]) * BLOCK / RATE_HZ
    return 1000.0 * (b["cpu_s"] - a["cpu_s"]) / audio_s if audio_s > 0 else float("nan")


def summarise(result: dict, minutes: float) -> dict:
    samples = result["samples"]
    warm = [s for s in samples if s["t_s"] >= result["warmup_s"]]
    if len(warm) < 3:
        raise RuntimeError("run too short for its warm-up: raise --minutes")
    run_s = warm[-1]["t_s"] - warm[0]["t_s"]
    window_s = min(300.0, run_s / 3.0)
    first_end = [s for s in warm if s["t_s"] <= warm[0]["t_s"] + window_s][-1]
    last_start = next(s for s in warm if s["t_s"] >= warm[-1]["t_s"] - window_s)
    first_cpu = cpu_ms_per_audio_s(warm[0], first_end)
    last_cpu = cpu_ms_per_audio_s(last_start, warm[-1])
    sent = result["sent"]
    applied = samples[-1]["osc_applied"] if samples else 0
    return {
        "minutes": minutes,
        "underflows_total": samples[-1]["underflows"],
        "underflows_after_warmup": warm[-1]["underflows"] - warm[0]["underflows"],
        # Callbacks whose own CPU time overran their frames: the engine's part.
        "overruns_after_warmup": warm[-1]["overruns"] - warm[0]["overruns"],
        "rss_mb_after_warmup": warm[0]["rss_mb"],
        "rss_mb_end": warm[-1]["rss_mb"],
        "rss_growth_mb": round(warm[-1]["rss_mb"] - warm[0]["rss_mb"], 2),
        "cpu_window_s": round(window_s, 1),
        "cpu_ms_per_audio_s_first": round(first_cpu, 2),
        "cpu_ms_per_audio_s_last": round(last_cpu, 2),
        "cpu_last_vs_first": round(last_cpu / first_cpu, 3),
        "osc_sent": sent,
        "osc_applied": applied,
        "osc_rate_hz": round(sent / max(samples[-1]["t_s"], 1e-9), 1),
        "host_steal_ms": result["host_steal_ms"],
        "daemon_exit_code": result["exit_code"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--scene", default="focus", help="a scene name or file")
    parser.add_argument("--rate", type=float, default=100.0, help="OSC messages/s")
    parser.add_argument("--warmup-s", type=float, default=60.0)
    parser.add_argument("--json", default=str(ROOT / "benchmarks/out/soak.json"))
    args = parser.parse_args()
    from engine.rt.audio_io import JackServer

    if not JackServer.available():
        print("jackd is not installed: `bash scripts/bootstrap.sh setup` installs it")
        return 1
    warmup_s = min(args.warmup_s, 60.0 * args.minutes / 4)
    result = run(args.minutes, args.scene, args.rate, warmup_s)
    summary = summarise(result, args.minutes)
    ok = (
        summary["underflows_after_warmup"] == 0
        and summary["rss_growth_mb"] < 5.0
        and abs(summary["cpu_last_vs_first"] - 1.0) <= 0.10
        and summary["daemon_exit_code"] == 0
    )
    summary["all_within_targets"] = ok
    print(f"\n{'measure':<34} {'value':>10}  target")
    rows = [
        ("underflows after warm-up", summary["underflows_after_warmup"], "0"),
        ("… the engine's own overruns", summary["overruns_after_warmup"], "0"),
        ("RSS growth, MB", summary["rss_growth_mb"], "< 5"),
        (
            f"CPU ms/audio s, first {summary['cpu_window_s']:.0f} s",
            summary["cpu_ms_per_audio_s_first"],
            "",
        ),
        (
            f"CPU ms/audio s, last {summary['cpu_window_s']:.0f} s",
            summary["cpu_ms_per_audio_s_last"],
            "",
        ),
        ("CPU last / first", summary["cpu_last_vs_first"], "0.9..1.1"),
        ("OSC messages/s sent", summary["osc_rate_hz"], str(args.rate)),
        ("host CPU steal, ms", summary["host_steal_ms"], ""),
        ("daemon exit code", summary["daemon_exit_code"], "0"),
    ]
    for name, value, target in rows:
        print(f"{name:<34} {value:>10}  {target}")
    report = {
        "machine": machine(),
        "scene": args.scene,
        "rate_hz": args.rate,
        "warmup_s": warmup_s,
        "summary": summary,
        "samples": result["samples"],
    }
    write_json(args.json, report)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
