"""The OSC surface as a whole: settings checked by name, the switch interval set
and restored, an alias table driving inputs, a fuzz run against a scene playing
live under a JACK dummy server, and `soundscape play` answering /status."""

from __future__ import annotations

import gc
import os
import random
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import free_port, playing  # tests/control, on the path
from osc_fuzz_corpus import fuzz_datagrams  # tests/control, on the path
from polling import wait_for
from pythonosc.udp_client import SimpleUDPClient

from engine.control.osc_surface import (
    DEFAULT_SWITCH_INTERVAL_S,
    GIL_TAKER_THREADS,
    OscSettings,
    OscSurface,
)
from engine.control.osc_wire import encode_message, parse
from engine.dsp.layout import P_CURRENT, P_TARGET
from engine.rt.core import C_NONFINITE
from engine.rt.engine import Engine
from engine.scenes.errors import SceneError
from engine.scenes.player import ScenePlayer

HOST = "127.0.0.1"
ROOT = Path(__file__).parents[2]
DATA = ROOT / "tests" / "scenes" / "data"
GAME = DATA / "game.yaml"


def game_player() -> ScenePlayer:
    player = ScenePlayer(Engine(seed=2), on_error=lambda m: None)
    player.load(GAME)
    return player


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (OscSettings(prefix="soundscape"), "must start with '/'"),
        (OscSettings(prefix="/soundscape/"), "must not end with '/'"),
        (OscSettings(port=70000), "0..65535"),
        (OscSettings(hr_bridge="vrcsoc"), "did you mean 'vrcosc'"),
        (OscSettings(switch_interval_s=0.0), "switch_interval_s"),
        (OscSettings(host="0.0.0.0", port=0), "allow_networks"),
    ],
)
def test_bad_settings_are_refused_by_name(settings, message):
    with pytest.raises(ValueError, match=message):
        OscSurface(game_player(), settings)


def test_switch_interval_is_set_while_running_and_restored():
    before = sys.getswitchinterval()
    surface = OscSurface(game_player(), OscSettings(port=0, hr_bridge="none"))
    surface.start()
    try:
        assert sys.getswitchinterval() == pytest.approx(DEFAULT_SWITCH_INTERVAL_S)
        assert DEFAULT_SWITCH_INTERVAL_S < 0.001
        # The receive threads at nice -11, where the system allows it.
        receiver = next(t for t in threading.enumerate() if t.name.startswith("osc-"))
        assert receiver.native_id is not None
        nice = os.getpriority(os.PRIO_PROCESS, receiver.native_id)
        assert nice == -11 or surface.server.priority_refused
    finally:
        surface.stop()
    assert sys.getswitchinterval() == before


def test_our_threads_that_take_the_gil_run_at_the_receive_threads_nice():
    # The live player's pump outlives the surface: one named like it.
    stop = threading.Event()
    pump = threading.Thread(target=stop.wait, name="soundscape-events")
    pump.start()
    assert pump.native_id is not None
    before = os.getpriority(os.PRIO_PROCESS, pump.native_id)
    surface = OscSurface(
        game_player(), OscSettings(port=0, hr_bridge="generic", thread_nice=-7)
    ).start()
    try:
        if surface.server.priority_refused:
            pytest.skip("no CAP_SYS_NICE here")
        names = {t.name: t.native_id for t in threading.enumerate()}
        for name in GIL_TAKER_THREADS:
            assert os.getpriority(os.PRIO_PROCESS, names[name]) == -7, name
    finally:
        surface.stop()
        stop.set()
    try:
        assert os.getpriority(os.PRIO_PROCESS, pump.native_id) == before
    finally:
        pump.join()


def test_two_surfaces_stopped_in_any_order_restore_the_switch_interval():
    before = sys.getswitchinterval()
    first = OscSurface(
        game_player(),
        OscSettings(port=0, hr_bridge="none", switch_interval_s=0.002),
    ).start()
    second = OscSurface(
        game_player(),
        OscSettings(port=0, hr_bridge="none", switch_interval_s=0.0005),
    ).start()
    try:
        assert sys.getswitchinterval() == pytest.approx(0.0005)  # the shortest
        first.stop()  # the first to start stops first: the second's holds
        assert sys.getswitchinterval() == pytest.approx(0.0005)
    finally:
        first.stop()
        second.stop()
    assert sys.getswitchinterval() == before


def test_start_up_objects_are_frozen_out_of_collections_and_scene_loads_too():
    """A full collection would scan every start-up object with the GIL held;
    frozen, they are skipped. A scene loaded over OSC is frozen in turn."""
    player = game_player()
    player.engine.render(24000)  # the first fade-in ends: a load may start
    surface = OscSurface(
        player, OscSettings(port=0, hr_bridge="none"), scene_folders=[DATA]
    )
    surface.start()
    try:
        frozen = gc.get_freeze_count()
        assert frozen > 10_000
        assert len(gc.get_objects(generation=2)) < frozen
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(10.0)
            client.sendto(
                encode_message("/soundscape/scene", ["game", 0.0]),
                (HOST, surface.port),
            )
            reply = parse(client.recvfrom(65536)[0])[0]
        assert reply.address == "/soundscape/scene/loaded"
        assert gc.get_freeze_count() > frozen  # the new scene's objects
    finally:
        surface.stop()
    assert gc.get_freeze_count() == 0
    with OscSurface(player, OscSettings(port=0, hr_bridge="none", freeze_gc=False)):
        assert gc.get_freeze_count() == 0


