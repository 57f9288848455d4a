"""``soundscape daemon`` as a real subprocess on a private JACK dummy server,
driven as a user would: the control commands, signals, a fake systemd socket,
a second instance, broken configs, and JACK killed under it.

Most tests share one daemon (a start costs a few seconds); the SIGTERM fade,
the config error and the device-loss test start their own.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from daemon_process import (
    ROOT,
    DaemonProcess,
    JackRecorder,
    daemon_env,
    daemon_ports,
    free_port,
    tone_scene,
)

from engine.daemon.main import FADE_DEPTH_DB
from engine.rt.audio_io import JackServer

pytestmark = pytest.mark.skipif(
    not JackServer.available(), reason="jackd is not installed"
)

CAP_DBFS = -12.0
WATCHDOG_USEC = 1_000_000
FADE_S = 2.0
# Windows of 10 ms hold exactly ten periods of the 1 kHz test tone: a steady
# tone has a flat RMS per window, so every change is the fade's.
WINDOW = 480
MAX_STEP_DB = 0.5
# Steps are judged down to this far under the tone; below it the last 50 ms
# take the fade to exact zero (a step at -60 dB is not audible).
JUDGED_DEPTH_DB = FADE_DEPTH_DB - 5.0


def soundscape(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
        env=env,
    )


class NotifyListener:
    """A fake systemd: a unix datagram socket collecting sd_notify messages."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[dict[str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(
                line.split("=", 1) for line in data.decode().splitlines() if line
            )
            self.messages.append(fields)

    def keys(self) -> list[str]:
        return [key for message in list(self.messages) for key in message]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture(scope="module")
def jack() -> Iterator[JackServer]:
    server = JackServer(f"soundscape-daemon-test-{os.getpid()}")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def shared(
    jack: JackServer, cache_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[DaemonProcess, NotifyListener, Path]]:
    """One daemon playing a loud tone under a -12 dBFS cap, its config in the
    user's config directory, told to notify a fake systemd."""
    home = tmp_path_factory.mktemp("home")
    scenes = home / "scenes"
    scenes.mkdir()
    (scenes / "tone_a.yaml").write_text(tone_scene("tone_a", loudness_lufs=-10))
    (scenes / "tone_b.yaml").write_text(tone_scene("tone_b", amplitude=0.2))
    (scenes / "tone_c.yaml").write_text(tone_scene("tone_c", amplitude=0.1))
    config = home / "config" / "soundscape" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(
        f"scene: tone_a\nvolume: {{cap_dbfs: {CAP_DBFS}}}\n"
        f"paths: {{scenes: [{scenes}]}}\n"
    )
    env = daemon_env(home, jack.name, cache_dir)
    listener = NotifyListener(home / "notify.sock")
    env.update(NOTIFY_SOCKET=str(listener.path), WATCHDOG_USEC=str(WATCHDOG_USEC))
    daemon = DaemonProcess(env, free_port())
    try:
        daemon.wait_ready()
        yield daemon, listener, config
    finally:
        daemon.stop()
        listener.close()


def client_env(daemon: DaemonProcess) -> dict[str, str]:
    env = {k: v for k, v in daemon.env.items() if k not in ("NOTIFY_SOCKET",)}
    return env


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the shared daemon --------------------------------------------------------------


def test_ready_and_watchdog_reach_systemd(shared) -> None:  # type: ignore[no-untyped-def]
    _, listener, _ = shared
    deadline = time.monotonic() + 10
    while listener.keys().count("WATCHDOG") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    keys = listener.keys()
    assert "READY" in keys, listener.messages
    ready = next(m for m in listener.messages if "READY" in m)
    assert ready["READY"] == "1" and ready["STATUS"] == "playing tone_a"
    # Pinged at half the watchdog interval at least.
    assert keys.count("WATCHDOG") >= 2, listener.messages


def test_status_command_prints_scene_levels_output_and_uptime(shared) -> None:  # type: ignore[no-untyped-def]
    daemon, _, _ = shared
    result = soundscape(client_env(daemon), "status", "--osc-port", str(daemon.port))
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(None, 1) for line in result.stdout.splitlines())
    assert lines["scene"] == "tone_a"
    assert lines["output"].startswith("playing (device system, 0 outages")
    assert lines["levels"].startswith("peak ")
    assert "callbacks" in lines["underflows"]
    assert "% of the block budget" in lines["cpu"]
    assert lines["uptime"].endswith("s")


