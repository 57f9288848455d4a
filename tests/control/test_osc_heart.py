"""Heart-rate bridge presets end to end: the simulator (and `soundscape hr-sim`)
sends each bridge's own format over UDP, and the scene's heart inputs move."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from polling import wait_for

from engine.control.osc_heart import PRESET_ORDER, OscHeartRate, parse_bridges
from engine.control.osc_server import OscServer
from engine.control.osc_surface import OscSettings, OscSurface
from engine.control.osc_wire import encode_message, parse
from engine.rt.engine import Engine
from engine.scenes.player import ScenePlayer
from engine.sensors.hr_sim import send_beats, simulate

HOST = "127.0.0.1"
ROOT = Path(__file__).parents[2]
HEART = Path(__file__).parent / "data" / "heart.yaml"


def heart_player() -> ScenePlayer:
    player = ScenePlayer(Engine(seed=1), on_error=lambda m: None)
    player.load(HEART)
    return player


def test_parse_bridges_names_all_none_and_mistakes():
    assert parse_bridges("all") == PRESET_ORDER
    assert parse_bridges("none") == ()
    assert parse_bridges("") == ()
    assert parse_bridges("iron-heart, vrcosc") == ("vrcosc", "iron-heart")
    with pytest.raises(ValueError, match="did you mean 'vrcosc'"):
        parse_bridges("vrcsoc")


def test_shared_addresses_are_decoded_once():
    server = OscServer(port=0)
    heart = OscHeartRate(server, "all")
    assert len(heart.addresses) == len(set(heart.addresses))
    hr = heart.decoders["/avatar/parameters/HR"]
    assert hr.bridge.name == "hrtovrchat"  # first in PRESET_ORDER that has it
    assert "/soundscape/hr/bpm" in heart.addresses
    assert "/avatar/parameters/VRCOSC/Heartrate/Value" in heart.addresses


@pytest.mark.parametrize("bridge", PRESET_ORDER)
def test_simulated_bridge_moves_the_scene_heart_inputs(bridge):
    player = heart_player()
    with OscSurface(player, OscSettings(port=0, hr_bridge=bridge)) as osc:
        beats = simulate("stress", seconds=25, seed=3)  # about 88 bpm
        send_beats(beats, bridge, HOST, osc.port, speed=25.0)
        assert wait_for(lambda: osc.heart.counts["samples"] > 20)
        values = player.inputs.values
        assert wait_for(lambda: abs(values["heart_rate_bpm"] - 88) < 12)
        assert values["hr_connected"] == 1.0
        assert values["danger"] == 0.0  # other inputs are left alone
        counts = osc.counters()
        assert counts["heart"]["refused"] == 0
        assert counts["heart"]["dropped"] == 0
        if bridge in ("iron-heart", "generic"):  # they send RR intervals
            assert values["hrv_rmssd_ms"] != 40.0
        assert osc.server.counters()["handler_errors"] == 0


def test_hr_sim_command_drives_the_inputs_and_status_reports_them():
    player = heart_player()
    with OscSurface(player, OscSettings(port=0, hr_bridge="all")) as osc:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                "from engine.cli import main; raise SystemExit(main())",
                *("hr-sim", "--format", "iron-heart", "--profile", "stress"),
                *("--port", str(osc.port), "--seconds", "20", "--speed", "20"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env=env,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert wait_for(lambda: player.inputs.values["hr_connected"] == 1.0)
        assert abs(player.inputs.values["heart_rate_bpm"] - 88) < 12
        reply = osc.api.status_packet()
        hr = next(m for m in parse(reply) if m.address == "/soundscape/status/hr")
        bpm, rmssd_ms, connected, quality = hr.args
        assert abs(bpm - 88) < 12 and connected == 1 and 0 < quality <= 1
        assert rmssd_ms > 0


def test_bad_bridge_values_get_an_error_reply_and_do_not_reach_the_tracker():
    import socket

    player = heart_player()
    with (
        OscSurface(player, OscSettings(port=0, hr_bridge="vrcosc")) as osc,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client,
    ):
        client.bind((HOST, 0))
        client.settimeout(5.0)
        address = "/avatar/parameters/VRCOSC/Heartrate/Value"
        for bad in (["fast"], [float("nan")], [72, 73], [-5]):
            client.sendto(encode_message(address, bad), (HOST, osc.port))
        errors = []
        while len(errors) < 4:
            errors += [m for m in parse(client.recvfrom(65536)[0])]
        assert {m.address for m in errors} == {"/soundscape/error"}
        assert all(m.args[0] == address for m in errors)
        assert osc.heart.counts["refused"] == 4
        assert osc.heart.counts["samples"] == 0
        assert player.inputs.values["heart_rate_bpm"] == 70.0


def test_worker_sleeps_until_a_bridge_sends_then_ticks():
    """No bridge talking: one state at start, then no wake-ups (it used to
    take the GIL ten times a second); the first sample starts the ticks."""
    from engine.control.osc_server import OscSender

    states = []
    heart = OscHeartRate(OscServer(port=0), "generic", on_state=states.append)
    heart.start()
    try:
        assert wait_for(lambda: heart.ticks == 1)
        time.sleep(0.5)  # five ticks at 10 Hz, had it kept ticking
        assert heart.ticks == 1 and len(states) == 1
        assert not states[0].connected
        (message,) = parse(encode_message("/soundscape/hr/bpm", [72.0]))
        heart.handle(message, OscSender(HOST, 9, "udp"))
        assert wait_for(lambda: heart.counts["samples"] == 1)
        assert wait_for(lambda: heart.ticks >= 3)  # ticking from the sample on
        assert states[-1].connected
    finally:
        thread = heart._thread
        heart.stop()
    assert thread is not None and not thread.is_alive()


def test_stop_wakes_an_idle_worker():
    heart = OscHeartRate(OscServer(port=0), "generic").start()
    assert wait_for(lambda: heart.ticks == 1)
    thread = heart._thread
    started_s = time.monotonic()
    heart.stop()
    assert thread is not None and not thread.is_alive()
    assert time.monotonic() - started_s < 1.9  # not the 2 s join timeout
