"""Sample playback: loop a user's WAV/FLAC seamlessly, or granulate it.

The file (option ``path``; relative paths resolve against the current
directory) is read with soundfile when the graph is compiled, on the control
thread, resampled to the engine rate (Kaiser-windowed sinc, polyphase) and
stored in the node's state slice, so the audio thread reads it like any other
state. That puts a limit on its length: ``MAX_SAMPLE_SECONDS`` (60 s) at the
engine rate. The state is float64 and a compiled program also keeps a copy of
its initial state for ``reset``, so a stereo minute costs 92 MB at 48 kHz; a
missing, unreadable, empty, too long or more than stereo file is a compile
error that names the path. The output is always stereo; a mono file plays on
both sides.

- ``loop`` (option ``mode``): plays the file from its first frame, and from then
  on loops it with an equal-power crossfade of ``crossfade_ms`` (option) at the
  loop point: during the last ``X`` frames of each pass the tail fades out
  (cosine) while the head fades in (sine), and the next pass continues right
  after the head's faded part. A loop lasts ``length - X`` frames. Equal power
  keeps the level of uncorrelated ends (noise, a field recording) steady through
  the seam, and the first pass and everything outside the fade are the file,
  sample for sample. Why not bake the fade into a loop buffer: then the very
  first frames would already carry the tail.
- ``granular``: a new grain every ``1 / density_hz`` seconds on average (the gap
  uniform in 0.5-1.5 of that), each ``grain_ms`` long with a Hann window, read
  from ``position`` (0 = start, 1 = end of the file) plus a uniform offset of up
  to ``+-position_jitter_ms``, at a pitch of ``pitch_cents`` plus a uniform
  ``+-pitch_jitter_cents`` (linear interpolation), panned at random within
  ``+-spread`` (equal power; a stereo file's sides are balanced the same way).
  Up to ``MAX_GRAINS`` sound at once; a grain that finds no free slot is
  skipped. Grains keep their natural level until they overlap more than about
  2.7 deep (``density_hz * grain_ms``), then are scaled down by the square root
  of the overlap, so dense clouds keep the source's loudness instead of piling
  up. Grains are clamped inside the file, so none reads past either end.

``gain_db`` (ramped) applies to both modes. The random choices come from the
counter-based generator in ``engine.dsp.rng`` (option ``seed``), so a seed gives
the same cloud at any block size.

Audio thread: yes (the kernel); loading, resampling and the initialiser run on
the control thread.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit
from numba.extending import register_jitable

from engine.dsp.jit import JIT, SAFE_FASTMATH, db_to_gain
from engine.dsp.kernels_osc import sine_lookup
from engine.dsp.layout import I_OUT
from engine.dsp.nodes import NodeSpec, Param, register
from engine.dsp.opcodes import Op
from engine.dsp.rng import seed_from_option, stream_key, uniform
from engine.naming import did_you_mean

MAX_SAMPLE_SECONDS = 60.0
MAX_GRAINS = 32
MODES = ("loop", "granular")
# Shortest file worth playing: a grain needs two frames to interpolate between.
MIN_FRAMES = 4
# Resampler: zero crossings of the windowed sinc on each side, at the lower of
# the two rates, and Kaiser beta 8.6. Measured 48 -> 44.1 kHz: flat (0.0 dB) to
# 18 kHz, -3 dB at 19.5 kHz, -90 dB from the new Nyquist frequency up; 16 zero
# crossings left 23 kHz at only -40 dB. A stereo minute takes about 5 s.
RESAMPLE_ZEROS = 32
RESAMPLE_BETA = 8.6
RESAMPLE_CUTOFF = 0.90  # of the lower Nyquist frequency
_RESAMPLE_CHUNK = 1 << 16
# Hann window: mean square 3/8 (the power of one grain over its length).
_HANN_POWER = 0.375
_CENT_LN = math.log(2.0) / 1200.0

# Helpers compile into the kernel (a separate njit function costs its own
# compile pipeline when the interpreter is built).
_HELPER_JIT = {"fastmath": SAFE_FASTMATH, "error_model": "numpy"}
# Parameter columns (two per parameter: the node is stereo; the left one rules).
_P_GAIN_DB = 0
_P_GRAIN_MS = 2
_P_DENSITY_HZ = 4
_P_POSITION = 6
_P_JITTER_MS = 8
_P_PITCH_CENTS = 10
_P_PITCH_JITTER_CENTS = 12
_P_SPREAD = 14
_LOOP = 0
_GRANULAR = 1
# State header.
_S_MODE = 0
_S_FRAMES = 1  # frames of the file at the engine rate
_S_CHANNELS = 2
_S_SEED = 3
_S_COUNTER = 4
_S_POS = 5  # loop: the next frame to play
_S_XFADE = 6  # loop: crossfade frames
_S_NEXT = 7  # granular: frames until the next grain
_S_GRAINS = 8
# Per grain: frames left (0 = free), read position, rate, window phase step,
# window phase, left gain, right gain.
_G = 7
_S_DATA = _S_GRAINS + MAX_GRAINS * _G


def resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Resample ``audio`` ``[channels, frames]`` from ``rate_in`` to ``rate_out``.

    Polyphase Kaiser-windowed sinc: the output at input time ``t`` is the sum of
    ``RESAMPLE_ZEROS`` input samples each side weighted by the low-pass kernel
    (cut at 0.9 of the lower Nyquist frequency). The ratio is rational, so the
    kernel is tabulated once per output phase. Control thread only.

    >>> x = np.sin(2 * np.pi * 1000 * np.arange(4410) / 44100)[None, :]
    >>> resample(x, 44100, 48000).shape
    (1, 4800)
    """
    if rate_in == rate_out:
        return audio
    ratio = Fraction(int(rate_out), int(rate_in)).limit_denominator(1 << 16)
    up, down = ratio.numerator, ratio.denominator
    scale = min(1.0, up / down)
    cutoff = RESAMPLE_CUTOFF * scale
    half = math.ceil(RESAMPLE_ZEROS / scale)
    taps = np.arange(-half + 1, half + 1)
    # Output j sits at input time j * down / up = base + phase / up.
    tau = (np.arange(up) / up)[:, None] - taps[None, :]
    window = np.i0(RESAMPLE_BETA * np.sqrt(np.clip(1.0 - (tau / half) ** 2, 0.0, None)))
    kernel = cutoff * np.sinc(cutoff * tau) * window / np.i0(RESAMPLE_BETA)
    channels, n_in = audio.shape
    n_out = (n_in * up) // down
    padded = np.pad(audio, ((0, 0), (half, half + 1)))
    out = np.empty((channels, n_out))
    for start in range(0, n_out, _RESAMPLE_CHUNK):
        j = np.arange(start, min(n_out, start + _RESAMPLE_CHUNK), dtype=np.int64)
        base, phase = np.divmod(j * down, up)
        index = base[:, None] + taps[None, :] + half
        weights = kernel[phase]
        for channel in range(channels):
            out[channel, j] = np.einsum("ij,ij->i", padded[channel, index], weights)
    return out


