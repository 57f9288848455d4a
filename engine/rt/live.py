"""Live playback: an :class:`Engine` driven by the ``@cfunc`` audio callback.

:class:`LivePlayer` fills the callback's pointer table from the engine's arrays,
opens the PortAudio stream, and runs one control thread that moves scheduled
events into the ring ahead of time (so they land on their exact frame, as they do
offline). That event pump sleeps while nothing is due: it wakes when the next
timed event comes within ``PUMP_HORIZON_S`` of the audio clock, or when a
thread schedules an earlier one (events due within the horizon go to the ring
on the scheduling thread, see :meth:`Engine.deliver_ahead`). An idle engine
has no thread that takes the GIL every few milliseconds, which beside a busy
Python thread made an OSC message wait one more switch interval.

Scene switches call :meth:`Engine.load`, which updates the table through
``engine.on_slot_change`` before publishing the switch.

Audio thread: no (this is the control side of live output).
"""

from __future__ import annotations

import threading
import time

import numpy as np

from engine.graph.program import Program
from engine.rt.callback import T_MASTER, T_SLOT0, T_SLOT1, PointerTable, audio_callback
from engine.rt.engine import Engine, check_audio_settings
from engine.rt.stats import Stats, StatsSnapshot

# Scheduled events enter the ring this far ahead of the audio clock.
PUMP_HORIZON_S = 0.2
# While a replaced program waits to be freed, the pump looks this often.
RETIRE_CHECK_S = 0.05
# After an error the pump waits this long before it tries again.
PUMP_RETRY_S = 0.01


class LivePlayer:
    """Play an engine on an output device.

    >>> player = LivePlayer(engine, device=None, block_size=128)  # doctest: +SKIP
    >>> player.start(); time.sleep(5); player.stop()              # doctest: +SKIP
    """

    def __init__(
        self,
        engine: Engine,
        device: str | int | None = None,
        block_size: int = 128,
        capture_frames: int = 0,
        latency: float | str | None = None,
    ) -> None:
        check_audio_settings(engine.sample_rate, block_size)
        if block_size > engine.max_block_size:
            raise ValueError("block_size exceeds the engine's max_block_size")
        self.engine = engine
        self.block_size = block_size
        self.stats = Stats()
        self.capture = (
            np.zeros(capture_frames * engine.channels, dtype=np.float32)
            if capture_frames
            else None
        )
        self.table = PointerTable(
            engine.ctl,
            engine.ring.records,
            engine.ring.positions,
            self.stats.array,
            engine.channels,
            engine.sample_rate,
            block_size,
            self.capture,
        )
        self._sync_programs()
        from engine.rt.audio_io import open_cfunc_output_stream

        self.stream = open_cfunc_output_stream(
            audio_callback.address,
            self.table.address,
            sample_rate=engine.sample_rate,
            block_size=block_size,
            channels=engine.channels,
            device=device,
            latency=latency,
            keep_alive=(audio_callback, self.table, self.stats, engine),
        )
        self._stop = threading.Event()
        self.pump_wakeups = 0  # times the pump thread woke to move events
        self._pump_thread = threading.Thread(
            target=self._pump, name="soundscape-events", daemon=True
        )
        self.started_at: float | None = None

    def _slot_changed(self, slot: int, program: Program) -> None:
        self.table.set_program(T_SLOT0 if slot == 0 else T_SLOT1, program)

    def _sync_programs(self) -> None:
        engine = self.engine
        for base, program in ((T_SLOT0, engine.slots[0]), (T_SLOT1, engine.slots[1])):
            self.table.set_program(base, program)
        self.table.set_program(T_MASTER, engine.master)

    def _pump(self) -> None:
        engine = self.engine
        horizon = round(PUMP_HORIZON_S * engine.sample_rate)
        while not self._stop.is_set():
            try:
                engine.wait_for_due(
                    horizon, RETIRE_CHECK_S if engine.retiring else None
                )
                if self._stop.is_set():
                    return
                self.pump_wakeups += 1
                engine.pump(horizon)
                engine._free_retired()
            except Exception as exc:  # noqa: BLE001 - the pump must never die
                print(f"soundscape: event pump: {exc}")
                self._stop.wait(PUMP_RETRY_S)  # a lasting fault must not spin

    def start(self) -> None:
        """Start the stream and the event pump."""
        self.engine.pump(round(PUMP_HORIZON_S * self.engine.sample_rate))
        self.start_stream()
        self.start_events()

    def start_stream(self) -> None:
        """Take over the engine's scene switches and start the stream (PortAudio
        may block here when the device is failing). Touches no event state, so
        a supervisor can run it on a thread it may abandon."""
        # Take the switches first, then copy the slots: a load in between is
        # either seen by the copy or sent to this table, never lost. A player
        # made earlier (an engine resumed on a new stream) stops hearing them.
        self.engine.on_slot_change = self._slot_changed
        self._sync_programs()
        self.started_at = time.monotonic()
        self.stream.start()

    def start_events(self) -> None:
        """Start the event pump (the ring's one producer), after the stream."""
        self.engine.deliver_ahead(round(PUMP_HORIZON_S * self.engine.sample_rate))
        self._pump_thread.start()

    def stop_events(self, timeout_s: float = 1.0) -> None:
        """Stop the event pump only (pure Python, never blocks on PortAudio),
        so that another player may pump the same engine."""
        self._stop_pump()
        if self._pump_thread.is_alive():
            self._pump_thread.join(timeout=timeout_s)

    def stop(self) -> None:
        """Stop the stream (waits for the last callback) and the pump."""
        self._stop_pump()
        try:
            self.stream.stop()
        finally:
            self.stream.close()
        if self._pump_thread.is_alive():
            self._pump_thread.join(timeout=1.0)

    def _stop_pump(self) -> None:
        self._stop.set()
        # Events scheduled from now on wait for the next player's pump.
        self.engine.deliver_ahead(0)
        self.engine.wake_pump()

    def snapshot(self) -> StatsSnapshot:
        return self.stats.snapshot()

    def __enter__(self) -> LivePlayer:  # noqa: PYI034
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
