"""Fuzz the OSC parser: 100,000 seeded datagrams (valid, truncated, mutated and
random), each must give a valid parse or OscError and nothing else; valid ones
give back exactly the values encoded (floats as float32), and anything that
parses re-encodes to the same messages."""

from __future__ import annotations

import math
import random
import struct

from engine.control.osc_wire import (
    IMPULSE,
    OscError,
    OscMessage,
    encode_bundle,
    encode_message,
    parse,
    unix_to_ntp,
)

N_DATAGRAMS = 100_000
SPECIAL_FLOATS = [0.0, -0.0, float("inf"), float("-inf"), float("nan"), 1e-45, 3.4e38]
SPECIAL_INTS = [0, -1, -4, -(2**31), 2**31 - 1, 4, 8, 12, 0x7FFF_FFF0]


def _f32(value: float) -> float:
    return struct.unpack(">f", struct.pack(">f", value))[0]


def _same(a, b) -> bool:
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b)
        )
    return a == b and type(a) is type(b)


def _random_value(rng: random.Random, tag: str):
    if tag == "i":
        return rng.choice([rng.randint(-(2**31), 2**31 - 1), *SPECIAL_INTS])
    if tag == "h":
        return rng.randint(-(2**63), 2**63 - 1)
    if tag == "f":
        if rng.random() < 0.2:
            return _f32(rng.choice(SPECIAL_FLOATS))
        return _f32(rng.uniform(-1e6, 1e6))
    if tag == "d":
        return rng.choice([rng.uniform(-1e300, 1e300), *SPECIAL_FLOATS])
    if tag in "sS":
        return "".join(rng.choice("abc/é♫ ") for _ in range(rng.randint(0, 9)))
    if tag == "b":
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 9)))
    if tag == "c":
        return chr(rng.randint(0, 127))
    if tag == "t":
        return rng.randint(0, 2**64 - 1)
    if tag == "r":
        return rng.randint(0, 2**32 - 1)
    if tag == "m":
        return tuple(rng.randrange(256) for _ in range(4))
    return {"T": True, "F": False, "N": None, "I": IMPULSE}[tag]


def _random_message(rng: random.Random) -> tuple[bytes, OscMessage]:
    address = "/" + "/".join(
        rng.choice(["soundscape", "input", "danger", "x", "a1", "é"])
        for _ in range(rng.randint(1, 4))
    )
    tags: list[str] = []
    args: list = []
    for _ in range(rng.randint(0, 6)):
        if rng.random() < 0.1:
            inner_tags = rng.choices("ifsTN", k=rng.randint(0, 3))
            tags += ["[", *inner_tags, "]"]
            args.append([_random_value(rng, t) for t in inner_tags])
        else:
            tag = rng.choice("ifsbhdtTFNIScrm")
            tags.append(tag)
            args.append(_random_value(rng, tag))
    typetags = "".join(tags)
    return encode_message(address, args, typetags), OscMessage(
        address, typetags, tuple(args), None
    )


def _random_packet(rng: random.Random, depth: int = 0) -> tuple[bytes, list]:
    if depth >= 3 or rng.random() < 0.6:
        data, message = _random_message(rng)
        return data, [message]
    timetag = rng.choice([1, unix_to_ntp(1.7e9 + rng.random() * 1e6)])
    parts, expected = [], []
    for _ in range(rng.randint(1, 4)):
        data, messages = _random_packet(rng, depth + 1)
        parts.append(data)
        expected += messages
    return encode_bundle(parts, timetag), expected


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buffer = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        if not buffer:
            break
        if choice < 0.4:
            buffer[rng.randrange(len(buffer))] = rng.randrange(256)
        elif choice < 0.7 and len(buffer) >= 4:
            # Sizes and lengths live in aligned int32s: hit them with edge values.
            at = rng.randrange(len(buffer) // 4) * 4
            buffer[at : at + 4] = struct.pack(">i", rng.choice(SPECIAL_INTS))
        elif choice < 0.85:
            at = rng.randrange(len(buffer))
            del buffer[at : at + rng.choice([1, 4])]
        else:
            at = rng.randrange(len(buffer))
            buffer[at:at] = bytes(rng.randrange(256) for _ in range(rng.choice([1, 4])))
    return bytes(buffer)


def test_parser_survives_100k_fuzzed_datagrams():
    rng = random.Random(20261123)
    corpus = [_random_packet(rng) for _ in range(400)]
    outcomes = {"valid": 0, "parsed": 0, "refused": 0}
    for i in range(N_DATAGRAMS):
        kind = i % 10
        data, expected = corpus[rng.randrange(len(corpus))]
        if kind < 2:
            pass  # valid as encoded
        elif kind < 4:
            data = data[: rng.randrange(len(data))]
            expected = None
        elif kind < 8:
            data = _mutate(rng, data)
            expected = None
        else:
            head = rng.choice([b"", b"/", b"#bundle\x00", b"#bundle\x00" + bytes(8)])
            tail = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 48)))
            data = head + tail
            expected = None
        try:
            messages = parse(data)
        except OscError as error:
            assert expected is None, f"valid datagram refused: {error}"
            assert isinstance(error.reason, str) and error.reason
            outcomes["refused"] += 1
            continue
        if expected is not None:
            assert len(messages) == len(expected)
            for got, want in zip(messages, expected, strict=True):
                assert got.address == want.address
                assert got.typetags == want.typetags
                assert _same(got.args, want.args), (got.args, want.args)
            outcomes["valid"] += 1
            continue
        outcomes["parsed"] += 1
        for message in messages:
            assert isinstance(message, OscMessage)
            assert message.address.startswith("/")
            again = parse(
                encode_message(message.address, message.args, message.typetags)
            )
            assert _same(again[0].args, message.args)
            assert again[0].typetags == message.typetags
    # The mix reached every path: valid, refused, and mutated-but-still-valid.
    assert outcomes["valid"] == N_DATAGRAMS // 5
    assert outcomes["refused"] > N_DATAGRAMS // 2
    assert outcomes["parsed"] > 100
