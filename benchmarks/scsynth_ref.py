"""SuperCollider ``scsynth`` reference renders for the engine benchmark.

This module renders the benchmark patches with SuperCollider's synthesis
server in non-real-time (NRT) mode and measures how much CPU time the server
process spends per second of rendered audio.  It is self-contained: it writes
the SynthDef binary (``SCgf`` version 2) and the NRT OSC score file itself, so
neither ``sclang`` nor any Python SuperCollider client is needed -- only the
``scsynth`` binary and its core UGen plugins (Debian package
``supercollider-server``).  No sc3-plugins UGens are used.

Measurement: CPU time (user + system) of the ``scsynth`` child process is
taken from ``resource.getrusage(RUSAGE_CHILDREN)`` deltas around
``subprocess.run``.  Each patch is rendered twice, once for ``seconds`` and
once for a short ``startup_seconds`` score; the net cost per audio second is
the slope between the two, which removes scsynth's start-up cost (loading the
plugins, allocating memory, opening the file).  Every full-length render is
read back and checked to be finite, non-silent and, where the patch has a
known spectrum, to show the expected spectral peaks.

Run ``python benchmarks/scsynth_ref.py`` to print a table for every patch.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# ---------------------------------------------------------------------------
# SynthDef graph builder and SCgf v2 encoder
# ---------------------------------------------------------------------------

SCALAR_RATE = 0
CONTROL_RATE = 1
AUDIO_RATE = 2

BINOP_ADD = 0
BINOP_MUL = 2


@dataclass(frozen=True)
class OutRef:
    """Reference to one output of a UGen already added to a :class:`Graph`."""

    ugen_index: int
    output_index: int = 0


Input = float | OutRef


@dataclass
class _UGenSpec:
    """One UGen entry of a SynthDef, as stored in the SCgf file."""

    name: str
    rate: int
    inputs: tuple[Input, ...]
    num_outputs: int
    special_index: int = 0


@dataclass
class Graph:
    """Minimal SynthDef graph: UGens are stored in the order they are added.

    Callers must add UGens in a valid execution order (every input refers to
    an earlier UGen), which is natural when building bottom-up.
    """

    name: str
    ugens: list[_UGenSpec] = field(default_factory=list)

    def add(
        self,
        name: str,
        inputs: Sequence[Input] = (),
        *,
        rate: int = AUDIO_RATE,
        num_outputs: int = 1,
        special_index: int = 0,
    ) -> OutRef:
        """Append a UGen and return a reference to its first output."""
        for item in inputs:
            if isinstance(item, OutRef) and item.ugen_index >= len(self.ugens):
                raise ValueError(f"{name}: input refers to a later UGen")
        spec = _UGenSpec(name, rate, tuple(inputs), num_outputs, special_index)
        self.ugens.append(spec)
        return OutRef(len(self.ugens) - 1, 0)

    def outputs(self, ref: OutRef) -> list[OutRef]:
        """Return references to all outputs of the UGen behind ``ref``."""
        count = self.ugens[ref.ugen_index].num_outputs
        return [OutRef(ref.ugen_index, i) for i in range(count)]

    def mul(self, a: Input, b: Input) -> OutRef:
        """Multiply two signals (``BinaryOpUGen`` with operator ``*``)."""
        return self.add("BinaryOpUGen", (a, b), special_index=BINOP_MUL)

    def out(self, channels: Sequence[Input], bus: int = 0) -> None:
        """Write ``channels`` to consecutive audio buses starting at ``bus``."""
        self.add("Out", (float(bus), *channels), num_outputs=0)

    def encode(self) -> bytes:
        """Encode this graph as a complete SCgf version 2 file (one SynthDef)."""
        constants: list[float] = []
        const_index: dict[float, int] = {}
        for ugen in self.ugens:
            for item in ugen.inputs:
                if not isinstance(item, OutRef):
                    value = float(np.float32(item))
                    if value not in const_index:
                        const_index[value] = len(constants)
                        constants.append(value)

        body = bytearray()
        body += _pstring(self.name)
        body += struct.pack(">i", len(constants))
        body += b"".join(struct.pack(">f", c) for c in constants)
        body += struct.pack(">i", 0)  # number of parameters (controls)
        body += struct.pack(">i", 0)  # number of parameter names
        body += struct.pack(">i", len(self.ugens))
        for ugen in self.ugens:
            body += _pstring(ugen.name)
            body += struct.pack(
                ">biih",
                ugen.rate,
                len(ugen.inputs),
                ugen.num_outputs,
                ugen.special_index,
            )
            for item in ugen.inputs:
                if isinstance(item, OutRef):
                    body += struct.pack(">ii", item.ugen_index, item.output_index)
                else:
                    value = float(np.float32(item))
                    body += struct.pack(">ii", -1, const_index[value])
            body += bytes([ugen.rate]) * ugen.num_outputs
        body += struct.pack(">h", 0)  # number of variants
        return b"SCgf" + struct.pack(">ih", 2, 1) + bytes(body)


def _pstring(text: str) -> bytes:
    """Pascal string: one length byte followed by the ASCII characters."""
    raw = text.encode("ascii")
    if len(raw) > 255:
        raise ValueError("name too long for a pstring")
    return bytes([len(raw)]) + raw


class _Summer:
    """Incremental sum using ``Sum4`` trees, as sclang's optimiser would emit.

    Signals are folded into ``Sum4`` nodes as soon as four are pending at a
    level, so only O(log n) intermediate signals are alive at any time and the
    server needs few wire buffers even for wide patches.
    """

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.levels: list[list[Input]] = []

    def add(self, signal: Input, level: int = 0) -> None:
        """Add one signal to the running sum."""
        while len(self.levels) <= level:
            self.levels.append([])
        pending = self.levels[level]
        pending.append(signal)
        if len(pending) == 4:
            self.levels[level] = []
            self.add(self.graph.add("Sum4", pending), level + 1)

    def result(self) -> Input:
        """Return the total of everything added so far."""
        rest: list[Input] = [s for level in self.levels for s in level]
        self.levels = []
        while len(rest) > 1:
            chunk, rest = rest[:4], rest[4:]
            if len(chunk) == 4:
                node = self.graph.add("Sum4", chunk)
            elif len(chunk) == 3:
                node = self.graph.add("Sum3", chunk)
            else:
                node = self.graph.add("BinaryOpUGen", chunk, special_index=BINOP_ADD)
            rest.append(node)
        if not rest:
            raise ValueError("empty sum")
        return rest[0]


# ---------------------------------------------------------------------------
# Patch definitions
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Patch:
    """A benchmark patch: how to build it and how to check its output."""

    description: str
    build: Callable[[Graph], None]
    channels: int
    kind: str  # "patch" or "node"
    baseline: str | None = None  # single nodes: scenario to subtract
    expect_peaks_hz: tuple[float, ...] = ()


def _p1(g: Graph) -> None:
    summer = _Summer(g)
    for freq in np.linspace(100.0, 3300.0, 64):
        summer.add(g.add("SinOsc", (float(freq), 0.0)))
    mix = g.mul(summer.result(), 1.0 / 64.0)
    g.out((mix, mix))


def _p2(g: Graph) -> None:
    summer = _Summer(g)
    for cutoff in np.linspace(200.0, 3200.0, 16):
        noise = g.add("WhiteNoise")
        summer.add(g.add("RLPF", (noise, float(cutoff), 0.2)))
    mix = g.mul(summer.result(), 1.0 / 16.0)
    g.out((mix, mix))


def _p3(g: Graph) -> None:
    pink = g.add("PinkNoise")
    verb = g.add("FreeVerb2", (pink, pink, 0.33, 0.8, 0.5), num_outputs=2)
    g.out(g.outputs(verb))


def _p4(g: Graph) -> None:
    summer = _Summer(g)
    for freq in np.geomspace(55.0, 880.0, 32):
        saw = g.add("Saw", (float(freq),))
        summer.add(g.add("MoogFF", (saw, 1200.0, 2.0, 0.0)))
    mix = g.mul(summer.result(), 1.0 / 32.0)
    g.out((mix, mix))


def _source(name: str, *args: float) -> Callable[[Graph], None]:
    """Single generator UGen written to one output channel."""

    def build(g: Graph) -> None:
        g.out((g.add(name, args),))

    return build


def _filtered(name: str, *args: float, num_outputs: int = 1) -> Callable[[Graph], None]:
    """Single processor UGen fed by one ``WhiteNoise``."""

    def build(g: Graph) -> None:
        noise = g.add("WhiteNoise")
        node = g.add(name, (noise, *args), num_outputs=num_outputs)
        g.out(g.outputs(node))

    return build


def _empty(g: Graph) -> None:
    g.out((g.add("DC", (0.0,)),))


_OSC_HZ = 440.0

_PATCHES: dict[str, Patch] = {
    "P1": Patch(
        "64 SinOsc 100-3300 Hz (linspace), summed, x1/64, stereo",
        _p1,
        2,
        "patch",
        expect_peaks_hz=(100.0, 1725.0, 3300.0),
    ),
    "P2": Patch(
        "16 WhiteNoise -> RLPF(rq 0.2) 200-3200 Hz (linspace), summed, x1/16, stereo",
        _p2,
        2,
        "patch",
    ),
    "P3": Patch(
        "PinkNoise -> FreeVerb2(mix 0.33, room 0.8, damp 0.5), stereo",
        _p3,
        2,
        "patch",
    ),
    "P4": Patch(
        "32 Saw 55-880 Hz (geomspace) -> MoogFF(1200 Hz, gain 2), summed, x1/32, "
        "stereo",
        _p4,
        2,
        "patch",
        expect_peaks_hz=(55.0, 880.0),
    ),
    "Empty": Patch("DC.ar(0) -> Out: per-render overhead baseline", _empty, 1, "node"),
    "SinOsc": Patch(
        "SinOsc 440 Hz",
        _source("SinOsc", _OSC_HZ, 0.0),
        1,
        "node",
        "Empty",
        (_OSC_HZ,),
    ),
    "Saw": Patch(
        "Saw 440 Hz (band-limited)",
        _source("Saw", _OSC_HZ),
        1,
        "node",
        "Empty",
        (_OSC_HZ,),
    ),
    "Pulse": Patch(
        "Pulse 440 Hz, width 0.5 (band-limited)",
        _source("Pulse", _OSC_HZ, 0.5),
        1,
        "node",
        "Empty",
        (_OSC_HZ,),
    ),
    "LFTri": Patch(
        "LFTri 440 Hz (naive)",
        _source("LFTri", _OSC_HZ, 0.0),
        1,
        "node",
        "Empty",
        (_OSC_HZ,),
    ),
    "LFSaw": Patch(
        "LFSaw 440 Hz (naive)",
        _source("LFSaw", _OSC_HZ, 0.0),
        1,
        "node",
        "Empty",
        (_OSC_HZ,),
    ),
    "LFPulse": Patch(
        "LFPulse 440 Hz, width 0.5 (naive)",
        _source("LFPulse", _OSC_HZ, 0.0, 0.5),
        1,
        "node",
        "Empty",
        (_OSC_HZ,),
    ),
    "WhiteNoise": Patch("WhiteNoise", _source("WhiteNoise"), 1, "node", "Empty"),
    "PinkNoise": Patch("PinkNoise", _source("PinkNoise"), 1, "node", "Empty"),
    "BrownNoise": Patch("BrownNoise", _source("BrownNoise"), 1, "node", "Empty"),
    "OnePole": Patch(
        "WhiteNoise -> OnePole(coef 0.5)",
        _filtered("OnePole", 0.5),
        1,
        "node",
        "WhiteNoise",
    ),
    "LPF": Patch(
        "WhiteNoise -> LPF(1000 Hz)", _filtered("LPF", 1000.0), 1, "node", "WhiteNoise"
    ),
    "RLPF": Patch(
        "WhiteNoise -> RLPF(1000 Hz, rq 0.2)",
        _filtered("RLPF", 1000.0, 0.2),
        1,
        "node",
        "WhiteNoise",
    ),
    "BLowPass": Patch(
        "WhiteNoise -> BLowPass(1000 Hz, rq 0.2) (RBJ biquad)",
        _filtered("BLowPass", 1000.0, 0.2),
        1,
        "node",
        "WhiteNoise",
    ),
    "MoogFF": Patch(
        "WhiteNoise -> MoogFF(1000 Hz, gain 2)",
        _filtered("MoogFF", 1000.0, 2.0, 0.0),
        1,
        "node",
        "WhiteNoise",
    ),
    "LeakDC": Patch(
        "WhiteNoise -> LeakDC(coef 0.995)",
        _filtered("LeakDC", 0.995),
        1,
        "node",
        "WhiteNoise",
    ),
    "DelayC": Patch(
        "WhiteNoise -> DelayC(max 0.2 s, 0.1 s) (cubic interp, no feedback)",
        _filtered("DelayC", 0.2, 0.1),
        1,
        "node",
        "WhiteNoise",
    ),
    "CombC": Patch(
        "WhiteNoise -> CombC(max 0.2 s, 0.1 s, decay 1 s) (DelayC with feedback)",
        _filtered("CombC", 0.2, 0.1, 1.0),
        1,
        "node",
        "WhiteNoise",
    ),
    "FreeVerb": Patch(
        "WhiteNoise -> FreeVerb(mix 0.33, room 0.8, damp 0.5), mono",
        _filtered("FreeVerb", 0.33, 0.8, 0.5),
        1,
        "node",
        "WhiteNoise",
    ),
    "Pan2": Patch(
        "WhiteNoise -> Pan2(pos 0.3) (two output channels)",
        _filtered("Pan2", 0.3, 1.0, num_outputs=2),
        2,
        "node",
        "WhiteNoise",
    ),
    "Limiter": Patch(
        "WhiteNoise -> Limiter(level 0.5, 10 ms lookahead)",
        _filtered("Limiter", 0.5, 0.01),
        1,
        "node",
        "WhiteNoise",
    ),
}

PATCHES: dict[str, str] = {name: p.description for name, p in _PATCHES.items()}
"""Patch name -> one-line description, for every patch :func:`render_nrt` knows."""


def synthdef_bytes(patch: str) -> bytes:
    """Return the compiled SCgf v2 SynthDef file for ``patch``."""
    graph = Graph(f"bench_{patch}")
    _PATCHES[patch].build(graph)
    return graph.encode()


# ---------------------------------------------------------------------------
# OSC encoding and NRT score
# ---------------------------------------------------------------------------


def _osc_pad(raw: bytes) -> bytes:
    """Pad ``raw`` with NULs to a multiple of four bytes (at least one NUL)."""
    return raw + b"\0" * (4 - len(raw) % 4)


def _osc_message(address: str, *args: float | str | bytes) -> bytes:
    """Encode one OSC message with int32, float32, string and blob arguments."""
    tags = ","
    payload = bytearray()
    for arg in args:
        if isinstance(arg, bool):
            raise TypeError("bool is not an OSC argument here")
        if isinstance(arg, int):
            tags += "i"
            payload += struct.pack(">i", arg)
        elif isinstance(arg, float):
            tags += "f"
            payload += struct.pack(">f", arg)
        elif isinstance(arg, str):
            tags += "s"
            payload += _osc_pad(arg.encode("ascii"))
        else:
            tags += "b"
            payload += struct.pack(">i", len(arg)) + arg
            payload += b"\0" * (-len(arg) % 4)
    return _osc_pad(address.encode("ascii")) + _osc_pad(tags.encode()) + payload


def _osc_bundle(seconds: float, messages: Sequence[bytes]) -> bytes:
    """Encode an OSC bundle whose time tag is ``seconds`` from score start."""
    whole = int(seconds)
    frac = round((seconds - whole) * 2**32)
    if frac >= 2**32:
        whole, frac = whole + 1, 0
    out = bytearray(b"#bundle\0")
    out += struct.pack(">II", whole, frac)
    for msg in messages:
        out += struct.pack(">i", len(msg)) + msg
    return bytes(out)


def nrt_score(patch: str, seconds: float) -> bytes:
    """Build the binary NRT command file rendering ``patch`` for ``seconds``.

    The file is a sequence of length-prefixed OSC bundles: load the SynthDef
    and start one synth at time 0, and a final no-op bundle at ``seconds``
    that sets the length of the render.
    """
    name = f"bench_{patch}"
    bundles = [
        _osc_bundle(0.0, [_osc_message("/d_recv", synthdef_bytes(patch))]),
        _osc_bundle(0.0, [_osc_message("/s_new", name, 1000, 0, 0)]),
        _osc_bundle(seconds, [_osc_message("/n_free", 1000)]),
    ]
    return b"".join(struct.pack(">i", len(b)) + b for b in bundles)


# ---------------------------------------------------------------------------
# Running scsynth
# ---------------------------------------------------------------------------

_PLUGIN_DIRS = (
    "/usr/lib/SuperCollider/plugins",
    "/usr/local/lib/SuperCollider/plugins",
    "/usr/lib/x86_64-linux-gnu/SuperCollider/plugins",
)


def _scsynth_path() -> str | None:
    """Location of the scsynth binary (``$SCSYNTH`` overrides ``PATH``)."""
    return os.environ.get("SCSYNTH") or shutil.which("scsynth")


def _plugin_dir() -> str | None:
    """Core UGen plugin directory (``$SC_PLUGIN_PATH`` overrides the defaults)."""
    env = os.environ.get("SC_PLUGIN_PATH")
    if env:
        return env
    for candidate in _PLUGIN_DIRS:
        if Path(candidate, "OscUGens.so").exists():
            return candidate
    return None


def scsynth_available() -> bool:
    """True when an ``scsynth`` binary is installed and answers ``-v``."""
    exe = _scsynth_path()
    if exe is None:
        return False
    try:
        proc = subprocess.run([exe, "-v"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0


def _child_cpu_s() -> float:
    """User + system CPU seconds of all waited-for child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class _Run:
    cpu_s: float
    wall_s: float