def test_alias_table_drives_scene_inputs(tmp_path):
    aliases = tmp_path / "aliases.yaml"
    aliases.write_text(
        "aliases:\n  /game/danger: {input: danger, from: [0, 100], to: [0, 1]}\n"
    )
    player = game_player()
    settings = OscSettings(port=0, hr_bridge="none", aliases_file=str(aliases))
    with OscSurface(player, settings) as osc:
        SimpleUDPClient(HOST, osc.port).send_message("/game/danger", 25)
        assert wait_for(lambda: player.inputs.values["danger"] == 0.25)
        # A bad value: refused, an error reply names the alias's address.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(5.0)
            client.sendto(encode_message("/game/danger", ["lots"]), (HOST, osc.port))
            (reply,) = parse(client.recvfrom(65536)[0])
        assert reply.address == "/soundscape/error"
        assert reply.args[0] == "/game/danger"
        assert "needs a number" in reply.args[1]
        assert player.inputs.values["danger"] == 0.25


def test_an_alias_for_an_input_the_scene_lacks_is_refused_with_its_line(tmp_path):
    aliases = tmp_path / "aliases.yaml"
    aliases.write_text("aliases:\n  /game/danger: {input: dangr}\n")
    settings = OscSettings(port=0, aliases_file=str(aliases))
    with pytest.raises(SceneError, match=r"aliases.yaml:2:.*did you mean 'danger'"):
        OscSurface(game_player(), settings)


def test_fuzzed_datagrams_against_a_scene_playing_live(jack_server):
    from engine.rt.live import LivePlayer

    player = game_player()
    engine = player.engine
    live = LivePlayer(engine, block_size=128)
    settings = OscSettings(port=0, hr_bridge="all", rate_hz=1e6, burst=1e6)
    live.start()
    try:
        surface = OscSurface(player, settings, live=live, scene_folders=[DATA])
        surface.start()
        try:
            rng = random.Random(4)
            addresses = [a for a in surface.server.addresses if "*" not in a]
            n_datagrams = 3000
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as fuzzer:
                for i, data in enumerate(fuzz_datagrams(rng, addresses, n_datagrams)):
                    fuzzer.sendto(data, (HOST, surface.port))
                    if i % 100 == 99:  # keep within the socket's buffer
                        wait_for(
                            lambda n=i + 1: surface.server.counters()["received"] >= n
                        )
            assert wait_for(
                lambda: surface.server.counters()["received"] >= n_datagrams, 20.0
            )
            counts = surface.counters()
            server = counts["server"]
            assert server["internal_errors"] == 0
            assert server["handler_errors"] == 0  # every refusal was an API reply
            assert server["malformed"] > 0 and server["dispatched"] > 0
            assert counts["api"]["rejected"] > 0 and counts["api"]["applied"] > 0
            assert "slow_handlings" in server  # counted; the benchmark reports it
            # Nothing non-finite reached a parameter or the output.
            for program in (engine.slots[0], engine.slots[1], engine.master):
                assert np.all(np.isfinite(program.params[P_TARGET]))
                assert np.all(np.isfinite(program.params[P_CURRENT]))
            assert engine.ctl[C_NONFINITE] == 0
            # Still answering, and the audio still running.
            callbacks = live.snapshot().callbacks
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                client.settimeout(5.0)
                client.sendto(
                    encode_message("/soundscape/status"), (HOST, surface.port)
                )
                first = None
                while first is None or not first.address.startswith(
                    "/soundscape/status"
                ):
                    first = parse(client.recvfrom(65536)[0])[0]
            assert wait_for(lambda: live.snapshot().callbacks > callbacks + 10)
        finally:
            surface.stop()
    finally:
        live.stop()


def test_play_answers_status_over_osc_while_it_plays(jack_server, oscdump):
    port = free_port()
    with playing(str(GAME), "--seconds", "30", "--hr-bridge", "none", port=port):
        subprocess.run(
            [
                "oscsend",
                "localhost",
                str(port),
                "/soundscape/status",
                "i",
                str(oscdump.port),
            ],
            check=True,
            timeout=10,
        )
        lines = oscdump.lines(10, timeout_s=10.0)
        assert any('/soundscape/status/scene ss "game"' in x for x in lines)


def test_no_osc_leaves_the_port_free():
    from engine.cli import build_parser

    args = build_parser().parse_args(["play", "focus", "--no-osc"])
    assert args.no_osc is True
    args = build_parser().parse_args(["play", "focus"])
    assert (args.osc_host, args.osc_port, args.osc_prefix) == (
        "127.0.0.1",
        9000,
        "/soundscape",
    )
    assert (args.hr_bridge, args.aliases, args.no_osc) == ("all", None, False)
