"""The ducker, measured from its output: depth at steady state, attack and release
time constants, the hold, the threshold, bad key values and block sizes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.dsp.interpreter import render_program
from engine.dsp.layout import INFO_IN_SLOT, INFO_OUT_SLOT, INFO_OUT_STRIDE
from engine.graph.compile import compile_graph
from engine.graph.graph import Graph

SAMPLE_RATES = (44100, 48000)


def _program(fs: int, key_channels: int = 1, **settings):
    """Input channel 0 is ducked, channels 1.. are the key."""
    g = Graph()
    inp = g.input(channels=1 + key_channels)
    g.output(g.node("duck", inp[0], inp[1:], name="fx", **settings))
    return compile_graph(g, fs, 2048)


def _run(prog, x: np.ndarray, block: int = 256) -> np.ndarray:
    """Channels-first input in, the left output channel out."""
    n = x.shape[1]
    out = np.zeros(n)
    in_slot = int(prog.info[INFO_IN_SLOT])
    left = int(prog.info[INFO_OUT_SLOT])
    assert int(prog.info[INFO_OUT_STRIDE]) in (0, 1)
    pos = 0
    while pos < n:
        m = min(block, n - pos)
        prog.bufs[in_slot : in_slot + x.shape[0], :m] = x[:, pos : pos + m]
        render_program(prog.arrays, float(prog.sample_rate), m)
        out[pos : pos + m] = prog.bufs[left, :m]
        pos += m
    return out


def _gain_db(fs: int, key: np.ndarray, block: int = 256, **settings) -> np.ndarray:
    """The ducker's gain in dB over time: a DC input of 1 through it."""
    x = np.vstack([np.ones(key.shape[-1]), np.atleast_2d(key)])
    out = _run(_program(fs, x.shape[0] - 1, **settings), x, block)
    return 20.0 * np.log10(out)


def _crossing(curve: np.ndarray, level: float, start: int) -> int:
    """First frame at or after ``start`` where ``curve`` passes ``level``
    (from either side)."""
    above = curve[start:] > level
    return start + int(np.flatnonzero(above != above[0])[0])


