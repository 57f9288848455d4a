"""OSC against a scene playing live: fuzz, flood and latency, end to end.

    python benchmarks/bench_osc_engine.py [--quick] [--runs 3] [--json benchmarks/out/osc_engine.json]

Every scenario plays tests/scenes/data/game.yaml live through the @cfunc
callback on a private JACK dummy server (48 kHz, 128 frames) with the whole OSC
surface on it (engine/control/osc_surface.py), as `soundscape play` runs it.
Senders are separate processes, as a game would be; times on both sides are
CLOCK_MONOTONIC, which processes share on Linux.

- fuzz: 100,000 random, byte-flipped, truncated, bundled and python-osc-breaking
  datagrams (tests/control/osc_fuzz_corpus.py) at 4,000/s: uncaught
  exceptions, handlings over 5 ms, non-finite values in any program's
  P_TARGET/P_CURRENT (checked every 5,000), underflows, RSS growth; each
  handling over 2 ms explained (own CPU, CPU wait, the GIL holder, steal:
  benchmarks/slow_handlings.py).
- flood: 10,000 valid messages/s from one source for 10 s at the default rate
  limit, while a second source asks /status ten times a second.
- latency: datagram sent -> parameter target written, for an input (the
  receive thread writes the targets that follow it; the audio thread reads
  them at each block) and a layer parameter (handed to the audio thread's
  event ring, which applies it at the start of the next block: "output" below
  shows that); idle and beside a busy Python thread (switch interval 1 ms, as
  the surface sets).
  The time is taken on the receive thread right after the write: a poller
  thread would itself wait for the GIL beside the busy thread.
  Input and layer-parameter sets also run with the GIL-free fast path on
  and off, interleaved ("input fast" / "input python", "param fast" / "param
  python": engine/control/osc_fast_path.py): the scene played without
  loudness holding; "held fast" / "held python": the same input sets with
  the player holding the scene's loudness as it does by default (danger's
  hold_danger gain follows it on the state's curve: an EV_SET on the
  Python path, one more follower on the fast path). ``--paths`` picks
  which of input, param, held run. Those messages carry one float64 value
  that names their sequence; the sender keeps the send times, and the
  engine side the write times (the fast path's trace, or the wrapped Python
  handler).
- output: a parameter jump (ramp 0: the calm layer's 440 Hz sine cut and
  restored) -> the output changes; frames from the engine frame when the
  message was handled to the first frame that breaks the sine's recurrence
  (minus the limiter's look-ahead), against one block.

Every scenario also reports the machine's load: the 1-minute load average,
the CPU time the VM's host stole meanwhile (/proc/stat), and the garbage
collector's pauses in the engine process. ``--runs N`` repeats each scenario
and reports every run and the best (the machine is shared).
"""

from __future__ import annotations

import argparse
import gc
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
from typing import ClassVar

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import write_json

sys.path.insert(0, str(ROOT / "tests" / "control"))

HOST = "127.0.0.1"
RATE = 48000
BLOCK = 128
GAME = ROOT / "tests" / "scenes" / "data" / "game.yaml"
SENDER_NICE = -11

from benchmarks.bench_osc import BusyThread, stats_us
from benchmarks.slow_handlings import SlowHandlingProbe, summarize

# Handlings longer than this are explained one by one (slow_handlings.py).
SLOW_PROBE_MS = 2.0

# --- sender processes -----------------------------------------------------------


