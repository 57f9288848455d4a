"""Status snapshots: master levels measured from what was rendered, layer levels
(fades) and layer meters as the audio thread has them, volume, and the
player's scene, state, inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.control.status import SILENCE_DB, StatusReport, master_levels_dbfs
from engine.rt.engine import Engine
from engine.scenes.player import ScenePlayer

RATE = 48000
GAME = Path(__file__).parents[1] / "scenes" / "data" / "game.yaml"


@pytest.fixture
def player() -> ScenePlayer:
    player = ScenePlayer(Engine(sample_rate=RATE, seed=3), on_error=lambda m: None)
    player.load(GAME)
    return player


def test_master_levels_match_the_last_block_rendered(player):
    audio = player.engine.render(RATE, block_size=256)
    peak_db, rms_db = master_levels_dbfs(player.engine, 256)
    last = audio[-256:].astype(np.float64)
    assert peak_db == pytest.approx(20 * np.log10(np.max(np.abs(last))), abs=1e-4)
    assert rms_db == pytest.approx(20 * np.log10(np.sqrt(np.mean(last**2))), abs=1e-4)


def test_silence_reads_as_the_floor():
    engine = Engine(sample_rate=RATE)
    engine.render(512)
    assert master_levels_dbfs(engine, 128) == (SILENCE_DB, SILENCE_DB)


def test_snapshot_names_scene_state_inputs_layers_and_volume(player):
    engine = player.engine
    engine.render(RATE // 2)
    player.set_input("danger", 0.4)
    player.set_state("combat", frame=engine.frame)  # quantized to the next bar
    player.set_volume(-6.0, ramp_s=0.0)
    engine.render(4 * RATE)
    snapshot = StatusReport(player).snapshot()
    assert snapshot["scene"] == "game"
    assert snapshot["state"] == "combat"
    assert snapshot["inputs"] == {"danger": 0.4}
    assert snapshot["layers"]["calm"] == 0.0  # faded out in combat
    assert snapshot["layers"]["tense"] == pytest.approx(1.0)
    # Measured: tense sounds (a 0.2 sine); calm, faded out at the bar line,
    # is falling at the RMS window's 14.5 dB/s.
    tense_peak, tense_rms = snapshot["layer_meters"]["tense"]
    assert tense_rms == pytest.approx(20 * np.log10(0.2 / np.sqrt(2)), abs=0.2)
    assert tense_peak == pytest.approx(20 * np.log10(0.2), abs=0.2)
    assert snapshot["layer_meters"]["calm"][1] < tense_rms - 20.0
    assert snapshot["volume_db"] == pytest.approx(-6.0)
    assert snapshot["master_peak_dbfs"] > snapshot["master_rms_dbfs"] > -60
    assert snapshot["underflows"] == 0 and snapshot["cpu_percent"] == 0.0
    assert snapshot["overruns"] == 0


def test_parameters_bound_by_a_model_that_loads_later_appear_once_it_has(tmp_path):
    """Live play loads a scene's model on the model thread after the stream
    starts: the status lists its bound parameters from then on."""
    player = ScenePlayer(
        Engine(sample_rate=RATE, seed=3),
        on_error=lambda m: None,
        hold_loudness=False,
        defer_model_load=True,
    )
    player.load("forest")
    report = StatusReport(player)
    before = report.snapshot()["params"]
    assert "dread.level" not in before and "model" not in report.snapshot()
    assert "dread.soft.cutoff_hz" in before  # the scene's own mapping of danger
    player.model.tick()
    player.engine.render(RATE // 10, block_size=256)
    snapshot = report.snapshot()
    assert "dread.level" in snapshot["params"]
    assert snapshot["params"]["dread.level"]["target"] is not None
    assert set(snapshot["model"]) == {"tension", "density", "brightness"}


def test_layer_meters_read_steady_through_a_reload_of_the_scene(player):
    """A saved edit reloads the scene (a 1 s crossfade to a new program whose
    meters start from nothing): the status carries each layer on."""
    engine = player.engine
    engine.render(2 * RATE)
    report = StatusReport(player)
    before = report.snapshot()["layer_meters"]["calm"]
    assert before[1] > -30.0  # calm sounds in the first state
    player.reload()
    for _ in range(30):  # 1.5 s in 50 ms steps: the fade and after
        engine.render(RATE // 20)
        peak, rms = report.snapshot()["layer_meters"]["calm"]
        assert rms == pytest.approx(before[1], abs=0.1)
        assert peak == pytest.approx(before[0], abs=0.1)
