"""Scenes: the YAML scene language, its validation and loading (control thread).

- ``yaml_source``: a scene file's YAML, read safely, with every value's position;
- ``schema``: field specs that validate values and generate the editors' JSON
  Schema from one description;
- ``format``: the scene format (layers of library nodes, master, reserved
  inputs and model sections), checked and built into a graph;
- ``errors``: ``SceneError``, the one error scene files raise.
"""

from engine.scenes.errors import SceneError

__all__ = ["SceneError"]
