"""The scene format: shipped scenes build and play; broken scenes are refused at
the line that is wrong, with what was expected; the JSON Schema agrees."""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.analysis import true_peak_dbtp
from engine.rt.engine import Engine, master_graph
from engine.scenes import format as scene_format
from engine.scenes.errors import SceneError
from engine.scenes.format import load_scene_file, scene_json_schema
from engine.scenes.player import ScenePlayer
from engine.scenes.yaml_source import load_yaml

SCENES = sorted((Path(__file__).resolve().parents[2] / "scenes").glob("*.yaml"))
RATE = 48000

MINIMAL = """\
name: t
description: a test tone
layers:
  tone:
    nodes:
      osc: {type: sine, frequency_hz: 440, amplitude: 0.1}
    output: osc
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scene.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", SCENES, ids=lambda p: p.stem)
def test_shipped_scenes_build_and_play(path: Path) -> None:
    scene, graph = load_scene_file(path)
    assert scene["name"] == path.stem and scene["description"]
    # Editors read YAML 1.2, as the engine does (`off` is a word, not false).
    data = load_yaml(path.read_text(), str(path)).data
    jsonschema.validate(data, scene_json_schema())
    engine = Engine(sample_rate=RATE, seed=1)
    engine.load(graph)
    audio = engine.render(3 * RATE)
    assert np.all(np.isfinite(audio))
    level_db = 20 * np.log10(np.sqrt(np.mean(audio[RATE:] ** 2)))
    assert -40.0 < level_db < -8.0  # before the player's loudness trim
    assert true_peak_dbtp(audio) <= -1.0 + 0.1


def test_layers_become_named_nodes_summed_to_the_output(tmp_path: Path) -> None:
    text = MINIMAL + (
        "  hum:\n"
        "    nodes:\n"
        "      osc: {type: sine, frequency_hz: [55, 82.5], amplitude: 0.1}\n"
        "      both: {type: mix, in: osc}\n"
        "    output: both\n"
        "    gain_db: -6\n"
        "    pan: -0.5\n"
    )
    _, graph = load_scene_file(write(tmp_path, text))
    names = [node.name for node in graph.nodes]
    assert names[:3] == ["tone.osc", "tone.level", "hum.osc"]
    assert {"hum.both", "hum.level", "hum.pan"} <= set(names)
    engine = Engine(sample_rate=RATE)
    engine.load(graph)
    audio = engine.render(RATE)[RATE // 2 :]
    # Half a second: bins are 2 Hz apart. Both layers sound, at their pitches.
    spectrum = np.abs(np.fft.rfft(audio[:, 0] + audio[:, 1]))
    floor = np.median(spectrum)
    for frequency_hz in (55.0, 82.5, 440.0):
        assert spectrum[round(frequency_hz / 2)] > 100 * floor, frequency_hz
    # The panned layer leans left: the left channel carries more of 55 Hz.
    left = np.abs(np.fft.rfft(audio[:, 0]))[round(55.0 / 2)]
    right = np.abs(np.fft.rfft(audio[:, 1]))[round(55.0 / 2)]
    assert left > 1.5 * right


GAME = Path(__file__).resolve().parent / "data" / "game.yaml"


def _play_game(monkeypatch: pytest.MonkeyPatch, meters: bool) -> np.ndarray:
    """The game scene with a state change and two triggers, rendered offline."""
    with monkeypatch.context() as patch:
        build = functools.partial(scene_format.build_graph, meters=meters)
        patch.setattr(scene_format, "build_graph", build)
        engine = Engine(sample_rate=RATE, seed=5)
        engine.master = engine.compile(master_graph(meter=meters))
        player = ScenePlayer(engine, on_error=lambda m: None)
        player.load(GAME)
    program = engine.current
    assert program is not None
    assert ("meter" in program.node_types) == meters
    assert ("meter" in engine.master.node_types) == meters
    first = engine.render(RATE // 2, block_size=128)
    player.fire("hit")
    player.set_input("danger", 0.7)
    player.set_state("combat", frame=engine.frame + 1000)
    player.fire("hit", frame=engine.frame + 777)
    rest = engine.render(3 * RATE, block_size=128)
    return np.concatenate([first, rest])


def test_meters_do_not_change_a_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    with_meters = _play_game(monkeypatch, meters=True)
    without = _play_game(monkeypatch, meters=False)
    assert np.max(np.abs(without)) > 0.01  # it played
    np.testing.assert_array_equal(with_meters, without)


# The corpus: one broken scene per file, each saying where it is wrong and what
# the error must say in its first two lines:
#   # expect-line: 12
#   # expect: no state 'combt' (did you mean 'combat'?)
BROKEN = sorted((Path(__file__).resolve().parent / "broken").glob("*.yaml"))


def test_the_broken_corpus_is_large() -> None:
    assert len(BROKEN) >= 50


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.stem)
def test_broken_scenes_are_refused_at_their_line(path: Path) -> None:
    header = dict(line[2:].split(": ", 1) for line in path.read_text().splitlines()[:2])
    with pytest.raises(SceneError) as caught:
        load_scene_file(path)
    error = caught.value
    assert header["expect"] in str(error), str(error)
    assert error.file == str(path)
    assert error.line == int(header["expect-line"]), str(error)


def test_an_unreadable_file_is_a_scene_error(tmp_path: Path) -> None:
    with pytest.raises(SceneError, match="cannot read"):
        load_scene_file(tmp_path / "missing.yaml")
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(SceneError, match="cannot read"):
        load_scene_file(path)


def test_the_json_schema_is_valid_and_refuses_what_the_format_refuses() -> None:
    schema = scene_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid(yaml.safe_load(MINIMAL))
    for old, new in [
        ("type: sine", "type: sin"),
        ("440", "30000"),
        ("amplitude: 0.1", "amp: 0.1"),
        ("name: t\n", ""),
    ]:
        assert not validator.is_valid(yaml.safe_load(MINIMAL.replace(old, new))), new


# Bases for the mutations: a plain scene, and one with states, triggers,
# inputs, ducking and the shared reverb. Read as the engine reads YAML (1.2).
_BASES = {
    name: load_yaml(path.read_text(), str(path)).data
    for name in ("focus", "forest")
    for path in [Path(__file__).resolve().parents[2] / "scenes" / f"{name}.yaml"]
}
# Keys a mutation may add anywhere, so new sections are tried where they do
# not belong too.
_KEYS = ["duck", "reverb", "send_db", "by", "layer", "hold_inputs", "depth_db",
         "states", "triggers", "from", "type", "texture"]  # fmt: skip
_ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.lists(st.integers(-5, 5), max_size=3),
    st.dictionaries(
        st.sampled_from(["type", "from", "to", "in"]), st.integers(), max_size=2
    ),
    # Something shaped like a master.duck list.
    st.lists(
        st.dictionaries(
            st.sampled_from(["layer", "by", "depth_db", "release_ms"]),
            st.one_of(
                st.sampled_from(["wind", "boom", "dread", "bed", "nope"]),
                st.lists(st.sampled_from(["boom", "snap", "dread", "x"]), max_size=3),
                st.floats(-100, 100),
            ),
            max_size=4,
        ),
        max_size=2,
    ),
)


def _paths(data, prefix=()):
    yield prefix
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _paths(value, (*prefix, i))


@settings(max_examples=80, deadline=None)  # 2000 checked once: clean
@given(data=st.data())
def test_mutated_scenes_load_or_give_a_scene_error(tmp_path_factory, data) -> None:
    scene = copy.deepcopy(_BASES[data.draw(st.sampled_from(sorted(_BASES)))])
    paths = [p for p in _paths(scene) if p]
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        parent = scene
        for part in path[:-1]:
            try:
                parent = parent[part]
            except (KeyError, IndexError, TypeError):
                parent = None  # an earlier mutation replaced this branch
                break
        key = path[-1]
        if isinstance(parent, dict) and data.draw(st.booleans()):
            key = data.draw(st.sampled_from(_KEYS))  # a key added, maybe misplaced
        if isinstance(parent, dict) or (
            isinstance(parent, list) and isinstance(key, int) and key < len(parent)
        ):
            parent[key] = data.draw(_ODD_VALUES)
    path = tmp_path_factory.mktemp("fuzz") / "scene.yaml"
    path.write_text(yaml.safe_dump(scene))
    try:
        load_scene_file(path)
    except SceneError as error:
        assert str(error).startswith(str(path))


SENDS = """\
name: sends
description: two textures sharing one reverb, and a hit whose tail we measure
layers:
  rain: {texture: rain, send_db: -15, gain_db: -30}
  wind: {texture: wind, send_db: -12, gain_db: -30}
  hit:
    nodes:
      body: {type: sine, frequency_hz: 1000, amplitude: 0.5}
      env: {type: ar, attack_ms: 2, release_ms: 40}
      out: {type: ring_mod, a: body, b: env}
    output: out
    send_db: SEND
