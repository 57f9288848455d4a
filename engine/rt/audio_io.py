"""Live audio output: device discovery and PortAudio streams driven by a C callback.

This is the control-plane side of the live output layer. The audio callback
itself is a Numba ``@cfunc`` with PortAudio's C signature (DESIGN.md §1): it is
handed to PortAudio as a raw function pointer, together with a raw ``userdata``
pointer, so PortAudio's audio thread never enters Python and never needs the GIL.

    from numba import cfunc
    from engine.rt.audio_io import PA_STREAM_CALLBACK_SIGNATURE

    @cfunc(PA_STREAM_CALLBACK_SIGNATURE, nopython=True, nogil=True, cache=True)
    def callback(input_ptr, output_ptr, n_frames, time_info, status_flags, userdata):
        ...
        return PA_CONTINUE

    stream = open_cfunc_output_stream(
        callback.address, table_address, sample_rate=48000, block_size=128,
        channels=2, device=None, keep_alive=(callback, table, ...),
    )
    stream.start()

Device choice: when a JACK server is reachable (PortAudio's JACK host API has
devices) it is preferred, since that is where a running audio setup lives; the
JACK server PortAudio connects to is the one named by ``JACK_DEFAULT_SERVER``.
PortAudio enumerates host APIs once, when it is initialised; a JACK server
started later is only seen after :func:`refresh_devices`.

Audio thread: no. Every function here is for control threads only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable
from typing import IO, Any

import sounddevice as sd
from numba import types

__all__ = [
    "JACK_HOST_API_NAME",
    "MAX_BLOCK_SIZE",
    "MIN_BLOCK_SIZE",
    "PA_ABORT",
    "PA_COMPLETE",
    "PA_CONTINUE",
    "PA_STREAM_CALLBACK_SIGNATURE",
    "SUPPORTED_SAMPLE_RATES",
    "AudioDeviceError",
    "CfuncOutputStream",
    "JackServer",
    "jack_xrun_causes",
    "list_output_devices",
    "open_cfunc_output_stream",
    "refresh_devices",
    "resolve_device",
]

SUPPORTED_SAMPLE_RATES: tuple[int, ...] = (44100, 48000)
"""Sample rates the engine runs at, in Hz."""
MIN_BLOCK_SIZE: int = 32
"""Smallest frames per callback accepted."""
MAX_BLOCK_SIZE: int = 2048
"""Largest frames per callback accepted."""

JACK_HOST_API_NAME: str = "JACK Audio Connection Kit"
"""PortAudio's name for its JACK host API."""

# PaStreamCallbackResult (portaudio.h): what the C callback returns.
PA_CONTINUE: int = 0
PA_COMPLETE: int = 1
PA_ABORT: int = 2

PA_STREAM_CALLBACK_SIGNATURE = types.int32(
    types.voidptr,  # const void* input
    types.voidptr,  # void* output
    types.ulong,  # unsigned long frameCount
    types.voidptr,  # const PaStreamCallbackTimeInfo* timeInfo
    types.ulong,  # PaStreamCallbackFlags statusFlags (unsigned long)
    types.voidptr,  # void* userData
)
"""Numba signature of ``PaStreamCallback``, for ``@cfunc(PA_STREAM_CALLBACK_SIGNATURE)``."""


class AudioDeviceError(RuntimeError):
    """No usable output device, or the requested one does not exist."""


def refresh_devices() -> None:
    """Re-initialise PortAudio so it enumerates devices and host APIs again.

    Needed after a JACK server was started (or stopped) in this process's
    lifetime. Must not be called while any stream is open.

    Audio thread: no.
    """
    sd._terminate()
    sd._initialize()


def list_output_devices() -> list[dict[str, Any]]:
    """List the devices that can play audio, as plain dicts.

    Keys: ``index`` (PortAudio device index), ``name``, ``host_api`` (name),
    ``max_output_channels``, ``default_sample_rate`` (Hz).

    Audio thread: no.
    """
    host_apis = sd.query_hostapis()
    devices = []
    for index, info in enumerate(sd.query_devices()):
        if info["max_output_channels"] <= 0:
            continue
        devices.append(
            {
                "index": index,
                "name": info["name"],
                "host_api": host_apis[info["hostapi"]]["name"],
                "max_output_channels": int(info["max_output_channels"]),
                "default_sample_rate": float(info["default_samplerate"]),
            }
        )
    return devices


def _describe(devices: Iterable[dict[str, Any]]) -> str:
    lines = [
        f"  {d['index']}: {d['name']} ({d['host_api']}, "
        f"{d['max_output_channels']} out, {d['default_sample_rate']:g} Hz)"
        for d in devices
    ]
    return "\n".join(lines) if lines else "  (none)"


