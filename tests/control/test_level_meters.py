"""Layer and master meters of a playing scene, read as the status reads them:
a layer's RMS against theory, a layer's gain change moving its meter and no
other, a trigger's copies read as one layer, the master meter against the
rendered output, and the layers read across a crossfade (a reload reads
steady, a scene change as the fade sounds it)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from engine.control.level_meters import (
    SILENCE_DB,
    LayerMeters,
    MeterTaps,
    amplitude_db,
    clear_meters,
)
from engine.graph.graph import Graph
from engine.rt.engine import Engine
from engine.scenes.player import ScenePlayer

RATE = 48000
GAME = Path(__file__).parents[1] / "scenes" / "data" / "game.yaml"
SINE_RMS_DB = 20.0 * math.log10(math.sqrt(0.5))

TWO_TONES = """\
name: two_tones
description: Two steady tones, one panned.
layers:
  low:
    nodes:
      tone: {type: sine, frequency_hz: 220, amplitude: 0.2}
    output: tone
  high:
    pan: 0.5
    nodes:
      tone: {type: sine, frequency_hz: 1000, amplitude: 0.1}
    output: tone
"""


@pytest.fixture
def two_tones(tmp_path: Path) -> ScenePlayer:
    path = tmp_path / "two_tones.yaml"
    path.write_text(TWO_TONES)
    player = ScenePlayer(Engine(sample_rate=RATE, seed=1), on_error=lambda m: None)
    player.load(path)
    return player


def _layers(player: ScenePlayer) -> dict[str, tuple[float, float]]:
    program = player.engine.current
    assert program is not None
    return MeterTaps(program).read()


def test_each_layer_reads_what_it_adds_to_the_bus(two_tones):
    two_tones.engine.render(2 * RATE)
    meters = _layers(two_tones)
    assert set(meters) == {"low", "high"}
    peak, rms = meters["low"]
    assert peak == pytest.approx(amplitude_db(0.2), abs=0.1)
    assert rms == pytest.approx(amplitude_db(0.2) + SINE_RMS_DB, abs=0.1)
    # Panned to stereo: equal power shares the sine's power between the two
    # channels, and the meter reads the mean over channels (as the master's).
    _, rms_high = meters["high"]
    assert rms_high == pytest.approx(amplitude_db(0.1) + 2 * SINE_RMS_DB, abs=0.1)


def test_a_layer_turned_down_20_db_reads_20_db_less_and_the_other_stays(two_tones):
    engine = two_tones.engine
    engine.render(2 * RATE)
    before = _layers(two_tones)
    two_tones.set_param("low", "level", "gain_db", -20.0)
    engine.render(3 * RATE)
    after = _layers(two_tones)
    assert after["low"][1] - before["low"][1] == pytest.approx(-20.0, abs=0.2)
    assert after["low"][0] - before["low"][0] == pytest.approx(-20.0, abs=0.2)
    assert after["high"][1] == pytest.approx(before["high"][1], abs=0.05)
    assert after["high"][0] == pytest.approx(before["high"][0], abs=0.05)


def test_a_muted_state_layer_falls_to_silence_and_a_trigger_reads_as_one_layer():
    player = ScenePlayer(Engine(sample_rate=RATE, seed=3), on_error=lambda m: None)
    player.load(GAME)
    engine = player.engine
    engine.render(2 * RATE)  # more than six times the RMS window: settled
    meters = _layers(player)
    # Copies hit and hit~2 (the trigger's two voices) are one layer.
    assert set(meters) == {"calm", "tense", "hit"}
    assert meters["tense"] == (SILENCE_DB, SILENCE_DB)  # off in the first state
    assert meters["hit"] == (SILENCE_DB, SILENCE_DB)  # not fired yet
    assert meters["calm"][1] == pytest.approx(amplitude_db(0.2) + SINE_RMS_DB, abs=0.1)
    player.fire("hit")
    engine.render(RATE // 10)
    assert _layers(player)["hit"][0] > -20.0


def test_the_master_meter_reads_the_rendered_output(two_tones):
    engine = two_tones.engine
    audio = engine.render(3 * RATE).astype(np.float64)
    taps = MeterTaps(engine.master)
    peak, rms = taps.read()["master"]
    last = audio[-RATE // 2 :]
    # The peak held and falling 20 dB/s since the frame it was reached (the
    # two tones peak together every 50 ms), to the output's float32 rounding.
    age_s = (len(last) - 1 - np.arange(len(last))) / RATE
    held = np.max(np.abs(last).max(axis=1) * 10.0 ** (-20.0 * age_s / 20.0))
    assert peak == pytest.approx(amplitude_db(held), abs=1e-4)
    assert rms == pytest.approx(amplitude_db(np.sqrt(np.mean(last**2))), abs=0.1)


def test_silence_reads_as_the_floor_not_minus_infinity():
    engine = Engine(sample_rate=RATE)
    engine.render(512)
    assert MeterTaps(engine.master).read() == {"master": (SILENCE_DB, SILENCE_DB)}


def test_cleared_meters_read_silence_and_measure_again_when_rendering(two_tones):
    engine = two_tones.engine
    engine.render(RATE)
    assert _layers(two_tones)["low"][0] > -20.0
    clear_meters(engine)  # as the daemon does once its stream is closed
    assert set(_layers(two_tones).values()) == {(SILENCE_DB, SILENCE_DB)}
    assert MeterTaps(engine.master).read()["master"] == (SILENCE_DB, SILENCE_DB)
    engine.render(RATE // 10)
    assert _layers(two_tones)["low"][0] == pytest.approx(amplitude_db(0.2), abs=0.1)


# The same layers as TWO_TONES, "low" 20 dB down, "high" gone, "mid" new.
OTHER_TONES = """\
name: other_tones
description: The low tone 20 dB down, the high one gone, a new one.
layers:
  low:
    nodes:
      tone: {type: sine, frequency_hz: 220, amplitude: 0.02}
    output: tone
  mid:
    nodes:
      tone: {type: sine, frequency_hz: 500, amplitude: 0.1}
    output: tone
