"""The OSC receive path without the GIL: plain input and layer-parameter sets.

Beside a busy Python thread, a datagram handled in Python waits for the GIL
(one switch interval, and longer while the busy thread waits for a CPU with
the GIL held): p99 3-6 ms measured for input sets (benchmarks/RESULTS.md,
"A receive path without the GIL"). Here the UDP receive thread enters one
compiled loop, ``@njit(nogil=True)``, that calls libc's ``recvfrom`` itself
and handles the commonest message whole, never holding the GIL:

    /soundscape/input/<name> <one f, i, d, h, T or F argument>
    /soundscape/layer/<layer>/<node>/<param> <one f, i, d or h argument>

from an IPv4 loopback source, in the input's or parameter's range. A layer
parameter's set is an ``EV_SET`` in the event ring on the Python path,
applied at the next block after any event already in the ring; the loop
writes the target directly, so it takes one only while the ring is empty
(RESULTS.md's "ring-order catch": a plain set must not overtake a ramp sent
just before it), and only where events are handed to the ring as they are
scheduled (live playback, ``Engine.deliver_ahead``): events timed later
apply after the set on either path. A ramp already taken by the audio
thread needs nothing more: an ``EV_SET`` moves the target and leaves the
ramp's slew running, and so does the loop's write.

An input the player holds (``ScenePlayer.set_input`` also schedules an
``EV_SET`` of ``hold_<input>.gain_db`` on the current state's curve) is
taken under the same rule as a layer parameter, live only and while the ring
is empty: its hold gain is one more follower, a straight line through that
state's points. A state change (or a load) moves the player's
``state_changes`` counter, which the table carries: the next datagram goes
to Python, which builds the table with the new state's curve, and the
state's hold ramps, in the ring until the audio thread takes them, keep
the sets after them on Python's path. A state change can also land
between the loop's check and its write, and read the input's old value
for its hold ramp: so after writing a held input the loop reads the
counter again (behind a memory fence; ``set_state`` moves it, then takes
the engine's schedule lock, then reads the inputs) and, if it moved, hands
the datagram to Python after all, which sets the same value again and
schedules the hold after the state's ramp (its token and "received" given
back, so nothing counts twice).

The loop matches the exact address bytes and type tags against a
:class:`FastTable`,
takes a token from the source's bucket (the same table the Python path uses:
one rate limit per source whichever path serves it), writes the input's value
into ``SceneInputs.values.array`` and each following parameter's P_TARGET
columns, with the bits :func:`engine.scenes.format.map_input` and
``Program.set_target`` give, and counts it. Any other datagram (bundles,
patterns, other addresses or types, out-of-range or non-finite values, which
Python clamps and answers, other sources, the server's stop datagram) returns
to Python, which handles it as before. So does the first datagram after the
table went stale (a scene load, a reload, a handler change): Python then
builds the table again before it re-enters the loop. While the engine
crossfades between programs everything goes to Python: a reload waiting for
a fade copies the input values to the new scene under the player's lock, and
a set the loop wrote meanwhile would be lost. (What is left: a set landing
in the microseconds between that copy and the load, without a fade running,
is written to the outgoing scene; the next set is not.)

Off with ``SOUNDSCAPE_OSC_FAST_PATH=0`` (or ``OscServer(fast_path=False)``).

Threads: :class:`FastPath` is made and its table provider set on control
threads; :meth:`FastPath.receive` runs on the server's UDP receive thread
only (it owns the token buckets); :meth:`FastPath.invalidate` and
:meth:`FastPath.counts` from any thread. Never the audio thread.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

from engine.dsp.layout import P_TARGET
from engine.rt.clock import rt_now_ns, rt_thread_cpu_ns
from engine.rt.core import C_ACCEPTED, C_FADING, C_REQUEST
from engine.rt.libc_symbols import link_libc_symbol

__all__ = [
    "FastPath",
    "FastTable",
    "SharedBuckets",
]

# counters (int64): what the loop did, merged into the server's counters.
F_RECEIVED = 0
F_APPLIED = 1
F_RATE_LIMITED = 2
F_MAX_HANDLING_NS = 3
F_MAX_HANDLING_CPU_NS = 4
F_SLOW = 5
F_SLOW_WORKING = 6
F_TRACED = 7
N_COUNTERS = 8
SLOW_HANDLING_NS = 5_000_000  # as osc_server.SLOW_HANDLING_NS

# Entry kinds: what a matched address sets.
KIND_INPUT = 0  # a scene input: its value, then its followers
KIND_PARAM = 1  # a layer parameter: its copies' columns, if the ring is empty
# A scene input the player holds the loudness of: its value and followers,
# then its hold gain (an EV_SET on the Python path): if the ring is empty.
KIND_HELD_INPUT = 2
# Follower curves: how the value becomes the target.
CURVE_LINEAR = 0  # np.interp over the mapping's points
CURVE_EXP = 1  # exp of np.interp over log values
CURVE_SAME = 2  # the value itself (a layer parameter)
_RING_WRITE, _RING_READ = 0, 1  # engine.rt.ring positions

# Token buckets: open addressing on (IPv4 << 16 | port); a new source that
# finds no free slot within _PROBES evicts the least recently seen of them.
BUCKET_SLOTS = 2048
_PROBES = 8
_SOCKADDR_BYTES = 16  # sockaddr_in
_AF_INET_LOW_BYTE = socket.AF_INET  # sa_family, little-endian on our hosts


# By name, like clock_gettime, so cached machine code that calls it links.
link_libc_symbol("recvfrom")
# ssize_t recvfrom(int, void *, size_t, int, struct sockaddr *, socklen_t *);
# pointers passed as integers (same registers on every 64-bit ABI we run on).
_recvfrom = types.ExternalFunction(
    "recvfrom",
    types.intp(
        types.int32, types.uintp, types.uintp, types.int32, types.uintp, types.uintp
    ),
)


@intrinsic
def _memory_fence(typingctx):
    """A full barrier (mfence on x86): the stores before it are visible to
    other threads before the loads after it are made."""

    def codegen(context, builder, signature, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()

    return types.void(), codegen


@njit(nogil=True, cache=True)
def _bucket_start(key, mask):
    return ((key ^ (key >> 15)) * 2654435761) & mask


@njit(nogil=True, cache=True)
def take_tokens(keys, tokens, last_ns, key, n_tokens, now_ns, rate_hz, burst):
    """Take ``n_tokens`` from source ``key``'s bucket; False if it has fewer
    (then nothing is taken). Bounded: at most _PROBES slots looked at."""
    mask = keys.shape[0] - 1
    start = _bucket_start(key, mask)
    slot = -1
    oldest = start
    for probe in range(_PROBES):
        at = (start + probe) & mask
        if keys[at] == key or keys[at] < 0:
            slot = at
            break
        if last_ns[at] < last_ns[oldest]:
            oldest = at
    if slot < 0 or keys[slot] != key:
        if slot < 0:
            slot = oldest
        keys[slot] = key
        tokens[slot] = burst
    else:
        elapsed_ns = max(now_ns - last_ns[slot], 0)
        tokens[slot] = min(burst, tokens[slot] + elapsed_ns * 1e-9 * rate_hz)
    last_ns[slot] = now_ns
    if tokens[slot] < n_tokens:
        return False
    tokens[slot] -= n_tokens
    return True


@njit(nogil=True, cache=True)
def give_back_token(keys, tokens, key, burst):
    """Return one token to source ``key``'s bucket (a datagram handed to
    Python after all, which takes its own)."""
    mask = keys.shape[0] - 1
    start = _bucket_start(key, mask)
    for probe in range(_PROBES):
        at = (start + probe) & mask
        if keys[at] == key:
            tokens[at] = min(burst, tokens[at] + 1.0)
            return


@njit(nogil=True, cache=True)
def _big_endian(buffer, at, n_bytes, scratch):
    # Byte-swapped into scratch, read back through a typed view.
    for i in range(n_bytes):
        scratch[i] = buffer[at + n_bytes - 1 - i]


@njit(nogil=True, cache=True)
def _match(buffer, n_bytes, addresses, address_bytes):
    for entry in range(addresses.shape[0]):
        length = address_bytes[entry]
        if n_bytes < length + 4:
            continue
        same = True
        for i in range(length):
            if buffer[i] != addresses[entry, i]:
                same = False
                break
        if same:
            return entry
    return -1


@njit(nogil=True, cache=True)
def _value(buffer, n_bytes, at, scratch, flags):
    """The one argument of the message whose type tags start at ``at``, as
    float64; NaN when the tags are not one of ``,f ,i ,d ,h`` (or ``,T ,F``
    with ``flags``: inputs take them, parameters refuse them)."""
    if buffer[at] != 44 or buffer[at + 2] != 0 or buffer[at + 3] != 0:  # ","
        return np.nan
    tag = buffer[at + 1]
    data = at + 4
    if tag == 102 and n_bytes == data + 4:  # f
        _big_endian(buffer, data, 4, scratch)
        return np.float64(scratch[:4].view(np.float32)[0])
    if tag == 105 and n_bytes == data + 4:  # i
        _big_endian(buffer, data, 4, scratch)
        return np.float64(scratch[:4].view(np.int32)[0])
    if tag == 100 and n_bytes == data + 8:  # d
        _big_endian(buffer, data, 8, scratch)
        return scratch.view(np.float64)[0]
    if tag == 104 and n_bytes == data + 8:  # h
        _big_endian(buffer, data, 8, scratch)
        return np.float64(scratch.view(np.int64)[0])
    if flags and tag == 84 and n_bytes == data:  # T
        return 1.0
    if flags and tag == 70 and n_bytes == data:  # F
        return 0.0
    return np.nan


@njit(nogil=True, cache=True)
def receive_loop(
    fd,
    buffer,
    max_bytes,
    peer,
    peer_len,
    scratch,
    counters,
    control,
    generation,
    ctl,
    request,
    state_changes,
    state_count,
    keys,
    tokens,
    last_ns,
    rate_hz,
    burst,
    addresses,
    address_bytes,
    kind,
    low,
    high,
    slot,
    follow_start,
    follow_end,
    values,
    columns,
    voices,
    param_low,
    param_high,
    curve,
    point_start,
    point_end,
    xs,
    ys,
    targets,
    ring_positions,
    trace,
):
    """Receive and handle datagrams until one is not a plain input set this
    table takes; return its size (in ``buffer``, its source in ``peer``) for
    Python to handle, or recvfrom's -1. Never holds the GIL."""
    while True:
        peer_len[0] = peer.shape[0]
        n_bytes = _recvfrom(
            fd,
            buffer.ctypes.data,
            buffer.shape[0],
            0,
            peer.ctypes.data,
            peer_len.ctypes.data,
        )
        if n_bytes <= 0:
            return n_bytes
        started_ns = rt_now_ns()
        started_cpu_ns = rt_thread_cpu_ns()
        if (
            control[0] != generation
            or ctl[C_REQUEST] != request
            or state_changes[0] != state_count
        ):
            # The table is stale (a scene load, a handler or a state change:
            # a held input's curve is the state's): Python builds it again.
            return n_bytes
        if ctl[C_FADING] != 0 or ctl[C_ACCEPTED] != request:
            # A scene switch under way: a reload may be carrying the input
            # values over meanwhile (under the player's lock, which the
            # Python path takes and the loop cannot).
            return n_bytes
        if n_bytes > max_bytes or peer[0] != _AF_INET_LOW_BYTE or peer[1] != 0:
            return n_bytes
        if peer[4] != 127:  # only IPv4 loopback; Python checks the rest
            return n_bytes
        entry = _match(buffer, n_bytes, addresses, address_bytes)
        if entry < 0:
            return n_bytes
        flags = kind[entry] != KIND_PARAM
        value = _value(buffer, n_bytes, address_bytes[entry], scratch, flags)
        # Out of range and non-finite (a counter's range is unbounded) go to
        # Python, which clamps or refuses, and answers.
        if not (np.isfinite(value) and low[entry] <= value <= high[entry]):
            return n_bytes
        if (
            kind[entry] != KIND_INPUT
            and ring_positions[_RING_WRITE] != ring_positions[_RING_READ]
        ):
            # Events wait in the ring (a state's hold ramp, a layer's ramp):
            # an EV_SET goes after them, so Python schedules it.
            return n_bytes
        counters[F_RECEIVED] += 1
        key = (
            (np.int64(peer[4]) << 40)
            | (np.int64(peer[5]) << 32)
            | (np.int64(peer[6]) << 24)
            | (np.int64(peer[7]) << 16)
            | (np.int64(peer[2]) << 8)
            | np.int64(peer[3])
        )
        if take_tokens(keys, tokens, last_ns, key, 1.0, started_ns, rate_hz, burst):
            if kind[entry] != KIND_PARAM:
                values[slot[entry]] = value
            for follower in range(follow_start[entry], follow_end[entry]):
                a, b = point_start[follower], point_end[follower]
                if curve[follower] == CURVE_SAME:
                    target = value
                else:
                    target = np.interp(value, xs[a:b], ys[a:b])
                    if curve[follower] == CURVE_EXP:
                        target = np.exp(target)
                target = min(max(target, param_low[follower]), param_high[follower])
                column = columns[follower]
                for voice in range(voices[follower]):
                    targets[column + voice] = target
            if kind[entry] == KIND_HELD_INPUT:
                # A state change since the check (set_state moves the
                # counter before it reads the inputs for its hold ramps) may
                # have read the old value, and this hold is on the old
                # curve: Python sets it again (the same value and followers,
                # and the hold after the state's ramp). The fence makes the
                # value written visible before the counter is read again.
                _memory_fence()
                if state_changes[0] != state_count:
                    counters[F_RECEIVED] -= 1
                    give_back_token(keys, tokens, key, burst)
                    return n_bytes
            counters[F_APPLIED] += 1
        else:
            counters[F_RATE_LIMITED] += 1
        done_ns = rt_now_ns()
        took_ns = done_ns - started_ns
        ran_ns = rt_thread_cpu_ns() - started_cpu_ns
        if took_ns > SLOW_HANDLING_NS:
            counters[F_SLOW] += 1
            if ran_ns > SLOW_HANDLING_NS:
                counters[F_SLOW_WORKING] += 1
        counters[F_MAX_HANDLING_NS] = max(counters[F_MAX_HANDLING_NS], took_ns)
        counters[F_MAX_HANDLING_CPU_NS] = max(counters[F_MAX_HANDLING_CPU_NS], ran_ns)
        traced = counters[F_TRACED]
        if traced < trace.shape[0]:
            trace[traced, 0] = done_ns
            trace[traced, 1] = value
            counters[F_TRACED] = traced + 1


