"""The OSC server over real sockets on 127.0.0.1: liblo's oscsend and python-osc
as peers, replies, handler errors, patterns, timetags, size limits, python-osc's
failure cases, rate limiting, TCP framing, a fuzz run, the allow-list, and
many start/stop cycles."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
from polling import wait_for
from pythonosc.tcp_client import SimpleTCPClient
from pythonosc.udp_client import SimpleUDPClient

from engine.control.osc_server import COUNTER_NAMES, OscSender, OscServer
from engine.control.osc_wire import (
    IMPULSE,
    OscMessage,
    encode_bundle,
    encode_message,
    length_prefix_encode,
    slip_encode,
    unix_to_ntp,
)

HOST = "127.0.0.1"


class Recorder:
    """A handler that keeps what it got, thread-safely."""

    def __init__(self) -> None:
        self.calls: list[tuple[OscMessage, OscSender]] = []
        self._lock = threading.Lock()

    def __call__(self, message: OscMessage, sender: OscSender) -> None:
        with self._lock:
            self.calls.append((message, sender))

    @property
    def messages(self) -> list[OscMessage]:
        with self._lock:
            return [m for m, _ in self.calls]


@pytest.fixture
def server() -> Iterator[OscServer]:
    osc = OscServer(port=0).start()
    yield osc
    osc.stop()


def send(sock: socket.socket, server: OscServer, data: bytes) -> None:
    sock.sendto(data, (HOST, server.port))


def assert_counters_add_up(counts: dict[str, int]) -> None:
    datagram_outcomes = (
        "refused_source",
        "oversize",
        "rate_limited",
        "malformed",
        "over_budget",
    )
    assert (
        counts["received"]
        == sum(counts[k] for k in datagram_outcomes) + (counts["parsed"])
    )
    message_outcomes = (
        "dispatched",
        "handler_errors",
        "unknown_address",
        "pattern_refused",
        "too_far_ahead",
    )
    assert counts["messages"] == sum(counts[k] for k in message_outcomes)


# --- peers --------------------------------------------------------------------


def test_oscsend_reaches_a_handler_with_typed_values(server, oscsend):
    recorder = Recorder()
    server.add_handler("/soundscape/input/danger", recorder)
    result = subprocess.run(
        [
            oscsend,
            "localhost",
            str(server.port),
            "/soundscape/input/danger",
            "ihfdsScmTFNI",
            *("-3", "5000000000", "0.75", "1.5", "word", "sym", "x", "01902040"),
        ],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert wait_for(lambda: recorder.calls)
    message, sender = recorder.calls[0]
    assert message.typetags == "ihfdsScmTFNI"
    assert message.args == (
        -3,
        5_000_000_000,
        0.75,
        1.5,
        "word",
        "sym",
        "x",
        (0x01, 0x90, 0x20, 0x40),
        True,
        False,
        None,
        IMPULSE,
    )
    assert (sender.host, sender.transport) == (HOST, "udp")


def test_oscsend_over_tcp_size_prefixed_stream(server, oscsend):
    recorder = Recorder()
    server.add_handler("/tcp/value", recorder)
    url = f"osc.tcp://localhost:{server.port}"
    result = subprocess.run(
        [oscsend, url, "/tcp/value", "if", "7", "0.5"],
        capture_output=True,
        timeout=10,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert wait_for(lambda: recorder.calls)
    assert recorder.messages[0].args == (7, 0.5)
    assert recorder.calls[0][1].transport == "tcp"


def test_python_osc_clients_udp_and_tcp(server):
    recorder = Recorder()
    server.add_handler("/game/danger", recorder)
    SimpleUDPClient(HOST, server.port).send_message("/game/danger", [42, 0.5, "x"])
    tcp = SimpleTCPClient(HOST, server.port)  # OSC 1.1: SLIP frames
    tcp.send_message("/game/danger", [1.0])
    assert wait_for(lambda: len(recorder.calls) == 2)
    by_transport = {s.transport: m.args for m, s in recorder.calls}
    assert by_transport == {"udp": (42, 0.5, "x"), "tcp": (1.0,)}
    tcp.close()


# --- replies ------------------------------------------------------------------


def test_reply_to_sender_and_to_explicit_port(server, client):
    recorder = Recorder()
    server.add_handler("/soundscape/status", recorder)
    send(client, server, encode_message("/soundscape/status"))
    assert wait_for(lambda: recorder.calls)
    _, sender = recorder.calls[0]
    assert sender.port == client.getsockname()[1]
    assert server.reply(sender, "/soundscape/status/reply", ["ok", 1])
    data, source = client.recvfrom(1024)
    assert data == encode_message("/soundscape/status/reply", ["ok", 1])
    assert source == (HOST, server.port)  # from the server's own socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind((HOST, 0))
        listener.settimeout(5.0)
        assert server.reply((HOST, listener.getsockname()[1]), "/x", [2.5])
        assert listener.recvfrom(1024)[0] == encode_message("/x", [2.5])
    assert server.counters()["replies_sent"] == 2


def test_replies_from_handlers_go_out_after_the_whole_datagram(server, client):
    """A send gives up the GIL (a switch interval beside a busy thread): the
    replies a bundle's handlers make leave after its last message is handled."""
    sent_when_handled: list[int] = []

    def answer(message: OscMessage, sender: OscSender) -> None:
        sent_when_handled.append(server.counters()["replies_sent"])
        assert server.reply(sender, "/answer", [message.args[0]])

    server.add_handler("/ask", answer)
    before = server.counters()["replies_sent"]
    bundle = encode_bundle([encode_message("/ask", [k]) for k in range(3)])
    send(client, server, bundle)
    answers = [client.recvfrom(1024)[0] for _ in range(3)]
    assert answers == [encode_message("/answer", [k]) for k in range(3)]
    assert sent_when_handled == [before] * 3
    # Counted after sendto returns: the client may have the last one first.
    assert wait_for(lambda: server.counters()["replies_sent"] == before + 3)