"""


def _flat(readings: dict[str, tuple[float, float]]) -> dict[str, float]:
    return {
        f"{layer} {what}": value
        for layer, pair in readings.items()
        for what, value in zip(("peak", "rms"), pair, strict=True)
    }


def test_reloading_the_same_scene_reads_steady_where_its_new_meters_dip(two_tones):
    engine = two_tones.engine
    engine.render(2 * RATE)
    steady = _layers(two_tones)
    meters = LayerMeters(engine)
    assert _flat(meters.read()) == pytest.approx(_flat(steady))
    two_tones.reload()  # the same file again: a 1 s crossfade to a new program
    rows = []
    for _ in range(100):  # 2 s in 20 ms steps
        engine.render(RATE // 50)
        assert engine.current is not None
        rows.append((MeterTaps(engine.current).read(), meters.read()))
    for layer in ("low", "high"):
        # The new program's meters alone: from nothing, 300 ms to settle.
        dip = min(raw[layer][1] for raw, _ in rows) - steady[layer][1]
        assert dip < -10.0
        # Carried over: the layer sounds on and reads steady throughout.
        for _, heard in rows:
            assert heard[layer][1] == pytest.approx(steady[layer][1], abs=0.05)
            assert heard[layer][0] == pytest.approx(steady[layer][0], abs=0.05)


def test_a_scene_change_reads_each_layer_as_the_crossfade_sounds_it(
    two_tones, tmp_path: Path
):
    engine = two_tones.engine
    engine.render(2 * RATE)
    steady = _layers(two_tones)
    path = tmp_path / "other_tones.yaml"
    path.write_text(OTHER_TONES)
    meters = LayerMeters(engine)
    meters.read()
    two_tones.load(path, fade_s=1.0)
    engine.render(RATE // 2)  # the equal-power fade's midpoint
    heard = meters.read()
    # Only in the old scene: faded out with its sound, -3.01 dB at the middle.
    assert heard["high"][1] == pytest.approx(steady["high"][1] - 3.01, abs=0.05)
    assert heard["high"][0] == pytest.approx(steady["high"][0] - 3.01, abs=0.05)
    # Only in the new: faded in, 3 dB down, and its meter 0.5 s old (82 %
    # of the way: another 0.85 dB).
    new_rms = amplitude_db(0.1) + SINE_RMS_DB
    rise_db = 10.0 * math.log10(1.0 - math.exp(-0.5 / 0.3))
    assert heard["mid"][1] == pytest.approx(new_rms - 3.01 + rise_db, abs=0.1)
    # In both: between the two levels, never below the new one.
    assert amplitude_db(0.02) + SINE_RMS_DB < heard["low"][1] < steady["low"][1]
    engine.render(RATE // 2 + 128)
    after = meters.read()
    assert set(after) == {"low", "mid"}  # the old program is no longer heard
    # The low tone falls from its old level at the meter's own rate (14.5 dB/s
    # at 300 ms): still above its new level, which it reaches in time.
    assert after["low"][1] > amplitude_db(0.02) + SINE_RMS_DB + 3.0
    engine.render(2 * RATE)
    settled = meters.read()
    assert settled["low"][1] == pytest.approx(amplitude_db(0.02) + SINE_RMS_DB, abs=0.1)
    # What is left of the old level then: 3 s at 14.5 dB/s, 20 dB above.
    assert _flat(settled) == pytest.approx(_flat(_layers(two_tones)), abs=0.03)


def test_the_first_scene_reads_as_it_fades_in_from_silence(tmp_path: Path):
    path = tmp_path / "two_tones.yaml"
    path.write_text(TWO_TONES)
    player = ScenePlayer(Engine(sample_rate=RATE, seed=1), on_error=lambda m: None)
    engine = player.engine
    meters = LayerMeters(engine)
    player.load(path, fade_s=1.0)
    engine.render(RATE // 2)  # half way: the fade-in gain is sin(pi / 4)
    assert engine.current is not None
    raw = MeterTaps(engine.current).read()
    heard = meters.read()
    for layer in ("low", "high"):
        assert heard[layer][1] == pytest.approx(raw[layer][1] - 3.0103, abs=1e-6)
        assert heard[layer][0] == pytest.approx(raw[layer][0] - 3.0103, abs=1e-6)


def test_a_graph_without_meters_ends_the_readings_with_its_fade(two_tones):
    engine = two_tones.engine
    engine.render(2 * RATE)
    meters = LayerMeters(engine)
    steady = meters.read()
    g = Graph()
    g.output(g.node("sine", name="tone", amplitude=0.1))
    engine.load(g, fade_s=0.5)
    engine.render(RATE // 4)
    fading = meters.read()
    assert fading["low"][1] == pytest.approx(steady["low"][1] - 3.0103, abs=0.05)
    engine.render(RATE // 4 + 256)
    assert not engine.switching
    assert meters.read() == {}
