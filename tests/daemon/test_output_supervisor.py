"""The output supervisor against a real private JACK dummy server: the server is
killed and started again, the loss is seen, and the same engine plays on.

These tests swap the process's PortAudio for private copies and kill a JACK
server under it. Inside a pytest process that other tests share, PortAudio and
libjack also hold the session server's clients and streams, and initialising a
fresh copy beside them crashed the whole run (SIGSEGV in ``Pa_Initialize``). So
the tests run in a child pytest of their own, as the daemon does (one process,
one PortAudio user): :func:`test_in_a_process_of_its_own` starts it and fails
with its output if any test there fails or the child crashes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import sounddevice as sd
from polling import wait_for

from engine.daemon.output_supervisor import OutputState, OutputStatus, OutputSupervisor
from engine.daemon.portaudio_instance import PortAudioHost
from engine.demos import DEMOS
from engine.rt.audio_io import JackServer
from engine.rt.engine import Engine

RATE = 48000
CYCLES = 3
# Loose: the benchmark measures detection (about 130 ms); a loaded 2-core
# machine may pause this process, so the test only rules out "much later".
DETECT_LIMIT_S = 1.5
RESUME_LIMIT_S = 20.0
CHILD_ENV = "SOUNDSCAPE_SUPERVISOR_TEST_CHILD"
IN_CHILD = os.environ.get(CHILD_ENV) == "1"
only_in_child = pytest.mark.skipif(
    not IN_CHILD, reason="runs in its own process: test_in_a_process_of_its_own"
)


def test_in_a_process_of_its_own() -> None:
    if IN_CHILD:
        pytest.skip("this is the child process")
    if not JackServer.available():
        pytest.skip("jackd is not installed")
    env = {**os.environ, CHILD_ENV: "1", "JACK_NO_START_SERVER": "1"}
    # The child starts its own server; it must not lean on this session's.
    env.pop("JACK_DEFAULT_SERVER", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=env,
    )
    assert result.returncode == 0, (
        f"child pytest exited {result.returncode}:\n"
        f"{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
    )
    assert "3 passed" in result.stdout, result.stdout[-2000:]


@pytest.fixture
def own_server() -> Iterator[JackServer]:
    """A JACK server of this test's own, which it may kill; afterwards PortAudio
    is a fresh instance again, pointed at whatever server the session uses."""
    if not JackServer.available():
        pytest.skip("jackd is not installed")
    previous = os.environ.get("JACK_DEFAULT_SERVER")
    server = JackServer(f"soundscape-loss-{os.getpid()}", sample_rate=RATE)
    server.start()
    os.environ["JACK_DEFAULT_SERVER"] = server.name
    PortAudioHost().switch_to_fresh_copy()
    try:
        yield server
    finally:
        server.stop()
        if previous is None:
            os.environ.pop("JACK_DEFAULT_SERVER", None)
        else:
            os.environ["JACK_DEFAULT_SERVER"] = previous
        # This instance's JACK client belonged to the stopped server: never
        # terminate it, start a fresh one for the tests that follow.
        PortAudioHost().switch_to_fresh_copy()


@only_in_child
def test_loss_is_detected_and_the_same_engine_resumes_after_each_restart(
    own_server: JackServer,
) -> None:
    engine = Engine(sample_rate=RATE)
    engine.load(DEMOS["focus"]())
    changes: list[OutputStatus] = []
    supervisor = OutputSupervisor(
        engine, device="system", block_size=128, on_change=changes.append
    )
    supervisor.start()
    try:
        assert wait_for(lambda: supervisor.status().callbacks > 50, 10.0), (
            supervisor.status()
        )
        for cycle in range(CYCLES):
            frames_before = engine.frame
            assert own_server.process is not None
            killed = time.monotonic()
            own_server.process.kill()
            own_server.process.wait()
            own_server.process = None
            assert wait_for(
                lambda: supervisor.status().state == OutputState.LOST, 5.0
            ), supervisor.status()
            status = supervisor.status()
            assert status.lost_since is not None
            assert status.lost_since - killed < DETECT_LIMIT_S
            assert status.outages == cycle + 1
            assert "no audio callback" in (status.last_error or "")
            # Nothing plays, so the engine's clock stands still.
            frames_lost = engine.frame
            time.sleep(0.3)
            assert engine.frame == frames_lost
            assert supervisor.status().state == OutputState.LOST

            own_server.start()
            assert wait_for(
                lambda: (
                    supervisor.status().state == OutputState.PLAYING
                    and supervisor.status().callbacks > 20
                ),
                RESUME_LIMIT_S,
            ), supervisor.status()
            # The same engine, going on from where it stopped.
            assert engine.frame > frames_lost >= frames_before
            status = supervisor.status()
            assert status.retries == 0 and status.lost_since is None
        assert [c.state for c in changes] == [OutputState.PLAYING] + [
            OutputState.LOST,
            OutputState.PLAYING,
        ] * CYCLES
        assert supervisor.status().portaudio_copies == CYCLES
    finally:
        started = time.monotonic()
        assert supervisor.stop(timeout_s=5.0)
        assert time.monotonic() - started < 5.0
    assert supervisor.status().state == OutputState.STOPPED


@only_in_child
def test_a_device_that_is_not_there_is_retried_without_blocking_anyone() -> None:
    engine = Engine(sample_rate=RATE)
    supervisor = OutputSupervisor(
        engine, device="no such device 1234", retry_min_s=0.01, retry_max_s=0.05
    )
    started = time.monotonic()
    supervisor.start()
    assert time.monotonic() - started < 0.5  # start() only starts a thread
    try:
        assert wait_for(lambda: supervisor.status().retries >= 3, 20.0)
        status = supervisor.status()
        assert status.state == OutputState.STARTING
        assert "no such device 1234" in (status.last_error or "")
        assert status.as_dict()["state"] == "starting"
    finally:
        assert supervisor.stop(timeout_s=5.0)
    assert sd._initialized >= 0


@only_in_child
def test_pause_closes_the_stream_and_resume_plays_the_same_engine_on(
    own_server: JackServer,
) -> None:
    engine = Engine(sample_rate=RATE)
    engine.load(DEMOS["focus"]())
    supervisor = OutputSupervisor(engine, device="system", block_size=128)
    supervisor.start()
    try:
        assert wait_for(lambda: supervisor.status().callbacks > 50, 10.0)
        supervisor.pause()
        assert wait_for(lambda: supervisor.status().state == OutputState.PAUSED, 5.0)
        assert supervisor.player is None
        frame = engine.frame
        time.sleep(0.5)  # longer than a stall: a paused output is not "lost"
        assert engine.frame == frame
        assert supervisor.status().state == OutputState.PAUSED
        assert supervisor.status().outages == 0
        supervisor.resume()
        assert wait_for(
            lambda: (
                supervisor.status().state == OutputState.PLAYING
                and supervisor.status().callbacks > 20
            ),
            RESUME_LIMIT_S,
        ), supervisor.status()
        assert engine.frame > frame
        # Closed and opened again on purpose: no fresh PortAudio was needed.
        assert supervisor.status().portaudio_copies == 0
    finally:
        assert supervisor.stop(timeout_s=5.0)
