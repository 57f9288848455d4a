"""The OSC codec: round trips with python-osc in both directions, liblo's oscdump
reading our datagrams, every malformation refused with a reason and an offset
(python-osc's failure cases included), NTP timetags, and SLIP framing."""

from __future__ import annotations

import math
import re
import socket
import struct
import time

import pytest
from pythonosc import slip as pythonosc_slip
from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_bundle_builder import OscBundleBuilder
from pythonosc.osc_message import OscMessage as PyOscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

from engine.control.osc_wire import (
    IMMEDIATELY,
    IMPULSE,
    NTP_UNIX_OFFSET_S,
    LengthPrefixDecoder,
    OscError,
    OscLimits,
    OscMessage,
    SlipDecoder,
    encode_bundle,
    encode_message,
    length_prefix_encode,
    ntp_to_unix,
    parse,
    slip_encode,
    stream_decoder,
    unix_to_ntp,
)


def f32(value: float) -> float:
    return struct.unpack(">f", struct.pack(">f", value))[0]


# (typetags, args) that python-osc can build and parse too.
SHARED_CASES = [
    ("", []),
    ("i", [-(2**31)]),
    ("ifs", [7, 0.1, "hello"]),
    ("s", ["ünïcødé ♫"]),
    ("sss", ["", "abc", "abcd"]),  # every padding length
    ("hd", [-(2**62), 1e-300]),
    ("b", [b"\x00\xff\x10"]),
    ("TFN", [True, False, None]),
    ("r", [0xFF00FF00]),
    ("m", [(0, 0x90, 60, 127)]),
    ("i[fs[i]]T", [1, [0.5, "x", [3]], True]),
    ("f", [float("inf")]),
]


def _same(a, b) -> bool:
    """Equal, counting NaN as equal to NaN, lists and tuples as sequences."""
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return a == b and type(a) is type(b)


@pytest.mark.parametrize(("typetags", "args"), SHARED_CASES)
def test_our_datagrams_parse_in_python_osc(typetags, args):
    data = encode_message("/soundscape/test", args, typetags)
    theirs = PyOscMessage(data)
    assert theirs.address == "/soundscape/test"
    expected = [f32(a) if t == "f" else a for t, a in zip(typetags, args, strict=False)]
    if "[" not in typetags:
        assert _same(list(theirs.params), expected)
    else:
        assert _same(theirs.params, [1, [0.5, "x", [3]], True])


@pytest.mark.parametrize(("typetags", "args"), SHARED_CASES)
def test_python_osc_datagrams_parse_here(typetags, args):
    builder = OscMessageBuilder("/soundscape/test")
    # Arrays are inferred by python-osc: only top-level tags are given.
    tags = iter(re.sub(r"\[.*\]", "", typetags))

    def add(values):
        for value in values:
            if isinstance(value, list):
                builder.add_arg(value)  # python-osc infers nested arrays
            else:
                builder.add_arg(value, next(tags))

    add(args)
    (message,) = parse(builder.build().dgram)
    assert message.address == "/soundscape/test"
    assert message.typetags == typetags
    if "[" not in typetags:
        expected = [
            f32(a) if t == "f" else a for t, a in zip(typetags, args, strict=True)
        ]
        assert _same(message.args, expected)
    assert message.timetag is None


def test_python_osc_bundles_flatten_with_their_timetags():
    now_s = time.time()
    inner = OscBundleBuilder(now_s + 2.0)
    inner.add_content(OscMessageBuilder("/inner").build())
    outer = OscBundleBuilder(now_s + 1.0)
    builder = OscMessageBuilder("/outer")
    builder.add_arg(1)
    outer.add_content(builder.build())
    outer.add_content(inner.build())
    messages = parse(outer.build().dgram)
    assert [m.address for m in messages] == ["/outer", "/inner"]
    assert messages[0].time_s == pytest.approx(now_s + 1.0, abs=1e-6)
    assert messages[1].time_s == pytest.approx(now_s + 2.0, abs=1e-6)