def _run_scsynth(
    score: Path, out: Path, sample_rate: int, block_size: int, channels: int
) -> _Run:
    """Render ``score`` to ``out`` with scsynth and time the child process."""
    exe = _scsynth_path()
    if exe is None:
        raise RuntimeError("scsynth not found (apt-get install supercollider-server)")
    cmd = [exe, "-N", str(score), "_", str(out), str(sample_rate), "WAV", "float"]
    cmd += ["-o", str(channels), "-z", str(block_size), "-D", "0", "-w", "256"]
    plugins = _plugin_dir()
    if plugins is not None:
        cmd += ["-U", plugins]
    cpu0 = _child_cpu_s()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    cpu = _child_cpu_s() - cpu0
    log = proc.stdout + proc.stderr
    if proc.returncode != 0 or "not installed" in log or "FAILURE" in log:
        raise RuntimeError(f"scsynth failed ({proc.returncode}):\n{log}")
    return _Run(cpu, wall)


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Read a 32-bit float WAV file into a (frames, channels) float32 array."""
    data = path.read_bytes()
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError(f"{path}: not a RIFF/WAVE file")
    pos, channels, rate, fmt_ok, samples = 12, 0, 0, False, None
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        chunk = data[pos + 8 : pos + 8 + size]
        if cid == b"fmt ":
            tag, channels, rate = struct.unpack("<HHI", chunk[:8])
            bits = struct.unpack("<H", chunk[14:16])[0]
            if tag == 0xFFFE:  # WAVE_FORMAT_EXTENSIBLE: sub-format GUID
                tag = struct.unpack("<H", chunk[24:26])[0]
            fmt_ok = tag == 3 and bits == 32
        elif cid == b"data":
            samples = np.frombuffer(chunk, dtype="<f4")
        pos += 8 + size + (size & 1)
    if not fmt_ok or samples is None or channels == 0:
        raise ValueError(f"{path}: expected 32-bit float PCM data")
    frames = len(samples) // channels
    return samples[: frames * channels].reshape(frames, channels), rate


def _verify(path: Path, patch: Patch, seconds: float, sample_rate: int) -> dict:
    """Check that the render is finite, audible and has the expected peaks."""
    audio, rate = read_wav(path)
    if rate != sample_rate or audio.shape[1] != patch.channels:
        raise AssertionError(f"unexpected format: {rate} Hz, {audio.shape[1]} ch")
    expected = seconds * sample_rate
    if abs(audio.shape[0] - expected) > 2 * 64 + 0.01 * expected:
        raise AssertionError(f"{audio.shape[0]} frames, expected ~{expected:.0f}")
    if not np.all(np.isfinite(audio)):
        raise AssertionError("render contains NaN or Inf")
    rms = np.sqrt(np.mean(np.square(audio, dtype=np.float64), axis=0))
    if patch.build is not _empty and np.any(rms < 1e-4):
        raise AssertionError(f"render is silent (rms per channel {rms})")
    if patch.expect_peaks_hz:
        mono = audio[: min(len(audio), 4 * sample_rate)].mean(axis=1)
        window = np.hanning(len(mono))
        spectrum = np.abs(np.fft.rfft(mono * window))
        freqs = np.fft.rfftfreq(len(mono), 1.0 / sample_rate)
        floor = float(np.median(spectrum)) + 1e-12
        for hz in patch.expect_peaks_hz:
            band = (freqs > hz * 0.98 - 2.0) & (freqs < hz * 1.02 + 2.0)
            if spectrum[band].max() < 100.0 * floor:
                raise AssertionError(f"no spectral peak near {hz} Hz")
    return {
        "frames": int(audio.shape[0]),
        "rms": [float(x) for x in rms],
        "peak": float(np.max(np.abs(audio))),
    }


def render_nrt(
    patch: str,
    seconds: float = 20.0,
    sample_rate: int = 48000,
    block_size: int = 64,
    *,
    repeats: int = 5,
    startup_seconds: float = 0.1,
    verify: bool = True,
    verify_seconds: float = 10.0,
    write_file: bool = False,
    keep_wav: Path | None = None,
) -> dict:
    """Render ``patch`` with scsynth in NRT mode and measure its CPU cost.

    Both a ``seconds`` long and a ``startup_seconds`` long score are rendered
    ``repeats`` times each (interleaved); the minimum CPU time of each is used.
    The net cost per audio second is the slope between the two, so scsynth's
    fixed start-up cost (mostly FFTW planning and plugin loading) cancels out.

    The timed renders write to ``/dev/null`` unless ``write_file`` is true, so
    disk I/O of the WAV file is not counted.  When ``verify`` is true, one
    extra render of ``min(seconds, verify_seconds)`` of the same score goes to
    a real WAV file, which is read back and checked (finite, not silent,
    expected spectral peaks); a failed check raises ``AssertionError``.

    Returns a dict with ``patch``, ``cpu_s`` / ``wall_s`` (raw, full render),
    ``audio_s``, ``cpu_ms_per_audio_s`` (net of start-up),
    ``raw_cpu_ms_per_audio_s`` (``cpu_s / seconds``), ``startup_cpu_s``
    (extrapolated to zero audio), ``realtime_x`` (audio seconds per net CPU
    second) and ``check`` (what the output verification found).
    """
    if patch not in _PATCHES:
        raise KeyError(f"unknown patch {patch!r}; known: {', '.join(_PATCHES)}")
    if seconds <= startup_seconds:
        raise ValueError("seconds must exceed startup_seconds")
    spec = _PATCHES[patch]
    long_runs: list[_Run] = []
    short_runs: list[_Run] = []
    check: dict = {}
    with tempfile.TemporaryDirectory(prefix="scsynth_ref_") as tmp:
        tmpdir = Path(tmp)
        long_score = tmpdir / "long.osc"
        short_score = tmpdir / "short.osc"
        long_score.write_bytes(nrt_score(patch, seconds))
        short_score.write_bytes(nrt_score(patch, startup_seconds))
        wav = tmpdir / "out.wav"
        if verify or keep_wav is not None:
            check_seconds = min(seconds, verify_seconds) if verify else seconds
            check_score = tmpdir / "check.osc"
            check_score.write_bytes(nrt_score(patch, check_seconds))
            _run_scsynth(check_score, wav, sample_rate, block_size, spec.channels)
            if verify:
                check = _verify(wav, spec, check_seconds, sample_rate)
                check["seconds"] = check_seconds
            if keep_wav is not None:
                shutil.copyfile(wav, keep_wav)
        sink = wav if write_file else Path(os.devnull)
        for _ in range(max(1, repeats)):
            short_runs.append(
                _run_scsynth(short_score, sink, sample_rate, block_size, spec.channels)
            )
            long_runs.append(
                _run_scsynth(long_score, sink, sample_rate, block_size, spec.channels)
            )
    cpu_long = min(r.cpu_s for r in long_runs)
    cpu_short = min(r.cpu_s for r in short_runs)
    wall_long = min(r.wall_s for r in long_runs)
    # Not clamped: a negative slope means timing noise swamped the signal.
    slope = (cpu_long - cpu_short) / (seconds - startup_seconds)
    return {
        "patch": patch,
        "description": spec.description,
        "cpu_s": cpu_long,
        "wall_s": wall_long,
        "audio_s": seconds,
        "cpu_ms_per_audio_s": 1000.0 * slope,
        "raw_cpu_ms_per_audio_s": 1000.0 * cpu_long / seconds,
        "startup_cpu_s": max(cpu_short - slope * startup_seconds, 0.0),
        "realtime_x": (1.0 / slope) if slope > 0 else float("inf"),
        "sample_rate": sample_rate,
        "block_size": block_size,
        "channels": spec.channels,
        "repeats": max(1, repeats),
        "wrote_file": write_file,
        "check": check,
    }


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def _main(argv: Sequence[str] | None = None) -> int:
    """Render every (or the selected) patch and print a table of CPU costs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("patches", nargs="*", help="patch names (default: all)")
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="audio length for P1-P4"
    )
    parser.add_argument(
        "--node-seconds",
        type=float,
        default=1000.0,
        help="audio length for single-node scenarios; one UGen costs well under "
        "1 ms per audio second, so short renders drown in start-up jitter",
    )
    parser.add_argument("--json", type=Path, help="also write all results here")
    parser.add_argument("--sample-rate", type=int, default=48000)
    parser.add_argument("--block-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--write-file",
        action="store_true",
        help="timed renders write a real WAV (count disk I/O) instead of /dev/null",
    )
    args = parser.parse_args(argv)

    if not scsynth_available():
        print("scsynth not available: apt-get install supercollider-server")
        return 1
    names = args.patches or list(_PATCHES)
    unknown = [n for n in names if n not in _PATCHES]
    if unknown:
        parser.error(f"unknown patches: {unknown}; known: {list(_PATCHES)}")
    # Baselines of single-node scenarios must be measured too.
    for name in list(names):
        base = _PATCHES[name].baseline
        if base is not None and base not in names:
            names.insert(0, base)

    results: dict[str, dict] = {}
    header = (
        f"{'patch':<11} {'net ms/s':>9} {'node ms/s':>9} {'raw ms/s':>9} "
        f"{'startup ms':>10} {'x realtime':>10}  description"
    )
    print(
        f"scsynth NRT, {args.sample_rate} Hz, block {args.block_size}, "
        f"min of {args.repeats} runs; net = CPU ms per audio second minus start-up"
    )
    print(header)
    print("-" * len(header))
    for name in names:
        spec = _PATCHES[name]
        secs = args.seconds
        if spec.kind == "node":
            secs = args.node_seconds
        res = render_nrt(
            name,
            secs,
            args.sample_rate,
            args.block_size,
            repeats=args.repeats,
            write_file=args.write_file,
        )
        results[name] = res
        node = ""
        if spec.baseline is not None and spec.baseline in results:
            diff = (
                res["cpu_ms_per_audio_s"] - results[spec.baseline]["cpu_ms_per_audio_s"]
            )
            node = f"{diff:9.3f}"
            res["node_cpu_ms_per_audio_s"] = diff
        print(
            f"{name:<11} {res['cpu_ms_per_audio_s']:9.3f} {node:>9} "
            f"{res['raw_cpu_ms_per_audio_s']:9.3f} "
            f"{1000.0 * res['startup_cpu_s']:10.1f} {res['realtime_x']:10.0f}  "
            f"{spec.description}",
            flush=True,
        )
    print(
        "net ms/s: CPU ms per audio second, start-up removed; node ms/s: net minus"
        " the scenario's baseline (Empty for generators, WhiteNoise for processors)"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
