"""The OSC address space on a real engine over real UDP: every documented address
driven by liblo's oscsend and by python-osc's client, replies read by oscdump,
errors and clamping, timed bundles landing on their exact frame in an offline
render, and scene names that can never become paths."""

from __future__ import annotations

import math
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from polling import wait_for
from pythonosc.osc_bundle_builder import OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.udp_client import SimpleUDPClient, UDPClient

from engine.control.frame_clock import FrameClock
from engine.control.osc_api import ADDRESS_DOC, Rejected, scene_by_name
from engine.control.osc_surface import OscSettings, OscSurface
from engine.control.osc_wire import encode_bundle, encode_message, parse, unix_to_ntp
from engine.dsp.layout import P_CURRENT, P_TARGET
from engine.rt.core import C_EVENTS_LATE
from engine.rt.engine import Engine
from engine.scenes.player import ScenePlayer

HOST = "127.0.0.1"
RATE = 48000
DATA = Path(__file__).parents[1] / "scenes" / "data"
GAME = DATA / "game.yaml"
DOCS = Path(__file__).parents[2] / "docs" / "osc.md"


def new_player(seed: int = 5) -> ScenePlayer:
    player = ScenePlayer(Engine(sample_rate=RATE, seed=seed), on_error=lambda m: None)
    player.load(GAME)
    player.engine.render(RATE // 2)  # the first fade-in is over
    return player


@pytest.fixture
def surface() -> Iterator[OscSurface]:
    player = new_player()
    osc = OscSurface(
        player, OscSettings(port=0, hr_bridge="none"), scene_folders=[DATA]
    ).start()
    yield osc
    osc.stop()


def applied(surface: OscSurface) -> int:
    return surface.api.counters()["applied"]


def target(engine: Engine, node: str, param: str, row: int = P_TARGET) -> float:
    program = engine.master if node.startswith("master.") else engine.current
    ref = program.param(node.removeprefix("master."), param)
    return float(program.params[row, ref.column])


def replies(sock: socket.socket, count: int, timeout_s: float = 5.0) -> list:
    """The next ``count`` messages (bundles flattened) arriving on ``sock``."""
    found = []
    deadline_s = time.monotonic() + timeout_s
    while len(found) < count and time.monotonic() < deadline_s:
        sock.settimeout(max(0.01, deadline_s - time.monotonic()))
        try:
            data, _ = sock.recvfrom(65536)
        except TimeoutError:
            break
        found += parse(data)
    return found


def first(sock: socket.socket, address: str, timeout_s: float = 5.0):
    """The first message to ``address`` arriving on ``sock`` (others skipped)."""
    deadline_s = time.monotonic() + timeout_s
    while time.monotonic() < deadline_s:
        for message in replies(sock, 1, deadline_s - time.monotonic()):
            if message.address == address:
                return message
    raise AssertionError(f"no {address} within {timeout_s} s")


# --- every documented address, from two real peers ----------------------------------


def _oscsend(port: int, address: str, types: str = "", *values: str) -> None:
    result = subprocess.run(
        ["oscsend", HOST, str(port), address, types, *values],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def _python_osc(port: int, address: str, types: str = "", *values: str) -> None:
    convert = {"i": int, "f": float, "s": str}
    args = [convert[t](v) for t, v in zip(types, values, strict=True)]
    SimpleUDPClient(HOST, port).send_message(address, args)


PEERS = {"oscsend": _oscsend, "python-osc": _python_osc}


@pytest.mark.parametrize("peer", PEERS)
def test_every_documented_address_from_a_real_peer(surface, peer, oscdump):
    if peer == "oscsend" and not _have("oscsend"):
        pytest.skip("oscsend not installed")
    send = PEERS[peer]
    port = surface.port
    player = surface.player
    engine = player.engine

    def do(address: str, types: str = "", *values: str, expect: int = 1) -> None:
        before = applied(surface)
        send(port, "/soundscape" + address, types, *values)
        assert wait_for(lambda: applied(surface) >= before + expect), address
        engine.render(256)  # the next blocks apply what waits for them

    do("/input/danger", "f", "0.25")
    assert player.inputs.values["danger"] == 0.25
    do("/input", "si", "danger", "1")
    assert player.inputs.values["danger"] == 1.0
    do("/state", "s", "combat")
    assert player.state == "combat"
    do("/state/explore", "i", "1")
    assert player.state == "explore"
    fired = target(engine, "hit.env", "trigger") + target(
        engine, "hit~2.env", "trigger"
    )
    do("/trigger/hit", "f", "0.5")
    do("/trigger", "sf", "hit", "1.0")
    engine.render(RATE)  # a trigger waits for nothing, but the scene's grid is 1 beat
    now = target(engine, "hit.env", "trigger") + target(engine, "hit~2.env", "trigger")
    assert now == fired + 2
    do("/layer/calm/tone/frequency_hz", "ff", "330", "0.01")
    engine.render(RATE // 10)
    assert target(engine, "calm.tone", "frequency_hz", P_CURRENT) == 330.0
    do("/layer/calm/gain_db", "f", "-6")
    assert target(engine, "calm.level", "gain_db") == -6.0
    do("/volume", "ff", "-12", "0")
    assert target(engine, "master.volume", "gain_db") == -12.0
    do("/sleep", "ff", "600", "60")
    assert engine.cancel("sleep-timer") > 0  # the timer waited for its time
    do("/sleep", "f", "600")
    do("/sleep/cancel")
    assert engine.cancel("sleep-timer") == 0
    # Status to an explicit port (oscsend sends from a port it then closes).
    do("/status", "i", str(oscdump.port))
    lines = oscdump.lines(10)
    assert any('/soundscape/status/scene ss "game" "explore"' in x for x in lines)
    assert any("/soundscape/status/input/danger f 1.000000" in x for x in lines)
    do("/subscribe", "fi", "20", str(oscdump.port))
    subscribed = oscdump.lines(40, timeout_s=5.0)
    assert any("/soundscape/subscribed f 20.000000" in x for x in subscribed)
    assert sum("/soundscape/status/scene" in x for x in subscribed) >= 3
    do("/unsubscribe", "i", str(oscdump.port))
    assert surface.api.subscriptions.destinations() == []
    do("/scene", "sf", "game", "0.5")
    assert wait_for(lambda: surface.api.counters()["scene_loads"] == 1, 30.0)
    assert surface.api.counters()["rejected"] == 0
    assert surface.server.counters()["internal_errors"] == 0


def _have(tool: str) -> bool:
    import shutil

    return shutil.which(tool) is not None


def test_status_answers_the_sender_with_scene_state_inputs_and_levels(surface, client):
    client.sendto(encode_message("/soundscape/status"), (HOST, surface.port))
    got = {m.address: m.args for m in replies(client, 9)}
    assert got["/soundscape/status/scene"] == ("game", "explore")
    assert got["/soundscape/status/input/danger"] == (0.0,)
    assert set(got) >= {
        "/soundscape/status/levels",
        "/soundscape/status/cpu",
        "/soundscape/status/underflows",
        "/soundscape/status/uptime",
        "/soundscape/status/layer/calm",
        "/soundscape/status/osc",
    }
    peak_db, rms_db, volume_db = got["/soundscape/status/levels"]
    assert -40 < rms_db < peak_db < 0  # a 440 Hz tone is playing
    assert volume_db == 0.0


def test_status_carries_each_layers_measured_meter(surface, client):
    surface.player.engine.render(RATE)  # the meters' 300 ms window settles
    client.sendto(encode_message("/soundscape/status"), (HOST, surface.port))
    got = {m.address: m.args for m in replies(client, 20)}
    # calm: a 0.2 sine at full level; tense: off in this state; hit: not fired.
    peak_db, rms_db = got["/soundscape/status/meter/calm"]
    assert peak_db == pytest.approx(20 * math.log10(0.2), abs=0.1)
    assert rms_db == pytest.approx(20 * math.log10(0.2 / math.sqrt(2)), abs=0.1)
    assert got["/soundscape/status/meter/tense"] == (-120.0, -120.0)
    assert got["/soundscape/status/meter/hit"] == (-120.0, -120.0)
    assert got["/soundscape/status/layer/tense"] == (0.0,)  # asked for: off


def _latest_meter(sock: socket.socket, layer: str, after_s: float) -> tuple:
    """The last /status/meter/<layer> among the packets arriving in ``after_s``."""
    found = None
    for message in replies(sock, 1000, timeout_s=after_s):
        if message.address == f"/soundscape/status/meter/{layer}":
            found = message.args
    assert found is not None, f"no meter for {layer}"
    return found


def test_subscribers_see_a_layers_meter_follow_its_gain(surface, client):
    engine = surface.player.engine
    engine.render(RATE)
    client.sendto(encode_message("/soundscape/subscribe", [20.0]), (HOST, surface.port))
    _, rms_db = _latest_meter(client, "calm", 0.3)
    assert rms_db == pytest.approx(20 * math.log10(0.2 / math.sqrt(2)), abs=0.1)
    before = applied(surface)
    client.sendto(
        encode_message("/soundscape/layer/calm/gain_db", [-20.0]), (HOST, surface.port)
    )
    assert wait_for(lambda: applied(surface) > before)
    engine.render(3 * RATE)  # ten RMS windows: settled
    assert target(engine, "calm.level", "gain_db") == -20.0
    _, lower_db = _latest_meter(client, "calm", 0.3)
    assert lower_db - rms_db == pytest.approx(-20.0, abs=0.2)


def test_documented_addresses_are_all_served_and_in_the_reference(surface):
    served = set(surface.server.addresses)
    text = DOCS.read_text(encoding="utf-8")
    for address, _types, _what in ADDRESS_DOC:
        example = (
            address.replace("<name>", "danger")
            .replace("<layer>/<node>/<param>", "calm/tone/amplitude")
            .replace("<layer>", "calm")
        )
        if "/state/" in example:
            example = "/state/combat"
        if "/trigger/" in example:
            example = "/trigger/hit"
        assert "/soundscape" + example in served, address
        assert f"`{address}`" in text, f"{address} missing from docs/osc.md"


# --- errors, clamping, types ---------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "args", "reason"),
    [
        ("/soundscape/input/danger", ["high"], "expected a number"),
        ("/soundscape/input/danger", [], "missing"),
        ("/soundscape/input/danger", [math.nan], "not a finite number"),
        ("/soundscape/input/danger", [math.inf], "not a finite number"),
        ("/soundscape/input/dangr", [0.5], "did you mean 'danger'"),
        ("/soundscape/input", [0.5], "expected a string"),
        ("/soundscape/state", ["fight"], "no state 'fight'"),
        ("/soundscape/trigger", ["hti"], "did you mean 'hit'"),
        ("/soundscape/layer/calm/tone/amplitude", [b"blob"], "expected a number"),
        ("/soundscape/layer/calm/tone/q", [1.0], "no layer 'calm/tone/q'"),
        ("/soundscape/volume", [None], "expected a number"),
        ("/soundscape/volume", [-6.0, math.nan], "not a finite number"),
        ("/soundscape/status", [70000], "not a port"),
        ("/soundscape/status", [9001, "example.com"], "not an IP address"),
        ("/soundscape/subscribe", [10.0, 9001, "10.1.2.3"], "cannot send"),
        ("/soundscape/unsubscribe", [], "not subscribed"),
        ("/soundscape/scene", ["../../etc/passwd"], "not a scene name"),
        ("/soundscape/scene", ["forest"], "no scene 'forest'"),
        ("/soundscape/nope", [], "unknown address"),
        ("/soundscape/volume", [True], "expected a number"),
    ],
)
def test_bad_messages_get_an_error_reply_and_change_nothing(
    surface, client, address, args, reason
):
    engine = surface.player.engine
    targets = engine.current.params[P_TARGET].copy()
    master = engine.master.params[P_TARGET].copy()
    client.sendto(encode_message(address, args), (HOST, surface.port))
    (reply,) = replies(client, 1)
    assert reply.address == "/soundscape/error"
    assert reply.args[0] == address
    assert reason in reply.args[1]
    assert surface.api.counters()["rejected"] == 1
    assert surface.api.counters()["applied"] == 0
    engine.render(512)
    assert np.array_equal(engine.current.params[P_TARGET], targets)
    assert np.array_equal(engine.master.params[P_TARGET], master)


@pytest.mark.parametrize(
    ("address", "args", "check", "reason"),
    [
        ("/soundscape/input/danger", [7], ("danger", 1.0), "clamped to 1 (0..1)"),
        ("/soundscape/input/danger", [-2.5], ("danger", 0.0), "clamped to 0"),
        ("/soundscape/volume", [12.0], ("master.volume", 0.0), "clamped to 0 dB"),
        (
            "/soundscape/layer/calm/tone/amplitude",
            [50.0],
            ("calm.tone", 16.0),
            "clamped to 16 (0..16)",
        ),
        ("/soundscape/trigger/hit", [3.0], None, "velocity 3 clamped to 1"),
        ("/soundscape/subscribe", [1000.0], None, "rate_hz 1000 clamped to 60"),
    ],
)
def test_out_of_range_values_are_clamped_applied_and_warned(
    surface, client, address, args, check, reason
):
    engine = surface.player.engine
    client.sendto(encode_message(address, args), (HOST, surface.port))
    warning = first(client, "/soundscape/warning")
    assert warning.args[0] == address
    assert reason in warning.args[1]
    assert surface.api.counters()["clamped"] == 1
    engine.render(256)
    if check is not None:
        name, value = check
        if name == "danger":
            assert surface.player.inputs.values["danger"] == value
        else:
            param = "gain_db" if name.startswith("master") else "amplitude"
            assert target(engine, name, param) == value
    assert np.all(np.isfinite(engine.current.params[P_TARGET]))


def test_button_releases_are_ignored_not_errors(surface, client):
    for address, args in [
        ("/soundscape/state/combat", [0.0]),
        ("/soundscape/state/combat", [False]),
        ("/soundscape/trigger/hit", [0]),
    ]:
        client.sendto(encode_message(address, args), (HOST, surface.port))
    assert wait_for(lambda: surface.api.counters()["ignored"] == 3)
    assert surface.player.state == "explore"  # the first state, untouched
    assert surface.api.counters()["rejected"] == 0


def test_a_bundle_of_status_requests_is_bounded_by_their_cost(surface, client):
    """A status reply builds the whole status (~10 parameter sets' work): a
    bundle may ask for 8, not 64."""
    status = encode_message("/soundscape/status")
    client.sendto(encode_bundle([status] * 9), (HOST, surface.port))
    client.sendto(encode_bundle([status] * 8), (HOST, surface.port))
    answers = [
        m for m in replies(client, 200, timeout_s=2.0) if m.address.endswith("/scene")
    ]
    assert len(answers) == 8
    assert surface.server.counters()["over_budget"] == 1


def test_error_replies_are_rate_limited_per_sender(surface, client):
    for _ in range(200):
        client.sendto(encode_message("/soundscape/nope"), (HOST, surface.port))
    assert wait_for(lambda: surface.api.counters()["rejected"] == 200)
    counts = surface.api.counters()
    assert counts["replies_suppressed"] > 0
    # The budget is 20 a second: a little more over the run's duration.
    assert counts["error_replies"] <= 20 + 20 * 5
    assert counts["error_replies"] + counts["replies_suppressed"] == 200


def test_addresses_outside_the_prefix_are_counted_and_not_answered(surface, client):
    client.sendto(encode_message("/avatar/parameters/Foo", [1]), (HOST, surface.port))
    client.sendto(encode_message("/soundscape/status"), (HOST, surface.port))
    got = replies(client, 20, timeout_s=1.0)
    assert all(m.address.startswith("/soundscape/status") for m in got)
    assert surface.api.counters()["unknown_address"] == 1


def test_a_custom_prefix_moves_every_address():
    player = new_player()
    with OscSurface(
        player, OscSettings(port=0, prefix="/game/audio", hr_bridge="none")
    ) as osc:
        assert "/game/audio/input/danger" in osc.server.addresses
        assert not any(a.startswith("/soundscape") for a in osc.server.addresses)
        SimpleUDPClient(HOST, osc.port).send_message("/game/audio/input/danger", 0.5)
        assert wait_for(lambda: player.inputs.values["danger"] == 0.5)


def test_a_scene_change_replaces_the_scene_addresses(surface, tmp_path):
    # A second scene folder with a scene that has other inputs.
    other = tmp_path / "calm_room.yaml"
    text = GAME.read_text().replace("danger", "tension")
    other.write_text(text.replace("name: game", "name: calm_room"))
    surface.api.scene_folders.append(tmp_path)
    SimpleUDPClient(HOST, surface.port).send_message(
        "/soundscape/scene", ["calm_room", 0.1]
    )
    assert wait_for(lambda: surface.api.counters()["scene_loads"] == 1, 60.0)
    assert "/soundscape/input/tension" in surface.server.addresses
    assert "/soundscape/input/danger" not in surface.server.addresses


# --- timetags: the exact frame --------------------------------------------------------


def test_timed_bundles_land_on_their_exact_frames_in_the_offline_render(client):
    t0 = time.time()
    latency_s = 0.05
    player = new_player(seed=9)
    start = player.engine.frame
    clock = FrameClock(RATE, anchor=(start, t0), latency_s=latency_s)
    osc = OscSurface(player, OscSettings(port=0, hr_bridge="none"), clock=clock).start()
    # Times a game would choose, at no particular frame boundary.
    offsets_s = [0.1, 0.1371, 0.2004, 0.26, 0.3333, 0.4001]
    calls = []
    try:
        for k, offset_s in enumerate(offsets_s):
            when = unix_to_ntp(t0 + offset_s)
            if k % 2 == 0:  # python-osc's bundle builder (it takes Unix seconds)
                bundle = OscBundleBuilder(t0 + offset_s)
                message = OscMessageBuilder("/soundscape/trigger/hit")
                message.add_arg(1.0)
                bundle.add_content(message.build())
                message = OscMessageBuilder("/soundscape/input/danger")
                message.add_arg(k / 10)
                bundle.add_content(message.build())
                UDPClient(HOST, osc.port).send(bundle.build())
            else:  # our encoder
                client.sendto(
                    encode_bundle(
                        [
                            encode_message("/soundscape/trigger/hit", [1.0]),
                            encode_message("/soundscape/input/danger", [k / 10]),
                        ],
                        when,
                    ),
                    (HOST, osc.port),
                )
            frame = start + round(offset_s * RATE) + round(latency_s * RATE)
            calls.append((frame, k / 10))
        assert wait_for(lambda: applied(osc) == 2 * len(offsets_s))
    finally:
        osc.stop()
    assert osc.api.counters()["late"] == 0
    played = player.engine.render(RATE // 2)

    def twin_render(shift: int) -> np.ndarray:
        twin = new_player(seed=9)
        for i, (frame, danger) in enumerate(calls):
            at = frame + (shift if i == 3 else 0)
            twin.fire("hit", 1.0, at)
            twin.set_input("danger", danger, at)
        return twin.engine.render(RATE // 2)

    assert np.array_equal(played, twin_render(0))  # bit for bit
    assert not np.array_equal(played, twin_render(1))  # one frame off shows
    assert player.engine.ctl[C_EVENTS_LATE] == 0


def test_an_immediate_message_is_not_held_behind_a_bundle_timed_ahead(client):
    """A bundle timed 150 ms ahead waits in the audio thread's ring (the live
    pump moves events 200 ms ahead); an immediate message after it changes
    the output from the very next block, exactly as if stamped there."""
    t0 = time.time()
    player = new_player(seed=9)
    start = player.engine.frame
    clock = FrameClock(RATE, anchor=(start, t0), latency_s=0.0)
    address = "/soundscape/layer/calm/tone/amplitude"
    with OscSurface(player, OscSettings(port=0, hr_bridge="none"), clock=clock) as osc:
        timed = encode_bundle([encode_message(address, [0.0])], unix_to_ntp(t0 + 0.15))
        client.sendto(timed, (HOST, osc.port))
        assert wait_for(lambda: applied(osc) == 1)
        player.engine.pump(round(0.2 * RATE))  # as the live pump does
        assert player.engine.ring.pending == 1
        # 0.0625: exact in the message's float32.
        client.sendto(encode_message(address, [0.0625, 0.0]), (HOST, osc.port))
        assert wait_for(lambda: applied(osc) == 2)
    played = player.engine.render(RATE // 4)[:, 0]

    twin = new_player(seed=9)
    twin.set_param("calm", "tone", "amplitude", 0.0625, 0.0, frame=start)
    twin.set_param("calm", "tone", "amplitude", 0.0, frame=start + round(0.15 * RATE))
    expected = twin.engine.render(RATE // 4)[:, 0]
    assert np.array_equal(played, expected)  # bit for bit
    untouched = new_player(seed=9).engine.render(RATE // 4)[:, 0]
    changed = np.flatnonzero(played != untouched)
    assert changed.size and changed[0] <= player.engine.latency_frames + 1
    assert player.engine.ctl[C_EVENTS_LATE] == 0


def test_a_timetag_already_past_applies_at_the_next_block_and_counts_late(client):
    player = new_player()
    clock = FrameClock(RATE, anchor=(player.engine.frame, time.time()), latency_s=0)
    with OscSurface(player, OscSettings(port=0, hr_bridge="none"), clock=clock) as osc:
        past = unix_to_ntp(time.time() - 5.0)
        client.sendto(
            encode_bundle([encode_message("/soundscape/input/danger", [0.75])], past),
            (HOST, osc.port),
        )
        assert wait_for(lambda: applied(osc) == 1)
        assert osc.api.counters()["late"] == 1
        assert player.inputs.values["danger"] == 0.75


# --- scene names are names, never paths ------------------------------------------------

TRAVERSAL = [
    "../../../../etc/passwd",
    "/etc/passwd",
    "..",
    ".",
    "game/../../x",
    "..\\..\\windows\\win.ini",
    "C:\\Windows\\System32",
    "%2e%2e%2fetc%2fpasswd",
    "game.yaml",
    "game\x01",
    "~root",
    "$HOME",
    "game/",
    "./game",
    "file:///etc/passwd",
    "\u2024\u2024/etc",  # one-dot leaders that look like '..'
    "g" * 65,
    "",
    " game",
    "game\n",
    "-rf",
]


def test_a_path_traversal_corpus_opens_no_file_outside_the_scene_folders(
    surface, client
):
    opened: list[str] = []
    watching = threading.Event()

    def audit(event: str, args: tuple) -> None:
        if watching.is_set() and event == "open" and isinstance(args[0], str | Path):
            opened.append(str(args[0]))

    sys.addaudithook(audit)
    watching.set()
    try:
        for name in TRAVERSAL:
            client.sendto(
                encode_message("/soundscape/scene", [name]), (HOST, surface.port)
            )
        for name in ("-rf", "passwd", "focus"):  # plain names, not in the folder
            client.sendto(
                encode_message("/soundscape/scene", [name]), (HOST, surface.port)
            )
        n_sent = len(TRAVERSAL) + 3
        assert wait_for(lambda: surface.api.counters()["rejected"] == n_sent)
    finally:
        watching.clear()
    scenes = str(DATA.resolve())
    python = (sys.prefix, sys.base_prefix, str(Path(__file__).parents[2] / "engine"))
    outside = [p for p in opened if not p.startswith((scenes, *python))]
    assert outside == []
    assert surface.api.counters()["scene_loads"] == 0


def test_scene_names_resolve_inside_their_folder_only(tmp_path):
    (tmp_path / "ok.yaml").write_text("name: ok\n")
    os.symlink("/etc/passwd", tmp_path / "evil.yaml")
    outside = tmp_path.parent / f"{tmp_path.name}-outside.yaml"
    outside.write_text("name: outside\n")
    os.symlink(outside, tmp_path / "escape.yaml")
    assert scene_by_name("ok", [tmp_path]) == (tmp_path / "ok.yaml").resolve()
    for name in ("evil", "escape", "ok.yaml", "../ok"):
        with pytest.raises(Rejected):
            scene_by_name(name, [tmp_path])
    with pytest.raises(Rejected, match=re.escape("did you mean 'ok'")):
        scene_by_name("okk", [tmp_path])
