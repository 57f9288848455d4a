"""Scene inputs drive parameters through their mappings, and each mapped
parameter glides with its input's smoothing time, measured in the audio."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from engine.rt.engine import Engine
from engine.scenes.control import SceneInputs
from engine.scenes.errors import SceneError
from engine.scenes.format import load_scene_file, map_input

RATE = 48000

SCENE = """\
name: t
description: a tone whose level and pitch follow inputs
inputs:
  level: {minimum: 0, maximum: 1, default: 0.25, smoothing_ms: SMOOTH}
  danger: {minimum: 0, maximum: 10, default: 0, smoothing_ms: 50}
layers:
  tone:
    nodes:
      osc:
        type: sine
        amplitude: {from: level, to: [0.0, 0.4]}
        frequency_hz: {from: danger, to: [200, 800], curve: exp}
    output: osc
"""


def load(tmp_path: Path, smoothing_ms: float = 400.0, text: str = SCENE, **values):
    path = tmp_path / "t.yaml"
    path.write_text(text.replace("SMOOTH", str(smoothing_ms)))
    return load_scene_file(path, values or None)


def test_mapping_curves() -> None:
    spec = {"minimum": 0.0, "maximum": 10.0}
    linear = {"to": [1.0, 3.0], "curve": "linear"}
    exp = {"to": [100.0, 1600.0], "curve": "exp"}
    points = {"points": [[0, 0.0], [2, 1.0], [10, 0.5]], "curve": "linear"}
    assert map_input(linear, spec, 5.0) == pytest.approx(2.0)
    assert map_input(exp, spec, 5.0) == pytest.approx(400.0)  # the geometric middle
    assert map_input(exp, spec, 2.5) == pytest.approx(200.0)
    assert map_input(points, spec, 1.0) == pytest.approx(0.5)
    assert map_input(points, spec, 6.0) == pytest.approx(0.75)
    assert map_input(linear, spec, -5.0) == 1.0 and map_input(linear, spec, 99) == 3.0


def _peak_envelope(audio: np.ndarray, hop: int) -> np.ndarray:
    frames = audio[: len(audio) // hop * hop].reshape(-1, hop)
    return np.max(np.abs(frames), axis=1)


@pytest.mark.parametrize("smoothing_ms", [60.0, 400.0])
def test_a_mapped_parameter_glides_with_its_inputs_smoothing(
    tmp_path: Path, smoothing_ms: float
) -> None:
    scene, graph = load(tmp_path, smoothing_ms)
    engine = Engine(sample_rate=RATE)
    engine.load(graph)
    engine.render(RATE // 2)  # past the fade-in, at level 0.25: amplitude 0.1
    inputs = SceneInputs(scene, engine)
    assert inputs.set("level", 1.0) == 1.0  # amplitude target 0.4
    hop = RATE // 200  # 5 ms: a whole period of 200 Hz
    envelope = _peak_envelope(engine.render(2 * RATE)[:, 0], hop)
    settled = envelope[-1]  # 0.4, less what the master's DC blocker takes
    assert settled == pytest.approx(0.4, rel=0.01)
    distance = np.abs(envelope - settled) / abs(envelope[0] - settled)
    # The smoothing time is the time to come within -60 dB of the new value.
    arrived_s = int(np.argmax(distance < 1e-3)) * hop / RATE
    assert distance[-1] < 1e-3 and distance[0] > 0.9
    assert arrived_s == pytest.approx(
        smoothing_ms / 1000, abs=0.01 + 0.05 * smoothing_ms / 1000
    )


def test_exp_mapping_sets_the_pitch(tmp_path: Path) -> None:
    scene, graph = load(tmp_path, danger=5.0)  # start there (--set danger=5)
    engine = Engine(sample_rate=RATE)
    engine.load(graph)
    audio = engine.render(RATE)[RATE // 2 :, 0]
    peak_hz = np.argmax(np.abs(np.fft.rfft(audio))) * RATE / len(audio)
    assert peak_hz == pytest.approx(400.0, abs=2.0)
    SceneInputs(scene, engine).set("danger", 10.0)
    audio = engine.render(RATE)[RATE // 2 :, 0]
    peak_hz = np.argmax(np.abs(np.fft.rfft(audio))) * RATE / len(audio)
    assert peak_hz == pytest.approx(800.0, abs=2.0)


def test_bad_values_change_nothing(tmp_path: Path) -> None:
    scene, graph = load(tmp_path)
    engine = Engine(sample_rate=RATE)
    program = engine.load(graph)
    inputs = SceneInputs(scene, engine)
    column = program.param("tone.osc", "amplitude").column
    before = program.params[0, column]
    for bad, message in [
        (("levle", 1.0), "no input 'levle' (did you mean 'level'?)"),
        (("level", math.nan), "not a finite number"),
        (("level", "loud"), "expected a number"),
    ]:
        with pytest.raises(ValueError) as caught:
            inputs.set(*bad)
        assert message in str(caught.value)
    assert program.params[0, column] == before and inputs.values["level"] == 0.25
    assert inputs.set("level", 7.0) == 1.0  # clamped to the range


BROKEN = [
    (
        "{from: level, to: [0.0, 0.4]}",
        "{from: lvl, to: [0.0, 0.4]}",
        "no input 'lvl' (did you mean 'level'?)",
    ),
    (
        "{from: level, to: [0.0, 0.4]}",
        "{from: level}",
        "either 'to: [low, high]' or 'points'",
    ),
    (
        "{from: level, to: [0.0, 0.4]}",
        "{from: level, to: [0, 20]}",
        "expected a number in 0..16, got 20",
    ),
    (
        "{from: level, to: [0.0, 0.4]}",
        "{from: level, points: [[0, 0.1], [0, 0.2]]}",
        "points need rising input values",
    ),
    (
        "{from: level, to: [0.0, 0.4]}",
        "{from: level, points: [[0, 0.1], [3, 0.2]]}",
        "3 is outside input 'level' (0..1)",
    ),
    (
        "{from: danger, to: [200, 800], curve: exp}",
        "{from: danger, to: [0, 800], curve: exp}",
        "an exp curve needs every value above 0",
    ),
    (
        "{from: danger, to: [200, 800], curve: exp}",
        "{from: danger, to: [200, 800], curve: log}",
        "unknown 'log'",
    ),
]


@pytest.mark.parametrize(("old", "new", "message"), BROKEN)
def test_broken_mappings_are_refused(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    with pytest.raises(SceneError, match=None) as caught:
        load(tmp_path, text=SCENE.replace(old, new))
    assert message in str(caught.value)
    assert caught.value.line in (10, 11, 12, 13)


def test_starting_values_are_checked(tmp_path: Path) -> None:
    with pytest.raises(SceneError, match="no input 'dnger'"):
        load(tmp_path, dnger=1.0)
    with pytest.raises(SceneError, match="input 'danger' is 0..10, not 11"):
        load(tmp_path, danger=11.0)


def test_input_values_live_in_one_float64_array(tmp_path: Path) -> None:
    # The OSC fast path writes the array without the GIL; status, states, the
    # model loop and reloads read the mapping.
    scene, graph = load(tmp_path)
    engine = Engine(sample_rate=RATE)
    engine.load(graph)
    inputs = SceneInputs(scene, engine)
    values = inputs.values
    assert dict(values) == {"level": 0.25, "danger": 0.0}
    assert values.array.dtype == np.float64
    inputs.set("danger", 12.0)  # clamped to 10
    assert values.array[values.index["danger"]] == 10.0
    values.array[values.index["level"]] = 0.5
    assert values["level"] == 0.5 and dict(values)["level"] == 0.5
    with pytest.raises(KeyError, match="fixed by the scene"):
        values["nothing"] = 1.0
    assert len(values) == 2 and list(values) == ["level", "danger"]
    node, param, mapping = inputs.followers("level")[0]
    assert (node, param, mapping["to"]) == ("tone.osc", "amplitude", [0.0, 0.4])
