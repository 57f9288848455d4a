"""Every row of the designed-behaviour table (docs/models.md), measured in
the audio of the shipped scenes rendered offline with their models: a
replayed falling-asleep heart through `sleep`, waking, the timer's end; a
stressed and a late-day listener in `focus`; a danger and an intensity ramp
in `forest`. Where a layer is measured alone, the others are muted in a
copy of the scene."""

from __future__ import annotations

import numpy as np
import pytest
from scene_audio import (  # tests/model, on the path
    RATE,
    am_depth,
    centroid_hz,
    loudness_lufs,
    modulation_speed,
    player_for,
    render,
    rms_db,
    scene_copy,
    transient_rate,
    twins,
)

from engine.sensors.heart_state import HeartTracker
from engine.sensors.hr_sim import simulate, to_samples

# A profile's minutes pass this many times faster in the replays.
SPEEDUP = 30.0


def heart_states(profile: str, seconds: float, every_s: float = 1.0) -> list:
    """The tracker's state every ``every_s`` of a simulated profile."""
    samples = list(to_samples(simulate(profile, seconds, seed=2)))
    tracker = HeartTracker(start_s=0.0)
    states, k = [], 0
    for t in np.arange(0.0, seconds, every_s):
        while k < len(samples) and samples[k].time_s <= t:
            tracker.update(samples[k])
            k += 1
        states.append(tracker.state(float(t)))
    return states


def steady_heart(profile: str) -> tuple[float, float]:
    """(bpm, RMSSD ms) after two minutes of a steady profile."""
    state = heart_states(profile, 120.0)[-1]
    return state.bpm, state.rmssd_ms


@pytest.fixture(scope="module")
def falling_asleep():
    return heart_states("falling_asleep", 1200.0)


def replay(player, states, minutes_scale: float = SPEEDUP):
    """A driver that feeds the heart states (one per profile second) and the
    sleep clock, ``SPEEDUP`` times faster than they happened."""

    def drive(t: float) -> None:
        profile_s = min(int(t * SPEEDUP), len(states) - 1)
        state = states[profile_s]
        player.set_input("heart_rate_bpm", state.bpm)
        player.set_input("hrv_rmssd_ms", state.rmssd_ms)
        player.set_input("hr_trend_bpm_per_min", state.trend_bpm_per_min)
        player.model_clock["minutes_since_start"] = t * minutes_scale / 60.0

    return drive


def test_sleep_falling_asleep_lowers_centroid_loudness_and_modulation_rate(
    tmp_path, falling_asleep
):
    seconds = len(falling_asleep) / SPEEDUP  # 20 profile minutes in 40 s
    whole = player_for(scene_copy(tmp_path, "sleep"))
    mix = render(whole, seconds, replay(whole, falling_asleep))
    waves = player_for(scene_copy(tmp_path, "sleep", only=("waves",)))
    swell = render(waves, seconds, replay(waves, falling_asleep))
    part = round(15.0 * RATE)
    early, late = slice(round(2 * RATE), round(2 * RATE) + part), slice(-part, None)
    assert centroid_hz(mix[late]) < 0.9 * centroid_hz(mix[early])
    assert loudness_lufs(mix[late]) < loudness_lufs(mix[early]) - 1.5
    assert modulation_speed(swell[late]) < 0.85 * modulation_speed(swell[early])


def test_sleep_toward_the_timers_end_darker_and_quieter(tmp_path):
    def at_minute(minute: float):
        def make(player):
            def drive(t: float) -> None:
                player.model_clock["minutes_since_start"] = minute

            return drive

        return make

    path = scene_copy(tmp_path, "sleep")
    start, end = twins(path, (at_minute(0.0), at_minute(45.0)), 12.0, 4.0)
    assert centroid_hz(end) < 0.9 * centroid_hz(start)
    assert loudness_lufs(end) < loudness_lufs(start) - 1.5


def test_sleep_waking_brings_back_a_steady_bed_not_silence(tmp_path):
    asleep = {"heart_rate_bpm": 54, "hrv_rmssd_ms": 70, "hr_trend_bpm_per_min": 0}
    awake = {"heart_rate_bpm": 72, "hrv_rmssd_ms": 35, "hr_trend_bpm_per_min": 15}

    def holding(values):
        def make(player):
            def drive(t: float) -> None:
                for name, value in values.items():
                    player.set_input(name, value)
                player.model_clock["minutes_since_start"] = 30.0

            return drive

        return make

    bed = scene_copy(tmp_path, "sleep", only=("bed",))
    bed_asleep, bed_awake = twins(bed, (holding(asleep), holding(awake)), 8.0, 4.0)
    assert rms_db(bed_awake) > rms_db(bed_asleep) + 2.0
    whole = scene_copy(tmp_path, "sleep")
    mix_asleep, mix_awake = twins(whole, (holding(asleep), holding(awake)), 24.0, 4.0)
    # Steadier: the swell moves the whole sound less, and it is no silence.
    assert modulation_speed(mix_awake) < modulation_speed(mix_asleep)
    assert loudness_lufs(mix_awake) > -45.0


