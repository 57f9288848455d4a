"""Modulation sources by measurement: LFO frequency and range, smooth random
continuity and seeding, ADSR and AR timings fired by parameter writes between
render calls, ramp timing, block-size invariance and the numerics rules."""

from __future__ import annotations

import numpy as np
import pytest

from engine.dsp.layout import I_N_STATE, I_STATE, P_TARGET
from engine.graph.compile import compile_graph
from engine.graph.graph import Graph
from engine.rt.render import render_graph

SAMPLE_RATES = (44100, 48000)
BLOCK_SIZES = (1, 63, 64, 65, 512)
TINY = np.finfo(np.float64).tiny


def _program(
    kind: str,
    fs: int = 48000,
    block: int = 64,
    program_seed: int = 0,
    name: str = "mod",
    **settings,
):
    g = Graph()
    voices = settings.pop("voices", None)
    node = g.node(kind, name=name, voices=voices, **settings)
    g.output(node[0:2] if voices == 2 else node)
    return compile_graph(g, fs, block, program_seed)


def _lfo(n: int, fs: int = 48000, block: int = 64, program_seed: int = 0, **settings):
    return render_graph(_program("lfo", fs, block, program_seed, **settings), n, block)


def _node_state(prog) -> np.ndarray:
    row = prog.instr[prog.node_names.index("mod")]
    return prog.state[row[I_STATE] : row[I_STATE] + row[I_N_STATE]]


def _subnormals(x: np.ndarray) -> int:
    return int(np.count_nonzero((x != 0) & (np.abs(x) < TINY)))


# LFO ---------------------------------------------------------------------------


@pytest.mark.parametrize("fs", SAMPLE_RATES)
@pytest.mark.parametrize("shape", ("sine", "triangle"))
def test_lfo_frequency_by_zero_crossings_and_fft(shape: str, fs: int) -> None:
    rate, seconds = 3.7, 20
    y = _lfo(seconds * fs, fs, shape=shape, rate_hz=rate, depth=2.0, offset=5.0)[0]
    centred = y - 5.0
    crossings = np.count_nonzero(np.diff(np.signbit(centred)))
    assert crossings == pytest.approx(2 * rate * seconds, abs=1)
    spectrum = np.abs(np.fft.rfft(centred * np.hanning(len(y))))
    assert np.argmax(spectrum) * fs / len(y) == pytest.approx(rate, abs=1 / seconds)


@pytest.mark.parametrize("shape", ("sine", "triangle", "smooth_random"))
def test_lfo_range_is_offset_plus_minus_depth(shape: str) -> None:
    fs = 48000
    y = _lfo(60 * fs, fs, block=512, shape=shape, rate_hz=7.0, depth=3.0, offset=-1.0)
    assert y.min() >= -4.0 - 1e-9
    assert y.max() <= 2.0 + 1e-9
    # ...and uses it: 420 random points reach near both ends.
    assert y.min() < -4.0 + 0.1 and y.max() > 2.0 - 0.1


