"""The one compiled interpreter: run a program's nodes for one segment.

``render_program`` is the entry point the engine calls for every segment (a block,
or the part of a block between two timed events). It smooths every parameter
towards its target, then walks the instruction table and dispatches each row to
its kernel. It is compiled once and cached; a new program is only new data.

Audio thread: yes.
"""

from __future__ import annotations

import math

from numba import njit

from engine.dsp import kernels_dynamics as dyn
from engine.dsp import kernels_eq as eq
from engine.dsp import kernels_event as event
from engine.dsp import kernels_filter as flt
from engine.dsp import kernels_gen as gen
from engine.dsp import kernels_master as master
from engine.dsp import kernels_mix as mixing
from engine.dsp import kernels_mod as mod
from engine.dsp import kernels_noise as noise
from engine.dsp import kernels_osc as osc
from engine.dsp import kernels_sample as smp
from engine.dsp import kernels_time as time
from engine.dsp.jit import JIT, JIT_INLINE
from engine.dsp.layout import (
    I_N_PARAM,
    I_N_STATE,
    I_OP,
    I_PARAM,
    I_STATE,
    INFO_N_INSTR,
    INFO_N_PARAMS,
    P_CURRENT,
    P_GOOD,
    P_MAX,
    P_MIN,
    P_SLEW,
    P_SLEW_BASE,
    P_START,
    P_TARGET,
    P_TAU,
)
from engine.dsp.opcodes import Op

# Plain ints: Numba folds module-level ints into the compiled dispatch.
_SINE = int(Op.SINE)
_SAW = int(Op.SAW)
_SQUARE = int(Op.SQUARE)
_TRIANGLE = int(Op.TRIANGLE)
_WHITE_NOISE = int(Op.WHITE_NOISE)
_PINK_NOISE = int(Op.PINK_NOISE)
_BROWN_NOISE = int(Op.BROWN_NOISE)
_ONEPOLE_LOWPASS = int(Op.ONEPOLE_LOWPASS)
_ONEPOLE_HIGHPASS = int(Op.ONEPOLE_HIGHPASS)
_SVF = int(Op.SVF)
_RLPF = int(Op.RLPF)
_LADDER = int(Op.LADDER)
_DC_BLOCKER = int(Op.DC_BLOCKER)
_LFO = int(Op.LFO)
_ADSR = int(Op.ADSR)
_AR = int(Op.AR)
_RAMP = int(Op.RAMP)
_DELAY = int(Op.DELAY)
_REVERB = int(Op.REVERB)
_GAIN = int(Op.GAIN)
_PAN = int(Op.PAN)
_WIDTH = int(Op.WIDTH)
_MIX = int(Op.MIX)
_ADD = int(Op.ADD)
_RING_MOD = int(Op.RING_MOD)
_AM = int(Op.AM)
_LIMITER = int(Op.LIMITER)
_DUCK = int(Op.DUCK)
_DUST = int(Op.DUST)
_GRAINS = int(Op.GRAINS)
_PULSE = int(Op.PULSE)
_HEARTBEAT = int(Op.HEARTBEAT)
_BANDS = int(Op.BANDS)
_CHORDS = int(Op.CHORDS)
_MELODY = int(Op.MELODY)
_SAMPLE = int(Op.SAMPLE)


@njit(**JIT_INLINE)
def advance_params(params, n_params, n_frames):
    """Move every parameter one segment towards its target.

    A target that is not finite is refused (the last good one stays) and counted;
    a finite one is clamped to the parameter's range. A parameter with a slew
    (``P_SLEW`` > 0: a timed ramp or a slew-rate contract) moves in a straight
    line at that rate and lands exactly; when it lands, the slew goes back to
    the parameter's own contract (``P_SLEW_BASE``). Otherwise it follows a
    one-pole: the value at the segment end is what a per-sample one-pole would
    reach, whatever the segment length, so smoothing does not depend on the
    block size. Kernels ramp linearly from ``P_START`` to ``P_CURRENT`` inside
    the segment.

    Returns the number of targets refused.
    """
    refused = 0
    for k in range(n_params):
        target = params[P_TARGET, k]
        if math.isfinite(target):
            target = min(max(target, params[P_MIN, k]), params[P_MAX, k])
            params[P_GOOD, k] = target
        else:
            refused += 1
            target = params[P_GOOD, k]
            # Written back so a bad value is counted once, not every block.
            params[P_TARGET, k] = target
        current = params[P_CURRENT, k]
        params[P_START, k] = current
        if current != target:
            slew = params[P_SLEW, k]
            if slew > 0.0:
                step = slew * n_frames
                if abs(target - current) <= step:
                    current = target
                    params[P_SLEW, k] = params[P_SLEW_BASE, k]
                elif target > current:
                    current += step
                else:
                    current -= step
            else:
                tau = params[P_TAU, k]
                if tau <= 0.0:
                    current = target
                else:
                    current = target + (current - target) * math.exp(-n_frames / tau)
                    # Land exactly instead of creeping through subnormals.
                    if abs(current - target) <= 1e-12 * (1.0 + abs(target)):
                        current = target
            params[P_CURRENT, k] = current
    return refused


