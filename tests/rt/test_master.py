"""The master bus holds its true-peak ceiling on stress signals, measured 4x
oversampled (engine.analysis)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.analysis import true_peak_dbtp
from engine.graph import Graph
from engine.rt.engine import Engine

RATE = 48000


def squares() -> Graph:
    g = Graph()
    sq = g.node("square", frequency_hz=[997.0, 5000.0], amplitude=1.0)
    g.output(g.node("pan", sq, pan=[-0.2, 0.2], name="p"))
    return g


def loud_noise() -> Graph:
    g = Graph()
    noise = g.node("white_noise", voices=4, amplitude=1.0)
    g.output(g.node("gain", g.node("pan", noise, pan=[-1, -0.3, 0.3, 1]), gain_db=20.0))
    return g


def intersample() -> Graph:
    # fs/4 at 45 degrees: samples at +-0.707 of a sine whose peaks fall between them.
    g = Graph()
    g.output(
        g.node("sine", frequency_hz=RATE / 4, amplitude=1.41, name="s", phase=0.125)
    )
    return g


@pytest.mark.parametrize("builder", [squares, loud_noise, intersample])
@pytest.mark.parametrize("ceiling_dbtp", [-1.0, -6.0])
def test_output_true_peak_stays_under_the_ceiling(builder, ceiling_dbtp: float) -> None:
    engine = Engine(sample_rate=RATE, ceiling_dbtp=ceiling_dbtp)
    engine.load(builder(), fade_s=0.001)
    x = engine.render(2 * RATE)
    assert np.all(np.isfinite(x))
    assert true_peak_dbtp(x) <= ceiling_dbtp + 0.1
    # And it is limited, not muted: the loud part sits close to the ceiling.
    assert true_peak_dbtp(x[RATE:]) > ceiling_dbtp - 3.0