def test_no_sound_above_the_cap_whatever_osc_asks(shared) -> None:  # type: ignore[no-untyped-def]
    daemon, _, _ = shared
    env = client_env(daemon)
    result = soundscape(
        env, "volume", "24", "--ramp", "0.1", "--osc-port", str(daemon.port)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "volume 0 dB (over 0.1 s)"
    assert "clamped to 0 dB" in result.stderr
    time.sleep(0.3)
    peaks = [daemon.status()["master_peak_dbfs"] for _ in range(10)]
    # The tone alone would peak near -7 dBFS: the limiter holds it at the cap.
    assert max(peaks) <= CAP_DBFS + 0.01, peaks
    assert min(peaks) > CAP_DBFS - 3.0, peaks


def test_volume_command_ramps_to_the_level_asked(shared) -> None:  # type: ignore[no-untyped-def]
    daemon, _, _ = shared
    env = client_env(daemon)
    result = soundscape(
        env, "volume", "-20", "--ramp", "1", "--osc-port", str(daemon.port)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "volume -20 dB (over 1 s)"
    seen = []
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline and (not seen or seen[-1] != -20.0):
        seen.append(daemon.status()["volume_db"])
    assert seen[-1] == -20.0, seen
    # A ramp, not a jump: part of the way, the volume was between the levels
    # (the command returned at once, the ramp takes a second).
    assert any(-20.0 < v < 0.0 for v in seen), seen
    soundscape(env, "volume", "0", "--ramp", "0", "--osc-port", str(daemon.port))


def test_scene_command_crossfades_and_names_a_missing_scene(shared) -> None:  # type: ignore[no-untyped-def]
    daemon, _, _ = shared
    env = client_env(daemon)
    port = str(daemon.port)
    result = soundscape(env, "scene", "tone_b", "--fade", "0.5", "--osc-port", port)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "playing tone_b"
    assert daemon.status()["scene"] == "tone_b"
    result = soundscape(env, "scene", "tone_bb", "--osc-port", port)
    assert result.returncode == 1
    assert "no scene 'tone_bb' (did you mean 'tone_b'?)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_second_instance_is_refused_naming_the_pid(shared) -> None:  # type: ignore[no-untyped-def]
    daemon, _, _ = shared
    second = DaemonProcess(client_env(daemon), free_port())
    assert second.process.wait(timeout=60) == 1
    text = second.log()
    assert f"another soundscape daemon is running (pid {daemon.pid};" in text
    assert len(text.strip().splitlines()) == 1, text
    assert daemon.process.poll() is None


def test_sighup_keeps_the_running_config_when_the_new_one_is_broken(shared) -> None:  # type: ignore[no-untyped-def]
    daemon, listener, config = shared
    good = config.read_text()
    before = daemon.log()
    config.write_text(good + "osc:\n  port: 99999\n")
    daemon.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "reload:" not in daemon.log()[len(before) :] and time.monotonic() < deadline:
        time.sleep(0.05)
    new_lines = daemon.log()[len(before) :].strip().splitlines()
    assert len(new_lines) == 1, new_lines
    assert (
        f"{config}:5:3: osc.port: expected a number in 1..65535, got 99999"
        in (new_lines[0])
    )
    assert "the running config stays" in new_lines[0]
    assert daemon.status()["output"]["state"] == "playing"

    # A good config naming another scene: reloaded, and the scene follows.
    config.write_text(good.replace("scene: tone_a", "scene: tone_c"))
    daemon.signal(signal.SIGHUP)
    daemon.wait_until(lambda s: s["scene"] == "tone_c")
    keys = listener.keys()
    assert "RELOADING" in keys
    assert keys[keys.index("RELOADING") :].count("READY") >= 1


def test_sleep_timer_ends_in_silence_then_the_daemon_idles_until_osc(shared) -> None:  # type: ignore[no-untyped-def]
    daemon, _, _ = shared
    with daemon.client() as client:
        client.send("/sleep", [1.0, 0.5], "ff")
    status = daemon.wait_until(lambda s: s["output"]["state"] == "paused", 20.0)
    # Paused once the master meter (which the status reads) fell to the floor.
    assert status["master_peak_dbfs"] == -120.0
    idle_cpu_s = cpu_seconds(daemon.pid)
    idle_wall_s = time.monotonic()
    time.sleep(2.0)
    idle_cpu_s = cpu_seconds(daemon.pid) - idle_cpu_s
    idle_share = idle_cpu_s / (time.monotonic() - idle_wall_s)
    # Playing, the engine and its threads take several % of a core; paused,
    # the stream and PortAudio's JACK client are closed (measured ~0.2 %).
    assert idle_share < 0.01, idle_share
    # Status queries do not wake it...
    assert daemon.status()["output"]["state"] == "paused"
    # ...a command does: the sound comes back.
    with daemon.client() as client:
        client.send("/sleep/cancel")
    daemon.wait_until(
        lambda s: s["output"]["state"] == "playing" and s["master_peak_dbfs"] > -60.0,
        20.0,
    )


def test_stop_command_fades_and_the_daemon_exits_0(shared) -> None:  # type: ignore[no-untyped-def]
    daemon, listener, _ = shared
    result = soundscape(client_env(daemon), "stop", "--osc-port", str(daemon.port))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["the daemon fades out over 2 s", "stopped"]
    assert daemon.process.wait(timeout=10) == 0
    assert "STOPPING" in listener.keys()  # noqa: SIM118 - a list of keys


# --- daemons of their own --------------------------------------------------------------


def test_sigterm_fades_smoothly_to_exact_silence_and_exits_0(
    jack: JackServer, cache_dir: Path, tmp_path: Path
) -> None:
    scene = tmp_path / "tone.yaml"
    scene.write_text(tone_scene("tone"))
    env = daemon_env(tmp_path, jack.name, cache_dir)
    daemon = DaemonProcess(env, free_port(), "--scene", str(scene))
    try:
        daemon.wait_ready()
        ports = daemon_ports(jack.name)
        assert len(ports) == 2, ports
        recorder = JackRecorder(jack.name, ports, tmp_path / "out.wav", FADE_S + 4.0)
        time.sleep(1.5)
        signalled = time.monotonic()
        daemon.signal(signal.SIGTERM)
        assert daemon.process.wait(timeout=FADE_S + 10) == 0, daemon.log()
        took_s = time.monotonic() - signalled
        audio = recorder.wait(FADE_S + 10)
    finally:
        daemon.stop()
    assert took_s < FADE_S + 1.0, took_s

    left = audio[:, 0]
    n = len(left) // WINDOW
    rms = np.sqrt(np.mean(left[: n * WINDOW].reshape(n, WINDOW) ** 2, axis=1))
    level_db = 20 * np.log10(np.maximum(rms, 1e-12))
    steady_db = float(np.median(level_db[10:60]))
    assert steady_db > -40.0, steady_db  # the tone was recorded
    judged = level_db > steady_db - JUDGED_DEPTH_DB
    both = judged[:-1] & judged[1:]
    steps_db = np.abs(np.diff(level_db))[both]
    assert steps_db.max() <= MAX_STEP_DB, steps_db.max()
    assert level_db.max() < steady_db + MAX_STEP_DB  # nothing swelled first
    # It faded (not stopped short): the level went well under the tone...
    faded = np.nonzero(level_db < steady_db - JUDGED_DEPTH_DB)[0]
    assert len(faded), "never faded"
    # ...and from the last non-zero sample on, the output is exact zeros, for
    # longer than the recording's last half second; what came just before
    # the silence was 60 dB under the tone (no click).
    nonzero = np.nonzero(audio)[0]
    last = int(nonzero[-1])
    assert len(audio) - last > 0.5 * 48000
    tail = np.abs(audio[max(last - 2400, 0) : last + 1]).max()
    assert 20 * np.log10(tail) < steady_db - 50.0


def test_a_config_error_is_one_line_naming_the_file_and_key(
    jack: JackServer, cache_dir: Path, tmp_path: Path
) -> None:
    env = daemon_env(tmp_path, jack.name, cache_dir)
    config = tmp_path / "bad.yaml"
    config.write_text("volume:\n  cap_dbfs: loud\n")
    result = soundscape(env, "daemon", "--config", str(config))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"soundscape: {config}:2:3: volume.cap_dbfs:"), lines


def test_jack_killed_and_restarted_3_times_the_daemon_plays_on(
    cache_dir: Path, tmp_path: Path
) -> None:
    server = JackServer(f"soundscape-daemon-loss-{os.getpid()}")
    server.start()
    scene = tmp_path / "tone.yaml"
    scene.write_text(tone_scene("tone"))
    daemon = DaemonProcess(
        daemon_env(tmp_path, server.name, cache_dir), free_port(), "--scene", str(scene)
    )
    try:
        daemon.wait_ready()
        for cycle in range(3):
            assert server.process is not None
            server.process.kill()
            server.process.wait()
            server.process = None
            # Status answers during the outage, and says so.
            lost = daemon.wait_until(lambda s: s["output"]["state"] == "lost", 10.0)
            assert lost["output"]["outages"] == cycle + 1
            # The reason may already be a retry's ("no output device matches").
            assert lost["output"]["last_error"]
            time.sleep(0.3)
            assert daemon.status()["output"]["outage_s"] > 0.0
            server.start()
            back = daemon.wait_until(
                lambda s: (
                    s["output"]["state"] == "playing" and s["master_peak_dbfs"] > -60
                ),
                30.0,
            )
            assert back["scene"] == "tone"
        assert daemon.stop() == 0, daemon.log()
        # Each loss was seen by the callback watchdog, not by an error.
        assert daemon.log().count("device lost (no audio callback for") == 3
    finally:
        daemon.stop()
        server.stop()
