"""A live terminal view of a playing engine, drawn from a status dict (the dict
:class:`engine.control.status.StatusReport` builds and the OSC status bundle
carries), so it looks the same in-process (``soundscape play --monitor``) and
remotely (``soundscape monitor``).

    view = MonitorView(sys.stdout)
    view.update(report.snapshot())      # ten times a second
    view.close()

    print("\\n".join(render_status(status, width=80)))   # one frame, as text

On a terminal the view redraws in place with plain ANSI escapes (cursor up,
clear line; no curses); anywhere else (a pipe, a log file, a test) it prints
one summary line per ``line_period_s`` instead, so logs stay readable.

What it shows: scene and state, device state, uptime; each input with its
value and a bar over its range; the model's outputs (when a model runs); each
watched parameter's target and smoothed value; each layer's level (its state
fade, as a bar and in dB, and measured meters when the status has them under
``layer_meters``); the master's peak and RMS (dBFS) with a meter bar; volume;
CPU; underflows; heart rate; the last error.

Threads: one control thread per view (it writes to its stream).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import IO, Any

__all__ = [
    "METER_FLOOR_DB",
    "MonitorView",
    "bar",
    "device_state",
    "render_status",
    "summary_line",
]

# Meter bars span METER_FLOOR_DB..0 dBFS.
METER_FLOOR_DB = -60.0
# No new callbacks for this long while the status comes in: the device stalled.
STALL_S = 1.0
_CLEAR_LINE = "\x1b[K"
_CLEAR_BELOW = "\x1b[J"
_HIDE_CURSOR = "\x1b[?25l"
_SHOW_CURSOR = "\x1b[?25h"


def bar(fraction: float | None, width: int = 20) -> str:
    """``[#####.....]``: ``fraction`` (clamped to 0..1) of ``width`` filled;
    ``[?????]`` for a value that is unknown or not finite.

    >>> bar(0.5, 10)
    '[#####.....]'
    """
    if fraction is None or not math.isfinite(fraction):
        return "[" + "?" * width + "]"
    filled = round(min(max(fraction, 0.0), 1.0) * width)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def _number(value: Any) -> str:
    if value is None:
        return "-"
    value = float(value)
    if not math.isfinite(value):
        return "-"
    if abs(value) >= 1000:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


def _db(linear: float) -> str:
    if not linear > 0.0:
        return "-inf dB"
    return f"{20.0 * math.log10(linear):+.1f} dB"


def _meter(dbfs: float | None, width: int) -> str:
    if dbfs is None:
        return bar(None, width)
    return bar((dbfs - METER_FLOOR_DB) / -METER_FLOOR_DB, width)


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0.0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def device_state(status: dict[str, Any], stalled: bool = False) -> str:
    """The device state to show: the status's own ``device`` (the daemon reports
    outages), else ``offline`` without a stream, ``stalled`` when callbacks
    stopped coming, ``running``."""
    if status.get("device"):
        return str(status["device"])
    if not status.get("callbacks"):
        return "offline"
    return "stalled" if stalled else "running"


def render_status(
    status: dict[str, Any], *, width: int = 80, device: str | None = None
) -> list[str]:
    """The view of one status dict, as lines of at most ``width`` characters."""
    width = max(width, 40)
    name_w = max(12, min(32, width // 3))
    bar_w = max(10, min(30, width - name_w - 28))
    device = device or device_state(status)
    title = (
        f"soundscape  {status.get('scene') or '(no scene)'}"
        f"  state {status.get('state') or '-'}"
        f"  device {device}  up {_clock(status.get('uptime_s', 0.0))}"
    )
    lines = [title]
    if status.get("stale_s"):
        lines.append(f"  no status for {status['stale_s']:.1f} s: waiting...")

    inputs = status.get("inputs", {})
    ranges = status.get("input_ranges", {})
    if inputs:
        lines.append("inputs")
        for name, value in inputs.items():
            low, high = ranges.get(name, (None, None))
            if low is None or high is None or not high > low:
                meter, span = "", ""
            else:
                meter = bar((float(value) - low) / (high - low), bar_w)
                span = f" {_number(low)}..{_number(high)}"
            lines.append(f"  {name:<{name_w}} {_number(value):>9} {meter}{span}")
    model = status.get("model")
    if model:
        lines.append("model outputs")
        for name, value in model.items():
            lines.append(f"  {name:<{name_w}} {_number(value):>9}")
    params = status.get("params", {})
    if params:
        lines.append(f"parameters{'':<{name_w - 8}} {'smoothed':>9}   {'target':>9}")
        for name, param in params.items():
            value, target = param.get("value"), param.get("target")
            moving = (
                value is not None
                and target is not None
                and not math.isclose(value, target, rel_tol=1e-4, abs_tol=1e-9)
            )
            arrow = "->" if moving else "= "
            lines.append(
                f"  {name:<{name_w}} {_number(value):>9} {arrow} {_number(target):>9}"
            )
    layers = status.get("layers", {})
    meters = status.get("layer_meters", {})
    if layers:
        lines.append("layers (level)" + ("  peak/rms dBFS" if meters else ""))
        # With meters, the fade's bar gives way so the measured dB fit.
        level_w = max(6, min(bar_w, width - name_w - 43)) if meters else bar_w
        for name, level in layers.items():
            line = f"  {name:<{name_w}} {bar(level, level_w)} {_db(level):>9}"
            if name in meters:
                peak, rms = meters[name]
                line += f"  {_meter(peak, 10)} {peak:6.1f} {rms:6.1f}"
            lines.append(line)
    if "master_peak_dbfs" in status:
        peak = status["master_peak_dbfs"]
        lines.append(
            f"master {_meter(peak, bar_w)} peak {peak:6.1f} dBFS"
            f"  rms {status.get('master_rms_dbfs', 0.0):6.1f} dBFS"
            f"  volume {status.get('volume_db', 0.0):+.1f} dB"
        )
    if "cpu_percent" in status:
        lines.append(
            f"cpu {status['cpu_percent']:5.1f} % (max {status['cpu_max_percent']:.1f} %)"
            f"  underflows {status.get('underflows', 0)}"
            f" of {status.get('callbacks', 0)} callbacks"
            f" ({status.get('overruns', 0)} the engine's)"
        )
    heart = status.get("heart")
    if heart:
        lines.append(
            f"heart {_number(heart.get('bpm'))} bpm"
            f"  rmssd {_number(heart.get('rmssd_ms'))} ms"
            f"  {'connected' if heart.get('connected') else 'not connected'}"
            f"  quality {_number(heart.get('quality'))}"
        )
    if status.get("last_error"):
        lines.append(f"last error: {status['last_error']}")
    return [line[:width] for line in lines]


def summary_line(status: dict[str, Any], device: str | None = None) -> str:
    """One line for logs: time, scene, state, inputs, parameters (smoothed and
    target), master peak, each layer's measured RMS, CPU, underflows, device."""
    parts = [
        f"t={status.get('uptime_s', 0.0):.1f}s",
        f"scene={status.get('scene') or '-'}",
        f"state={status.get('state') or '-'}",
    ]
    parts += [f"{k}={_number(v)}" for k, v in status.get("inputs", {}).items()]
    parts += [f"model.{k}={_number(v)}" for k, v in status.get("model", {}).items()]
    parts += [
        f"{k}={_number(p.get('value'))}->{_number(p.get('target'))}"
        for k, p in status.get("params", {}).items()
    ]
    if "master_peak_dbfs" in status:
        parts.append(f"peak={status['master_peak_dbfs']:.1f}dBFS")
    # Each layer's measured RMS: what it sounds like, in one short field.
    parts += [
        f"rms.{name}={meter[1]:.1f}"
        for name, meter in status.get("layer_meters", {}).items()
    ]
    if "cpu_percent" in status:
        parts.append(f"cpu={status['cpu_percent']:.1f}%")
        parts.append(f"underflows={status.get('underflows', 0)}")
    parts.append(f"device={device or device_state(status)}")
    if status.get("stale_s"):
        parts.append(f"stale={status['stale_s']:.1f}s")
    return " ".join(parts)