@dataclass(frozen=True)
class FastTable:
    """What the loop takes and where it writes, for one program and one
    :class:`engine.scenes.control.SceneInputs`. Build with :meth:`build`."""

    addresses: np.ndarray  # uint8 [entry, byte]: the padded address
    address_bytes: np.ndarray  # int64 [entry]: where its type tags start
    kind: np.ndarray  # int64 [entry]: KIND_INPUT or KIND_PARAM
    low: np.ndarray  # float64 [entry]: the input's or parameter's range
    high: np.ndarray
    slot: np.ndarray  # int64 [entry]: in values
    follow_start: np.ndarray  # int64 [entry]: its followers
    follow_end: np.ndarray
    values: np.ndarray  # SceneInputs.values.array
    columns: np.ndarray  # int64 [follower]: first P_TARGET column
    voices: np.ndarray  # int64 [follower]
    param_low: np.ndarray  # float64 [follower]: the parameter's range
    param_high: np.ndarray
    curve: np.ndarray  # int64 [follower]: CURVE_*
    point_start: np.ndarray  # int64 [follower]: its points in xs, ys
    point_end: np.ndarray
    xs: np.ndarray  # float64: mapping points (ys: log values for exp)
    ys: np.ndarray
    targets: np.ndarray  # the program's P_TARGET row
    ring_positions: np.ndarray  # engine.ring.positions
    request: int  # engine.ctl[C_REQUEST] when built: a load makes it stale
    names: tuple[str, ...]  # input or layer.node.param of each entry
    # The player's state-change counter, and its value when built: a state
    # change makes the table stale (held inputs follow the state's curve).
    state_changes: np.ndarray
    state_count: int

    @classmethod
    def build(
        cls,
        routes: dict[str, str],
        inputs: Any,
        program: Any,
        request: int,
        ring_positions: np.ndarray,
        params: dict[str, tuple[str, list[str]]] | None = None,
        holds: dict[str, tuple[str, list[float], list[float]]] | None = None,
        state_changes: np.ndarray | None = None,
        state_count: int = 0,
    ) -> FastTable:
        """A table for ``routes`` (address -> input name) of ``inputs`` (a
        SceneInputs) following into ``program`` (the engine's current one),
        and ``params`` (address -> (parameter, the nodes it sets: one per
        layer copy)), whose range is the first node's.

        ``holds`` (input name -> (hold node, xs, ys)): the routed inputs the
        player holds, each with its gain node's ``gain_db`` following the
        value on the current state's curve (straight lines through ``(xs,
        ys)``, as ``ScenePlayer.set_input`` schedules it); taken only while
        the event ring is empty. ``state_changes[0] != state_count`` makes
        the table stale.

        Raises KeyError for a node or parameter ``program`` does not have.
        """
        params = params or {}
        holds = holds or {}
        if state_changes is None:
            state_changes = np.zeros(1, dtype=np.int64)
        padded = []
        for address in [*routes, *params]:
            raw = address.encode("utf-8")
            padded.append(raw + b"\0" * (4 - len(raw) % 4))
        width = max((len(p) for p in padded), default=4)
        addresses = np.zeros((len(padded), width), dtype=np.uint8)
        for entry, raw in enumerate(padded):
            addresses[entry, : len(raw)] = np.frombuffer(raw, dtype=np.uint8)
        ints: dict[str, list[int]] = {
            k: []
            for k in [
                "address_bytes",
                "slot",
                "follow_start",
                "follow_end",
                "columns",
                "voices",
                "point_start",
                "point_end",
            ]
        }
        floats: dict[str, list[float]] = {
            k: [] for k in ["low", "high", "param_low", "param_high", "xs", "ys"]
        }
        ints["kind"] = []
        curves: list[int] = []
        names = (*routes.values(), *(f"{nodes[0]}.{p}" for p, nodes in params.values()))
        for raw, name in zip(padded, routes.values(), strict=False):
            spec = inputs.specs[name]
            lo, hi = float(spec["minimum"]), float(spec["maximum"])
            ints["kind"].append(KIND_HELD_INPUT if name in holds else KIND_INPUT)
            ints["address_bytes"].append(len(raw))
            ints["slot"].append(inputs.values.index[name])
            floats["low"].append(lo)
            floats["high"].append(hi)
            ints["follow_start"].append(len(ints["columns"]))
            for node, param, mapping in inputs.followers(name):
                ref = program.param(node, param)
                ints["columns"].append(ref.column)
                ints["voices"].append(ref.voices)
                floats["param_low"].append(float(ref.minimum))
                floats["param_high"].append(float(ref.maximum))
                # As map_input reads a mapping: "to" spans the input's range.
                if "to" in mapping:
                    xs, ys = [lo, hi], [float(y) for y in mapping["to"]]
                else:
                    xs = [float(p[0]) for p in mapping["points"]]
                    ys = [float(p[1]) for p in mapping["points"]]
                exp = mapping["curve"] == "exp"
                curves.append(CURVE_EXP if exp else CURVE_LINEAR)
                ints["point_start"].append(len(floats["xs"]))
                floats["xs"] += xs
                floats["ys"] += list(np.log(ys)) if exp else ys
                ints["point_end"].append(len(floats["xs"]))
            if name in holds:
                node, xs, ys = holds[name]
                ref = program.param(node, "gain_db")
                ints["columns"].append(ref.column)
                ints["voices"].append(ref.voices)
                floats["param_low"].append(float(ref.minimum))
                floats["param_high"].append(float(ref.maximum))
                curves.append(CURVE_LINEAR)
                ints["point_start"].append(len(floats["xs"]))
                floats["xs"] += [float(x) for x in xs]
                floats["ys"] += [float(y) for y in ys]
                ints["point_end"].append(len(floats["xs"]))
            ints["follow_end"].append(len(ints["columns"]))
        for raw, (param, nodes) in zip(
            padded[len(routes) :], params.values(), strict=True
        ):
            first = program.param(nodes[0], param)
            ints["kind"].append(KIND_PARAM)
            ints["address_bytes"].append(len(raw))
            ints["slot"].append(-1)
            floats["low"].append(float(first.minimum))
            floats["high"].append(float(first.maximum))
            ints["follow_start"].append(len(ints["columns"]))
            for node in nodes:
                ref = program.param(node, param)
                ints["columns"].append(ref.column)
                ints["voices"].append(ref.voices)
                floats["param_low"].append(float(ref.minimum))
                floats["param_high"].append(float(ref.maximum))
                curves.append(CURVE_SAME)
                ints["point_start"].append(len(floats["xs"]))
                ints["point_end"].append(len(floats["xs"]))
            ints["follow_end"].append(len(ints["columns"]))
        return cls(
            addresses=addresses,
            values=inputs.values.array,
            targets=program.params[P_TARGET],
            curve=np.array(curves, dtype=np.int64),
            ring_positions=ring_positions,
            request=request,
            names=names,
            state_changes=state_changes,
            state_count=int(state_count),
            **{k: np.array(v, dtype=np.int64) for k, v in ints.items()},
            **{k: np.array(v, dtype=np.float64) for k, v in floats.items()},
        )


