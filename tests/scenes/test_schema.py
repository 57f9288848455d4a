"""Field specs check values with messages that point at the line and say what was
expected, and the JSON Schema they generate agrees with them."""

from __future__ import annotations

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.scenes.errors import SceneError
from engine.scenes.schema import Flag, ListOf, MapOf, Number, Record, Text
from engine.scenes.yaml_source import load_yaml

LAYER = Record(
    "layer",
    {
        "texture": Text(choices=("rain", "wind", "drone")),
        "gain_db": Number(unit="dB", minimum=-96.0, maximum=24.0, default=0.0),
        "voices": Number(minimum=1, maximum=16, integer=True, default=1),
        "muted": Flag(default=False),
    },
    required=("texture",),
)
SCENE = Record(
    "scene",
    {
        "name": Text(),
        "layers": ListOf(LAYER, min_items=1, max_items=8),
        "inputs": MapOf(Number(), default={}),
    },
    required=("name", "layers"),
)


def check(text: str):
    source = load_yaml(text, "s.yaml")
    return SCENE.check(source, (), source.data)


def test_a_good_scene_is_normalised_with_defaults() -> None:
    scene = check("name: calm\nlayers:\n  - texture: rain\n    voices: 2\n")
    assert scene == {
        "name": "calm",
        "layers": [{"texture": "rain", "gain_db": 0.0, "voices": 2, "muted": False}],
        "inputs": {},
    }
    assert isinstance(scene["layers"][0]["voices"], int)


BROKEN = [
    (
        "name: a\nlayers:\n  - texture: rian\n",
        (
            "s.yaml:3:5: layers[0].texture: unknown 'rian' (did you mean 'rain'?); "
            "one of: drone, rain, wind"
        ),
    ),
    (
        "name: a\nlayers:\n  - texture: rain\n    gain_db: 30\n",
        "s.yaml:4:5: layers[0].gain_db: expected a number in -96..24 dB, got 30",
    ),
    (
        "name: a\nlayers:\n  - texture: rain\n    gain_db: loud\n",
        "s.yaml:4:5: layers[0].gain_db: expected a number in -96..24 dB, got 'loud'",
    ),
    (
        "name: a\nlayers:\n  - texture: rain\n    gain_db: true\n",
        "layers[0].gain_db: expected a number in -96..24 dB, got true (a boolean)",
    ),
    (
        "name: a\nlayers:\n  - texture: rain\n    voices: 2.5\n",
        "layers[0].voices: expected a whole number, got 2.5",
    ),
    (
        "name: a\nlayers:\n  - texture: rain\n    gain: -6\n",
        (
            "s.yaml:4:5: layers[0].gain: unknown key 'gain' in layer "
            "(did you mean 'gain_db'?); known: texture, gain_db, voices, muted"
        ),
    ),
    (
        "name: a\nlayers:\n  - gain_db: -6\n",
        "s.yaml:3:5: layers[0]: layer needs 'texture'",
    ),
    ("name: a\nlayers: []\n", "s.yaml:2:1: layers: expected 1..8 items, got 0"),
    ("name: a\nlayers: rain\n", "layers: expected a list, got 'rain'"),
    (
        "name: a\nlayers:\n  - rain\n",
        "layers[0]: expected a layer (a mapping), got 'rain'",
    ),
    ("- 1\n", "s.yaml:1:1: expected a scene (a mapping), got a list"),
    (
        "name: a\nlayers:\n  - texture: rain\ninputs: {hr: fast}\n",
        "inputs.hr: expected a number, got 'fast'",
    ),
    ("name: a\nlayers:\n  - texture: rain\n    muted: 1\n", "expected true or false"),
]


@pytest.mark.parametrize(("text", "message"), BROKEN)
def test_broken_values_are_refused_where_they_are(text: str, message: str) -> None:
    with pytest.raises(SceneError) as caught:
        check(text)
    assert message in str(caught.value)


def test_the_json_schema_is_valid_and_lists_the_fields() -> None:
    schema = SCENE.json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    layer = schema["properties"]["layers"]["items"]
    assert layer["required"] == ["texture"]
    assert layer["properties"]["gain_db"]["maximum"] == 24.0
    assert layer["properties"]["texture"]["enum"] == ["drone", "rain", "wind"]
    assert layer["additionalProperties"] is False


_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-200, 200),
    st.floats(-200, 200, allow_nan=False),
    st.sampled_from(["rain", "wind", "rian", "", "x"]),
)
_layers = st.dictionaries(
    st.sampled_from(["texture", "gain_db", "voices", "muted", "gain"]), _values
)


@settings(max_examples=400, deadline=None)
@given(
    name=_values,
    layers=st.one_of(_values, st.lists(st.one_of(_layers, _values), max_size=9)),
)
def test_the_validator_and_the_json_schema_agree(name, layers) -> None:
    import yaml

    document = {"name": name, "layers": layers}
    text = yaml.safe_dump(document)
    try:
        check(text)
        ours = True
    except SceneError:
        ours = False
    theirs = jsonschema.Draft202012Validator(SCENE.json_schema()).is_valid(
        yaml.safe_load(text)
    )
    assert ours == theirs, text
