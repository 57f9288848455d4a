"""Adaptation traces: per control tick, what came in, what the model made of it,
what the parameters were asked to do and where the audio thread has got to.

    recorder = TraceRecorder("run.jsonl", player, tick_hz=20.0, mode="offline")
    recorder.record_tick(frame)                         # reads the rest itself
    recorder.record_tick(frame, inputs, model_outputs, targets)   # model loop
    recorder.close()
    header, ticks = load_trace("run.jsonl")

The file is JSON lines (one object per line, UTF-8), chosen over CSV because
the groups are nested and the model's outputs are an optional group whose
names are only known once a model is loaded. Line 1 is the header::

    {"format": "soundscape-trace", "version": 1, "scene": "game",
     "mode": "offline", "sample_rate": 48000, "tick_hz": 20.0,
     "inputs": {"danger": {"minimum": 0.0, "maximum": 1.0}},
     "params": {"tense.tone.frequency_hz": {"node": "tense.tone",
                "param": "frequency_hz", "follows": "danger",
                "slew_per_s": 600.0}}}

(a parameter's glide is ``smoothing_s``, one-pole time to within -60 dB, or
``slew_per_s``, a straight line). Every later line is one tick::

    {"frame": 2400, "time_s": 0.05, "inputs": {"danger": 1.0}, "model": {},
     "targets": {"tense.tone.frequency_hz": 1200.0},
     "smoothed": {"tense.tone.frequency_hz": 630.0}}

``model`` stays empty until a model drives the scene; ``targets`` and
``smoothed`` are read from the engine's parameter rows (``param_watch``),
unless the caller passes the targets it wrote. A value that is not finite, or
a parameter the playing program lacks (after a scene change), is ``null``.

Offline, :class:`TickedRender` records each tick on the first block boundary
at or after its nominal frame (``round(k * sample_rate / tick_hz)``): the
render is never cut mid-block, so a traced render is sample-identical to an
untraced one, and the same render gives the same trace, byte for byte. Live, :class:`TraceTicker` ticks on a control thread and
records the engine's frame counter as it reads it.

Threads: any one control thread at a time per recorder (the offline render
loop, the live ticker, the model loop); never the audio thread.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from engine.control.offline_ticks import render_ticking
from engine.control.param_watch import ParamWatch

__all__ = [
    "DEFAULT_TICK_HZ",
    "TRACE_FORMAT",
    "TickedRender",
    "TraceError",
    "TraceRecorder",
    "TraceTicker",
    "load_trace",
    "parse_trace",
]

TRACE_FORMAT = "soundscape-trace"
TRACE_VERSION = 1
DEFAULT_TICK_HZ = 20.0
MAX_TICK_HZ = 1000.0


class TraceError(ValueError):
    """A trace file that cannot be read, with the file and line."""


def _clean(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return round(number, 9) if math.isfinite(number) else None


def _group(values: Mapping[str, Any] | None) -> dict[str, float | None]:
    return {str(k): _clean(v) for k, v in (values or {}).items()}


def check_tick_hz(tick_hz: float) -> float:
    """``tick_hz`` if it is a usable tick rate, else ValueError naming it."""
    if not (math.isfinite(tick_hz) and 0.0 < tick_hz <= MAX_TICK_HZ):
        raise ValueError(
            f"trace tick rate must be in (0, {MAX_TICK_HZ:g}] Hz, not {tick_hz}"
        )
    return float(tick_hz)


class TraceRecorder:
    """Writes a trace: the header at once, then one line per :meth:`record_tick`.

    Args:
        file: a path, or an open text file (left open by :meth:`close`).
        player: the :class:`ScenePlayer` whose inputs and engine are traced.
        tick_hz: the control rate the ticks come at (recorded in the header).
        mode: ``offline`` or ``live`` (recorded in the header).
        watch: the parameters to trace (default: those following an input).
    """

    def __init__(
        self,
        file: str | Path | IO[str],
        player: Any,
        *,
        tick_hz: float = DEFAULT_TICK_HZ,
        mode: str = "offline",
        watch: ParamWatch | None = None,
    ) -> None:
        self.tick_hz = check_tick_hz(tick_hz)
        self.player = player
        self.engine = player.engine
        loop = getattr(player, "model", None)
        if watch is None and loop is not None:
            # The header lists the model's bound parameters: a model left to
            # load on the model thread (live play) loads now, or is waited for.
            loop.load()
        self.watch = watch if watch is not None else ParamWatch.for_player(player)
        self._lock = threading.Lock()
        self.n_ticks = 0
        if isinstance(file, (str, Path)):
            self.path: Path | None = Path(file)
            try:
                self.file: IO[str] = open(file, "w", encoding="utf-8")  # noqa: SIM115
            except OSError as error:
                raise OSError(f"cannot write trace {file}: {error.strerror}") from None
            self._owned = True
        else:
            self.path = None
            self.file = file
            self._owned = False
        inputs = getattr(player, "inputs", None)
        specs = inputs.specs if inputs is not None else {}
        status = player.status() if hasattr(player, "status") else {}
        header = {
            "format": TRACE_FORMAT,
            "version": TRACE_VERSION,
            "scene": status.get("scene") or "",
            "mode": mode,
            "sample_rate": self.engine.sample_rate,
            "tick_hz": self.tick_hz,
            "inputs": {
                name: {"minimum": spec["minimum"], "maximum": spec["maximum"]}
                for name, spec in specs.items()
            },
            "params": self.watch.contracts(self.engine),
        }
        self._write(header)

    def _write(self, record: dict[str, Any]) -> None:
        self.file.write(json.dumps(record, separators=(",", ":")) + "\n")

    def record_tick(
        self,
        frame: int,
        inputs: Mapping[str, float] | None = None,
        model_outputs: Mapping[str, float] | None = None,
        targets: Mapping[str, float] | None = None,
    ) -> dict[str, Any]:
        """Record one tick at engine ``frame``; returns the record written.

        ``inputs`` default to the player's input values; ``model_outputs`` to
        the model's latest tick (none without a model); ``targets`` to the
        targets in the engine's parameter rows. The
        smoothed values are always read from the engine.
        """
        values = self.watch.read(self.engine)
        if model_outputs is None:
            model_outputs = self.player.model_outputs()
        if inputs is None:
            player_inputs = getattr(self.player, "inputs", None)
            inputs = dict(player_inputs.values) if player_inputs is not None else {}
        if targets is None:
            targets = {name: target for name, (target, _) in values.items()}
        record = {
            "frame": int(frame),
            "time_s": round(int(frame) / self.engine.sample_rate, 6),
            "inputs": _group(inputs),
            "model": _group(model_outputs),
            "targets": _group(targets),
            "smoothed": {name: _clean(value) for name, (_, value) in values.items()},
        }
        with self._lock:
            if self.file.closed:
                raise ValueError("trace is closed")
            self._write(record)
            self.n_ticks += 1
        return record

    def close(self) -> None:
        with self._lock:
            if self._owned and not self.file.closed:
                self.file.close()
            elif not self.file.closed:
                self.file.flush()

    def __enter__(self) -> TraceRecorder:  # noqa: PYI034 - Self needs Python 3.11
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def tick_frame(k: int, sample_rate: int, tick_hz: float) -> int:
    """The engine frame of tick ``k`` (tick 0 is frame 0)."""
    return round(k * sample_rate / tick_hz)


class TickedRender:
    """Wraps an offline ``render(n_frames)`` (which renders in blocks of
    ``block_size`` from the start of each call) and records every tick on the
    first block boundary at or after its frame, by the rule of
    :mod:`engine.control.offline_ticks` (for
    :func:`engine.scenes.script.run_script`).

    A tick on the frame of a script action is
    recorded after the action (the script applies it before rendering on), so
    it shows the new target beside the smoothed value that has not moved yet.
    """

    def __init__(
        self,
        render: Callable[[int], None],
        recorder: TraceRecorder,
        block_size: int = 128,
    ):
        self.render = render
        self.recorder = recorder
        self.block_size = int(block_size)
        engine = recorder.engine
        self.sample_rate = int(engine.sample_rate)
        self.frame = engine.frame
        self.next_tick = 0
        while self._due() < self.frame:
            self.next_tick += 1

    def _due(self) -> int:
        return tick_frame(self.next_tick, self.sample_rate, self.recorder.tick_hz)

    def _record_if_due(self, frame: int) -> None:
        if frame >= self._due():
            self.recorder.record_tick(frame)
            # Ticks closer together than a block collapse into one.
            while self._due() <= frame:
                self.next_tick += 1

    def __call__(self, n_frames: int) -> None:
        self.frame = render_ticking(
            self.render,
            self.frame,
            n_frames,
            self._due,
            self._record_if_due,
            self.block_size,
        )

    def finish(self) -> None:
        """Record the tick due on the render's last frame, if one is."""
        self._record_if_due(self.frame)