class SharedBuckets:
    """The fast path's token buckets for the Python UDP path: the same
    ``take(source, n_tokens, now_s)`` as the server's own buckets, on the same
    arrays, so one source has one bucket whichever path serves it.

    Receive thread only (the one that runs the fast loop)."""

    def __init__(self, fast: FastPath) -> None:
        self._fast = fast

    def take(self, source: Any, n_tokens: float, now_s: float) -> bool:
        fast = self._fast
        try:
            (ip,) = struct.unpack("!I", socket.inet_aton(source[0]))
        except (OSError, TypeError, IndexError):
            ip = 0
        key = (ip << 16) | (int(source[1]) & 0xFFFF)
        return bool(
            take_tokens(
                fast.keys,
                fast.tokens,
                fast.last_ns,
                key,
                float(n_tokens),
                round(now_s * 1e9),
                fast.rate_hz,
                fast.burst,
            )
        )


class FastPath:
    """The GIL-free loop's state for one UDP server socket: counters, token
    buckets, the table and what invalidates it.

    Args:
        rate_hz, burst: each source's token bucket, in messages.
        max_datagram_bytes: larger datagrams go to Python (which refuses them).
        engine_ctl: the engine's control array (its C_REQUEST moves at each
            program load, which makes the table stale); None until a table
            provider brings an engine.
    """

    def __init__(self, rate_hz: float, burst: float, max_datagram_bytes: int) -> None:
        self.rate_hz = float(rate_hz)
        self.burst = float(burst)
        self.max_datagram_bytes = int(max_datagram_bytes)
        self.counters = np.zeros(N_COUNTERS, dtype=np.int64)
        self.control = np.zeros(1, dtype=np.int64)  # [generation]
        self.keys = np.full(BUCKET_SLOTS, -1, dtype=np.int64)
        self.tokens = np.zeros(BUCKET_SLOTS, dtype=np.float64)
        self.last_ns = np.zeros(BUCKET_SLOTS, dtype=np.int64)
        self.buckets = SharedBuckets(self)
        self.trace = np.zeros((0, 2), dtype=np.float64)
        self._provider: Callable[[], tuple[FastTable, np.ndarray] | None] | None = None
        self._table: FastTable | None = None
        self._ctl: np.ndarray | None = None
        self._table_generation = -1
        self._peer = np.zeros(_SOCKADDR_BYTES, dtype=np.uint8)
        self._peer_len = np.zeros(1, dtype=np.uint32)
        self._scratch = np.zeros(8, dtype=np.uint8)
        self.tables_built = 0

    def set_provider(
        self, provider: Callable[[], tuple[FastTable, np.ndarray] | None] | None
    ) -> None:
        """``provider()`` returns ``(table, engine_ctl)`` for what plays now,
        or None (nothing to take); called on the receive thread whenever the
        table is stale."""
        self._provider = provider
        self.invalidate()

    def invalidate(self) -> None:
        """Make the loop hand its next datagram to Python and rebuild the
        table first (after a handler or a scene changed)."""
        self.control[0] += 1

    def start_trace(self, n_datagrams: int) -> np.ndarray:
        """Record ``(written ns, value)`` of the next ``n_datagrams`` applied
        (benchmarks: the latency from a sender's clock). Returns the array."""
        self.trace = np.zeros((n_datagrams, 2), dtype=np.float64)
        self.counters[F_TRACED] = 0
        # The loop holds the array it was entered with: the next datagram
        # goes to Python, and the loop comes back with this one.
        self.invalidate()
        return self.trace

    def counts(self) -> dict[str, int]:
        """The loop's counters, named as the server's."""
        c = self.counters
        applied = int(c[F_APPLIED])
        return {
            "received": int(c[F_RECEIVED]),
            "rate_limited": int(c[F_RATE_LIMITED]),
            "parsed": applied,
            "messages": applied,
            "dispatched": applied,
            "applied": applied,
            "slow_handlings": int(c[F_SLOW]),
            "slow_handlings_working": int(c[F_SLOW_WORKING]),
            "max_handling_us": int(c[F_MAX_HANDLING_NS]) // 1000,
            "max_handling_cpu_us": int(c[F_MAX_HANDLING_CPU_NS]) // 1000,
        }

    def _current_table(self) -> FastTable | None:
        generation = int(self.control[0])
        table = self._table
        stale = generation != self._table_generation or (
            table is not None
            and (
                (self._ctl is not None and int(self._ctl[C_REQUEST]) != table.request)
                or int(table.state_changes[0]) != table.state_count
            )
        )
        if stale:
            built = self._provider() if self._provider is not None else None
            table, self._ctl = built if built is not None else (None, None)
            if table is not None and table.addresses.shape[0] == 0:
                table = None
            self._table = table
            self._table_generation = generation
            self.tables_built += 1
        return table

    def warm_up(self) -> None:
        """Compile the loop, or load it from Numba's cache (a few seconds
        cold, ~0.5 s cached, the GIL held): call before serving, not on the
        receive thread while the engine plays."""
        empty_i = np.zeros(0, dtype=np.int64)
        empty_f = np.zeros(0, dtype=np.float64)
        table = FastTable(
            addresses=np.zeros((0, 4), dtype=np.uint8),
            address_bytes=empty_i,
            kind=empty_i,
            low=empty_f,
            high=empty_f,
            slot=empty_i,
            follow_start=empty_i,
            follow_end=empty_i,
            values=np.zeros(1, dtype=np.float64),
            columns=empty_i,
            voices=empty_i,
            param_low=empty_f,
            param_high=empty_f,
            curve=empty_i,
            point_start=empty_i,
            point_end=empty_i,
            xs=empty_f,
            ys=empty_f,
            targets=np.zeros(1, dtype=np.float64),
            ring_positions=np.zeros(4, dtype=np.int64),
            request=0,
            names=(),
            state_changes=np.zeros(1, dtype=np.int64),
            state_count=0,
        )
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.sendto(b"", sock.getsockname())
            buffer = np.zeros(self.max_datagram_bytes + 1, dtype=np.uint8)
            ctl = np.zeros(C_REQUEST + 1, dtype=np.int64)
            self._run(sock.fileno(), buffer, table, ctl, int(self.control[0]) - 1)
        self.buckets.take(("127.0.0.1", 0), 0.0, 0.0)
        self.keys[:] = -1

    def ready(self) -> bool:
        """Whether the loop has anything to take (else the caller's own
        receive is as good, and cheaper)."""
        return self._current_table() is not None

    def receive(
        self, fd: int, buffer: np.ndarray
    ) -> tuple[int, tuple[str, int] | None]:
        """Run the loop on socket ``fd`` until a datagram is Python's: returns
        its size (its bytes in ``buffer``) and source ``(host, port)``, or
        ``(-1, None)`` when recvfrom failed (a signal, an ICMP error from an
        earlier reply) or there is no table (see :meth:`ready`).
        """
        table = self._current_table()
        if table is None or self._ctl is None:
            return -1, None
        return self._run(fd, buffer, table, self._ctl, self._table_generation)

    def _run(
        self,
        fd: int,
        buffer: np.ndarray,
        t: FastTable,
        ctl: np.ndarray,
        generation: int,
    ) -> tuple[int, tuple[str, int] | None]:
        n_bytes = receive_loop(
            fd,
            buffer,
            self.max_datagram_bytes,
            self._peer,
            self._peer_len,
            self._scratch,
            self.counters,
            self.control,
            generation,
            ctl,
            t.request,
            t.state_changes,
            t.state_count,
            self.keys,
            self.tokens,
            self.last_ns,
            self.rate_hz,
            self.burst,
            t.addresses,
            t.address_bytes,
            t.kind,
            t.low,
            t.high,
            t.slot,
            t.follow_start,
            t.follow_end,
            t.values,
            t.columns,
            t.voices,
            t.param_low,
            t.param_high,
            t.curve,
            t.point_start,
            t.point_end,
            t.xs,
            t.ys,
            t.targets,
            t.ring_positions,
            self.trace,
        )
        if n_bytes < 0:
            return -1, None
        peer = self._peer
        if peer[0] == _AF_INET_LOW_BYTE and peer[1] == 0:
            host = socket.inet_ntoa(peer[4:8].tobytes())
            port = int(peer[2]) << 8 | int(peer[3])
        else:  # pragma: no cover - an IPv4 socket reports IPv4 sources
            host, port = "0.0.0.0", 0
        return int(n_bytes), (host, port)
