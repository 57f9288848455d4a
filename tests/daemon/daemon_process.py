"""Helpers for tests and benchmarks that run the real daemon as a subprocess
against a private JACK dummy server: its environment (a private home, runtime,
config and state directory), test scenes, a free OSC port, waiting for it to
answer, and recording what it plays through JACK with ``jack_rec``.

The test process itself never connects to these JACK servers (the server name
goes only into the children's environment), so killing one cannot leave a
dead client in this process's PortAudio.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from engine.daemon.control_client import DaemonClient, NoDaemon

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 120.0  # a cold Numba cache compiles for ~40 s first

TONE_HZ = 1000.0


def tone_scene(name: str, amplitude: float = 0.3, loudness_lufs: float = -23.0) -> str:
    """A scene of one steady 1 kHz sine: its level is flat, so any change in
    the output's level is the daemon's doing."""
    return (
        f"name: {name}\ndescription: a steady test tone\n"
        "layers:\n  tone:\n    nodes:\n      osc:\n        type: sine\n"
        f"        amplitude: {amplitude}\n        frequency_hz: {TONE_HZ}\n"
        "    output: osc\n"
        f"master:\n  loudness_lufs: {loudness_lufs}\n"
    )


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (right now)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port


def daemon_env(home: Path, jack_server: str, cache_dir: Path) -> dict[str, str]:
    """The environment of a daemon with its own directories under ``home``
    (the loudness cache is shared: measuring once is enough)."""
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_STATE_HOME": str(home / "state"),
        "XDG_RUNTIME_DIR": str(home / "run"),
        "XDG_CACHE_HOME": str(cache_dir),
        "JACK_DEFAULT_SERVER": jack_server,
        "JACK_NO_START_SERVER": "1",
        "PYTHONPATH": str(ROOT),
    }
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM"):
        env.pop(name, None)
    (home / "run").mkdir(parents=True, exist_ok=True)
    return env


class DaemonProcess:
    """``python -m engine.cli daemon ARGS`` with its stderr in a file."""

    def __init__(self, env: dict[str, str], port: int, *args: str) -> None:
        self.env = env
        self.port = port
        self.log_path = Path(env["HOME"]) / f"daemon-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", "daemon", "--osc-port", str(port)]
            + ["--device", "system", *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self, timeout_s: float = 2.0) -> DaemonClient:
        return DaemonClient("127.0.0.1", self.port, "/soundscape", timeout_s)

    def status(self, timeout_s: float = 2.0) -> dict:
        with self.client(timeout_s) as client:
            return client.status()

    def wait_until(self, predicate, timeout_s: float = 20.0) -> dict:  # type: ignore[no-untyped-def]
        """Poll the status until ``predicate(status)``; the last status."""
        deadline = time.monotonic() + timeout_s
        status: dict = {}
        while time.monotonic() < deadline:
            try:
                status = self.status(timeout_s=1.0)
            except NoDaemon:
                status = {}
            if status and predicate(status):
                return status
            assert self.process.poll() is None, f"daemon exited:\n{self.log()}"
            time.sleep(0.1)
        raise AssertionError(f"status never matched; last {status}\n{self.log()}")

    def wait_ready(self) -> dict:
        """Wait until it answers /status with its output playing."""
        return self.wait_until(
            lambda s: s.get("output", {}).get("state") == "playing", START_TIMEOUT_S
        )

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def stop(self) -> int:
        """SIGTERM, and SIGKILL if it has not gone in 10 s; the exit status."""
        if self.process.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()
        return self.process.returncode


def daemon_ports(jack_server: str) -> list[str]:
    """The daemon's JACK output ports (everything not the server's own)."""
    result = subprocess.run(
        ["jack_lsp", "-s", jack_server],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
        env={**os.environ, "JACK_NO_START_SERVER": "1"},
    )
    return [
        line.strip()
        for line in result.stdout.splitlines()
        if line.strip() and not line.startswith("system:")
    ]


class JackRecorder:
    """``jack_rec`` recording ports of a JACK server into a 32-bit WAV file:
    what reached the server, as played."""

    def __init__(
        self, jack_server: str, ports: list[str], path: Path, seconds: float
    ) -> None:
        self.path = path
        self.process = subprocess.Popen(
            ["jack_rec", "-f", str(path), "-d", str(seconds), "-b", "32", *ports],
            env={
                **os.environ,
                "JACK_DEFAULT_SERVER": jack_server,
                "JACK_NO_START_SERVER": "1",
            },
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def wait(self, timeout_s: float) -> np.ndarray:
        """The recording (frames x channels, float) once jack_rec has ended."""
        try:
            _, err = self.process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGINT)
            _, err = self.process.communicate(timeout=10)
        audio, _ = sf.read(self.path, dtype="float64", always_2d=True)
        assert len(audio), f"jack_rec recorded nothing: {err!r}"
        return audio
