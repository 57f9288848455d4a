"""Counter-based random numbers for noise and random modulation.

The generator is SplitMix64 (Steele, Lea and Flood, 2014) read as a counter-based
generator: the ``n``-th number of a stream is a pure function of a key and the
counter ``n``::

    z = mix64(key + n * GAMMA)                (all arithmetic modulo 2**64)
    uniform = (z >> 11) * 2**-52 - 1          (53 bits, in [-1, 1))

So the whole state of a stream is two numbers that fit exactly in float64 state
slots: a 32-bit ``seed`` (the node's ``seed`` option; the compiler derives it from
the program seed and the node's name, see ``engine.graph.compile.node_seed``) and a
counter below 2**53. There is no hidden generator state: rendering the same
program with the same seed gives the same numbers whatever the block size, and a
stream can be replayed or skipped ahead by setting its counter.

``key = mix64(seed + KEY_SALT)`` spreads neighbouring seeds across the 64-bit
space. Voice ``v`` of a bank reads counters ``v * STREAM_STRIDE + n``: the voices
are disjoint stretches of one Weyl sequence (2**40 draws each, 265 days at 48 kHz,
after which a voice's counter wraps to the start of its stretch), so they never
repeat each other; counters stay exact in float64 for voices below 8192. Two
streams with different keys overlap only if their keys differ by ``GAMMA`` times a
small number: for a day of audio (2**33 draws) that has a probability of about
2**-30 per pair of voices.

Audio thread: yes (``mix64``, ``stream_key`` and ``uniform`` allocate nothing and
cannot raise). ``uniform_block`` (NumPy, vectorised) and ``reference_uniform``
(plain Python, the specification) run on the control thread: initialisers use
the first to warm filters up from the stream's own past, tests use both.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.dsp.jit import JIT

_MASK64 = (1 << 64) - 1
_GAMMA_INT = 0x9E3779B97F4A7C15  # 2**64 / golden ratio, odd: a full-period Weyl step
_MUL1_INT = 0xBF58476D1CE4E5B9  # SplitMix64 finaliser (Stafford's "mix13")
_MUL2_INT = 0x94D049BB133111EB
_KEY_SALT_INT = 0x5851F42D4C957F2D  # keeps seed 0 away from key 0

GAMMA = np.uint64(_GAMMA_INT)
KEY_SALT = np.uint64(_KEY_SALT_INT)
_MUL1 = np.uint64(_MUL1_INT)
_MUL2 = np.uint64(_MUL2_INT)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_TWO_POW_M52 = 2.0**-52

# Counter offset between the voices of a bank (exact in float64 up to voice 8191).
STREAM_STRIDE = float(2**40)
# Counters stay below this so they are exact integers in float64.
COUNTER_LIMIT = float(2**53)


@njit(**JIT)
def mix64(z):
    """SplitMix64 finaliser: a bijection of uint64 with full avalanche."""
    z = (z ^ (z >> _S30)) * _MUL1
    z = (z ^ (z >> _S27)) * _MUL2
    return z ^ (z >> _S31)


@njit(**JIT)
def stream_key(seed):
    """The 64-bit key of a node's streams, from its 32-bit seed (a float)."""
    return mix64(np.uint64(seed) + KEY_SALT)


@njit(**JIT)
def weyl_state(key, counter):
    """The Weyl-sequence value whose ``mix64`` is draw ``counter`` of ``key``.

    Draw ``n + 1`` is ``uniform_from_weyl(weyl + GAMMA)``: a kernel drawing a run
    of consecutive numbers adds GAMMA per draw instead of multiplying.
    """
    # Through int64 (exact below 2**53): x86 converts double <-> int64 in one
    # instruction, double <-> uint64 in a branchy sequence.
    return key + np.uint64(np.int64(counter)) * GAMMA


@njit(**JIT)
def uniform_from_weyl(weyl):
    """The uniform number in [-1, 1) for a Weyl-sequence value."""
    z = mix64(weyl)
    return float(np.int64(z >> _S11)) * _TWO_POW_M52 - 1.0


@njit(**JIT)
def uniform(key, counter):
    """The ``counter``-th number of the stream ``key``: uniform in [-1, 1).

    ``counter`` is a float holding an integer in [0, 2**53). Mean 0, variance
    1/3, 53-bit resolution.
    """
    return uniform_from_weyl(weyl_state(key, counter))


def seed_from_option(seed: int) -> float:
    """A ``seed`` option as the float the kernels store: its low 32 bits, exactly.

    Control thread only.
    """
    return float(int(seed) & 0xFFFFFFFF)


def _reference_mix64(z: int) -> int:
    z = ((z ^ (z >> 30)) * _MUL1_INT) & _MASK64
    z = ((z ^ (z >> 27)) * _MUL2_INT) & _MASK64
    return z ^ (z >> 31)


def uniform_block(seed: int, first: int, count: int) -> np.ndarray:
    """``count`` numbers of the stream ``seed`` from counter ``first`` on, as the
    kernels draw them (NumPy's uint64 arrays wrap like the compiled code).

    Control thread only (allocates).
    """
    with np.errstate(over="ignore"):
        key = _reference_mix64((int(seed) + _KEY_SALT_INT) & _MASK64)
        counters = (np.arange(count, dtype=np.uint64) + np.uint64(first)) & np.uint64(
            _MASK64
        )
        z = np.uint64(key) + counters * GAMMA
        z = (z ^ (z >> _S30)) * _MUL1
        z = (z ^ (z >> _S27)) * _MUL2
        z ^= z >> _S31
    return (z >> _S11).astype(np.float64) * _TWO_POW_M52 - 1.0


def reference_uniform(seed: int, counter: int) -> float:
    """Plain-Python model of ``uniform(stream_key(seed), counter)`` (for tests).

    >>> reference_uniform(0, 0) == reference_uniform(0, 0)
    True
    >>> -1.0 <= reference_uniform(1, 2) < 1.0
    True
    """
    key = _reference_mix64((seed + _KEY_SALT_INT) & _MASK64)
    z = _reference_mix64((key + counter * _GAMMA_INT) & _MASK64)
    return (z >> 11) * _TWO_POW_M52 - 1.0