def test_our_bundles_parse_in_python_osc():
    stamp_s = 1_700_000_000.25
    data = encode_bundle(
        [encode_message("/a", [1]), encode_bundle([encode_message("/b", ["x"])])],
        unix_to_ntp(stamp_s),
    )
    bundle = OscBundle(data)
    assert bundle.timestamp == pytest.approx(stamp_s, abs=1e-6)
    contents = list(bundle)
    assert contents[0].address == "/a" and contents[0].params == [1]
    assert isinstance(contents[1], OscBundle)
    assert next(iter(contents[1])).params == ["x"]


def test_types_python_osc_lacks_round_trip_byte_for_byte():
    args = ["sym", "c", unix_to_ntp(1.5e9), IMPULSE, [1, [2.5]], b"abcde", b""]
    data = encode_message("/x", args, "SctI[i[d]]bb")
    (message,) = parse(data)
    assert message.typetags == "SctI[i[d]]bb"
    assert message.args == (
        "sym",
        "c",
        unix_to_ntp(1.5e9),
        IMPULSE,
        [1, [2.5]],
        b"abcde",
        b"",
    )
    assert encode_message(message.address, message.args, message.typetags) == data


def test_inferred_types():
    (message,) = parse(encode_message("/x", [1, 2**40, 0.5, "s", b"b", True, None]))
    assert message.typetags == "ihfsbTN"


@pytest.mark.parametrize(
    ("typetags", "args", "reason"),
    [
        ("i", [2**31], "'i' needs an integer"),
        ("f", ["x"], "'f' needs a number"),
        ("f", [1e300], "does not fit a float32"),
        ("s", ["a\x00b"], "NUL"),
        ("c", ["é"], "one ASCII character"),
        ("ii", [1], "more tags than values"),
        ("i", [1, 2], "more values than tags"),
        ("[i", [[1]], re.escape("'[' without ']'")),
        ("T", [False], "'T' needs True"),
    ],
)
def test_encoder_refuses_values_that_do_not_fit(typetags, args, reason):
    with pytest.raises(ValueError, match=reason):
        encode_message("/x", args, typetags)


def test_encoder_refuses_address_without_slash():
    with pytest.raises(ValueError, match="does not start with '/'"):
        encode_message("x", [])


# --- malformed datagrams ------------------------------------------------------

MESSAGE = encode_message("/ab", [1], "i")  # /ab\0 ,i\0\0 <int>


def _bundle_with_element_size(size: int) -> bytes:
    return b"#bundle\x00" + struct.pack(">Q", 1) + struct.pack(">i", size) + MESSAGE


def _nested_bundles(depth: int) -> bytes:
    data = MESSAGE
    for _ in range(depth):
        data = encode_bundle([data])
    return data


