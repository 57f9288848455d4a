"""The one sample type every heart-rate source delivers.

A BLE strap, an OSC bridge, a replayed file and the simulator all turn what
they receive into ``HeartSample`` values, so the processing
(``engine.sensors.heart_state``) has one input whatever the source.

Any thread may create and read samples (they are immutable).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HeartSample:
    """What a source said at ``time_s`` (seconds, on the caller's clock).

    Every field but the time is optional, because sources say different
    things: a bridge message carries one of them, a BLE notification a bpm
    and zero or more RR intervals.

    - ``bpm``: heart rate the source reports (beats per minute)
    - ``rr_s``: RR intervals that ended at or just before ``time_s``, oldest
      first (seconds)
    - ``connected``: the source's own connected flag, when it sends one
    - ``beat``: the source flagged a heartbeat

    >>> HeartSample(12.5, bpm=64.0, rr_s=(0.93,))
    HeartSample(time_s=12.5, bpm=64.0, rr_s=(0.93,), connected=None, beat=False)
    """

    time_s: float
    bpm: float | None = None
    rr_s: tuple[float, ...] = ()
    connected: bool | None = None
    beat: bool = False

    @property
    def has_data(self) -> bool:
        """True when the sample carries a heart rate or RR intervals."""
        return self.bpm is not None or bool(self.rr_s)