def test_reply_reaches_oscdump(server, oscdump):
    assert server.reply((HOST, oscdump.port), "/soundscape/meter", [0.25, "bed"])
    (line,) = oscdump.lines(1)
    assert line.split(" ", 1)[1] == '/soundscape/meter fs 0.250000 "bed"'


def test_reply_over_tcp_uses_the_peers_framing(server):
    recorder = Recorder()
    server.add_handler("/q", recorder)
    with socket.create_connection((HOST, server.port), timeout=5) as slip_conn:
        slip_conn.sendall(slip_encode(encode_message("/q")))
        assert wait_for(lambda: len(recorder.calls) == 1)
        assert server.reply(recorder.calls[0][1], "/a", [1])
        expected = slip_encode(encode_message("/a", [1]))
        assert _recv_exactly(slip_conn, len(expected)) == expected
    with socket.create_connection((HOST, server.port), timeout=5) as plain_conn:
        plain_conn.sendall(length_prefix_encode(encode_message("/q")))
        assert wait_for(lambda: len(recorder.calls) == 2)
        assert server.reply(recorder.calls[1][1], "/a", [2])
        expected = length_prefix_encode(encode_message("/a", [2]))
        assert _recv_exactly(plain_conn, len(expected)) == expected


def _recv_exactly(conn: socket.socket, n_bytes: int) -> bytes:
    data = b""
    while len(data) < n_bytes:
        chunk = conn.recv(n_bytes - len(data))
        if not chunk:
            break
        data += chunk
    return data


# --- dispatch -----------------------------------------------------------------


def test_handler_errors_are_counted_reported_and_the_server_goes_on(client):
    reported = []
    server = OscServer(
        port=0, on_handler_error=lambda m, s, e: reported.append((m.address, e))
    ).start()
    try:
        good = Recorder()

        def broken(message, sender):
            raise ValueError("bad value")

        server.add_handler("/broken", broken)
        server.add_handler("/good", good)
        for _ in range(3):
            send(client, server, encode_message("/broken", [1]))
        send(client, server, encode_message("/good", [2]))
        assert wait_for(lambda: good.calls)
        assert wait_for(lambda: len(reported) == 3)
        counts = server.counters()
        assert counts["handler_errors"] == 3 and counts["dispatched"] == 1
        assert reported[0][0] == "/broken" and isinstance(reported[0][1], ValueError)
        assert any("/broken" in e and "bad value" in e for e in server.recent_errors())
    finally:
        server.stop()


