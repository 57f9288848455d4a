"""The scene player on a live stream (JACK dummy server, the real @cfunc
callback): a scene switch, a saved edit (hot reload) and a broken edit, while
playing, without an underflow after the warm-up."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from polling import wait_for

from engine.rt.engine import Engine
from engine.rt.live import LivePlayer
from engine.rt.stats import StatsSnapshot, host_steal_ms
from engine.scenes.library import find_scene
from engine.scenes.player import ScenePlayer

RATE = 48000
STRICT_RT = os.environ.get("SOUNDSCAPE_STRICT_RT") == "1"
MAX_UNDERFLOW_RATIO = 0.0 if STRICT_RT else 0.01  # underflows / callbacks
BLOCK = 128
WARMUP_S = 0.5
LOAD_TIMEOUT_S = 20.0  # a switch measures and compiles: seconds when busy
GAME = Path(__file__).parent / "data" / "game.yaml"


def _switch_and_reload(tmp_path: Path) -> tuple[StatsSnapshot, float, list[str]]:
    """One run: (its live stats, host steal ms, errors reported)."""
    tmp_path.mkdir()
    rain = tmp_path / "rain.yaml"
    rain.write_text(find_scene("rain").read_text())
    errors: list[str] = []
    engine = Engine(sample_rate=RATE, seed=3)
    # Loudness trims are measured by offline renders (seconds for an edited
    # file, tests/scenes/test_player.py covers them); here only the switch.
    player = ScenePlayer(
        engine, lookahead_s=0.05, hold_loudness=False, on_error=errors.append
    )
    player.load(GAME)
    live = LivePlayer(engine, block_size=BLOCK)
    live.start()
    try:
        time.sleep(WARMUP_S)
        steal_before = host_steal_ms()
        warm = live.snapshot()
        fades = engine.fades_done
        player.load(rain, fade_s=1.0)  # scene switch: measured, compiled, faded
        assert wait_for(lambda: engine.fades_done > fades, timeout_s=LOAD_TIMEOUT_S)
        player.set_input("intensity", 0.9)
        player.watch(interval_s=0.1)
        # A saved edit crossfades in (the watcher measures and compiles it).
        time.sleep(0.3)
        rain.write_text(rain.read_text().replace("gain_db: -10", "gain_db: -14"))
        assert wait_for(lambda: engine.fades_done > fades + 1, timeout_s=LOAD_TIMEOUT_S)
        assert player.scene["layers"]["roof"]["gain_db"] == -14
        # A broken edit is reported and the edited version keeps playing.
        time.sleep(0.3)
        rain.write_text(rain.read_text().replace("texture: rain", "texture: rian"))
        assert wait_for(lambda: bool(errors), timeout_s=LOAD_TIMEOUT_S)
        time.sleep(0.5)
        end = live.snapshot()
        player.stop_watching()
    finally:
        live.stop()
    run = end.since(warm)
    assert run.frames_mismatches == 0
    assert player.status()["scene"] == "rain"
    steal_ms = host_steal_ms() - steal_before
    return run, steal_ms, errors


def test_scene_switch_and_hot_reload_while_playing_live(
    jack_server: str, tmp_path: Path, allowed_overruns
) -> None:
    runs = []
    # With SOUNDSCAPE_STRICT_RT=1 (bare metal) the bar is 0 underflows. On
    # the nested 2-vCPU CI VM an idle jackd dummy with nothing to switch loses
    # a callback every few seconds (measured: 1 in 2 of 3 s windows), so there
    # the bar is tests/rt/test_live.py's: at most 1 % of the callbacks, and a
    # run over it is tried once more. A callback that waited for the loader
    # (a lock, the GIL, a compile) would lose dozens in a row and still fail.
    for attempt in range(2):
        run, steal_ms, errors = _switch_and_reload(tmp_path / str(attempt))
        assert len(errors) == 1 and "did you mean 'rain'" in errors[0], errors
        assert run.callbacks > 100
        runs.append(
            (run.callbacks, run.output_underflows, run.cpu_over_budget, steal_ms)
        )
        # No callback's own CPU time overran its frames while the scene
        # switched and reloaded: the loader never made the callback slow.
        if (
            run.output_underflows <= MAX_UNDERFLOW_RATIO * run.callbacks
            and run.cpu_over_budget == 0
        ):
            return
        # Over the bar while the host took no CPU from the VM, or overruns
        # beyond what its steal explains (tests/conftest.py): the engine's.
        assert run.cpu_over_budget <= allowed_overruns(steal_ms), runs
        assert steal_ms > 0.0 and not STRICT_RT, (
            f"(callbacks, underflows, overruns, host steal ms): {runs}"
        )
    pytest.skip(
        "the host took CPU from this VM in both runs, so their underflows say "
        "nothing about the engine (under heavy steal a callback's CPU clock "
        "may include some of the host's time) "
        f"(callbacks, underflows, overruns, host steal ms): {runs}"
    )
