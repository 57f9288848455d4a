"""`soundscape monitor` over real OSC on loopback: the status bundle decodes
back into the dict the view draws (input ranges, parameters, model outputs),
a subscriber follows input changes, `monitor` shows a real `play` subprocess
under the JACK dummy server, and says so clearly when nothing answers."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from conftest import free_port, playing  # tests/control, on the path
from pythonosc.udp_client import SimpleUDPClient

from engine.cli import main
from engine.control.monitor_client import (
    NoAnswer,
    StatusSubscriber,
    status_from_messages,
)
from engine.control.monitor_view import render_status
from engine.control.osc_surface import OscSettings, OscSurface
from engine.control.osc_wire import parse
from engine.rt.engine import Engine
from engine.scenes.player import ScenePlayer

HOST = "127.0.0.1"
ROOT = Path(__file__).parents[2]
FOLLOW = Path(__file__).parent / "data" / "follow.yaml"
GAME = ROOT / "tests" / "scenes" / "data" / "game.yaml"


def follow_player() -> ScenePlayer:
    player = ScenePlayer(Engine(seed=1), hold_loudness=False, on_error=print)
    player.load(FOLLOW)
    return player


def test_the_status_bundle_decodes_to_the_status_dict():
    player = follow_player()
    player.set_input("mood", 0.75)
    player.engine.render(2400)
    with OscSurface(player, OscSettings(port=0, hr_bridge="generic")) as surface:
        # As if a model had ticked (the follow scene has none).
        player.model_outputs = lambda: {"calm": 0.4}
        status = surface.report.snapshot()
        decoded = status_from_messages(parse(surface.api.status_packet()))
    assert decoded is not None
    assert decoded["scene"] == "follow" and decoded["inputs"] == {"mood": 0.75}
    assert decoded["input_ranges"] == {"mood": [0.0, 1.0]}
    param = decoded["params"]["tone.osc.amplitude"]
    expected = status["params"]["tone.osc.amplitude"]
    assert param["target"] == pytest.approx(expected["target"], rel=1e-6)
    assert param["value"] == pytest.approx(expected["value"], rel=1e-6)
    assert decoded["model"] == {"calm": pytest.approx(0.4)}
    assert decoded["layers"] == {"tone": pytest.approx(status["layers"]["tone"])}
    assert decoded["layer_meters"] == {
        "tone": pytest.approx(status["layer_meters"]["tone"])
    }
    assert decoded["layer_meters"]["tone"][1] > -60.0  # measured, not the floor
    # ... and the monitor draws them beside the layer's fade.
    peak_db, rms_db = decoded["layer_meters"]["tone"]
    tone = next(line for line in render_status(decoded, width=120) if "tone " in line)
    assert f"{peak_db:6.1f} {rms_db:6.1f}" in tone
    assert decoded["master_peak_dbfs"] == pytest.approx(status["master_peak_dbfs"])
    assert decoded["heart"]["connected"] is False
    assert decoded["osc"]["rejected"] == 0


def test_the_daemons_output_state_decodes_too():
    player = follow_player()
    output = {
        "state": "lost",
        "device": "system",
        "outages": 2,
        "outage_s": 1.25,
        "last_error": "no audio callback for 130 ms",
    }

    def add_output(snapshot):
        snapshot["output"] = output
        snapshot["device"] = "lost for 1.2 s, retrying"

    with OscSurface(
        player, OscSettings(port=0, hr_bridge="none"), extra_status=add_output
    ) as surface:
        decoded = status_from_messages(parse(surface.api.status_packet()))
    assert decoded is not None
    assert decoded["output"] == output
    assert decoded["device"] == "lost for 1.2 s, retrying"


def test_a_packet_that_is_not_a_status_bundle_decodes_to_none():
    assert status_from_messages([]) is None
    assert status_from_messages(parse(b"/x\x00\x00,f\x00\x00\x00\x00\x00\x00")) is None


def test_a_subscriber_follows_an_input_over_real_udp():
    player = follow_player()
    settings = OscSettings(port=0, hr_bridge="none")
    with OscSurface(player, settings) as surface:
        with StatusSubscriber(HOST, surface.port, rate_hz=20.0) as subscriber:
            first = subscriber.first_status(5.0)
            assert first["inputs"] == {"mood": 0.0}
            SimpleUDPClient(HOST, surface.port).send_message(
                "/soundscape/input/mood", 0.6
            )
            deadline_s = time.monotonic() + 5.0
            status = first
            while status["inputs"]["mood"] != pytest.approx(0.6):
                assert time.monotonic() < deadline_s, "the change never showed"
                status = subscriber.next_status(1.0) or status
            target = status["params"]["tone.osc.amplitude"]["target"]
            assert target == pytest.approx(0.05 + 0.4 * 0.6, rel=1e-6)
            assert len(surface.api.subscriptions.destinations()) == 1
        # Closing unsubscribes.
        deadline_s = time.monotonic() + 5.0
        while surface.api.subscriptions.destinations():
            assert time.monotonic() < deadline_s, "still subscribed"
            time.sleep(0.01)


def test_nothing_answering_is_a_clear_error():
    port = free_port()
    message = f"nothing answers at {HOST}:{port}"
    with (
        StatusSubscriber(HOST, port) as subscriber,
        pytest.raises(NoAnswer, match=message),
    ):
        subscriber.first_status(0.5)


def test_monitor_cli_says_so_when_nothing_answers(capsys):
    port = free_port()
    assert main(["monitor", "--port", str(port), "--timeout", "0.5"]) == 1
    err = capsys.readouterr().err
    assert f"nothing answers at {HOST}:{port}/soundscape" in err
    assert "soundscape play" in err
    assert main(["monitor", "--port", "70000"]) == 1
    assert "port must be 1..65535" in capsys.readouterr().err


def test_monitor_shows_a_playing_engine(jack_server, capsys):
    port = free_port()
    args = (str(GAME), "--seconds", "60", "--hr-bridge", "none", "--set", "danger=0.5")
    with playing(*args, port=port):
        args = ["monitor", "--port", str(port), "--seconds", "2.5", "--timeout", "10"]
        assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) >= 2  # not a terminal: a line a second
    last = lines[-1]
    assert "scene=game" in last and "state=explore" in last
    assert "danger=0.500" in last
    # 600..1200 Hz on an exponential curve: 848.5 Hz at 0.5.
    assert "tense.tone.frequency_hz=848.5->848.5" in last
    assert "device=running" in last
    # The calm layer (a 0.2 sine) as the audio thread measures it: -17.0 dBFS.
    assert re.search(r"rms\.calm=-1[67]\.\d ", last), last
    assert "underflows=" in last
