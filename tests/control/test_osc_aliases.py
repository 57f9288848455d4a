"""Aliases: scaling and clamping, bad values refused by name, YAML tables checked
with file:line errors, and a table installed on a real server over UDP."""

from __future__ import annotations

import math
import socket
import time

import pytest

from engine.control.osc_aliases import Alias, AliasTable, load_aliases, parse_aliases
from engine.control.osc_server import OscServer
from engine.control.osc_wire import OscMessage, encode_message
from engine.scenes.errors import SceneError


def message(address: str, *args) -> OscMessage:
    return OscMessage(address, "", tuple(args), None)


def test_linear_scaling_clamping_and_direction():
    danger = Alias("/game/danger", "danger", (0, 100), (0, 1))
    assert [danger.scale(v) for v in (0, 25, 100, -10, 150)] == [0, 0.25, 1, 0, 1]
    inverted = Alias("/calm", "tension", (0, 1), (1, 0))
    assert [inverted.scale(v) for v in (0, 0.25, 2)] == [1, 0.75, 0]
    loose = Alias("/hr", "heart_rate", (0, 255), (0, 255), clamp=False)
    assert loose.scale(300) == 300
    downward_input = Alias("/depth", "depth", (10, -10), (0, 1))
    assert downward_input.scale(5) == 0.25


def test_argument_selection_and_booleans():
    tilt = Alias("/accxyz", "tilt", (-1, 1), (0, 1), argument=1)
    assert tilt.value_of(message("/accxyz", 0.9, -0.5, 0.1)) == 0.25
    connected = Alias("/isHRConnected", "connected")
    assert connected.value_of(message("/isHRConnected", True)) == 1.0
    assert connected.value_of(message("/isHRConnected", False)) == 0.0
    assert connected.value_of(message("/isHRConnected", 1)) == 1.0


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ((), "needs argument 0, the message has 0"),
        ((float("nan"),), "not a finite number"),
        ((float("inf"),), "not a finite number"),
        (("loud",), "needs a number at argument 0, got 'loud'"),
        ((None,), "needs a number"),
        ((b"\x01",), "needs a number"),
    ],
)
def test_bad_values_are_refused_and_nothing_is_set(args, reason):
    got = []
    table = AliasTable([Alias("/game/danger", "danger")], lambda n, v: got.append(v))
    with pytest.raises(ValueError, match=reason) as caught:
        table.handle(message("/game/danger", *args))
    assert "/game/danger" in str(caught.value)
    assert got == []


def test_overflowing_scale_is_refused():
    steep = Alias("/x", "x", (0, 1e-300), (0, 1e300), clamp=False)
    with pytest.raises(ValueError, match="scales to"):
        steep.value_of(message("/x", 10**300))


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"address": "game/danger"}, "starts with '/'"),
        ({"address": "/game/*"}, "not allowed"),
        ({"input": "Danger"}, "is not a name"),
        ({"from_range": (1.0, 1.0)}, "is empty"),
        ({"to_range": (0.0, math.nan)}, "two finite numbers"),
        ({"argument": -1}, "not in 0..127"),
    ],
)
def test_alias_checks_itself(kwargs, reason):
    fields = {"address": "/game/danger", "input": "danger", **kwargs}
    with pytest.raises(ValueError, match=reason):
        Alias(**fields)


def test_the_same_address_twice_is_refused():
    with pytest.raises(ValueError, match="given twice"):
        AliasTable([Alias("/a", "x"), Alias("/a", "y")], print)


GOOD_YAML = """\
aliases:
  /game/danger: {input: danger, from: [0, 100], to: [0, 1]}
  /accxyz: {input: tilt, argument: 1, from: [-1, 1]}
  /avatar/parameters/HR:
    input: heart_rate
    from: [0, 255]
    to: [0, 255]
    clamp: false
"""


def test_yaml_table():
    got = []
    table = parse_aliases(GOOD_YAML, "a.yaml", lambda n, v: got.append((n, v)))
    assert table.aliases["/accxyz"] == Alias("/accxyz", "tilt", (-1, 1), (0, 1), 1)
    assert table.aliases["/avatar/parameters/HR"].clamp is False
    table.handle(message("/game/danger", 40))
    table.handle(message("/avatar/parameters/HR", 72))
    assert got == [("danger", 0.4), ("heart_rate", 72.0)]


@pytest.mark.parametrize(
    ("text", "where", "reason"),
    [
        (
            "aliases:\n  /a: {input: x, form: [0, 1]}\n",
            "a.yaml:2:18: aliases./a.form",
            "unknown key 'form' in alias (did you mean 'from'?)",
        ),
        (
            "aliases:\n  /a: {input: x, from: [0]}\n",
            "a.yaml:2:18: aliases./a.from",
            "expected 2 items, got 1",
        ),
        (
            "aliases:\n  /a: {input: x, from: [3, 3]}\n",
            "a.yaml:2:18: aliases./a.from",
            "is empty",
        ),
        (
            "aliases:\n  /a: {input: x}\n  /b c: {input: y}\n",
            "a.yaml:3:3: aliases./b c",
            "not allowed in an OSC address",
        ),
        (
            "aliases:\n  /a: {input: Bad-Name}\n",
            "a.yaml:2:8: aliases./a.input",
            "is not an input name",
        ),
        (
            "aliases:\n  /a: {input: x, to: [0, oops]}\n",
            "a.yaml:2:26: aliases./a.to[1]",
            "expected a number",
        ),
        ("/a: {input: x}\n", "a.yaml:1:1", "unknown key '/a' in alias table"),
    ],
)
def test_yaml_errors_name_file_line_and_key(text, where, reason):
    with pytest.raises(SceneError) as caught:
        parse_aliases(text, "a.yaml", print)
    assert str(caught.value).startswith(where), str(caught.value)
    assert reason in str(caught.value)


def test_yaml_inputs_are_checked_against_known_inputs():
    with pytest.raises(SceneError, match="did you mean 'danger'"):
        parse_aliases(
            "aliases:\n  /a: {input: dnager}\n", "a.yaml", print, ["danger", "calm"]
        )


def test_load_aliases_from_a_file(tmp_path):
    path = tmp_path / "aliases.yaml"
    path.write_text(GOOD_YAML, encoding="utf-8")
    assert len(load_aliases(path, print).aliases) == 3
    with pytest.raises(SceneError, match="missing.yaml: cannot read aliases"):
        load_aliases(tmp_path / "missing.yaml", print)


def test_installed_on_a_server_over_udp():
    got = []
    table = parse_aliases(GOOD_YAML, "a.yaml", lambda n, v: got.append((n, v)))
    server = OscServer(port=0).start()
    try:
        table.install(server)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for data in [
                encode_message("/game/danger", [50]),
                encode_message("/game/danger", [float("nan")]),
                encode_message("/game/danger", ["high"]),
                encode_message("/accxyz", [0.0, 1.0, 0.0]),
            ]:
                sock.sendto(data, ("127.0.0.1", server.port))
        deadline_s = time.monotonic() + 5.0
        while server.counters()["messages"] < 4 and time.monotonic() < deadline_s:
            time.sleep(0.005)
        assert got == [("danger", 0.5), ("tilt", 1.0)]
        counts = server.counters()
        assert counts["handler_errors"] == 2 and counts["dispatched"] == 2
        assert any("not a finite number" in e for e in server.recent_errors())
        table.uninstall(server)
        assert server.addresses == []
    finally:
        server.stop()
