"""The one compiled interpreter: run a program's nodes for one segment.

``render_program`` is the entry point the engine calls for every segment (a block,
or the part of a block between two timed events). It smooths every parameter
towards its target, then walks the instruction table and calls each row's
kernel through the kernel table (``engine.dsp.dispatch``). It is compiled once
and cached; a new program is only new data.

Audio thread: yes.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable

import numpy as np
from numba import njit

from engine.dsp import kernels_dynamics as dyn
from engine.dsp import kernels_eq as eq
from engine.dsp import kernels_event as event
from engine.dsp import kernels_filter as flt
from engine.dsp import kernels_gen as gen
from engine.dsp import kernels_master as master
from engine.dsp import kernels_meter as meters
from engine.dsp import kernels_mix as mixing
from engine.dsp import kernels_mod as mod
from engine.dsp import kernels_noise as noise
from engine.dsp import kernels_osc as osc
from engine.dsp import kernels_sample as smp
from engine.dsp import kernels_time as time
from engine.dsp.cache_guard import kernels_compiled, mark_kernels_compiled
from engine.dsp.cold_compile import compile_kernels, fetch, running
from engine.dsp.dispatch import (
    call_kernel,
    install_kernels,
    kernel_address,
    set_kernel_loader,
)
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

# How to add a node: write its kernel (signature in engine.dsp.nodes), register
# its NodeSpec with a new opcode (engine.dsp.opcodes), and add one line here.
# Each kernel is compiled once on its own and called through the kernel table
# (engine.dsp.dispatch); the interpreter never links the kernels in.
KERNELS = {
    Op.SINE: osc.sine,
    Op.SAW: osc.saw,
    Op.SQUARE: osc.square,
    Op.TRIANGLE: osc.triangle,
    Op.WHITE_NOISE: noise.white_noise,
    Op.PINK_NOISE: noise.pink_noise,
    Op.BROWN_NOISE: noise.brown_noise,
    Op.ONEPOLE_LOWPASS: flt.onepole_lowpass,
    Op.ONEPOLE_HIGHPASS: flt.onepole_highpass,
    Op.SVF: flt.svf,
    Op.RLPF: flt.rlpf,
    Op.LADDER: flt.ladder,
    Op.DC_BLOCKER: flt.dc_blocker,
    Op.LFO: mod.lfo,
    Op.ADSR: mod.adsr,
    Op.AR: mod.ar,
    Op.RAMP: mod.ramp,
    Op.DELAY: time.delay,
    Op.REVERB: time.reverb,
    Op.GAIN: mixing.gain,
    Op.PAN: mixing.pan,
    Op.WIDTH: mixing.width,
    Op.MIX: mixing.mix,
    Op.ADD: mixing.add,
    Op.RING_MOD: mixing.ring_mod,
    Op.AM: mixing.am,
    Op.LIMITER: master.limiter,
    Op.METER: meters.meter,
    Op.DUCK: dyn.duck,
    Op.DUST: event.dust,
    Op.GRAINS: event.grains,
    Op.PULSE: event.pulse,
    Op.HEARTBEAT: event.heartbeat,
    Op.BANDS: eq.bands,
    Op.CHORDS: gen.chords,
    Op.MELODY: gen.melody,
    Op.SAMPLE: smp.sample,
    # Op.INPUT has no kernel: the engine fills its slots.
}
_installed: set[int] = set()
_install_lock = threading.Lock()


def ensure_kernels(opcodes: Iterable[int]) -> None:
    """Put the kernels of ``opcodes`` in the kernel table, each once: loaded
    from Numba's cache (a few ms each), or compiled if it is not there.

    Every program the graph compiler makes asks for its kernels (through
    ``engine.dsp.dispatch.request_kernels``), so they are in the table before
    it can be published. While a cold compile fills the cache, this asks the
    workers for them first and waits for them (``cold_compile.fetch``): a
    program that plays is never compiled for on the audio thread, and a scene
    switch that waits here keeps the old program playing. Control thread only.
    """
    with _install_lock:
        missing = {
            op: KERNELS[Op(op)]
            for op in {int(op) for op in opcodes}
            if op not in _installed and op in _KERNEL_OPS
        }
        if missing:
            fetch(missing.values())
            install_kernels(missing)
            _installed.update(missing)


_KERNEL_OPS = {int(op) for op in KERNELS}
# A cold cache is filled by worker processes in the background (a worker
# stops here) while this process goes on: each program's kernels are fetched
# first when it is compiled (ensure_kernels). With one process, everything is
# compiled here, now. A warm start loads the few kernels its programs play,
# not all 35.
if not compile_kernels(KERNELS):
    if not kernels_compiled() and running() is None:
        ensure_kernels(KERNELS)
        mark_kernels_compiled()
    set_kernel_loader(ensure_kernels)


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
        kernel = kernel_address(op)
        if kernel != 0:
            call_kernel(
                kernel, bufs, row, p0, p1, st, float(sample_rate), np.int64(n_frames)
            )


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
