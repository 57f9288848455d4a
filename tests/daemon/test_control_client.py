"""The control client over real UDP on 127.0.0.1: no daemon, a refusal, a
status bundle parsed and printed, the volume's clamping note. A small UDP
responder stands in for the daemon here; tests/daemon/test_main.py drives the
real one."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from engine.control.osc_wire import encode_bundle, encode_message, parse
from engine.daemon.control_client import (
    DaemonClient,
    DaemonRefused,
    NoDaemon,
    format_status,
)

P = "/soundscape"


def status_bundle() -> bytes:
    s = f"{P}/status"
    return encode_bundle(
        [
            encode_message(f"{s}/scene", ["forest", "night"], "ss"),
            encode_message(f"{s}/input/danger", [0.25], "f"),
            encode_message(f"{s}/layer/wind", [1.0], "f"),
            encode_message(f"{s}/meter/wind", [-18.25, -24.5], "ff"),
            encode_message(f"{s}/levels", [-14.5, -22.0, -6.0], "fff"),
            encode_message(f"{s}/cpu", [3.5, 40.0], "ff"),
            encode_message(f"{s}/underflows", [2, 90000, 1], "iii"),
            encode_message(f"{s}/uptime", [3725.0], "f"),
            encode_message(
                f"{s}/output", ["lost", "system", 3, 1.5, "no audio callback"], "ssifs"
            ),
            encode_message(f"{s}/osc", [10, 1, 0], "iii"),
        ]
    )


Reply = Callable[[str, tuple], list[bytes]]


@pytest.fixture
def responder() -> Iterator[Callable[[Reply], int]]:
    """Start a UDP server on an ephemeral port answering with ``reply``."""
    socks: list[socket.socket] = []
    stop = threading.Event()

    def start(reply: Reply) -> int:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.1)
        socks.append(sock)

        def run() -> None:
            while not stop.is_set():
                try:
                    data, peer = sock.recvfrom(65536)
                except TimeoutError:
                    continue
                for message in parse(data):
                    for packet in reply(message.address, message.args):
                        sock.sendto(packet, peer)

        threading.Thread(target=run, daemon=True).start()
        return sock.getsockname()[1]

    yield start
    stop.set()
    time.sleep(0.15)
    for sock in socks:
        sock.close()


def unused_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_no_daemon_is_one_clear_line_after_the_timeout() -> None:
    port = unused_udp_port()
    started = time.monotonic()
    with (
        DaemonClient("127.0.0.1", port, P, timeout_s=0.3) as client,
        pytest.raises(NoDaemon) as error,
    ):
        client.status()
    assert time.monotonic() - started >= 0.3
    text = str(error.value)
    assert f"no soundscape daemon answered on 127.0.0.1:{port}" in text
    assert "within 0.3 s" in text and "\n" not in text


def test_status_bundle_becomes_a_dict_and_readable_lines(responder) -> None:  # type: ignore[no-untyped-def]
    port = responder(lambda address, args: [status_bundle()])
    with DaemonClient("127.0.0.1", port, P) as client:
        status = client.status()
    assert status["scene"] == "forest" and status["state"] == "night"
    assert status["inputs"] == {"danger": 0.25}
    assert status["output"]["state"] == "lost" and status["output"]["outages"] == 3
    assert status["underflows"] == 2 and status["callbacks"] == 90000
    assert status["overruns"] == 1
    lines = format_status(status).splitlines()
    assert "scene       forest" in lines
    assert "inputs      danger=0.25" in lines
    assert "underflows  2 in 90000 callbacks (1 the engine's own overruns)" in lines
    assert (
        "output      lost (device system, 3 outages; lost for 1.5 s: "
        "no audio callback)" in lines
    )
    assert "uptime      1h 02m 05s" in lines
    assert status["layer_meters"] == {"wind": [-18.25, -24.5]}
    assert "layer       wind: level 1.00, peak -18.2 dBFS, rms -24.5 dBFS" in lines


def test_an_error_reply_is_the_daemons_reason(responder) -> None:  # type: ignore[no-untyped-def]
    def refuse(address: str, args: tuple) -> list[bytes]:
        return [
            encode_message(
                f"{P}/error", [address, "no scene 'rian' (did you mean 'rain'?)"]
            )
        ]

    port = responder(refuse)
    with (
        DaemonClient("127.0.0.1", port, P) as client,
        pytest.raises(DaemonRefused, match=r"did you mean 'rain'\?"),
    ):
        client.scene("rian")


def test_volume_reports_the_clamped_value_from_the_warning(responder) -> None:  # type: ignore[no-untyped-def]
    def answer(address: str, args: tuple) -> list[bytes]:
        if address == f"{P}/volume":
            assert args == (6.0, 2.0)
            note = "volume 6 dB clamped to 0 dB (-120..0)"
            return [encode_message(f"{P}/warning", [address, note])]
        return [status_bundle()]

    port = responder(answer)
    with DaemonClient("127.0.0.1", port, P) as client:
        used, notes = client.volume(6.0, ramp_s=2.0)
    assert used == 0.0
    assert notes == ["volume 6 dB clamped to 0 dB (-120..0)"]


def test_stop_returns_the_fade_length(responder) -> None:  # type: ignore[no-untyped-def]
    port = responder(
        lambda address, args: (
            [encode_message(f"{P}/stopping", [2.5], "f")]
            if address == f"{P}/stop"
            else []
        )
    )
    with DaemonClient("127.0.0.1", port, P) as client:
        assert client.stop() == 2.5
