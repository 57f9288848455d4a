"""The audio callback: a Numba ``@cfunc`` with PortAudio's C signature.

PortAudio calls it on its own real-time thread with ``userdata`` pointing at an
int64 *pointer table* (layout ``T_*`` below) that the control plane filled with
the addresses and shapes of the engine's arrays. The callback turns them back into
array views, calls :func:`engine.rt.core.render_block` (the same function offline
rendering calls), and records statistics. It never takes the GIL, never allocates,
never raises (DESIGN.md section 1).

Audio thread: ``audio_callback`` yes; :class:`PointerTable` no.
"""

from __future__ import annotations

import numpy as np
from numba import carray, cfunc, njit, types
from numba.extending import intrinsic

from engine.dsp.jit import JIT
from engine.dsp.layout import INFO_WIDTH, INSTR_WIDTH, N_PARAM_FIELDS
from engine.graph.program import Program
from engine.rt.audio_io import PA_CONTINUE, PA_STREAM_CALLBACK_SIGNATURE
from engine.rt.core import C_FRAME, C_REQUEST, CTL_WIDTH, render_block
from engine.rt.pointers import (
    address_as_voidptr,
    address_of,
    voidptr_as_int64_array,
)
from engine.rt.ring import EV_WIDTH, RING_POS_WIDTH
from engine.rt.stats import STATS_SIZE, rt_stats_begin, rt_stats_end

# Per-program fields, at offsets T_SLOT0 / T_SLOT1 / T_MASTER.
_INSTR, _INSTR_ROWS, _PARAMS, _PARAMS_COLS, _STATE, _STATE_LEN = range(6)
_BUFS, _BUFS_SLOTS, _BUFS_COLS, _INFO = range(6, 10)
PROGRAM_FIELDS = 10
T_SLOT0 = 0
T_SLOT1 = T_SLOT0 + PROGRAM_FIELDS
T_MASTER = T_SLOT1 + PROGRAM_FIELDS
T_CTL = T_MASTER + PROGRAM_FIELDS
T_RING = T_CTL + 1
T_RING_CAPACITY = T_RING + 1
T_RING_POS = T_RING_CAPACITY + 1
T_STATS = T_RING_POS + 1
T_CAPTURE = T_STATS + 1  # optional float32 copy of what was played (tests)
T_CAPTURE_LEN = T_CAPTURE + 1
T_CHANNELS = T_CAPTURE_LEN + 1
T_SAMPLE_RATE = T_CHANNELS + 1
T_BLOCK_SIZE = T_SAMPLE_RATE + 1
TABLE_SIZE = T_BLOCK_SIZE + 1


@intrinsic
def _acquire_fence(typingctx):  # type: ignore[no-untyped-def]
    """A compiler and CPU fence: loads after it are not moved before it."""

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        builder.fence("acquire")
        return context.get_dummy_value()

    return types.void(), codegen


@njit(**JIT)
def _program_view(table, base):
    """The program tuple ``(instr, params, state, bufs, info)`` at ``base``."""
    instr = carray(
        address_as_voidptr(table[base + _INSTR]),
        (table[base + _INSTR_ROWS], INSTR_WIDTH),
        np.int64,
    )
    params = carray(
        address_as_voidptr(table[base + _PARAMS]),
        (N_PARAM_FIELDS, table[base + _PARAMS_COLS]),
        np.float64,
    )
    state = carray(
        address_as_voidptr(table[base + _STATE]),
        (table[base + _STATE_LEN],),
        np.float64,
    )
    bufs = carray(
        address_as_voidptr(table[base + _BUFS]),
        (table[base + _BUFS_SLOTS], table[base + _BUFS_COLS]),
        np.float64,
    )
    info = carray(address_as_voidptr(table[base + _INFO]), (INFO_WIDTH,), np.int64)
    return (instr, params, state, bufs, info)


