"""Scenes: the YAML scene language, its validation and loading (control thread).

Built so far: reading a scene file's YAML safely, with every value's position
(``yaml_source``); field specs that validate values and generate the editors'
JSON Schema from one description (``schema``); and the one error type scene
files raise (``errors``).
"""

from engine.scenes.errors import SceneError

__all__ = ["SceneError"]
