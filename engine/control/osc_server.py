"""The OSC server: where OSC enters the engine. OSC 1.0 over UDP and OSC 1.1 over
TCP with SLIP framing (OSC 1.0 size-prefixed TCP streams, as liblo sends by
default, are told apart by their first byte), on one port number, bound to
loopback by default.

    server = OscServer(port=9000)                 # DEFAULT_OSC_PORT
    server.add_handler("/soundscape/input/danger", on_danger)
    server.start()
    ...
    server.counters()   # {"received": 120, "dispatched": 118, "malformed": 2, ...}
    server.stop()

A handler is ``handler(message, sender)``: an :class:`OscMessage` (address, type
tags, arguments, timetag) and the :class:`OscSender` it came from, which
:meth:`OscServer.reply` answers (over the same transport: a UDP datagram from
the server's socket, or a SLIP frame on the TCP connection). Handlers run on a
receive thread and must be quick: check, convert, enqueue, return. They get the
timetag and decide what to do with it; the server never sleeps on one.

What the receive path guarantees, whatever arrives:

- every loop has a catch-all: a handler that raises is counted
  (``handler_errors``), reported (:meth:`OscServer.recent_errors`, the log, and
  ``on_handler_error``) and the server goes on;
- datagrams over ``max_datagram_bytes`` are refused whole (never cut), and the
  parser is strict and bounded (:mod:`engine.control.osc_wire`);
- an exact address is one dict lookup; a pattern is matched against the
  registered addresses at bounded cost (:mod:`engine.control.osc_pattern`),
  and refused if it matches more than ``max_pattern_matches`` of them;
- a datagram calls at most ``max_dispatches`` handlers (64: its messages, with
  patterns fanned out; a handler registered with a ``cost`` counts that
  many), or it is refused whole (``over_budget``), so no one datagram holds
  the receive thread for long; each call takes as many tokens;
- each source (a UDP host and port, or a TCP connection) has a token bucket of
  ``rate_hz`` messages per second with ``burst`` in hand; over it, datagrams are
  dropped whole and counted (``rate_limited``), and other sources are served;
- bundles timed more than ``timetag_horizon_s`` ahead are refused and counted;
- binding to anything but loopback needs ``allow_networks``; sources outside
  them are dropped without a reply, and nothing is sent to them;
- each datagram's handling time is measured: ``max_handling_us``, and
  ``slow_handlings`` over 5 ms; ``slow_handlings_working`` counts those in
  which the thread itself ran 5 ms (a handler doing too much shows up there;
  the rest waited for the GIL, a lock or the CPU).

Latency: a handler runs about 0.1 ms after the datagram is sent; beside a busy
Python thread, about one GIL switch interval (5 ms by default), so a process
that runs one should shorten it (the OSC surface sets 0.25 ms; benchmarks/
RESULTS.md). The audio callback never takes the GIL and does not notice.

Fast path: with ``fast_path`` (the default for an IPv4 UDP socket, unless
``SOUNDSCAPE_OSC_FAST_PATH=0``) and a table provider set
(:meth:`OscServer.set_fast_provider`, which :class:`OscApi` does), the UDP
thread waits in a compiled loop that takes plain input sets without the GIL
(:mod:`engine.control.osc_fast_path`) and hands every other datagram to the
path above. Both paths share the per-source token buckets and the counters.

Threads: ``start``/``stop``/``add_handler``/``reply``/``counters`` from any
control thread; handlers run on the server's two receive threads (one UDP, one
TCP). Never the audio thread.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import select
import selectors
import socket
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.control.osc_pattern import AddressSet, PatternError, is_pattern
from engine.control.osc_pattern import valid_address as _address_problem
from engine.control.osc_wire import (
    LengthPrefixDecoder,
    OscError,
    OscLimits,
    OscMessage,
    SlipDecoder,
    encode_message,
    length_prefix_encode,
    ntp_to_unix,
    parse,
    slip_encode,
    stream_decoder,
)

__all__ = [
    "COUNTER_NAMES",
    "DEFAULT_BURST",
    "DEFAULT_MAX_DATAGRAM_BYTES",
    "DEFAULT_OSC_HOST",
    "DEFAULT_OSC_PORT",
    "DEFAULT_RATE_HZ",
    "FAST_PATH_ENV",
    "Handler",
    "OscSender",
    "OscServer",
]

log = logging.getLogger(__name__)

DEFAULT_OSC_HOST = "127.0.0.1"
# The port games and bridges are told to send to; UDP and TCP both use it.
DEFAULT_OSC_PORT = 9000
# Far above what a message or a bundle of parameter changes needs (python-osc
# cuts silently at 8192; we accept more and refuse, counted, beyond this).
DEFAULT_MAX_DATAGRAM_BYTES = 16_384
# Per source: a 60 Hz game sending 20 parameters is 1200 messages/s.
DEFAULT_RATE_HZ = 2000.0
DEFAULT_BURST = 500.0
DEFAULT_TIMETAG_HORIZON_S = 10.0
DEFAULT_MAX_PATTERN_MATCHES = 64
# Handler calls one datagram may make (its messages, patterns fanned out): far
# more than a game sends at once, and few enough that the longest datagram is
# handled in a few milliseconds even on a loaded machine.
DEFAULT_MAX_DISPATCHES = 64
DEFAULT_MAX_TCP_CONNECTIONS = 16
# "0" (or off, no) turns the GIL-free receive path off where the server is
# not told either way.
FAST_PATH_ENV = "SOUNDSCAPE_OSC_FAST_PATH"
_MAX_SOURCES = 1024  # token buckets kept; the least recently seen goes first
_TCP_SEND_TIMEOUT_S = 0.05  # a TCP peer that does not read its replies is dropped
_TOO_FAR = object()  # in a datagram's plan: the message's bundle is refused
_LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))

# Every datagram (or TCP frame) ends in exactly one of: refused_source,
# oversize, rate_limited, malformed, over_budget, parsed. Every parsed message ends in
# exactly one of: dispatched, handler_errors, unknown_address,
# pattern_refused, too_far_ahead.
COUNTER_NAMES = (
    "received",
    "refused_source",
    "oversize",
    "rate_limited",
    "malformed",
    "over_budget",
    "parsed",
    "messages",
    "dispatched",
    "handler_errors",
    "unknown_address",
    "pattern_refused",
    "too_far_ahead",
    "internal_errors",
    "tcp_connections",
    "tcp_refused",
    "replies_sent",
    "replies_failed",
    "replies_refused",
    "slow_handlings",
    "slow_handlings_working",
    "max_handling_us",
    "max_handling_cpu_us",
)
# A datagram whose handling (parse, checks, every handler) takes longer than
# this is counted in "slow_handlings"; "max_handling_us" keeps the longest.
# "slow_handlings_working" counts those in which the receive thread itself ran
# that long (its CPU time, "max_handling_cpu_us"): the others spent the time
# waiting, for the GIL, a lock, or a CPU the machine gave to other work.
SLOW_HANDLING_NS = 5_000_000


@dataclass(frozen=True)
class OscSender:
    """Where a message came from: host, port and transport ("udp" or "tcp")."""

    host: str
    port: int
    transport: str = "udp"
    _connection: Any = field(default=None, compare=False, repr=False)


Handler = Callable[[OscMessage, OscSender], None]


class _Registry:
    """Handlers at one moment: replaced whole on every change, so receive
    threads read a consistent snapshot without a lock."""

    def __init__(
        self,
        handlers: dict[str, Handler],
        default: Handler | None,
        costs: dict[str, int] | None = None,
    ) -> None:
        self.handlers = handlers
        self.default = default
        self.costs = costs or {}  # addresses whose handler costs more than 1
        self._address_set: AddressSet | None = None
        self.pattern_cache: dict[str, tuple[str, ...]] = {}

    @property
    def address_set(self) -> AddressSet:
        if self._address_set is None:  # built on the first pattern, not per add
            self._address_set = AddressSet(self.handlers)
        return self._address_set


class _TokenBuckets:
    """Token buckets per source, owned by one receive thread."""

    def __init__(self, rate_hz: float, burst: float) -> None:
        self.rate_hz = rate_hz
        self.burst = burst
        self._buckets: OrderedDict[Any, list[float]] = OrderedDict()

    def take(self, source: Any, n_tokens: float, now_s: float) -> bool:
        bucket = self._buckets.get(source)
        if bucket is None:
            bucket = [self.burst, now_s]
            self._buckets[source] = bucket
            if len(self._buckets) > _MAX_SOURCES:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(source)
            bucket[0] = min(self.burst, bucket[0] + (now_s - bucket[1]) * self.rate_hz)
            bucket[1] = now_s
        if bucket[0] < n_tokens:
            return False
        bucket[0] -= n_tokens
        return True


class _Connection:
    """One TCP peer: its socket, its framing (told by the first byte it sends,
    and used for replies too), and a lock for writers."""

    def __init__(self, sock: socket.socket, peer: tuple) -> None:
        self.sock = sock
        self.peer = peer
        self.decoder: SlipDecoder | LengthPrefixDecoder | None = None
        self.write_lock = threading.Lock()
        self.closed = False

    def frame(self, packet: bytes) -> bytes:
        if isinstance(self.decoder, LengthPrefixDecoder):
            return length_prefix_encode(packet)
        return slip_encode(packet)


def _send_within(sock: socket.socket, data: bytes, timeout_s: float) -> None:
    """``sendall`` on a non-blocking socket, giving up after ``timeout_s``
    (the receive thread keeps the socket non-blocking, so no settimeout)."""
    view = memoryview(data)
    deadline_s = time.monotonic() + timeout_s
    while view:
        try:
            view = view[sock.send(view) :]
        except (BlockingIOError, InterruptedError):
            remaining_s = deadline_s - time.monotonic()
            if remaining_s <= 0:
                raise TimeoutError("peer does not read") from None
            select.select([], [sock], [], remaining_s)


def _below_realtime_threads(priority: int) -> int:
    """``priority``, lowered to one below the lowest real-time priority of
    this process's other threads (the audio callback's: JACK's and
    PipeWire's clients run theirs at SCHED_FIFO), and at least 1."""
    lowest = None
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return max(1, priority)
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # After the name: state is field 3, rt_priority 40, policy 41.
        rt_priority, policy = int(fields[37]), int(fields[38])
        if policy in (os.SCHED_FIFO, os.SCHED_RR) and rt_priority > 0:
            lowest = rt_priority if lowest is None else min(lowest, rt_priority)
    if lowest is not None:
        priority = min(priority, lowest - 1)
    return max(1, priority)