class MonitorView:
    """Draws status dicts to a stream: in place on a terminal, else a summary
    line at most every ``line_period_s``.

    Args:
        out: the stream (a terminal, or anything with ``write``).
        tty: force terminal mode on or off (default: ``out.isatty()``).
        width: columns (default: the terminal's, or 100).
        line_period_s: least time between lines when not a terminal.
        clock: monotonic seconds.
    """

    def __init__(
        self,
        out: IO[str],
        *,
        tty: bool | None = None,
        width: int | None = None,
        line_period_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.out = out
        if tty is None:
            isatty = getattr(out, "isatty", None)
            tty = bool(isatty()) if isatty is not None else False
        self.tty = tty
        self.width = width
        self.line_period_s = line_period_s
        self.clock = clock
        self._drawn = 0  # lines on screen from the last redraw
        self._last_line_s: float | None = None
        self._callbacks: tuple[int, float] | None = None  # (count, when it moved)

    def _columns(self) -> int:
        if self.width is not None:
            return self.width
        import shutil

        return shutil.get_terminal_size((100, 24)).columns

    def _device(self, status: dict[str, Any]) -> str:
        now_s = self.clock()
        callbacks = int(status.get("callbacks") or 0)
        if self._callbacks is None or callbacks != self._callbacks[0]:
            self._callbacks = (callbacks, now_s)
        stalled = now_s - self._callbacks[1] > STALL_S
        return device_state(status, stalled)

    def update(self, status: dict[str, Any]) -> None:
        """Show ``status`` (redraw, or maybe a line)."""
        device = self._device(status)
        if not self.tty:
            now_s = self.clock()
            if (
                self._last_line_s is not None
                and now_s - self._last_line_s < self.line_period_s
            ):
                return
            self._last_line_s = now_s
            self.out.write(summary_line(status, device) + "\n")
            self.out.flush()
            return
        lines = render_status(status, width=self._columns() - 1, device=device)
        text = []
        if self._drawn:
            text.append(f"\x1b[{self._drawn}F")  # to the first line drawn last
        else:
            text.append(_HIDE_CURSOR)
        text += [line + _CLEAR_LINE + "\n" for line in lines]
        text.append(_CLEAR_BELOW)  # the last frame may have had more lines
        self.out.write("".join(text))
        self.out.flush()
        self._drawn = len(lines)

    def message(self, text: str) -> None:
        """A line outside the view (it is drawn again below it)."""
        if self.tty and self._drawn:
            self.out.write(f"\x1b[{self._drawn}F{_CLEAR_BELOW}")
            self._drawn = 0
        self.out.write(text + "\n")
        self.out.flush()

    def close(self) -> None:
        """Leave the last frame on screen and give the cursor back."""
        if self.tty:
            self.out.write(_SHOW_CURSOR)
            self.out.flush()