def test_patterns_unknown_addresses_and_the_default_handler(server, client):
    rain, bed, other = Recorder(), Recorder(), Recorder()
    server.add_handler("/layer/rain/gain_db", rain)
    server.add_handler("/layer/bed/gain_db", bed)
    send(client, server, encode_message("/layer/*/gain_db", [-6.0]))
    send(client, server, encode_message("//gain_db", [-3.0]))
    send(client, server, encode_message("/layer/{bed}/gain_db", [-1.0]))
    send(client, server, encode_message("/nobody/home", [1]))
    send(client, server, encode_message("/layer/[oops", [1]))
    assert wait_for(lambda: server.counters()["messages"] == 5)
    assert [m.args for m in rain.messages] == [(-6.0,), (-3.0,)]
    assert [m.args for m in bed.messages] == [(-6.0,), (-3.0,), (-1.0,)]
    counts = server.counters()
    assert counts["unknown_address"] == 1 and counts["pattern_refused"] == 1
    # With a default handler the unknown goes there instead.
    server.set_default_handler(other)
    send(client, server, encode_message("/nobody/home", [2]))
    assert wait_for(lambda: other.calls)
    assert other.messages[0].address == "/nobody/home"
    server.remove_handler("/layer/bed/gain_db")
    send(client, server, encode_message("/layer/*/gain_db", [0.0]))
    assert wait_for(lambda: len(rain.calls) == 3)
    assert len(bed.calls) == 3
    assert_counters_add_up(server.counters())


def test_a_pattern_matching_too_many_handlers_is_refused(client):
    server = OscServer(port=0, max_pattern_matches=3).start()
    try:
        recorder = Recorder()
        for i in range(5):
            server.add_handler(f"/p/{i}", recorder)
        send(client, server, encode_message("/p/*", [1]))
        send(client, server, encode_message("/p/[0-2]", [2]))
        assert wait_for(lambda: server.counters()["messages"] == 2)
        assert [m.args for m in recorder.messages] == [(2,)] * 3
        assert server.counters()["pattern_refused"] == 1
    finally:
        server.stop()


def test_a_datagram_calling_too_many_handlers_is_refused_whole(client):
    """The handler calls of one datagram (its messages, patterns fanned out)
    are bounded, so no datagram holds the receive thread for long; each call
    takes a token from the source's bucket."""
    server = OscServer(port=0, max_dispatches=8, rate_hz=0.01, burst=30.0).start()
    try:
        recorder = Recorder()
        for i in range(5):
            server.add_handler(f"/p/{i}", recorder)
        too_many = encode_bundle([encode_message("/p/0", [k]) for k in range(9)])
        send(client, server, too_many)
        # A pattern fanning out to 5 handlers, twice: 10 calls in 2 messages.
        fanned = encode_bundle([encode_message("/p/*", [k]) for k in range(2)])
        send(client, server, fanned)
        send(
            client,
            server,
            encode_bundle([encode_message("/p/1", [k]) for k in range(8)]),
        )
        send(client, server, encode_message("/p/*", ["fan"]))
        assert wait_for(lambda: server.counters()["received"] == 4)
        counts = server.counters()
        # 9 messages: the parser stops at the 9th; 10 calls: refused whole.
        assert counts["malformed"] == 1 and counts["over_budget"] == 1
        assert [m.args for m in recorder.messages] == [(k,) for k in range(8)] + [
            ("fan",)
        ] * 5
        # 30 tokens: 2 refused datagrams took 1 each, 8 + 5 calls took 13.
        send(
            client,
            server,
            encode_bundle([encode_message("/p/2", [k]) for k in range(8)]),
        )
        send(
            client,
            server,
            encode_bundle([encode_message("/p/3", [k]) for k in range(8)]),
        )
        assert wait_for(lambda: server.counters()["received"] == 6)
        counts = server.counters()
        assert counts["rate_limited"] == 1 and len(recorder.calls) == 21
        assert any("over the limit of 8" in e for e in server.recent_errors())
        assert_counters_add_up(counts)
    finally:
        server.stop()