def _resolve(host: str, port: int) -> tuple[int, tuple]:
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    return family, address


class OscServer:
    """OSC over UDP and TCP/SLIP with handler registration, limits and counters.

    Args:
        host: interface to bind; loopback unless ``allow_networks`` is given.
        port: UDP and TCP port; 0 picks a free one (see :attr:`port`).
        udp, tcp: which transports to serve.
        rate_hz, burst: each source's token bucket, in messages.
        max_datagram_bytes: larger datagrams and TCP frames are refused whole.
        limits: parser limits (:class:`OscLimits`); its datagram size is
            overridden by ``max_datagram_bytes``, its messages capped at
            ``max_dispatches``.
        allow_networks: source networks accepted (CIDR strings) besides
            loopback; required to bind anything but a loopback address.
        timetag_horizon_s: bundles timed further ahead are refused (None: any).
        max_pattern_matches: a pattern matching more handlers is refused.
        max_dispatches: a datagram calling more handlers (its messages,
            patterns fanned out) is refused whole.
        max_tcp_connections: further connections are closed at once.
        thread_nice: the receive threads' nice value (e.g. -10), so that on a
            busy machine they run as soon as a datagram arrives; None leaves
            them as they are. Needs CAP_SYS_NICE (or RLIMIT_NICE) to go below
            0; refused, the threads keep theirs (``priority_refused``).
        on_handler_error: called as ``(message, sender, exception)`` on the
            receive thread after a handler raised (for an error reply).
        fast_path: serve plain input sets on the UDP thread without the GIL
            (see the module docstring); None: on unless the environment's
            ``SOUNDSCAPE_OSC_FAST_PATH`` is 0. IPv4 UDP only.
        udp_fifo_priority: run the UDP receive thread at SCHED_FIFO with this
            priority, kept below every real-time thread the process already
            has (the audio callback's); without CAP_SYS_NICE (or
            RLIMIT_RTPRIO) it silently keeps ``thread_nice``. Its work per
            datagram is bounded (``max_dispatches``, the rate limit), so it
            cannot hold a core. None: ``thread_nice`` only.
    """

    def __init__(
        self,
        host: str = DEFAULT_OSC_HOST,
        port: int = DEFAULT_OSC_PORT,
        *,
        udp: bool = True,
        tcp: bool = True,
        rate_hz: float = DEFAULT_RATE_HZ,
        burst: float = DEFAULT_BURST,
        max_datagram_bytes: int = DEFAULT_MAX_DATAGRAM_BYTES,
        limits: OscLimits | None = None,
        allow_networks: Sequence[str] = (),
        timetag_horizon_s: float | None = DEFAULT_TIMETAG_HORIZON_S,
        max_pattern_matches: int = DEFAULT_MAX_PATTERN_MATCHES,
        max_dispatches: int = DEFAULT_MAX_DISPATCHES,
        max_tcp_connections: int = DEFAULT_MAX_TCP_CONNECTIONS,
        thread_nice: int | None = None,
        on_handler_error: Callable[[OscMessage, OscSender, BaseException], None]
        | None = None,
        fast_path: bool | None = None,
        udp_fifo_priority: int | None = None,
    ) -> None:
        if not (udp or tcp):
            raise ValueError("OscServer: serve udp, tcp or both")
        if rate_hz <= 0 or burst < 1:
            raise ValueError(
                f"OscServer: rate_hz must be > 0 and burst >= 1, "
                f"got rate_hz={rate_hz}, burst={burst}"
            )
        try:
            networks = [ipaddress.ip_network(n, strict=False) for n in allow_networks]
        except ValueError as error:
            raise ValueError(f"OscServer: allow_networks: {error}") from None
        self._family, bind_address = _resolve(host, port)
        if not ipaddress.ip_address(bind_address[0]).is_loopback and not networks:
            raise ValueError(
                f"OscServer: binding to {host} exposes the engine beyond this "
                "machine; give allow_networks (e.g. ['192.168.1.0/24']) to say "
                "which sources may control it"
            )
        self.host = host
        self._requested_port = port
        self._serve_udp = udp
        self._serve_tcp = tcp
        self.rate_hz = rate_hz
        self.burst = burst
        self.max_datagram_bytes = max_datagram_bytes
        limits = limits or OscLimits()
        # A datagram with more messages would be over budget anyway: the
        # parser stops at the first one too many instead of parsing them all.
        self.limits = dataclasses.replace(
            limits,
            max_datagram_bytes=max_datagram_bytes,
            max_messages=min(limits.max_messages, max_dispatches),
        )
        self.allow_networks = tuple(networks)
        self._remote = not ipaddress.ip_address(bind_address[0]).is_loopback
        self.timetag_horizon_s = timetag_horizon_s
        self.max_pattern_matches = max_pattern_matches
        self.max_dispatches = max_dispatches
        self.max_tcp_connections = max_tcp_connections
        self.thread_nice = thread_nice
        self.priority_refused = False
        self.udp_fifo_priority = udp_fifo_priority
        # What the UDP thread got: "SCHED_FIFO 5", "nice -11" or "unchanged".
        self.udp_scheduling = "unchanged"
        self.on_handler_error = on_handler_error
        if fast_path is None:
            fast_path = os.environ.get(FAST_PATH_ENV, "1").strip().lower() not in (
                "0",
                "off",
                "no",
            )
        self.fast_path_wanted = bool(
            fast_path and udp and self._family == socket.AF_INET
        )
        # The GIL-free loop's state (osc_fast_path.FastPath), made at the
        # first start and kept, with its counters, across restarts.
        self.fast: Any = None
        self._fast_provider: Callable[[dict[str, Handler]], Any] | None = None
        self._udp_wakeup: socket.socket | None = None

        self._registry = _Registry({}, None)
        self._registry_lock = threading.Lock()
        self._udp_sock: socket.socket | None = None
        self._tcp_sock: socket.socket | None = None
        self._wakeups: list[tuple[socket.socket, socket.socket]] = []
        self._threads: list[threading.Thread] = []
        self._thread_counts: list[dict[str, int]] = []
        self._shared_counts = dict.fromkeys(COUNTER_NAMES, 0)
        self._shared_lock = threading.Lock()
        self._errors: deque[str] = deque(maxlen=32)
        # On a receive thread while it handles a datagram: the replies to send
        # after it (see send_packet).
        self._local = threading.local()
        self._last_log_s = 0.0
        self._running = False
        self._stopping = threading.Event()
        self.port = port

    # --- registration ---------------------------------------------------------

    def add_handler(self, address: str, handler: Handler, cost: int = 1) -> None:
        """Call ``handler(message, sender)`` for messages to ``address`` (an
        exact address, and patterns that match it); replaces any handler there.

        ``cost``: what one call counts against a datagram's ``max_dispatches``
        and its source's tokens, in plain parameter sets (a handler that sends
        a status bundle or schedules a dozen events costs more than 1).

        Raises ValueError if ``address`` is not a valid OSC method address.
        """
        problem = _address_problem(address)
        if problem is not None:
            raise ValueError(f"OscServer.add_handler: {address!r}: {problem}")
        if not 1 <= cost <= self.max_dispatches:
            raise ValueError(
                f"OscServer.add_handler: {address!r}: cost {cost} is outside "
                f"1..{self.max_dispatches} (max_dispatches)"
            )
        with self._registry_lock:
            handlers = dict(self._registry.handlers)
            handlers[address] = handler
            costs = {a: c for a, c in self._registry.costs.items() if a != address}
            if cost != 1:
                costs[address] = cost
            self._registry = _Registry(handlers, self._registry.default, costs)
        self._fast_changed()

    def remove_handler(self, address: str) -> None:
        """Forget the handler of ``address`` (no error if there is none)."""
        with self._registry_lock:
            handlers = dict(self._registry.handlers)
            handlers.pop(address, None)
            costs = {a: c for a, c in self._registry.costs.items() if a != address}
            self._registry = _Registry(handlers, self._registry.default, costs)
        self._fast_changed()

    def set_default_handler(self, handler: Handler | None) -> None:
        """Call ``handler`` for messages no registered address takes (a plain
        address nobody handles, or a pattern matching none); counted as
        ``dispatched``. Without one they are counted as ``unknown_address``."""
        with self._registry_lock:
            registry = self._registry
            self._registry = _Registry(registry.handlers, handler, registry.costs)
        self._fast_changed()

    @property
    def addresses(self) -> list[str]:
        """The addresses with a handler."""
        return list(self._registry.handlers)

    def set_fast_provider(
        self, provider: Callable[[dict[str, Handler]], Any] | None
    ) -> None:
        """Give the fast path what to take: ``provider(handlers)`` returns
        ``(FastTable, engine_ctl)`` for the addresses whose handler in
        ``handlers`` (address -> handler now) it may replace, or None. It is
        called on the UDP thread each time the table goes stale (a handler
        changed, :meth:`fast_changed`, or the engine loaded a program)."""
        self._fast_provider = provider
        self._fast_changed()

    def fast_changed(self) -> None:
        """Make the fast path rebuild its table before its next datagram."""
        self._fast_changed()

    def _fast_changed(self) -> None:
        if self.fast is None:
            return
        self.fast.invalidate()
        # A UDP thread waiting in Python (no table yet) goes round to take it.
        writer = self._udp_wakeup
        if writer is not None:
            try:
                writer.send(b"t", socket.MSG_DONTWAIT)
            except OSError:
                pass  # full: a wake-up is already pending

    def _fast_table(self) -> Any:
        provider = self._fast_provider
        if provider is None:
            return None
        try:
            return provider(self._registry.handlers)
        except Exception as error:  # noqa: BLE001 - Python serves them instead
            self._note(f"OSC fast path off until the next change: {error!r}", True)
            return None

    def fast_counts(self) -> dict[str, int]:
        """What the fast path did (empty without one): see FastPath.counts."""
        return self.fast.counts() if self.fast is not None else {}

    # --- life cycle -----------------------------------------------------------

    def start(self) -> OscServer:
        """Bind and start the receive threads; returns the server.

        Raises OSError if the port is taken (for TCP or UDP).
        """
        if self._running:
            return self
        if self.fast_path_wanted and self.fast is None:
            # Imported here: it loads Numba, which a server alone needs not.
            from engine.control.osc_fast_path import FastPath

            fast = FastPath(self.rate_hz, self.burst, self.max_datagram_bytes)
            fast.warm_up()
            fast.set_provider(self._fast_table)
            self.fast = fast
        self._bind()
        self._stopping.clear()
        if self._remote:
            log.warning(
                "OSC server on %s:%d accepts control from %s (and loopback): "
                "anyone there can drive the engine",
                self.host,
                self.port,
                ", ".join(map(str, self.allow_networks)),
            )
        loops = []
        if self._udp_sock is not None:
            loops.append(("udp", self._udp_loop))
        if self._tcp_sock is not None:
            loops.append(("tcp", self._tcp_loop))
        for name, loop in loops:
            counts = dict.fromkeys(COUNTER_NAMES, 0)
            wakeup = socket.socketpair()
            self._thread_counts.append(counts)
            self._wakeups.append(wakeup)
            thread = threading.Thread(
                target=self._guarded,
                args=(loop, counts, wakeup[0]),
                name=f"osc-{name}-{self.port}",
                daemon=True,
            )
            self._threads.append(thread)
            if name == "udp":
                self._udp_wakeup = wakeup[1]
        self._running = True
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop the threads and close the sockets (idempotent)."""
        if not self._running:
            return
        self._stopping.set()
        for _, writer in self._wakeups:
            try:
                writer.send(b"x")
            except OSError:
                pass
        if self._udp_sock is not None:
            self._wake_udp(self._udp_sock)
        for thread in self._threads:
            thread.join(timeout_s)
        for reader, writer in self._wakeups:
            reader.close()
            writer.close()
        for sock in (self._udp_sock, self._tcp_sock):
            if sock is not None:
                sock.close()
        # Counters survive a stop: fold the threads' into the shared ones.
        with self._shared_lock:
            for counts in self._thread_counts:
                for name, value in counts.items():
                    if name.startswith("max_"):
                        value = max(value - self._shared_counts[name], 0)
                    self._shared_counts[name] += value
        self._thread_counts = []
        self._threads = []
        self._wakeups = []
        self._udp_wakeup = None
        self._udp_sock = self._tcp_sock = None
        self._running = False

    def _wake_udp(self, sock: socket.socket) -> None:
        """End the UDP thread's blocking receive: shutdown() wakes it on Linux;
        a datagram to ourselves does everywhere."""
        try:
            sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass  # ENOTCONN on an unconnected UDP socket, after waking readers
        host, port = sock.getsockname()[:2]
        if ipaddress.ip_address(host).is_unspecified:
            host = "::1" if self._family == socket.AF_INET6 else "127.0.0.1"
        try:
            with socket.socket(self._family, socket.SOCK_DGRAM) as poke:
                poke.sendto(b"", (host, port))
        except OSError:
            pass

    def __enter__(self) -> OscServer:  # noqa: PYI034 - Self needs Python 3.11
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._running

    def _bind(self) -> None:
        # With port 0 the UDP port is picked first and TCP must get the same
        # number; another program may hold it for TCP, so try a few.
        attempts = 20 if self._requested_port == 0 else 1
        for attempt in range(attempts):
            udp_sock = tcp_sock = None
            try:
                port = self._requested_port
                if self._serve_udp:
                    udp_sock = socket.socket(self._family, socket.SOCK_DGRAM)
                    try:  # room for bursts while a handler runs
                        udp_sock.setsockopt(
                            socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20
                        )
                    except OSError:
                        pass
                    udp_sock.bind(_resolve(self.host, port)[1])
                    port = udp_sock.getsockname()[1]
                if self._serve_tcp:
                    tcp_sock = socket.socket(self._family, socket.SOCK_STREAM)
                    tcp_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    tcp_sock.bind(_resolve(self.host, port)[1])
                    tcp_sock.listen(self.max_tcp_connections)
                    tcp_sock.setblocking(False)
                    port = tcp_sock.getsockname()[1]
            except OSError as error:
                for sock in (udp_sock, tcp_sock):
                    if sock is not None:
                        sock.close()
                if attempt + 1 < attempts:
                    continue
                raise OSError(
                    error.errno,
                    f"OSC server cannot bind {self.host}:{self._requested_port}: "
                    f"{error.strerror or error}",
                ) from None
            self._udp_sock, self._tcp_sock, self.port = udp_sock, tcp_sock, port
            return

    # --- counters and errors --------------------------------------------------

    def counters(self) -> dict[str, int]:
        """Every counter (see COUNTER_NAMES) summed over the receive threads
        (``max_handling_us``: the largest of them)."""
        with self._shared_lock:
            total = dict(self._shared_counts)
        fast = self.fast_counts()
        for counts in [*self._thread_counts, fast]:
            for name, value in list(counts.items()):
                if name not in total:
                    continue
                if name.startswith("max_"):
                    total[name] = max(total[name], value)
                else:
                    total[name] += value
        return total

    def recent_errors(self) -> list[str]:
        """The last few problems (malformed datagrams, handler errors), newest
        last, each naming the source and the address or offset."""
        return list(self._errors)

    def _note(self, text: str, warn: bool = False) -> None:
        self._errors.append(text)
        now = time.monotonic()
        # One log line a second at most: a flood must not become a log flood.
        if warn and now - self._last_log_s >= 1.0:
            self._last_log_s = now
            log.warning("%s", text)

    def _count_shared(self, name: str) -> None:
        with self._shared_lock:
            self._shared_counts[name] += 1

    # --- sending --------------------------------------------------------------

    def _allowed(self, host: str) -> bool:
        try:
            ip = ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            return False
        if ip.is_loopback:
            return True
        mapped = getattr(ip, "ipv4_mapped", None)
        ip = mapped or ip
        return any(ip in network for network in self.allow_networks)

    def reply(
        self,
        to: OscSender | tuple[str, int],
        address: str,
        args: Sequence[Any] = (),
        typetags: str | None = None,
    ) -> bool:
        """Send a message to a sender (over its transport) or to ``(host,
        port)`` over UDP from the server's socket. Returns whether it went.

        Never blocks for long: a TCP peer that does not read is dropped after
        ``_TCP_SEND_TIMEOUT_S``. Destinations outside loopback and
        ``allow_networks`` are refused (counted ``replies_refused``).
        """
        return self.send_packet(to, encode_message(address, args, typetags))

    def send_packet(self, to: OscSender | tuple[str, int], packet: bytes) -> bool:
        """Send an encoded message or bundle; see :meth:`reply`.

        Called by a handler, the packet goes out when the handler's datagram
        has been handled (and True means it is queued): a send gives up the
        GIL, and beside a busy Python thread getting it back costs a switch
        interval, which must not come between a bundle's messages.
        """
        host = to.host if isinstance(to, OscSender) else to[0]
        if not self._allowed(host):
            self._count_shared("replies_refused")
            return False
        deferred = getattr(self._local, "deferred", None)
        if deferred is not None:
            deferred.append((to, packet))
            return True
        return self._send_now(to, packet)

    def _send_now(self, to: OscSender | tuple[str, int], packet: bytes) -> bool:
        if isinstance(to, OscSender):
            host, port, connection = to.host, to.port, to._connection
        else:
            (host, port), connection = to, None
        try:
            if connection is not None:
                return self._send_tcp(connection, packet)
            sock = self._udp_sock
            if sock is None:
                self._count_shared("replies_failed")
                return False
            # MSG_DONTWAIT: the receive thread keeps the socket blocking, and
            # a reply must never wait for buffer space.
            sock.sendto(packet, socket.MSG_DONTWAIT, (host, port))
        except OSError as error:
            self._count_shared("replies_failed")
            self._note(f"reply to {host}:{port} failed: {error}")
            return False
        self._count_shared("replies_sent")
        return True

    def _send_tcp(self, connection: _Connection, packet: bytes) -> bool:
        with connection.write_lock:
            if connection.closed:
                self._count_shared("replies_failed")
                return False
            try:
                _send_within(
                    connection.sock, connection.frame(packet), _TCP_SEND_TIMEOUT_S
                )
            except OSError:
                # Part of a frame may have gone out; the stream is unusable.
                connection.closed = True
                try:
                    connection.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                self._count_shared("replies_failed")
                return False
        self._count_shared("replies_sent")
        return True

    # --- receiving ------------------------------------------------------------

    def _raise_priority(self, loop: Callable) -> None:
        """Give this receive thread ``thread_nice`` (Linux: per thread), and
        the UDP one SCHED_FIFO on top where allowed (the nice value then
        waits, for a later drop back to the normal policy)."""
        udp = getattr(loop, "__name__", "") == "_udp_loop"
        if self.thread_nice is not None:
            try:
                os.setpriority(
                    os.PRIO_PROCESS, threading.get_native_id(), self.thread_nice
                )
                if udp:
                    self.udp_scheduling = f"nice {self.thread_nice}"
            except (OSError, AttributeError) as error:  # no CAP_SYS_NICE
                self.priority_refused = True
                log.info(
                    "OSC receive thread keeps its priority (nice %d refused: %s)",
                    self.thread_nice,
                    error,
                )
        if udp and self.udp_fifo_priority is not None:
            priority = _below_realtime_threads(self.udp_fifo_priority)
            try:
                os.sched_setscheduler(
                    threading.get_native_id(),
                    os.SCHED_FIFO,
                    os.sched_param(priority),
                )
                self.udp_scheduling = f"SCHED_FIFO {priority}"
            except (OSError, AttributeError) as error:  # no CAP_SYS_NICE
                log.debug("OSC UDP thread: SCHED_FIFO %d refused: %s", priority, error)

    def _guarded(
        self, loop: Callable, counts: dict[str, int], wakeup: socket.socket
    ) -> None:
        self._raise_priority(loop)
        # The outermost catch-all: a bug in a loop must not end the thread.
        while not self._stopping.is_set():
            try:
                loop(counts, wakeup)
            except Exception as error:  # noqa: BLE001 - the receive thread must live
                counts["internal_errors"] += 1
                self._note(f"OSC receive loop: {error!r}", warn=True)
                time.sleep(0.01)  # a persistent fault must not spin a core

    def _udp_loop(self, counts: dict[str, int], wakeup: socket.socket) -> None:
        # A blocking receive: one system call per datagram, and stop() wakes
        # it. (Beside a busy Python thread, select() plus non-blocking reads
        # measured the same: either way the wait is for the GIL, about one
        # switch interval; see benchmarks/RESULTS.md.)
        sock = self._udp_sock
        assert sock is not None
        fast = self.fast
        # One bucket per source whichever path serves it: the fast path's.
        buckets: Any = (
            fast.buckets
            if fast is not None
            else _TokenBuckets(self.rate_hz, self.burst)
        )
        # One byte more than the limit tells an oversize datagram from one
        # exactly at it.
        buffer = np.zeros(self.max_datagram_bytes + 1, dtype=np.uint8)
        view = memoryview(buffer)
        failures = 0
        while not self._stopping.is_set():
            try:
                if fast is not None and fast.ready():
                    n_bytes, peer = fast.receive(sock.fileno(), buffer)
                    if n_bytes < 0:
                        if self._stopping.is_set():
                            return
                        # A signal or an ICMP error (errors are one-shot on
                        # UDP); a socket failing for good must not spin.
                        failures += 1
                        if failures > 100:
                            failures = 0
                            time.sleep(0.01)
                        continue
                    failures = 0
                else:
                    if fast is not None and not self._wait_udp(sock, wakeup):
                        continue  # woken: a table may be there now
                    n_bytes, peer = sock.recvfrom_into(buffer)
            except (InterruptedError, ConnectionError):
                continue  # a signal, or an ICMP error from an earlier reply
            except OSError:
                if self._stopping.is_set():
                    return
                raise
            if self._stopping.is_set():
                return
            try:
                sender = OscSender(peer[0], peer[1], "udp")
                self._timed_receive(
                    view[:n_bytes], n_bytes, sender, peer, buckets, counts
                )
            except Exception as error:  # noqa: BLE001 - the receive thread must live
                counts["internal_errors"] += 1
                self._note(f"OSC UDP receive: {error!r}", warn=True)

    @staticmethod
    def _wait_udp(sock: socket.socket, wakeup: socket.socket) -> bool:
        """Wait for a datagram (True) or a wake-up (False, drained)."""
        readable, _, _ = select.select([sock, wakeup], [], [])
        if wakeup in readable:
            try:
                wakeup.recv(4096, socket.MSG_DONTWAIT)
            except OSError:
                pass
            return False
        return True

    def _tcp_loop(self, counts: dict[str, int], wakeup: socket.socket) -> None:
        listener = self._tcp_sock
        assert listener is not None
        buckets = _TokenBuckets(self.rate_hz, self.burst)
        connections: dict[socket.socket, _Connection] = {}
        with selectors.DefaultSelector() as selector:
            selector.register(listener, selectors.EVENT_READ)
            selector.register(wakeup, selectors.EVENT_READ)
            try:
                while not self._stopping.is_set():
                    for key, _ in selector.select():
                        sock = key.fileobj
                        if sock is wakeup:
                            break
                        try:
                            if sock is listener:
                                self._accept(listener, selector, connections, counts)
                            else:
                                self._read_tcp(
                                    connections[sock],
                                    selector,
                                    connections,
                                    buckets,
                                    counts,
                                )
                        except Exception as error:  # noqa: BLE001 - the receive thread must live
                            counts["internal_errors"] += 1
                            self._note(f"OSC TCP receive: {error!r}", warn=True)
                            if sock in connections:
                                self._close(connections.pop(sock), selector)
            finally:
                for connection in connections.values():
                    self._close(connection, selector)

    def _accept(
        self,
        listener: socket.socket,
        selector: selectors.BaseSelector,
        connections: dict[socket.socket, _Connection],
        counts: dict[str, int],
    ) -> None:
        try:
            sock, peer = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionError):
            return
        if not self._allowed(peer[0]) or len(connections) >= self.max_tcp_connections:
            counts["tcp_refused"] += 1
            sock.close()
            return
        counts["tcp_connections"] += 1
        sock.setblocking(False)
        connection = _Connection(sock, peer)
        connections[sock] = connection
        selector.register(sock, selectors.EVENT_READ)

    def _read_tcp(
        self,
        connection: _Connection,
        selector: selectors.BaseSelector,
        connections: dict[socket.socket, _Connection],
        buckets: _TokenBuckets,
        counts: dict[str, int],
    ) -> None:
        try:
            data = connection.sock.recv(65536)
        except (BlockingIOError, InterruptedError, TimeoutError):
            return
        except OSError:
            data = b""
        if not data or connection.closed:
            self._close(connections.pop(connection.sock), selector)
            return
        peer = connection.peer
        sender = OscSender(peer[0], peer[1], "tcp", connection)
        if connection.decoder is None:
            connection.decoder = stream_decoder(data[0], self.max_datagram_bytes)
        decoder = connection.decoder
        for frame in decoder.feed(data):
            if isinstance(frame, OscError):
                counts["received"] += 1
                counts["malformed"] += 1
                self._note(f"TCP from {peer[0]}:{peer[1]}: {frame}")
                continue
            self._timed_receive(frame, len(frame), sender, connection, buckets, counts)
        if isinstance(decoder, LengthPrefixDecoder) and decoder.broken:
            self._close(connections.pop(connection.sock), selector)

    @staticmethod
    def _close(connection: _Connection, selector: selectors.BaseSelector) -> None:
        with connection.write_lock:
            connection.closed = True
        try:
            selector.unregister(connection.sock)
        except (KeyError, ValueError):
            pass
        connection.sock.close()

    def _timed_receive(
        self,
        data: Any,
        n_bytes: int,
        sender: OscSender,
        source: Any,
        buckets: _TokenBuckets,
        counts: dict[str, int],
    ) -> None:
        started_ns = time.monotonic_ns()
        started_cpu_ns = time.thread_time_ns()
        deferred: list[tuple[OscSender | tuple[str, int], bytes]] = []
        self._local.deferred = deferred
        try:
            self._receive(data, n_bytes, sender, source, buckets, counts)
        finally:
            self._local.deferred = None
            took_ns = time.monotonic_ns() - started_ns
            ran_ns = time.thread_time_ns() - started_cpu_ns
            if took_ns > SLOW_HANDLING_NS:
                counts["slow_handlings"] += 1
                if ran_ns > SLOW_HANDLING_NS:
                    counts["slow_handlings_working"] += 1
            if took_ns > counts["max_handling_us"] * 1000:
                counts["max_handling_us"] = took_ns // 1000
            if ran_ns > counts["max_handling_cpu_us"] * 1000:
                counts["max_handling_cpu_us"] = ran_ns // 1000
            for to, packet in deferred:  # replies, once every message applied
                self._send_now(to, packet)

    def _receive(
        self,
        data: Any,
        n_bytes: int,
        sender: OscSender,
        source: Any,
        buckets: _TokenBuckets,
        counts: dict[str, int],
    ) -> None:
        """One datagram or frame: checks, parse, dispatch (see COUNTER_NAMES)."""
        counts["received"] += 1
        if self._remote and not self._allowed(sender.host):
            counts["refused_source"] += 1
            return
        if n_bytes > self.max_datagram_bytes:
            counts["oversize"] += 1
            self._note(
                f"datagram of more than {self.max_datagram_bytes} bytes from "
                f"{sender.host}:{sender.port} refused"
            )
            return
        now_s = time.monotonic()
        # One token before parsing, so a flood costs no parsing...
        if not buckets.take(source, 1.0, now_s):
            counts["rate_limited"] += 1
            return
        try:
            messages = parse(bytes(data), self.limits)
        except OscError as error:
            counts["malformed"] += 1
            self._note(f"malformed from {sender.host}:{sender.port}: {error}")
            return
        registry = self._registry
        horizon_s = self.timetag_horizon_s
        plan: list[tuple[OscMessage, Any]] = []
        n_calls = 0
        for message in messages:
            if (
                horizon_s is not None
                and message.timetag is not None
                and ntp_to_unix(message.timetag) - time.time() > horizon_s
            ):
                plan.append((message, _TOO_FAR))
                continue
            targets = self._targets(message, registry)
            if isinstance(targets, tuple):
                costs = registry.costs
                n_calls += sum(costs.get(a, 1) for a, _ in targets) if targets else 1
            plan.append((message, targets))
        # A datagram's cost is its handler calls (a pattern may fan out; some
        # handlers count more): bounded per datagram, so no one datagram holds
        # the thread for long, and charged to the source's bucket, all or
        # nothing.
        if n_calls > self.max_dispatches:
            counts["over_budget"] += 1
            self._note(
                f"from {sender.host}:{sender.port}: {len(messages)} messages "
                f"calling {n_calls} handlers, over the limit of "
                f"{self.max_dispatches} a datagram; refused (send fewer at once)"
            )
            return
        if n_calls > 1 and not buckets.take(source, n_calls - 1, now_s):
            counts["rate_limited"] += 1
            return
        counts["parsed"] += 1
        counts["messages"] += len(messages)
        for message, targets in plan:
            if isinstance(targets, tuple):
                self._call(message, sender, targets, registry, counts)
            elif targets is _TOO_FAR:
                counts["too_far_ahead"] += 1
                self._note(
                    f"{message.address} from {sender.host}:{sender.port}: bundle "
                    f"timed more than {horizon_s:g} s ahead refused"
                )
            else:
                counts["pattern_refused"] += 1
                self._note(f"from {sender.host}:{sender.port}: {targets}")

    def _targets(
        self, message: OscMessage, registry: _Registry
    ) -> tuple[tuple[str, Handler], ...] | str:
        """The handlers ``message`` goes to (empty: none matches), or why its
        pattern is refused."""
        handler = registry.handlers.get(message.address)
        if handler is not None:
            return ((message.address, handler),)
        if not is_pattern(message.address):
            return ()
        addresses = registry.pattern_cache.get(message.address)
        if addresses is None:
            try:
                addresses = tuple(registry.address_set.match(message.address))
            except PatternError as error:
                return str(error)
            if len(registry.pattern_cache) >= 256:
                registry.pattern_cache.clear()
            registry.pattern_cache[message.address] = addresses
        if len(addresses) > self.max_pattern_matches:
            return (
                f"pattern {message.address} matches {len(addresses)} addresses, "
                f"over the limit of {self.max_pattern_matches}"
            )
        return tuple((a, registry.handlers[a]) for a in addresses)

    def _call(
        self,
        message: OscMessage,
        sender: OscSender,
        targets: tuple[tuple[str, Handler], ...],
        registry: _Registry,
        counts: dict[str, int],
    ) -> None:
        if not targets:
            if registry.default is None:
                counts["unknown_address"] += 1
                return
            targets = ((message.address, registry.default),)
        failed = False
        for address, target in targets:
            try:
                target(message, sender)
            except Exception as error:  # noqa: BLE001 - the receive thread must live
                failed = True
                self._note(
                    f"handler for {address} ({message.address} from "
                    f"{sender.host}:{sender.port}) raised {error!r}",
                    warn=True,
                )
                if self.on_handler_error is not None:
                    try:
                        self.on_handler_error(message, sender, error)
                    except Exception as report_error:  # noqa: BLE001 - the receive thread must live
                        self._note(f"on_handler_error raised {report_error!r}")
        counts["handler_errors" if failed else "dispatched"] += 1
