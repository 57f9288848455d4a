"""sd_notify messages arrive, as systemd would receive them, on a real unix
datagram socket the test binds: at a path and at an abstract name."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.daemon.sd_notify import Notifier, socket_address, watchdog_interval_s

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["path", "abstract"])
def fake_systemd(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, socket.socket]]:
    """(NOTIFY_SOCKET value, the bound socket systemd would read)."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        name = str(tmp_path / "notify.sock")
        server.bind(name)
    else:
        name = f"@soundscape-test-{os.getpid()}-{time.monotonic_ns()}"
        server.bind(b"\0" + name[1:].encode())
    server.settimeout(10)
    yield name, server
    server.close()


def receive(server: socket.socket) -> list[str]:
    return server.recv(4096).decode().splitlines()


def test_each_message_arrives_as_systemd_reads_it(
    fake_systemd: tuple[str, socket.socket],
) -> None:
    name, server = fake_systemd
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": name})
    assert notifier.enabled
    assert notifier.ready("playing focus")
    assert receive(server) == ["READY=1", "STATUS=playing focus"]
    assert notifier.status("device lost; retrying")
    assert receive(server) == ["STATUS=device lost; retrying"]
    assert notifier.watchdog()
    assert receive(server) == ["WATCHDOG=1"]
    before_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert notifier.reloading()
    after_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    reloading, monotonic = receive(server)
    assert reloading == "RELOADING=1"
    key, _, value = monotonic.partition("=")
    assert key == "MONOTONIC_USEC"
    assert before_us <= int(value) <= after_us
    assert notifier.stopping("fading out")
    assert receive(server) == ["STOPPING=1", "STATUS=fading out"]
    notifier.close()
    assert not notifier.watchdog()


def test_a_child_process_notifies_through_the_environment(
    fake_systemd: tuple[str, socket.socket],
) -> None:
    name, server = fake_systemd
    code = (
        "from engine.daemon.sd_notify import Notifier\n"
        "import os\n"
        "Notifier.from_environment().ready(f'pid {os.getpid()}')\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "NOTIFY_SOCKET": name, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        timeout=30,
        check=True,
    )
    assert child.returncode == 0
    lines = receive(server)
    assert lines[0] == "READY=1"
    assert lines[1].startswith("STATUS=pid ")


def test_without_notify_socket_nothing_is_sent_and_nothing_fails() -> None:
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    assert not notifier.ready()
    assert not notifier.watchdog()


def test_a_socket_nobody_listens_on_is_reported_not_raised(tmp_path: Path) -> None:
    notifier = Notifier(str(tmp_path / "gone.sock"))
    assert notifier.ready() is False


def test_a_value_with_a_newline_is_refused(
    fake_systemd: tuple[str, socket.socket],
) -> None:
    notifier = Notifier(fake_systemd[0])
    with pytest.raises(ValueError, match="one line"):
        notifier.status("two\nlines")


def test_socket_addresses() -> None:
    assert socket_address("/run/user/1000/systemd/notify") == (
        "/run/user/1000/systemd/notify"
    )
    assert socket_address("@abc") == b"\0abc"
    with pytest.raises(ValueError, match="vsock"):
        socket_address("vsock:2:1234")


def test_watchdog_interval_from_the_environment() -> None:
    pid = str(os.getpid())
    assert watchdog_interval_s({"WATCHDOG_USEC": "10000000"}) == 10.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "5000000", "WATCHDOG_PID": pid}) == 5
    # Set for another process (this one inherited the environment): not ours.
    assert (
        watchdog_interval_s({"WATCHDOG_USEC": "5000000", "WATCHDOG_PID": "1"}) is None
    )
    assert watchdog_interval_s({}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "soon"}) is None
