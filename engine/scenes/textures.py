"""Textures: named layers with a few meaningful parameters.

A texture turns settings a listener or sound designer thinks in (rain
``intensity``, ``droplet_rate_hz``, ``brightness``) into a layer of library
nodes. In a scene::

    layers:
      rain:
        texture: rain
        params: {intensity: 0.7, droplet_rate_hz: 60}
        set: {drops.rate_hz: {from: danger, to: [20, 120]}}   # reach inside

What a texture builds is an ordinary layer (its node names are documented per
texture, so ``set`` can bind any inner parameter to an input), checked by the
same validator as hand-written nodes. Every texture is procedural: noise,
oscillators and seeded random events, so nothing loops.

Control thread only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Nodes = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class TextureParam:
    """One setting of a texture: a number in a range, or one of ``choices``."""

    default: float | str
    minimum: float = 0.0
    maximum: float = 1.0
    unit: str = ""
    doc: str = ""
    choices: tuple[str, ...] = ()
    file: bool = False  # a file path, relative to the scene file


@dataclass(frozen=True)
class Texture:
    """A named layer recipe: ``build(params)`` gives ``(nodes, output)``."""

    name: str
    doc: str
    params: Mapping[str, TextureParam]
    build: Callable[[dict[str, Any]], tuple[Nodes, str]]
    nodes_doc: str = ""
    trigger: bool = False  # made to be fired (has an ar envelope)


TEXTURES: dict[str, Texture] = {}


def texture(
    name: str,
    doc: str,
    nodes_doc: str = "",
    trigger: bool = False,
    **params: TextureParam,
) -> Callable[[Callable[[dict[str, Any]], tuple[Nodes, str]]], Callable]:
    """Register a texture builder under ``name``."""

    def register(build: Callable[[dict[str, Any]], tuple[Nodes, str]]) -> Callable:
        TEXTURES[name] = Texture(name, doc, params, build, nodes_doc, trigger)
        return build

    return register


def _room(source: str, decay_s: float, mix: float, size: float = 0.7) -> dict:
    return {
        "type": "reverb",
        "in": source,
        "decay_s": decay_s,
        "mix": mix,
        "size": size,
        "damping_hz": 6000.0,
    }


@texture(
    "rain",
    "rain from a light shower to a downpour: a hiss of many drops and single "
    "drops landing close",
    "hiss (pink_noise), color (svf), floor (onepole_highpass), drops (grains), "
    "mix (add), room (reverb)",
    intensity=TextureParam(0.5, doc="0 light shower .. 1 downpour"),
    droplet_rate_hz=TextureParam(
        40.0, 0.0, 400.0, "Hz", "close drops per second (both sides together)"
    ),
    brightness=TextureParam(0.5, doc="0 dull (on a roof) .. 1 bright (on leaves)"),
)
def _rain(p: dict[str, Any]) -> tuple[Nodes, str]:
    intensity, brightness = p["intensity"], p["brightness"]
    return {
        "hiss": {
            "type": "pink_noise",
            "voices": 2,
            "amplitude": 0.02 + 0.15 * intensity,
        },
        "color": {
            "type": "svf",
            "in": "hiss",
            "mode": "lowpass",
            "cutoff_hz": 1500.0 + 9000.0 * brightness,
            "q": 0.5,
        },
        "floor": {"type": "onepole_highpass", "in": "color", "cutoff_hz": 250.0},
        "drops": {
            "type": "grains",
            "voices": 2,
            "rate_hz": p["droplet_rate_hz"] / 2.0,
            "freq_lo_hz": 1200.0 + 1500.0 * brightness,
            "freq_hi_hz": 3500.0 + 4000.0 * brightness,
            "glide_oct": 0.7,
            "duration_ms": 12.0,
            "duration_spread": 0.5,
            "envelope": "percussive",
            "amplitude": 0.3 + 0.3 * intensity,
            "spread_db": 18.0,
        },
        "mix": {"type": "add", "a": "floor", "b": "drops"},
        "room": _room("mix", 1.2, 0.15, 0.5),
    }, "room"


@texture(
    "wind",
    "wind in the open, rising and falling in gusts",
    "air (pink_noise), gusts (lfo), whistle (svf), swell (lfo), blow (am), "
    "room (reverb)",
    strength=TextureParam(0.5, doc="0 a breeze .. 1 a gale"),
    gustiness=TextureParam(0.5, doc="how much the gusts move pitch and level"),
    gust_rate_hz=TextureParam(0.15, 0.01, 2.0, "Hz", "how often gusts come"),
    brightness=TextureParam(0.5, doc="0 low roar .. 1 high whistle"),
)
def _wind(p: dict[str, Any]) -> tuple[Nodes, str]:
    strength, gust = p["strength"], p["gustiness"]
    return {
        "air": {"type": "pink_noise", "voices": 2, "amplitude": 0.1 + 0.3 * strength},
        "gusts": {
            "type": "lfo",
            "voices": 2,
            "shape": "smooth_random",
            "rate_hz": p["gust_rate_hz"],
            "depth": 0.2 + 1.3 * gust,
        },
        "whistle": {
            "type": "svf",
            "in": "air",
            "cutoff_mod": "gusts",
            "mode": "bandpass",
            "cutoff_hz": 250.0 + 1000.0 * p["brightness"],
            "q": 0.8 + 2.0 * strength,
        },
        "swell": {
            "type": "lfo",
            "voices": 2,
            "shape": "smooth_random",
            "rate_hz": 0.7 * p["gust_rate_hz"],
            "depth": 1.0,
        },
        "blow": {
            "type": "am",
            "carrier": "whistle",
            "modulator": "swell",
            "depth": 0.3 + 0.6 * gust,
        },
        "room": _room("blow", 2.5, 0.2),
    }, "room"


@texture(
    "waves",
    "ocean waves breaking on a beach, one swell every swell_period_s",
    "surf (pink_noise), swell (lfo sine), drift (lfo), wash (add), tone (svf), "
    "break (am), room (reverb)",
    swell_period_s=TextureParam(9.0, 3.0, 30.0, "s", "seconds from wave to wave"),
    size=TextureParam(0.5, doc="0 lapping .. 1 heavy surf"),
    brightness=TextureParam(0.4, doc="how much spray the crest has"),
)
def _waves(p: dict[str, Any]) -> tuple[Nodes, str]:
    size = p["size"]
    return {
        "surf": {"type": "pink_noise", "voices": 2, "amplitude": 0.12 + 0.25 * size},
        "swell": {
            "type": "lfo",
            "shape": "sine",
            "rate_hz": 1.0 / p["swell_period_s"],
            "depth": 0.8,
        },
        # Each wave a little different, on the same period.
        "drift": {
            "type": "lfo",
            "voices": 2,
            "shape": "smooth_random",
            "rate_hz": 0.5 / p["swell_period_s"],
            "depth": 0.2,
        },
        "wash": {"type": "add", "a": "swell", "b": "drift"},
        "tone": {
            "type": "svf",
            "in": "surf",
            "cutoff_mod": "wash",
            "mode": "lowpass",
            "cutoff_hz": 500.0 + 2500.0 * p["brightness"],
            "q": 0.6,
        },
        "break": {"type": "am", "carrier": "tone", "modulator": "wash", "depth": 0.95},
        "room": _room("break", 3.0, 0.2, 0.9),
    }, "room"


@texture(
    "stream",
    "a brook over stones: babbling water and rising bubbles",
    "water (pink_noise), ripple (lfo), babble (svf), bubbles (grains), "
    "mix (add), room (reverb)",
    flow=TextureParam(0.5, doc="0 a trickle .. 1 a rushing stream"),
    brightness=TextureParam(0.5),
)
def _stream(p: dict[str, Any]) -> tuple[Nodes, str]:
    flow = p["flow"]
    return {
        "water": {"type": "pink_noise", "voices": 2, "amplitude": 0.1 + 0.2 * flow},
        "ripple": {
            "type": "lfo",
            "voices": 2,
            "shape": "smooth_random",
            "rate_hz": 3.0 + 5.0 * flow,
            "depth": 0.8,
        },
        "babble": {
            "type": "svf",
            "in": "water",
            "cutoff_mod": "ripple",
            "mode": "bandpass",
            "cutoff_hz": 900.0 + 1500.0 * p["brightness"],
            "q": 1.5,
        },
        "bubbles": {
            "type": "grains",
            "voices": 2,
            "rate_hz": 8.0 + 40.0 * flow,
            "freq_lo_hz": 400.0,
            "freq_hi_hz": 1600.0,
            "glide_oct": 1.0,
            "duration_ms": 25.0,
            "duration_spread": 0.5,
            "envelope": "hann",
            "amplitude": 0.08,
            "spread_db": 12.0,
        },
        "mix": {"type": "add", "a": "babble", "b": "bubbles"},
        "room": _room("mix", 1.0, 0.15, 0.4),
    }, "room"


@texture(
    "fire",
    "a campfire: a low roar with crackles and pops",
    "roar (brown_noise), warmth (onepole_lowpass), sparks (dust), crackle (svf), "
    "pops (grains), mix (add), room (reverb)",
    intensity=TextureParam(0.5),
    crackle_rate_hz=TextureParam(8.0, 0.0, 100.0, "Hz", "crackles per second"),
)
def _fire(p: dict[str, Any]) -> tuple[Nodes, str]:
    intensity = p["intensity"]
    return {
        "roar": {
            "type": "brown_noise",
            "voices": 2,
            "amplitude": 0.1 + 0.2 * intensity,
        },
        "warmth": {"type": "onepole_lowpass", "in": "roar", "cutoff_hz": 400.0},
        "sparks": {
            "type": "dust",
            "voices": 2,
            "rate_hz": p["crackle_rate_hz"],
            "amplitude": 0.5,
            "spread_db": 20.0,
            "polarity": "bipolar",
        },
        "crackle": {
            "type": "svf",
            "in": "sparks",
            "mode": "bandpass",
            "cutoff_hz": 3000.0,
            "q": 2.0,
        },
        "pops": {
            "type": "grains",
            "voices": 2,
            "rate_hz": 0.3 + 2.0 * intensity,
            "freq_lo_hz": 150.0,
            "freq_hi_hz": 600.0,
            "glide_oct": -1.0,
            "duration_ms": 8.0,
            "envelope": "percussive",
            "amplitude": 0.3,
            "spread_db": 10.0,
        },
        "mix": {"type": "add", "a": "warmth", "b": "crackle", "c": "pops"},
        "room": _room("mix", 0.8, 0.1, 0.3),
    }, "room"


@texture(
    "thunder",
    "a thunderclap rolling away (fire it with a trigger)",
    "rumble (brown_noise), body (svf), env (ar), clap (ring_mod), room (reverb)",
    trigger=True,
    distance=TextureParam(0.5, doc="0 overhead (sharp, bright) .. 1 far (soft, dark)"),
)
def _thunder(p: dict[str, Any]) -> tuple[Nodes, str]:
    distance = p["distance"]
    return {
        "rumble": {"type": "brown_noise", "voices": 2, "amplitude": 0.6},
        "body": {
            "type": "svf",
            "in": "rumble",
            "mode": "lowpass",
            "cutoff_hz": 150.0 + 900.0 * (1.0 - distance),
            "q": 0.7,
        },
        "env": {
            "type": "ar",
            "attack_ms": 20.0 + 400.0 * distance,
            "release_ms": 5000.0 + 5000.0 * distance,
        },
        "clap": {"type": "ring_mod", "a": "body", "b": "env"},
        "room": _room("clap", 4.0, 0.35, 0.95),
    }, "room"


@texture(
    "birds",
    "songbirds calling here and there",
    "calls (grains: phrases of chirps), room (reverb)",
    density=TextureParam(0.4, doc="0 a call now and then .. 1 a dawn chorus"),
    pitch_hz=TextureParam(3500.0, 1500.0, 7000.0, "Hz", "middle of the calls"),
)
def _birds(p: dict[str, Any]) -> tuple[Nodes, str]:
    pitch = p["pitch_hz"]
    return {
        "calls": {
            "type": "grains",
            "voices": 2,
            "rate_hz": 0.1 + 1.5 * p["density"],
            "freq_lo_hz": pitch / 1.6,
            "freq_hi_hz": min(pitch * 1.6, 12000.0),
            "glide_oct": 0.6,
            "duration_ms": 70.0,
            "duration_spread": 0.4,
            "envelope": "hann",
            "amplitude": 0.25,
            "spread_db": 12.0,
            "repeats": 3,
            "repeat_gap_ms": 45.0,
        },
        "room": _room("calls", 1.8, 0.3, 0.8),
    }, "room"


@texture(
    "insects",
    "crickets on a summer night",
    "chirp (sine), trill (pulse), rhythm (pulse), gate (ring_mod), call "
    "(ring_mod), place (pan), room (reverb)",
    density=TextureParam(0.5, doc="how busy the chorus is"),
    pitch_hz=TextureParam(4500.0, 2500.0, 7000.0, "Hz", "the crickets' pitch"),
)
def _insects(p: dict[str, Any]) -> tuple[Nodes, str]:
    pitch, density = p["pitch_hz"], p["density"]
    return {
        "chirp": {
            "type": "sine",
            "frequency_hz": [pitch * r for r in (0.93, 1.0, 1.08)],
            "amplitude": [0.09, 0.07, 0.06],
        },
        "trill": {
            "type": "pulse",
            "voices": 3,
            "rate_hz": [28.0, 33.0, 25.0],
            "duty": 0.45,
            "edge_ms": 3.0,
        },
        "rhythm": {
            "type": "pulse",
            "voices": 3,
            "rate_hz": [0.9 * (0.5 + density), 1.3 * (0.5 + density), 0.7],
            "duty": 0.3 + 0.4 * density,
            "edge_ms": 20.0,
        },
        "gate": {"type": "ring_mod", "a": "chirp", "b": "trill"},
        "call": {"type": "ring_mod", "a": "gate", "b": "rhythm"},
        "place": {"type": "pan", "in": "call", "pan": [-0.7, 0.2, 0.8]},
        "room": _room("place", 1.5, 0.3, 0.8),
    }, "room"


@texture(
    "heartbeat",
    "a slow, soft heartbeat pulse",
    "beat (heartbeat), soft (onepole_lowpass)",
    rate_bpm=TextureParam(60.0, 30.0, 180.0, "bpm"),
    weight=TextureParam(0.5, doc="0 faint .. 1 deep"),
)
def _heartbeat(p: dict[str, Any]) -> tuple[Nodes, str]:
    return {
        "beat": {
            "type": "heartbeat",
            "rate_bpm": p["rate_bpm"],
            "frequency_hz": 45.0 + 20.0 * (1.0 - p["weight"]),
            "amplitude": 0.3 + 0.6 * p["weight"],
        },
        "soft": {"type": "onepole_lowpass", "in": "beat", "cutoff_hz": 250.0},
    }, "soft"


@texture(
    "drone",
    "a warm, slowly breathing drone on a root note",
    "tones (saw), breathe (lfo), soft (ladder), spread (pan), room (reverb)",
    root_hz=TextureParam(55.0, 30.0, 440.0, "Hz", "the drone's root"),
    brightness=TextureParam(0.3),
    motion=TextureParam(0.5, doc="how much it breathes"),
)
def _drone(p: dict[str, Any]) -> tuple[Nodes, str]:
    root = p["root_hz"]
    return {
        "tones": {
            "type": "saw",
            "frequency_hz": [root, root * 1.003, root * 1.5, root * 2.004],
            "amplitude": [0.12, 0.12, 0.07, 0.05],
        },
        "breathe": {
            "type": "lfo",
            "shape": "smooth_random",
            "rate_hz": 0.05,
            "depth": 0.2 + 1.0 * p["motion"],
        },
        "soft": {
            "type": "ladder",
            "in": "tones",
            "cutoff_mod": "breathe",
            "cutoff_hz": min(root * (3.0 + 12.0 * p["brightness"]), 8000.0),
            "resonance": 0.2,
        },
        "spread": {"type": "pan", "in": "soft", "pan": [-0.6, 0.6, -0.3, 0.3]},
        "room": _room("spread", 5.0, 0.35, 0.9),
    }, "room"


_SCALES = (
    "major",
    "natural_minor",
    "dorian",
    "lydian",
    "mixolydian",
    "pentatonic_major",
    "pentatonic_minor",
)


@texture(
    "pad",
    "a soft pad drifting through slowly changing chords of a scale",
    "harmony (chords: frequencies), voices (saw, following harmony), shimmer "
    "(lfo), soft (ladder), spread (pan), room (reverb)",
    scale=TextureParam("major", choices=_SCALES),
    root_hz=TextureParam(110.0, 40.0, 440.0, "Hz", "the key's root"),
    change_s=TextureParam(12.0, 2.0, 120.0, "s", "seconds per chord"),
    brightness=TextureParam(0.3),
)
def _pad(p: dict[str, Any]) -> tuple[Nodes, str]:
    root = p["root_hz"]
    return {
        "harmony": {
            "type": "chords",
            "voices": 4,
            "scale": p["scale"],
            "chord": "seventh",
            "root_hz": root,
            "register_hz": root * 2.0,
            "change_s": p["change_s"],
            "glide_s": min(3.0, 0.3 * p["change_s"]),
        },
        "voices": {
            "type": "saw",
            "fm": "harmony",
            "frequency_hz": [0.0, 0.0, 0.0, 0.0],
            "amplitude": [0.08, 0.07, 0.07, 0.06],
        },
        "shimmer": {
            "type": "lfo",
            "shape": "smooth_random",
            "rate_hz": 0.07,
            "depth": 0.6,
        },
        "soft": {
            "type": "ladder",
            "in": "voices",
            "cutoff_mod": "shimmer",
            "cutoff_hz": min(root * (4.0 + 16.0 * p["brightness"]), 9000.0),
            "resonance": 0.1,
        },
        "spread": {"type": "pan", "in": "soft", "pan": [-0.7, 0.7, -0.3, 0.3]},
        "room": _room("spread", 6.0, 0.45, 0.95),
    }, "room"


@texture(
    "melody",
    "a generative melodic line in a scale, never repeating",
    "line (melody), echo (delay), room (reverb)",
    scale=TextureParam("major", choices=_SCALES),
    root_hz=TextureParam(220.0, 55.0, 880.0, "Hz", "the key's root"),
    density_hz=TextureParam(1.0, 0.1, 8.0, "Hz", "notes per second"),
    low_hz=TextureParam(220.0, 55.0, 2000.0, "Hz", "lowest note"),
    high_hz=TextureParam(880.0, 110.0, 4000.0, "Hz", "highest note"),
)
def _melody(p: dict[str, Any]) -> tuple[Nodes, str]:
    return {
        "line": {
            "type": "melody",
            "scale": p["scale"],
            "root_hz": p["root_hz"],
            "density_hz": p["density_hz"],
            "low_hz": min(p["low_hz"], p["high_hz"] / 2.0),
            "high_hz": p["high_hz"],
            "amplitude": 0.2,
        },
        "echo": {
            "type": "delay",
            "in": "line",
            "delay_s": 0.45,
            "feedback": 0.35,
            "mix": 0.25,
            "damping_hz": 3000.0,
        },
        "room": _room("echo", 4.0, 0.4, 0.9),
    }, "room"


_COLORS = ("white", "pink", "brown")


@texture(
    "noise",
    "colored noise with a tilt, per-band levels and slow animation",
    "source (white/pink/brown_noise), eq (bands: gain_31hz_db .. gain_16khz_db)",
    color=TextureParam("pink", choices=_COLORS),
    tilt_db=TextureParam(
        0.0, -3.0, 3.0, "dB/oct", "extra slope: negative darker, positive brighter"
    ),
    animate_db=TextureParam(0.0, 0.0, 12.0, "dB", "how far each band drifts"),
    animate_rate_hz=TextureParam(0.1, 0.0, 2.0, "Hz"),
    level=TextureParam(0.2, 0.0, 1.0, "", "RMS level"),
)
def _noise(p: dict[str, Any]) -> tuple[Nodes, str]:
    bands = ("31hz", "63hz", "125hz", "250hz", "500hz", "1khz", "2khz", "4khz",
             "8khz", "16khz")  # fmt: skip
    eq = {
        f"gain_{band}_db": min(max(p["tilt_db"] * (k - 5), -24.0), 12.0)
        for k, band in enumerate(bands)
    }
    return {
        "source": {
            "type": f"{p['color']}_noise",
            "voices": 2,
            "amplitude": p["level"],
        },
        "eq": {
            "type": "bands",
            "in": "source",
            "animate_db": p["animate_db"],
            "animate_rate_hz": p["animate_rate_hz"],
            **eq,
        },
    }, "eq"


@texture(
    "binaural",
    "binaural beat: a tone in each ear, beat_hz apart (use headphones)",
    "tones (sine: left, right)",
    carrier_hz=TextureParam(200.0, 60.0, 1000.0, "Hz", "the tones' centre"),
    beat_hz=TextureParam(6.0, 0.5, 40.0, "Hz", "difference between the ears"),
    level=TextureParam(0.1, 0.0, 0.5),
)
def _binaural(p: dict[str, Any]) -> tuple[Nodes, str]:
    c, b = p["carrier_hz"], p["beat_hz"]
    return {
        "tones": {
            "type": "sine",
            "frequency_hz": [c - b / 2.0, c + b / 2.0],
            "amplitude": p["level"],
        },
    }, "tones"


@texture(
    "isochronic",
    "isochronic tone: a tone switched on and off rate_hz times a second",
    "tone (sine), gate (pulse), pulses (ring_mod)",
    tone_hz=TextureParam(220.0, 60.0, 2000.0, "Hz"),
    rate_hz=TextureParam(10.0, 0.5, 40.0, "Hz", "pulses per second"),
    duty=TextureParam(0.5, 0.1, 0.9),
    level=TextureParam(0.1, 0.0, 0.5),
)
def _isochronic(p: dict[str, Any]) -> tuple[Nodes, str]:
    period_ms = 1000.0 / p["rate_hz"]
    return {
        "tone": {"type": "sine", "frequency_hz": p["tone_hz"], "amplitude": p["level"]},
        "gate": {
            "type": "pulse",
            "rate_hz": p["rate_hz"],
            "duty": p["duty"],
            "edge_ms": min(5.0, 0.2 * period_ms),
        },
        "pulses": {"type": "ring_mod", "a": "tone", "b": "gate"},
    }, "pulses"


@texture(
    "am",
    "amplitude-modulation entrainment: a tone (or noise) whose loudness "
    "swells rate_hz times a second",
    "tone (sine or pink_noise), rate (lfo sine), swell (am)",
    tone_hz=TextureParam(220.0, 60.0, 2000.0, "Hz"),
    rate_hz=TextureParam(16.0, 0.5, 40.0, "Hz", "modulations per second"),
    depth=TextureParam(0.5, 0.0, 1.0, "", "0 steady .. 1 down to silence"),
    source=TextureParam("tone", choices=("tone", "noise")),
    level=TextureParam(0.1, 0.0, 0.5),
)
def _am(p: dict[str, Any]) -> tuple[Nodes, str]:
    tone = (
        {"type": "sine", "frequency_hz": p["tone_hz"], "amplitude": p["level"]}
        if p["source"] == "tone"
        else {"type": "pink_noise", "voices": 2, "amplitude": p["level"]}
    )
    return {
        "tone": tone,
        "rate": {"type": "lfo", "shape": "sine", "rate_hz": p["rate_hz"], "depth": 1.0},
        "swell": {
            "type": "am",
            "carrier": "tone",
            "modulator": "rate",
            "depth": p["depth"],
        },
    }, "swell"


@texture(
    "sample",
    "your own WAV/FLAC file (up to 60 s), looped seamlessly or granulated",
    "file (sample), room (reverb)",
    path=TextureParam("", doc="the file, relative to the scene", file=True),
    mode=TextureParam("loop", choices=("loop", "granular")),
    room=TextureParam(0.2, 0.0, 1.0, "", "how much reverb"),
)
def _sample(p: dict[str, Any]) -> tuple[Nodes, str]:
    return {
        "file": {"type": "sample", "path": p["path"], "mode": p["mode"]},
        "room": _room("file", 3.0, p["room"]),
    }, "room"


def texture_names() -> list[str]:
    return sorted(TEXTURES)


def expand(name: str, params: Mapping[str, Any]) -> tuple[Nodes, str]:
    """The nodes and output of texture ``name`` with ``params`` (checked by the
    caller; missing ones take their defaults)."""
    spec = TEXTURES[name]
    values = {k: params.get(k, p.default) for k, p in spec.params.items()}
    return spec.build(values)