triggers:
  hit: {layer: hit}
master:
  reverb: {decay_s: 2.0, size: 0.7}
"""


def test_layers_with_a_send_share_one_reverb_instead_of_their_rooms(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, SENDS.replace("SEND", "-6"))
    _, graph = load_scene_file(path)
    reverbs = [n.name for n in graph.nodes if n.spec.name == "reverb"]
    assert reverbs == ["reverb"]  # not rain.room, wind.room
    own = SENDS.replace("SEND", "-6").replace(", send_db: -15", "")
    _, graph = load_scene_file(write(tmp_path, own.replace(", send_db: -12", "")))
    reverbs = sorted(n.name for n in graph.nodes if n.spec.name == "reverb")
    assert reverbs == ["rain.room", "reverb", "wind.room"]


def test_the_shared_reverb_tail_follows_the_send_level(tmp_path: Path) -> None:
    from engine.scenes.player import ScenePlayer

    tails = []
    for send_db in (-6, -18):
        path = write(tmp_path, SENDS.replace("SEND", str(send_db)))
        engine = Engine(sample_rate=RATE, seed=1)
        player = ScenePlayer(engine, hold_loudness=False)
        player.load(path, fade_s=0.0)
        engine.render(RATE // 2)
        quiet = engine.render(RATE // 2)
        player.fire("hit")
        x = engine.render(RATE)
        # The hit's dry sound is gone after ~100 ms; from 0.3 s on, what is
        # over the beds is its tail.
        tail = np.mean(x[RATE * 3 // 10 : RATE * 8 // 10] ** 2) - np.mean(quiet**2)
        tails.append(10 * np.log10(tail))
    assert tails[0] - tails[1] == pytest.approx(12.0, abs=1.0)
