"""Scene YAML is read safely, and every refusal names file, line, column and key."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.naming import did_you_mean
from engine.scenes.errors import SceneError, format_key_path
from engine.scenes.yaml_source import MAX_BYTES, MAX_DEPTH, load_yaml

GOOD = """\
name: rain
tempo_bpm: 72
layers:
  - texture: rain
    gain_db: -12.5
    enabled: true
  - texture: drone
    notes: [A2, E3]
"""


def test_plain_data_and_positions() -> None:
    source = load_yaml(GOOD, "scenes/rain.yaml")
    assert source.data == {
        "name": "rain",
        "tempo_bpm": 72,
        "layers": [
            {"texture": "rain", "gain_db": -12.5, "enabled": True},
            {"texture": "drone", "notes": ["A2", "E3"]},
        ],
    }
    assert source.position(("layers", 0, "gain_db")) == (5, 5)
    assert source.position(("layers", 1, "notes", 1)) == (8, 17)
    # A path below a scalar falls back to its nearest known parent.
    assert source.position(("layers", 1, "texture", "x")) == (7, 5)
    error = source.error(("layers", 0, "gain_db"), "expected at most 24 dB")
    assert str(error) == (
        "scenes/rain.yaml:5:5: layers[0].gain_db: expected at most 24 dB"
    )


BROKEN = [
    ("name: a\nname: b\n", 2, "duplicate key 'name' (first on line 1)"),
    ("a:\n  b: 1\n  c: 2\n  b: 3\n", 4, "duplicate key 'b' (first on line 2)"),
    ("base: &b {x: 1}\nother: *b\n", 1, "anchors (&b) are not allowed"),
    ("x: *nowhere\n", 1, "aliases (*nowhere) are not allowed"),
    ("a: 1\n<<: {b: 2}\n", 2, "keys must be names"),
    ("gain_db: .nan\n", 1, ".nan is not a finite number"),
    ("gain_db: -.inf\n", 1, "-.inf is not a finite number"),
    ("obj: !!python/object:os.system {}\n", 1, "tags"),
    ("x: !custom 3\n", 1, "tags (!custom)"),
    ("a: [1, 2\nb: 3\n", 2, "YAML syntax"),
    ("a: 1\n---\nb: 2\n", 2, "one YAML document"),
    ("1: one\n", 1, "keys must be names, not '1'"),
    ("? [a, b]\n: 1\n", 1, "keys must be names"),
    ("a:\n\tb: 1\n", 2, "YAML syntax"),
    ("", 1, "the file is empty"),
]


@pytest.mark.parametrize(("text", "line", "message"), BROKEN)
def test_broken_yaml_is_refused_with_its_line(
    text: str, line: int, message: str
) -> None:
    with pytest.raises(SceneError) as caught:
        load_yaml(text, "scenes/x.yaml")
    error = caught.value
    assert message in error.message, str(error)
    assert error.file == "scenes/x.yaml"
    assert error.line == line, str(error)
    assert str(error).startswith(f"scenes/x.yaml:{line}")


def test_the_key_path_of_a_nested_refusal() -> None:
    text = "layers:\n  - texture: rain\n    gain_db: .inf\n"
    with pytest.raises(SceneError) as caught:
        load_yaml(text, "s.yaml")
    assert caught.value.path == ("layers", 0, "gain_db")
    assert str(caught.value).startswith("s.yaml:3:14: layers[0].gain_db: ")


def test_alias_bombs_and_deep_nesting_are_refused_before_building() -> None:
    bomb = "a: &a [x, x]\nb: &b [*a, *a]\nc: &c [*b, *b]\n"
    with pytest.raises(SceneError, match="anchors"):
        load_yaml(bomb)
    deep = "a: " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "\n"
    with pytest.raises(SceneError, match=f"deeper than {MAX_DEPTH}"):
        load_yaml(deep)
    fine = "a: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n"
    assert load_yaml(fine).data["a"] is not None


def test_date_like_words_stay_text_and_binary_is_refused() -> None:
    assert load_yaml("started: 2026-11-23\n").data == {"started": "2026-11-23"}
    with pytest.raises(SceneError, match="tags"):
        load_yaml("blob: !!binary aGVsbG8=\n")


def test_oversized_files_are_refused() -> None:
    with pytest.raises(SceneError, match="larger than"):
        load_yaml("a: " + "x" * MAX_BYTES + "\n")


def test_key_paths_and_suggestions_read_naturally() -> None:
    assert format_key_path(("layers", 2, "gain_db")) == "layers[2].gain_db"
    assert format_key_path((0, "a")) == "[0].a"
    assert did_you_mean("rian", ["rain", "wind"]) == " (did you mean 'rain'?)"
    assert did_you_mean("zzz", ["rain"]) == ""


_YAML_CHARACTERS = " \n\t:-[]{}&*!|>'\"#%@`,?<=~.0123456789abcxyz"


@settings(max_examples=500, deadline=None)
@given(
    edits=st.lists(
        st.tuples(
            st.integers(0, len(GOOD)),
            st.integers(0, 3),
            st.text(alphabet=_YAML_CHARACTERS, max_size=4),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_mutated_scenes_give_data_or_a_scene_error_only(edits) -> None:
    text = GOOD
    for at, cut, insert in edits:
        text = text[:at] + insert + text[at + cut :]
    try:
        source = load_yaml(text, "fuzz.yaml")
    except SceneError as error:
        assert str(error).startswith("fuzz.yaml")
    else:
        assert source.position(()) is not None