MALFORMED = [
    ("empty", b"", "empty datagram", 0),
    ("size not /4", MESSAGE[:-1], "not a multiple of 4", 11),
    ("no NUL", b"/abcdefg", "no terminating NUL", 0),
    ("bad padding", b"/ab\x00,i\x00x" + b"\x00" * 4, "padding is not zero", 7),
    ("bad UTF-8 address", b"/a\xff\x00,\x00\x00\x00", "address is not valid UTF-8", 2),
    (
        "bad UTF-8 string",
        b"/a\x00\x00,s\x00\x00\xc3\x28\x00\x00",
        "string argument is not valid UTF-8",
        8,
    ),
    ("no slash", b"ab\x00\x00,\x00\x00\x00", "does not start with '/'", 0),
    ("no type tags", b"/ab\x00", "no type tag string", 4),
    (
        "missing comma",
        b"/ab\x00i\x00\x00\x00" + b"\x00" * 4,
        "does not start with ','",
        4,
    ),
    (
        "unknown tag",
        encode_message("/ab", [1], "i").replace(b",i", b",x"),
        "unknown type",
        8,
    ),
    ("truncated int", MESSAGE[:-4], "'i' argument is truncated", 8),
    ("trailing bytes", MESSAGE + b"\x00" * 4, "4 bytes after the last argument", 12),
    (
        "negative blob",
        b"/ab\x00,b\x00\x00" + struct.pack(">i", -4),
        "negative blob size -4",
        8,
    ),
    (
        "truncated blob",
        b"/ab\x00,b\x00\x00" + struct.pack(">i", 100) + b"\x00" * 4,
        "blob of 100 bytes is truncated",
        8,
    ),
    (
        "']' alone",
        encode_message("/ab", [], "").replace(b",\x00", b",]"),
        "']' without",
        8,
    ),
    ("'[' alone", b"/ab\x00,[\x00\x00", re.escape("'[' without ']'"), 8),
    ("char not ASCII", b"/ab\x00,c\x00\x00\x00\x00\x00\xe9", "not 7-bit ASCII", 8),
    ("negative element size", _bundle_with_element_size(-12), "is not positive", 16),
    ("zero element size", _bundle_with_element_size(0), "is not positive", 16),
    ("element size not /4", _bundle_with_element_size(6), "not a multiple of 4", 16),
    ("element overruns", _bundle_with_element_size(400), "overruns its bundle", 16),
    (
        "truncated bundle header",
        b"#bundle\x00\x00\x00\x00\x00",
        "header is truncated",
        0,
    ),
    # The ninth bundle starts at 8 * (16-byte header + 4-byte element size).
    ("nested 1000 deep", _nested_bundles(1000), "nested deeper than 8", 160),
    ("element in bundle is junk", encode_bundle([b"junk"]), "no terminating NUL", 20),
]


