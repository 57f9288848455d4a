"""Recorded heart-rate files: strict CSV parsing, and replay in time.

The format: a header, then one row per reading::

    time_s,bpm,rr_ms,connected
    0.00,64,,
    0.93,,930,
    1.85,65,921,1
    9.00,,,0

``time_s`` (seconds, never decreasing) is required, with ``bpm`` and/or
``rr_ms`` (one RR interval in milliseconds per row); ``connected`` (0/1) is
optional. Blank cells mean "nothing said". Any mistake is a ``ReplayError``
reading ``file:line:column: column 'rr_ms': what was wrong`` (the column is
the character position of the cell, as compilers print it).

    samples = read_heart_csv("night.csv")          # list of HeartSample
    for sample in replay_realtime(samples, speed=60):
        tracker.update(sample)                     # a minute per second

Threads: parsing runs on any control thread; ``replay_realtime`` sleeps on
the calling control thread. Never on the audio thread.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from engine.naming import did_you_mean
from engine.sensors.samples import HeartSample

COLUMNS = ("time_s", "bpm", "rr_ms", "connected")


class ReplayError(ValueError):
    """A recording that cannot be read, naming file, line, column and cell."""

    def __init__(
        self, message: str, file: str, line: int, column: int, name: str = ""
    ) -> None:
        self.file, self.line, self.column, self.name = file, line, column, name
        where = f"{file}:{line}:{column}"
        super().__init__(
            f"{where}: column {name!r}: {message}" if name else f"{where}: {message}"
        )


def _cells(text: str) -> list[tuple[int, str]]:
    """(1-based character column, stripped text) of each comma-separated cell."""
    out, column = [], 1
    for cell in text.split(","):
        out.append((column + len(cell) - len(cell.lstrip()), cell.strip()))
        column += len(cell) + 1
    return out


def parse_heart_csv(text: str, file: str = "<csv>") -> list[HeartSample]:
    """The samples of a recording (see the module docstring)."""
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise ReplayError(
            "empty file: expected a header like time_s,bpm,rr_ms", file, 1, 1
        )
    header = _cells(lines[first])
    names: list[str] = []
    for column, name in header:
        if '"' in name or "'" in name:
            raise ReplayError("quotes are not supported", file, first + 1, column)
        if name not in COLUMNS:
            raise ReplayError(
                f"unknown column {name!r}{did_you_mean(name, COLUMNS)}; "
                f"columns: {', '.join(COLUMNS)}",
                file,
                first + 1,
                column,
            )
        if name in names:
            raise ReplayError(f"column {name!r} twice", file, first + 1, column)
        names.append(name)
    if "time_s" not in names or not {"bpm", "rr_ms"} & set(names):
        raise ReplayError(
            "the header needs time_s and at least one of bpm, rr_ms", file, first + 1, 1
        )
    samples = []
    last_time = -math.inf
    for index in range(first + 1, len(lines)):
        line_no = index + 1
        if not lines[index].strip():
            continue
        cells = _cells(lines[index])
        if len(cells) != len(names):
            raise ReplayError(
                f"{len(cells)} cells, but the header has {len(names)}",
                file,
                line_no,
                # The first extra cell, or the end of a short line.
                cells[len(names)][0]
                if len(cells) > len(names)
                else len(lines[index]) + 1,
            )
        row = {}
        for name, (column, cell) in zip(names, cells, strict=True):
            if not cell:
                if name == "time_s":
                    raise ReplayError("time is required", file, line_no, column, name)
                continue
            row[name] = _value(name, cell, file, line_no, column)
        time_s = row["time_s"]
        if time_s < last_time:
            raise ReplayError(
                f"time {time_s:g} s comes after {last_time:g} s: rows must be in "
                "time order",
                file,
                line_no,
                cells[names.index("time_s")][0],
                "time_s",
            )
        last_time = time_s
        connected = row.get("connected")
        samples.append(
            HeartSample(
                time_s,
                bpm=row.get("bpm"),
                rr_s=(row["rr_ms"] / 1000.0,) if "rr_ms" in row else (),
                connected=None if connected is None else connected == 1.0,
            )
        )
    return samples


def _value(name: str, cell: str, file: str, line: int, column: int) -> float:
    try:
        number = float(cell)
    except ValueError:
        number = math.nan
    if name == "connected":
        if cell not in ("0", "1"):
            raise ReplayError(
                f"expected 0 or 1, got {cell!r}", file, line, column, name
            )
        return number
    unit = {"time_s": "seconds", "bpm": "beats per minute", "rr_ms": "milliseconds"}
    if not math.isfinite(number):
        raise ReplayError(
            f"expected a number of {unit[name]}, got {cell!r}", file, line, column, name
        )
    if number < 0 or (name != "time_s" and number == 0):
        raise ReplayError(
            f"expected a positive number of {unit[name]}, got {cell!r}",
            file,
            line,
            column,
            name,
        )
    return number


def read_heart_csv(path: str | Path) -> list[HeartSample]:
    """Parse the recording at ``path``; errors name the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ReplayError(f"cannot read: {error}", str(path), 1, 1) from None
    return parse_heart_csv(text, str(path))


def replay_realtime(
    samples: Iterable[HeartSample],
    speed: float = 1.0,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[HeartSample]:
    """Yield each sample when its time comes, ``speed`` times faster than
    recorded (the first sample at once). Samples keep their recorded times;
    a consumer that wants its own clock restamps them."""
    if not (math.isfinite(speed) and speed > 0):
        raise ValueError(f"speed must be a positive number, not {speed}")
    started = clock()
    first_s: float | None = None
    for sample in samples:
        if first_s is None:
            first_s = sample.time_s
        wait_s = started + (sample.time_s - first_s) / speed - clock()
        if wait_s > 0:
            sleep(wait_s)
        yield sample
