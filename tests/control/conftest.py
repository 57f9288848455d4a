"""Helpers for the OSC tests: free ports, a UDP client, and liblo's oscdump
as a real peer."""

from __future__ import annotations

import os
import selectors
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A port nobody holds right now (the kernel's pick for a bound socket)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


ROOT = Path(__file__).parents[2]


@pytest.fixture
def client() -> Iterator[socket.socket]:
    """A UDP socket on 127.0.0.1 that sends to the server under test and
    reads its replies (5 s timeout)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5.0)
    yield sock
    sock.close()


@contextmanager
def playing(*args: str, port: int) -> Iterator[subprocess.Popen]:
    """``soundscape play ARGS --osc-port PORT`` in a subprocess (this checkout's
    engine), yielded once its OSC server is up; terminated on the way out."""
    play = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from engine.cli import main; raise SystemExit(main())",
            *("play", *args, "--osc-port", str(port)),
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    try:
        assert play.stderr is not None
        line = play.stderr.readline()
        while line and "OSC on" not in line:
            line = play.stderr.readline()
        assert f"OSC on 127.0.0.1:{port}" in line
        yield play
    finally:
        play.terminate()
        play.wait(30)


def port_taken(port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


class OscDump:
    """A running ``oscdump -L`` and the lines it printed."""

    def __init__(self, transport: str = "udp") -> None:
        kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
        for _ in range(10):
            self.port = free_port(kind)
            target = str(self.port) if transport == "udp" else f"osc.tcp://:{self.port}"
            self.process = subprocess.Popen(
                ["oscdump", "-L", target],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            self._pending = b""
            # Ready once it holds the port (we can no longer bind it).
            deadline_s = time.monotonic() + 5.0
            while time.monotonic() < deadline_s and self.process.poll() is None:
                if port_taken(self.port, kind):
                    return
                time.sleep(0.01)
            self.stop()
        raise RuntimeError("oscdump did not start")

    def lines(self, count: int, timeout_s: float = 5.0) -> list[str]:
        """The next ``count`` lines (fewer if it prints nothing for timeout_s)."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        # Raw reads: a buffered readline could hold lines select cannot see.
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while self._pending.count(b"\n") < count and selector.select(timeout_s):
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                self._pending += chunk
        lines = self._pending.split(b"\n")
        found, rest = lines[:count], lines[count:]
        if len(found) == count and rest:
            self._pending = b"\n".join(rest)
        else:
            found, self._pending = [x for x in lines if x], b""
        return [line.decode("utf-8", "replace") for line in found]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def _needs(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} not installed (Debian: apt-get install liblo-tools)")


@pytest.fixture
def oscdump() -> Iterator[OscDump]:
    _needs("oscdump")
    dump = OscDump("udp")
    yield dump
    dump.stop()


@pytest.fixture
def oscdump_tcp() -> Iterator[OscDump]:
    _needs("oscdump")
    dump = OscDump("tcp")
    yield dump
    dump.stop()


@pytest.fixture
def oscsend() -> str:
    _needs("oscsend")
    return "oscsend"
