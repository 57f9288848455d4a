"""Event generators by measurement: Poisson rates and exponential intervals of
dust and grains (from the audio), grain pitches, glides, phrases and steals,
the pulse's rate, duty and edges, the heartbeat's beat and its two thumps, and
block-size invariance and seeding for all of them."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.signal import butter, sosfiltfilt

from engine.dsp.kernels_event import STEAL_FADE_MS
from engine.dsp.layout import I_N_STATE, I_STATE
from engine.graph.compile import compile_graph
from engine.graph.graph import Graph, GraphError
from engine.rt.render import render_graph

FS = 48000
BLOCK_SIZES = (1, 63, 64, 1000)


def _program(
    kind: str, fs: int = FS, block: int = 1000, program_seed: int = 0, **settings
):
    g = Graph()
    voices = settings.pop("voices", None)
    name = settings.pop("name", "node")
    node = g.node(kind, name=name, voices=voices, **settings)
    g.output(node[0:2] if voices == 2 else node)
    return compile_graph(g, fs, block, program_seed)


def _render(kind: str, seconds: float, fs: int = FS, block: int = 1000, **kw):
    prog = _program(kind, fs, block, **kw)
    return render_graph(prog, int(seconds * fs), block)


def _runs(y: np.ndarray, min_gap: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) of the stretches where ``y`` is not exactly 0,
    joining stretches separated by fewer than ``min_gap`` zeros (a grain's own
    first sample is 0, so a run starts one sample before its first non-zero)."""
    nz = np.flatnonzero(y)
    if nz.size == 0:
        return np.empty(0, int), np.empty(0, int)
    breaks = np.flatnonzero(np.diff(nz) > min_gap)
    starts = np.concatenate([[nz[0]], nz[breaks + 1]])
    ends = np.concatenate([nz[breaks], [nz[-1]]]) + 1
    return starts, ends


def _zero_crossing_times(x: np.ndarray) -> np.ndarray:
    """Upward zero crossings, interpolated to fractions of a sample."""
    i = np.flatnonzero((x[:-1] <= 0.0) & (x[1:] > 0.0))
    return i + x[i] / (x[i] - x[i + 1])


def _block_invariant(kind: str, n: int, **kw) -> None:
    renders = [render_graph(_program(kind, block=b, **kw), n, b) for b in BLOCK_SIZES]
    assert np.any(renders[0] != 0.0)
    for block, other in zip(BLOCK_SIZES[1:], renders[1:], strict=True):
        assert np.array_equal(renders[0], other), block


# dust ---------------------------------------------------------------------------


@pytest.mark.parametrize("rate_hz", (3.0, 200.0, 2000.0))
def test_dust_rate_and_exponential_intervals(rate_hz: float) -> None:
    seconds = 60.0 if rate_hz < 100 else 20.0
    y = _render("dust", seconds, rate_hz=rate_hz)[0]
    expected = rate_hz * seconds
    # Unit impulses that share a sample add up, so the sum counts them all.
    # Poisson: the count's standard deviation is sqrt(expected).
    assert abs(y.sum() - expected) < 4.5 * np.sqrt(expected)
    onsets = np.flatnonzero(y)
    intervals_s = np.diff(onsets) / FS
    # Exponential: coefficient of variation 1, and a KS test against the
    # exponential law at the set rate (samples quantise it by 1 / fs).
    assert np.std(intervals_s) / np.mean(intervals_s) == pytest.approx(1.0, abs=0.1)
    if rate_hz < 1000:
        ks = stats.kstest(intervals_s, stats.expon(scale=1 / rate_hz).cdf)
        assert ks.pvalue > 1e-3


def test_dust_amplitudes_spread_evenly_in_db_and_bipolar_signs() -> None:
    rate_hz = 100.0
    y = _render("dust", 60, rate_hz=rate_hz, amplitude=0.5, spread_db=30.0)[0]
    pulses = y[y != 0.0]
    assert pulses.min() > 0.0
    level_db = 20 * np.log10(pulses / 0.5)
    assert level_db.min() >= -30.0
    # Only impulses that share a sample (and add) exceed the amplitude.
    shared = pulses.size * rate_hz / FS
    assert np.count_nonzero(level_db > 1e-9) <= 3 * shared + 3
    assert stats.kstest(level_db, stats.uniform(-30.0, 30.0).cdf).pvalue > 1e-3
    y = _render("dust", 60, rate_hz=rate_hz, polarity="bipolar")[0]
    pulses = y[y != 0.0]
    assert np.count_nonzero(np.abs(pulses) != 1.0) <= 3 * shared + 3
    n = pulses.size
    assert abs(np.count_nonzero(pulses > 0) - n / 2) < 4 * np.sqrt(n / 4)


