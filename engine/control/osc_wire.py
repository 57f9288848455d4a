"""OSC 1.0/1.1 on the wire: a strict, bounded parser, encoders, NTP timetags, and
the two framings of OSC over TCP (SLIP for OSC 1.1, size prefixes for 1.0).

Everything a datagram can say is checked, and anything wrong raises
:class:`OscError` with the reason and the byte offset; no other exception
leaves :func:`parse`, and its cost is linear in the datagram's size. Bundles are
flattened with an explicit stack (no recursion), with hard limits on size,
nesting, element count, string length and array nesting (:class:`OscLimits`).

    >>> data = encode_message("/soundscape/input/danger", [0.5])
    >>> parse(data)
    [OscMessage(address='/soundscape/input/danger', typetags='f', args=(0.5,), \
timetag=None)]

Argument types and the Python values they parse to (``encode_message`` takes
the same values back):

====  ===================================  ==================================
tag   OSC type                             Python value
====  ===================================  ==================================
i     int32                                int
h     int64                                int
f     float32                              float
d     float64                              float
s S   string, symbol (UTF-8)               str
c     ASCII character (in an int32)        str of length 1
b     blob                                 bytes
t     NTP timetag                          int (64-bit NTP, see ntp_to_unix)
r     RGBA colour                          int (0xRRGGBBAA)
m     MIDI (port, status, data1, data2)    tuple of 4 ints
T F   true, false (no bytes)               True, False
N     nil (no bytes)                       None
I     impulse / infinitum (no bytes)       IMPULSE
[ ]   array                                list
====  ===================================  ==================================

Called from the OSC receive threads and any control thread; pure functions and
per-connection :class:`SlipDecoder` objects (one thread per decoder).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = [
    "DEFAULT_LIMITS",
    "IMMEDIATELY",
    "IMPULSE",
    "NTP_UNIX_OFFSET_S",
    "SLIP_END",
    "SLIP_ESC",
    "SLIP_ESC_END",
    "SLIP_ESC_ESC",
    "LengthPrefixDecoder",
    "OscError",
    "OscLimits",
    "OscMessage",
    "SlipDecoder",
    "encode_bundle",
    "encode_message",
    "length_prefix_encode",
    "ntp_to_unix",
    "parse",
    "slip_encode",
    "stream_decoder",
    "unix_to_ntp",
]

# The timetag whose 63 high bits are zero and lowest bit one: "immediately".
IMMEDIATELY = 1
# Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01).
NTP_UNIX_OFFSET_S = 2_208_988_800
_FRACTION = 1 << 32

_BUNDLE_TAG = b"#bundle\x00"
_ZERO_PAD = (b"", b"\x00", b"\x00\x00", b"\x00\x00\x00")


class OscError(ValueError):
    """A datagram (or SLIP frame) that is not valid OSC.

    ``reason`` says what was wrong, ``offset`` where (bytes from the start of the
    datagram; ``None`` when it is not about one place). ``str(error)`` reads
    ``offset 24: string argument is not valid UTF-8``.
    """

    def __init__(self, reason: str, offset: int | None = None) -> None:
        self.reason = reason
        self.offset = offset
        super().__init__(reason if offset is None else f"offset {offset}: {reason}")


class _Impulse:
    """The OSC 1.1 impulse (``I``, "infinitum" in OSC 1.0): an event, no value."""

    def __repr__(self) -> str:
        return "IMPULSE"

    def __reduce__(self) -> str:
        return "IMPULSE"


IMPULSE = _Impulse()


@dataclass(frozen=True)
class OscLimits:
    """Hard limits on what one datagram may hold; beyond them it is refused.

    The defaults bound the parse of the largest datagram the server accepts to
    about a millisecond of pure Python, and are far above what any game engine,
    bridge or tool sends (a few messages of a few arguments).
    """

    max_datagram_bytes: int = 65_507  # the largest UDP payload over IPv4
    max_bundle_depth: int = 8
    max_messages: int = 256
    max_string_bytes: int = 1024  # addresses, type tags, strings and symbols
    max_args: int = 128  # type tags per message, brackets included
    max_array_depth: int = 4
    max_blob_bytes: int = 16_384


DEFAULT_LIMITS = OscLimits()


class OscMessage(NamedTuple):
    """One message, with the timetag of the bundle that carried it.

    ``typetags`` has no leading comma. ``timetag`` is the 64-bit NTP time of the
    innermost enclosing bundle (an inner bundle never runs before its outer
    one, so the later of the two counts), or ``None`` for "as soon as possible":
    a message outside any bundle, or a bundle stamped ``IMMEDIATELY``.
    """

    address: str
    typetags: str
    args: tuple[Any, ...]
    timetag: int | None = None

    @property
    def time_s(self) -> float | None:
        """The timetag as Unix seconds, or ``None`` for immediately."""
        return None if self.timetag is None else ntp_to_unix(self.timetag)


# --- NTP timetags -------------------------------------------------------------


def ntp_to_unix(ntp: int) -> float:
    """Unix seconds of a 64-bit NTP timetag (era 0: 1900 to 2036).

    >>> ntp_to_unix(unix_to_ntp(1_700_000_000.25))
    1700000000.25
    """
    return (ntp >> 32) - NTP_UNIX_OFFSET_S + (ntp & 0xFFFF_FFFF) / _FRACTION


def unix_to_ntp(seconds: float) -> int:
    """64-bit NTP timetag of Unix ``seconds`` (rounded to 1/2**32 s).

    Raises ValueError outside NTP era 0 (1900-01-01 to 2036-02-07) or for a
    non-finite value.
    """
    if not math.isfinite(seconds):
        raise ValueError(f"timetag: {seconds!r} is not a finite time")
    whole = math.floor(seconds)
    fraction = round((seconds - whole) * _FRACTION)
    if fraction == _FRACTION:  # rounding carried into the next second
        whole, fraction = whole + 1, 0
    ntp_seconds = whole + NTP_UNIX_OFFSET_S
    if not 0 <= ntp_seconds < _FRACTION:
        raise ValueError(f"timetag: {seconds!r} is outside NTP era 0 (1900-2036)")
    return (ntp_seconds << 32) | fraction


# --- parser -------------------------------------------------------------------

_INT32 = struct.Struct(">i")
_UINT32 = struct.Struct(">I")
_INT64 = struct.Struct(">q")
_UINT64 = struct.Struct(">Q")
_FLOAT32 = struct.Struct(">f")
_FLOAT64 = struct.Struct(">d")

# Types with a fixed size: tag -> (struct, size).
_FIXED = {
    "i": (_INT32, 4),
    "f": (_FLOAT32, 4),
    "r": (_UINT32, 4),
    "h": (_INT64, 8),
    "d": (_FLOAT64, 8),
    "t": (_UINT64, 8),
}
# Types with no bytes: tag -> value.
_EMPTY = {"T": True, "F": False, "N": None, "I": IMPULSE}
_KNOWN_TAGS = frozenset("ifrhdtTFNIsSbcm[]")


def _read_string(
    data: bytes, pos: int, end: int, max_bytes: int, what: str
) -> tuple[str, int]:
    """A NUL-terminated, zero-padded UTF-8 string at 4-aligned ``pos``."""
    nul = data.find(b"\x00", pos, min(end, pos + max_bytes + 1))
    if nul < 0:
        if end - pos > max_bytes:
            raise OscError(f"{what} longer than {max_bytes} bytes", pos)
        raise OscError(f"{what} has no terminating NUL (truncated)", pos)
    after = (nul + 4) & ~3
    if after > end:
        raise OscError(f"{what} padding is truncated", nul)
    if data[nul + 1 : after] != _ZERO_PAD[after - nul - 1]:
        raise OscError(f"{what} padding is not zero bytes", nul + 1)
    try:
        text = data[pos:nul].decode("utf-8")
    except UnicodeDecodeError as error:
        raise OscError(f"{what} is not valid UTF-8", pos + error.start) from None
    return text, after


def _parse_message(
    data: bytes, pos: int, end: int, timetag: int | None, limits: OscLimits
) -> OscMessage:
    address, pos = _read_string(data, pos, end, limits.max_string_bytes, "address")
    if not address.startswith("/"):
        raise OscError(f"address {address[:40]!r} does not start with '/'", 0)
    if pos >= end:
        raise OscError(f"{address}: no type tag string", pos)
    if data[pos] != 0x2C:  # ','
        raise OscError(f"{address}: type tag string does not start with ','", pos)
    tags, pos = _read_string(data, pos, end, limits.max_args + 1, "type tag string")
    tags = tags[1:]
    if not _KNOWN_TAGS.issuperset(tags):
        bad = next(t for t in tags if t not in _KNOWN_TAGS)
        raise OscError(f"{address}: unknown type tag {bad!r}", pos)
    args: list[Any] = []
    arrays: list[list[Any]] = []  # open arrays, innermost last
    current = args
    for tag in tags:
        fixed = _FIXED.get(tag)
        if fixed is not None:
            codec, size = fixed
            if pos + size > end:
                raise OscError(f"{address}: '{tag}' argument is truncated", pos)
            current.append(codec.unpack_from(data, pos)[0])
            pos += size
        elif tag in _EMPTY:
            current.append(_EMPTY[tag])
        elif tag == "s" or tag == "S":
            text, pos = _read_string(
                data, pos, end, limits.max_string_bytes, f"{address}: string argument"
            )
            current.append(text)
        elif tag == "b":
            if pos + 4 > end:
                raise OscError(f"{address}: blob size is truncated", pos)
            size = _INT32.unpack_from(data, pos)[0]
            if size < 0:
                raise OscError(f"{address}: negative blob size {size}", pos)
            if size > limits.max_blob_bytes:
                raise OscError(
                    f"{address}: blob of {size} bytes is over the limit of "
                    f"{limits.max_blob_bytes}",
                    pos,
                )
            start = pos + 4
            after = start + ((size + 3) & ~3)
            if after > end:
                raise OscError(f"{address}: blob of {size} bytes is truncated", pos)
            if data[start + size : after] != _ZERO_PAD[after - start - size]:
                raise OscError(
                    f"{address}: blob padding is not zero bytes", start + size
                )
            current.append(data[start : start + size])
            pos = after
        elif tag == "c" or tag == "m":
            if pos + 4 > end:
                raise OscError(f"{address}: '{tag}' argument is truncated", pos)
            if tag == "m":
                current.append(tuple(data[pos : pos + 4]))
            else:
                code = _UINT32.unpack_from(data, pos)[0]
                if code > 0x7F:
                    raise OscError(
                        f"{address}: character {code:#x} is not 7-bit ASCII", pos
                    )
                current.append(chr(code))
            pos += 4
        elif tag == "[":
            if len(arrays) >= limits.max_array_depth:
                raise OscError(
                    f"{address}: arrays nested deeper than {limits.max_array_depth}",
                    pos,
                )
            inner: list[Any] = []
            current.append(inner)
            arrays.append(current)
            current = inner
        else:  # "]"
            if not arrays:
                raise OscError(f"{address}: ']' without '[' in type tags", pos)
            current = arrays.pop()
    if arrays:
        raise OscError(f"{address}: '[' without ']' in type tags", pos)
    if pos != end:
        raise OscError(f"{address}: {end - pos} bytes after the last argument", pos)
    return OscMessage(address, tags, tuple(args), timetag)


def parse(data: bytes, limits: OscLimits = DEFAULT_LIMITS) -> list[OscMessage]:
    """Every message of an OSC packet (a message or a bundle), in order.

    Bundles are flattened: each message carries the timetag of the bundle that
    held it (see :class:`OscMessage`). Raises :class:`OscError` for anything
    that is not valid OSC or breaks ``limits``, and nothing else.

    >>> parse(encode_bundle([encode_message("/a", [1])], timetag=IMMEDIATELY))
    [OscMessage(address='/a', typetags='i', args=(1,), timetag=None)]
    """
    if not isinstance(data, bytes):
        data = bytes(data)
    size = len(data)
    if size > limits.max_datagram_bytes:
        raise OscError(
            f"datagram of {size} bytes is over the limit of "
            f"{limits.max_datagram_bytes}",
            0,
        )
    if size == 0:
        raise OscError("empty datagram", 0)
    if size % 4:
        raise OscError(f"datagram of {size} bytes is not a multiple of 4", size)
    if not data.startswith(_BUNDLE_TAG):
        return [_parse_message(data, 0, size, None, limits)]

    messages: list[OscMessage] = []
    elements = 0
    # Open bundles, innermost last: (end offset, effective timetag). An inner
    # bundle ends exactly where its element ends, which is where its parent's
    # next element starts, so popping needs no saved position.
    stack = [(size, _bundle_timetag(data, 0, size, None, 0, limits))]
    pos = 16
    while stack:
        end, timetag = stack[-1]
        if pos == end:
            stack.pop()
            continue
        if pos + 4 > end:
            raise OscError("bundle element size is truncated", pos)
        element_size = _INT32.unpack_from(data, pos)[0]
        if element_size <= 0:
            raise OscError(f"bundle element size {element_size} is not positive", pos)
        if element_size % 4:
            raise OscError(
                f"bundle element size {element_size} is not a multiple of 4", pos
            )
        start = pos + 4
        element_end = start + element_size
        if element_end > end:
            raise OscError(
                f"bundle element of {element_size} bytes overruns its bundle", pos
            )
        elements += 1
        if elements > limits.max_messages:
            raise OscError(f"more than {limits.max_messages} bundle elements", pos)
        if data.startswith(_BUNDLE_TAG, start):
            inner = _bundle_timetag(
                data, start, element_end, timetag, len(stack), limits
            )
            stack.append((element_end, inner))
            pos = start + 16
        else:
            messages.append(_parse_message(data, start, element_end, timetag, limits))
            pos = element_end
    return messages


def _bundle_timetag(
    data: bytes,
    start: int,
    end: int,
    outer: int | None,
    depth: int,
    limits: OscLimits,
) -> int | None:
    """The effective timetag of the bundle at ``start``, checking its header."""
    if depth >= limits.max_bundle_depth:
        raise OscError(f"bundles nested deeper than {limits.max_bundle_depth}", start)
    if start + 16 > end:
        raise OscError("bundle header is truncated", start)
    tag = _UINT64.unpack_from(data, start + 8)[0]
    if tag == IMMEDIATELY or (outer is not None and tag <= outer):
        return outer
    return tag


# --- encoders -----------------------------------------------------------------


def _padded_string(text: str, what: str) -> bytes:
    raw = text.encode("utf-8")
    if b"\x00" in raw:
        raise ValueError(f"{what} {text!r} contains a NUL character")
    return raw + _ZERO_PAD[4 - len(raw) % 4] if len(raw) % 4 else raw + b"\x00" * 4


def _infer_tags(args: Sequence[Any], out: list[str]) -> None:
    # Arrays are lists: walk them with an explicit stack like the parser.
    stack = [iter(args)]
    while stack:
        value = next(stack[-1], _END)
        if value is _END:
            stack.pop()
            if stack:
                out.append("]")
            continue
        if value is True:
            out.append("T")
        elif value is False:
            out.append("F")
        elif value is None:
            out.append("N")
        elif value is IMPULSE:
            out.append("I")
        elif isinstance(value, int):
            out.append("i" if -(1 << 31) <= value < (1 << 31) else "h")
        elif isinstance(value, float):
            out.append("f")
        elif isinstance(value, str):
            out.append("s")
        elif isinstance(value, bytes | bytearray):
            out.append("b")
        elif isinstance(value, list):
            out.append("[")
            stack.append(iter(value))
        else:
            raise ValueError(
                f"cannot infer an OSC type for {value!r}: give typetags explicitly"
            )


_END = object()


def _int_in(value: Any, low: int, high: int, tag: str) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not low <= value <= high
    ):
        raise ValueError(f"'{tag}' needs an integer in {low}..{high}, got {value!r}")
    return value


def _encode_arg(tag: str, value: Any) -> bytes:
    if tag == "i":
        return _INT32.pack(_int_in(value, -(1 << 31), (1 << 31) - 1, tag))
    if tag == "h":
        return _INT64.pack(_int_in(value, -(1 << 63), (1 << 63) - 1, tag))
    if tag == "t":
        return _UINT64.pack(_int_in(value, 0, (1 << 64) - 1, tag))
    if tag == "r":
        return _UINT32.pack(_int_in(value, 0, 0xFFFF_FFFF, tag))
    if tag == "f" or tag == "d":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"'{tag}' needs a number, got {value!r}")
        try:
            return (_FLOAT32 if tag == "f" else _FLOAT64).pack(value)
        except OverflowError:
            raise ValueError(f"'{tag}': {value!r} does not fit a float32") from None
    if tag == "s" or tag == "S":
        if not isinstance(value, str):
            raise ValueError(f"'{tag}' needs a str, got {value!r}")
        return _padded_string(value, "string")
    if tag == "c":
        if not isinstance(value, str) or len(value) != 1 or ord(value) > 0x7F:
            raise ValueError(f"'c' needs one ASCII character, got {value!r}")
        return _UINT32.pack(ord(value))
    if tag == "b":
        if not isinstance(value, bytes | bytearray):
            raise ValueError(f"'b' needs bytes, got {value!r}")
        pad = -len(value) % 4
        return _INT32.pack(len(value)) + bytes(value) + _ZERO_PAD[pad]
    if tag == "m":
        if not isinstance(value, tuple | list) or len(value) != 4:
            raise ValueError(f"'m' needs 4 bytes (port, status, d1, d2), got {value!r}")
        return bytes(_int_in(v, 0, 255, tag) for v in value)
    expected = {"T": True, "F": False, "N": None, "I": IMPULSE}
    if tag in expected:
        if value is not expected[tag]:
            raise ValueError(f"'{tag}' needs {expected[tag]!r}, got {value!r}")
        return b""
    raise ValueError(f"unknown OSC type tag {tag!r}")


def encode_message(
    address: str, args: Sequence[Any] = (), typetags: str | None = None
) -> bytes:
    """The datagram of one message.

    Without ``typetags`` the types are inferred (bool T/F, None N, IMPULSE I,
    int i or h, float f, str s, bytes b, list an array). With ``typetags`` (no
    leading comma) every tag but ``[`` and ``]`` takes one value from ``args``,
    as :func:`parse` returns them, so ``encode_message(m.address, m.args,
    m.typetags)`` gives back the datagram of a parsed message ``m``.

    >>> encode_message("/x", [1, 0.5], "id").hex()
    '2f7800002c696400000000013fe0000000000000'

    Raises ValueError for an address not starting with '/', a value that does
    not fit its tag, or ``args`` and ``typetags`` that do not line up.
    """
    if not address.startswith("/"):
        raise ValueError(f"OSC address {address!r} does not start with '/'")
    if typetags is None:
        tags: list[str] = []
        _infer_tags(args, tags)
        typetags = "".join(tags)
    parts = [_padded_string(address, "address"), _padded_string("," + typetags, "")]
    stack = [iter(args)]
    for tag in typetags:
        if tag == "]":
            if len(stack) < 2:
                raise ValueError(f"typetags {typetags!r}: ']' without '['")
            if next(stack.pop(), _END) is not _END:
                raise ValueError(f"typetags {typetags!r}: array has more values")
            continue
        value = next(stack[-1], _END)
        if value is _END:
            raise ValueError(f"typetags {typetags!r}: more tags than values")
        if tag == "[":
            if not isinstance(value, list | tuple):
                raise ValueError(f"'[' needs a list, got {value!r}")
            stack.append(iter(value))
            continue
        parts.append(_encode_arg(tag, value))
    if len(stack) != 1:
        raise ValueError(f"typetags {typetags!r}: '[' without ']'")
    if next(stack[0], _END) is not _END:
        raise ValueError(f"typetags {typetags!r}: more values than tags")
    return b"".join(parts)


def encode_bundle(elements: Iterable[bytes], timetag: int = IMMEDIATELY) -> bytes:
    """The datagram of a bundle of encoded messages or bundles.

    ``timetag`` is a 64-bit NTP time (see :func:`unix_to_ntp`) or IMMEDIATELY.

    >>> len(encode_bundle([encode_message("/a")], unix_to_ntp(1e9)))
    28
    """
    parts = [_BUNDLE_TAG, _UINT64.pack(_int_in(timetag, 0, (1 << 64) - 1, "t"))]
    for element in elements:
        if len(element) % 4 or not element:
            raise ValueError(
                f"bundle element of {len(element)} bytes: not an OSC packet"
            )
        parts.append(_INT32.pack(len(element)))
        parts.append(bytes(element))
    return b"".join(parts)


# --- SLIP (RFC 1055) framing for OSC 1.1 over TCP -----------------------------

SLIP_END = 0xC0
SLIP_ESC = 0xDB
SLIP_ESC_END = 0xDC
SLIP_ESC_ESC = 0xDD
_END_BYTE = b"\xc0"
_ESC_BYTE = b"\xdb"
_ESCAPED_END = b"\xdb\xdc"
_ESCAPED_ESC = b"\xdb\xdd"


def slip_encode(packet: bytes) -> bytes:
    """One SLIP frame, with an END on both sides as OSC 1.1 asks.

    >>> slip_encode(b"a\\xc0b").hex()
    'c061dbdc62c0'
    """
    escaped = bytes(packet).replace(_ESC_BYTE, _ESCAPED_ESC)
    return _END_BYTE + escaped.replace(_END_BYTE, _ESCAPED_END) + _END_BYTE


class SlipDecoder:
    """Split a TCP byte stream into SLIP frames, whatever the chunking.

    ``feed`` returns the frames completed by the new bytes, in order; a bad
    frame (a stray escape, or longer than ``max_frame_bytes`` decoded) comes
    out as an :class:`OscError` in its place, with its offset in the stream,
    and the stream carries on at the next END. Empty frames (the double END of
    OSC 1.1) are skipped. Memory stays under about 2 * ``max_frame_bytes``.

    >>> decoder = SlipDecoder()
    >>> decoder.feed(b"\\xc0ab"), decoder.feed(b"cd\\xc0")
    ([], [b'abcd'])
    """

    def __init__(self, max_frame_bytes: int = 65_507) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()
        self._scanned = 0  # bytes of the buffer known to hold no END
        self._frame_offset = 0  # stream offset of the buffer's first byte
        self._discarding = False  # inside an over-long frame, dropping to END

    def feed(self, data: bytes) -> list[bytes | OscError]:
        """Frames (or errors in their place) completed by ``data``."""
        self._buffer += data
        frames: list[bytes | OscError] = []
        # Escaped, a frame may be twice its decoded size.
        max_escaped = 2 * self.max_frame_bytes
        while True:
            end = self._buffer.find(_END_BYTE, self._scanned)
            if end < 0:
                self._scanned = len(self._buffer)
                if self._scanned > max_escaped:
                    if not self._discarding:
                        frames.append(self._too_long())
                        self._discarding = True
                    self._frame_offset += self._scanned
                    self._buffer.clear()
                    self._scanned = 0
                return frames
            escaped = bytes(self._buffer[:end])
            offset = self._frame_offset
            del self._buffer[: end + 1]
            self._frame_offset += end + 1
            self._scanned = 0
            if self._discarding:
                self._discarding = False
                continue
            if not escaped:
                continue
            n_escapes = escaped.count(_ESC_BYTE)
            if n_escapes:
                valid = escaped.count(_ESCAPED_END) + escaped.count(_ESCAPED_ESC)
                if valid != n_escapes:
                    frames.append(
                        OscError(
                            "SLIP escape byte not followed by 0xDC or 0xDD", offset
                        )
                    )
                    continue
                # Every 0xDB starts an escape pair, so the replacements cannot
                # meet across pair boundaries; 0xDB 0xDC first, then 0xDB 0xDD.
                escaped = escaped.replace(_ESCAPED_END, _END_BYTE).replace(
                    _ESCAPED_ESC, _ESC_BYTE
                )
            if len(escaped) > self.max_frame_bytes:
                frames.append(self._too_long(offset))
                continue
            frames.append(escaped)

    def _too_long(self, offset: int | None = None) -> OscError:
        return OscError(
            f"SLIP frame longer than {self.max_frame_bytes} bytes",
            self._frame_offset if offset is None else offset,
        )


# --- OSC 1.0 over TCP: packets prefixed with their int32 size -----------------


def length_prefix_encode(packet: bytes) -> bytes:
    """A packet framed as OSC 1.0 streams do: its size as an int32, then it.

    >>> length_prefix_encode(b"/a\\x00\\x00").hex()
    '000000042f610000'
    """
    return _INT32.pack(len(packet)) + bytes(packet)


class LengthPrefixDecoder:
    """Split an OSC 1.0 stream (int32 size, packet, ...) into packets.

    Same interface as :class:`SlipDecoder`. A size that is negative or over
    ``max_frame_bytes`` leaves no way to find the next packet: it comes out as
    an :class:`OscError` and ``broken`` is set, and the connection should close.
    """

    def __init__(self, max_frame_bytes: int = 65_507) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.broken = False
        self._buffer = bytearray()
        self._offset = 0  # stream offset of the buffer's first byte

    def feed(self, data: bytes) -> list[bytes | OscError]:
        """Packets (or an error in place of the first bad one) completed by
        ``data``; nothing more once broken."""
        if self.broken:
            return []
        self._buffer += data
        frames: list[bytes | OscError] = []
        while len(self._buffer) >= 4:
            size = _INT32.unpack_from(self._buffer, 0)[0]
            if not 0 < size <= self.max_frame_bytes:
                self.broken = True
                self._buffer.clear()
                frames.append(
                    OscError(
                        f"stream packet size {size} is not in 1..{self.max_frame_bytes}",
                        self._offset,
                    )
                )
                return frames
            if len(self._buffer) < 4 + size:
                break
            frames.append(bytes(self._buffer[4 : 4 + size]))
            del self._buffer[: 4 + size]
            self._offset += 4 + size
        return frames


def stream_decoder(
    first_byte: int, max_frame_bytes: int
) -> SlipDecoder | LengthPrefixDecoder:
    """The decoder for a TCP stream, told by its first byte: an OSC 1.0
    size prefix starts with 0x00 (packets are far below 16 MiB), while a SLIP
    stream starts with END or with the packet itself ('/' or '#')."""
    if first_byte == 0:
        return LengthPrefixDecoder(max_frame_bytes)
    return SlipDecoder(max_frame_bytes)
