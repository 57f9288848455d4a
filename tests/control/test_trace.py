"""Adaptation traces of offline renders: ticks on exact frames, the same bytes
every time, the smoothed value following its target per the smoothing
contract (a one-pole's time constant measured from the trace), the model's
column group filled in when a model loop passes it, and clear errors for
files that are not traces."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engine.cli import main
from engine.control.trace import (
    TickedRender,
    TraceError,
    TraceRecorder,
    load_trace,
    parse_trace,
)
from engine.rt.engine import Engine
from engine.scenes.player import ScenePlayer
from engine.scenes.script import load_script, run_script

RATE = 48000
DATA = Path(__file__).parent / "data"
FOLLOW = DATA / "follow.yaml"  # mood -> tone.osc.amplitude 0.05..0.45, 800 ms
PARAM = "tone.osc.amplitude"
STEP_S = 0.5


def follow_player() -> ScenePlayer:
    player = ScenePlayer(
        Engine(sample_rate=RATE, seed=1), hold_loudness=False, on_error=print
    )
    player.load(FOLLOW)
    return player


def traced_render(tmp_path: Path, script: str, seconds: float, tick_hz=20.0):
    """Render the follow scene with a script; returns the trace's text."""
    script_file = tmp_path / "script.yaml"
    script_file.write_text(script)
    player = follow_player()
    out = io.StringIO()
    recorder = TraceRecorder(out, player, tick_hz=tick_hz)
    ticked = TickedRender(lambda n: player.engine.render(n), recorder)
    run_script(player, load_script(script_file), round(seconds * RATE), ticked)
    ticked.finish()
    return out.getvalue()


