"""The engine's OSC address space: what each address does to the scene player.

    api = OscApi(server, player, clock=FrameClock.for_live(engine, live))
    api.install()       # registers /soundscape/... on the server
    # /soundscape/input/danger 0.7     -> player.set_input("danger", 0.7)
    # /soundscape/trigger/hit 0.8      -> player.fire("hit", 0.8)
    # /soundscape/status i:9001        -> a status bundle to port 9001

The reference (every address, its arguments, ranges and replies) is
``docs/osc.md``; :data:`ADDRESS_DOC` holds the same table and a test keeps the
two in step. In short, under the prefix (default ``/soundscape``):

- ``/scene s:name [n:fade_s]``: crossfade to a shipped scene, by name only
  (loaded on a worker thread; ``/scene/loaded s:name`` answers)
- ``/input/<name> n`` or ``/input s:name n``: set a scene input
- ``/state s:name`` or ``/state/<name> [n]``: move to a state
- ``/trigger/<name> [n:velocity]`` or ``/trigger s:name [n]``: fire a trigger
- ``/layer/<layer>/<node>/<param> n [n:ramp_s]``, ``/layer/<layer>/gain_db
  n [n:ramp_s]``: a layer's parameter
- ``/volume n:gain_db [n:ramp_s]``, ``/sleep n:after_s [n:fade_s]``,
  ``/sleep/cancel``
- ``/status [i:port [s:host]]``, ``/subscribe [n:rate_hz [i:port [s:host]]]``,
  ``/unsubscribe [i:port [s:host]]``
- ``/stop``: the daemon fades out and exits (``/stopping f:fade_s`` answers;
  refused where nothing stops on request, as in ``soundscape play``)

``n`` is a number: int or float (``i h f d``); inputs also take ``T``/``F``.
Anything else, NaN or infinity is refused: nothing is applied, an error reply
``/error s:address s:reason`` goes to the sender, and a counter moves. A value
out of its range is clamped, applied, and answered with ``/warning s:address
s:reason``. Replies to one sender are rate limited (``error_replies_per_s``).

Timing: a message in a bundle with a timetag applies on the engine frame that
:class:`FrameClock` maps the timetag to (exactly; a timetag already past is
applied at the next block and counted ``late``); any other message applies at
the next block, plus the parameter's ramp or smoothing. Scene loads and the
sleep timer ignore timetags (they are not sample-accurate operations).

Fast path: plain sets of an input (``/input/<name> n``, one argument, in
range, from loopback), and live, of a layer parameter without a ramp, are
taken by the server's GIL-free loop (:mod:`engine.control.osc_fast_path`)
with the same effect as the handler: the input's value, the targets, the
held input's loudness hold on the current state's curve, the counters
(``applied``). A held input (its hold is an event) and a layer parameter go
that way only live and while the event ring is empty. The API gives the
server the table for it (:meth:`OscApi.fast_table`) and the server rebuilds
it at every scene, state or handler change.

Threads: handlers run on the OSC receive threads (UDP and TCP) and only check,
convert and hand over to the player (which takes its own lock); scene loads run
on the API's loader thread, status for subscribers on their sender thread.
Never the audio thread.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import queue
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from engine.control.frame_clock import FrameClock
from engine.control.osc_server import OscSender, OscServer
from engine.control.osc_subscriptions import Subscriptions
from engine.control.osc_wire import OscMessage, encode_bundle, encode_message
from engine.naming import did_you_mean
from engine.scenes.format import layer_copies
from engine.sensors.bridges import check_prefix

__all__ = [
    "ADDRESS_DOC",
    "API_COUNTER_NAMES",
    "DEFAULT_PREFIX",
    "MAX_FADE_S",
    "MAX_RAMP_S",
    "MAX_SLEEP_S",
    "OscApi",
    "scene_by_name",
]

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "/soundscape"
MAX_RAMP_S = 3600.0
MAX_FADE_S = 600.0
MAX_SLEEP_S = 24 * 3600.0
DEFAULT_SUBSCRIBE_RATE_HZ = 10.0
DEFAULT_ERROR_REPLIES_PER_S = 20.0
# A handler moves the events due in the next this-many seconds to the audio
# thread's ring at once. Live, the engine already hands every event due within
# the pump's 200 ms to the ring as it is scheduled (Engine.deliver_ahead), so
# this finds nothing more; it matters for an engine no live pump serves.
PUMP_AHEAD_S = 0.01
# A scene name is a file name in a scene folder, nothing that could be a path.
_SCENE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_MAX_TEXT = 200  # longest address or reason echoed in a reply
# What a handler counts against a datagram's budget (OscServer max_dispatches,
# 64) and the sender's rate, in plain parameter sets (~25 us each): a state
# ramps every layer, a trigger schedules a voice's events, a status reply
# builds and encodes the whole status.
_COSTS = {"/state": 3, "/trigger": 2, "/status": 8, "/subscribe": 8}
_MAX_REPLY_SOURCES = 256

# Every message the API handles ends in exactly one of: applied, rejected,
# ignored (a button release), unknown_address. clamped and late count applied
# messages with a clamped value or a past timetag.
API_COUNTER_NAMES = (
    "applied",
    "rejected",
    "ignored",
    "unknown_address",
    "clamped",
    "late",
    "error_replies",
    "replies_suppressed",
    "status_replies",
    "scene_loads",
    "scene_load_errors",
)

# address (under the prefix), argument types, what it does, reply. docs/osc.md
# has the same rows with ranges; tests check every one is served and listed.
ADDRESS_DOC: tuple[tuple[str, str, str], ...] = (
    ("/scene", "s [n]", "crossfade to a shipped scene"),
    ("/input/<name>", "n|T|F", "set a scene input"),
    ("/input", "s n|T|F", "set a scene input by name"),
    ("/state", "s", "move to a discrete state"),
    ("/state/<name>", "[n|T|F]", "move to a state (0 or F: ignored)"),
    ("/trigger/<name>", "[n]", "fire a trigger (velocity 0..1)"),
    ("/trigger", "s [n]", "fire a trigger by name"),
    ("/layer/<layer>/<node>/<param>", "n [n]", "set a layer's parameter"),
    ("/layer/<layer>/gain_db", "n [n]", "set a layer's gain"),
    ("/volume", "n [n]", "master volume in dB"),
    ("/sleep", "n [n]", "sleep timer: silence after n s"),
    ("/sleep/cancel", "", "cancel the sleep timer"),
    ("/status", "[i [s]]", "status bundle to the sender or a port"),
    ("/subscribe", "[n [i [s]]]", "status bundles at a rate"),
    ("/unsubscribe", "[i [s]]", "stop them"),
    ("/stop", "", "the daemon fades out and exits"),
)


class Rejected(ValueError):
    """A message the API refuses; the text is the reason sent back."""


def scene_by_name(name: Any, folders: list[Path]) -> Path:
    """The scene file called ``name`` in one of ``folders``, or
    :class:`Rejected`. Only a plain name (letters, digits, ``_``, ``-``) of a
    ``.yaml`` file directly in a folder is accepted, and the file must resolve
    inside it: nothing from OSC opens a path of its choosing.

    >>> scene_by_name("../etc/passwd", [])
    Traceback (most recent call last):
    ...
    engine.control.osc_api.Rejected: '../etc/passwd' is not a scene name \
