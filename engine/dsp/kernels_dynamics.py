"""Dynamics: a ducker, one layer's level pushed down while another one sounds.

A scene's ``master.duck`` (music ducked by a thunderclap, a bed by a stinger)
builds one ``duck`` node per ducked layer, keyed by the sum of the layers that
duck it. It works like a game engine's auto-ducking bus, not a compressor: while
the key is above ``threshold_db`` (and for ``hold_ms`` after) the gain glides to
``-depth_db``; when it falls silent the gain glides back to 0 dB. The glide is a
one-pole on the reduction in dB, so ``attack_ms`` and ``release_ms`` are true
time constants (63 % of the way) and the steady state is exactly ``-depth_db``,
however loud the key is.

Audio thread: yes (``duck``); no (the control-plane helpers that size and
initialise state).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from numba import njit

from engine.dsp.jit import JIT, zap
from engine.dsp.layout import I_IN, I_OUT, I_VOICES
from engine.dsp.nodes import NodeSpec, Param, register
from engine.dsp.opcodes import Op

_LN10_OVER_20 = math.log(10.0) / 20.0
# The reduction lands on 0 or 1 instead of creeping towards it through
# subnormals (1e-9 of 60 dB is far below anything audible).
_LAND = 1e-9

# State layout.
_D_AMOUNT = 0  # smoothed reduction, 0 (none) .. 1 (the full depth_db)
_D_HOLD = 1  # frames the key still counts as sounding
_D_ATTACK_MS = 2  # attack_ms the coefficient below was made for
_D_ATTACK_COEF = 3
_D_RELEASE_MS = 4
_D_RELEASE_COEF = 5
_D_SIZE = 6


def _coef(time_ms: float, sample_rate: float) -> float:
    return math.exp(-1.0 / (time_ms * 1e-3 * sample_rate))


def _duck_state(voices: int, sample_rate: float, options: Mapping[str, Any]) -> int:
    return _D_SIZE


def _duck_init(
    state: np.ndarray,
    params: np.ndarray,
    voices: int,
    sample_rate: float,
    options: Mapping[str, Any],
) -> None:
    # params: depth_db, threshold_db, attack_ms, release_ms, hold_ms, each one
    # column per voice; the first voice's values rule.
    state[:] = 0.0
    state[_D_ATTACK_MS] = params[2 * voices]
    state[_D_ATTACK_COEF] = _coef(params[2 * voices], sample_rate)
    state[_D_RELEASE_MS] = params[3 * voices]
    state[_D_RELEASE_COEF] = _coef(params[3 * voices], sample_rate)


@njit(**JIT)
def duck(bufs, row, p0, p1, state, sample_rate, n_frames):
    """Duck every voice of ``in`` by ``depth_db`` while ``key`` sounds.

    Params (one column per voice; the first voice's value rules, all voices
    move together): ``depth_db`` (0-60, ramped across the segment),
    ``threshold_db`` (key level in dBFS above which it counts as sounding),
    ``attack_ms`` / ``release_ms`` (time constants of the glide down and back
    up), ``hold_ms`` (how long the key counts as sounding after its last loud
    sample: longer than a period of its lowest tone, so a rumble does not
    let go at every zero crossing). Inputs: ``in`` (any number of channels)
    and ``key`` (one channel, or one per voice: the loudest one rules).

    Per frame: the key's peak over its channels (zapped: NaN, inf and denormals read as 0)
    restarts the hold; the target reduction is 1 while holding, else 0; the
    reduction follows it through a one-pole (attack coefficient going down,
    release coming back); gain = 10^(-depth_db * reduction / 20). Coefficients
    are recomputed only when their time changes, once per segment. While no
    reduction is in play the input is copied through unchanged.

    State: see the ``_D_*`` offsets.
    """
    voices = row[I_VOICES]
    in_slot, in_stride = row[I_IN], row[I_IN + 1]
    key_slot, key_stride = row[I_IN + 2], row[I_IN + 3]
    out_slot = row[I_OUT]

    inv_n = 1.0 / n_frames
    depth = p0[0]
    depth_step = (p1[0] - depth) * inv_n
    threshold = math.exp(p0[voices] * _LN10_OVER_20)
    threshold_step = (math.exp(p1[voices] * _LN10_OVER_20) - threshold) * inv_n
    attack_ms = p1[2 * voices]
    if attack_ms != state[_D_ATTACK_MS]:
        state[_D_ATTACK_MS] = attack_ms
        state[_D_ATTACK_COEF] = math.exp(-1.0 / (attack_ms * 1e-3 * sample_rate))
    release_ms = p1[3 * voices]
    if release_ms != state[_D_RELEASE_MS]:
        state[_D_RELEASE_MS] = release_ms
        state[_D_RELEASE_COEF] = math.exp(-1.0 / (release_ms * 1e-3 * sample_rate))
    attack = state[_D_ATTACK_COEF]
    release = state[_D_RELEASE_COEF]
    hold_frames = p1[4 * voices] * 1e-3 * sample_rate

    amount = state[_D_AMOUNT]
    hold = state[_D_HOLD]
    for frame in range(n_frames):
        depth += depth_step
        threshold += threshold_step
        level = 0.0
        for voice in range(voices):
            level = max(level, abs(zap(bufs[key_slot + voice * key_stride, frame])))
        if level > threshold:
            hold = hold_frames
        elif hold > 0.0:
            hold -= 1.0
        if hold > 0.0:
            amount = 1.0 + attack * (amount - 1.0)
            if amount > 1.0 - _LAND:
                amount = 1.0
        else:
            amount = release * amount
            if amount < _LAND:
                amount = 0.0
        if amount == 0.0:
            for voice in range(voices):
                x = bufs[in_slot + voice * in_stride]
                bufs[out_slot + voice, frame] = x[frame]
        else:
            gain = math.exp(-depth * amount * _LN10_OVER_20)
            for voice in range(voices):
                x = bufs[in_slot + voice * in_stride]
                bufs[out_slot + voice, frame] = x[frame] * gain

    # A NaN can only come from the parameters, which the smoother keeps finite;
    # zap anyway so a bad value can never stay in the feedback state.
    state[_D_AMOUNT] = zap(amount) if amount < 1.0 else 1.0
    state[_D_HOLD] = max(0.0, hold)


register(
    NodeSpec(
        "duck",
        Op.DUCK,
        "Duck the input by depth_db while the key signal sounds (auto-ducking).",
        inputs=("in", "key"),
        params=(
            Param(
                "depth_db",
                9.0,
                "dB",
                0.0,
                60.0,
                smoothing_ms=50.0,
                doc="how far the input goes down while the key sounds",
            ),
            Param(
                "threshold_db",
                -50.0,
                "dBFS",
                -100.0,
                0.0,
                smoothing_ms=50.0,
                doc="key level above which it counts as sounding",
            ),
            Param(
                "attack_ms",
                10.0,
                "ms",
                0.1,
                10_000.0,
                smoothing_ms=0.0,
                doc="time constant of the glide down",
            ),
            Param(
                "release_ms",
                400.0,
                "ms",
                1.0,
                30_000.0,
                smoothing_ms=0.0,
                doc="time constant of the glide back up",
            ),
            Param(
                "hold_ms",
                60.0,
                "ms",
                0.0,
                10_000.0,
                smoothing_ms=0.0,
                doc="the key counts as sounding this long after its last loud sample",
            ),
        ),
        state_size=_duck_state,
        init=_duck_init,
    ),
)
