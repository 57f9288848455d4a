"""Shared fixtures: a private JACK dummy server for tests that need live audio.

``jack_server`` (session scope) gives the name of a running JACK server that
PortAudio is connected to:

- If ``JACK_DEFAULT_SERVER`` is set (``scripts/bootstrap.sh test`` starts one
  and exports it), that server is used; it must answer, or the fixture fails.
- Otherwise the fixture starts ``jackd -n soundscape-pytest-PID-... -d dummy``
  with its own unique name, points ``JACK_DEFAULT_SERVER`` at it, and stops it
  (only it) at the end of the session.

Live tests are skipped only when jackd is not installed at all.

``run_python`` runs a snippet in a fresh interpreter (for what only a new
process shows: imports, threads, compiled code, malloc arenas).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

JACK_SAMPLE_RATE = 48000
JACK_PERIOD_FRAMES = 128


@pytest.fixture(scope="session")
def jack_server() -> Iterator[str]:
    """Name of a running JACK dummy server that PortAudio can see."""
    from engine.rt.audio_io import JackServer, refresh_devices

    os.environ.setdefault("JACK_NO_START_SERVER", "1")  # never auto-spawn jackd
    existing = os.environ.get("JACK_DEFAULT_SERVER")
    if existing:
        server = JackServer(existing)
        if not server.available():
            pytest.fail(
                f"JACK_DEFAULT_SERVER={existing!r} is set but jack_lsp is missing"
            )
        if not server.is_ready():
            pytest.fail(
                f"JACK_DEFAULT_SERVER={existing!r} is set but that server does not "
                "answer `jack_lsp -s`; start it or unset the variable."
            )
        refresh_devices()
        yield existing
        return

    if not JackServer.available():
        pytest.skip(
            "jackd is not installed: live audio tests need it "
            "(`bash scripts/bootstrap.sh test` installs jackd2)."
        )
    server = JackServer(
        f"soundscape-pytest-{os.getpid()}",
        sample_rate=JACK_SAMPLE_RATE,
        period_frames=JACK_PERIOD_FRAMES,
    )
    server.start()
    os.environ["JACK_DEFAULT_SERVER"] = server.name
    refresh_devices()  # PortAudio enumerated host APIs at import, without JACK
    try:
        yield server.name
    finally:
        import sounddevice as sd

        sd._terminate()  # drop PortAudio's JACK client before its server goes
        server.stop()
        del os.environ["JACK_DEFAULT_SERVER"]
        sd._initialize()


def _run_python(
    code: str,
    *args: str,
    env: Mapping[str, str] | None = None,
    drop: Iterable[str] = (),
    timeout_s: float = 300.0,
) -> str:
    dropped = set(drop)
    environment = {k: v for k, v in os.environ.items() if k not in dropped}
    environment.update({"PYTHONPATH": str(ROOT), **(env or {})})
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env=environment,
        timeout=timeout_s,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.fixture
def run_python() -> Callable[..., str]:
    """``run_python(code, *args, env=None, drop=(), timeout_s=300)``: run
    ``python -c code args`` in a fresh interpreter at the checkout's root, with
    it on ``PYTHONPATH``, this process's environment plus ``env`` and minus the
    names in ``drop``. Returns its stdout; a failing process fails the test with
    the end of its stderr."""
    return _run_python


# A callback's CPU clock leaves out the steal the hypervisor reports, not time
# it takes otherwise (a throttled VM, a vCPU sharing its core): with the host
# taking 10-45 % of a window, callbacks read 2.6-3.2 ms of CPU where they cost
# 0.05-0.5 ms (benchmarks/RESULTS.md "Real time"). So a live test lets one
# overrun through per this much stolen time, and none without steal.
STEAL_MS_PER_OVERRUN = 100.0


@pytest.fixture
def allowed_overruns() -> Callable[[float], int]:
    """``allowed_overruns(steal_ms)``: how many overruns (callbacks over budget
    by their own CPU clock) a live test window may have when the host took
    ``steal_ms`` from the VM in it: 0 without steal, one per 100 ms of it.
    A planted 4 ms stall every 500 callbacks still fails (2-5 per 3 s window
    with 10-60 ms of steal)."""
    return lambda steal_ms: int(max(steal_ms, 0.0) // STEAL_MS_PER_OVERRUN)
