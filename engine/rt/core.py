"""The block renderer both the audio callback and offline rendering call.

``render_block`` renders ``n_frames`` interleaved float32 frames: it applies timed
events at their exact frame (splitting the block there), crossfades from the active
program to a newly published one, runs the master program (gain, DC blocker,
true-peak limiter) and guards the output. Live and offline output are bit-identical
because both run exactly this function on the same arrays.

Shared ``ctl`` array (int64), fields ``C_*``: the control thread writes
``C_REQUEST`` and ``C_FADE_FRAMES`` (after placing a program in the idle slot);
everything else is written by the audio thread and read by control.

Audio thread: yes.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from engine.dsp.interpreter import render_program
from engine.dsp.jit import JIT, JIT_INLINE
from engine.dsp.kernels_osc import sine_lookup
from engine.dsp.layout import (
    INFO_GENERATION,
    INFO_IN_SLOT,
    INFO_N_PARAMS,
    INFO_OUT_SLOT,
    INFO_OUT_STRIDE,
    P_CURRENT,
    P_GOOD,
    P_MAX,
    P_MIN,
    P_SLEW,
    P_SLEW_BASE,
    P_START,
    P_TARGET,
)
from engine.rt.ring import (
    EV_GENERATION,
    EV_INDEX,
    EV_KIND,
    EV_RAMP,
    EV_SET,
    EV_SET_NOW,
    EV_TRIGGER,
    EV_VALUE,
    NO_EVENT,
    ring_head,
    ring_next_due,
    ring_pop_head,
    ring_take,
)

# ctl fields.
C_FRAME = 0  # frames rendered so far: the engine's sample clock
C_ACTIVE = 1  # slot (0 or 1) holding the program being heard
C_REQUEST = 2  # control: bumped after a program is placed in the idle slot
C_ACCEPTED = 3  # audio: last request it started to fade to
C_DONE = 4  # audio: bumped when a fade completes (old slot may be freed)
C_FADE_FRAMES = 5  # control: length of the next crossfade
C_FADE_POS = 6  # audio: frames of the current fade done
C_FADING = 7  # audio: 1 while crossfading
C_REFUSED_PARAMS = 8  # non-finite parameter targets refused
C_NONFINITE = 9  # non-finite output samples replaced by silence
C_EVENTS_APPLIED = 10
C_EVENTS_LATE = 11  # events applied after their frame (they came too late)
C_EVENTS_ORPHANED = 12  # events for a program no longer loaded
C_CLAMPED = 13  # output samples clamped at the final safety ceiling
CTL_WIDTH = 16

# The last line of defence after the limiter: nothing leaves above 0 dBFS.
OUTPUT_CLAMP = 1.0
# Below the least significant bit of 24-bit audio (-144 dBFS): written as exact
# zero, so a fade ends in digital silence instead of a filter's decaying tail.
OUTPUT_FLOOR = 2.0**-24


def new_ctl() -> np.ndarray:
    """A fresh control array (control thread)."""
    return np.zeros(CTL_WIDTH, dtype=np.int64)


@njit(**JIT_INLINE)
def _apply_event(ring, index, slot0, slot1, master):
    """Apply one event record to the program it names; False if none matches."""
    generation = np.int64(ring[index, EV_GENERATION])
    if slot0[4][INFO_GENERATION] == generation:
        params = slot0[1]
        n_params = slot0[4][INFO_N_PARAMS]
    elif slot1[4][INFO_GENERATION] == generation:
        params = slot1[1]
        n_params = slot1[4][INFO_N_PARAMS]
    elif master[4][INFO_GENERATION] == generation:
        params = master[1]
        n_params = master[4][INFO_N_PARAMS]
    else:
        return False
    column = np.int64(ring[index, EV_INDEX])
    # The view's own width bounds the write too, whatever the info array says.
    if column < 0 or column >= n_params or column >= params.shape[1]:
        return False
    kind = np.int64(ring[index, EV_KIND])
    value = ring[index, EV_VALUE]
    if kind == EV_RAMP:
        if not value >= 1.0:  # also refuses NaN
            return False
        target = params[P_TARGET, column]
        if not math.isfinite(target):
            return False
        target = min(max(target, params[P_MIN, column]), params[P_MAX, column])
        distance = abs(target - params[P_CURRENT, column])
        if distance == 0.0:
            # Already there: the ramp is over before it starts, and the
            # parameter's own contract rules again (a leftover slew would
            # crawl towards every later target).
            params[P_SLEW, column] = params[P_SLEW_BASE, column]
        else:
            # A tiny floor keeps the ramp a ramp (0 would mean "one-pole").
            params[P_SLEW, column] = max(distance / value, 1e-300)
        return True
    if kind == EV_TRIGGER:
        value = params[P_GOOD, column] + 1.0
    if not math.isfinite(value):
        return False
    value = min(max(value, params[P_MIN, column]), params[P_MAX, column])
    params[P_TARGET, column] = value
    if kind == EV_SET_NOW or kind == EV_TRIGGER:
        params[P_GOOD, column] = value
        params[P_START, column] = value
        params[P_CURRENT, column] = value
    elif kind != EV_SET:
        return False
    return True


@njit(**JIT_INLINE)
def _apply_due(ring, ring_pos, now, block_start, ctl, slot0, slot1, master):
    """Take new events from the ring, apply every one due at or before frame
    ``now`` (in frame order, then the order pushed); return the frame of the
    next one, or ``NO_EVENT`` (see engine.rt.ring)."""
    ring_take(ring, ring_pos)
    while True:
        due = ring_next_due(ring, ring_pos)
        if due == NO_EVENT or due > now:
            return due
        if 0 <= due < block_start:
            ctl[C_EVENTS_LATE] += 1
        if _apply_event(ring, ring_head(ring, ring_pos), slot0, slot1, master):
            ctl[C_EVENTS_APPLIED] += 1
        else:
            ctl[C_EVENTS_ORPHANED] += 1
        ring_pop_head(ring_pos)


@njit(**JIT_INLINE)
def _render_segment(out, start, n, n_channels, ctl, slot0, slot1, master, rate):
    """Render frames ``start .. start + n`` of ``out`` (no events inside)."""
    active = ctl[C_ACTIVE]
    main = slot0 if active == 0 else slot1
    incoming = slot1 if active == 0 else slot0
    refused = render_program(main, rate, n)
    m_out = main[4][INFO_OUT_SLOT]
    m_right = m_out + main[4][INFO_OUT_STRIDE]
    mbufs = master[3]
    in_left = master[4][INFO_IN_SLOT]
    in_right = in_left + 1
    bufs = main[3]
    if ctl[C_FADING] == 1:
        refused += render_program(incoming, rate, n)
        ibufs = incoming[3]
        i_out = incoming[4][INFO_OUT_SLOT]
        i_right = i_out + incoming[4][INFO_OUT_STRIDE]
        total = max(ctl[C_FADE_FRAMES], 1)
        pos = ctl[C_FADE_POS]
        for frame in range(n):
            x = min((pos + frame + 1) / total, 1.0)
            # Equal power for uncorrelated scenes: sin/cos over a quarter turn.
            g_in = sine_lookup(0.25 * x)
            g_out = sine_lookup(0.25 * x + 0.25)
            mbufs[in_left, frame] = (
                bufs[m_out, frame] * g_out + ibufs[i_out, frame] * g_in
            )
            mbufs[in_right, frame] = (
                bufs[m_right, frame] * g_out + ibufs[i_right, frame] * g_in
            )
        pos += n
        ctl[C_FADE_POS] = pos
        if pos >= total:
            ctl[C_FADING] = 0
            ctl[C_ACTIVE] = 1 - active
            ctl[C_DONE] += 1
    else:
        for frame in range(n):
            mbufs[in_left, frame] = bufs[m_out, frame]
            mbufs[in_right, frame] = bufs[m_right, frame]
    refused += render_program(master, rate, n)
    o_left = master[4][INFO_OUT_SLOT]
    o_right = o_left + master[4][INFO_OUT_STRIDE]
    nonfinite = 0
    clamped = 0
    for frame in range(n):
        base = (start + frame) * n_channels
        for channel in range(n_channels):
            y = mbufs[o_left if channel == 0 else o_right, frame]
            if not math.isfinite(y):
                y = 0.0
                nonfinite += 1
            elif y > OUTPUT_CLAMP:
                y = OUTPUT_CLAMP
                clamped += 1
            elif y < -OUTPUT_CLAMP:
                y = -OUTPUT_CLAMP
                clamped += 1
            elif abs(y) < OUTPUT_FLOOR:
                y = 0.0
            out[base + channel] = np.float32(y)
    ctl[C_REFUSED_PARAMS] += refused
    ctl[C_NONFINITE] += nonfinite
    ctl[C_CLAMPED] += clamped


@njit(**JIT)
def render_block(
    out,
    n_frames,
    n_channels,
    ctl,
    ring,
    ring_pos,
    slot0,
    slot1,
    master,
    sample_rate,
    request,
):
    """Render ``n_frames`` interleaved frames into the float32 array ``out``.

    ``slot0``/``slot1``/``master`` are program tuples ``(instr, params, state,
    bufs, info)``. ``request`` is ``ctl[C_REQUEST]`` as read *before* the slot
    views were taken: a switch published after that is started next block, when
    the views show the new program. Channels beyond 2 get the right channel.
    """
    block_start = ctl[C_FRAME]
    max_segment = min(slot0[3].shape[1], slot1[3].shape[1], master[3].shape[1])
    pos = 0
    while pos < n_frames:
        # Events due at or before this frame apply now; the block splits at
        # the next one due.
        due = _apply_due(
            ring, ring_pos, block_start + pos, block_start, ctl, slot0, slot1, master
        )
        end = n_frames
        if due != NO_EVENT and due - block_start < end:
            end = due - block_start
        n = min(end - pos, max_segment)
        # A new program was published: start fading to it at this boundary.
        if ctl[C_FADING] == 0 and request != ctl[C_ACCEPTED]:
            ctl[C_ACCEPTED] = request
            ctl[C_FADE_POS] = 0
            ctl[C_FADING] = 1
        _render_segment(out, pos, n, n_channels, ctl, slot0, slot1, master, sample_rate)
        pos += n
    ctl[C_FRAME] = block_start + n_frames