@lru_cache(maxsize=2)
def _load_cached(
    resolved: str, mtime_ns: int, size: int, sample_rate: int
) -> np.ndarray:
    import soundfile

    try:
        data, file_rate = soundfile.read(resolved, dtype="float64", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as error:
        raise ValueError(f"cannot read {resolved}: {error}") from None
    frames, channels = data.shape
    if channels > 2:
        raise ValueError(
            f"{resolved} has {channels} channels; mix it to mono or stereo first"
        )
    if frames < MIN_FRAMES:
        raise ValueError(f"{resolved} is empty ({frames} frames)")
    seconds = frames / file_rate
    if seconds * sample_rate > MAX_SAMPLE_SECONDS * sample_rate + 1:
        raise ValueError(
            f"{resolved} lasts {seconds:.1f} s; samples are limited to "
            f"{MAX_SAMPLE_SECONDS:g} s (they live in the program's state): trim it"
        )
    audio = resample(np.ascontiguousarray(data.T), int(file_rate), int(sample_rate))
    audio.flags.writeable = False  # cached and shared between programs
    return audio


def load_sample(path: Any, sample_rate: float) -> np.ndarray:
    """The file at ``path`` as ``[channels, frames]`` float64 at ``sample_rate``.

    Relative paths resolve against the current directory. Raises ``ValueError``
    naming the path when the file is missing, unreadable, empty, longer than
    ``MAX_SAMPLE_SECONDS`` or has more than two channels. Control thread only.
    """
    if path is None or path == "":
        raise ValueError("the path option is required: a WAV or FLAC file")
    resolved = Path(str(path)).expanduser().resolve()
    try:
        stat = resolved.stat()
    except OSError:
        raise ValueError(
            f"sample file not found: {path} (looked for {resolved})"
        ) from None
    if not resolved.is_file():
        raise ValueError(f"sample path is not a file: {path} ({resolved})")
    return _load_cached(str(resolved), stat.st_mtime_ns, stat.st_size, int(sample_rate))


@register_jitable(**_HELPER_JIT)
def _read(data, n_file, pos):
    """Linear interpolation of ``data`` at ``pos``, clamped inside the file."""
    i = int(pos)
    frac = pos - i
    if i > n_file - 2:
        i = n_file - 2
        frac = 1.0
    a = data[i]
    return a + frac * (data[i + 1] - a)


@register_jitable(**_HELPER_JIT)
def _spawn_grain(state, key, p1, n_file, sample_rate):
    """Start a grain in the first free slot (none free: the grain is skipped);
    return the frames until the next one."""
    counter = state[_S_COUNTER]
    u_pos = uniform(key, counter)
    u_pitch = uniform(key, counter + 1.0)
    u_pan = uniform(key, counter + 2.0)
    u_gap = 0.5 * (uniform(key, counter + 3.0) + 1.0)
    state[_S_COUNTER] = counter + 4.0
    grain_ms = p1[_P_GRAIN_MS]
    density = p1[_P_DENSITY_HZ]
    length = max(2.0, math.floor(grain_ms * 0.001 * sample_rate + 0.5))
    rate = math.exp(
        (p1[_P_PITCH_CENTS] + p1[_P_PITCH_JITTER_CENTS] * u_pitch) * _CENT_LN
    )
    start = p1[_P_POSITION] * (n_file - 1)
    start += u_pos * p1[_P_JITTER_MS] * 0.001 * sample_rate
    last_start = n_file - 1.0 - (length - 1.0) * rate
    start = min(max(start, 0.0), max(last_start, 0.0))
    overlap = density * grain_ms * 0.001
    level = min(1.0, 1.0 / math.sqrt(max(_HANN_POWER * overlap, 1e-12)))
    # Equal-power pan, unity at the centre: the square-root law, whose sides
    # are exactly equal at pan 0 (cos and sin of pi/4 differ by an ulp).
    pan = p1[_P_SPREAD] * u_pan
    for k in range(MAX_GRAINS):
        g = _S_GRAINS + k * _G
        if state[g] <= 0.0:
            state[g] = length
            state[g + 1] = start
            state[g + 2] = rate
            state[g + 3] = 1.0 / length
            state[g + 4] = 0.0
            state[g + 5] = level * math.sqrt(1.0 - pan)
            state[g + 6] = level * math.sqrt(1.0 + pan)
            break
    return max(1.0, math.floor(sample_rate / density * (0.5 + u_gap) + 0.5))


@njit(**JIT)
def sample(bufs, row, p0, p1, state, sample_rate, n_frames):
    """Sample player, stereo out. Params (one value, the left column is read):
    gain_db (ramped), then for granular mode grain_ms, density_hz, position,
    position_jitter_ms, pitch_cents, pitch_jitter_cents, spread (read at grain
    starts). State: header ``_S_*``, grain slots, then the file's channels.
    """
    out_left = bufs[row[I_OUT]]
    out_right = bufs[row[I_OUT] + 1]
    n_file = int(state[_S_FRAMES])
    channels = int(state[_S_CHANNELS])
    left = state[_S_DATA : _S_DATA + n_file]
    right = state[_S_DATA + (channels - 1) * n_file : _S_DATA + channels * n_file]
    gain = db_to_gain(p0[_P_GAIN_DB])
    gain_step = (db_to_gain(p1[_P_GAIN_DB]) - gain) / n_frames
    if state[_S_MODE] == _LOOP:
        pos = int(state[_S_POS])
        fade = int(state[_S_XFADE])
        seam = n_file - fade
        inv_fade = 1.0 / max(fade, 1)
        for frame in range(n_frames):
            gain += gain_step
            if pos >= seam:
                k = pos - seam
                t = (k + 0.5) * inv_fade * 0.25
                fade_in = sine_lookup(t)
                fade_out = sine_lookup(t + 0.25)
                out_left[frame] = gain * (left[pos] * fade_out + left[k] * fade_in)
                out_right[frame] = gain * (right[pos] * fade_out + right[k] * fade_in)
            else:
                out_left[frame] = gain * left[pos]
                out_right[frame] = gain * right[pos]
            pos += 1
            if pos >= n_file:
                pos = fade
        state[_S_POS] = pos
        return
    key = stream_key(state[_S_SEED])
    next_grain = state[_S_NEXT]
    for frame in range(n_frames):
        gain += gain_step
        if next_grain <= 0.0:
            next_grain = _spawn_grain(state, key, p1, n_file, sample_rate)
        next_grain -= 1.0
        sum_left = 0.0
        sum_right = 0.0
        for k in range(MAX_GRAINS):
            g = _S_GRAINS + k * _G
            if state[g] <= 0.0:
                continue
            pos = state[g + 1]
            phase = state[g + 4]
            # Hann: (1 - cos(2 pi phase)) / 2, phase 0 .. 1 over the grain.
            cos_phase = phase + 0.25
            if cos_phase >= 1.0:
                cos_phase -= 1.0
            window = 0.5 - 0.5 * sine_lookup(cos_phase)
            sum_left += window * state[g + 5] * _read(left, n_file, pos)
            sum_right += window * state[g + 6] * _read(right, n_file, pos)
            state[g] -= 1.0
            state[g + 1] = pos + state[g + 2]
            state[g + 4] = min(phase + state[g + 3], 0.999999999)
        out_left[frame] = gain * sum_left
        out_right[frame] = gain * sum_right
    state[_S_NEXT] = next_grain


def _check_mode(options: Mapping[str, Any]) -> int:
    mode = options["mode"]
    if mode not in MODES:
        raise ValueError(
            f"mode must be one of {', '.join(MODES)}, not {mode!r}"
            f"{did_you_mean(str(mode), MODES)}"
        )
    return MODES.index(mode)


def _sample_state(voices: int, sample_rate: float, options: Mapping[str, Any]) -> int:
    try:
        audio = load_sample(options["path"], sample_rate)
    except ValueError:
        return _S_DATA  # the initialiser raises the same error, naming the node
    return _S_DATA + audio.size


def _init_sample(
    state: np.ndarray,
    params: np.ndarray,
    voices: int,
    sample_rate: float,
    options: Mapping[str, Any],
) -> None:
    mode = _check_mode(options)
    audio = load_sample(options["path"], sample_rate)
    channels, frames = audio.shape
    try:
        crossfade_ms = float(options["crossfade_ms"])
    except (TypeError, ValueError):
        raise ValueError(
            f"crossfade_ms must be a number, not {options['crossfade_ms']!r}"
        ) from None
    if not 0.0 <= crossfade_ms < math.inf:
        raise ValueError(f"crossfade_ms must be >= 0, not {crossfade_ms!r}")
    state[:] = 0.0
    state[_S_MODE] = mode
    state[_S_FRAMES] = frames
    state[_S_CHANNELS] = channels
    state[_S_SEED] = seed_from_option(options["seed"])
    state[_S_XFADE] = min(
        math.floor(crossfade_ms * 0.001 * sample_rate + 0.5), frames // 2
    )
    state[_S_DATA : _S_DATA + audio.size] = audio.ravel()


def _stereo(voices: int) -> int:
    return 2


register(
    NodeSpec(
        "sample",
        Op.SAMPLE,
        "Plays a WAV/FLAC file (option path): loop mode loops it seamlessly "
        "(crossfaded), granular mode sprays Hann-windowed grains from a position.",
        params=(
            Param("gain_db", 0.0, "dB", -120.0, 24.0, smoothing_ms=20.0, doc="level"),
            Param(
                "grain_ms",
                80.0,
                "ms",
                2.0,
                2000.0,
                smoothing_ms=0.0,
                doc="granular: length of each grain",
            ),
            Param(
                "density_hz",
                20.0,
                "Hz",
                0.1,
                1000.0,
                smoothing_ms=0.0,
                doc="granular: grains per second",
            ),
            Param(
                "position",
                0.5,
                "",
                0.0,
                1.0,
                smoothing_ms=0.0,
                doc="granular: where grains are read, 0 start .. 1 end of the file",
            ),
            Param(
                "position_jitter_ms",
                50.0,
                "ms",
                0.0,
                60000.0,
                smoothing_ms=0.0,
                doc="granular: random offset of each grain's start, +-",
            ),
            Param(
                "pitch_cents",
                0.0,
                "cents",
                -2400.0,
                2400.0,
                smoothing_ms=0.0,
                doc="granular: transposition of every grain",
            ),
            Param(
                "pitch_jitter_cents",
                0.0,
                "cents",
                0.0,
                1200.0,
                smoothing_ms=0.0,
                doc="granular: random transposition of each grain, +-",
            ),
            Param(
                "spread",
                0.5,
                "",
                0.0,
                1.0,
                smoothing_ms=0.0,
                doc="granular: random pan width, 0 centre .. 1 full",
            ),
        ),
        options={"path": None, "mode": "loop", "crossfade_ms": 50.0, "seed": None},
        state_size=_sample_state,
        init=_init_sample,
        fixed_voices=2,
        output_width=_stereo,
    ),
)