def test_dust_seeds_and_voices_are_independent_streams() -> None:
    def counts(y: np.ndarray) -> np.ndarray:  # onsets per 10 ms
        return (y != 0).reshape(-1, FS // 100).sum(axis=1)

    kw = {"rate_hz": 300.0, "voices": 2}
    a = _render("dust", 30, program_seed=1, **kw)
    assert np.array_equal(a, _render("dust", 30, program_seed=1, **kw))
    b = _render("dust", 30, program_seed=2, **kw)
    other_name = _render("dust", 30, program_seed=1, name="other", **kw)
    n_bins = 3000
    bound = 4.5 / np.sqrt(n_bins)
    for x, z in ((a[0], a[1]), (a[0], b[0]), (a[0], other_name[0])):
        assert not np.array_equal(x, z)
        assert abs(np.corrcoef(counts(x), counts(z))[0, 1]) < bound
    # An explicit seed wins over the program seed and the node's name.
    x = _render("dust", 1, program_seed=5, name="x", seed=77, **kw)
    assert np.array_equal(
        x, _render("dust", 1, program_seed=6, name="y", seed=77, **kw)
    )


def test_dust_block_size_invariance() -> None:
    _block_invariant("dust", 20000, rate_hz=900.0, spread_db=20.0, polarity="bipolar")


# grains -------------------------------------------------------------------------


def test_grain_onset_density_follows_rate() -> None:
    # Short Hann grains, rarely overlapping: a run of sound starts at every onset
    # that finds no grain playing, a fraction exp(-rate * duration) of them.
    for rate_hz, seconds in ((4.0, 60.0), (40.0, 30.0)):
        duration_s = 0.004
        y = _render(
            "grains",
            seconds,
            rate_hz=rate_hz,
            duration_ms=1000 * duration_s,
            duration_spread=0.0,
            envelope="hann",
        )[0]
        starts, _ = _runs(y)
        expected = rate_hz * seconds * np.exp(-rate_hz * duration_s)
        assert abs(starts.size - expected) < 4.5 * np.sqrt(expected), rate_hz


def _isolated_grains(y: np.ndarray, length: int) -> list[np.ndarray]:
    starts, ends = _runs(y)
    return [
        y[s:e] for s, e in zip(starts, ends, strict=True) if abs(e - s - length) <= 2
    ]


def test_grain_start_frequencies_are_in_range_and_log_uniform() -> None:
    lo, hi, duration_ms = 500.0, 4000.0, 40.0
    y = _render(
        "grains",
        60,
        rate_hz=8.0,
        freq_lo_hz=lo,
        freq_hi_hz=hi,
        duration_ms=duration_ms,
        duration_spread=0.0,
        envelope="hann",
    )[0]
    grains = _isolated_grains(y, int(duration_ms * FS / 1000))
    # Isolated (no other onset within a grain's length): exp(-2 * 8 * 0.04).
    assert len(grains) > 200
    freqs = []
    for grain in grains:
        crossings = _zero_crossing_times(grain)
        freqs.append(FS * (crossings.size - 1) / (crossings[-1] - crossings[0]))
    freqs = np.array(freqs)
    assert freqs.min() >= lo * 0.99 and freqs.max() <= hi * 1.01
    octaves = np.log2(freqs / lo) / np.log2(hi / lo)
    assert stats.kstest(octaves, stats.uniform(0, 1).cdf).pvalue > 1e-3


@pytest.mark.parametrize("glide_oct", (1.0, -1.5))
def test_grain_glide_direction_and_size(glide_oct: float) -> None:
    duration_ms = 120.0
    y = _render(
        "grains",
        20,
        rate_hz=2.0,
        freq_lo_hz=600.0,
        freq_hi_hz=1200.0,
        glide_oct=glide_oct,
        duration_ms=duration_ms,
        duration_spread=0.0,
        envelope="hann",
    )[0]
    grains = _isolated_grains(y, int(duration_ms * FS / 1000))
    assert len(grains) > 15
    for grain in grains:
        crossings = _zero_crossing_times(grain)
        # Instantaneous frequency between crossings against time: the pitch
        # moves evenly in octaves, so log2(f) is a straight line.
        mid_s = 0.5 * (crossings[1:] + crossings[:-1]) / FS
        octave = np.log2(FS / np.diff(crossings))
        slope = np.polyfit(mid_s, octave, 1)[0]
        assert slope * duration_ms / 1000 == pytest.approx(glide_oct, abs=0.03)


@pytest.mark.parametrize("envelope", ("hann", "percussive"))
def test_stolen_grains_fade_out_without_a_click(envelope: str) -> None:
    # One grain at a time, 300 ms grains, ten onsets a second: 95 % of onsets
    # steal a sounding grain, most of them well into it. A cut would step by up to the amplitude; a faded
    # steal moves no faster than two low sines and the fade allow.
    amplitude, f_hi = 0.5, 400.0
    prog = _program(
        "grains",
        rate_hz=10.0,
        freq_lo_hz=200.0,
        freq_hi_hz=f_hi,
        duration_ms=300.0,
        duration_spread=0.0,
        amplitude=amplitude,
        envelope=envelope,
        max_grains=1,
    )
    y = render_graph(prog, 30 * FS, 1000)[0]
    row = prog.instr[prog.node_names.index("node")]
    state = prog.state[row[I_STATE] : row[I_STATE] + row[I_N_STATE]]
    onsets = state[2 + 2]
    assert onsets == pytest.approx(300, abs=4.5 * np.sqrt(300))
    w = 2 * np.pi * f_hi / FS
    fade_frames = STEAL_FADE_MS * FS / 1000
    # Two sounding slots (the new grain and the fading one), each moving by at
    # most amplitude * (w + envelope slope); the fade adds amplitude / frames.
    attack = 1 / (0.5e-3 * FS) if envelope == "percussive" else np.pi / (0.3 * FS)
    bound = 2 * amplitude * (w + attack) + amplitude / fade_frames
    steps = np.abs(np.diff(y))
    assert steps.max() <= bound
    assert y.max() > 0.5 * amplitude  # and it was sounding all along


def test_bird_phrases_repeat_the_grain() -> None:
    repeats, gap_ms, duration_ms = 3, 30.0, 40.0
    y = _render(
        "grains",
        40,
        rate_hz=0.8,
        freq_lo_hz=2000.0,
        freq_hi_hz=5000.0,
        glide_oct=-0.5,
        duration_ms=duration_ms,
        duration_spread=0.0,
        envelope="hann",
        repeats=repeats,
        repeat_gap_ms=gap_ms,
    )[0]
    starts, ends = _runs(y)
    # Phrases: runs closer than 200 ms belong together.
    phrase_breaks = np.flatnonzero(np.diff(starts) > 0.2 * FS)
    groups = np.split(np.arange(starts.size), phrase_breaks + 1)
    sizes = np.array([g.size for g in groups])
    assert np.bincount(sizes).argmax() == repeats
    assert np.mean(sizes == repeats) > 0.7
    period = round(duration_ms * FS / 1000) + round(gap_ms * FS / 1000)
    for group in groups:
        if group.size == repeats:
            np.testing.assert_allclose(np.diff(starts[group]), period, atol=1)
            # The same note each time: equal pitch by zero crossings.
            pitches = [_zero_crossing_times(y[starts[i] : ends[i]]).size for i in group]
            assert max(pitches) - min(pitches) <= 1


def test_grains_block_size_invariance_with_steals_and_phrases() -> None:
    _block_invariant(
        "grains",
        30000,
        voices=2,
        rate_hz=300.0,
        duration_ms=40.0,
        spread_db=12.0,
        repeats=2,
        repeat_gap_ms=5.0,
        max_grains=3,
    )


def test_grains_seeded_and_option_checked() -> None:
    a = _render("grains", 2, rate_hz=50.0, program_seed=3)
    assert np.array_equal(a, _render("grains", 2, rate_hz=50.0, program_seed=3))
    assert not np.array_equal(a, _render("grains", 2, rate_hz=50.0, program_seed=4))
    for bad in (0, 65, 2.5, "many"):
        with pytest.raises(GraphError, match="max_grains"):
            _program("grains", max_grains=bad)


# pulse --------------------------------------------------------------------------


@pytest.mark.parametrize("fs", (44100, 48000))
def test_pulse_rate_is_exact_and_duty_holds(fs: int) -> None:
    rate_hz, duty, seconds = 7.83, 0.3, 30.0
    y = _render("pulse", seconds, fs=fs, rate_hz=rate_hz, duty=duty, edge_ms=8.0)[0]
    assert y.min() >= 0.0 and y.max() <= 1.0
    # Rising half-height crossings, interpolated: the pulse rate.
    c = y - 0.5
    rises = _zero_crossing_times(c)
    measured = (rises.size - 1) * fs / (rises[-1] - rises[0])
    assert measured == pytest.approx(rate_hz, abs=0.01)
    assert measured == pytest.approx(rate_hz, rel=1e-6)
    falls = _zero_crossing_times(-c)
    n = min(rises.size, falls.size)
    high_s = (falls[:n] - rises[:n]) / fs
    np.testing.assert_allclose(high_s, duty / rate_hz, atol=2 / fs)


@pytest.mark.parametrize(
    ("rate_hz", "duty", "edge_ms"), ((10.0, 0.5, 5.0), (40.0, 0.2, 20.0))
)
def test_pulse_edges_never_step_more_than_the_ramp_allows(
    rate_hz: float, duty: float, edge_ms: float
) -> None:
    y = _render("pulse", 5, rate_hz=rate_hz, duty=duty, edge_ms=edge_ms)[0]
    # The edge is shortened to fit the duty (and 1 - duty) of the period.
    edge_frames = min(edge_ms / 1000, duty / rate_hz, (1 - duty) / rate_hz) * FS
    steps = np.abs(np.diff(y))
    assert steps.max() <= np.pi / (2 * edge_frames) * (1 + 1e-3)
    # ...and the edges last that long: samples strictly between 0 and 1.
    between = np.count_nonzero((y > 1e-6) & (y < 1 - 1e-6)) / (2 * 5 * rate_hz)
    assert between == pytest.approx(edge_frames, abs=2)


def test_pulse_block_size_invariance() -> None:
    _block_invariant("pulse", 20000, voices=2, rate_hz=[13.0, 4.1], edge_ms=3.0)


# heartbeat ----------------------------------------------------------------------


def _envelope(y: np.ndarray, fs: int = FS) -> np.ndarray:
    return sosfiltfilt(butter(2, 30.0, fs=fs, output="sos"), np.abs(y))


@pytest.mark.parametrize("rate_bpm", (52.0, 75.0, 140.0))
def test_heartbeat_rate_from_envelope_autocorrelation(rate_bpm: float) -> None:
    seconds = 30.0
    y = _render("heartbeat", seconds, rate_bpm=rate_bpm)[0]
    env = _envelope(y)[:: FS // 1000]  # 1 kHz is plenty for a beat
    env = env - env.mean()
    ac = np.correlate(env, env, "full")[env.size - 1 :]
    period_ms = 60000 / rate_bpm
    lags = np.arange(int(0.6 * period_ms), int(1.4 * period_ms))
    peak = lags[np.argmax(ac[lags])]
    assert peak == pytest.approx(period_ms, abs=1.5)


def test_heartbeat_has_two_thumps_per_beat_the_second_softer() -> None:
    rate_bpm, spacing, dub_db = 60.0, 0.35, -6.0
    y = _render("heartbeat", 10, rate_bpm=rate_bpm, spacing=spacing, dub_gain_db=dub_db)
    y = y[0]
    starts, ends = _runs(y)
    assert starts.size == 2 * 10
    period = FS * 60 / rate_bpm
    np.testing.assert_allclose(np.diff(starts[0::2]), period, atol=1)
    np.testing.assert_allclose(starts[1::2] - starts[0::2], spacing * period, atol=1)
    peaks = np.array([np.abs(y[s:e]).max() for s, e in zip(starts, ends, strict=True)])
    lub, dub = peaks[0::2], peaks[1::2]
    assert 20 * np.log10(np.mean(dub / lub)) == pytest.approx(dub_db, abs=2.0)


def test_heartbeat_thumps_fall_in_pitch() -> None:
    frequency_hz = 60.0
    y = _render("heartbeat", 2, rate_bpm=60.0, frequency_hz=frequency_hz)[0]
    starts, ends = _runs(y)
    lub = y[starts[0] : ends[0]]
    crossings = _zero_crossing_times(lub)
    freqs = FS / np.diff(crossings)
    assert freqs[0] > 1.5 * frequency_hz
    assert np.all(np.diff(freqs) < 0)  # falling all the way
    assert freqs[-1] == pytest.approx(frequency_hz, rel=0.1)


def test_heartbeat_block_size_invariance() -> None:
    _block_invariant("heartbeat", 60000, voices=2, rate_bpm=[200.0, 90.0])


def test_isochronic_tone_from_a_scene_file(tmp_path) -> None:
    # The use the pulse is for: a tone switched on and off by it (ring_mod),
    # written as a scene; the on/off rate measured from the tone's envelope.
    from engine.scenes.format import load_scene_file

    scene = tmp_path / "iso.yaml"
    scene.write_text(
        "name: iso\n"
        "description: An isochronic tone at 10 Hz.\n"
        "layers:\n"
        "  tone:\n"
        "    nodes:\n"
        "      carrier: {type: sine, frequency_hz: 220, amplitude: 0.5}\n"
        "      gate: {type: pulse, rate_hz: 10, duty: 0.5, edge_ms: 4}\n"
        "      iso: {type: ring_mod, a: carrier, b: gate}\n"
        "    output: iso\n"
    )
    _, graph = load_scene_file(scene)
    y = render_graph(graph, 20 * FS, 512)[0]
    env = _envelope(y)
    rises = _zero_crossing_times(env - 0.5 * env.max())
    measured = (rises.size - 1) * FS / (rises[-1] - rises[0])
    assert measured == pytest.approx(10.0, abs=0.01)
