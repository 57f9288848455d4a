"""Where scenes are found: a file path, or the name of a scene shipped in
``scenes/``.

Control thread only.
"""

from __future__ import annotations

from pathlib import Path

# The scenes shipped with the engine (beside the package in a checkout).
SCENES_DIR = Path(__file__).resolve().parent.parent.parent / "scenes"


def scene_files() -> dict[str, Path]:
    """The shipped scene files, by name."""
    return {p.stem: p for p in sorted(SCENES_DIR.glob("*.yaml"))}


def find_scene(reference: str | Path) -> Path | None:
    """The file a scene reference names: a path to a ``.yaml`` file (or any
    existing file), else a shipped scene's name; None if neither."""
    path = Path(reference)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    return scene_files().get(str(reference))