def test_a_costly_handler_counts_its_cost_against_the_budget(client):
    server = OscServer(port=0, max_dispatches=8).start()
    try:
        recorder = Recorder()
        server.add_handler("/costly", recorder, cost=4)
        server.add_handler("/cheap", recorder)
        three = [encode_message("/costly", [k]) for k in range(3)]
        send(client, server, encode_bundle(three))  # 12: refused
        pair = [encode_message("/costly", [k]) for k in range(2)]
        send(client, server, encode_bundle(pair))  # 8: handled
        send(client, server, encode_message("/cheap", ["done"]))
        assert wait_for(lambda: server.counters()["received"] == 3)
        assert [m.args for m in recorder.messages] == [(0,), (1,), ("done",)]
        assert server.counters()["over_budget"] == 1
        server.add_handler("/costly", recorder)  # re-added: back to 1
        send(client, server, encode_bundle(three))
        assert wait_for(lambda: len(recorder.calls) == 6)
        with pytest.raises(ValueError, match="cost 9 is outside 1..8"):
            server.add_handler("/dear", recorder, cost=9)
    finally:
        server.stop()


def test_add_handler_refuses_bad_addresses(server):
    for bad in ["x", "/a/*", "/a b", "/a//b"]:
        with pytest.raises(ValueError, match="add_handler"):
            server.add_handler(bad, Recorder())


# --- timetags -----------------------------------------------------------------


def test_timed_bundles_are_handed_over_at_once_with_their_timetag(server, client):
    recorder = Recorder()
    server.add_handler("/timed", recorder)
    due_s = time.time() + 5.0
    sent_s = time.monotonic()
    send(
        client,
        server,
        encode_bundle([encode_message("/timed", [1])], unix_to_ntp(due_s)),
    )
    assert wait_for(lambda: recorder.calls)
    # python-osc's dispatcher would sleep until the timetag; the handler here
    # gets it long before (the bound is loose: "did not wait 5 s").
    assert time.monotonic() - sent_s < 4.0
    assert recorder.messages[0].time_s == pytest.approx(due_s, abs=1e-6)


def test_bundles_beyond_the_horizon_are_refused(client):
    server = OscServer(port=0, timetag_horizon_s=2.0).start()
    try:
        recorder = Recorder()
        server.add_handler("/timed", recorder)
        far = unix_to_ntp(time.time() + 365 * 86400)
        send(client, server, encode_bundle([encode_message("/timed", [1])], far))
        near = unix_to_ntp(time.time() + 1.0)
        send(client, server, encode_bundle([encode_message("/timed", [2])], near))
        assert wait_for(lambda: recorder.calls)
        assert wait_for(lambda: server.counters()["too_far_ahead"] == 1)
        assert [m.args for m in recorder.messages] == [(2,)]
    finally:
        server.stop()


# --- python-osc's failure cases and size limits --------------------------------


def _nested(depth: int) -> bytes:
    data = encode_message("/x", [1])
    for _ in range(depth):
        data = encode_bundle([data])
    return data


def test_python_osc_failure_cases_are_handled_promptly(server, client):
    recorder = Recorder()
    server.add_handler("/alive", recorder)
    server.add_handler("/" + "a" * 30, recorder)
    cases = {
        "negative element size": b"#bundle\x00"
        + bytes(7)
        + b"\x01"
        + (-8).to_bytes(4, "big", signed=True)
        + encode_message("/x"),
        "invalid UTF-8": b"/a\xff\xfe,s\x00\x00ab\x00\x00",
        "deep nesting": _nested(500),
        "pathological pattern": encode_message("/" + "*" * 14 + "b", [1]),
        "over 8192 bytes": encode_bundle(
            [
                encode_message(f"/alive/{i:04d}" + "/padding" * 18, [i])
                for i in range(60)
            ]
        ),
        "far-future timetag": encode_bundle(
            [encode_message("/alive", [0])], unix_to_ntp(time.time() + 86400 * 30)
        ),
    }
    assert len(cases["over 8192 bytes"]) > 8192
    for data in cases.values():
        send(client, server, data)
    send(client, server, encode_message("/alive", [1]))
    # Each was dealt with in turn and the server answers the next message.
    assert wait_for(lambda: recorder.calls)
    assert [m.args for m in recorder.messages] == [(1,)]
    counts = server.counters()
    assert counts["malformed"] == 3
    assert counts["unknown_address"] == 61  # the large bundle parsed whole
    assert counts["too_far_ahead"] == 1
    assert counts["internal_errors"] == 0
    assert_counters_add_up(counts)


