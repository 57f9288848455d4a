"""OSC against a scene playing live: fuzz, flood and latency, end to end.

    python benchmarks/bench_osc_engine.py [--quick] [--json benchmarks/out/osc_engine.json]

Every scenario plays tests/scenes/data/game.yaml live through the @cfunc
callback on a private JACK dummy server (48 kHz, 128 frames) with the whole OSC
surface on it (engine/control/osc_surface.py), as `soundscape play` runs it.
Senders are separate processes, as a game would be; times on both sides are
CLOCK_MONOTONIC, which processes share on Linux.

- fuzz: 100,000 random, byte-flipped, truncated, bundled and python-osc-breaking
  datagrams (tests/control/osc_fuzz_corpus.py) at 4,000/s: uncaught
  exceptions, handlings over 5 ms, non-finite values in any program's
  P_TARGET/P_CURRENT (checked every 5,000), underflows, RSS growth.
- flood: 10,000 valid messages/s from one source for 10 s at the default rate
  limit, while a second source asks /status ten times a second.
- latency: datagram sent -> parameter target written, for an input (written by
  the receive thread) and a layer parameter (written by the audio thread at
  the next block, from the event ring); idle and beside a busy Python thread
  (switch interval 1 ms, as the surface sets). A poller thread watches the
  target (0.1 ms sleeps, so its own resolution is ~0.1-0.2 ms).
- output: a parameter jump (ramp 0: the calm layer's 440 Hz sine cut and
  restored) -> the output changes; frames from the engine frame when the
  message was handled to the first frame that breaks the sine's recurrence
  (minus the limiter's look-ahead), against one block.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "control"))

HOST = "127.0.0.1"
RATE = 48000
BLOCK = 128
GAME = ROOT / "tests" / "scenes" / "data" / "game.yaml"

from benchmarks.bench_osc import BusyThread, stats_us

# --- sender processes -----------------------------------------------------------


def run_sender(port: int, corpus: str, rate_hz: float) -> None:
    """Send the datagrams of ``corpus`` (length-prefixed, a file) at rate_hz;
    with ``corpus`` 'osc:ADDRESS:N', send N messages to ADDRESS carrying (send
    time ns, sequence) instead. Writes nothing; paced on an absolute clock."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    from engine.control.osc_wire import encode_message

    if corpus.startswith("osc:"):
        address, count = corpus.removeprefix("osc:").rsplit(":", 1)
        datagrams = None
        n_total = int(count)
    else:
        blob = Path(corpus).read_bytes()
        datagrams, at = [], 0
        while at < len(blob):
            size = int.from_bytes(blob[at : at + 4], "big")
            datagrams.append(blob[at + 4 : at + 4 + size])
            at += 4 + size
        n_total = len(datagrams)
    batch_s = 0.002
    per_batch = max(1, round(rate_hz * batch_s))
    start_s = time.monotonic()
    sent = 0
    while sent < n_total:
        for _ in range(min(per_batch, n_total - sent)):
            if datagrams is None:
                data = encode_message(address, [time.monotonic_ns(), sent], "hi")
            else:
                data = datagrams[sent]
            try:
                sock.sendto(data, (HOST, port))
            except OSError:
                pass  # a full socket buffer: the datagram is lost, and counted
            sent += 1
        delay_s = start_s + (sent / per_batch) * batch_s - time.monotonic()
        if delay_s > 0:
            time.sleep(delay_s)


def start_sender(port: int, corpus: str, rate_hz: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, __file__, "--send", f"{port}|{corpus}|{rate_hz}"]
    )


# --- the engine under test --------------------------------------------------------