@pytest.mark.parametrize("fs", SAMPLE_RATES)
@pytest.mark.parametrize("depth_db", [3.0, 9.0, 24.0])
def test_depth_at_steady_state_whatever_the_key_level(fs: int, depth_db: float) -> None:
    n = fs
    t = np.arange(n) / fs
    for key_db in (-30.0, -6.0, 0.0):
        key = 10 ** (key_db / 20) * np.sin(2 * np.pi * 80.0 * t)
        gain = _gain_db(fs, key, depth_db=depth_db, attack_ms=20.0)
        # After 20 time constants the glide has landed exactly.
        assert np.allclose(gain[fs // 2 :], -depth_db, atol=1e-9), key_db


@pytest.mark.parametrize("fs", SAMPLE_RATES)
@pytest.mark.parametrize(("attack_ms", "release_ms"), [(10.0, 400.0), (50.0, 120.0)])
def test_attack_and_release_are_time_constants(
    fs: int, attack_ms: float, release_ms: float
) -> None:
    depth_db, hold_ms = 12.0, 60.0
    on, off = fs // 4, fs
    key = np.zeros(3 * fs)
    key[on:off] = 0.5 * np.sin(2 * np.pi * 200.0 * np.arange(off - on) / fs)
    gain = _gain_db(
        fs,
        key,
        depth_db=depth_db,
        attack_ms=attack_ms,
        release_ms=release_ms,
        hold_ms=hold_ms,
    )
    assert np.all(gain[:on] == 0.0)  # nothing moves before the key
    # One time constant: 1 - 1/e of the way (the key's first sample at `on`
    # is a sine's zero, so it starts one sample later).
    reached = _crossing(gain, -depth_db * (1 - math.exp(-1)), on)
    assert (reached - on) / fs * 1e3 == pytest.approx(attack_ms, abs=2e3 / fs)
    # Release starts when the hold ends after the key's last loud sample.
    last_loud = off - 1
    release_start = last_loud + round(hold_ms * 1e-3 * fs)
    assert np.all(gain[off:release_start] == pytest.approx(-depth_db, abs=1e-4))
    back = _crossing(gain, -depth_db * math.exp(-1), release_start)
    assert (back - release_start) / fs * 1e3 == pytest.approx(release_ms, abs=2e3 / fs)


def test_a_key_under_the_threshold_passes_the_input_bit_exactly() -> None:
    fs = 48000
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (2, fs))
    x[1] *= 10 ** (-45 / 20)  # the key peaks at -45 dBFS
    out = _run(_program(fs, threshold_db=-40.0), x)
    assert np.array_equal(out, x[0])
    x[1] *= 10 ** (10 / 20)  # now at -35 dBFS
    out = _run(_program(fs, threshold_db=-40.0, depth_db=6.0), x)
    assert np.allclose(out[fs // 2 :] / x[0, fs // 2 :], 10 ** (-6 / 20))


def test_the_louder_key_channel_rules_and_all_voices_move_together() -> None:
    fs = 48000
    g = Graph()
    inp = g.input(channels=4)
    g.output(g.node("duck", inp[0:2], inp[2:4], name="fx", depth_db=10.0))
    prog = compile_graph(g, fs, 2048)
    x = np.ones((4, fs))
    x[2] = 0.0  # left key silent
    x[3] = 0.3  # right key sounding
    out_left = _run(prog, x)
    assert out_left[-1] == pytest.approx(10 ** (-10 / 20), abs=1e-9)
    right = int(prog.info[INFO_OUT_SLOT]) + 1
    assert prog.bufs[right, 0] == pytest.approx(10 ** (-10 / 20), abs=1e-9)


@pytest.mark.parametrize("block", [1, 63, 64, 65, 512])
def test_block_size_invariance(block: int) -> None:
    fs = 48000
    rng = np.random.default_rng(5)
    key = np.zeros(fs)
    key[5000:9000] = rng.uniform(-0.5, 0.5, 4000)
    key[30000:30100] = 0.9
    reference = _gain_db(fs, key, block=256, release_ms=50.0)
    assert np.allclose(_gain_db(fs, key, block=block, release_ms=50.0), reference)


def test_bad_key_values_do_not_poison_the_state_and_silence_lands_on_zero() -> None:
    fs = 48000
    key = np.zeros(2 * fs)
    key[1000:1010] = [np.nan, np.inf, -np.inf, np.nan, 1e-320, 0, 0, 0, 0, 0]
    key[5000:6000] = 0.5
    x = np.vstack([np.ones(key.size), key])
    prog = _program(fs, release_ms=20.0)
    out = _run(prog, x)
    assert np.all(np.isfinite(out))
    assert np.all(out[:5000] == 1.0)  # NaN and inf counted as silence
    assert out[8000] < 10 ** (-8 / 20)  # a real key still ducks
    assert out[-1] == 1.0
    state = prog.state
    assert np.all(np.isfinite(state))
    assert not np.any((state != 0) & (np.abs(state) < np.finfo(float).tiny))


def test_depth_moves_smoothly_without_a_step() -> None:
    fs = 48000
    prog = _program(fs, depth_db=6.0)
    x = np.vstack([np.ones(fs), np.full(fs, 0.5)])
    first = _run(prog, x[:, : fs // 2])
    prog.set_target("fx", "depth_db", 18.0)
    second = _run(prog, x[:, fs // 2 :])
    gain = 20 * np.log10(np.concatenate([first, second]))
    assert gain[-1] == pytest.approx(-18.0, abs=1e-6)
    # A 12 dB change glides: no sample-to-sample jump above 0.1 dB.
    assert np.max(np.abs(np.diff(gain[fs // 4 :]))) < 0.1