class TraceTicker:
    """Records a tick ``tick_hz`` times a second on its own thread (live
    playback without a model loop; the model loop records its own ticks)."""

    def __init__(self, recorder: TraceRecorder) -> None:
        self.recorder = recorder
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors = 0

    def start(self) -> TraceTicker:
        self._thread = threading.Thread(
            target=self._run, name="soundscape-trace", daemon=True
        )
        self._thread.start()
        return self

    def _run(self) -> None:
        period_s = 1.0 / self.recorder.tick_hz
        engine = self.recorder.engine
        while not self._stop.wait(period_s):
            try:
                self.recorder.record_tick(engine.frame)
            except (OSError, ValueError):  # disk full, closed: stop quietly
                self.errors += 1
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None


def load_trace(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read a trace file: ``(header, ticks)``. TraceError names the file and
    line of anything that is not a trace."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise TraceError(f"{path}: cannot read: {error}") from None
    return parse_trace(text, str(path))


def parse_trace(
    text: str, path: str = "<trace>"
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """:func:`load_trace` for a trace's text; ``path`` names it in errors."""
    header: dict[str, Any] | None = None
    ticks: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as error:
            raise TraceError(f"{path}:{number}: not JSON: {error}") from None
        if not isinstance(record, dict):
            raise TraceError(f"{path}:{number}: expected an object, got {line[:40]}")
        if header is None:
            if record.get("format") != TRACE_FORMAT:
                raise TraceError(
                    f"{path}:{number}: not a soundscape trace (the first line "
                    f'needs "format": "{TRACE_FORMAT}")'
                )
            header = record
            continue
        if not isinstance(record.get("frame"), int):
            raise TraceError(f"{path}:{number}: a tick needs an integer 'frame'")
        for group in ("inputs", "model", "targets", "smoothed"):
            if not isinstance(record.setdefault(group, {}), dict):
                raise TraceError(f"{path}:{number}: '{group}' must be an object")
        ticks.append(record)
    if header is None:
        raise TraceError(f"{path}: empty, not a soundscape trace")
    return header, ticks