def test_ticks_land_on_the_first_block_boundary_and_the_trace_is_the_same_every_time(
    tmp_path,
):
    script = f"- {{at_s: {STEP_S}, input: {{mood: 1}}}}\n"
    first = traced_render(tmp_path, script, 2.0)
    assert traced_render(tmp_path, script, 2.0) == first
    header, ticks = parse_trace(first)
    assert header["scene"] == "follow"
    assert header["tick_hz"] == 20.0

    # Ticks wait for the block to end; the script's step at 0.5 s cuts the
    # render there, so the tick due at 0.5 s lands on it exactly.
    def expected(k: int) -> int:
        grid = 0 if k < 10 else 24000  # where the render's blocks start
        # The last tick is due on the render's last frame.
        return min(96000, grid + -(-(2400 * k - grid) // 128) * 128)

    assert [t["frame"] for t in ticks] == [expected(k) for k in range(41)]
    assert ticks[10]["time_s"] == 0.5


def test_a_44k1_render_at_30_hz_ticks_on_the_block_after_rounded_frames(tmp_path):
    player = ScenePlayer(
        Engine(sample_rate=44100, seed=1), hold_loudness=False, on_error=print
    )
    player.load(FOLLOW)
    out = io.StringIO()
    recorder = TraceRecorder(out, player, tick_hz=30.0)
    ticked = TickedRender(lambda n: player.engine.render(n), recorder)
    ticked(44100)
    ticked.finish()
    _, ticks = parse_trace(out.getvalue())
    assert [t["frame"] for t in ticks] == [
        -(-round(k * 44100 / 30) // 128) * 128 for k in range(30)
    ] + [44100]  # the last tick is due on the last frame, mid-block


def test_the_smoothed_value_follows_a_step_with_the_contracted_time_constant(
    tmp_path,
):
    header, ticks = parse_trace(
        traced_render(tmp_path, f"- {{at_s: {STEP_S}, input: {{mood: 1}}}}\n", 2.0)
    )
    contract_s = header["params"][PARAM]["smoothing_s"]
    assert contract_s == pytest.approx(0.8)  # the scene's smoothing_ms
    before = [t for t in ticks if t["time_s"] < STEP_S]
    assert all(t["targets"][PARAM] == pytest.approx(0.05) for t in before)
    assert all(t["smoothed"][PARAM] == pytest.approx(0.05) for t in before)
    after = [t for t in ticks if t["time_s"] >= STEP_S]
    # The tick on the step's frame shows the new target, the old value.
    assert after[0]["targets"][PARAM] == pytest.approx(0.45)
    assert after[0]["smoothed"][PARAM] == pytest.approx(0.05)
    # One-pole: the distance left shrinks by the same ratio every tick.
    times = np.array([t["time_s"] for t in after[:12]])
    left = np.array([0.45 - t["smoothed"][PARAM] for t in after[:12]])
    slope, _ = np.polyfit(times - times[0], np.log(left), 1)
    measured_tau_s = -1.0 / slope
    # "time to within -60 dB" is ln(1000) time constants.
    assert measured_tau_s * math.log(1000.0) == pytest.approx(contract_s, rel=1e-3)
    # Within 0.8 s the distance left is 60 dB down, and it never overshoots.
    at_contract = next(t for t in after if t["time_s"] >= STEP_S + contract_s)
    assert 0.45 - at_contract["smoothed"][PARAM] <= 0.4 * 1e-3 * 1.01
    assert all(t["smoothed"][PARAM] <= 0.45 + 1e-12 for t in after)


def test_the_smoothed_value_lags_an_input_ramp_by_the_one_pole_lag(tmp_path):
    # mood climbs 0 -> 1 in 20 steps, one per tick, from 0.5 s.
    n_steps = 20
    script = "".join(
        f"- {{at_s: {STEP_S + 0.05 * k}, input: {{mood: {k / n_steps}}}}}\n"
        for k in range(1, n_steps + 1)
    )
    header, ticks = parse_trace(traced_render(tmp_path, script, 2.0))
    tau_s = header["params"][PARAM]["smoothing_s"] / math.log(1000.0)
    hold = math.exp(-0.05 / tau_s)
    # Each step cuts the render, so its tick lands on it (the tick due at
    # 0.5 s, before the first step, waits for the end of its block).
    ramp = [t for t in ticks if STEP_S + 0.025 < t["time_s"] <= STEP_S + 0.05 * n_steps]
    assert len(ramp) == n_steps
    targets = [t["targets"][PARAM] for t in ramp]
    smoothed = [t["smoothed"][PARAM] for t in ramp]
    assert np.all(np.diff(targets) > 0) and np.all(np.diff(smoothed) > 0)
    assert all(s < t for s, t in zip(smoothed, targets, strict=True))
    # A one-pole behind a staircase of steps c every tick settles to a lag of
    # c / (1 - hold) (at each tick, before it moves on the new target).
    step = 0.4 / n_steps
    expected_lag = step / (1.0 - hold)
    assert targets[-1] - smoothed[-1] == pytest.approx(expected_lag, rel=0.02)


def test_a_model_loop_fills_the_model_group_and_its_own_targets(tmp_path):
    player = follow_player()
    path = tmp_path / "model.jsonl"
    with TraceRecorder(path, player) as recorder:
        recorder.record_tick(0)
        recorder.record_tick(
            2400,
            inputs={"heart_rate_bpm": 61.5},
            model_outputs={"calm": 0.25, "bad": math.nan},
            targets={PARAM: 0.3},
        )
    _, ticks = load_trace(path)
    assert ticks[0]["model"] == {}
    assert ticks[1]["model"] == {"calm": 0.25, "bad": None}
    assert ticks[1]["inputs"] == {"heart_rate_bpm": 61.5}
    assert ticks[1]["targets"] == {PARAM: 0.3}
    assert ticks[1]["smoothed"][PARAM] == pytest.approx(0.05)  # read, not given


def test_render_cli_writes_the_trace_and_the_audio_is_the_same_without_it(
    tmp_path, capsys
):
    script = tmp_path / "script.yaml"
    script.write_text(f"- {{at_s: {STEP_S}, input: {{mood: 1}}}}\n")
    trace = tmp_path / "run.jsonl"
    args = ["render", str(FOLLOW), "--seconds", "1", "-q", "--script", str(script)]
    assert main([*args, "-o", str(tmp_path / "plain.wav")]) == 0
    args += ["-o", str(tmp_path / "out.wav"), "--trace", str(trace)]
    assert main([*args, "--trace-hz", "10"]) == 0
    assert "(11 ticks at 10 Hz)" in capsys.readouterr().out
    header, ticks = load_trace(trace)
    assert header["mode"] == "offline" and header["tick_hz"] == 10.0
    # On the first block boundary at or after each 4800th frame; the step at
    # 24000 restarts the render's blocks there.
    assert [t["frame"] for t in ticks] == [
        *(0, 4864, 9600, 14464, 19200),
        *(24000, 28864, 33600, 38464, 43200, 48000),
    ]
    assert ticks[5]["inputs"] == {"mood": 1.0}
    # The glide after the step is rendered the same, traced or not.
    traced, _ = sf.read(tmp_path / "out.wav", dtype="float32")
    plain, _ = sf.read(tmp_path / "plain.wav", dtype="float32")
    assert np.array_equal(traced, plain)


def test_render_cli_refuses_a_trace_of_a_demo_and_a_bad_rate(tmp_path, capsys):
    out = str(tmp_path / "out.wav")
    code = main(["render", "ocean", "--seconds", "1", "-o", out, "--trace", "t.jsonl"])
    assert code == 1
    assert "built-in demo" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["render", str(FOLLOW), "--seconds", "1", "-o", out, "--trace-hz", "0"])
    assert "trace tick rate must be in" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty, not a soundscape trace"),
        ('{"format": "csv"}\n', ":1: not a soundscape trace"),
        ('{"format": "soundscape-trace"}\n{"frame": 1.5}\n', ":2: a tick needs"),
        ('{"format": "soundscape-trace"}\n{"frame": 0, "inputs": 3}\n', ":2: 'inputs'"),
        ('{"format": "soundscape-trace"}\nnot json\n', ":2: not JSON"),
        ("[1, 2]\n", ":1: expected an object"),
    ],
)
def test_what_is_not_a_trace_is_refused_with_file_and_line(tmp_path, text, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(text)
    with pytest.raises(TraceError, match=message) as caught:
        load_trace(path)
    assert str(path) in str(caught.value)


def test_each_tick_is_one_json_object_per_line(tmp_path):
    text = traced_render(tmp_path, "[]\n", 0.2)
    lines = text.splitlines()
    assert len(lines) == 1 + 5  # header, ticks at 0, 50, 100, 150, 200 ms
    assert all(isinstance(json.loads(line), dict) for line in lines)


def test_play_traces_live_and_shows_the_monitor(jack_server, tmp_path):
    """`play --monitor --trace` in a subprocess under the JACK dummy server:
    the monitor's lines (stdout is a pipe) and a live trace whose frames move
    with the audio clock."""
    import os
    import subprocess
    import sys

    root = Path(__file__).parents[2]
    trace = tmp_path / "live.jsonl"
    play = subprocess.run(
        [
            sys.executable,
            "-c",
            "from engine.cli import main; raise SystemExit(main())",
            *("play", str(FOLLOW), "--seconds", "2.5", "--no-osc", "--monitor"),
            *("--set", "mood=0.5", "--trace", str(trace), "--trace-hz", "10"),
        ],
        capture_output=True,
        check=False,
        text=True,
        cwd=root,
        env=dict(os.environ, PYTHONPATH=str(root)),
        timeout=120,
    )
    assert play.returncode == 0, play.stderr
    lines = play.stdout.splitlines()
    views = [line for line in lines if line.startswith("t=")]
    assert len(views) >= 2, play.stdout
    assert "scene=follow" in views[-1] and "mood=0.500" in views[-1]
    assert "tone.osc.amplitude=0.250->0.250" in views[-1]
    assert "device=running" in views[-1]
    assert any(line.startswith(f"wrote {trace}") for line in lines)
    header, ticks = load_trace(trace)
    assert header["mode"] == "live" and header["tick_hz"] == 10.0
    assert len(ticks) >= 10  # 2.5 s at 10 Hz, on a loaded machine
    frames = [t["frame"] for t in ticks]
    assert np.all(np.diff(frames) > 0)
    # About a tenth of a second of audio between ticks (no timing asserted).
    assert (frames[-1] - frames[0]) / (len(frames) - 1) > RATE * 0.05
    assert ticks[-1]["inputs"] == {"mood": 0.5}
    assert ticks[-1]["targets"][PARAM] == pytest.approx(0.25)


def test_a_model_scene_traces_the_model_outputs_and_the_parameters_it_drives(
    tmp_path, capsys
):
    trace = tmp_path / "forest.jsonl"
    args = ["render", "forest", "--seconds", "1", "-q", "--set", "danger=0.9"]
    args += ["-o", str(tmp_path / "f.wav"), "--trace", str(trace)]
    assert main(args) == 0
    header, ticks = load_trace(trace)
    assert "dread.level" in header["params"]  # bound to the model's tension
    late = ticks[-1]
    assert set(late["model"]) == {"tension", "density", "brightness"}
    assert 0.0 <= late["model"]["tension"] <= 1.0
    # The level the model asked for is where the layer is heading.
    assert late["targets"]["dread.level"] is not None
    assert late["smoothed"]["dread.level"] is not None


def test_a_live_trace_of_a_model_not_loaded_yet_waits_for_it_and_lists_its_params():
    player = ScenePlayer(
        Engine(sample_rate=RATE, seed=1),
        hold_loudness=False,
        on_error=print,
        defer_model_load=True,
    )
    player.load("forest")
    assert not player.model.loaded
    recorder = TraceRecorder(io.StringIO(), player, mode="live")
    assert player.model.loaded
    header = json.loads(recorder.file.getvalue().splitlines()[0])
    assert header["params"]["dread.level"]["follows"] == "model.tension"
