"""The daemon's "silent for good" check (``engine.daemon.main``), offline on
an engine: it goes by the master meter, which saw every sample, not by the
last block; it waits for the master level at exactly 0; and a master bus
without a meter falls back to the last block. (``test_main.py`` drives the
whole daemon, sleep timer included, on a JACK server.)"""

from __future__ import annotations

from engine.control.level_meters import SILENCE_DB, MeterTaps
from engine.control.status import master_levels_dbfs
from engine.daemon.main import output_silent_for_good
from engine.graph.graph import Graph
from engine.rt.engine import Engine, master_graph

RATE = 48000
BLOCK = 128
STEP = RATE // 10  # the daemon checks every 100 ms


def _playing(amplitude: float, meter: bool = True) -> Engine:
    engine = Engine(sample_rate=RATE, seed=1)
    if not meter:
        engine.master = engine.compile(master_graph(meter=False))
    g = Graph()
    g.output(g.node("sine", name="tone", frequency_hz=1000.0, amplitude=amplitude))
    engine.load(g, fade_s=0.0)
    engine.render(RATE // 2, block_size=BLOCK)
    return engine


def _fade_out(engine: Engine) -> None:
    """As the sleep timer ends: the master level down to exactly 0, then
    the limiter's look-ahead and the DC blocker drained."""
    engine.ramp("master.volume", "level", 0.0, 0.1)
    engine.render(RATE // 2, block_size=BLOCK)


def test_silent_only_once_the_master_meter_has_fallen_to_the_floor() -> None:
    engine = _playing(0.5)
    peak_db = MeterTaps(engine.master).read()["master"][0]
    assert peak_db > -10.0
    _fade_out(engine)
    # The last block is silence already: that alone would say "asleep".
    assert master_levels_dbfs(engine, BLOCK)[0] <= SILENCE_DB
    waited_s = 0.0
    while not output_silent_for_good(engine, BLOCK):
        engine.render(STEP, block_size=BLOCK)
        waited_s += STEP / RATE
        assert waited_s < 10.0
    # The meter fell 20 dB/s from the tone's peak to -120 dB from the ramp's
    # start (the ramp falls faster), 0.5 s before the checks began; they
    # see it within one step (100 ms).
    expected_s = (peak_db - SILENCE_DB) / 20.0 - 0.5
    assert expected_s <= waited_s <= expected_s + STEP / RATE + 0.05
    assert MeterTaps(engine.master).read()["master"][0] <= SILENCE_DB


def test_a_quiet_scene_at_full_level_is_not_asleep() -> None:
    engine = _playing(0.0)
    engine.render(8 * RATE, block_size=BLOCK)
    assert MeterTaps(engine.master).read()["master"] == (SILENCE_DB, SILENCE_DB)
    assert not output_silent_for_good(engine, BLOCK)


def test_without_a_master_meter_the_last_block_decides() -> None:
    engine = _playing(0.5, meter=False)
    assert not output_silent_for_good(engine, BLOCK)  # level 1, the tone
    _fade_out(engine)
    assert output_silent_for_good(engine, BLOCK)