class Playing:
    """The game scene live under JACK dummy with the OSC surface on it."""

    def __init__(self, capture_frames: int = 0, **settings) -> None:
        from engine.control.osc_surface import OscSettings, OscSurface
        from engine.rt.engine import Engine
        from engine.rt.live import LivePlayer
        from engine.scenes.player import ScenePlayer

        self.player = ScenePlayer(Engine(sample_rate=RATE, seed=1), lookahead_s=0.05)
        self.player.load(GAME)
        self.engine = self.player.engine
        self.live = LivePlayer(
            self.engine, block_size=BLOCK, capture_frames=capture_frames
        )
        self.live.start()
        self.surface = OscSurface(
            self.player,
            OscSettings(port=0, **settings),
            live=self.live,
            scene_folders=[GAME.parent],
        ).start()

    def stop(self) -> None:
        self.surface.stop()
        self.live.stop()


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def nonfinite_params(engine) -> int:
    from engine.dsp.layout import P_CURRENT, P_TARGET

    return sum(
        int(np.count_nonzero(~np.isfinite(p.params[[P_TARGET, P_CURRENT]])))
        for p in (engine.slots[0], engine.slots[1], engine.master)
    )


def measure_fuzz(n_datagrams: int, rate_hz: float) -> dict:
    from osc_fuzz_corpus import fuzz_datagrams

    from engine.rt.core import C_NONFINITE

    playing = Playing(hr_bridge="all", rate_hz=1e6, burst=1e6)
    try:
        addresses = [a for a in playing.surface.server.addresses if "*" not in a]
        with tempfile.NamedTemporaryFile(suffix=".osc", delete=False) as corpus:
            for data in fuzz_datagrams(random.Random(1), addresses, n_datagrams):
                corpus.write(len(data).to_bytes(4, "big") + data)
        time.sleep(1.0)  # settle: first callbacks, first status
        rss_before = rss_mb()
        warm = playing.live.snapshot()
        sender = start_sender(playing.surface.port, corpus.name, rate_hz)
        nonfinite = 0
        checks = 0
        while sender.poll() is None:
            time.sleep(0.5)
            nonfinite += nonfinite_params(playing.engine)
            checks += 1
        time.sleep(1.0)
        nonfinite += nonfinite_params(playing.engine)
        os.unlink(corpus.name)
        end = playing.live.snapshot()
        run = end.since(warm)
        counts = playing.surface.counters()
        server = counts["server"]
        return {
            "datagrams_sent": n_datagrams,
            "received": server["received"],
            "lost_before_server": n_datagrams - server["received"],
            "malformed": server["malformed"],
            "messages": server["messages"],
            "api_applied": counts["api"]["applied"],
            "api_rejected": counts["api"]["rejected"],
            "api_clamped": counts["api"]["clamped"],
            "too_far_ahead": server["too_far_ahead"],
            "uncaught_exceptions": server["internal_errors"] + server["handler_errors"],
            "slow_handlings_over_5ms": server["slow_handlings"],
            "max_handling_us": server["max_handling_us"],
            "nonfinite_param_values": nonfinite,
            "nonfinite_output_samples": int(playing.engine.ctl[C_NONFINITE]),
            "param_checks": checks + 1,
            "callbacks": run.callbacks,
            "underflows": run.output_underflows,
            "rss_growth_mb": round(rss_mb() - rss_before, 2),
        }
    finally:
        playing.stop()


def measure_flood(seconds: float) -> dict:
    from engine.control.osc_wire import encode_message, parse

    playing = Playing(hr_bridge="none")
    try:
        time.sleep(0.5)
        warm = playing.live.snapshot()
        port = playing.surface.port
        flood = start_sender(
            port, f"osc:/soundscape/input/danger:{int(10_000 * seconds)}", 10_000
        )
        asked = answered = 0
        latencies = []
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(0.1)
            while flood.poll() is None:
                sent_ns = time.monotonic_ns()
                client.sendto(encode_message("/soundscape/status"), (HOST, port))
                asked += 1
                try:
                    data = client.recvfrom(65536)[0]
                    if parse(data)[0].address.startswith("/soundscape/status"):
                        answered += 1
                        latencies.append((time.monotonic_ns() - sent_ns) / 1e3)
                except TimeoutError:
                    pass
                time.sleep(0.1)
        time.sleep(0.3)
        run = playing.live.snapshot().since(warm)
        counts = playing.surface.counters()
        server = counts["server"]
        return {
            "seconds": seconds,
            "flood_sent": int(10_000 * seconds),
            "received": server["received"],
            "rate_limited": server["rate_limited"],
            "applied": counts["api"]["applied"],
            "status_asked": asked,
            "status_answered": answered,
            "status_p50_us": float(np.percentile(latencies, 50)) if latencies else None,
            "status_max_us": float(np.max(latencies)) if latencies else None,
            "callbacks": run.callbacks,
            "underflows": run.output_underflows,
            "slow_handlings_over_5ms": server["slow_handlings"],
        }
    finally:
        playing.stop()


