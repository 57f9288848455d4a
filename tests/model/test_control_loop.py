"""The control loop: outputs mapped to parameter targets through the player,
ticks on exact frames offline (two renders are identical), clock sources,
faults that keep the last good targets (and the scene's own mappings) with
one message each, listeners, and the live thread following scene changes."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from scene_audio import RATE, player_for, render, scene_copy  # tests/model
from tiny_models import write_model

from engine.dsp.layout import P_CURRENT, P_TARGET
from engine.model.control_loop import ModelThread, TickRecord, map_output
from engine.model.training import MODELS
from engine.rt.engine import Engine
from engine.scenes.player import ScenePlayer


def target(player, node: str, param: str) -> float:
    program = player.engine.current
    return float(program.params[P_TARGET, program.param(node, param).column])


@pytest.mark.parametrize(
    ("binding", "y", "expected"),
    [
        ({"range": [200.0, 800.0], "curve": "linear"}, 0.5, 500.0),
        ({"range": [200.0, 800.0], "curve": "exp"}, 0.5, 400.0),
        ({"range": [800.0, 200.0], "curve": "linear"}, 0.25, 650.0),
        ({"range": [200.0, 800.0], "curve": "linear"}, 7.0, 800.0),
        ({}, 0.3, 0.3),  # no range: the value as it is
        ({}, -5.0, 0.0),  # ...clamped to the parameter
    ],
)
def test_outputs_map_to_parameter_values(binding, y, expected):
    binding = {"minimum": 0.0, "maximum": 1000.0, **binding}
    assert map_output(binding, 0.0, 1.0, y) == pytest.approx(expected)


def test_ticks_write_targets_through_the_player_on_exact_frames(tmp_path):
    player = player_for(scene_copy(tmp_path, "forest"), state="tension")
    records: list[TickRecord] = []
    player.model_listeners.append(records.append)
    player.set_input("danger", 1.0)
    render(player, 1.0)
    loop = player.model
    assert loop is not None and loop.period_frames == RATE // 20
    assert [r.frame for r in records] == [k * loop.period_frames for k in range(20)]
    assert loop.last_tick is records[-1]
    first = records[0]
    assert first.inputs == {"danger": 1.0, "intensity": 0.3, "mode": 1.0}
    assert set(first.outputs) == {"tension", "density", "brightness"}
    # tension -> dread.level: an offset in dB on the layer's gain_db (-5).
    offset = -10.0 + 14.0 * first.outputs["tension"]
    assert first.targets["dread.level"] == pytest.approx(-5.0 + offset)
    assert target(player, "dread.level", "gain_db") == pytest.approx(-5.0 + offset)
    cutoff = 300.0 * 5.0 ** first.outputs["brightness"]
    assert target(player, "wind.whistle", "cutoff_hz") == pytest.approx(cutoff)
    # Unchanged inputs: the same outputs, nothing written again.
    assert all(r.targets == {} for r in records[1:])
    status = player.status()["model"]
    assert status["ok"] and status["ticks"] == 20 and status["faults"] == 0
    assert status["outputs"] == records[-1].outputs


def test_offline_renders_with_a_model_are_reproducible(tmp_path):
    path = scene_copy(tmp_path, "forest", only=("dread", "wind"))

    def ramp(player):
        return lambda t: player.set_input("danger", min(t, 1.0))

    first, second = (player_for(path, "tension") for _ in range(2))
    a, b = render(first, 2.0, ramp(first)), render(second, 2.0, ramp(second))
    assert np.array_equal(a, b)
    assert first.model.ticks == 40


def test_clock_sources(tmp_path):
    player = player_for(scene_copy(tmp_path, "forest"), state="combat")
    loop = player.model
    assert loop.clock(loop.start_frame + 90 * RATE)["minutes_since_start"] == 1.5
    assert loop.clock(0)["mode"] == 2.0  # explore, tension, combat
    assert loop.clock(0)["time_of_day_h"] == 12.0  # held for offline renders
    player.model_clock.clear()
    hours = loop.clock(0)["time_of_day_h"]
    now = time.localtime()
    assert abs(hours - (now.tm_hour + now.tm_min / 60)) < 0.1


def test_nan_outputs_keep_the_last_good_targets_with_one_message_each(tmp_path):
    # sqrt(-x), column for column: 0 while an input is 0, NaN once it moves
    # (mode is 1 in the tension state: brightness is NaN from the start).
    bad = write_model(
        tmp_path / "nan.onnx",
        "Sqrt",
        contract_=MODELS["forest"].contract,
        input_width=3,
        output_width=3,
        scale=-1.0,
    )
    messages: list[str] = []
    player = player_for(scene_copy(tmp_path, "forest", file=str(bad)), "tension")
    player.on_error = messages.append
    player.model.report = messages.append
    player.model.runner.report = messages.append
    player.set_input("intensity", 0.0)
    render(player, 0.2)
    good_db = target(player, "dread.level", "gain_db")
    assert good_db == pytest.approx(-5.0 - 10.0)  # tension 0
    player.set_input("danger", 0.7)
    player.set_input("intensity", 0.5)
    render(player, 1.0)
    assert target(player, "dread.level", "gain_db") == good_db
    # One message per output over 24 ticks: brightness, then tension, density.
    assert len(messages) == 3
    assert all("nan.onnx: output" in m and "non-finite" in m for m in messages)
    assert (
        "'tension' = nan is non-finite (expected 0..1); keeping its last good "
        "value 0" in messages[1]
    )
    # The scene's own mapping still follows danger.
    assert target(player, "dread.soft", "cutoff_hz") > 500.0


def test_a_missing_model_leaves_the_scene_on_its_own_mappings(tmp_path, capsys):
    path = scene_copy(tmp_path, "forest", file=str(tmp_path / "gone.onnx"))
    player = player_for(path, "tension")
    assert capsys.readouterr().out.count("gone.onnx: no such model file") == 1
    before = target(player, "dread.level", "gain_db")
    player.set_input("danger", 1.0)
    render(player, 0.5)
    assert target(player, "dread.level", "gain_db") == before
    assert target(player, "dread.soft", "cutoff_hz") == pytest.approx(900.0)
    assert player.model.last_tick.outputs == {}


def test_the_thread_ticks_at_the_rate_and_follows_a_scene_change(tmp_path):
    player = player_for(scene_copy(tmp_path, "forest"))
    thread = ModelThread(player).start()
    try:
        deadline = time.monotonic() + 10.0
        while player.model.ticks < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert player.model.ticks >= 5
        first = player.model
        player.engine.render(4800)  # no audio stream here: finish the fade-in
        player.load(scene_copy(tmp_path, "sleep"), fade_s=0.0)
        assert player.model is not first
        deadline = time.monotonic() + 10.0
        while player.model.ticks < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "heart_rate_bpm" in player.model.last_tick.inputs
    finally:
        thread.stop()
    assert not any(t.name == "soundscape-model" for t in threading.enumerate())


def test_a_scene_without_a_model_has_no_loop(tmp_path):
    player = player_for(Path(__file__).parents[2] / "scenes" / "rain.yaml")
    assert player.model is None
    render(player, 0.1)  # renders as before


def test_a_saved_edit_keeps_the_model_clock_running(tmp_path):
    path = scene_copy(tmp_path, "sleep")
    player = player_for(path)
    render(player, 0.5)
    first = player.model
    path.write_text(path.read_text() + "\n# edited\n")
    assert player.reload()
    assert player.model is not first
    assert player.model.start_frame == first.start_frame == 0
    render(player, 1.5)  # the reload's crossfade, then ticks as before
    assert player.model.last_tick.inputs["minutes_since_start"] > 0.0
    # A tick of the replaced loop writes nothing (its bindings are stale).
    assert first.tick().targets == {}


def test_the_render_command_ticks_the_model_reproducibly(tmp_path):
    import soundfile as sf

    from engine.cli import main

    outputs = []
    for run, hour in (("a", "22"), ("b", "22"), ("c", "9")):
        out = tmp_path / f"{run}.wav"
        args = ["render", "focus", "--seconds", "3", "-o", str(out), "-q"]
        assert (
            main(
                [*args, "--set", f"time_of_day_h={hour}", "--set", "heart_rate_bpm=58"]
            )
            == 0
        )
        outputs.append(sf.read(out)[0])
    assert np.array_equal(outputs[0], outputs[1])
    # 58 bpm late in the day: brighter, more drops than in the morning.
    assert not np.array_equal(outputs[0], outputs[2])


def deferred_player(path: Path, state: str | None = None) -> ScenePlayer:
    """player_for's player, but leaving the model to its loop's first tick
    (as `play` and the daemon do)."""
    player = ScenePlayer(
        Engine(sample_rate=RATE, seed=3),
        hold_loudness=False,
        on_error=print,
        defer_model_load=True,
    )
    player.model_clock = {"time_of_day_h": 12.0}
    player.load(path, fade_s=0.0, state=state)
    return player


def current(player, node: str, param: str) -> float:
    program = player.engine.current
    return float(program.params[P_CURRENT, program.param(node, param).column])


def test_a_deferred_model_plays_the_scene_as_written_until_it_loads_then_glides(
    tmp_path,
):
    player = deferred_player(scene_copy(tmp_path, "forest"), state="tension")
    loop = player.model
    assert not loop.loaded and loop.runner is None and loop.bindings == {}
    assert player.status()["model"]["loaded"] is False
    written = target(player, "dread.level", "gain_db")  # the scene's -5 dB
    player.set_input("danger", 1.0)
    player.engine.render(RATE // 2, block_size=256)  # playing, no model yet
    assert target(player, "dread.level", "gain_db") == written
    assert current(player, "dread.level", "gain_db") == pytest.approx(written)
    record = loop.tick()  # the model thread's first tick: load, then run
    assert loop.loaded and loop.runner.ok and "tension" in loop.bindings
    assert player.status()["model"]["loaded"] is True
    wanted = record.targets["dread.level"]
    assert abs(wanted - written) > 2.0  # the model moves it audibly
    player.engine.render(256, block_size=256)  # the write lands on this block
    assert target(player, "dread.level", "gain_db") == pytest.approx(wanted)
    # The binding's smoothing (800 ms to -60 dB, a one-pole) carries it there:
    # a few percent of the way in the first block, not a jump.
    first_block = (current(player, "dread.level", "gain_db") - written) / (
        wanted - written
    )
    assert 0.0 < first_block < 0.1
    player.engine.render(RATE // 20 - 256, block_size=256)
    at_50_ms = (current(player, "dread.level", "gain_db") - written) / (
        wanted - written
    )
    assert first_block < at_50_ms < 0.6
    player.engine.render(3 * RATE, block_size=256)
    assert current(player, "dread.level", "gain_db") == pytest.approx(wanted, abs=0.01)


def test_an_offline_render_is_the_same_whether_the_model_loads_at_once_or_deferred(
    tmp_path,
):
    path = scene_copy(tmp_path, "forest", only=("dread", "wind"))

    def ramp(player):
        return lambda t: player.set_input("danger", min(t, 1.0))

    eager, deferred = player_for(path, "tension"), deferred_player(path, "tension")
    assert eager.model.loaded and not deferred.model.loaded
    a = render(eager, 1.5, ramp(eager))
    b = render(deferred, 1.5, ramp(deferred))  # its first tick, frame 0, loads
    assert np.array_equal(a, b)
    assert deferred.model.ticks == eager.model.ticks == 30


def test_loading_a_scene_for_live_play_leaves_onnxruntime_unimported(run_python):
    """In a fresh process: a deferred scene load imports no onnxruntime (half
    a second the first audio no longer waits for); the first tick does."""
    code = (
        "import sys\n"
        "from engine.rt.engine import Engine\n"
        "from engine.scenes.player import ScenePlayer\n"
        "player = ScenePlayer(Engine(), defer_model_load=True)\n"
        "player.load('focus')\n"
        "before = 'onnxruntime' in sys.modules\n"
        "player.model.tick()\n"
        "print(before, 'onnxruntime' in sys.modules, player.model.runner.ok)\n"
    )
    assert run_python(code).split() == ["False", "True", "True"]


def test_loading_happens_once_whichever_thread_asks_first(tmp_path):
    player = deferred_player(scene_copy(tmp_path, "sleep"))
    loop = player.model
    runners = []
    threads = [
        threading.Thread(target=lambda: (loop.load(), runners.append(loop.runner)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30.0)
    assert len(runners) == 4 and all(r is runners[0] for r in runners)
    assert runners[0].ok
