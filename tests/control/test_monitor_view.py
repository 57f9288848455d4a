"""The monitor view draws a status dict: names, values, range bars, parameters
with target and smoothed value, layer levels, master meter, CPU, underflows;
redraws in place on a terminal and writes periodic lines elsewhere; and it
draws the status a real StatusReport builds."""

from __future__ import annotations

import io
import math
import re
from pathlib import Path

from engine.control.monitor_view import (
    MonitorView,
    bar,
    device_state,
    render_status,
    summary_line,
)

STATUS = {
    "scene": "forest",
    "state": "night",
    "inputs": {"danger": 0.25, "intensity": 0.7},
    "input_ranges": {"danger": [0.0, 1.0], "intensity": [0.0, 2.0]},
    "params": {
        "wind.air.amplitude": {"target": 0.3, "value": 0.2125},
        "dread.soft.cutoff_hz": {"target": 160.0, "value": 160.0},
    },
    "model": {"tension": 0.62},
    "layers": {"wind": 1.0, "dread": 0.5},
    "master_peak_dbfs": -12.0,
    "master_rms_dbfs": -20.5,
    "volume_db": -3.0,
    "cpu_percent": 4.25,
    "cpu_max_percent": 31.0,
    "callbacks": 9000,
    "underflows": 2,
    "overruns": 1,
    "uptime_s": 3723.4,
    "heart": {"bpm": 61.5, "rmssd_ms": 42.0, "connected": True, "quality": 0.9},
    "last_error": "",
}


def line_with(lines: list[str], text: str) -> str:
    found = [line for line in lines if text in line]
    assert found, f"no line with {text!r} in:\n" + "\n".join(lines)
    return found[0]


def test_bar_fills_its_fraction_and_marks_unknowns():
    assert bar(0.0, 10) == "[..........]"
    assert bar(0.25, 8) == "[##......]"
    assert bar(1.5, 4) == "[####]"
    assert bar(float("nan"), 3) == "[???]"
    assert bar(None, 2) == "[??]"


def test_the_view_names_everything_with_its_value():
    lines = render_status(STATUS, width=100)
    assert "forest" in lines[0] and "state night" in lines[0]
    assert "up 1:02:03" in lines[0] and "device running" in lines[0]
    danger = line_with(lines, "danger")
    assert "0.250" in danger and "0.000..1.000" in danger
    assert re.search(r"\[#+\.+\]", danger)
    # 0.7 of 0..2 fills 35 % of the intensity bar.
    intensity_bar = re.search(r"\[(#*)(\.*)\]", line_with(lines, "intensity"))
    filled, empty = (len(g) for g in intensity_bar.groups())
    assert filled == round(0.35 * (filled + empty))
    assert "0.620" in line_with(lines, "tension")
    moving = line_with(lines, "wind.air.amplitude")
    assert re.search(r"0\.212 +-> +0\.300", moving)
    settled = line_with(lines, "dread.soft.cutoff_hz")
    assert re.search(r"160\.0 += +160\.0", settled)
    assert "-6.0 dB" in line_with(lines, "dread  ")  # level 0.5
    master = line_with(lines, "master")
    assert "peak  -12.0 dBFS" in master and "rms  -20.5" in master
    assert "volume -3.0 dB" in master
    cpu = line_with(lines, "cpu")
    assert (
        "4.2 %" in cpu
        and "max 31.0 %" in cpu
        and "underflows 2 of 9000 callbacks (1 the engine's)" in cpu
    )
    assert "61.5 bpm" in line_with(lines, "heart")
    assert all(len(line) <= 100 for line in lines)


def test_optional_groups_are_left_out_and_errors_shown():
    status = dict(STATUS, last_error="scene.yaml:3: bad edit")
    del status["model"], status["heart"]
    lines = render_status(status, width=80)
    assert not any("model outputs" in line for line in lines)
    assert not any("heart" in line for line in lines)
    assert lines[-1] == "last error: scene.yaml:3: bad edit"
    assert all(len(line) <= 80 for line in lines)


