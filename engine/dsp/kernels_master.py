"""STUB: being written. Kernels output silence until then."""

from numba import njit

from engine.dsp.jit import JIT
from engine.dsp.layout import I_OUT, I_OUT_WIDTH


@njit(**JIT)
def limiter(bufs, row, p0, p1, state, sample_rate, n_frames):  # STUB
    for k in range(row[I_OUT_WIDTH]):
        bufs[row[I_OUT] + k, :n_frames] = 0.0
