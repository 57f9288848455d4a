"""Keep an engine playing through device loss: detect, tear down, retry, resume.

When the audio server or device disappears, PortAudio does not say so: the
callbacks just stop, and some PortAudio calls then hang (on a dead JACK server,
for ten minutes; see ``engine.daemon.portaudio_instance``). So
:class:`OutputSupervisor` owns the :class:`~engine.rt.live.LivePlayer` of one
:class:`~engine.rt.engine.Engine` and, on its own thread:

1. watches the callback counter the audio thread keeps in the stats array, every
   ``poll_interval_s``; no callback for ``stall_timeout_s`` is a loss (with the
   defaults, detected 120-150 ms after the last callback);
2. stops the player's event pump, and aborts and closes the stream on a
   *teardown thread* that is abandoned if it does not finish in
   ``teardown_timeout_s`` (it keeps the old player's arrays alive meanwhile);
3. retries with exponential back-off (``retry_min_s`` doubling to
   ``retry_max_s``), each time with PortAudio made to enumerate devices again
   (a fresh instance when the old one may hold a dead JACK client) and the
   device resolved again by name, so a JACK server that came back, or a USB
   device with a new index, is found; each open also runs on a thread that may
   be abandoned;
4. resumes the *same* engine: same programs, parameters, state and clock; the
   engine just did not advance while nothing played.

:meth:`pause` closes the stream on purpose (the daemon does it once the sleep
timer has faded to silence, so that it costs no CPU) and :meth:`resume` opens
it again; a paused output is not watched, so it is never called lost.

Nothing here blocks the caller: :meth:`start` returns at once, :meth:`status`
copies a small record under a lock held only for that, and :meth:`stop` waits at
most its timeout.

    supervisor = OutputSupervisor(engine, device="system", block_size=128)
    supervisor.start()
    supervisor.status().state          # "starting", "playing", "lost", "stopped"
    supervisor.stop()

One rule holds throughout: a new stream is opened only after the old one is
closed or abandoned, and only one event pump runs for the engine. An abandoned
stream whose host later wakes it again (not possible with JACK, whose client is
dead with its server) would render the engine alongside the new stream: that
case is not handled.

Control thread only: the supervisor's thread is the only one that calls
PortAudio while it runs.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from engine.control.level_meters import clear_meters
from engine.daemon.portaudio_instance import PortAudioHost
from engine.rt.engine import Engine
from engine.rt.live import LivePlayer
from engine.rt.stats import (
    STATS_CALLBACKS,
    STATS_LAST_CALLBACK_START_NS,
    STATS_OUTPUT_UNDERFLOWS,
)

log = logging.getLogger("soundscape.output")

STALL_TIMEOUT_S = 0.12
POLL_INTERVAL_S = 0.02
# A stream's first callback can take a while (JACK connects its ports first).
FIRST_CALLBACK_TIMEOUT_S = 1.0
TEARDOWN_TIMEOUT_S = 0.5
OPEN_TIMEOUT_S = 5.0
RETRY_MIN_S = 0.05
RETRY_MAX_S = 1.0


class OutputState(str, enum.Enum):
    STARTING = "starting"
    PLAYING = "playing"
    LOST = "lost"
    PAUSED = "paused"
    STOPPED = "stopped"


@dataclass(frozen=True)
class OutputStatus:
    """What the output is doing, for ``soundscape status`` and the logs.

    Times are ``time.monotonic()`` seconds. ``retries`` counts open attempts
    since the output was last playing; ``outages`` counts losses detected.
    """

    state: OutputState = OutputState.STARTING
    device: str | int | None = None
    playing_since: float | None = None
    lost_since: float | None = None
    outages: int = 0
    retries: int = 0
    last_error: str | None = None
    last_stall_ms: float | None = None
    """Time from the last callback to the detection of the last loss, ms."""
    callbacks: int = 0
    underflows: int = 0
    abandoned_streams: int = 0
    portaudio_copies: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Plain values (state as text), for JSON or OSC replies."""
        out = asdict(self)
        out["state"] = self.state.value
        return out


