"""The one error a scene file can raise, and how it names where it went wrong.

Control thread only.
"""

from __future__ import annotations

from collections.abc import Sequence

KeyPath = tuple[str | int, ...]


def format_key_path(path: KeyPath) -> str:
    """``("layers", 2, "gain_db")`` → ``layers[2].gain_db``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


class SceneError(ValueError):
    """A scene that cannot be used, with the file, line, column and key path.

    ``str(error)`` reads ``scenes/rain.yaml:12:5: layers[1].gain_db: expected a
    number in -96..24 dB, got 'loud'``: the place first, as compilers print it.
    """

    def __init__(
        self,
        message: str,
        file: str = "<scene>",
        line: int | None = None,
        column: int | None = None,
        path: Sequence[str | int] = (),
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.column = column
        self.path: KeyPath = tuple(path)
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        key = format_key_path(self.path)
        return f"{where}: {key}: {self.message}" if key else f"{where}: {self.message}"
