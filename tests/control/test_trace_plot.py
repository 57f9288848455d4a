"""Trace plots: a valid PNG of the asked size with a subplot per group, from a
render (`render --plot`) and from a trace file (`trace plot`); a clear message
when matplotlib is missing."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest

from engine.cli import main
from engine.control.trace import load_trace
from engine.control.trace_plot import SUBPLOT_HEIGHT_PX, PlotUnavailable, plot_trace

FOLLOW = Path(__file__).parent / "data" / "follow.yaml"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk (after checking the file is
    a PNG whose first chunk is IHDR)."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, "not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    assert data[-12:-4] == b"\x00\x00\x00\x00IEND", "no IEND chunk at the end"
    return struct.unpack(">II", data[16:24])


def trace_file(tmp_path: Path) -> Path:
    script = tmp_path / "script.yaml"
    script.write_text("- {at_s: 0.5, input: {mood: 1}}\n")
    trace = tmp_path / "run.jsonl"
    args = ["render", str(FOLLOW), "--seconds", "1.5", "-q", "--script", str(script)]
    assert main([*args, "-o", str(tmp_path / "a.wav"), "--trace", str(trace)]) == 0
    return trace


def test_render_plot_writes_a_png_of_the_expected_size(tmp_path, capsys):
    png = tmp_path / "run.png"
    args = ["render", str(FOLLOW), "--seconds", "1", "-q", "--plot", str(png)]
    assert main([*args, "-o", str(tmp_path / "a.wav")]) == 0
    # Two subplots: the inputs, and the one parameter that follows them.
    assert png_size(png) == (1200, 2 * SUBPLOT_HEIGHT_PX)
    assert f"wrote {png} (1200x{2 * SUBPLOT_HEIGHT_PX} px)" in capsys.readouterr().out


def test_trace_plot_draws_a_recorded_trace_with_its_model_group(tmp_path):
    trace = trace_file(tmp_path)
    header, ticks = load_trace(trace)
    for k, tick in enumerate(ticks):  # as the model loop will fill it in
        tick["model"] = {"calm": k / len(ticks), "tension": 1 - k / len(ticks)}
    png = tmp_path / "model.png"
    assert plot_trace(header, ticks, png, width_px=800) == (800, 3 * 220)
    assert png_size(png) == (800, 3 * 220)


def test_trace_plot_command(tmp_path, capsys):
    trace = trace_file(tmp_path)
    png = tmp_path / "cli.png"
    assert main(["trace", "plot", str(trace), "-o", str(png)]) == 0
    assert png_size(png) == (1200, 2 * SUBPLOT_HEIGHT_PX)
    assert main(["trace", "plot", str(trace), "-o", str(tmp_path / "x.jpg")]) == 1
    assert "PNG" in capsys.readouterr().err
    assert main(["trace", "plot", str(tmp_path / "none.jsonl"), "-o", str(png)]) == 1
    assert "none.jsonl: cannot read" in capsys.readouterr().err


def test_without_matplotlib_the_message_says_how_to_get_it(tmp_path, monkeypatch):
    header, ticks = load_trace(trace_file(tmp_path))
    # None in sys.modules makes the import fail, as when it is not installed.
    for name in [m for m in sys.modules if m.startswith("matplotlib")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(
        PlotUnavailable, match=r"pip install 'soundscape-engine\[plot\]'"
    ):
        plot_trace(header, ticks, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_an_empty_trace_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no ticks"):
        plot_trace({"format": "soundscape-trace"}, [], tmp_path / "x.png")