def test_measured_layer_meters_are_shown_when_the_status_has_them():
    status = dict(STATUS, layer_meters={"wind": [-18.0, -24.5]})
    wind = line_with(render_status(status, width=120), "wind  ")
    assert "-18.0" in wind and "-24.5" in wind


def test_device_state_comes_from_the_status_or_the_callbacks():
    assert device_state({"callbacks": 0}) == "offline"
    assert device_state({"callbacks": 5}) == "running"
    assert device_state({"callbacks": 5}, stalled=True) == "stalled"
    assert device_state({"callbacks": 5, "device": "lost, retrying"}) == (
        "lost, retrying"
    )


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def test_without_a_terminal_it_writes_one_line_per_period():
    out = io.StringIO()
    clock = FakeClock()
    view = MonitorView(out, line_period_s=1.0, clock=clock)
    assert view.tty is False
    for _ in range(8):  # 8 updates in 0.875 s: one line
        view.update(STATUS)
        clock.now_s += 0.125
    view.update(dict(STATUS, inputs={"danger": 0.5, "intensity": 0.7}))
    view.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert "\x1b" not in out.getvalue()
    assert "scene=forest" in lines[0] and "danger=0.250" in lines[0]
    assert "wind.air.amplitude=0.212->0.300" in lines[0]
    assert "danger=0.500" in lines[1]


def test_the_line_says_when_callbacks_stop_coming():
    out = io.StringIO()
    clock = FakeClock()
    view = MonitorView(out, line_period_s=0.0, clock=clock)
    view.update(STATUS)
    clock.now_s += 2.0
    view.update(STATUS)  # the same callback count 2 s later
    first, second = out.getvalue().splitlines()
    assert "device=running" in first and "device=stalled" in second


def test_on_a_terminal_it_redraws_in_place():
    out = io.StringIO()
    view = MonitorView(out, tty=True, width=90)
    view.update(STATUS)
    first = out.getvalue()
    n_lines = len(render_status(STATUS, width=89))
    assert first.startswith("\x1b[?25l")  # cursor hidden
    assert first.count("\n") == n_lines
    view.update(dict(STATUS, state="dawn"))
    second = out.getvalue()[len(first) :]
    assert second.startswith(f"\x1b[{n_lines}F")  # back to the first line
    assert "state dawn" in second and "\x1b[K" in second
    view.close()
    assert out.getvalue().endswith("\x1b[?25h")


def test_it_draws_what_a_status_report_builds():
    from engine.control.status import StatusReport
    from engine.rt.engine import Engine
    from engine.scenes.player import ScenePlayer

    player = ScenePlayer(Engine(seed=1), hold_loudness=False, on_error=print)
    player.load(Path(__file__).parent / "data" / "follow.yaml")
    player.set_input("mood", 0.5)
    player.engine.render(4800)
    status = StatusReport(player).snapshot()
    assert status["input_ranges"] == {"mood": [0.0, 1.0]}
    param = status["params"]["tone.osc.amplitude"]
    assert param["target"] == 0.25 and 0.05 < param["value"] < 0.25
    lines = render_status(status, width=100)
    assert "0.500" in line_with(lines, "mood")
    assert "0.250" in line_with(lines, "tone.osc.amplitude")
    assert "device offline" in lines[0]
    assert "tone.osc.amplitude=" in summary_line(status)
    # The layer's meter, measured 100 ms in (the tone still gliding up from
    # 0.05 towards 0.25, the RMS rising in its 300 ms window): not the floor.
    peak_db, rms_db = status["layer_meters"]["tone"]
    assert -60.0 < rms_db < peak_db < 20 * math.log10(0.25)
    for width in (80, 100, 140):
        tone = line_with(render_status(status, width=width), "tone ")
        assert tone.rstrip().endswith(f"{peak_db:6.1f} {rms_db:6.1f}"), width
    assert f"rms.tone={rms_db:.1f}" in summary_line(status)