(letters, digits, _ and -)
    """
    if not isinstance(name, str) or not _SCENE_NAME.match(name):
        shown = name if isinstance(name, str) else type(name).__name__
        raise Rejected(f"{shown[:64]!r} is not a scene name (letters, digits, _ and -)")
    known: dict[str, Path] = {}
    for folder in folders:
        try:
            folder = folder.resolve()
            files = sorted(folder.glob("*.yaml"))
        except OSError:
            continue
        for path in files:
            resolved = path.resolve()
            if resolved.parent == folder and resolved.is_file():
                known.setdefault(path.stem, resolved)
    path = known.get(name)
    if path is None:
        raise Rejected(
            f"no scene {name!r}{did_you_mean(name, known)}; "
            f"scenes: {', '.join(sorted(known)) or 'none'}"
        )
    return path


def _number(args: tuple[Any, ...], index: int, what: str, flags: bool = False) -> float:
    """Argument ``index`` as a finite float (int or float; T/F if ``flags``)."""
    if index >= len(args):
        raise Rejected(f"{what}: missing (argument {index + 1})")
    value = args[index]
    if isinstance(value, bool):
        if flags:
            return 1.0 if value else 0.0
        raise Rejected(f"{what}: expected a number, got {value!r}")
    if not isinstance(value, int | float):
        shown = repr(value)[:40]
        raise Rejected(f"{what}: expected a number, got {shown}")
    try:
        number = float(value)
    except OverflowError:  # an int64 beyond a float's range cannot be one
        raise Rejected(f"{what}: {value} is out of range") from None
    if not math.isfinite(number):
        raise Rejected(f"{what}: {value!r} is not a finite number")
    return number


def _optional(
    args: tuple[Any, ...], index: int, what: str, default: float | None
) -> float | None:
    if index >= len(args):
        return default
    return _number(args, index, what)


def _text(args: tuple[Any, ...], index: int, what: str) -> str:
    if index >= len(args) or not isinstance(args[index], str):
        got = "nothing" if index >= len(args) else repr(args[index])[:40]
        raise Rejected(f"{what}: expected a string (s), got {got}")
    return args[index]


def _limit(value: float, low: float, high: float, what: str, notes: list[str]) -> float:
    """``value`` clamped to low..high; a note says so when it moved."""
    clamped = min(max(value, low), high)
    if clamped != value:
        notes.append(f"{what} {value:g} clamped to {clamped:g} ({low:g}..{high:g})")
    return clamped


class _ReplyBudget:
    """Token buckets per destination for error and warning replies, so a
    stream of bad messages does not become a stream of replies."""

    def __init__(self, rate_hz: float) -> None:
        self.rate_hz = rate_hz
        self._buckets: OrderedDict[Hashable, list[float]] = OrderedDict()
        self._lock = threading.Lock()

    def peek(self, key: Hashable) -> bool:
        """Whether ``take`` would succeed now (nothing is taken)."""
        now_s = time.monotonic()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                return True
            return bucket[0] + (now_s - bucket[1]) * self.rate_hz >= 1.0

    def take(self, key: Hashable) -> bool:
        now_s = time.monotonic()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = [self.rate_hz, now_s]
                if len(self._buckets) > _MAX_REPLY_SOURCES:
                    self._buckets.popitem(last=False)
            tokens = min(self.rate_hz, bucket[0] + (now_s - bucket[1]) * self.rate_hz)
            bucket[1] = now_s
            if tokens < 1.0:
                bucket[0] = tokens
                return False
            bucket[0] = tokens - 1.0
            return True


class OscApi:
    """Binds the documented addresses on ``server`` to ``player``.

    Args:
        server: the :class:`OscServer` (started or not).
        player: a :class:`engine.scenes.player.ScenePlayer`.
        prefix: the address prefix (``/soundscape``).
        clock: maps timetags to engine frames; None ignores timetags.
        status: returns the status dict (see :mod:`engine.control.status`).
        scene_folders: where ``/scene`` looks for names (default: the shipped
            scenes folder).
        pump_events: move events into the audio thread's ring from the
            handler (live playback); offline, renders do it.
        max_subscribers: the bound on ``/subscribe``.
        error_replies_per_s: error and warning replies per destination.
        on_stop: serves ``/stop``: starts the fade-out and returns its length
            in seconds (None: ``/stop`` is refused).
        on_scene_loaded: called on the loader thread after each scene load.
    """

    def __init__(
        self,
        server: OscServer,
        player: Any,
        *,
        prefix: str = DEFAULT_PREFIX,
        clock: FrameClock | None = None,
        status: Callable[[], dict[str, Any]] | None = None,
        scene_folders: list[Path] | None = None,
        pump_events: bool = False,
        max_subscribers: int = 8,
        error_replies_per_s: float = DEFAULT_ERROR_REPLIES_PER_S,
        on_stop: Callable[[], float] | None = None,
        on_scene_loaded: Callable[[], None] | None = None,
    ) -> None:
        check_prefix(prefix)
        if prefix.endswith("/"):
            raise ValueError(f"OSC prefix {prefix!r} must not end with '/'")
        if scene_folders is None:
            from engine.scenes.library import SCENES_DIR

            scene_folders = [SCENES_DIR]
        self.server = server
        self.player = player
        self.engine = player.engine
        self.prefix = prefix
        self.clock = clock
        self.status = status if status is not None else self._plain_status
        self.scene_folders = [Path(f) for f in scene_folders]
        self.on_stop = on_stop
        self.pump_frames = (
            round(PUMP_AHEAD_S * self.engine.sample_rate) if pump_events else 0
        )
        self.subscriptions = Subscriptions(
            self._send_to, self.status_packet, max_subscribers=max_subscribers
        )
        self._replies = _ReplyBudget(error_replies_per_s)
        self._counts = dict.fromkeys(API_COUNTER_NAMES, 0)
        self._count_lock = threading.Lock()
        self._scene_addresses: set[str] = set()
        self._families: dict[str, list[str]] = {}
        self._loads: queue.Queue[tuple[str, Path, float | None, OscSender]] = (
            queue.Queue(1)
        )
        self._loader: threading.Thread | None = None
        self._stop = threading.Event()
        self._installed = False
        self._fixed: list[str] = []
        # address -> (input name, its registered handler), for the fast path;
        # and address -> ((layer, node, param), its handler).
        self._input_routes: dict[str, tuple[str, Callable[..., None]]] = {}
        self._param_routes: dict[
            str, tuple[tuple[str, str, str], Callable[..., None]]
        ] = {}
        self.on_scene_loaded = on_scene_loaded

    # Life cycle ----------------------------------------------------------------

    def install(self) -> OscApi:
        """Register every address, the catch-all for the prefix, the error
        reply for handler failures; start the loader and subscription threads."""
        p = self.prefix
        fixed = {
            f"{p}/scene": self._on_scene,
            f"{p}/input": self._on_input_by_name,
            f"{p}/state": self._on_state_by_name,
            f"{p}/trigger": self._on_trigger_by_name,
            f"{p}/volume": self._on_volume,
            f"{p}/sleep": self._on_sleep,
            f"{p}/sleep/cancel": self._on_sleep_cancel,
            f"{p}/status": self._on_status,
            f"{p}/subscribe": self._on_subscribe,
            f"{p}/unsubscribe": self._on_unsubscribe,
            f"{p}/stop": self._on_stop,
        }
        for address, handler in fixed.items():
            cost = _COSTS.get(address.removeprefix(p), 1)
            self.server.add_handler(address, self._guard(handler), cost)
        self._fixed = list(fixed)
        self.server.set_default_handler(self._on_unknown)
        self.server.on_handler_error = self._on_handler_error
        self.refresh_addresses()
        self.server.set_fast_provider(self.fast_table)
        self._stop.clear()
        self._loader = threading.Thread(
            target=self._load_scenes, name="soundscape-osc-scenes", daemon=True
        )
        self._loader.start()
        self.subscriptions.start()
        self._installed = True
        return self

    def close(self) -> None:
        """Stop the loader and subscription threads (the server is the
        caller's to stop)."""
        self._stop.set()
        self.server.set_fast_provider(None)
        try:
            self._loads.put_nowait(("", Path(), None, OscSender("", 0)))
        except queue.Full:
            pass
        if self._loader is not None:
            self._loader.join(5.0)
            self._loader = None
        self.subscriptions.stop()

    def counters(self) -> dict[str, int]:
        """The API's counters (see API_COUNTER_NAMES), the fast path's sets
        counted as ``applied``."""
        with self._count_lock:
            counts = dict(self._counts)
        counts["applied"] += self.server.fast_counts().get("applied", 0)
        return counts

    def _count(self, name: str, n: int = 1) -> None:
        with self._count_lock:
            self._counts[name] += n

    # Scene-dependent addresses -------------------------------------------------

    def refresh_addresses(self) -> None:
        """Register the playing scene's inputs, states, triggers and layer
        parameters (after a scene change; the old ones are removed)."""
        p = self.prefix
        wanted: dict[str, Callable[[OscMessage, OscSender], None]] = {}
        costs: dict[str, int] = {}
        families: dict[str, list[str]] = {"input": [], "state": [], "trigger": []}
        families["layer"] = []
        try:
            scene = self.player.scene
        except ValueError:
            scene = None
        routes = {}
        param_routes = {}
        if scene is not None:
            for name in scene["inputs"]:
                handler = self._guard(self._input_handler(name))
                wanted[f"{p}/input/{name}"] = handler
                routes[f"{p}/input/{name}"] = (name, handler)
                families["input"].append(name)
            for name in scene["states"]:
                wanted[f"{p}/state/{name}"] = self._guard(self._state_handler(name))
                costs[f"{p}/state/{name}"] = _COSTS["/state"]
                families["state"].append(name)
            for name in scene["triggers"]:
                wanted[f"{p}/trigger/{name}"] = self._guard(self._trigger_handler(name))
                costs[f"{p}/trigger/{name}"] = _COSTS["/trigger"]
                families["trigger"].append(name)
            program = self.engine.current
            playing = [n for n, layer in scene["layers"].items() if not layer["muted"]]
            for layer in playing:
                handler = self._guard(self._param_handler(layer, "level", "gain_db"))
                wanted[f"{p}/layer/{layer}/gain_db"] = handler
                param_routes[f"{p}/layer/{layer}/gain_db"] = (
                    (layer, "level", "gain_db"),
                    handler,
                )
                families["layer"].append(f"{layer}/gain_db")
                for node, param in program.param_refs if program else ():
                    head, _, node_name = node.partition(".")
                    if head != layer or not node_name:
                        continue
                    key = f"{layer}/{node_name}/{param}"
                    handler = self._guard(self._param_handler(layer, node_name, param))
                    wanted[f"{p}/layer/{key}"] = handler
                    param_routes[f"{p}/layer/{key}"] = (
                        (layer, node_name, param),
                        handler,
                    )
                    families["layer"].append(key)
        for address in self._scene_addresses - set(wanted):
            self.server.remove_handler(address)
        registered = set()
        for address, handler in wanted.items():
            try:
                self.server.add_handler(address, handler, costs.get(address, 1))
            except ValueError as error:  # a name OSC cannot carry
                log.warning("not addressable over OSC: %s", error)
                continue
            registered.add(address)
        self._scene_addresses = registered
        self._families = families
        self._input_routes = routes
        self._param_routes = param_routes
        self.server.fast_changed()

    def fast_table(self, handlers: dict[str, Callable[..., None]]) -> Any:
        """``(FastTable, engine ctl)`` for the server's fast path: the inputs
        whose address still has this API's handler in ``handlers``, and, where
        the engine hands events to the ring as they are scheduled (live), the
        layer parameters likewise and the inputs the player holds (their
        ``hold_db`` is an EV_SET on the Python path: the loop writes it with
        the current state's curve, while the ring is empty), for the scene,
        state and program playing now; None when nothing plays.

        Called on the UDP receive thread when the table is stale."""
        from contextlib import nullcontext

        from engine.control.osc_fast_path import FastTable
        from engine.rt.core import C_REQUEST
        from engine.scenes.format import hold_node

        player = self.player
        with getattr(player, "_lock", None) or nullcontext():
            inputs = player.inputs
            program = self.engine.current
            if inputs is None or program is None:
                return None
            # Offline, a set waits in the schedule behind any event there;
            # live, every due event is already in the ring the loop checks.
            live = bool(self.pump_frames and getattr(self.engine, "_deliver_frames", 0))
            loaded = getattr(player, "_loaded", None)
            trims = getattr(loaded, "input_trims_db", {})
            # As ScenePlayer.set_input: held where the current state holds it.
            curves = trims.get(getattr(player, "state", None), {})
            routes = {}
            holds = {}
            for address, (name, handler) in self._input_routes.items():
                if handlers.get(address) is not handler or name not in inputs.specs:
                    continue
                if name in curves:
                    if not live:
                        continue  # offline, its hold waits in the schedule
                    xs, ys = curves[name]
                    holds[name] = (hold_node(name), xs, ys)
                routes[address] = name
            params = {}
            if live:
                scene = player.scene
                for address, (names, handler) in self._param_routes.items():
                    layer, node, param = names
                    if handlers.get(address) is not handler:
                        continue
                    if layer not in scene["layers"] or scene["layers"][layer]["muted"]:
                        continue
                    copies = layer_copies(scene, layer)
                    params[address] = (param, [f"{c}.{node}" for c in copies])
            request = int(self.engine.ctl[C_REQUEST])
            state_changes = getattr(player, "state_changes", None)
            table = FastTable.build(
                routes,
                inputs,
                program,
                request,
                self.engine.ring.positions,
                params,
                holds=holds,
                state_changes=state_changes,
                state_count=int(state_changes[0]) if state_changes is not None else 0,
            )
        return table, self.engine.ctl

    # Replies -------------------------------------------------------------------

    def _send_to(self, destination: Hashable, packet: bytes) -> bool:
        return self.server.send_packet(destination, packet)  # type: ignore[arg-type]

    def reply_problem(
        self, kind: str, address: str, reason: str, sender: OscSender
    ) -> None:
        """Send ``/error`` or ``/warning`` (``kind``) naming the address and the
        reason to ``sender``, within its reply budget."""
        key = (sender.host, sender.port, sender.transport)
        if not self._replies.take(key):
            self._count("replies_suppressed")
            return
        self._count("error_replies")
        self.server.reply(
            sender,
            f"{self.prefix}/{kind}",
            [address[:_MAX_TEXT], reason[:_MAX_TEXT]],
            "ss",
        )

    def _on_handler_error(
        self, message: OscMessage, sender: OscSender, error: BaseException
    ) -> None:
        # Aliases and heart-rate decoders raise ValueError for a bad message;
        # anything else is a bug, reported as such.
        if isinstance(error, ValueError):
            reason = str(error)
        else:
            reason = f"internal error: {type(error).__name__}: {error}"
        self._count("rejected")
        self.reply_problem("error", message.address, reason, sender)

    def _guard(
        self, handler: Callable[[OscMessage, OscSender], list[str] | None]
    ) -> Callable[[OscMessage, OscSender], None]:
        """Run ``handler``; turn refusals into error replies and clamping notes
        into warnings, and count each outcome."""

        def guarded(message: OscMessage, sender: OscSender) -> None:
            try:
                notes = handler(message, sender)
            except Rejected as error:
                self._count("rejected")
                self.reply_problem("error", message.address, str(error), sender)
                return
            except ValueError as error:  # the player's own refusals
                self._count("rejected")
                self.reply_problem("error", message.address, str(error), sender)
                return
            if notes is None:
                self._count("ignored")
                return
            self._count("applied")
            if notes:
                self._count("clamped")
                self.reply_problem("warning", message.address, "; ".join(notes), sender)

        return guarded

    # Timing ----------------------------------------------------------------------

    def _frame(self, message: OscMessage) -> int | None:
        """The engine frame a message applies on (None: the next block)."""
        if message.timetag is None or self.clock is None:
            return None
        frame = self.clock.frame_at(message.time_s)  # type: ignore[arg-type]
        if frame <= self.engine.frame:
            self._count("late")
            return None
        return frame

    def _pump(self) -> None:
        if self.pump_frames:
            self.engine.pump(self.pump_frames)

    # Handlers ---------------------------------------------------------------------

    def _set_input(self, name: str, message: OscMessage, value_index: int) -> list[str]:
        value = _number(message.args, value_index, f"input {name!r}", flags=True)
        used = self.player.set_input(name, value, self._frame(message))
        self._pump()
        notes = []
        if used != value:
            spec = self.player.inputs.specs[name]
            notes.append(
                f"input {name!r}: {value:g} clamped to {used:g} "
                f"({spec['minimum']:g}..{spec['maximum']:g})"
            )
        return notes

    def _input_handler(self, name: str) -> Callable[..., list[str]]:
        def handle(message: OscMessage, sender: OscSender) -> list[str]:
            return self._set_input(name, message, 0)

        return handle

    def _on_input_by_name(self, message: OscMessage, sender: OscSender) -> list[str]:
        return self._set_input(_text(message.args, 0, "input name"), message, 1)

    def _go_to_state(self, name: str, message: OscMessage) -> list[str]:
        self.player.set_state(name, self._frame(message))
        self._pump()
        return []

    def _state_handler(self, name: str) -> Callable[..., list[str] | None]:
        def handle(message: OscMessage, sender: OscSender) -> list[str] | None:
            # A button sends 1 on press and 0 on release: only the press counts.
            if message.args and _number(message.args, 0, "state", flags=True) == 0:
                return None
            return self._go_to_state(name, message)

        return handle

    def _on_state_by_name(self, message: OscMessage, sender: OscSender) -> list[str]:
        return self._go_to_state(_text(message.args, 0, "state name"), message)

    def _fire(self, name: str, message: OscMessage, index: int) -> list[str] | None:
        notes: list[str] = []
        if index < len(message.args):
            velocity = _number(message.args, index, "velocity", flags=True)
        else:
            velocity = 1.0
        velocity = _limit(velocity, 0.0, 1.0, "velocity", notes)
        if velocity == 0.0:
            if name not in self.player.scene["triggers"]:
                self.player.fire(name, 0.0)  # the player names the mistake
            return None  # a button's release
        self.player.fire(name, velocity, self._frame(message))
        self._pump()
        return notes

    def _trigger_handler(self, name: str) -> Callable[..., list[str] | None]:
        def handle(message: OscMessage, sender: OscSender) -> list[str] | None:
            return self._fire(name, message, 0)

        return handle

    def _on_trigger_by_name(
        self, message: OscMessage, sender: OscSender
    ) -> list[str] | None:
        return self._fire(_text(message.args, 0, "trigger name"), message, 1)

    def _param_handler(
        self, layer: str, node: str, param: str
    ) -> Callable[..., list[str]]:
        what = f"{layer}.{node}.{param}"

        def handle(message: OscMessage, sender: OscSender) -> list[str]:
            notes: list[str] = []
            value = _number(message.args, 0, what)
            program = self.engine.current
            if program is not None:
                try:
                    ref = program.param(f"{layer}.{node}", param)
                except KeyError:
                    raise Rejected(f"{what}: not in the playing scene") from None
                value = _limit(value, ref.minimum, ref.maximum, what, notes)
            ramp_s = _optional(message.args, 1, "ramp_s", None)
            if ramp_s is not None:
                ramp_s = _limit(ramp_s, 0.0, MAX_RAMP_S, "ramp_s", notes)
            self.player.set_param(
                layer, node, param, value, ramp_s, self._frame(message)
            )
            self._pump()
            return notes

        return handle

    def _on_volume(self, message: OscMessage, sender: OscSender) -> list[str]:
        notes: list[str] = []
        gain_db = _number(message.args, 0, "volume gain_db")
        ramp_s = _optional(message.args, 1, "ramp_s", 0.5)
        ramp_s = _limit(ramp_s, 0.0, MAX_RAMP_S, "ramp_s", notes)  # type: ignore[arg-type]
        used = self.player.set_volume(gain_db, ramp_s, self._frame(message))
        self._pump()
        if used != gain_db:
            notes.append(
                f"volume {gain_db:g} dB clamped to {used:g} dB "
                f"(-120..{self.player.volume_cap_db:g})"
            )
        return notes

    def _on_sleep(self, message: OscMessage, sender: OscSender) -> list[str]:
        notes: list[str] = []
        after_s = _limit(
            _number(message.args, 0, "sleep after_s"),
            0.0,
            MAX_SLEEP_S,
            "after_s",
            notes,
        )
        fade_s = _optional(message.args, 1, "fade_s", min(300.0, after_s))
        fade_s = _limit(fade_s, 0.0, after_s, "fade_s", notes)  # type: ignore[arg-type]
        self.player.sleep_timer(after_s, fade_s)
        self._pump()
        return notes

    def _on_sleep_cancel(self, message: OscMessage, sender: OscSender) -> list[str]:
        self.player.cancel_sleep_timer()
        self._pump()
        return []

    def _on_scene(self, message: OscMessage, sender: OscSender) -> list[str]:
        notes: list[str] = []
        name = _text(message.args, 0, "scene name")
        path = scene_by_name(name, self.scene_folders)
        fade_s = _optional(message.args, 1, "fade_s", None)
        if fade_s is not None:
            fade_s = _limit(fade_s, 0.0, MAX_FADE_S, "fade_s", notes)
        try:
            self._loads.put_nowait((name, path, fade_s, sender))
        except queue.Full:
            raise Rejected(
                "a scene is still loading; send again when /scene/loaded arrives"
            ) from None
        return notes

    def _load_scenes(self) -> None:
        while not self._stop.is_set():
            name, path, fade_s, sender = self._loads.get()
            if self._stop.is_set():
                return
            address = f"{self.prefix}/scene"
            try:
                # A switch still fading would make the engine wait inside the
                # player's lock; wait here instead.
                deadline_s = time.monotonic() + MAX_FADE_S
                while self.engine.switching and time.monotonic() < deadline_s:
                    if self._stop.wait(0.01):
                        return
                self.player.load(path, fade_s)
                self.refresh_addresses()
                if self.on_scene_loaded is not None:
                    self.on_scene_loaded()
            except Exception as error:  # noqa: BLE001 - the loader must live
                self._count("scene_load_errors")
                self.reply_problem("error", address, f"scene {name!r}: {error}", sender)
                continue
            self._count("scene_loads")
            self.server.reply(sender, f"{self.prefix}/scene/loaded", [name], "s")

    def _destination(
        self, message: OscMessage, sender: OscSender, index: int
    ) -> OscSender | tuple[str, int]:
        """The sender, or ``(host, port)`` from arguments ``index`` (port)
        and ``index + 1`` (host, default the sender's)."""
        if index >= len(message.args):
            # One key per UDP destination, however it was named.
            return (sender.host, sender.port) if sender.transport == "udp" else sender
        port = _number(message.args, index, "reply port")
        if port != int(port) or not 1 <= port <= 65535:
            raise Rejected(f"reply port: {port:g} is not a port (1..65535)")
        host = sender.host
        if index + 1 < len(message.args):
            host = _text(message.args, index + 1, "reply host")
            if host == "localhost":
                host = "127.0.0.1"
            try:
                ipaddress.ip_address(host)  # no name lookups on a receive thread
            except ValueError:
                raise Rejected(
                    f"reply host: {host[:64]!r} is not an IP address"
                ) from None
        return host, int(port)

    def _on_status(self, message: OscMessage, sender: OscSender) -> list[str]:
        destination = self._destination(message, sender, 0)
        if not self.server.send_packet(destination, self.status_packet()):
            raise Rejected(f"status could not be sent to {_where(destination)}")
        self._count("status_replies")
        return []

    def _on_subscribe(self, message: OscMessage, sender: OscSender) -> list[str]:
        notes: list[str] = []
        rate_hz = _optional(message.args, 0, "rate_hz", DEFAULT_SUBSCRIBE_RATE_HZ)
        used = Subscriptions.clamp_rate(rate_hz)  # type: ignore[arg-type]
        if used != rate_hz:
            notes.append(f"rate_hz {rate_hz:g} clamped to {used:g}")
        destination = self._destination(message, sender, 1)
        # The acknowledgement goes first: a destination the server may not
        # send to (outside the allow-list) is refused here, not subscribed.
        if not self.server.reply(destination, f"{self.prefix}/subscribed", [used], "f"):
            raise Rejected(f"cannot send to {_where(destination)}")
        self.subscriptions.subscribe(destination, used)
        return notes

    def _on_unsubscribe(self, message: OscMessage, sender: OscSender) -> list[str]:
        destination = self._destination(message, sender, 0)
        if not self.subscriptions.unsubscribe(destination):
            raise Rejected(f"{_where(destination)} is not subscribed")
        return []

    def _on_stop(self, message: OscMessage, sender: OscSender) -> list[str]:
        if self.on_stop is None:
            raise Rejected("nothing to stop here: /stop is for the daemon")
        fade_s = float(self.on_stop())
        self.server.reply(sender, f"{self.prefix}/stopping", [fade_s], "f")
        return []

    def _on_unknown(self, message: OscMessage, sender: OscSender) -> None:
        address = message.address
        if not address.startswith(self.prefix + "/"):
            self._count("unknown_address")  # not ours: games send all sorts
            return
        self._count("rejected")
        # A suggestion costs a fuzzy match: only for a reply that will go out
        # (a bundle of 250 unknown addresses must not cost 250 of them).
        if not self._replies.peek((sender.host, sender.port, sender.transport)):
            self._count("replies_suppressed")
            return
        rest = address[len(self.prefix) + 1 :]
        family, _, name = rest.partition("/")
        hint = ""
        if len(rest) <= 96:  # suggestions cost time; long junk gets none
            if family in self._families and name:
                choices = self._families[family]
                hint = did_you_mean(name, choices)
                known = ", ".join(choices[:12]) or "none"
                reason = f"no {family} {name!r}{hint} ({family}s: {known})"
                self.reply_problem("error", address, reason, sender)
                return
            suffixes = [a[len(self.prefix) :] for a in self._fixed]
            hint = did_you_mean("/" + rest, suffixes)
        self.reply_problem(
            "error", address[:_MAX_TEXT], f"unknown address{hint}", sender
        )

    # Status -------------------------------------------------------------------------

    def _plain_status(self) -> dict[str, Any]:
        status = self.player.status()
        return {
            "scene": status.get("scene") or "",
            "state": status.get("state") or "",
            "inputs": dict(status.get("inputs", {})),
        }

    def status_packet(self) -> bytes:
        """The status as one OSC bundle of ``<prefix>/status/...`` messages
        (see docs/osc.md)."""
        status = self.status()
        p = f"{self.prefix}/status"
        messages = [
            encode_message(f"{p}/scene", [status["scene"], status["state"]], "ss")
        ]
        for name, value in status["inputs"].items():
            messages.append(encode_message(f"{p}/input/{name}", [float(value)], "f"))
        for name, (low, high) in status.get("input_ranges", {}).items():
            messages.append(
                encode_message(f"{p}/range/{name}", [float(low), float(high)], "ff")
            )
        for name, level in status.get("layers", {}).items():
            messages.append(encode_message(f"{p}/layer/{name}", [float(level)], "f"))
        for name, (peak_db, rms_db) in status.get("layer_meters", {}).items():
            messages.append(
                encode_message(
                    f"{p}/meter/{name}", [float(peak_db), float(rms_db)], "ff"
                )
            )
        for name, param in status.get("params", {}).items():
            # layer.node.param -> /param/layer/node/param, as /layer/... sets it;
            # NaN stands for a value the playing program does not have.
            values = [_float_or_nan(param["target"]), _float_or_nan(param["value"])]
            address = f"{p}/param/{name.replace('.', '/')}"
            messages.append(encode_message(address, values, "ff"))
        for name, value in status.get("model", {}).items():
            messages.append(
                encode_message(f"{p}/model/{name}", [_float_or_nan(value)], "f")
            )
        if "device" in status:
            messages.append(encode_message(f"{p}/device", [str(status["device"])], "s"))
        if "master_peak_dbfs" in status:
            messages += [
                encode_message(
                    f"{p}/levels",
                    [
                        status["master_peak_dbfs"],
                        status["master_rms_dbfs"],
                        status["volume_db"],
                    ],
                    "fff",
                ),
                encode_message(
                    f"{p}/cpu",
                    [status["cpu_percent"], status["cpu_max_percent"]],
                    "ff",
                ),
                encode_message(
                    f"{p}/underflows",
                    [status["underflows"], status["callbacks"], status["overruns"]],
                    "iii",
                ),
                encode_message(f"{p}/uptime", [status["uptime_s"]], "f"),
            ]
        if "output" in status:
            output = status["output"]
            messages.append(
                encode_message(
                    f"{p}/output",
                    [
                        output["state"],
                        str(output["device"]),
                        output["outages"],
                        output["outage_s"],
                        output["last_error"],
                    ],
                    "ssifs",
                )
            )
        if "heart" in status:
            heart = status["heart"]
            messages.append(
                encode_message(
                    f"{p}/hr",
                    [
                        heart["bpm"],
                        heart["rmssd_ms"],
                        int(heart["connected"]),
                        heart["quality"],
                    ],
                    "ffif",
                )
            )
        counts = self.counters()
        messages.append(
            encode_message(
                f"{p}/osc",
                [counts["applied"], counts["rejected"], counts["late"]],
                "iii",
            )
        )
        return encode_bundle(messages)


def _float_or_nan(value: Any) -> float:
    return math.nan if value is None else float(value)


def _where(destination: OscSender | tuple[str, int]) -> str:
    if isinstance(destination, OscSender):
        return f"{destination.host}:{destination.port}"
    return f"{destination[0]}:{destination[1]}"