@cfunc(PA_STREAM_CALLBACK_SIGNATURE, nopython=True, cache=True)
def audio_callback(
    input_ptr, output_ptr, frame_count, time_info, status_flags, userdata
):
    table = voidptr_as_int64_array(userdata, TABLE_SIZE)
    stats = carray(address_as_voidptr(table[T_STATS]), (STATS_SIZE,), np.int64)
    n_frames = np.int64(frame_count)
    start_ns = rt_stats_begin(stats, n_frames, status_flags, table[T_BLOCK_SIZE])
    channels = table[T_CHANNELS]
    out = carray(output_ptr, (n_frames * channels,), np.float32)
    ctl = carray(address_as_voidptr(table[T_CTL]), (CTL_WIDTH,), np.int64)
    ring = carray(
        address_as_voidptr(table[T_RING]),
        (table[T_RING_CAPACITY], EV_WIDTH),
        np.float64,
    )
    ring_pos = carray(
        address_as_voidptr(table[T_RING_POS]), (RING_POS_WIDTH,), np.int64
    )
    first = ctl[C_FRAME] * channels
    # Read the switch counter before the slot views: the control thread rewrites
    # a slot's table entries first and bumps the counter last.
    request = ctl[C_REQUEST]
    _acquire_fence()
    render_block(
        out,
        n_frames,
        channels,
        ctl,
        ring,
        ring_pos,
        _program_view(table, np.int64(T_SLOT0)),
        _program_view(table, np.int64(T_SLOT1)),
        _program_view(table, np.int64(T_MASTER)),
        np.float64(table[T_SAMPLE_RATE]),
        request,
    )
    capture_len = table[T_CAPTURE_LEN]
    if capture_len > 0 and first < capture_len:
        capture = carray(
            address_as_voidptr(table[T_CAPTURE]), (capture_len,), np.float32
        )
        n = min(n_frames * channels, capture_len - first)
        for i in range(n):
            capture[first + i] = out[i]
    # The time these frames last at the stream's rate: a callback that runs
    # longer than this, by its own CPU time, is a gap the engine caused.
    # (max: a divisor the compiler can see is never zero leaves no raise path.)
    budget_ns = n_frames * np.int64(1_000_000_000) // max(table[T_SAMPLE_RATE], 1)
    rt_stats_end(stats, start_ns, budget_ns)
    return PA_CONTINUE


class PointerTable:
    """The int64 table ``userdata`` points at (control thread).

    It holds addresses, so every array it names must stay alive while a stream
    may call back: the engine keeps programs alive past their retirement
    (``Engine._retired``) and this object keeps the rest.
    """

    def __init__(
        self,
        ctl: np.ndarray,
        ring: np.ndarray,
        ring_pos: np.ndarray,
        stats: np.ndarray,
        channels: int,
        sample_rate: int,
        block_size: int,
        capture: np.ndarray | None = None,
    ) -> None:
        self.table = np.zeros(TABLE_SIZE, dtype=np.int64)
        self._keep = [ctl, ring, ring_pos, stats, capture]
        self.table[T_CTL] = address_of(ctl)
        self.table[T_RING] = address_of(ring)
        self.table[T_RING_CAPACITY] = ring.shape[0]
        self.table[T_RING_POS] = address_of(ring_pos)
        self.table[T_STATS] = address_of(stats)
        if capture is not None:
            self.table[T_CAPTURE] = address_of(capture)
            self.table[T_CAPTURE_LEN] = capture.shape[0]
        self.table[T_CHANNELS] = channels
        self.table[T_SAMPLE_RATE] = sample_rate
        self.table[T_BLOCK_SIZE] = block_size

    @property
    def address(self) -> int:
        return address_of(self.table)

    def set_program(self, base: int, program: Program) -> None:
        """Point the fields at ``base`` to ``program``'s arrays."""
        t = self.table
        t[base + _INSTR] = address_of(program.instr)
        t[base + _INSTR_ROWS] = program.instr.shape[0]
        t[base + _PARAMS] = address_of(program.params)
        t[base + _PARAMS_COLS] = program.params.shape[1]
        t[base + _STATE] = address_of(program.state)
        t[base + _STATE_LEN] = program.state.shape[0]
        t[base + _BUFS] = address_of(program.bufs)
        t[base + _BUFS_SLOTS] = program.bufs.shape[0]
        t[base + _BUFS_COLS] = program.bufs.shape[1]
        t[base + _INFO] = address_of(program.info)
