"""The last scene played survives restarts; a broken state file is no error."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.daemon.last_scene import last_scene_path, recall_scene, remember_scene


def test_a_remembered_scene_is_recalled(tmp_path: Path) -> None:
    state = tmp_path / "state" / "soundscape"
    assert recall_scene(state) is None
    path = remember_scene("rain", state)
    assert path == last_scene_path(state)
    assert path.read_text() == "rain\n"
    assert recall_scene(state) == "rain"
    remember_scene("scenes/my scene.yaml", state)
    assert recall_scene(state) == "scenes/my scene.yaml"
    # Written by rename: no temporary file is left beside it.
    assert sorted(p.name for p in state.iterdir()) == ["last_scene"]


@pytest.mark.parametrize("content", [b"", b"\n\n", b"a\nb\n", b"\xff\xfe", b"x" * 5000])
def test_an_unusable_state_file_means_no_last_scene(
    tmp_path: Path, content: bytes
) -> None:
    last_scene_path(tmp_path).write_bytes(content)
    assert recall_scene(tmp_path) is None


@pytest.mark.parametrize("name", ["", "  ", "two\nlines"])
def test_a_name_that_cannot_be_read_back_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="not a scene name"):
        remember_scene(name, tmp_path)
    assert recall_scene(tmp_path) is None