def measure_latency(seconds: float, busy: bool, path: str) -> dict:
    """Send time -> target written, polled; ``path`` 'input' or 'param'."""
    from engine.dsp.layout import P_TARGET

    playing = Playing(hr_bridge="none")
    try:
        engine = playing.engine
        if path == "input":
            address = "/soundscape/input/danger"
            node, param = "tense.tone", "frequency_hz"  # follows danger
        else:
            address = "/soundscape/layer/calm/tone/frequency_hz"
            node, param = "calm.tone", "frequency_hz"
        column = engine.current.param(node, param).column
        params = engine.current.params
        sends: dict[int, int] = {}
        server = playing.surface.server
        handler = server._registry.handlers[address]

        # The benchmark's sender puts (send ns, sequence) in the message; the
        # handler is given the value it should write, derived from the sequence.
        def value_of(sequence: int) -> float:
            return 0.2 + 0.6 * ((sequence * 7919) % 1000) / 1000.0

        def wrapped(message, sender):
            send_ns, sequence = message.args
            sends[sequence] = send_ns
            value = value_of(sequence)
            if path == "param":
                value = 300.0 + 500.0 * value
            handler(message._replace(args=(value,), typetags="f"), sender)

        server.add_handler(address, wrapped)
        latencies_us = []
        stop = threading.Event()

        def poll() -> None:
            seen = params[P_TARGET, column]
            expected = {}
            while not stop.is_set():
                now = params[P_TARGET, column]
                if now != seen:
                    written_ns = time.monotonic_ns()
                    seen = now
                    for sequence, send_ns in list(sends.items()):
                        if sequence in expected:
                            continue
                        expected[sequence] = True
                        latencies_us.append((written_ns - send_ns) / 1e3)
                        sends.pop(sequence, None)
                time.sleep(0.0001)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        time.sleep(0.3)
        n_messages = int(200 * seconds)

        def run() -> None:
            sender = start_sender(
                playing.surface.port, f"osc:{address}:{n_messages}", 200
            )
            sender.wait()
            time.sleep(0.3)

        if busy:
            with BusyThread():
                run()
        else:
            run()
        stop.set()
        poller.join()
        return stats_us(latencies_us[20:])
    finally:
        playing.stop()


