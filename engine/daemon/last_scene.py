"""The last scene the daemon played, kept in a one-line state file.

``$XDG_STATE_HOME/soundscape/last_scene`` holds the scene's name or path, so a
daemon started without a scene picks up where the listener left off. Writes are
atomic (a temporary file renamed over the old one), so a crash mid-write leaves
the previous scene, never half a name. A missing, empty or unreadable file
means "no last scene", never an error: it is a convenience, not configuration.

    remember_scene("rain", state)      # after a scene starts playing
    recall_scene(state)                # "rain"

Control thread only.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

FILE_NAME = "last_scene"
# Longer than any scene name or path a person would type: anything bigger is
# not a file this module wrote.
MAX_CHARS = 4096


def last_scene_path(state_dir: Path) -> Path:
    """Where the last scene is recorded in ``state_dir``."""
    return Path(state_dir) / FILE_NAME


def recall_scene(state_dir: Path) -> str | None:
    """The last scene recorded in ``state_dir``, or ``None``."""
    try:
        text = last_scene_path(state_dir).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if len(text) > MAX_CHARS:
        return None
    name = text.strip()
    return name if name and "\n" not in name else None


def remember_scene(scene: str, state_dir: Path) -> Path:
    """Record ``scene`` as the last played; returns the file written.

    Raises ``ValueError`` for an empty or multi-line name, ``OSError`` when the
    state directory cannot be written.
    """
    name = scene.strip()
    if not name or "\n" in name or len(name) > MAX_CHARS:
        raise ValueError(f"last scene: not a scene name: {scene!r}")
    state_dir = Path(state_dir)
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = last_scene_path(state_dir)
    fd, temporary = tempfile.mkstemp(prefix=f".{FILE_NAME}.", dir=state_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(name + "\n")
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target
