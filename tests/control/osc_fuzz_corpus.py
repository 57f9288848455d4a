"""Datagrams for fuzzing the OSC surface: well-formed messages to every address
with arguments of every type and value (NaN, infinities, huge integers, long
and odd strings, blobs), byte-flipped and truncated copies, random bytes,
bundles nested and timed (past, near, far), and python-osc's known failure
cases. Used by tests/control/test_osc_surface.py (a short run) and
benchmarks/bench_osc_engine.py (100,000 datagrams).

Pure functions of a seeded ``random.Random``: the same seed, the same corpus.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator, Sequence
from typing import Any

from engine.control.osc_wire import encode_bundle, encode_message, unix_to_ntp

PATTERNS = (
    "/soundscape/input/*",
    "/soundscape/*/danger",
    "/soundscape/layer/*/*/*",
    "//gain_db",
    "/soundscape/{state,trigger}/*",
    "/soundscape/" + "*" * 14 + "b",
    "/soundscape/[a-z]*/[!x]",
)
EXTRA_ADDRESSES = (
    "/soundscape/nope",
    "/soundscape/input/nothing",
    "/soundscape/layer/x/y/z",
    "/soundscape/status/scene",
    "/avatar/parameters/Something",
    "/soundscape",
    "/",
)


def _number(rng: random.Random) -> Any:
    return rng.choice(
        [
            rng.uniform(-2, 2),
            rng.uniform(-1e6, 1e6),
            rng.randint(-(2**31), 2**31 - 1),
            rng.randint(-(2**63), 2**63 - 1),
            math.nan,
            math.inf,
            -math.inf,
            -0.0,
            5e-324,
            1.7e308,
            0,
            1,
        ]
    )


def _text(rng: random.Random) -> str:
    return rng.choice(
        [
            "combat",
            "explore",
            "hit",
            "danger",
            "game",
            "../../etc/passwd",
            "x" * rng.randint(0, 300),
            "".join(chr(rng.randint(1, 0x2FFF)) for _ in range(rng.randint(1, 20))),
            "localhost",
            "127.0.0.1",
        ]
    )


def _argument(rng: random.Random) -> Any:
    kind = rng.random()
    if kind < 0.55:
        return _number(rng)
    if kind < 0.75:
        return _text(rng)
    if kind < 0.85:
        return rng.random() < 0.5
    if kind < 0.9:
        return None
    return bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))


def _message(rng: random.Random, addresses: Sequence[str]) -> bytes:
    pick = rng.random()
    if pick < 0.8:
        address = rng.choice(addresses)
    elif pick < 0.9:
        address = rng.choice(PATTERNS)
    else:
        address = rng.choice(EXTRA_ADDRESSES)
    args = [_argument(rng) for _ in range(rng.choice([0, 1, 1, 1, 2, 2, 3, 5]))]
    if address.endswith(("/status", "/subscribe", "/unsubscribe")):
        # Reply ports that go nowhere harmful: this machine, closed ports.
        args = [rng.choice([0.0, 1, 9, 65536, 70000, 5.5])] + args[:1]
    try:
        return encode_message(address, args)
    except ValueError:  # a value the encoder cannot carry: send it without
        return encode_message(address)


def _bundle(rng: random.Random, addresses: Sequence[str]) -> bytes:
    now_s = time.time()
    when = rng.choice(
        [
            1,  # immediately
            unix_to_ntp(now_s + rng.uniform(-5, 0)),  # past
            unix_to_ntp(now_s + rng.uniform(0, 0.5)),  # soon
            unix_to_ntp(now_s + rng.uniform(11, 3600)),  # beyond the horizon
            rng.randrange(2**64),  # anything
        ]
    )
    elements = [_message(rng, addresses) for _ in range(rng.randint(1, 4))]
    data = encode_bundle(elements, when)
    for _ in range(rng.choice([0, 0, 1, 3])):
        data = encode_bundle([data], when)
    return data


def _nested(depth: int) -> bytes:
    data = encode_message("/x", [1])
    for _ in range(depth):
        data = encode_bundle([data])
    return data


def python_osc_failures() -> list[bytes]:
    """Datagrams python-osc (as published) mishandles: it loops forever, raises,
    takes seconds, or cuts them."""
    return [
        b"#bundle\x00"
        + bytes(7)
        + b"\x01"
        + (-8).to_bytes(4, "big", signed=True)
        + encode_message("/x"),
        b"/a\xff\xfe,s\x00\x00ab\x00\x00",
        _nested(500),
        encode_message("/" + "*" * 14 + "b", [1]),
        encode_bundle(
            [encode_message(f"/soundscape/x/{i:04d}/padding", [i]) for i in range(250)]
        ),
    ]


def fuzz_datagrams(
    rng: random.Random, addresses: Sequence[str], count: int
) -> Iterator[bytes]:
    """``count`` datagrams against ``addresses`` (the surface's own)."""
    failures = python_osc_failures()
    for _ in range(count):
        kind = rng.random()
        if kind < 0.4:
            yield _message(rng, addresses)
        elif kind < 0.65:
            data = bytearray(_message(rng, addresses))
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            yield bytes(data)
        elif kind < 0.75:
            data = _message(rng, addresses)
            yield data[: rng.randrange(1, len(data) + 1)]
        elif kind < 0.83:
            yield bytes(rng.randrange(256) for _ in range(rng.randint(0, 96)))
        elif kind < 0.97:
            yield _bundle(rng, addresses)
        else:
            yield rng.choice(failures)