def _jack_default_output() -> int | None:
    for api in sd.query_hostapis():
        if api["name"] == JACK_HOST_API_NAME and api["devices"]:
            default = api["default_output_device"]
            return int(default) if default >= 0 else None
    return None


def resolve_device(spec: str | int | None) -> int | None:
    """Turn a device spec into a PortAudio output device index.

    - ``None``: the JACK host API's default output if a JACK server is
      reachable, else PortAudio's default output; ``None`` if there is no
      output device at all.
    - ``int`` or a string of digits: that device index (must be an output).
    - ``str``: an exact device name, else a case-insensitive substring of one.
      Among several matches the JACK one wins; a remaining tie is an error.

    Raises :class:`AudioDeviceError` naming the available outputs when the
    spec matches none (or is ambiguous).

    Audio thread: no.
    """
    outputs = list_output_devices()
    if spec is None:
        jack = _jack_default_output()
        if jack is not None:
            return jack
        default = sd.default.device[1]
        if default is not None and any(d["index"] == default for d in outputs):
            return int(default)
        return outputs[0]["index"] if outputs else None

    if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().isdigit()):
        index = int(spec)
        if any(d["index"] == index for d in outputs):
            return index
        raise AudioDeviceError(
            f"audio device: no output device with index {index}. "
            f"Pick one of these outputs:\n{_describe(outputs)}"
        )

    name = spec.strip()
    matches = [d for d in outputs if d["name"] == name]
    if not matches:
        matches = [d for d in outputs if name.lower() in d["name"].lower()]
    if len(matches) > 1:
        jack_matches = [d for d in matches if d["host_api"] == JACK_HOST_API_NAME]
        matches = jack_matches or matches
    if len(matches) == 1:
        return int(matches[0]["index"])
    if not matches:
        raise AudioDeviceError(
            f"audio device: no output device matches {spec!r}. "
            f"Pick one of these outputs (by index or name):\n{_describe(outputs)}"
        )
    raise AudioDeviceError(
        f"audio device: {spec!r} matches several outputs. "
        f"Use an index or a longer name:\n{_describe(matches)}"
    )


class CfuncOutputStream(sd._StreamBase):
    """A PortAudio output stream whose callback is a C function pointer.

    Holds references to everything the callback reads through raw pointers
    (``keep_alive``) so none of it is freed while the stream exists. Use it as
    a context manager or call ``start()``/``stop()``/``close()``.

    Audio thread: no.
    """

    keep_alive: tuple[object, ...]


def _validate(sample_rate: int, block_size: int, channels: int) -> None:
    if sample_rate not in SUPPORTED_SAMPLE_RATES:
        rates = " or ".join(str(rate) for rate in SUPPORTED_SAMPLE_RATES)
        raise ValueError(
            f"audio output: sample_rate {sample_rate} Hz is not supported. Use {rates}."
        )
    if not MIN_BLOCK_SIZE <= block_size <= MAX_BLOCK_SIZE:
        raise ValueError(
            f"audio output: block_size {block_size} is out of range. "
            f"Use {MIN_BLOCK_SIZE}..{MAX_BLOCK_SIZE} frames (128 is typical)."
        )
    if channels < 1:
        raise ValueError(f"audio output: channels {channels} must be at least 1.")


def open_cfunc_output_stream(
    callback_address: int,
    userdata_address: int,
    sample_rate: int,
    block_size: int,
    channels: int,
    device: str | int | None,
    *,
    latency: float | str | None = None,
    keep_alive: Iterable[object] = (),
) -> CfuncOutputStream:
    """Open (not start) a float32 interleaved output stream with a C callback.

    ``callback_address`` is the address of a function with PortAudio's
    ``PaStreamCallback`` signature, e.g. ``numba.cfunc(...).address``.
    ``userdata_address`` is passed to it unchanged as ``void* userData``
    (typically the address of an int64 pointer table, see engine.rt.pointers).
    Every callback gets exactly ``block_size`` frames (PortAudio adapts to the
    host's buffer size). ``device`` is resolved by :func:`resolve_device`.
    ``latency`` is PortAudio's suggested latency in seconds, or 'low'/'high'
    (default: PortAudio's low-latency default for the device).

    The caller must keep the cfunc and every array the callback reads alive
    until the stream is closed: pass them as ``keep_alive``.

    Raises ``ValueError`` for an unsupported sample rate, block size or channel
    count, :class:`AudioDeviceError` for a missing device, and
    ``sounddevice.PortAudioError`` when PortAudio refuses the stream.

    Audio thread: no.
    """
    _validate(sample_rate, block_size, channels)
    if not callback_address:
        raise ValueError("audio output: callback_address is NULL.")
    index = resolve_device(device)
    if index is None:
        raise AudioDeviceError(
            "audio output: there is no output device. Start a JACK server "
            "(e.g. `jackd -d dummy -r 48000`) or connect a sound card."
        )
    info = sd.query_devices(index)
    if channels > info["max_output_channels"]:
        raise AudioDeviceError(
            f"audio output: {info['name']!r} has {info['max_output_channels']} "
            f"output channels; {channels} were requested. Use fewer channels."
        )
    callback_pointer = sd._ffi.cast("PaStreamCallback*", callback_address)
    userdata_pointer = sd._ffi.cast("void*", userdata_address)
    stream = CfuncOutputStream(
        kind="output",
        samplerate=sample_rate,
        blocksize=block_size,
        device=index,
        channels=channels,
        dtype="float32",
        latency=latency,
        callback=callback_pointer,
        userdata=userdata_pointer,
        # Nothing should scale or dither what the engine renders.
        clip_off=True,
        dither_off=True,
    )
    stream.keep_alive = (callback_pointer, userdata_pointer, *keep_alive)
    return stream


