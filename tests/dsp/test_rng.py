"""The counter-based generator: compiled code against the plain-Python model,
range and moments, and independence of seeds, counters and voices."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from engine.dsp.rng import (
    COUNTER_LIMIT,
    STREAM_STRIDE,
    reference_uniform,
    seed_from_option,
    stream_key,
    uniform,
    uniform_block,
)


@njit(cache=False)
def _draw(seed, first, count):
    key = stream_key(seed)
    out = np.empty(count)
    for i in range(count):
        out[i] = uniform(key, first + i)
    return out


@pytest.mark.parametrize(
    ("seed", "first"),
    [(0, 0), (1, 0), (2**32 - 1, 12345), (987654321, int(STREAM_STRIDE) * 7 - 3)],
)
def test_compiled_matches_plain_python_model(seed: int, first: int) -> None:
    compiled = _draw(float(seed), float(first), 64)
    model = [reference_uniform(seed, first + i) for i in range(64)]
    vectorised = uniform_block(seed, first, 64)
    assert np.array_equal(compiled, model)
    assert np.array_equal(vectorised, model)


def test_counter_near_its_limit_is_exact() -> None:
    # The largest counters a float64 state slot holds exactly still work.
    first = int(COUNTER_LIMIT) - 8
    compiled = _draw(5.0, float(first), 8)
    assert np.array_equal(compiled, [reference_uniform(5, first + i) for i in range(8)])


def test_uniform_range_and_moments() -> None:
    x = _draw(42.0, 0.0, 1_000_000)
    assert x.min() >= -1.0
    assert x.max() < 1.0
    assert abs(x.mean()) < 3e-3  # sigma of the mean: 5.8e-4
    assert x.var() == pytest.approx(1.0 / 3.0, rel=5e-3)
    # Flat histogram: 20 bins, each within 3% of n/20.
    counts, _ = np.histogram(x, bins=20, range=(-1.0, 1.0))
    assert np.all(np.abs(counts / (len(x) / 20) - 1.0) < 0.03)


def test_neighbouring_seeds_counters_and_voices_are_uncorrelated() -> None:
    n = 200_000
    base = _draw(1.0, 0.0, n)
    others = {
        "next seed": _draw(2.0, 0.0, n),
        "next counter": _draw(1.0, 1.0, n),
        "voice 1": _draw(1.0, STREAM_STRIDE, n),
    }
    for name, other in others.items():
        corr = np.corrcoef(base, other)[0, 1]
        assert abs(corr) < 0.01, name  # sigma: 0.0022
    # Serial correlation within a stream.
    assert abs(np.corrcoef(base[:-1], base[1:])[0, 1]) < 0.01


def test_seed_option_keeps_low_32_bits_exactly() -> None:
    assert seed_from_option(7) == 7.0
    assert seed_from_option(2**32 + 7) == 7.0
    assert seed_from_option(-1) == float(2**32 - 1)