def test_datagrams_over_the_limit_are_refused_whole(client):
    server = OscServer(port=0, max_datagram_bytes=4096).start()
    try:
        recorder = Recorder()
        server.add_handler("/big", recorder)
        send(client, server, encode_message("/big", [b"x" * 5000]))
        send(client, server, encode_message("/big", [b"x" * 4000]))
        assert wait_for(lambda: recorder.calls)
        assert len(recorder.messages[0].args[0]) == 4000
        assert server.counters()["oversize"] == 1
    finally:
        server.stop()


# --- rate limiting -------------------------------------------------------------


def test_a_flooding_source_is_rate_limited_and_others_are_served(client):
    server = OscServer(port=0, rate_hz=50.0, burst=20.0).start()
    try:
        recorder = Recorder()
        server.add_handler("/flood", recorder)
        server.add_handler("/other", recorder)
        started_s = time.monotonic()
        for i in range(300):
            send(client, server, encode_message("/flood", [i]))
        assert wait_for(lambda: server.counters()["received"] == 300)
        elapsed_s = time.monotonic() - started_s
        counts = server.counters()
        assert counts["rate_limited"] > 0
        # No more than the burst plus what the rate refilled meanwhile.
        assert counts["dispatched"] <= 20 + 50.0 * elapsed_s + 1
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as second:
            second.sendto(encode_message("/other", [1]), (HOST, server.port))
            assert wait_for(
                lambda: any(m.address == "/other" for m in recorder.messages)
            )
        # A bundle costs one token per message, all or nothing.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as third:
            bundle = encode_bundle([encode_message("/other", [2])] * 25)
            third.sendto(bundle, (HOST, server.port))
            assert wait_for(lambda: server.counters()["received"] == 302)
        assert [m.args for m in recorder.messages if m.address == "/other"] == [(1,)]
        assert_counters_add_up(server.counters())
    finally:
        server.stop()


# --- TCP ----------------------------------------------------------------------


def test_tcp_slip_frames_split_anywhere_and_bad_frames_counted(server):
    recorder = Recorder()
    server.add_handler("/tcp", recorder)
    stream = b"".join(
        slip_encode(encode_message("/tcp", [i, b"\xc0\xdb"])) for i in range(20)
    )
    stream += b"\xc0/tcp\xdb\x00\xc0"  # a bad escape: counted, the stream goes on
    stream += slip_encode(encode_message("/tcp", [99]))
    rng = random.Random(7)
    with socket.create_connection((HOST, server.port), timeout=5) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        at = 0
        while at < len(stream):
            step = rng.randint(1, 9)
            conn.sendall(stream[at : at + step])
            at += step
            if rng.random() < 0.1:
                time.sleep(0.001)  # let some pieces arrive on their own
        assert wait_for(lambda: len(recorder.calls) == 21)
    assert [m.args[0] for m in recorder.messages] == [*range(20), 99]
    assert recorder.messages[0].args[1] == b"\xc0\xdb"
    assert server.counters()["malformed"] == 1


def test_tcp_stream_with_a_broken_size_prefix_is_closed(server):
    recorder = Recorder()
    server.add_handler("/tcp", recorder)
    with socket.create_connection((HOST, server.port), timeout=5) as conn:
        conn.sendall(length_prefix_encode(encode_message("/tcp", [1])))
        conn.sendall((10**8).to_bytes(4, "big") + b"junk")
        assert wait_for(lambda: recorder.calls)
        assert conn.recv(10) == b""  # the server hung up: no way to resync
    assert wait_for(lambda: server.counters()["malformed"] == 1)


def test_tcp_connections_over_the_limit_are_refused():
    server = OscServer(port=0, udp=False, max_tcp_connections=2).start()
    try:
        conns = [
            socket.create_connection((HOST, server.port), timeout=5) for _ in range(3)
        ]
        assert wait_for(lambda: server.counters()["tcp_refused"] == 1)
        assert conns[2].recv(10) == b""
        for conn in conns:
            conn.close()
    finally:
        server.stop()


# --- fuzz against the running server -------------------------------------------


