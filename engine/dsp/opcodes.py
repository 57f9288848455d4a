"""The one list of node opcodes. ``engine.dsp.interpreter`` dispatches on these,
and each ``NodeSpec`` names its own.

Audio thread: yes (constants only).
"""

from enum import IntEnum


class Op(IntEnum):
    """Opcodes of every node the interpreter can run."""

    # Graph plumbing.
    INPUT = 1  # external input written by the engine (no kernel)
    # Oscillators (kernels_osc).
    SINE = 10
    SAW = 11
    SQUARE = 12
    TRIANGLE = 13
    # Noise (kernels_noise).
    WHITE_NOISE = 20
    PINK_NOISE = 21
    BROWN_NOISE = 22
    # Filters (kernels_filter).
    ONEPOLE_LOWPASS = 30
    ONEPOLE_HIGHPASS = 31
    SVF = 32
    RLPF = 33
    LADDER = 34
    DC_BLOCKER = 35
    # Modulation (kernels_mod).
    LFO = 40
    ADSR = 41
    AR = 42
    RAMP = 43
    # Time (kernels_time).
    DELAY = 50
    REVERB = 51
    # Mixing (kernels_mix).
    GAIN = 60
    PAN = 61
    WIDTH = 62
    MIX = 63
    ADD = 64
    RING_MOD = 65
    AM = 66
    # Master (kernels_master).
    LIMITER = 70
    METER = 71  # level meter (kernels_meter)
    # Dynamics (kernels_dynamics).
    DUCK = 75
    # Events (kernels_event) and the band equaliser (kernels_eq).
    DUST = 80
    GRAINS = 81
    PULSE = 82
    HEARTBEAT = 83
    BANDS = 84
    # Generative pitch (kernels_gen) and sample playback (kernels_sample).
    CHORDS = 90
    MELODY = 91
    SAMPLE = 92
