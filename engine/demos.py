"""Built-in demo graphs, playable by name before any scene file is written.

Each builder returns a :class:`Graph`; ``DEMOS`` maps names to builders. They are
also examples of the graph API at work.

Audio thread: no.
"""

from __future__ import annotations

from collections.abc import Callable

from engine.graph import Graph


def focus() -> Graph:
    """Brown noise under a slowly wandering low-pass, a soft detuned drone on A,
    and a long, dark room."""
    g = Graph()
    wander = g.node(
        "lfo", name="wander", shape="smooth_random", rate_hz=0.07, depth=1.0
    )
    bed = g.node("brown_noise", name="bed", amplitude=0.2)
    bed_lp = g.node(
        "svf",
        bed,
        cutoff_mod=wander,
        name="bed_filter",
        mode="lowpass",
        cutoff_hz=420.0,
        q=0.6,
    )
    bed_st = g.node("pan", bed_lp, name="bed_pan", pan=0.0)
    breathe = g.node("lfo", name="breathe", shape="sine", rate_hz=0.031, depth=0.6)
    drone = g.node(
        "saw",
        name="drone",
        frequency_hz=[110.0, 110.4, 164.8, 220.7],
        amplitude=[0.09, 0.09, 0.06, 0.04],
    )
    drone_lp = g.node(
        "ladder",
        drone,
        cutoff_mod=breathe,
        name="drone_filter",
        cutoff_hz=520.0,
        resonance=0.25,
    )
    drone_st = g.node("pan", drone_lp, name="drone_pan", pan=[-0.6, 0.6, -0.25, 0.25])
    bus = g.node("add", bed_st, drone_st, name="bus")
    room = g.node(
        "reverb", bus, name="room", decay_s=4.5, damping_hz=3500.0, mix=0.3, size=0.8
    )
    g.output(g.node("gain", room, name="level", gain_db=-4.0))
    return g


def ocean() -> Graph:
    """Pink-noise surf that swells and recedes every twelve seconds or so."""
    g = Graph()
    swell = g.node("lfo", name="swell", shape="sine", rate_hz=0.083, depth=1.0)
    surf = g.node("pink_noise", name="surf", voices=2, amplitude=0.2)
    surf_lp = g.node(
        "svf",
        surf,
        cutoff_mod=swell,
        name="surf_filter",
        mode="lowpass",
        cutoff_hz=900.0,
        q=0.5,
    )
    level = g.node("am", surf_lp, swell, name="surge", depth=0.85)
    wide = g.node("width", level, name="wide", width=1.3)
    room = g.node("reverb", wide, name="room", decay_s=2.5, mix=0.2)
    g.output(g.node("gain", room, name="level", gain_db=-6.0))
    return g


def sleep() -> Graph:
    """Very dark brown noise and a low, slow sine pair: for falling asleep."""
    g = Graph()
    bed = g.node("brown_noise", name="bed", voices=2, amplitude=0.2)
    dark = g.node("onepole_lowpass", bed, name="dark", cutoff_hz=250.0)
    hum = g.node("sine", name="hum", frequency_hz=[55.0, 82.6], amplitude=[0.05, 0.03])
    slow = g.node("lfo", name="slow", shape="sine", rate_hz=0.05, depth=1.0)
    hum_am = g.node("am", hum, slow, name="hum_swell", depth=0.5)
    hum_st = g.node("pan", hum_am, name="hum_pan", pan=[-0.3, 0.3])
    bus = g.node("add", dark, hum_st, name="bus")
    g.output(g.node("gain", bus, name="level", gain_db=-6.0))
    return g


DEMOS: dict[str, Callable[[], Graph]] = {
    "focus": focus,
    "ocean": ocean,
    "sleep": sleep,
}