def test_fuzzed_datagrams_leave_the_server_up_and_the_counters_add_up(client):
    server = OscServer(port=0, rate_hz=1e6, burst=1e6).start()
    try:
        recorder = Recorder()
        for address in ["/a", "/a/b", "/soundscape/input/x"]:
            server.add_handler(address, recorder)
        rng = random.Random(11)
        seeds = [
            encode_message("/a", [1, 0.5, "x"]),
            encode_message("/a/b", [b"blob", [1, 2]]),
            encode_message("/a/*", [True]),
            encode_bundle([encode_message("/soundscape/input/x", [0.25])] * 3),
        ]
        n_datagrams = 3000
        for i in range(n_datagrams):
            data = bytearray(rng.choice(seeds))
            for _ in range(rng.randint(0, 3)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            if rng.random() < 0.3:
                data = data[: rng.randrange(1, len(data) + 1)]
            send(client, server, bytes(data))
            if i % 200 == 199:  # keep the socket buffer from overflowing
                assert wait_for(lambda n=i + 1: server.counters()["received"] == n)
        assert wait_for(lambda: server.counters()["received"] == n_datagrams)
        counts = server.counters()
        assert counts["malformed"] > 0 and counts["dispatched"] > 0
        assert counts["internal_errors"] == 0
        assert counts["max_handling_us"] > 0  # measured (not bounded: CI is slow)
        assert_counters_add_up(counts)
        before = len(recorder.calls)
        send(client, server, encode_message("/a", [123]))
        assert wait_for(lambda: len(recorder.calls) == before + 1)
    finally:
        server.stop()


# --- security, life cycle --------------------------------------------------------


def test_binding_beyond_loopback_needs_an_allow_list():
    with pytest.raises(ValueError, match="allow_networks"):
        OscServer(host="0.0.0.0", port=0)
    with pytest.raises(ValueError, match="allow_networks"):
        OscServer(port=0, allow_networks=["not-a-network"])


def _non_loopback_ipv4() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.123", 9))  # no packet is sent
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_sources_outside_the_allow_list_are_dropped_without_reply(caplog):
    local = _non_loopback_ipv4()
    if local is None:
        pytest.skip("no non-loopback IPv4 address on this machine")
    with caplog.at_level("WARNING"):
        server = OscServer(host="0.0.0.0", port=0, allow_networks=["10.99.0.0/16"])
        server.start()
    try:
        assert any("10.99.0.0/16" in r.getMessage() for r in caplog.records)
        recorder = Recorder()
        server.add_handler("/x", recorder)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as outsider:
            outsider.bind((local, 0))
            outsider.sendto(encode_message("/x", [1]), (local, server.port))
            assert wait_for(lambda: server.counters()["refused_source"] == 1)
            assert not server.reply(outsider.getsockname(), "/x", [1])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as insider:
            insider.sendto(encode_message("/x", [2]), (HOST, server.port))
            assert wait_for(lambda: recorder.calls)
        assert [m.args for m in recorder.messages] == [(2,)]
        assert server.counters()["replies_refused"] == 1
    finally:
        server.stop()


def test_many_servers_start_and_stop_cleanly(client):
    threads_before = threading.active_count()
    for _ in range(25):
        server = OscServer(port=0).start()
        recorder = Recorder()
        server.add_handler("/ping", recorder)
        send(client, server, encode_message("/ping"))
        assert wait_for(lambda r=recorder: r.calls)
        port = server.port
        server.stop()
        server.stop()  # idempotent
        assert not server.running
        # The port is free again for both transports.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
            again.bind((HOST, port))
    assert threading.active_count() <= threads_before
    counts = server.counters()  # counters outlive stop
    assert counts["dispatched"] == 1
    assert set(counts) == set(COUNTER_NAMES)


def test_receive_threads_take_the_nice_value_asked_for():
    """Per thread (Linux): the receive threads get it, the caller keeps its."""
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    server = OscServer(port=0, thread_nice=own + 3).start()
    try:
        recorder = Recorder()
        server.add_handler("/n", recorder)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            send(sock, server, encode_message("/n"))
            assert wait_for(lambda: recorder.calls)
        receivers = [t for t in threading.enumerate() if t.name.startswith("osc-")]
        assert len(receivers) == 2  # UDP and TCP
        for thread in receivers:
            assert thread.native_id is not None
            assert os.getpriority(os.PRIO_PROCESS, thread.native_id) == own + 3
        assert not server.priority_refused
    finally:
        server.stop()
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == own


def test_slow_handlings_tell_working_from_waiting(server, client):
    """A handling over 5 ms is counted; whether the thread itself ran that
    long (CPU time) tells a handler doing too much from one that waited."""

    def works(message: OscMessage, sender: OscSender) -> None:
        end_s = time.thread_time() + 0.008
        while time.thread_time() < end_s:
            pass

    def waits(message: OscMessage, sender: OscSender) -> None:
        time.sleep(0.008)

    server.add_handler("/works", works)
    server.add_handler("/waits", waits)
    send(client, server, encode_message("/waits"))
    send(client, server, encode_message("/works"))
    send(client, server, encode_message("/quick"))
    assert wait_for(lambda: server.counters()["received"] == 3)
    counts = server.counters()
    assert counts["slow_handlings"] == 2
    assert counts["slow_handlings_working"] == 1
    assert counts["max_handling_cpu_us"] >= 8000
    assert counts["max_handling_us"] >= counts["max_handling_cpu_us"]


def test_a_taken_port_is_a_clear_error(server):
    with pytest.raises(OSError, match=f"cannot bind 127.0.0.1:{server.port}"):
        OscServer(port=server.port).start()


def test_the_receive_loop_survives_its_own_bugs(server, client):
    recorder = Recorder()
    server.add_handler("/ok", recorder)
    real_receive = server._receive
    calls = []

    def fails_once(*args):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug in the receive path")
        real_receive(*args)

    server._receive = fails_once
    send(client, server, encode_message("/ok", [1]))
    send(client, server, encode_message("/ok", [2]))
    assert wait_for(lambda: recorder.calls)
    assert [m.args for m in recorder.messages] == [(2,)]
    assert server.counters()["internal_errors"] == 1
    assert any("a bug in the receive path" in e for e in server.recent_errors())


def test_a_tcp_peer_that_never_reads_is_dropped_not_waited_for(server):
    recorder = Recorder()
    server.add_handler("/q", recorder)
    with socket.create_connection((HOST, server.port), timeout=5) as conn:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        conn.sendall(slip_encode(encode_message("/q")))
        assert wait_for(lambda: recorder.calls)
        sender = recorder.calls[0][1]
        blob = b"x" * 16_000
        # The peer reads nothing: socket buffers fill, and a reply then gives
        # up after a short timeout instead of blocking its caller.
        results = [server.reply(sender, "/big", [blob]) for _ in range(2000)]
        assert False in results
        first_failure = results.index(False)
        assert not any(results[first_failure:])  # the connection is closed
    assert server.counters()["replies_failed"] >= 1


def _udp_thread(server: OscServer) -> threading.Thread:
    return next(t for t in threading.enumerate() if t.name == f"osc-udp-{server.port}")


def test_the_udp_thread_runs_at_sched_fifo_where_allowed_else_keeps_nice():
    server = OscServer(port=0, tcp=False, udp_fifo_priority=3, thread_nice=-1)
    with server:
        assert wait_for(lambda: server.udp_scheduling != "unchanged")
        policy = os.sched_getscheduler(_udp_thread(server).native_id)
        if server.udp_scheduling.startswith("SCHED_FIFO"):
            assert policy == os.SCHED_FIFO
            assert server.udp_scheduling == "SCHED_FIFO 3"
        else:  # no CAP_SYS_NICE: silently the nice value, as before
            assert policy == os.SCHED_OTHER
            assert server.udp_scheduling in ("nice -1", "unchanged")


def test_the_udp_thread_stays_below_the_processs_realtime_threads():
    from engine.control.osc_server import _below_realtime_threads

    before = _below_realtime_threads(5)  # 5, unless a real-time thread runs
    ready, done = threading.Event(), threading.Event()
    refused: list[OSError] = []

    def audio_like() -> None:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(4))
        except OSError as error:
            refused.append(error)
        ready.set()
        done.wait(5.0)

    thread = threading.Thread(target=audio_like)
    thread.start()
    try:
        ready.wait(5.0)
        if refused:
            pytest.skip(f"SCHED_FIFO refused here: {refused[0]}")
        assert _below_realtime_threads(5) == min(before, 3)
        assert _below_realtime_threads(2) == min(before, 2)
    finally:
        done.set()
        thread.join()
    assert _below_realtime_threads(1) == 1
