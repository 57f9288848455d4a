"""Live output through a Numba @cfunc callback, on a real JACK dummy server.

The callback below is the mechanism the engine's real callback is built on
(DESIGN.md §1): PortAudio calls a C function pointer with a raw ``userdata``
pointer to an int64 table of addresses; the callback reaches its arrays
through engine.rt.pointers, counts itself in an engine.rt.stats array, times
itself with engine.rt.clock, and never touches the GIL. Deadlines beside a
busy Python thread are tested with the real engine in test_live.py.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
import time

import numpy as np
import pytest
from numba import carray, cfunc, njit

from engine.rt.audio_io import (
    JACK_HOST_API_NAME,
    PA_CONTINUE,
    PA_STREAM_CALLBACK_SIGNATURE,
    AudioDeviceError,
    jack_xrun_causes,
    list_output_devices,
    open_cfunc_output_stream,
    resolve_device,
)
from engine.rt.clock import rt_now_ns, rt_thread_cpu_ns
from engine.rt.fpu import (
    HAS_MXCSR,
    MXCSR_DAZ,
    MXCSR_FTZ,
    rt_enable_flush_denormals,
    rt_read_fpu_state,
    rt_restore_fpu_state,
)
from engine.rt.pointers import (
    address_of,
    as_float32_array,
    as_float64_array,
    as_int64_array,
    voidptr_as_int64_array,
)
from engine.rt.stats import (
    PA_OUTPUT_UNDERFLOW,
    PA_PRIMING_OUTPUT,
    STATS_SIZE,
    Stats,
    host_steal_ms,
    rt_stats_begin,
    rt_stats_end,
)

SAMPLE_RATE = 48000
CHANNELS = 2
FREQUENCY_HZ = 1000.0
AMPLITUDE = 0.25

# Pointer table slots (int64). Addresses, lengths and one audio-owned counter.
TABLE_STATS = 0
TABLE_PARAMS = 1
TABLE_CAPTURE = 2
TABLE_CAPTURE_LEN = 3
TABLE_CAPTURE_POS = 4  # written by the callback
TABLE_SIZE = 5

# Parameter slots (float64).
PARAM_PHASE_INCREMENT = 0  # cycles per frame
PARAM_PHASE = 1  # written by the callback
PARAM_BLOCK_SIZE = 2
PARAM_CHANNELS = 3
PARAMS_SIZE = 4


@cfunc(PA_STREAM_CALLBACK_SIGNATURE, nopython=True, nogil=True, cache=True)
def sine_callback(input_ptr, output_ptr, n_frames, time_info, status_flags, userdata):
    """Write a sine to every channel; capture channel 0; count and time itself."""
    table = voidptr_as_int64_array(userdata, TABLE_SIZE)
    stats = as_int64_array(table[TABLE_STATS], STATS_SIZE)
    params = as_float64_array(table[TABLE_PARAMS], PARAMS_SIZE)
    frames = np.int64(n_frames)
    block_size = np.int64(params[PARAM_BLOCK_SIZE])
    start_ns = rt_stats_begin(stats, frames, status_flags, block_size)
    previous_fpu = rt_enable_flush_denormals()

    n_channels = np.int64(params[PARAM_CHANNELS])
    out = carray(output_ptr, (frames * n_channels,), np.float32)
    capture = as_float32_array(table[TABLE_CAPTURE], table[TABLE_CAPTURE_LEN])
    capture_len = table[TABLE_CAPTURE_LEN]
    position = table[TABLE_CAPTURE_POS]
    phase = params[PARAM_PHASE]
    increment = params[PARAM_PHASE_INCREMENT]
    for frame in range(frames):
        value = np.float32(AMPLITUDE * math.sin(2.0 * math.pi * phase))
        phase += increment
        if phase >= 1.0:
            phase -= 1.0
        for channel in range(n_channels):
            out[frame * n_channels + channel] = value
        if position < capture_len:
            capture[position] = value
            position += 1
    params[PARAM_PHASE] = phase
    table[TABLE_CAPTURE_POS] = position

    rt_restore_fpu_state(previous_fpu)
    rt_stats_end(stats, start_ns, frames * 1_000_000_000 // SAMPLE_RATE)
    return PA_CONTINUE


class SineRig:
    """Everything the callback reads, allocated and kept alive by the test."""

    def __init__(self, block_size: int, capture_s: float) -> None:
        self.stats = Stats()
        self.params = np.zeros(PARAMS_SIZE, dtype=np.float64)
        self.params[PARAM_PHASE_INCREMENT] = FREQUENCY_HZ / SAMPLE_RATE
        self.params[PARAM_BLOCK_SIZE] = block_size
        self.params[PARAM_CHANNELS] = CHANNELS
        self.capture = np.zeros(int(capture_s * SAMPLE_RATE), dtype=np.float32)
        self.table = np.zeros(TABLE_SIZE, dtype=np.int64)
        self.table[TABLE_STATS] = self.stats.address
        self.table[TABLE_PARAMS] = address_of(self.params)
        self.table[TABLE_CAPTURE] = address_of(self.capture)
        self.table[TABLE_CAPTURE_LEN] = self.capture.shape[0]

    @property
    def captured_frames(self) -> int:
        return int(self.table[TABLE_CAPTURE_POS])

    def keep_alive(self) -> tuple[object, ...]:
        return (sine_callback, self.table, self.params, self.capture, self.stats)


# --- live stream under JACK -------------------------------------------------


def test_cfunc_stream_output_is_the_requested_sine(jack_server: str) -> None:
    block_size = 128
    rig = SineRig(block_size, capture_s=1.5)
    with open_cfunc_output_stream(
        sine_callback.address,
        address_of(rig.table),
        sample_rate=SAMPLE_RATE,
        block_size=block_size,
        channels=CHANNELS,
        device=None,
        keep_alive=rig.keep_alive(),
    ):
        deadline = time.monotonic() + 5.0
        while rig.captured_frames < rig.capture.shape[0]:
            assert time.monotonic() < deadline, "capture did not fill in 5 s"
            time.sleep(0.05)

    n_fft = 65536
    segment = rig.capture[-n_fft:].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(segment * np.hanning(n_fft)))
    frequencies = np.fft.rfftfreq(n_fft, 1.0 / SAMPLE_RATE)
    peak = int(np.argmax(spectrum))
    bin_hz = SAMPLE_RATE / n_fft
    assert abs(frequencies[peak] - FREQUENCY_HZ) <= bin_hz
    # A continuous sine: everything away from the peak is > 80 dB down
    # (a dropped or repeated block would splatter energy across the spectrum).
    far = np.ones_like(spectrum, dtype=bool)
    far[max(peak - 32, 0) : peak + 33] = False  # Hann main lobe and near skirt
    assert spectrum[far].max() < spectrum[peak] * 1e-4
    assert np.max(np.abs(rig.capture)) == pytest.approx(AMPLITUDE, rel=1e-3)


# --- devices ----------------------------------------------------------------


def test_devices_prefer_jack_and_resolve_by_index_name_and_substring(
    jack_server: str,
) -> None:
    outputs = list_output_devices()
    jack = [d for d in outputs if d["host_api"] == JACK_HOST_API_NAME]
    assert jack, f"JACK server {jack_server!r} not visible to PortAudio: {outputs}"
    device = jack[0]
    assert set(device) == {
        "index",
        "name",
        "host_api",
        "max_output_channels",
        "default_sample_rate",
    }
    assert device["max_output_channels"] >= CHANNELS
    assert device["default_sample_rate"] == SAMPLE_RATE

    assert resolve_device(None) == device["index"]
    assert resolve_device(device["index"]) == device["index"]
    assert resolve_device(str(device["index"])) == device["index"]
    assert resolve_device(device["name"]) == device["index"]
    assert resolve_device(device["name"].upper()[:3]) == device["index"]

    with pytest.raises(AudioDeviceError) as error:
        resolve_device("no such device anywhere")
    assert device["name"] in str(error.value)  # the message lists the outputs
    with pytest.raises(AudioDeviceError):
        resolve_device(10_000)


@pytest.mark.parametrize(
    ("sample_rate", "block_size", "message"),
    [
        (22050, 128, "sample_rate 22050 Hz is not supported"),
        (96000, 128, "Use 44100 or 48000"),
        (48000, 16, "block_size 16 is out of range"),
        (48000, 4096, "block_size 4096 is out of range"),
    ],
)
def test_open_rejects_unsupported_sample_rate_and_block_size(
    sample_rate: int, block_size: int, message: str
) -> None:
    rig = SineRig(128, capture_s=0.1)
    with pytest.raises(ValueError, match=message):
        open_cfunc_output_stream(
            sine_callback.address,
            address_of(rig.table),
            sample_rate=sample_rate,
            block_size=block_size,
            channels=CHANNELS,
            device=None,
        )


# --- jitted helpers -----------------------------------------------------------


@njit(nogil=True, cache=True)
def _clock_loop(n_calls: int) -> tuple[int, int, bool]:
    first = rt_now_ns()
    previous = first
    monotonic = True
    for _ in range(n_calls):
        now = rt_now_ns()
        if now < previous:
            monotonic = False
        previous = now
    return first, previous, monotonic


def test_rt_now_ns_is_monotonic_matches_python_and_costs_under_100_ns() -> None:
    _clock_loop(10)  # compile or load from cache
    before = time.monotonic_ns()
    now = rt_now_ns()
    after = time.monotonic_ns()
    assert before <= now <= after

    n_calls = 1_000_000
    best_ns_per_call = math.inf
    for _ in range(5):
        first, last, monotonic = _clock_loop(n_calls)
        assert monotonic
        best_ns_per_call = min(best_ns_per_call, (last - first) / n_calls)
    print(f"\nrt_now_ns: {best_ns_per_call:.1f} ns per call")
    assert 0 < best_ns_per_call < 100


def test_rt_thread_cpu_ns_is_this_threads_cpu_clock() -> None:
    rt_thread_cpu_ns()  # compile or load from cache
    before = time.thread_time_ns()
    now = rt_thread_cpu_ns()
    after = time.thread_time_ns()
    assert before <= now <= after
    # Sleeping costs no CPU: the monotonic clock would move 50 ms here.
    start = rt_thread_cpu_ns()
    time.sleep(0.05)
    assert rt_thread_cpu_ns() - start < 10_000_000


_libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
_usleep = _libc.usleep
_usleep.argtypes = [ctypes.c_uint]
_usleep.restype = ctypes.c_int


@njit(nogil=True)
def _one_callback(stats, sleep_us, spin_ns, budget_ns):  # type: ignore[no-untyped-def]
    """A callback that waits ``sleep_us`` off the CPU, then works ``spin_ns``."""
    start_ns = rt_stats_begin(stats, 128, 0, 128)
    if sleep_us > 0:
        _usleep(sleep_us)
    spun = 0.0
    while rt_now_ns() - start_ns < spin_ns:
        spun += 1.0
    rt_stats_end(stats, start_ns, budget_ns)
    return spun


def test_stats_tell_the_engines_own_time_from_time_it_lost_the_cpu() -> None:
    budget_ns = 128 * 1_000_000_000 // SAMPLE_RATE  # 2.67 ms
    stats = Stats()
    # Off the CPU for 20 ms (as when the host deschedules the thread): late by
    # the wall clock, but the engine did not cause it.
    _one_callback(stats.array, 20_000, 0, budget_ns)
    waited = stats.snapshot()
    assert (waited.wall_over_budget, waited.cpu_over_budget) == (1, 0)
    assert waited.callback_ns_last >= 20_000_000
    assert waited.callback_cpu_ns_last < budget_ns
    # Working for 40 ms: over budget by its own CPU time too.
    _one_callback(stats.array, 0, 40_000_000, budget_ns)
    after_work = stats.snapshot()
    worked = after_work.since(waited)
    assert (worked.wall_over_budget, worked.cpu_over_budget) == (1, 1)
    assert worked.callback_cpu_ns_last > budget_ns
    assert worked.callback_cpu_ns_max == worked.callback_cpu_ns_last
    assert worked.callback_cpu_ns_total == worked.callback_cpu_ns_last
    # A quick callback is under budget by both clocks.
    _one_callback(stats.array, 0, 0, budget_ns)
    quick = stats.snapshot().since(after_work)
    assert quick.callbacks == 1
    assert (quick.wall_over_budget, quick.cpu_over_budget) == (0, 0)


@njit(nogil=True, cache=True)
def _scale_through_pointers(table_address: int, gain: float) -> int:
    table = as_int64_array(table_address, 4)
    source = as_float64_array(table[0], table[1])
    target = as_float32_array(table[2], table[1])
    for frame in range(table[1]):
        target[frame] = source[frame] * gain
    table[3] = 1
    return table[1]


def test_pointer_views_read_and_write_the_arrays_behind_addresses() -> None:
    source = np.linspace(-1.0, 1.0, 37)
    target = np.zeros(37, dtype=np.float32)
    table = np.array([address_of(source), 37, address_of(target), 0], dtype=np.int64)
    assert _scale_through_pointers(address_of(table), 0.5) == 37
    np.testing.assert_array_equal(target, (source * 0.5).astype(np.float32))
    assert table[3] == 1
    with pytest.raises(ValueError, match="not C-contiguous"):
        address_of(source[::2])


@njit(nogil=True, cache=True)
def _count_callbacks(stats, flags, n_frames, block_size):  # type: ignore[no-untyped-def]
    for index in range(flags.shape[0]):
        start_ns = rt_stats_begin(stats, n_frames[index], flags[index], block_size)
        rt_stats_end(stats, start_ns, 1_000_000_000)


def test_stats_count_callbacks_frames_flags_and_timing() -> None:
    stats = Stats()
    flags = np.array([PA_PRIMING_OUTPUT, 0, PA_OUTPUT_UNDERFLOW, 0], dtype=np.uint64)
    n_frames = np.array([128, 128, 128, 64], dtype=np.int64)
    _count_callbacks(stats.array, flags, n_frames, 128)
    snapshot = stats.snapshot()
    assert snapshot.callbacks == 4
    assert snapshot.frames == 448
    assert snapshot.output_underflows == 1
    assert snapshot.priming_callbacks == 1
    assert snapshot.status_flags == PA_PRIMING_OUTPUT | PA_OUTPUT_UNDERFLOW
    assert snapshot.frames_mismatches == 1
    assert 0 <= snapshot.callback_ns_max <= snapshot.callback_ns_total
    assert snapshot.last_callback_start_ns <= time.monotonic_ns()
    _count_callbacks(stats.array, flags[:1] * 0, n_frames[:1], 128)
    assert stats.snapshot().since(snapshot).callbacks == 1
    assert stats.snapshot().since(snapshot).output_underflows == 0


@njit(nogil=True, cache=True)
def _halve_with_flush(values, out):  # type: ignore[no-untyped-def]
    previous = rt_enable_flush_denormals()
    during = rt_read_fpu_state()
    out[0] = values[0] * 0.5
    rt_restore_fpu_state(previous)
    out[1] = values[1] * 0.5
    return previous, during, rt_read_fpu_state()


@pytest.mark.skipif(not HAS_MXCSR, reason="MXCSR flush-to-zero exists only on x86")
def test_flush_denormals_sets_mxcsr_and_restores_it() -> None:
    values = np.array([1e-308, 1e-308])
    out = np.zeros(2)
    previous, during, restored = _halve_with_flush(values, out)
    assert during & (MXCSR_FTZ | MXCSR_DAZ) == MXCSR_FTZ | MXCSR_DAZ
    assert restored == previous
    assert out[0] == 0.0  # subnormal input read as zero, result flushed
    assert out[1] == 5e-309  # default IEEE behaviour is back


def test_host_steal_is_read_in_milliseconds_and_never_goes_back() -> None:
    first = host_steal_ms()
    time.sleep(0.05)
    second = host_steal_ms()
    assert 0.0 <= first <= second
    with open("/proc/stat") as stat:
        steal_ticks = int(stat.readline().split()[8])
    # The same counter, in ms (USER_HZ ticks), read a moment later.
    assert second <= 1000.0 * steal_ticks / os.sysconf("SC_CLK_TCK")


def test_jack_xrun_causes_split_the_servers_log_by_cause() -> None:
    # Lines as jackd 1.9.21 prints them (dummy driver; a PortAudio client whose
    # callback busy-waited past its period; one woken too late to start).
    log = """\
JACK server starting in realtime mode with priority 10
JackTimedDriver::Process XRun = 15 usec
JackEngine::XRun: client = PortAudio was not finished, state = Running
JackAudioDriver::ProcessGraphAsyncMaster: Process error
JackEngine::XRun: client = PortAudio was not finished, state = Triggered
JackAudioDriver::ProcessGraphAsyncMaster: Process error
JackEngine::XRun: client PortAudio finished after current callback
JackTimedDriver::Process XRun = 2712 usec
"""
    assert jack_xrun_causes(log) == {
        "timer": 2,
        "client_running": 2,
        "client_waiting": 1,
    }
    assert jack_xrun_causes("no message buffer overruns") == {
        "timer": 0,
        "client_running": 0,
        "client_waiting": 0,
    }
