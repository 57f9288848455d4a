"""The GIL-free receive path (engine/control/osc_fast_path.py) over real UDP on
127.0.0.1: the same datagrams through it and through the Python path write the
same bits; what it must not take goes to Python; tables follow scene loads and
handler changes and state changes (held inputs); one rate limit and one set
of counters across both paths; liblo's oscsend as a peer; and the switch
that turns it off."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from polling import wait_for

from engine.control.osc_api import OscApi
from engine.control.osc_fast_path import BUCKET_SLOTS, FastPath, take_tokens
from engine.control.osc_server import FAST_PATH_ENV, OscServer
from engine.control.osc_wire import encode_bundle, encode_message, parse
from engine.dsp.layout import P_TARGET
from engine.rt.engine import Engine
from engine.scenes.format import map_input
from engine.scenes.player import ScenePlayer

HOST = "127.0.0.1"
RATE = 48000
DATA = Path(__file__).parent / "data"
FAST_INPUTS = DATA / "fast_inputs.yaml"
GAME = Path(__file__).parents[1] / "scenes" / "data" / "game.yaml"


class Served:
    """A player on a fresh engine, its OSC API, and a server (fast or not)."""

    def __init__(
        self,
        fast: bool | None,
        scene: Path = FAST_INPUTS,
        hold: bool = False,
        live: bool = False,
        **server_options: float,
    ) -> None:
        self.player = ScenePlayer(
            Engine(sample_rate=RATE, seed=3), hold_loudness=hold, on_error=print
        )
        self.player.load(scene)
        self.engine = self.player.engine
        while self.engine.switching:  # until the first fade-in is over
            self.engine.render(RATE // 10)
        if live:
            # As a live player runs it: events due within 200 ms go to the
            # ring as they are scheduled (no audio thread here: the tests
            # render blocks, which drain the ring).
            self.engine.deliver_ahead(RATE // 5)
        self.server = OscServer(HOST, 0, tcp=False, fast_path=fast, **server_options)
        self.api = OscApi(
            self.server, self.player, scene_folders=[DATA], pump_events=live
        )
        self.server.start()
        self.api.install()

    @property
    def address(self) -> tuple[str, int]:
        return (HOST, self.server.port)

    def handled(self) -> int:
        """Datagrams that reached an end (applied, refused, rate limited...)."""
        # "dispatched" moves after the handler returned ("parsed" before).
        counts = self.server.counters()
        ends = ("dispatched", "handler_errors", "unknown_address", "rate_limited")
        refused = ("malformed", "over_budget", "pattern_refused", "too_far_ahead")
        return sum(counts[name] for name in (*ends, *refused))

    def fast_applied(self) -> int:
        return self.server.fast_counts().get("applied", 0)

    def targets(self) -> np.ndarray:
        current = self.engine.current
        assert current is not None
        return current.params[P_TARGET].copy()

    def close(self) -> None:
        self.api.close()
        self.server.stop()


@pytest.fixture
def fast() -> Iterator[Served]:
    served = Served(fast=True)
    yield served
    served.close()


def send(client: socket.socket, served: Served, packet: bytes) -> None:
    before = served.handled()
    client.sendto(packet, served.address)
    assert wait_for(lambda: served.handled() > before), "datagram never handled"


def random_sets(rng: np.random.Generator, n: int) -> list[bytes]:
    """Plain input sets of every argument type the fast path reads, in range
    (ends included), as games send them."""
    ranges = {"danger": (0.0, 1.0), "pulse": (40.0, 180.0), "idle": (-1.0, 1.0)}
    packets = []
    for k in range(n):
        name = list(ranges)[k % 3]
        low, high = ranges[name]
        address = f"/soundscape/input/{name}"
        kind = k % 7
        if kind == 0:
            packets.append(
                encode_message(address, [float(rng.uniform(low, high))], "f")
            )
        elif kind == 1:
            packets.append(
                encode_message(address, [float(rng.uniform(low, high))], "d")
            )
        elif kind == 2:
            packets.append(
                encode_message(address, [int(rng.integers(low, high + 1))], "i")
            )
        elif kind == 3:
            packets.append(
                encode_message(address, [int(rng.integers(low, high + 1))], "h")
            )
        elif kind == 4:
            packets.append(encode_message(address, [low if k % 2 else high], "d"))
        elif kind == 5 and low <= 1.0 <= high:
            packets.append(encode_message(address, [k % 2 == 0], None))
        else:
            packets.append(
                encode_message(address, [float(np.nextafter(high, low))], "d")
            )
    return packets


def test_the_fast_and_the_python_path_write_the_same_bits(client):
    fast, slow = Served(fast=True), Served(fast=False)
    try:
        assert slow.server.fast is None
        packets = random_sets(np.random.default_rng(7), 210)
        for k, packet in enumerate(packets):
            send(client, fast, packet)
            send(client, slow, packet)
            message = parse(packet)[0]
            fast_row, slow_row = fast.targets(), slow.targets()
            assert fast_row.tobytes() == slow_row.tobytes(), (
                f"datagram {k} ({message.address} {message.typetags} "
                f"{message.args}): columns {np.flatnonzero(fast_row != slow_row)} "
                "differ"
            )
            assert dict(fast.player.inputs.values) == dict(slow.player.inputs.values)
        # Every one went through the fast path there, none here.
        assert fast.fast_applied() == len(packets)
        assert fast.api.counters()["applied"] == len(packets)
        assert slow.api.counters()["applied"] == len(packets)
        assert slow.server.fast_counts() == {}
        # The values moved (not just two equal defaults).
        tone = fast.engine.current.param("tone.osc", "frequency_hz").column
        assert 199.0 < fast.targets()[tone] < 1201.0
    finally:
        fast.close()
        slow.close()


def test_a_fast_set_writes_what_map_input_gives_to_every_copy(fast, client):
    send(client, fast, encode_message("/soundscape/input/pulse", [100.0], "f"))
    assert fast.fast_applied() == 1
    scene = fast.player.scene
    spec = scene["inputs"]["pulse"]
    program = fast.engine.current
    for node, param, mapping in fast.player.inputs.followers("pulse"):
        ref = program.param(node, param)
        want = min(max(map_input(mapping, spec, 100.0), ref.minimum), ref.maximum)
        got = program.params[P_TARGET, ref.column : ref.column + ref.voices]
        assert np.all(got == want), f"{node}.{param}: {got} != {want}"
    # Visible where status, states and the model loop read inputs.
    assert fast.player.inputs.values["pulse"] == 100.0
    assert fast.player.status()["inputs"]["pulse"] == 100.0


def test_what_the_fast_path_does_not_take_goes_to_python(fast, client):
    p = "/soundscape/input/danger"
    # Out of range: Python clamps it, applies it and warns the sender.
    send(client, fast, encode_message(p, [5.0], "f"))
    reply = parse(client.recvfrom(4096)[0])[0]
    assert reply.address == "/soundscape/warning" and "clamped" in reply.args[1]
    assert fast.player.inputs.values["danger"] == 1.0
    # Not finite: refused, answered.
    send(client, fast, encode_message(p, [float("nan")], "f"))
    reply = parse(client.recvfrom(4096)[0])[0]
    assert reply.address == "/soundscape/error" and "finite" in reply.args[1]
    # A bundle, a second argument, a string, a pattern: Python's.
    send(client, fast, encode_bundle([encode_message(p, [0.5], "f")]))
    assert fast.player.inputs.values["danger"] == 0.5
    send(client, fast, encode_message(p, [0.25, 1.0], "ff"))
    send(client, fast, encode_message(p, ["0.1"], "s"))
    reply = parse(client.recvfrom(4096)[0])[0]
    assert reply.address == "/soundscape/error"
    send(client, fast, encode_message("/soundscape/input/dange?", [0.75], "f"))
    assert fast.player.inputs.values["danger"] == 0.75
    assert fast.fast_applied() == 0
    counts = fast.api.counters()
    assert counts["applied"] == 4 and counts["rejected"] == 2 and counts["clamped"] == 1


def test_an_input_a_state_trims_stays_on_the_python_path_offline(client):
    # game.yaml's danger moves the scene's loudness: the player holds it with
    # a hold_db event, which offline waits in the schedule for the renderer's
    # pump (live, the loop takes it: see the held-input tests below).
    held = Served(fast=True, scene=GAME, hold=True)
    try:
        trims = held.player._loaded.input_trims_db  # type: ignore[union-attr]
        assert any("danger" in by_input for by_input in trims.values())
        send(client, held, encode_message("/soundscape/input/danger", [0.5], "f"))
        assert held.fast_applied() == 0
        assert held.api.counters()["applied"] == 1
        assert held.player.inputs.values["danger"] == 0.5
    finally:
        held.close()


def test_a_scene_load_or_a_new_handler_makes_the_table_stale(fast, client):
    p = "/soundscape/input/danger"
    send(client, fast, encode_message(p, [0.5], "f"))
    assert fast.fast_applied() == 1
    old = fast.engine.current
    # A load (a reload does the same) puts a new program in place without
    # telling the API: the engine's request counter does.
    fast.player.load(FAST_INPUTS)
    assert fast.engine.current is not old
    send(client, fast, encode_message(p, [0.75], "f"))  # Python's: stale table
    send(client, fast, encode_message(p, [0.625], "f"))  # Python's: crossfading
    assert fast.fast_applied() == 1
    while fast.engine.switching:  # until the crossfade is over
        fast.engine.render(RATE // 10)
    send(client, fast, encode_message(p, [0.875], "f"))  # fast, new table
    assert fast.fast_applied() == 2
    column = fast.engine.current.param("tone.osc", "frequency_hz").column
    spec = fast.player.scene["inputs"]["danger"]
    mapping = fast.player.inputs.followers("danger")[0][2]
    assert fast.targets()[column] == map_input(mapping, spec, 0.875)
    assert fast.player.inputs.values["danger"] == 0.875
    # An alias or a test taking the address over: its handler is called.
    calls = []
    fast.server.add_handler(p, lambda message, sender: calls.append(message.args))
    send(client, fast, encode_message(p, [0.125], "f"))
    send(client, fast, encode_message(p, [0.25], "f"))
    assert calls == [(0.125,), (0.25,)]
    assert fast.fast_applied() == 2


def test_one_rate_limit_and_one_set_of_counters_across_both_paths(client):
    served = Served(fast=True, rate_hz=0.01, burst=5)
    try:
        p = "/soundscape/input/danger"
        for value in (0.1, 0.2, 0.3):
            send(client, served, encode_message(p, [value], "f"))  # fast
        for _ in range(3):
            send(client, served, encode_message(p, [2.0], "f"))  # Python: clamps
        send(client, served, encode_message(p, [0.4], "f"))  # fast, no tokens
        counts = served.server.counters()
        assert served.fast_applied() == 3
        assert counts["received"] == 7
        assert counts["rate_limited"] == 2
        assert counts["parsed"] == counts["dispatched"] == 5
        assert counts["max_handling_us"] > 0
        assert served.api.counters()["applied"] == 5
        assert served.player.inputs.values["danger"] == 1.0
    finally:
        served.close()


def test_liblo_oscsend_sets_an_input_through_the_fast_path(fast):
    oscsend = shutil.which("oscsend")
    if oscsend is None:
        pytest.skip("liblo-tools (oscsend) is not installed")
    port = str(fast.server.port)
    subprocess.run(
        [oscsend, "localhost", port, "/soundscape/input/danger", "f", "0.625"],
        check=True,
        timeout=10,
    )
    assert wait_for(lambda: fast.fast_applied() == 1)
    assert fast.player.inputs.values["danger"] == 0.625


def test_the_switch_turns_the_fast_path_off(monkeypatch, client):
    monkeypatch.setenv(FAST_PATH_ENV, "0")
    assert not OscServer(HOST, 0, tcp=False).fast_path_wanted
    monkeypatch.setenv(FAST_PATH_ENV, "1")
    assert OscServer(HOST, 0, tcp=False).fast_path_wanted
    assert not OscServer(HOST, 0, tcp=False, fast_path=False).fast_path_wanted
    assert not OscServer("::1", 0, tcp=False, fast_path=True).fast_path_wanted
    monkeypatch.setenv(FAST_PATH_ENV, "0")
    off = Served(fast=None)
    try:
        assert off.server.fast is None
        send(client, off, encode_message("/soundscape/input/danger", [0.5], "f"))
        assert off.api.counters()["applied"] == 1
        assert off.player.inputs.values["danger"] == 0.5
    finally:
        off.close()


def test_token_buckets_refill_and_evict_the_least_recently_seen():
    fast = FastPath(rate_hz=10.0, burst=2.0, max_datagram_bytes=64)
    keys, tokens, last_ns = fast.keys, fast.tokens, fast.last_ns

    def take(key: int, now_s: float, n: float = 1.0) -> bool:
        return take_tokens(keys, tokens, last_ns, key, n, round(now_s * 1e9), 10.0, 2.0)

    assert take(1, 0.0) and take(1, 0.0) and not take(1, 0.0)
    assert take(1, 0.1) and not take(1, 0.1)  # 10/s: one back after 0.1 s
    assert not take(2, 0.1, n=3.0) and take(2, 0.1, n=2.0)  # all or nothing
    # Far more sources than slots: the table stays bounded, each new source
    # starts with a full bucket, and an old one evicted starts afresh.
    for key in range(10, 10 + 4 * BUCKET_SLOTS):
        assert take(key, 1.0)
    assert np.count_nonzero(keys >= 0) == BUCKET_SLOTS
    # The Python path's view: (host, port) sources, the same buckets.
    now_s = 5.0
    assert fast.buckets.take(("127.0.0.1", 9000), 2.0, now_s)
    assert not fast.buckets.take(("127.0.0.1", 9000), 1.0, now_s)
    assert fast.buckets.take(("127.0.0.1", 9001), 1.0, now_s)
    key = (struct.unpack("!I", socket.inet_aton("127.0.0.1"))[0] << 16) | 9000
    assert key in keys


def test_the_trace_records_when_each_fast_set_was_written(fast, client):
    p = "/soundscape/input/danger"
    send(client, fast, encode_message(p, [0.5], "f"))  # the loop is running
    assert fast.server.fast is not None
    before_ns = time.monotonic_ns()
    trace = fast.server.fast.start_trace(2)
    for value in (0.125, 0.25, 0.375, 0.625):
        send(client, fast, encode_message(p, [value], "f"))
    # The first after start_trace went to Python (the loop took the new
    # array on its way back); two rows, then the trace is full.
    assert trace[:, 1].tolist() == [0.25, 0.375]
    assert before_ns < trace[0, 0] <= trace[1, 0] <= time.monotonic_ns()
    assert fast.fast_applied() == 4


def test_layer_parameter_sets_write_what_the_event_ring_would(client):
    # Plain sets, a ramp then a plain set of the same parameter before the
    # next block (the set must not overtake the ramp: it waits in the ring,
    # so the fast path leaves it to Python), gains, a layer built twice.
    fast, slow = Served(fast=True, live=True), Served(fast=False, live=True)
    try:
        p = "/soundscape/layer"
        rng = np.random.default_rng(11)
        steps: list[list[bytes]] = []
        for k in range(60):
            hz = float(rng.uniform(100.0, 2000.0))
            if k % 4 == 0:
                steps.append(
                    [
                        encode_message(f"{p}/tone/osc/frequency_hz", [hz, 0.05]),
                        encode_message(f"{p}/tone/osc/frequency_hz", [hz / 2], "f"),
                    ]
                )
            elif k % 4 == 1:
                steps.append([encode_message(f"{p}/hit/body/frequency_hz", [hz], "d")])
            elif k % 4 == 2:
                gain_db = float(rng.uniform(-30.0, 0.0))
                steps.append([encode_message(f"{p}/tone/gain_db", [gain_db], "f")])
                if k % 8 == 2:  # T and F are not numbers here (inputs take them)
                    steps[-1].append(encode_message(f"{p}/tone/gain_db", [True]))
                    # Not finite, where the range is unbounded (a counter).
                    inf = float("-inf") if k % 16 == 2 else float("inf")
                    steps[-1].append(encode_message(f"{p}/hit/env/trigger", [inf]))
            else:
                steps.append([encode_message(f"{p}/tone/osc/frequency_hz", [hz], "f")])
        for k, packets in enumerate(steps):
            for packet in packets:
                send(client, fast, packet)
                send(client, slow, packet)
            for served in (fast, slow):
                served.engine.render(128)
            fast_params = fast.engine.current.params
            slow_params = slow.engine.current.params
            assert fast_params.tobytes() == slow_params.tobytes(), (
                f"step {k}: {[parse(p)[0] for p in packets]}: params differ at "
                f"{np.argwhere(fast_params != slow_params).tolist()}"
            )
        # The plain sets with nothing in the ring went the fast way; each one
        # right after a ramp went to Python.
        plain = sum(len(packets) for packets in steps) - 2 * 15 - 2 * 8
        assert fast.fast_applied() == plain
        assert fast.api.counters() == slow.api.counters()
        assert fast.api.counters()["rejected"] == 2 * 8
    finally:
        fast.close()
        slow.close()


def test_layer_parameters_stay_on_python_where_events_wait_to_be_pumped(fast, client):
    # Offline (no live pump), a set waits in the schedule behind what is
    # there: only the ring's order would be kept, so Python keeps them all.
    p = "/soundscape/layer/tone/osc/frequency_hz"
    send(client, fast, encode_message(p, [300.0], "f"))
    assert fast.fast_applied() == 0
    assert fast.api.counters()["applied"] == 1


def test_mutated_datagrams_end_the_same_through_both_paths(client):
    # Byte flips, cuts and additions of datagrams the fast path takes: each
    # is either taken with the Python path's result or handed to it whole.
    fast, slow = Served(fast=True), Served(fast=False)
    try:
        rng = np.random.default_rng(23)
        seeds = random_sets(rng, 21)
        seeds.append(encode_message("/soundscape/layer/tone/gain_db", [-6.0], "f"))
        for k in range(300):
            data = bytearray(seeds[k % len(seeds)])
            mutation = k % 3
            if mutation == 0:
                at = int(rng.integers(len(data)))
                data[at] ^= 1 << int(rng.integers(8))
            elif mutation == 1:
                del data[int(rng.integers(1, len(data))) :]
            else:
                data += bytes(rng.integers(0, 256, int(rng.integers(1, 9)), np.uint8))
            send(client, fast, bytes(data))
            send(client, slow, bytes(data))
            assert fast.targets().tobytes() == slow.targets().tobytes(), (
                f"datagram {k}: {bytes(data)!r}"
            )
            assert dict(fast.player.inputs.values) == dict(slow.player.inputs.values)
        assert fast.fast_applied() > 0
        for served in (fast, slow):
            assert served.server.counters()["internal_errors"] == 0
        assert fast.api.counters() == slow.api.counters()
    finally:
        fast.close()
        slow.close()


def hold_target(served: Served, name: str, value: float) -> float:
    """The hold gain ScenePlayer.set_input schedules for ``name`` at ``value``
    in the player's current state, clamped as the ring's EV_SET clamps it."""
    player = served.player
    ref = served.engine.current.param(f"hold_{name}", "gain_db")
    hold_db = player._loaded.hold_db(player.state, name, value)  # type: ignore[union-attr]
    return min(max(hold_db, ref.minimum), ref.maximum)


def test_held_input_sets_write_what_the_ring_would_across_state_changes(client):
    # game.yaml's danger is held (its hold_danger gain follows it on each
    # state's curve). Live, plain sets go the fast way, before, across and
    # during state fades; each step renders a block on both and compares
    # every field of every parameter.
    fast = Served(fast=True, scene=GAME, hold=True, live=True)
    slow = Served(fast=False, scene=GAME, hold=True, live=True)
    try:
        p = "/soundscape/input/danger"
        rng = np.random.default_rng(5)
        types = ["f", "d", "i", "h"]

        def step(k: int, value: float | None, n_frames: int = 128) -> int:
            """Send a set (if any) to both, render; returns fast sets taken."""
            before = fast.fast_applied()
            if value is not None:
                tag = types[k % 4]
                arg = round(value) if tag in "ih" else value
                packet = encode_message(p, [arg], tag)
                send(client, fast, packet)
                send(client, slow, packet)
            taken = fast.fast_applied() - before
            for served in (fast, slow):
                served.engine.render(n_frames)
            fast_params = fast.engine.current.params
            slow_params = slow.engine.current.params
            assert fast_params.tobytes() == slow_params.tobytes(), (
                f"step {k} (danger {value}, state {fast.player.state}): params "
                f"differ at {np.argwhere(fast_params != slow_params).tolist()}"
            )
            assert dict(fast.player.inputs.values) == dict(slow.player.inputs.values)
            return taken

        hold = fast.engine.current.param("hold_danger", "gain_db").column
        k = 0
        for _ in range(12):  # the first state's curve
            assert step(k, float(rng.uniform(0.0, 1.0))) == 1
            k += 1
        value = fast.player.inputs.values["danger"]
        assert fast.targets()[hold] == hold_target(fast, "danger", value)
        # Combat lands on the next bar (up to 2 s ahead) and fades over 1 s:
        # sets go on in 0.05 s steps until well after it.
        ats = {served.player.set_state("combat") for served in (fast, slow)}
        assert len(ats) == 1
        (at,) = ats
        # The first set after a state change is Python's (the table is
        # stale: the loop would hold with the old state's curve); then the
        # loop's again, with combat's.
        assert step(k, float(rng.uniform(0.0, 1.0)), n_frames=RATE // 20) == 0
        k += 1
        curves_differ = False
        while fast.engine.frame < at + 2 * RATE:
            value = float(rng.uniform(0.0, 1.0))
            assert step(k, value, n_frames=RATE // 20) == 1
            k += 1
            explore = fast.player._loaded.hold_db("explore", "danger", value)  # type: ignore[union-attr]
            curves_differ |= explore != hold_target(fast, "danger", value)
        assert curves_differ, "combat holds danger as explore does: a weak test"
        # Explore applies at once, fading over 2 s: after the first set
        # (Python's), the fast path holds with explore's curve during it.
        for served in (fast, slow):
            served.player.set_state("explore")
        assert step(k, 0.75) == 0
        k += 1
        for _ in range(20):
            assert step(k, float(rng.uniform(0.0, 1.0)), n_frames=RATE // 40) == 1
            k += 1
        value = fast.player.inputs.values["danger"]
        assert fast.targets()[hold] == hold_target(fast, "danger", value)
        assert fast.api.counters() == slow.api.counters()
        assert fast.fast_applied() == fast.api.counters()["applied"] - 2
    finally:
        fast.close()
        slow.close()


def test_a_held_set_right_after_a_state_change_waits_for_python(client):
    served = Served(fast=True, scene=GAME, hold=True, live=True)
    try:
        p = "/soundscape/input/danger"
        player = served.player
        send(client, served, encode_message(p, [0.5], "f"))
        assert served.fast_applied() == 1
        player.set_state("explore")  # at once: its hold ramp is in the ring
        assert served.engine.ring.pending > 0
        # The first set finds the table stale (Python's, which builds it
        # again); the second finds the ramp still in the ring: Python's too,
        # or it would overtake it (its EV_SET goes after the ramp's).
        for value in (0.25, 0.375):
            send(client, served, encode_message(p, [value], "f"))
        assert served.fast_applied() == 1
        assert served.api.counters()["applied"] == 3
        assert served.server.fast.tables_built >= 2
        served.engine.render(128)  # the audio thread takes the ring
        send(client, served, encode_message(p, [0.75], "f"))
        assert served.fast_applied() == 2
        hold = served.engine.current.param("hold_danger", "gain_db").column
        assert served.targets()[hold] == hold_target(served, "danger", 0.75)
        assert player.inputs.values["danger"] == 0.75
        # Offline (events wait for the renderer's pump), held sets stay
        # Python's: the loop could only keep the ring's order.
        offline = Served(fast=True, scene=GAME, hold=True)
        try:
            send(client, offline, encode_message(p, [0.5], "f"))
            assert offline.fast_applied() == 0
            assert offline.api.counters()["applied"] == 1
        finally:
            offline.close()
    finally:
        served.close()


def test_liblo_oscsend_sets_a_held_input_of_a_shipped_scene_the_fast_way():
    oscsend = shutil.which("oscsend")
    if oscsend is None:
        pytest.skip("liblo-tools (oscsend) is not installed")
    rain = Path(__file__).parents[2] / "scenes" / "rain.yaml"
    served = Served(fast=True, scene=rain, hold=True, live=True)
    try:
        trims = served.player._loaded.input_trims_db  # type: ignore[union-attr]
        assert "intensity" in trims[served.player.state]  # held, as it ships
        port = str(served.server.port)
        for n, value in enumerate(("0.25", "0.875"), start=1):
            subprocess.run(
                [oscsend, "localhost", port, "/soundscape/input/intensity"]
                + ["f", value],
                check=True,
                timeout=10,
            )
            # Counted after the value, the followers and the hold are written.
            assert wait_for(lambda n=n: served.fast_applied() == n)
            served.engine.render(128)  # as the audio thread would, between sets
        assert served.player.inputs.values["intensity"] == 0.875
        hold = served.engine.current.param("hold_intensity", "gain_db").column
        assert served.targets()[hold] == hold_target(served, "intensity", 0.875)
        assert served.targets()[hold] != 0.0  # the curve moved it
    finally:
        served.close()


def test_held_sets_racing_state_changes_end_on_the_state_curve(client, tmp_path):
    # Sets from a sender thread while the test thread changes state and
    # renders blocks (as the audio thread would): whichever path each set
    # takes and however they interleave, once all is handled and the fades
    # are over, the hold gain is the final state's curve at the final value.
    # (Both states apply at once here: a bar-quantized ramp would land after
    # later sets and hold the value it read, on either path.)
    scene = tmp_path / "game.yaml"
    scene.write_text(GAME.read_text().replace("quantize: bar", "quantize: none"))
    served = Served(fast=True, scene=scene, hold=True, live=True)
    try:
        p = "/soundscape/input/danger"
        values = np.random.default_rng(9).uniform(0.0, 1.0, 400)
        before = served.handled()

        def sender() -> None:
            for value in values:
                client.sendto(encode_message(p, [float(value)], "d"), served.address)
                time.sleep(0.0005)

        thread = threading.Thread(target=sender)
        thread.start()
        k = 0
        while thread.is_alive():
            served.player.set_state("combat" if k % 2 else "explore")
            for _ in range(1 + k % 3):
                served.engine.render(128)
            # Between state changes, sets find a fresh table and an empty
            # ring too: both paths are taken.
            time.sleep(0.002)
            k += 1
        thread.join()
        assert wait_for(lambda: served.handled() == before + len(values))
        served.engine.render(RATE // 10)  # the ring's last events applied
        assert served.player.inputs.values["danger"] == values[-1]
        hold = served.engine.current.param("hold_danger", "gain_db").column
        want = hold_target(served, "danger", values[-1])
        params = served.engine.current.params
        assert params[P_TARGET, hold] == want
        assert k >= 4, "no state change raced the sets"
        assert 0 < served.fast_applied() < served.api.counters()["applied"]
    finally:
        served.close()


def test_a_state_change_between_check_and_write_hands_the_set_to_python(client):
    # The loop reads the state counter again after writing a held input: a
    # state change that landed meanwhile may have read the old value for its
    # hold ramp. Here the "counter" the table carries is the input's own
    # slot (its bits), so each fast write moves it, deterministically: every
    # held set is written, then handed to Python, which sets it again; its
    # token and "received" are given back, so nothing counts twice.
    served = Served(fast=True, scene=GAME, hold=True, live=True, rate_hz=1e-6, burst=3)
    try:
        slot = served.player.inputs.values.index["danger"]
        values = served.player.inputs.values.array
        rigged = values[slot : slot + 1].view(np.int64)

        def provider(handlers):
            table, ctl = served.api.fast_table(handlers)
            return replace(table, state_changes=rigged, state_count=int(rigged[0])), ctl

        served.server.set_fast_provider(provider)
        p = "/soundscape/input/danger"
        for value in (0.5, 0.75, 0.25):
            send(client, served, encode_message(p, [value], "f"))
            served.engine.render(128)  # the ring drained: the loop takes it
        assert served.fast_applied() == 0
        counts = served.server.counters()
        assert counts["received"] == 3 and counts["rate_limited"] == 0
        assert served.api.counters()["applied"] == 3
        assert served.player.inputs.values["danger"] == 0.25
        hold = served.engine.current.param("hold_danger", "gain_db").column
        assert served.targets()[hold] == hold_target(served, "danger", 0.25)
        # The bucket is spent (burst 3, no refill): the loop took and gave
        # back, Python took one per set.
        send(client, served, encode_message(p, [0.5], "f"))
        assert served.server.counters()["rate_limited"] == 1
    finally:
        served.close()