def measure_output_change(n_trials: int) -> dict:
    """Frames from the handled message's block to the change in the output."""
    from engine.control.osc_wire import encode_message

    capture_s = 3.0 + 0.25 * n_trials
    playing = Playing(hr_bridge="none", capture_frames=int(capture_s * RATE))
    try:
        engine = playing.engine
        server = playing.surface.server
        address = "/soundscape/layer/calm/tone/amplitude"
        handler = server._registry.handlers[address]
        handled_frames = []

        def wrapped(message, sender):
            handled_frames.append(engine.frame)
            handler(message, sender)

        server.add_handler(address, wrapped)
        time.sleep(1.0)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            for k in range(n_trials):
                amplitude = 0.0 if k % 2 == 0 else 0.2
                client.sendto(
                    encode_message(address, [amplitude, 0.0]),
                    (HOST, playing.surface.port),
                )
                time.sleep(0.2 + random.random() * 0.05)
        time.sleep(0.3)
    finally:
        playing.stop()
    audio = playing.live.capture.reshape(-1, 2)[:, 0].astype(np.float64)
    # The calm layer is a 440 Hz sine, alone: a sinusoid obeys
    # x[n] = 2 cos(w) x[n-1] - x[n-2], so the first frame that breaks the
    # recurrence by more than float32 noise is where the output changed (the
    # DC blocker's decay after a cut does not hide it, as a level gate would).
    c = 2.0 * np.cos(2.0 * np.pi * 440.0 / RATE)
    residual = np.zeros_like(audio)
    residual[2:] = np.abs(audio[2:] - c * audio[1:-1] + audio[:-2])
    delays = []
    for handled in handled_frames:
        broken = residual[handled : handled + RATE // 10] > 1e-4
        if broken.any():
            delays.append(int(np.argmax(broken)) - engine.latency_frames)
    delays_arr = np.asarray(delays)
    return {
        "trials": len(handled_frames),
        "measured": int(delays_arr.size),
        "block_frames": BLOCK,
        "limiter_lookahead_frames": engine.latency_frames,
        "frames_after_handling_p50": float(np.median(delays_arr)),
        "frames_after_handling_max": int(delays_arr.max()),
        "within_one_block": int(np.count_nonzero(delays_arr <= BLOCK)),
        "frames_after_handling": delays,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (smoke)")
    parser.add_argument("--json", default=str(ROOT / "benchmarks/out/osc_engine.json"))
    parser.add_argument("--send", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.send:
        port, corpus, rate_hz = args.send.split("|")
        run_sender(int(port), corpus, float(rate_hz))
        return 0

    from engine.rt.audio_io import JackServer, refresh_devices

    os.environ.setdefault("JACK_NO_START_SERVER", "1")
    jack = JackServer(
        f"soundscape-bench-osc-{os.getpid()}", sample_rate=RATE, period_frames=BLOCK
    )
    jack.start()
    os.environ["JACK_DEFAULT_SERVER"] = jack.name
    refresh_devices()
    sys.setswitchinterval(0.001)  # as the OSC surface sets it
    machine = {
        "python": platform.python_version(),
        "cores": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
    }
    print(f"machine: {machine}")
    results: dict = {"machine": machine}
    try:
        n_fuzz = 10_000 if args.quick else 100_000
        fuzz = measure_fuzz(n_fuzz, 4000.0)
        results["fuzz"] = fuzz
        print(f"\nfuzz: {n_fuzz} datagrams at 4,000/s against the game scene, live")
        for key, value in fuzz.items():
            print(f"  {key:<28} {value}")

        flood = measure_flood(2.0 if args.quick else 10.0)
        results["flood"] = flood
        print("\nflood: 10,000 msgs/s from one source, /status asked 10/s")
        for key, value in flood.items():
            print(f"  {key:<28} {value}")

        latency_s = 2.0 if args.quick else 6.0
        latency = {}
        for path in ("input", "param"):
            for busy in (False, True):
                name = f"{path}, {'busy thread' if busy else 'idle'}"
                latency[name] = measure_latency(latency_s, busy, path)
        results["latency_send_to_target"] = latency
        print("\ndatagram sent -> parameter target written (200 msgs/s)")
        print(f"{'case':<22} {'n':>6} {'p50 us':>8} {'p99 us':>8} {'max us':>9}")
        for name, row in latency.items():
            print(
                f"{name:<22} {row['n']:>6} {row['p50_us']:>8.0f} "
                f"{row['p99_us']:>8.0f} {row['max_us']:>9.0f}"
            )

        output = measure_output_change(10 if args.quick else 40)
        results["output_change"] = output
        print("\nmessage (ramp 0) -> output changes, frames after its block")
        for key, value in output.items():
            print(f"  {key:<28} {value}")
    finally:
        import sounddevice as sd

        sd._terminate()  # PortAudio's JACK client goes before its server
        jack.stop()
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