def test_lfo_phase_option_and_waveforms() -> None:
    fs = 48000
    # Phase 0.25: sine and triangle both start at their peak.
    for shape in ("sine", "triangle"):
        y = _lfo(10, fs, shape=shape, rate_hz=1.0, depth=1.0, phase=0.25)[0]
        assert y[0] == pytest.approx(1.0, abs=1e-9)
    # A triangle's slope is 4 * depth * rate per second.
    y = _lfo(fs // 10, fs, shape="triangle", rate_hz=1.0, depth=0.5)[0]
    np.testing.assert_allclose(np.diff(y), 4 * 0.5 / fs, rtol=1e-9)


def test_smooth_random_has_no_jumps_and_is_band_limited() -> None:
    fs, rate, depth = 48000, 20.0, 1.0
    y = _lfo(30 * fs, fs, block=512, shape="smooth_random", rate_hz=rate, depth=depth)
    steps = np.abs(np.diff(y[0]))
    # Monotone cubic segments: slope at most 2 * (segment rise <= 2 * depth).
    bound = 4 * depth * rate / fs
    assert steps.max() <= bound * (1 + 1e-9)
    # A sample-and-hold with the same points jumps by up to 2 * depth.
    assert steps.max() < 2 * depth / 100
    # The slope is continuous too: no corners at the points.
    assert np.abs(np.diff(y[0], 2)).max() < 20 * bound / (fs / rate)
    # Energy above 10 points per second-octave: the spectrum falls fast.
    spectrum = np.abs(np.fft.rfft(y[0] * np.hanning(y.shape[1]))) ** 2
    freqs = np.fft.rfftfreq(y.shape[1], 1 / fs)
    below = spectrum[(freqs > 0) & (freqs < rate)].sum()
    above = spectrum[freqs > 10 * rate].sum()
    assert 10 * np.log10(above / below) < -60


def test_smooth_random_is_seeded_per_program_node_and_voice() -> None:
    fs = 48000
    kwargs = {"shape": "smooth_random", "rate_hz": 50.0, "voices": 2, "block": 512}
    a = _lfo(10 * fs, fs, program_seed=1, **kwargs)
    assert np.array_equal(a, _lfo(10 * fs, fs, program_seed=1, **kwargs))
    other_seed = _lfo(10 * fs, fs, program_seed=2, **kwargs)
    other_node = _lfo(10 * fs, fs, program_seed=1, name="other", **kwargs)
    # 500 independent points per voice: sigma of the correlation about 0.045.
    assert abs(np.corrcoef(a[0], other_seed[0])[0, 1]) < 0.2
    assert abs(np.corrcoef(a[0], other_node[0])[0, 1]) < 0.2
    assert abs(np.corrcoef(a[0], a[1])[0, 1]) < 0.2
    # An explicit seed option wins over the program seed and the node's name.
    x = _lfo(4800, fs, program_seed=5, name="x", seed=77, **kwargs)
    y = _lfo(4800, fs, program_seed=6, name="y", seed=77, **kwargs)
    assert np.array_equal(x, y)


@pytest.mark.parametrize("shape", ("sine", "triangle", "smooth_random"))
def test_lfo_block_size_invariance(shape: str) -> None:
    renders = [
        _lfo(6000, 48000, b, 3, shape=shape, rate_hz=40.0, voices=2)
        for b in BLOCK_SIZES
    ]
    for block, other in zip(BLOCK_SIZES[1:], renders[1:], strict=True):
        assert np.array_equal(renders[0], other), block


def test_lfo_bad_targets_are_refused() -> None:
    prog = _program("lfo", rate_hz=5.0)
    for name in ("rate_hz", "depth", "offset"):
        prog.params[P_TARGET, prog.param("mod", name).column] = np.nan
    out = render_graph(prog, 4800, 64)
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(prog.state))


# ADSR --------------------------------------------------------------------------


@pytest.mark.parametrize("fs", SAMPLE_RATES)
def test_adsr_timings(fs: int) -> None:
    attack_ms, decay_ms, sustain, release_ms = 20.0, 100.0, 0.4, 250.0
    prog = _program(
        "adsr",
        fs,
        attack_ms=attack_ms,
        decay_ms=decay_ms,
        sustain=sustain,
        release_ms=release_ms,
    )
    assert np.all(render_graph(prog, 1000, 64) == 0.0)  # idle until the gate
    prog.set_target("mod", "gate", 1.0)
    held = render_graph(prog, fs, 64)[0]
    n_attack = attack_ms * fs / 1000
    # Linear attack: 1 after attack_ms (sample index n_attack - 1).
    peak = int(np.argmax(held >= 1.0))
    assert peak == pytest.approx(n_attack - 1, abs=1)
    np.testing.assert_allclose(held[:10], (np.arange(10) + 1) / n_attack, rtol=1e-9)
    # Exponential decay: 60 dB of the way to sustain after decay_ms.
    n_decay = round(decay_ms * fs / 1000)
    remaining = (held[peak + n_decay] - sustain) / (1 - sustain)
    assert 20 * np.log10(remaining) == pytest.approx(-60, abs=0.2)
    assert held[-1] == pytest.approx(sustain, abs=1e-9)
    prog.set_target("mod", "gate", 0.0)
    released = render_graph(prog, fs, 64)[0]
    n_release = round(release_ms * fs / 1000)
    level_db = 20 * np.log10(released[n_release - 1] / sustain)
    assert level_db == pytest.approx(-60, abs=0.1)
    assert 20 * np.log10(released[int(0.9 * n_release)] / sustain) > -60
    # Snaps to exactly 0 at -120 dB (twice the release time).
    assert released[2 * n_release + 10] == 0.0


