"""Every shipped scene, rendered through the player: on its loudness target,
under the ceiling, finite, without clicks where it changes, and not a loop.
(The benchmark benchmarks/bench_scenes.py runs the same checks for 10 minutes.)"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.bench_scenes import repetition_peak, run_scene
from engine.scenes.library import scene_files

SHIPPED = ["focus", "deep-work", "relax", "sleep", "rain", "ocean-night", "forest"]


def test_the_promised_scenes_are_shipped() -> None:
    assert set(SHIPPED) <= set(scene_files())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scene_holds_loudness_ceiling_and_has_no_clicks(name: str) -> None:
    r = run_scene(name, 40.0)
    # Short renders put many events in little time; 10 minutes hold +-1 LU.
    assert r["loudness_lufs"] == pytest.approx(r["target_lufs"], abs=2.0)
    assert r["true_peak_dbtp"] <= -1.0 + 0.05
    assert r["nonfinite"] == 0
    assert r["clicks_at_events"] == 0
    assert r["repetition_peak"] < 0.3


def test_repetition_measure_sees_a_loop() -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal(48000)
    assert repetition_peak(a, np.roll(a, 1000)) > 0.95
    assert repetition_peak(a, rng.standard_normal(48000)) < 0.05
