"""Draw an adaptation trace (``engine/control/trace.py``) as a PNG: the inputs,
the model's outputs (when a model drove the scene) and each watched parameter,
its target dashed and its smoothed value solid, over time, a subplot each.

    header, ticks = load_trace("run.jsonl")
    plot_trace(header, ticks, "run.png")              # 1200 px wide

matplotlib is an optional extra (``pip install 'soundscape-engine[plot]'``),
imported only here and only when a plot is asked for; without it,
:class:`PlotUnavailable` says how to get it.

Threads: any control thread (it uses matplotlib's object API and the Agg
canvas, no pyplot state).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

__all__ = ["MAX_PARAM_PLOTS", "PlotUnavailable", "plot_trace"]

# More parameters than this get one shared subplot, each scaled to 0..1.
MAX_PARAM_PLOTS = 6
DEFAULT_WIDTH_PX = 1200
SUBPLOT_HEIGHT_PX = 220
_DPI = 100


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


def _series(ticks: list[dict[str, Any]], group: str) -> dict[str, list[Any]]:
    names: dict[str, None] = {}
    for tick in ticks:
        names.update(dict.fromkeys(tick.get(group, {})))
    return {
        name: [
            float("nan") if tick[group].get(name) is None else tick[group][name]
            for tick in ticks
        ]
        for name in names
    }


def _scaled(values: list[float]) -> list[float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return values
    low, high = min(finite), max(finite)
    span = high - low or 1.0
    return [(v - low) / span for v in values]


def plot_trace(
    header: dict[str, Any],
    ticks: list[dict[str, Any]],
    path: str | Path,
    *,
    width_px: int = DEFAULT_WIDTH_PX,
    subplot_height_px: int = SUBPLOT_HEIGHT_PX,
) -> tuple[int, int]:
    """Draw the trace to ``path`` (PNG); returns the image's (width, height)
    in pixels: ``width_px`` by ``subplot_height_px`` per subplot."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotUnavailable(
            "drawing a trace needs matplotlib: pip install 'soundscape-engine[plot]' "
            "(or pip install matplotlib)"
        ) from None
    if not ticks:
        raise ValueError("the trace has no ticks to draw")
    times = [tick["time_s"] for tick in ticks]
    inputs = _series(ticks, "inputs")
    model = _series(ticks, "model")
    targets = _series(ticks, "targets")
    smoothed = _series(ticks, "smoothed")
    params = list(dict.fromkeys([*smoothed, *targets]))

    # (title, [(label, values, style)], y label); "steps" styles hold values.
    panels: list[tuple[str, list[tuple[str, list[float], str]], str]] = []
    ranges = header.get("inputs", {})
    panels.append(
        (
            "inputs",
            [(name, values, "steps") for name, values in inputs.items()],
            "value",
        )
    )
    if model:
        panels.append(
            ("model outputs", [(n, v, "steps") for n, v in model.items()], "value")
        )
    if len(params) <= MAX_PARAM_PLOTS:
        for name in params:
            lines = []
            if name in targets:
                lines.append(("target", targets[name], "steps--"))
            if name in smoothed:
                lines.append(("smoothed", smoothed[name], "-"))
            panels.append((name, lines, name.rsplit(".", 1)[-1]))
    else:
        lines = [(name, _scaled(smoothed.get(name, [])), "-") for name in params]
        panels.append(("smoothed parameters (each scaled to 0..1)", lines, "scaled"))

    height_px = subplot_height_px * len(panels)
    figure = Figure(figsize=(width_px / _DPI, height_px / _DPI), dpi=_DPI)
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (title, lines, ylabel) in zip(axes, panels, strict=True):
        for label, values, style in lines:
            # Inputs, outputs and targets hold from tick to tick; smoothed
            # values glide, so they are drawn as lines.
            steps = style.startswith("steps")
            ax.plot(
                times,
                values,
                style.removeprefix("steps") or "-",
                label=label,
                linewidth=1.2,
                drawstyle="steps-post" if steps else "default",
            )
        ax.set_title(title, fontsize=9, loc="left")
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if title == "inputs":
            for name in inputs:
                spec = ranges.get(name)
                if spec:
                    ax.set_ylim(
                        min(ax.get_ylim()[0], spec["minimum"]),
                        max(ax.get_ylim()[1], spec["maximum"]),
                    )
        if lines:
            ax.legend(fontsize=7, loc="upper left")
    axes[-1].set_xlabel("time (s)", fontsize=8)
    figure.suptitle(
        f"{header.get('scene') or 'trace'}: {header.get('mode', '')} at "
        f"{header.get('tick_hz', '?')} Hz",
        fontsize=10,
    )
    figure.tight_layout()
    try:
        figure.savefig(path, format="png", dpi=_DPI)
    except OSError as error:
        raise OSError(f"cannot write {path}: {error.strerror or error}") from None
    return width_px, height_px
