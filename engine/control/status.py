"""What the engine is doing, for status replies, subscriptions and monitors:
scene, state, inputs (with their ranges), watched parameters (target and
smoothed value), model outputs, levels, CPU, underflows, uptime.

    report = StatusReport(player, live=live_player)
    report.snapshot()
    # {"scene": "forest", "state": "night", "inputs": {"danger": 0.2},
    #  "layers": {"wind": 1.0, ...}, "layer_meters": {"wind": [-16.1, -22.4]},
    #  "master_peak_dbfs": -14.2, ...}

Levels are read from the arrays the audio thread writes, without a lock (as
the design allows for aligned 8-byte values): the master output's peak and RMS
and each layer's (``layer_meters``: {layer: [peak_dbfs, rms_dbfs]}) as the
audio thread's meters measure them (``engine/control/level_meters.py``: the
peak falls 20 dB/s, the RMS is a 300 ms exponential mean), and each layer's
level (``layers``: 0..1, its state fade as the audio thread has it now: what
the scene asks for, where the meters say what it sounds like). Across a
scene change the layer meters read what the crossfade sounds like, carried
on from the old scene's (``LayerMeters``), not the new program's meters
starting from nothing. CPU is the
callback's time against the block budget since the previous snapshot;
underflows and callbacks come from the live player's statistics (absent
offline). ``params`` are the parameters
that follow an input (``engine/control/param_watch.py``), each with the target
the control plane wrote and the value the audio thread has smoothed it to;
``model`` holds the latest outputs of the scene's model loop
(``ScenePlayer.model_outputs``), and is absent without a model.

Threads: any control thread (the OSC receive threads, the subscription sender).
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import numpy as np

from engine.control.level_meters import (
    SILENCE_DB,
    LayerMeters,
    MeterTaps,
    amplitude_db,
)
from engine.control.param_watch import ParamWatch
from engine.dsp.layout import INFO_OUT_SLOT, INFO_OUT_STRIDE, P_CURRENT

__all__ = ["SILENCE_DB", "StatusReport", "master_levels_dbfs"]

# CPU figures are recomputed at most this often (a faster poll reuses them).
_CPU_WINDOW_S = 0.25


def master_levels_dbfs(engine: Any, n_frames: int) -> tuple[float, float]:
    """Peak and RMS (dBFS) of the master output's last ``n_frames`` rendered
    (the frames of the last block, or of its last segment and the one before
    when an event split it). ``SILENCE_DB`` for silence. Status reports the
    master meter instead; this tells whether the very last block was silent."""
    master = engine.master
    bufs = master.bufs
    left = int(master.info[INFO_OUT_SLOT])
    right = left + int(master.info[INFO_OUT_STRIDE])
    n = max(1, min(int(n_frames), bufs.shape[1]))
    block = bufs[[left, right], :n]
    peak = float(np.max(np.abs(block)))
    rms = float(np.sqrt(np.mean(np.square(block))))
    if not (math.isfinite(peak) and math.isfinite(rms)):
        return SILENCE_DB, SILENCE_DB  # the output guard mutes these anyway
    return amplitude_db(peak), amplitude_db(rms)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


class StatusReport:
    """Builds status snapshots of a :class:`ScenePlayer` (and of the
    ``LivePlayer`` playing its engine, when there is one)."""

    def __init__(
        self,
        player: Any,
        live: Any = None,
        *,
        block_size: int | None = None,
        extra: Any = None,
    ) -> None:
        self.player = player
        self.engine = player.engine
        self.live = live
        self.block_size = int(
            block_size or (live.block_size if live is not None else 128)
        )
        self.started_s = time.monotonic()
        # Called with the snapshot dict to add to it (OSC counters, heart rate).
        self.extra = extra
        self._lock = threading.Lock()
        self._cpu_at: tuple[float, Any] | None = None
        self._cpu = (0.0, 0.0)
        # The watched parameters of the scene playing (rebuilt when it changes:
        # every load gives the player a new inputs object; or when its model
        # has loaded).
        self._watch: tuple[Any, bool, ParamWatch] | None = None
        # The layers' meters as heard (carried over scene changes), and
        # where the master's meter lives.
        self._layer_meters = LayerMeters(self.engine)
        self._master_taps: MeterTaps | None = None

    def _layer_levels(self, layers: list[str]) -> dict[str, float]:
        program = self.engine.current
        if program is None:
            return {}
        levels = {}
        for layer in layers:
            try:
                ref = program.param(f"{layer}.level", "level")
            except KeyError:
                continue
            value = float(program.params[P_CURRENT, ref.column])
            levels[layer] = value if math.isfinite(value) else 0.0
        return levels

    def _meters(self) -> tuple[dict[str, list[float]], tuple[float, float]]:
        """Each layer's [peak_dbfs, rms_dbfs] and the master's, as measured."""
        with self._lock:  # the carry-over follows one program at a time
            readings = self._layer_meters.read()
        layers = {
            name: [round(peak, 2), round(rms, 2)]
            for name, (peak, rms) in readings.items()
        }
        master = self.engine.master
        if self._master_taps is None or self._master_taps.program is not master:
            self._master_taps = MeterTaps(master)
        levels = self._master_taps.read().get("master")
        if levels is None:  # a master bus built without its meter
            levels = master_levels_dbfs(self.engine, self.block_size)
        return layers, levels

    def _params(self) -> dict[str, dict[str, float | None]]:
        inputs = getattr(self.player, "inputs", None)
        # A model that loads after the scene started (live play) adds its
        # bound parameters when it has loaded.
        loop = getattr(self.player, "model", None)
        loaded = loop is not None and loop.loaded
        if (
            self._watch is None
            or self._watch[0] is not inputs
            or self._watch[1] != loaded
        ):
            self._watch = (inputs, loaded, ParamWatch.for_player(self.player))
        values = self._watch[2].read(self.engine)
        return {
            name: {"target": _rounded(target), "value": _rounded(value)}
            for name, (target, value) in values.items()
        }

    def _input_ranges(self) -> dict[str, list[float]]:
        inputs = getattr(self.player, "inputs", None)
        if inputs is None:
            return {}
        return {
            name: [float(spec["minimum"]), float(spec["maximum"])]
            for name, spec in inputs.specs.items()
        }

    def _volume_db(self) -> float:
        master = self.engine.master
        gain = master.param("volume", "gain_db")
        level = master.param("volume", "level")
        gain_db = float(master.params[P_CURRENT, gain.column])
        linear = float(master.params[P_CURRENT, level.column])
        return max(gain_db + amplitude_db(linear), SILENCE_DB)

    def _cpu_percent(self) -> tuple[float, float]:
        """(mean, max) callback CPU time in % of the block budget, over the
        time since the previous computation (at least ``_CPU_WINDOW_S``). The
        callback thread's own CPU time: a moment it waited for a CPU (or the
        host of a virtual machine took it) is not the engine's load."""
        if self.live is None:
            return 0.0, 0.0
        now_s = time.monotonic()
        with self._lock:
            if self._cpu_at is not None and now_s - self._cpu_at[0] < _CPU_WINDOW_S:
                return self._cpu
            snapshot = self.live.snapshot()
            if self._cpu_at is not None:
                recent = snapshot.since(self._cpu_at[1])
            else:
                recent = snapshot
            budget_ns = 1e9 * self.block_size / self.engine.sample_rate
            mean = (
                recent.callback_cpu_ns_total / recent.callbacks / budget_ns
                if recent.callbacks
                else 0.0
            )
            # The longest callback since the stream started (the stats keep one).
            self._cpu = (
                100.0 * mean,
                100.0 * snapshot.callback_cpu_ns_max / budget_ns,
            )
            self._cpu_at = (now_s, snapshot)
            return self._cpu

    def snapshot(self) -> dict[str, Any]:
        """The status as a dict of plain values (str, float, int, dicts)."""
        status = self.player.status()
        layer_meters, (peak_db, rms_db) = self._meters()
        cpu_mean, cpu_max = self._cpu_percent()
        live_stats = self.live.snapshot() if self.live is not None else None
        snapshot: dict[str, Any] = {
            "scene": status.get("scene") or "",
            "state": status.get("state") or "",
            "inputs": dict(status.get("inputs", {})),
            "input_ranges": self._input_ranges(),
            "params": self._params(),
            "layers": self._layer_levels(list(status.get("layers", []))),
            "layer_meters": layer_meters,
            "master_peak_dbfs": round(peak_db, 2),
            "master_rms_dbfs": round(rms_db, 2),
            "volume_db": round(self._volume_db(), 2),
            "cpu_percent": round(cpu_mean, 2),
            "cpu_max_percent": round(cpu_max, 2),
            "callbacks": live_stats.callbacks if live_stats else 0,
            "underflows": live_stats.output_underflows if live_stats else 0,
            # Callbacks whose own CPU time overran their frames: the gaps the
            # engine caused (the rest of the underflows were the machine's).
            "overruns": live_stats.cpu_over_budget if live_stats else 0,
            "uptime_s": round(time.monotonic() - self.started_s, 3),
            "frame": self.engine.frame,
            "last_error": status.get("last_error") or "",
        }
        outputs = self.player.model_outputs()
        if outputs:
            snapshot["model"] = {str(k): float(v) for k, v in outputs.items()}
        if self.extra is not None:
            self.extra(snapshot)
        return snapshot