class _Attempt:
    """One open attempt on a worker thread; the supervisor may give up on it."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.player: LivePlayer | None = None
        self.error: str | None = None
        self.abandoned = False
        self.lib: Any = None
        # Set once a stream of this attempt was opened: if the attempt fails
        # after that, its PortAudio instance may hold a stream it cannot close.
        self.opened = False


class OutputSupervisor:
    """Owns the live output of ``engine`` and keeps it playing.

    Args:
        engine: the engine to play; it is never replaced, only resumed.
        device: output device, resolved again at every open: a name (or part of
            one; survives re-enumeration), an index, or None for the default.
        block_size: frames per callback.
        on_change: called with the new :class:`OutputStatus` on the
            supervisor's thread after each state change; keep it short.
    """

    def __init__(
        self,
        engine: Engine,
        device: str | int | None = None,
        block_size: int = 128,
        latency: float | str | None = None,
        on_change: Callable[[OutputStatus], None] | None = None,
        stall_timeout_s: float = STALL_TIMEOUT_S,
        poll_interval_s: float = POLL_INTERVAL_S,
        teardown_timeout_s: float = TEARDOWN_TIMEOUT_S,
        open_timeout_s: float = OPEN_TIMEOUT_S,
        retry_min_s: float = RETRY_MIN_S,
        retry_max_s: float = RETRY_MAX_S,
        portaudio: PortAudioHost | None = None,
    ) -> None:
        block_s = block_size / engine.sample_rate
        # Three missed blocks at least, so large blocks are not called lost.
        self.stall_timeout_s = max(stall_timeout_s, 3 * block_s)
        self.engine = engine
        self.device = device
        self.block_size = block_size
        self.latency = latency
        self.on_change = on_change
        self.poll_interval_s = poll_interval_s
        self.teardown_timeout_s = teardown_timeout_s
        self.open_timeout_s = open_timeout_s
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self.portaudio = portaudio or PortAudioHost()
        self._status = OutputStatus(device=device)
        self._status_lock = threading.Lock()
        self._stop = threading.Event()
        # Set while the output should be closed on purpose; _wake interrupts
        # the supervisor's waits when it changes.
        self._paused = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="soundscape-output", daemon=True
        )
        self._player: LivePlayer | None = None
        self._player_lib: Any = None
        # PortAudio must enumerate again before the next open; "suspect" when
        # the instance may hold a client of a server that died.
        self._renew: str | None = None
        self._abandoned: list[object] = []
        self.history: list[dict[str, float]] = []
        """Per outage: ``detected`` (monotonic s), ``stall_ms`` and, once back,
        ``resumed`` (the new stream started) and ``first_callback`` (its first
        callback, to a block), in monotonic seconds."""

    # Caller side ---------------------------------------------------------------

    def start(self) -> None:
        """Start supervising (returns at once; the first open runs on the
        supervisor's thread)."""
        self._thread.start()

    def status(self) -> OutputStatus:
        """The current status, with live callback counts (never blocks)."""
        with self._status_lock:
            status = self._status
        player = self._player
        if player is not None:
            stats = player.stats.array
            status = replace(
                status,
                callbacks=int(stats[STATS_CALLBACKS]),
                underflows=int(stats[STATS_OUTPUT_UNDERFLOWS]),
            )
        return status

    def pause(self) -> None:
        """Close the stream on purpose (returns at once): the engine stands
        still and no callback runs until :meth:`resume`."""
        self._paused.set()
        self._wake.set()

    def resume(self) -> None:
        """Open the stream again after :meth:`pause` (returns at once)."""
        self._paused.clear()
        self._wake.set()

    @property
    def paused(self) -> bool:
        """True from :meth:`pause` until :meth:`resume`."""
        return self._paused.is_set()

    @property
    def alive(self) -> bool:
        """True while the supervisor's thread runs (False: stopped, or dead
        of a bug, which the daemon's watchdog reports by going quiet)."""
        return self._thread.is_alive()

    @property
    def player(self) -> LivePlayer | None:
        """The live player now playing, if any (it changes at every reopen)."""
        return self._player

    def stop(self, timeout_s: float = 2.0) -> bool:
        """Stop playing and supervising; True if everything closed in time."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout_s)
        return not self._thread.is_alive()

    # Supervisor thread ------------------------------------------------------------

    def _set(self, **changes: Any) -> None:
        with self._status_lock:
            self._status = replace(self._status, **changes)
            status = self._status
        if self.on_change is not None and "state" in changes:
            try:
                self.on_change(status)
            except Exception:  # a listener must not stop supervision
                log.exception("output status listener failed")

    def _wait(self, seconds: float) -> None:
        """Sleep up to ``seconds``; a stop, pause or resume cuts it short."""
        self._wake.wait(seconds)
        self._wake.clear()

    def _run(self) -> None:
        backoff_s = self.retry_min_s
        while not self._stop.is_set():
            if self._paused.is_set():
                if self._player is not None:
                    self._pause_now()
                elif self._status.state != OutputState.PAUSED:
                    self._set(state=OutputState.PAUSED)  # lost: stop retrying
                self._wait(1.0)
                continue
            if self._player is None:
                if self._open():
                    backoff_s = self.retry_min_s
                    continue
                self._wait(backoff_s)
                backoff_s = min(self.retry_max_s, backoff_s * 2)
                continue
            self._watch()
        self._close_for_good()

    def _open(self) -> bool:
        attempt = _Attempt()
        renew, self._renew = self._renew, None
        worker = threading.Thread(
            target=self._open_worker,
            args=(attempt, renew),
            name="soundscape-output-open",
            daemon=True,
        )
        worker.start()
        finished = attempt.done.wait(self.open_timeout_s)
        retries = self._status.retries + 1
        if not finished:
            attempt.abandoned = True
            self._abandoned.append(attempt)
            self._renew = "suspect"
            error = f"opening the output took over {self.open_timeout_s:g} s"
            self._set(retries=retries, last_error=error)
            log.warning("%s; giving up on that attempt", error)
            return False
        if attempt.player is None:
            self._renew = "suspect" if attempt.opened else "clean"
            if attempt.error != self._status.last_error:
                log.warning("cannot open: %s", attempt.error)
            self._set(retries=retries, last_error=attempt.error)
            return False
        player = attempt.player
        self._player = player
        self._player_lib = attempt.lib
        player.start_events()
        now = time.monotonic()
        if self.history and "resumed" not in self.history[-1]:
            self.history[-1]["resumed"] = now
        was_lost = self._status.state == OutputState.LOST
        if self._status.state == OutputState.PAUSED:
            log.info("resumed")
        self._set(
            state=OutputState.PLAYING,
            playing_since=now,
            lost_since=None,
            retries=0,
            portaudio_copies=self.portaudio.copies_loaded,
        )
        if was_lost:
            log.info("playing again after %d attempts", retries)
        return True

    def _open_worker(self, attempt: _Attempt, renew: str | None) -> None:
        try:
            if renew is not None:
                self.portaudio.renew(clean=renew == "clean")
            lib = attempt.lib = self.portaudio.lib
            player = LivePlayer(
                self.engine,
                device=self.device,
                block_size=self.block_size,
                latency=self.latency,
            )
            attempt.opened = True
            if attempt.abandoned:
                lib.Pa_CloseStream(player.stream._ptr)
                return
            player.start_stream()
            if attempt.abandoned:
                # Started after the supervisor gave up on it: the server is
                # alive (it started), so aborting returns.
                lib.Pa_AbortStream(player.stream._ptr)
                lib.Pa_CloseStream(player.stream._ptr)
                return
            attempt.player = player
        except Exception as exc:  # noqa: BLE001 - any failure means "retry"
            attempt.error = str(exc).replace("\n", "; ")
        finally:
            attempt.done.set()

    def _watch(self) -> None:
        player = self._player
        assert player is not None
        stats = player.stats.array
        started_ns = round((player.started_at or time.monotonic()) * 1e9)
        while not self._stop.wait(self.poll_interval_s):
            if self._paused.is_set():
                return
            last_ns = int(stats[STATS_LAST_CALLBACK_START_NS])
            now_ns = time.monotonic_ns()
            if stats[STATS_CALLBACKS] == 0:
                if now_ns - started_ns > FIRST_CALLBACK_TIMEOUT_S * 1e9:
                    self._lose(player, "no callback since the stream started", None)
                    return
                continue
            self._note_first_callback(stats, last_ns)
            stalled_ns = now_ns - last_ns
            if stalled_ns > self.stall_timeout_s * 1e9:
                self._lose(
                    player,
                    f"no audio callback for {stalled_ns / 1e6:.0f} ms",
                    stalled_ns / 1e6,
                )
                return

    def _note_first_callback(self, stats: Any, last_ns: int) -> None:
        if self.history and "first_callback" not in self.history[-1]:
            # The stats keep the last callback's time only: step back by the
            # blocks since (exact to a block, which is all this is for).
            block_s = self.block_size / self.engine.sample_rate
            n_before = int(stats[STATS_CALLBACKS]) - 1
            self.history[-1]["first_callback"] = last_ns / 1e9 - n_before * block_s

    def _lose(self, player: LivePlayer, reason: str, stall_ms: float | None) -> None:
        detected = time.monotonic()
        self.history.append({"detected": detected, "stall_ms": stall_ms or 0.0})
        log.warning("device lost (%s); retrying", reason)
        clean = self._tear_down(player)
        self._player = None
        # Whatever stalled may have been a server that died: its client in this
        # PortAudio instance must never be terminated.
        self._renew = "suspect"
        self._set(
            state=OutputState.LOST,
            lost_since=detected,
            outages=self._status.outages + 1,
            last_error=reason,
            last_stall_ms=stall_ms,
            abandoned_streams=self._status.abandoned_streams + (not clean),
        )

    def _tear_down(self, player: LivePlayer) -> bool:
        """Stop ``player``; True if its stream closed in time."""
        player.stop_events()
        lib = self._player_lib
        stream = player.stream
        closed = threading.Event()

        def abort_and_close() -> None:
            # On a dead JACK server this waits ten minutes: that is why it is
            # on its own thread. Closing after a failed abort would make
            # PortAudio unregister ports of a dead client and assert.
            error = lib.Pa_AbortStream(stream._ptr)
            if error in (0, lib.paStreamIsStopped):
                lib.Pa_CloseStream(stream._ptr)
                closed.set()

        thread = threading.Thread(
            target=abort_and_close, name="soundscape-output-teardown", daemon=True
        )
        thread.start()
        if closed.wait(self.teardown_timeout_s):
            return True
        # Keep the arrays its callback points at alive as long as the process.
        self._abandoned.append(player)
        return False

    def _pause_now(self) -> None:
        player, self._player = self._player, None
        assert player is not None
        clean = self._tear_down(player)
        if clean:
            # PortAudio's JACK client outlives its streams and runs JACK's
            # process thread every period (measured 1.6 % of a core, idle):
            # closed now, while its server answers; a fresh one at resume.
            self.portaudio.terminate()
            self._renew = "clean"
        else:
            self._renew = "suspect"
        # Nothing renders now: the meters read silence, not the last block's
        # falling peak, from the moment the status says "paused".
        clear_meters(self.engine)
        self._set(
            state=OutputState.PAUSED,
            playing_since=None,
            abandoned_streams=self._status.abandoned_streams + (not clean),
        )
        log.info("paused (stream closed)")

    def _close_for_good(self) -> None:
        player, self._player = self._player, None
        clean = True
        if player is not None:
            clean = self._tear_down(player)
        if clean and self._renew != "suspect":
            # Its stream just closed, so its server is alive: close the JACK
            # client now, while it can be (left open, the process crashed in
            # libjack's clean-up at exit).
            self.portaudio.terminate()
        else:
            # The server may go before this process does: sounddevice's exit
            # handler must not terminate an instance holding a JACK client of
            # a dead server (it would assert).
            self.portaudio.forget()
        self._set(state=OutputState.STOPPED)