@pytest.mark.parametrize(
    ("data", "reason", "offset"),
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
def test_malformed_datagrams_raise_osc_error_with_reason_and_offset(
    data, reason, offset
):
    started_s = time.perf_counter()
    with pytest.raises(OscError, match=reason) as caught:
        parse(data)
    assert caught.value.offset == offset
    # python-osc loops forever on some of these; here each returns at once
    # (a generous bound: the point is "returns", not how fast).
    assert time.perf_counter() - started_s < 1.0


def test_limits_are_enforced():
    tight = OscLimits(
        max_datagram_bytes=64,
        max_messages=2,
        max_string_bytes=8,
        max_args=5,
        max_array_depth=1,
        max_blob_bytes=4,
    )
    cases = [
        (b"/" + b"a" * 67, "over the limit of 64"),
        (encode_bundle([MESSAGE] * 3), "more than 2 bundle elements"),
        (encode_message("/abcdefghijk", []), "address longer than 8"),
        (encode_message("/a", ["x" * 20]), "longer than 8 bytes"),
        (encode_message("/a", [1] * 6), "type tag string longer"),
        (encode_message("/a", [[[1]]]), "arrays nested deeper than 1"),
        (encode_message("/a", [b"12345"]), "blob of 5 bytes is over"),
    ]
    for data, reason in cases:
        with pytest.raises(OscError, match=reason):
            parse(data, tight)
    assert parse(encode_bundle([MESSAGE] * 2), tight)


def test_large_valid_datagram_is_parsed_whole():
    # python-osc's server reads at most 8192 bytes and silently cuts the rest.
    messages = [
        encode_message(f"/soundscape/layer/{i}/gain_db", [i * 0.5]) for i in range(200)
    ]
    data = encode_bundle(messages)
    assert len(data) > 8192
    parsed = parse(data)
    assert len(parsed) == 200
    assert parsed[-1].args == (99.5,)


# --- timetags -----------------------------------------------------------------


def test_ntp_conversions():
    assert unix_to_ntp(0.0) == NTP_UNIX_OFFSET_S << 32
    assert unix_to_ntp(0.5) == (NTP_UNIX_OFFSET_S << 32) | 0x8000_0000
    assert unix_to_ntp(-NTP_UNIX_OFFSET_S) == 0
    assert ntp_to_unix((NTP_UNIX_OFFSET_S + 10) << 32 | 0x4000_0000) == 10.25
    # A fraction that rounds up to a whole second carries.
    assert unix_to_ntp(1.0 - 1e-12) == (NTP_UNIX_OFFSET_S + 1) << 32
    for seconds in (1_700_000_000.123456, 2_000_000_000.999):
        assert ntp_to_unix(unix_to_ntp(seconds)) == pytest.approx(seconds, abs=1e-9)
    for bad in (float("nan"), float("inf"), 3e9, -3e9):
        with pytest.raises(ValueError, match="timetag"):
            unix_to_ntp(bad)


def test_bundle_timetags_immediately_and_nesting():
    later, earlier = unix_to_ntp(2e9), unix_to_ntp(1.9e9)
    message = encode_message("/m")
    assert parse(encode_bundle([message], IMMEDIATELY))[0].timetag is None
    assert parse(encode_bundle([message], later))[0].timetag == later
    # An inner bundle runs no earlier than its outer one, and an immediate
    # inner bundle inherits the outer time.
    nested = encode_bundle(
        [encode_bundle([message], earlier), encode_bundle([message], IMMEDIATELY)],
        later,
    )
    assert [m.timetag for m in parse(nested)] == [later, later]
    assert parse(encode_bundle([encode_bundle([message], later)]))[0].timetag == later
    far = parse(encode_bundle([message], unix_to_ntp(time.time() + 86400 * 365)))
    assert far[0].time_s > time.time() + 86400 * 300


def test_message_time_s():
    assert OscMessage("/a", "", (), None).time_s is None
    assert OscMessage("/a", "", (), unix_to_ntp(12.5)).time_s == 12.5


# --- SLIP ---------------------------------------------------------------------

PACKETS = [
    encode_message("/a", [1]),
    b"\xc0\xdb\xdc\xdd" * 3,
    encode_message("/b", [b"\xc0\xc0\xdb", "x"]),
    b"\xdb\xdb\xc0\xc0",
]


def test_slip_encoding_matches_python_osc():
    for packet in PACKETS:
        assert slip_encode(packet) == pythonosc_slip.encode(packet)


def test_slip_frames_survive_any_split():
    stream = b"".join(slip_encode(p) for p in PACKETS)
    for cut in range(len(stream) + 1):
        decoder = SlipDecoder()
        frames = decoder.feed(stream[:cut]) + decoder.feed(stream[cut:])
        assert frames == PACKETS
    decoder = SlipDecoder()
    one_by_one = [
        f for i in range(len(stream)) for f in decoder.feed(stream[i : i + 1])
    ]
    assert one_by_one == PACKETS


def test_slip_bad_escape_is_an_error_in_place_and_the_stream_goes_on():
    decoder = SlipDecoder()
    stream = slip_encode(b"good") + b"\xc0ab\xdbxcd\xc0" + slip_encode(b"next")
    frames = decoder.feed(stream)
    assert frames[0] == b"good" and frames[2] == b"next"
    assert isinstance(frames[1], OscError)
    assert "escape" in frames[1].reason and frames[1].offset == 7
    trailing = decoder.feed(b"\xc0abc\xdb\xc0")  # escape as the last byte
    assert len(trailing) == 1 and isinstance(trailing[0], OscError)


def test_slip_oversize_frames_are_dropped_and_memory_stays_bounded():
    decoder = SlipDecoder(max_frame_bytes=16)
    frames = decoder.feed(slip_encode(b"x" * 17) + slip_encode(b"ok"))
    assert isinstance(frames[0], OscError) and "longer than 16" in frames[0].reason
    assert frames[1:] == [b"ok"]
    # A frame that never ends is cut off once it cannot fit, not buffered.
    errors = []
    for _ in range(100):
        errors += decoder.feed(b"y" * 10)
    assert len(errors) == 1 and isinstance(errors[0], OscError)
    assert len(decoder._buffer) <= 2 * 16 + 10
    assert decoder.feed(b"tail-of-long\xc0" + slip_encode(b"again")) == [b"again"]


def test_slip_empty_frames_are_skipped():
    assert SlipDecoder().feed(b"\xc0\xc0\xc0abcd\xc0\xc0") == [b"abcd"]


# --- liblo reads our datagrams ------------------------------------------------


def test_oscdump_reads_our_messages(oscdump):
    cases = [
        ("i", [-5], "i -5"),
        ("f", [2.5], "f 2.500000"),
        ("s", ["hé"], 's "hé"'),
        ("h", [2**40], "h 1099511627776"),
        ("d", [0.25], "d 0.250000"),
        ("c", ["q"], "c 'q'"),
        ("TFN", [True, False, None], "TFN #T #F Nil"),
        ("I", [IMPULSE], "I Infinitum"),
        ("b", [b"xyz"], "b [3b 0x78 0x79 0x7a]"),
        ("m", [(1, 0x90, 60, 127)], "m MIDI [0x01 0x90 0x3c 0x7f]"),
        ("S", ["sym"], "S 'sym"),
        ("ifs", [1, 0.5, "x"], 'ifs 1 0.500000 "x"'),
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for i, (typetags, args, _) in enumerate(cases):
            sock.sendto(
                encode_message(f"/t/{i}", args, typetags), ("127.0.0.1", oscdump.port)
            )
        lines = oscdump.lines(len(cases))
    assert len(lines) == len(cases), lines
    for i, ((_, _, expected), line) in enumerate(zip(cases, lines, strict=True)):
        # "<timetag> /t/i <typetags> <values>"
        assert line.split(" ", 1)[1] == f"/t/{i} {expected}"


def test_oscdump_reads_our_bundles_and_timetag(oscdump):
    stamp_s = 1_700_000_000.5
    bundle = encode_bundle(
        [encode_message("/x", [1]), encode_message("/y", ["z"])], unix_to_ntp(stamp_s)
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(bundle, ("127.0.0.1", oscdump.port))
        lines = oscdump.lines(2)
    ntp = unix_to_ntp(stamp_s)
    stamp = f"{ntp >> 32:08x}.{ntp & 0xFFFFFFFF:08x}"
    assert lines == [f"{stamp} /x i 1", f'{stamp} /y s "z"']


def test_oscdump_reads_our_slip_frames_over_tcp(oscdump_tcp):
    with socket.create_connection(("127.0.0.1", oscdump_tcp.port), timeout=5) as conn:
        conn.sendall(slip_encode(encode_message("/tcp", [1, "a"])))
        conn.sendall(slip_encode(encode_message("/tcp2", [2.5])))
        lines = oscdump_tcp.lines(2)
    assert [line.split(" ", 1)[1] for line in lines] == [
        '/tcp is 1 "a"',
        "/tcp2 f 2.500000",
    ]


# --- OSC 1.0 size-prefixed streams --------------------------------------------


def test_length_prefixed_stream_splits_anywhere():
    stream = b"".join(length_prefix_encode(p) for p in PACKETS)
    for cut in range(len(stream) + 1):
        decoder = LengthPrefixDecoder()
        assert decoder.feed(stream[:cut]) + decoder.feed(stream[cut:]) == PACKETS


@pytest.mark.parametrize("size", [-4, 0, 65])
def test_length_prefixed_stream_with_a_bad_size_breaks(size):
    decoder = LengthPrefixDecoder(max_frame_bytes=64)
    frames = decoder.feed(
        length_prefix_encode(b"good") + struct.pack(">i", size) + b"x"
    )
    assert frames[0] == b"good"
    assert isinstance(frames[1], OscError) and frames[1].offset == 8
    assert decoder.broken and decoder.feed(length_prefix_encode(b"more")) == []


def test_stream_decoder_is_chosen_by_the_first_byte():
    assert isinstance(stream_decoder(0x00, 100), LengthPrefixDecoder)
    for first in (0xC0, ord("/"), ord("#")):
        assert isinstance(stream_decoder(first, 100), SlipDecoder)