def jack_xrun_causes(log: str) -> dict[str, int]:
    """Count the xruns in a ``jackd`` (1.9) log by cause.

    - ``timer``: the dummy driver woke after its cycle's deadline, so the
      machine was late whatever the clients do (an idle server logs these on a
      virtual machine whose host deschedules it);
    - ``client_running``: a client was still inside its process callback when
      the next cycle began (too slow, or its thread lost the CPU);
    - ``client_waiting``: a client had been woken but had not started.

    >>> jack_xrun_causes("JackTimedDriver::Process XRun = 15 usec")["timer"]
    1
    """
    causes = {"timer": 0, "client_running": 0, "client_waiting": 0}
    for line in log.splitlines():
        if line.startswith("JackTimedDriver::Process XRun"):
            causes["timer"] += 1
        elif "was not finished, state = Triggered" in line:
            causes["client_waiting"] += 1
        elif "was not finished" in line or "finished after current" in line:
            causes["client_running"] += 1
    return causes


# Ports a private server makes room for. libjack maps the server's whole
# shared segment into every client and locks it in memory: 107 MB at jackd's
# default (2048 ports), 40 MB at 64; the engine needs two, a test a few more.
JACK_PORT_MAX = 64


class JackServer:
    """A private ``jackd`` with the dummy backend, under its own server name.

    For tests, benchmarks and machines without a sound card. It never touches
    another JACK server: it starts ``jackd -n NAME`` and stops only the
    process it started. Set ``JACK_DEFAULT_SERVER=NAME`` (``env_name``) before
    PortAudio initialises, or call :func:`refresh_devices` after, so PortAudio
    connects to it.

    Audio thread: no.
    """

    def __init__(
        self,
        name: str | None = None,
        sample_rate: int = 48000,
        period_frames: int = 128,
        port_max: int = JACK_PORT_MAX,
    ) -> None:
        self.name = name or f"soundscape-{os.getpid()}-{time.monotonic_ns()}"
        self.sample_rate = sample_rate
        self.period_frames = period_frames
        self.port_max = port_max
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @staticmethod
    def available() -> bool:
        """True when ``jackd`` and ``jack_lsp`` are installed."""
        return bool(shutil.which("jackd") and shutil.which("jack_lsp"))

    def is_ready(self) -> bool:
        """True when the server answers ``jack_lsp -s NAME``."""
        env = {**os.environ, "JACK_NO_START_SERVER": "1"}
        result = subprocess.run(
            ["jack_lsp", "-s", self.name],
            capture_output=True,
            env=env,
            timeout=5,
            check=False,
        )
        return result.returncode == 0 and b"system:playback" in result.stdout

    def start(self, timeout_s: float = 10.0) -> None:
        """Start the server and wait (at most ``timeout_s``) until it answers."""
        if not self.available():
            raise AudioDeviceError(
                "jack: jackd is not installed. Install it with "
                "`apt-get install --no-install-recommends jackd2`."
            )
        command = [
            "jackd", "-n", self.name, "-p", str(self.port_max), "-d", "dummy",
            "-r", str(self.sample_rate), "-p", str(self.period_frames),
        ]  # fmt: skip
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                raise AudioDeviceError(f"jack: jackd exited at start:\n{self.log()}")
            if self.is_ready():
                return
            time.sleep(0.05)
        self.stop()
        raise AudioDeviceError(
            f"jack: server {self.name!r} not ready in {timeout_s} s."
        )

    def log(self) -> str:
        """What jackd has printed so far."""
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def xrun_causes(self) -> dict[str, int]:
        """The xruns this server has logged so far, by cause
        (see :func:`jack_xrun_causes`)."""
        return jack_xrun_causes(self.log())

    def stop(self) -> None:
        """Stop the server this object started (no-op if none)."""
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> JackServer:  # noqa: PYI034 - Self needs Python 3.11
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