def run_sender(port: int, corpus: str, rate_hz: float) -> None:
    """Send the datagrams of ``corpus`` (length-prefixed, a file) at rate_hz;
    with ``corpus`` 'osc:ADDRESS:N', send N messages to ADDRESS carrying (send
    time ns, sequence) instead. Writes nothing; paced on an absolute clock."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    try:
        # Ahead of the machine's other work, so that being preempted between
        # taking the send time and sending does not count as latency.
        os.setpriority(os.PRIO_PROCESS, 0, SENDER_NICE)
    except OSError:
        pass
    from engine.control.osc_wire import encode_message

    sent_ns: list[int] = []
    if corpus.startswith("val:"):
        # val:ADDRESS:N:FILE:OFFSET:SCALE: N sets of one value naming the
        # sequence (OFFSET + SCALE * sequence_value); the send times go to
        # FILE (.npy) at the end.
        address, count, times_file, offset, scale = corpus.removeprefix("val:").rsplit(
            ":", 4
        )
        datagrams = None
        n_total = int(count)
    elif corpus.startswith("osc:"):
        address, count = corpus.removeprefix("osc:").rsplit(":", 1)
        datagrams = None
        n_total = int(count)
        times_file = ""
    else:
        blob = Path(corpus).read_bytes()
        datagrams, at = [], 0
        while at < len(blob):
            size = int.from_bytes(blob[at : at + 4], "big")
            datagrams.append(blob[at + 4 : at + 4 + size])
            at += 4 + size
        n_total = len(datagrams)
        times_file = ""
    batch_s = 0.002
    per_batch = max(1, round(rate_hz * batch_s))
    start_s = time.monotonic()
    sent = 0
    while sent < n_total:
        for _ in range(min(per_batch, n_total - sent)):
            if times_file:
                value = float(offset) + float(scale) * sequence_value(sent, n_total)
                data = encode_message(address, [value], "d")
                sent_ns.append(time.monotonic_ns())
            elif datagrams is None:
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
    if times_file:
        np.save(times_file, np.array(sent_ns, dtype=np.int64))


def sequence_value(sequence: int, n_total: int) -> float:
    """The input value message ``sequence`` carries: in 0.2..0.8, one each."""
    return 0.2 + 0.6 * sequence / n_total


def sequence_of(value: float, n_total: int) -> int:
    return round((value - 0.2) / 0.6 * n_total)


def start_sender(port: int, corpus: str, rate_hz: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, __file__, "--send", f"{port}|{corpus}|{rate_hz}"]
    )


# --- the engine under test --------------------------------------------------------


class Playing:
    """The game scene live under JACK dummy with the OSC surface on it."""

    # Surface settings every scenario uses (main() sets them from the options).
    common: ClassVar[dict] = {}

    def __init__(
        self, capture_frames: int = 0, hold_loudness: bool = True, **settings
    ) -> None:
        from engine.control.osc_surface import OscSettings, OscSurface
        from engine.rt.engine import Engine
        from engine.rt.live import LivePlayer
        from engine.scenes.player import ScenePlayer

        self.player = ScenePlayer(
            Engine(sample_rate=RATE, seed=1),
            lookahead_s=0.05,
            hold_loudness=hold_loudness,
        )
        self.player.load(GAME)
        self.engine = self.player.engine
        self.live = LivePlayer(
            self.engine, block_size=BLOCK, capture_frames=capture_frames
        )
        self.live.start()
        self.surface = OscSurface(
            self.player,
            OscSettings(port=0, **{**self.common, **settings}),
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


def steal_ms() -> float:
    """CPU time stolen from this VM by its host so far (all CPUs)."""
    with open("/proc/stat") as stat:
        fields = stat.readline().split()
    return int(fields[8]) * 1000.0 / os.sysconf("SC_CLK_TCK")


class Conditions:
    """Load, steal and garbage-collector pauses over one scenario."""

    def __enter__(self) -> Conditions:  # noqa: PYI034 - Self needs Python 3.11
        self.pauses_ms: list[float] = []
        self.full_collections = 0
        self._started_ns = 0
        gc.callbacks.append(self._on_gc)
        self._steal_ms = steal_ms()
        self._start_s = time.monotonic()
        return self

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started_ns = time.perf_counter_ns()
        else:
            self.pauses_ms.append((time.perf_counter_ns() - self._started_ns) / 1e6)
            self.full_collections += info["generation"] == 2

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._on_gc)
        self.result = {
            "seconds": round(time.monotonic() - self._start_s, 1),
            "load_average_1min": round(os.getloadavg()[0], 2),
            "steal_ms": round(steal_ms() - self._steal_ms),
            "gc_collections": len(self.pauses_ms),
            "gc_full_collections": self.full_collections,
            "gc_max_pause_ms": round(max(self.pauses_ms, default=0.0), 2),
        }


def run_delay_ns(native_id: int) -> int:
    """Time a thread of this process has spent runnable but waiting for a
    CPU (the scheduler's run delay), in ns; 0 if unknown."""
    try:
        with open(f"/proc/self/task/{native_id}/schedstat") as stat:
            return int(stat.read().split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def run_time_ns(native_id: int) -> int:
    """CPU time a thread of this process has run, in ns; 0 if unknown."""
    try:
        with open(f"/proc/self/task/{native_id}/schedstat") as stat:
            return int(stat.read().split()[0])
    except (OSError, IndexError, ValueError):
        return 0


def nonfinite_params(engine) -> int:
    from engine.dsp.layout import P_CURRENT, P_TARGET

    return sum(
        int(np.count_nonzero(~np.isfinite(p.params[[P_TARGET, P_CURRENT]])))
        for p in (engine.slots[0], engine.slots[1], engine.master)
    )


def record_slowest(server, slowest: list, busiest: list, keep: int = 8) -> None:
    """Wrap the server's datagram handling to keep the ``keep`` slowest and
    the ``keep`` that ran longest (thread CPU time), each as (ms, of which
    the thread ran ms, datagram): what a slow handling was. The datagrams
    are parsed afterwards (:func:`name_datagrams`), not inside the timing."""
    receive = server._receive

    def timed(data, n_bytes, sender, source, buckets, counts):
        started_ns = time.monotonic_ns()
        started_cpu_ns = time.thread_time_ns()
        try:
            receive(data, n_bytes, sender, source, buckets, counts)
        finally:
            took_ms = (time.monotonic_ns() - started_ns) / 1e6
            ran_ms = (time.thread_time_ns() - started_cpu_ns) / 1e6
            for found, key, value in ((slowest, 0, took_ms), (busiest, 1, ran_ms)):
                if len(found) < keep or value > found[-1][key]:
                    found.append((round(took_ms, 2), round(ran_ms, 2), bytes(data)))
                    found.sort(key=lambda row, k=key: row[k], reverse=True)
                    del found[keep:]

    server._receive = timed


def name_datagrams(found: list) -> list:
    """(ms, ms, datagram) rows -> (ms, ms, first address, messages)."""
    from engine.control.osc_wire import OscError, parse

    named = []
    for took_ms, ran_ms, data in found:
        try:
            messages = parse(data)
            what = (messages[0].address[:60], len(messages))
        except (OscError, IndexError):
            what = ("(malformed)", 0)
        named.append((took_ms, ran_ms, *what))
    return named


def measure_fuzz(n_datagrams: int, rate_hz: float) -> dict:
    from osc_fuzz_corpus import fuzz_datagrams

    from engine.rt.core import C_NONFINITE

    playing = Playing(hr_bridge="all", rate_hz=1e6, burst=1e6)
    slowest: list = []
    busiest: list = []
    record_slowest(playing.surface.server, slowest, busiest)
    probe = SlowHandlingProbe(playing.surface.server, threshold_ms=SLOW_PROBE_MS)
    try:
        addresses = [a for a in playing.surface.server.addresses if "*" not in a]
        with tempfile.NamedTemporaryFile(suffix=".osc", delete=False) as corpus:
            for data in fuzz_datagrams(random.Random(1), addresses, n_datagrams):
                corpus.write(len(data).to_bytes(4, "big") + data)
        time.sleep(1.0)  # settle: first callbacks, first status
        rss_before = rss_mb()
        warm = playing.live.snapshot()
        with Conditions() as conditions:
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
        slow = probe.finish()  # while the engine's threads still run
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
            "over_budget": server["over_budget"],
            "uncaught_exceptions": server["internal_errors"] + server["handler_errors"],
            "slow_handlings_over_5ms": server["slow_handlings"],
            "of_which_working_over_5ms": server["slow_handlings_working"],
            "max_handling_us": server["max_handling_us"],
            "max_handling_cpu_us": server["max_handling_cpu_us"],
            "nonfinite_param_values": nonfinite,
            "nonfinite_output_samples": int(playing.engine.ctl[C_NONFINITE]),
            "param_checks": checks + 1,
            "callbacks": run.callbacks,
            "underflows": run.output_underflows,
            "overruns": run.cpu_over_budget,
            "rss_growth_mb": round(rss_mb() - rss_before, 2),
            **conditions.result,
            "slowest_datagrams_ms": name_datagrams(slowest),
            "busiest_datagrams_ms": name_datagrams(busiest),
            "over_5ms_by_cause": summarize(slow),
            f"handlings_over_{SLOW_PROBE_MS:g}ms": slow,
        }
    finally:
        playing.stop()
        probe.close()


def measure_flood(seconds: float) -> dict:
    from engine.control.osc_wire import encode_message, parse

    playing = Playing(hr_bridge="none")
    try:
        time.sleep(0.5)
        warm = playing.live.snapshot()
        port = playing.surface.port
        conditions = Conditions().__enter__()
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
        conditions.__exit__()
        run = playing.live.snapshot().since(warm)
        counts = playing.surface.counters()
        server = counts["server"]
        return {
            "flood_seconds": seconds,
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
            "overruns": run.cpu_over_budget,
            "slow_handlings_over_5ms": server["slow_handlings"],
            "of_which_working_over_5ms": server["slow_handlings_working"],
            "max_handling_us": server["max_handling_us"],
            "max_handling_cpu_us": server["max_handling_cpu_us"],
            **conditions.result,
        }
    finally:
        playing.stop()


LATENCY_PATHS = {
    # path: (address, node whose target the message writes, its parameter)
    "input": ("/soundscape/input/danger", "tense.tone", "frequency_hz"),
    "param": ("/soundscape/layer/calm/tone/frequency_hz", "calm.tone", "frequency_hz"),
}


def measure_latency(seconds: float, busy: bool, path: str) -> dict:
    """Send time -> target written (``path`` 'input') or event in the audio
    thread's ring ('param'), stamped on the receive thread."""
    from engine.dsp.layout import P_TARGET
    from engine.rt.ring import RING_WRITE

    playing = Playing(hr_bridge="none")
    try:
        engine = playing.engine
        address, node, param = LATENCY_PATHS[path]
        column = engine.current.param(node, param).column
        params = engine.current.params
        positions = engine.ring.positions
        server = playing.surface.server
        handler = server._registry.handlers[address]
        latencies_us: list[float] = []
        missed = 0

        # The sender puts (send ns, sequence) in the message; the handler is
        # given a value derived from the sequence, new each time.
        def wrapped(message, sender):
            nonlocal missed
            send_ns, sequence = message.args
            value = 0.2 + 0.6 * ((sequence * 7919) % 1000) / 1000.0
            if path == "input":
                args, tags = (value,), "f"
            else:
                args, tags = (300.0 + 500.0 * value,), "f"
            before = (params[P_TARGET, column], positions[RING_WRITE])
            handler(message._replace(args=args, typetags=tags), sender)
            written_ns = time.monotonic_ns()
            after = (params[P_TARGET, column], positions[RING_WRITE])
            changed = after[1] > before[1] if path == "param" else after[0] != before[0]
            if changed:
                latencies_us.append((written_ns - send_ns) / 1e3)
            else:
                missed += 1

        server.add_handler(address, wrapped)
        time.sleep(0.3)
        n_messages = int(200 * seconds)

        def run() -> None:
            sender = start_sender(
                playing.surface.port, f"osc:{address}:{n_messages}", 200
            )
            sender.wait()
            time.sleep(0.3)

        receiver = next(
            t for t in threading.enumerate() if t.name.startswith("osc-udp")
        )
        waits: dict[str, float] = {}
        with Conditions() as conditions:
            started_s = time.monotonic()
            receiver_delay_ns = run_delay_ns(receiver.native_id)
            if busy:
                with BusyThread() as busy_thread:
                    busy_id = busy_thread._thread.native_id
                    busy_delay_ns = run_delay_ns(busy_id)
                    busy_run_ns = run_time_ns(busy_id)
                    run()
                    busy_delay_ns = run_delay_ns(busy_id) - busy_delay_ns
                    busy_run_ns = run_time_ns(busy_id) - busy_run_ns
                    loops = busy_thread.loops
                busy_s = time.monotonic() - started_s
                # While the busy thread waits for a CPU it holds the GIL, and
                # the receive thread waits for both.
                waits["busy_thread_waiting_for_cpu_pct"] = round(
                    100 * busy_delay_ns / 1e9 / busy_s, 1
                )
                # What the OSC path (and the switch interval) cost the busy
                # thread: its work per second, and per second it was on a CPU.
                waits["busy_loops_per_s"] = round(loops / busy_s)
                waits["busy_loops_per_cpu_s"] = round(loops / (busy_run_ns / 1e9))
            else:
                run()
            waits["receive_thread_cpu_wait_ms"] = round(
                (run_delay_ns(receiver.native_id) - receiver_delay_ns) / 1e6, 1
            )
        # The first messages meet a cold path (first allocations, caches).
        return {
            **stats_us(latencies_us[20:]),
            "not_written": missed,
            # The live player's event pump: 100/s when it polled every 10 ms.
            "pump_wakeups_per_s": round(
                getattr(playing.live, "pump_wakeups", -1)
                / conditions.result["seconds"],
                1,
            ),
            **waits,
            **conditions.result,
        }
    finally:
        playing.stop()


# path: (offset, scale) of the values sent (0.2..0.8 scaled)
TRACED_VALUES = {"input": (0.0, 1.0), "param": (300.0, 500.0), "held": (0.0, 1.0)}
# Traced paths: "held" is the input, the scene holding its loudness.
TRACED_PATHS = ("input", "param", "held")


def measure_traced_latency(
    seconds: float, busy: bool, fast: bool, path: str = "input"
) -> dict:
    """Send time -> input written or layer parameter set (the target, or
    the event in the ring on the Python path), with the fast path on (its
    own trace) or off (the handler wrapped), the scene not holding
    loudness (``path`` "held": holding it, the player's default)."""
    from engine.control.osc_fast_path import F_TRACED

    held = path == "held"
    playing = Playing(hr_bridge="none", hold_loudness=held, fast_path=fast)
    try:
        address = LATENCY_PATHS["input" if held else path][0]
        offset, scale = TRACED_VALUES[path]
        server = playing.surface.server
        n_messages = int(200 * seconds)
        written: list[tuple[float, float]] = []
        if fast:
            assert server.fast is not None, "the fast path is off here"
            trace = server.fast.start_trace(n_messages)
        else:
            assert server.fast is None
            handler = server._registry.handlers[address]

            def wrapped(message, sender):
                handler(message, sender)
                written.append((time.monotonic_ns(), message.args[0]))

            server.add_handler(address, wrapped)
        time.sleep(0.3)
        receiver = next(
            t for t in threading.enumerate() if t.name.startswith("osc-udp")
        )
        receiver_delay_ns = run_delay_ns(receiver.native_id)
        with tempfile.TemporaryDirectory() as folder:
            times_file = str(Path(folder) / "sent.npy")
            corpus = f"val:{address}:{n_messages}:{times_file}:{offset}:{scale}"
            waits: dict[str, float] = {}
            with Conditions() as conditions:
                started_s = time.monotonic()

                def run() -> None:
                    start_sender(playing.surface.port, corpus, 200).wait()
                    time.sleep(0.3)

                if busy:
                    with BusyThread() as busy_thread:
                        busy_id = busy_thread._thread.native_id
                        busy_delay_ns = run_delay_ns(busy_id)
                        run()
                        busy_delay_ns = run_delay_ns(busy_id) - busy_delay_ns
                    waits["busy_thread_waiting_for_cpu_pct"] = round(
                        100 * busy_delay_ns / 1e9 / (time.monotonic() - started_s), 1
                    )
                else:
                    run()
            sent_ns = np.load(times_file)
        if fast:
            n_traced = int(server.fast.counters[F_TRACED])
            written = [(row[0], row[1]) for row in trace[:n_traced]]
        latencies_us = []
        for written_ns, value in written:
            sequence = sequence_of((value - offset) / scale, n_messages)
            if 0 <= sequence < len(sent_ns):
                latencies_us.append((written_ns - sent_ns[sequence]) / 1e3)
        return {
            **stats_us(latencies_us[20:]),
            "not_written": n_messages - len(latencies_us),
            "fast_applied": server.fast_counts().get("applied", 0),
            "udp_scheduling": server.udp_scheduling,
            "pump_wakeups_per_s": round(
                getattr(playing.live, "pump_wakeups", -1)
                / conditions.result["seconds"],
                1,
            ),
            "receive_thread_cpu_wait_ms": round(
                (run_delay_ns(receiver.native_id) - receiver_delay_ns) / 1e6, 1
            ),
            **waits,
            **conditions.result,
        }
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


SCENARIOS = ("fuzz", "flood", "latency", "output")


def _print_rows(title: str, rows: list[dict]) -> None:
    """One column per run, one line per figure."""
    print(f"\n{title}")
    for key in rows[0]:
        if key == "frames_after_handling" or key.startswith("handlings_over_"):
            continue
        values = "  ".join(f"{row.get(key)!s:>12}" for row in rows)
        print(f"  {key:<28} {values}")


def _print_slow(rows: list[dict]) -> None:
    key = f"handlings_over_{SLOW_PROBE_MS:g}ms"
    print(f"\nhandlings over {SLOW_PROBE_MS:g} ms, why (ms)")
    print(
        f"{'run':>3} {'wall':>6} {'cpu':>5} {'cpuwait':>7} {'off':>5} {'sw':>3} "
        f"{'before':>6} {'steal':>5} {'cause':<28} address / others"
    )
    for k, row in enumerate(rows):
        for r in row[key]:
            others = ", ".join(f"{n} {ms}" for n, ms in r.get("others_ms", {}).items())
            waits = ", ".join(
                f"{n} {ms}" for n, ms in r.get("others_cpu_wait_ms", {}).items()
            )
            print(
                f"{k + 1:>3} {r['wall_ms']:>6} {r['cpu_ms']:>5} {r['cpu_wait_ms']:>7} "
                f"{r['off_ms']:>5} {r['switches']:>3} {r['before_ms']!s:>6} "
                f"{r.get('steal_ms', '-')!s:>5} {r['cause']:<28} {r['address']} "
                f"[{r.get('window_ms')} ms ran: {others}; waited: {waits}]"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (smoke)")
    parser.add_argument("--runs", type=int, default=1, help="repeat each scenario")
    parser.add_argument(
        "--only", default=",".join(SCENARIOS), help="comma-separated scenarios"
    )
    parser.add_argument("--json", default=str(ROOT / "benchmarks/out/osc_engine.json"))
    parser.add_argument(
        "--switch-interval-ms", type=float, help="default: the OSC surface's"
    )
    parser.add_argument(
        "--thread-nice", type=int, help="OSC receive threads (default: the surface's)"
    )
    parser.add_argument(
        "--udp-fifo",
        type=int,
        help="SCHED_FIFO priority of the UDP receive thread, 0 for none "
        "(default: the surface's)",
    )
    parser.add_argument(
        "--freeze-gc",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="freeze start-up objects out of collections, as the surface does",
    )
    parser.add_argument(
        "--paths",
        default=",".join(TRACED_PATHS),
        help="latency: comma-separated of input, param, held",
    )
    parser.add_argument("--send", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.send:
        port, corpus, rate_hz = args.send.split("|")
        run_sender(int(port), corpus, float(rate_hz))
        return 0
    paths = args.paths.split(",")
    if set(paths) - set(TRACED_PATHS):
        parser.error(f"--paths: use some of {TRACED_PATHS}")
    only = args.only.split(",")
    unknown = set(only) - set(SCENARIOS)
    if unknown:
        parser.error(f"--only: no scenario {sorted(unknown)}; use {SCENARIOS}")

    from engine.rt.audio_io import JackServer, refresh_devices

    os.environ.setdefault("JACK_NO_START_SERVER", "1")
    jack = JackServer(
        f"soundscape-bench-osc-{os.getpid()}", sample_rate=RATE, period_frames=BLOCK
    )
    jack.start(timeout_s=30.0)  # a loaded machine starts jackd slowly
    os.environ["JACK_DEFAULT_SERVER"] = jack.name
    refresh_devices()
    from engine.control.osc_surface import OscSettings

    defaults = OscSettings()
    interval_s = (
        args.switch_interval_ms / 1000.0
        if args.switch_interval_ms is not None
        else defaults.switch_interval_s
    )
    nice = defaults.thread_nice if args.thread_nice is None else args.thread_nice
    fifo = defaults.udp_fifo_priority if args.udp_fifo is None else args.udp_fifo
    Playing.common = {
        "switch_interval_s": interval_s,
        "thread_nice": nice,
        "udp_fifo_priority": fifo or None,
        "freeze_gc": args.freeze_gc,
    }
    machine = {
        "python": platform.python_version(),
        "cores": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
        "runs": args.runs,
        "switch_interval_ms": interval_s * 1000.0,
        "osc_thread_nice": nice,
        "osc_udp_fifo_priority": fifo or None,
        "freeze_gc": args.freeze_gc,
    }
    print(f"machine: {machine}")
    results: dict = {"machine": machine}
    runs = range(args.runs)
    try:
        if "fuzz" in only:
            n_fuzz = 10_000 if args.quick else 100_000
            rows = [measure_fuzz(n_fuzz, 4000.0) for _ in runs]
            results["fuzz"] = rows
            _print_rows(f"fuzz: {n_fuzz} datagrams at 4,000/s, game scene live", rows)
            _print_slow(rows)
        if "flood" in only:
            rows = [measure_flood(2.0 if args.quick else 10.0) for _ in runs]
            results["flood"] = rows
            _print_rows("flood: 10,000 msgs/s from one source, /status 10/s", rows)
        if "latency" in only:
            latency_s = 2.0 if args.quick else 6.0
            latency: dict[str, list[dict]] = {}
            # Interleaved: each run measures every case once, in turn.
            for _ in runs:
                for busy in (False, True):
                    where = "busy" if busy else "idle"
                    for path in LATENCY_PATHS:
                        if path not in paths:
                            continue
                        row = measure_latency(latency_s, busy, path)
                        latency.setdefault(f"{path}, {where}", []).append(row)
                    for path in paths:
                        for fast in (True, False):
                            row = measure_traced_latency(latency_s, busy, fast, path)
                            way = "fast" if fast else "python"
                            name = f"{path} {way}, {where}"
                            latency.setdefault(name, []).append(row)
            results["latency_send_to_target"] = latency
            print("\ndatagram sent -> target written / event in the ring (200/s)")
            print(
                f"{'case':<22} {'run':>3} {'n':>5} {'p50 us':>7} {'p99 us':>7} "
                f"{'max us':>7} {'load':>5} {'steal ms':>8} {'gc max ms':>9} "
                f"{'busy cpu-wait %':>15} {'recv cpu-wait ms':>16} "
                f"{'busy loops/s':>12} {'pump wakes/s':>12} {'fast':>5}"
            )
            for name, rows in latency.items():
                for k, row in enumerate(rows):
                    print(
                        f"{name:<22} {k + 1:>3} {row['n']:>5} {row['p50_us']:>7.0f} "
                        f"{row['p99_us']:>7.0f} {row['max_us']:>7.0f} "
                        f"{row['load_average_1min']:>5.2f} {row['steal_ms']:>8} "
                        f"{row['gc_max_pause_ms']:>9} "
                        f"{row.get('busy_thread_waiting_for_cpu_pct', '-')!s:>15} "
                        f"{row['receive_thread_cpu_wait_ms']:>16} "
                        f"{row.get('busy_loops_per_s', '-')!s:>12} "
                        f"{row['pump_wakeups_per_s']:>12} "
                        f"{row.get('fast_applied', '-')!s:>5}"
                    )
        if "output" in only:
            rows = [measure_output_change(10 if args.quick else 40) for _ in runs]
            results["output_change"] = rows
            _print_rows(
                "message (ramp 0) -> output changes, frames after its block", rows
            )
    finally:
        import sounddevice as sd

        sd._terminate()  # PortAudio's JACK client goes before its server
        jack.stop()
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