def _holding(player, values):
    def drive(t: float) -> None:
        for name, value in values.items():
            player.set_input(name, value)

    return drive


def test_focus_stress_calms_the_layers_and_softens_the_entrainment(tmp_path):
    rest, stress = steady_heart("rest"), steady_heart("stress")
    assert stress[0] > rest[0] + 15 and stress[1] < rest[1] - 15

    def measure(only):
        player = player_for(scene_copy(tmp_path, "focus", only=only))
        out = []
        for bpm, rmssd in (rest, stress):
            values = {"heart_rate_bpm": bpm, "hrv_rmssd_ms": rmssd}
            out.append(render(player, 10.0, _holding(player, values))[4 * RATE :])
        return out

    rain_rest, rain_stress = measure(("rain",))
    assert rms_db(rain_stress) < rms_db(rain_rest) - 3.0
    assert centroid_hz(rain_stress) < 0.85 * centroid_hz(rain_rest)
    drone_rest, drone_stress = measure(("drone",))
    assert rms_db(drone_stress) < rms_db(drone_rest) - 3.0
    pulse_rest, pulse_stress = measure(("entrain",))
    assert am_depth(pulse_stress, 12.0) < 0.6 * am_depth(pulse_rest, 12.0)


def test_focus_low_arousal_late_in_the_day_brighter_and_more_rhythmic(tmp_path):
    calm = {"heart_rate_bpm": 58, "hrv_rmssd_ms": 45}

    def measure(only):
        player = player_for(scene_copy(tmp_path, "focus", only=only))
        out = []
        for hour in (10.0, 18.0):
            player.model_clock["time_of_day_h"] = hour
            out.append(render(player, 10.0, _holding(player, calm))[4 * RATE :])
        return out

    rain_morning, rain_evening = measure(("rain",))
    assert centroid_hz(rain_evening) > 1.05 * centroid_hz(rain_morning)
    assert transient_rate(rain_evening) > 1.2 * transient_rate(rain_morning)
    pulse_morning, pulse_evening = measure(("entrain",))
    assert am_depth(pulse_evening, 12.0) > 1.15 * am_depth(pulse_morning, 12.0)


def _ramp(player, name, seconds_to_full):
    def drive(t: float) -> None:
        player.set_input(name, min(t / seconds_to_full, 1.0))

    return drive


@pytest.mark.parametrize("model", [True, False], ids=["model", "rules-only"])
def test_forest_danger_ramp_raises_the_tension_layer_within_its_transition(
    tmp_path, model
):
    player = player_for(
        scene_copy(tmp_path, "forest", only=("dread",), model=model), state="tension"
    )
    before = render(player, 3.0)[RATE:]
    # The ramp takes 1 s; the level binding glides in 0.8 s, ticks every 50 ms.
    after = render(player, 3.0, _ramp(player, "danger", 1.0))
    settled = after[round(1.9 * RATE) :]
    rise_db = rms_db(settled) - rms_db(before)
    if model:
        assert rise_db > 4.0
    else:  # the scene's own mappings alone do not: the model makes the rise
        assert rise_db < 2.0


def test_forest_intensity_raises_tension_and_a_busier_brighter_wind(tmp_path):
    def intensity(value: float):
        def make(player):
            return _holding(player, {"danger": 0.5, "intensity": value})

        return make

    dread = scene_copy(tmp_path, "forest", only=("dread",))
    low, high = twins(dread, (intensity(0.0), intensity(1.0)), 4.0, 2.0, "tension")
    assert rms_db(high) > rms_db(low) + 1.5
    wind = scene_copy(tmp_path, "forest", only=("wind",))
    calm, busy = twins(wind, (intensity(0.0), intensity(1.0)), 20.0, 2.0, "tension")
    assert centroid_hz(busy) > 1.05 * centroid_hz(calm)
    # Density: the gusts and swells come faster (measured 1.5x over 18 s).
    assert modulation_speed(busy, 1.0) > 1.2 * modulation_speed(calm, 1.0)