def test_adsr_retrigger_starts_from_the_current_level_without_a_click() -> None:
    fs = 48000
    prog = _program("adsr", fs, attack_ms=10.0, release_ms=400.0, sustain=0.8)
    prog.set_target("mod", "gate", 1.0)
    first = render_graph(prog, fs // 2, 64)[0]
    prog.set_target("mod", "gate", 0.0)
    release = render_graph(prog, fs // 10, 64)[0]
    prog.set_target("mod", "gate", 1.0)
    again = render_graph(prog, fs // 10, 64)[0]
    y = np.concatenate([first, release, again])
    rise = 1000 / (10.0 * fs)
    assert np.max(np.abs(np.diff(y))) <= rise * (1 + 1e-9)
    # From the release level it needs only (1 - level) * attack_ms to peak.
    level = release[-1]
    assert int(np.argmax(again >= 1.0)) == pytest.approx((1 - level) / rise - 1, abs=1)


def test_adsr_voices_have_their_own_gates_and_zero_times_jump() -> None:
    fs = 48000
    prog = _program("adsr", fs, voices=2, attack_ms=0.0, decay_ms=0.0, sustain=0.5)
    col = prog.param("mod", "gate").column
    prog.params[P_TARGET, col + 1] = 1.0  # voice 1 only
    out = render_graph(prog, 100, 64)
    assert np.all(out[0] == 0.0)
    assert out[1, 0] == 1.0 and np.all(out[1, 1:] == 0.5)


def test_adsr_block_size_invariance_with_gate_events() -> None:
    renders = []
    for block in BLOCK_SIZES:
        prog = _program("adsr", 48000, block=block, voices=2, attack_ms=3.0)
        pieces = [render_graph(prog, 700, block)]
        prog.set_target("mod", "gate", 1.0)
        pieces.append(render_graph(prog, 3000, block))
        prog.set_target("mod", "gate", 0.0)
        pieces.append(render_graph(prog, 3000, block))
        renders.append(np.concatenate(pieces, axis=1))
    for block, other in zip(BLOCK_SIZES[1:], renders[1:], strict=True):
        assert np.array_equal(renders[0], other), block


# AR ----------------------------------------------------------------------------


@pytest.mark.parametrize("fs", SAMPLE_RATES)
def test_ar_fires_on_every_trigger_change(fs: int) -> None:
    attack_ms, release_ms = 5.0, 50.0
    prog = _program("ar", fs, attack_ms=attack_ms, release_ms=release_ms)
    assert np.all(render_graph(prog, 1000, 64) == 0.0)  # no firing at start
    n_attack = attack_ms * fs / 1000
    n_release = round(release_ms * fs / 1000)
    for count in (1, 2, 3):
        prog.set_target("mod", "trigger", float(count))
        y = render_graph(prog, fs // 5, 64)[0]
        peak = int(np.argmax(y >= 1.0))
        assert peak == pytest.approx(n_attack - 1, abs=1)
        level_db = 20 * np.log10(y[peak + n_release])
        assert level_db == pytest.approx(-60, abs=0.1)
        assert y[-1] == 0.0
    # Writing the same value again does not fire.
    prog.set_target("mod", "trigger", 3.0)
    assert np.all(render_graph(prog, 1000, 64) == 0.0)


def test_ar_retrigger_mid_release_rises_from_the_current_level() -> None:
    fs = 48000
    prog = _program("ar", fs, attack_ms=10.0, release_ms=100.0)
    prog.set_target("mod", "trigger", 1.0)
    first = render_graph(prog, 2400, 64)[0]
    prog.set_target("mod", "trigger", 2.0)
    second = render_graph(prog, 2400, 64)[0]
    rise = 1000 / (10.0 * fs)
    assert second[0] == pytest.approx(first[-1] + rise, rel=1e-12)
    assert np.max(np.abs(np.diff(np.concatenate([first, second])))) <= rise * 1.000001


@pytest.mark.parametrize("kind", ("adsr", "ar"))
def test_envelope_silence_leaves_no_subnormals_and_bad_targets_are_refused(
    kind: str,
) -> None:
    fs = 48000
    fire = ("gate", 1.0) if kind == "adsr" else ("trigger", 1.0)
    prog = _program(kind, fs, block=512, voices=2, release_ms=5.0)
    prog.set_target("mod", *fire)
    render_graph(prog, fs // 10, 512)
    if kind == "adsr":
        prog.set_target("mod", "gate", 0.0)
    silence = render_graph(prog, 120 * fs, 512)
    assert _subnormals(silence) == 0 and _subnormals(_node_state(prog)) == 0
    assert np.all(silence[:, fs:] == 0.0)
    for name in [p for (n, p) in prog.param_refs if n == "mod"]:
        prog.params[P_TARGET, prog.param("mod", name).column] = np.nan
    out = render_graph(prog, 4800, 512)
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(prog.state))


# Ramp --------------------------------------------------------------------------


@pytest.mark.parametrize("fs", SAMPLE_RATES)
def test_ramp_reaches_its_target_in_time_s(fs: int) -> None:
    prog = _program("ramp", fs, value=2.0, time_s=0.25)
    np.testing.assert_array_equal(render_graph(prog, 1000, 64), 2.0)  # no glide
    prog.set_target("mod", "value", 5.0)
    y = render_graph(prog, fs // 2, 64)[0]
    n = round(0.25 * fs)
    np.testing.assert_allclose(y[:n], 2.0 + 3.0 * (np.arange(n) + 1) / n, rtol=1e-12)
    assert y[n - 1] == 5.0 and np.all(y[n:] == 5.0)


def test_ramp_change_mid_glide_starts_from_where_it_is() -> None:
    fs = 48000
    prog = _program("ramp", fs, value=0.0, time_s=0.1)
    prog.set_target("mod", "value", 1.0)
    first = render_graph(prog, 2400, 64)[0]  # halfway
    prog.set_target("mod", "time_s", 0.05)
    prog.set_target("mod", "value", -1.0)
    second = render_graph(prog, 4800, 64)[0]
    n = int(0.05 * fs)
    step = (-1.0 - first[-1]) / n
    assert second[0] == pytest.approx(first[-1] + step, rel=1e-12)
    assert second[n - 1] == -1.0
    prog.set_target("mod", "time_s", 0.0)
    prog.set_target("mod", "value", 3.0)
    assert np.all(render_graph(prog, 10, 64) == 3.0)  # time 0 jumps


def test_ramp_block_size_invariance_and_bad_targets() -> None:
    renders = []
    for block in BLOCK_SIZES:
        prog = _program("ramp", 48000, block=block, voices=2, time_s=0.01)
        prog.set_target("mod", "value", 1.0)
        renders.append(render_graph(prog, 3000, block))
    for block, other in zip(BLOCK_SIZES[1:], renders[1:], strict=True):
        assert np.array_equal(renders[0], other), block
    prog.params[P_TARGET, prog.param("mod", "value").column] = np.inf
    assert np.all(render_graph(prog, 1000, 64) == 1.0)
