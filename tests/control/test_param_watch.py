"""Watched parameters: the ones following an input, read back from the
engine's parameter rows (target and smoothed value), their glide contracts
from the program itself, and what happens when the scene changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.control.param_watch import MAX_WATCHED, ParamWatch, WatchedParam
from engine.rt.engine import Engine
from engine.scenes.player import ScenePlayer

GAME = Path(__file__).parents[1] / "scenes" / "data" / "game.yaml"
FOLLOW = Path(__file__).parent / "data" / "follow.yaml"
FREQUENCY = "tense.tone.frequency_hz"


@pytest.fixture
def player() -> ScenePlayer:
    # hold_loudness=False fails on a scene with states (engine/scenes/player.py
    # looks up a trim it did not measure); the measured trims are cached.
    player = ScenePlayer(Engine(seed=1), on_error=print)
    player.load(GAME)
    return player


def test_the_parameters_that_follow_an_input_are_watched(player):
    watch = ParamWatch.for_player(player)
    assert watch.names == [FREQUENCY]
    assert watch.params[0].node == "tense.tone"
    assert watch.params[0].follows == "danger"


def test_targets_and_smoothed_values_come_from_the_engine(player):
    watch = ParamWatch.for_player(player)
    assert watch.read(player.engine) == {FREQUENCY: (600.0, 600.0)}
    player.set_input("danger", 1.0)
    assert watch.read(player.engine)[FREQUENCY] == (1200.0, 600.0)
    player.engine.render(4800)  # 0.1 s at 600 Hz/s: 60 Hz further
    target, smoothed = watch.read(player.engine)[FREQUENCY]
    assert target == 1200.0 and smoothed == pytest.approx(660.0)


def test_contracts_are_read_from_the_program(player):
    contracts = ParamWatch.for_player(player).contracts(player.engine)
    assert contracts[FREQUENCY]["slew_per_s"] == pytest.approx(600.0)
    assert "smoothing_s" not in contracts[FREQUENCY]
    follow = ScenePlayer(Engine(seed=1), hold_loudness=False, on_error=print)
    follow.load(FOLLOW)
    contract = ParamWatch.for_player(follow).contracts(follow.engine)
    assert contract["tone.osc.amplitude"]["smoothing_s"] == pytest.approx(0.8)


def test_a_parameter_the_new_scene_lacks_reads_as_none(player):
    watch = ParamWatch.for_player(player)
    player.engine.render(24000)  # past the first scene's fade-in
    player.load(FOLLOW, fade_s=0.0)
    assert watch.read(player.engine) == {FREQUENCY: (None, None)}


def test_no_scene_watches_nothing():
    assert ParamWatch.for_player(ScenePlayer(Engine(seed=1))).names == []


def test_the_list_is_bounded_and_says_which_one_is_too_many():
    watch = ParamWatch(
        [WatchedParam(f"a.b.p{k}", "a.b", f"p{k}") for k in range(MAX_WATCHED)]
    )
    watch.add(WatchedParam("a.b.p0", "a.b", "p0", "model"))  # replaces
    assert len(watch.params) == MAX_WATCHED
    with pytest.raises(ValueError, match="'a.b.extra' is one too many"):
        watch.add(WatchedParam("a.b.extra", "a.b", "extra"))