@njit(**JIT_INLINE)
def run_nodes(instr, params, state, bufs, n_instr, sample_rate, n_frames):
    """Run ``n_instr`` instruction rows for ``n_frames`` frames."""
    for i in range(n_instr):
        row = instr[i]
        op = row[I_OP]
        pa = row[I_PARAM]
        pb = pa + row[I_N_PARAM]
        p0 = params[P_START, pa:pb]
        p1 = params[P_CURRENT, pa:pb]
        sa = row[I_STATE]
        st = state[sa : sa + row[I_N_STATE]]
        if op == _SINE:
            osc.sine(bufs, row, p0, p1, st, sample_rate, n_frames)
        elif op == _SAW:
            osc.saw(bufs, row, p0, p1, st, sample_rate, n_frames)
        elif op == _SQUARE:
            osc.square(bufs, row, p0, p1, st, sample_rate, n_frames)
        elif op == _TRIANGLE:
            osc.triangle(bufs, row, p0, p1, st, sample_rate, n_frames)
        elif op == _WHITE_NOISE:
            noise.white_noise(bufs, row, p0, p1, st, sample_rate, n_frames)
        elif op == _PINK_NOISE:
            noise.pink_noise(bufs, row, p0, p1, st, sample_rate, n_frames)
        elif op == _BROWN_NOISE:
            noise.brown_noise(bufs, row, p0, p1, st, sample_rate, n_frames)
        elif op == _ONEPOLE_LOWPASS:
            flt.onepole_lowpass(bufs, row, p0, p1, st, sample_rate, n_frames)
        elif op == _ONEPOLE_HIGHPASS:
            flt.onepole_highpass(bufs, row, p0, p1, st, sample_rate, n_frames)
        elif op == _SVF:
            flt.svf(bufs, row, p0, p1, st, sample_rate, n_frames)
        elif op == _RLPF:
            flt.rlpf(bufs, row, p0, p1, st, sample_rate, n_frames)
        elif op == _LADDER:
            flt.ladder(bufs, row, p0, p1, st, sample_rate, n_frames)
        elif op == _DC_BLOCKER:
            flt.dc_blocker(bufs, row, p0, p1, st, sample_rate, n_frames)
        elif op == _LFO:
            mod.lfo(bufs, row, p0, p1, st, sample_rate, n_frames)
        elif op == _ADSR:
            mod.adsr(bufs, row, p0, p1, st, sample_rate, n_frames)
        elif op == _AR:
            mod.ar(bufs, row, p0, p1, st, sample_rate, n_frames)
        elif op == _RAMP:
            mod.ramp(bufs, row, p0, p1, st, sample_rate, n_frames)
        elif op == _DELAY:
            time.delay(bufs, row, p0, p1, st, sample_rate, n_frames)
        elif op == _REVERB:
            time.reverb(bufs, row, p0, p1, st, sample_rate, n_frames)
        elif op == _GAIN:
            mixing.gain(bufs, row, p0, p1, st, sample_rate, n_frames)
        elif op == _PAN:
            mixing.pan(bufs, row, p0, p1, st, sample_rate, n_frames)
        elif op == _WIDTH:
            mixing.width(bufs, row, p0, p1, st, sample_rate, n_frames)
        elif op == _MIX:
            mixing.mix(bufs, row, p0, p1, st, sample_rate, n_frames)
        elif op == _ADD:
            mixing.add(bufs, row, p0, p1, st, sample_rate, n_frames)
        elif op == _RING_MOD:
            mixing.ring_mod(bufs, row, p0, p1, st, sample_rate, n_frames)
        elif op == _AM:
            mixing.am(bufs, row, p0, p1, st, sample_rate, n_frames)
        elif op == _LIMITER:
            master.limiter(bufs, row, p0, p1, st, sample_rate, n_frames)
        elif op == _DUCK:
            dyn.duck(bufs, row, p0, p1, st, sample_rate, n_frames)
        elif op == _DUST:
            event.dust(bufs, row, p0, p1, st, sample_rate, n_frames)
        elif op == _GRAINS:
            event.grains(bufs, row, p0, p1, st, sample_rate, n_frames)
        elif op == _PULSE:
            event.pulse(bufs, row, p0, p1, st, sample_rate, n_frames)
        elif op == _HEARTBEAT:
            event.heartbeat(bufs, row, p0, p1, st, sample_rate, n_frames)
        elif op == _BANDS:
            eq.bands(bufs, row, p0, p1, st, sample_rate, n_frames)
        elif op == _CHORDS:
            gen.chords(bufs, row, p0, p1, st, sample_rate, n_frames)
        elif op == _MELODY:
            gen.melody(bufs, row, p0, p1, st, sample_rate, n_frames)
        elif op == _SAMPLE:
            smp.sample(bufs, row, p0, p1, st, sample_rate, n_frames)
        # Op.INPUT has no kernel: the engine fills its slots.


@njit(**JIT)
def render_program(program, sample_rate, n_frames):
    """Smooth parameters, then run every node of ``program`` for one segment.

    ``program`` is the tuple ``(instr, params, state, bufs, info)``. Returns the
    number of parameter targets refused as non-finite.
    """
    instr, params, state, bufs, info = program
    refused = advance_params(params, info[INFO_N_PARAMS], n_frames)
    run_nodes(instr, params, state, bufs, info[INFO_N_INSTR], sample_rate, n_frames)
    return refused
