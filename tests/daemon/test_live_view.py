"""SupervisedOutput: the statistics of the supervisor's successive live players
add up (never go backwards when one is replaced), and the timetag clock
follows whichever player plays."""

from __future__ import annotations

import time

import numpy as np

from engine.daemon.live_view import SupervisedOutput, add_snapshots
from engine.rt.stats import (
    STATS_CALLBACKS,
    STATS_LAST_CALLBACK_START_NS,
    STATS_SIZE,
    StatsSnapshot,
)


class Player:
    """The parts of a LivePlayer SupervisedOutput reads: a stats array."""

    def __init__(self) -> None:
        self.stats = type("S", (), {"array": np.zeros(STATS_SIZE, np.int64)})()

    def snapshot(self) -> StatsSnapshot:
        return StatsSnapshot.from_array(self.stats.array.copy())


class Supervisor:
    block_size = 128

    def __init__(self) -> None:
        self.player: Player | None = None


class Engine:
    sample_rate = 48000
    frame = 0


def test_counts_add_up_across_players_and_outages() -> None:
    supervisor = Supervisor()
    view = SupervisedOutput(supervisor)
    assert view.snapshot().callbacks == 0  # nothing playing yet
    first = Player()
    supervisor.player = first
    first.stats.array[STATS_CALLBACKS] = 100
    assert view.snapshot().callbacks == 100
    supervisor.player = None  # lost
    assert view.snapshot().callbacks == 100
    second = Player()
    supervisor.player = second
    second.stats.array[STATS_CALLBACKS] = 7
    assert view.snapshot().callbacks == 107
    second.stats.array[STATS_CALLBACKS] = 9
    assert view.snapshot().callbacks == 109


def test_add_snapshots_keeps_the_longest_callback_and_the_latest_times() -> None:
    done = StatsSnapshot(10, 1280, 1, 0, 0, 4, 0, 50, 900, 5000, 111, 7, 80, 400, 1, 2)
    current = StatsSnapshot(5, 640, 2, 0, 0, 0, 0, 40, 300, 2000, 222, 9, 60, 100, 0, 3)
    total = add_snapshots(done, current)
    assert (total.callbacks, total.frames, total.output_underflows) == (15, 1920, 3)
    assert total.callback_ns_max == 900 and total.callback_ns_total == 7000
    assert total.last_callback_start_ns == 222 and total.callback_ns_last == 40
    assert total.callback_cpu_ns_max == 80 and total.callback_cpu_ns_total == 500
    assert total.callback_cpu_ns_last == 9
    assert (total.cpu_over_budget, total.wall_over_budget) == (1, 5)


def test_the_clock_follows_the_playing_player_and_the_engine_without_one() -> None:
    supervisor = Supervisor()
    engine = Engine()
    view = SupervisedOutput(supervisor)
    clock = view.frame_clock(engine, latency_s=0.0)
    now = time.time()
    # No player: the engine's frame now.
    assert abs(clock.frame_at(now + 1.0) - 48000) < 48000 * 0.05
    player = Player()
    supervisor.player = player
    engine.frame = 96000 + 128
    player.stats.array[STATS_CALLBACKS] = 10
    player.stats.array[STATS_LAST_CALLBACK_START_NS] = time.monotonic_ns()
    # The engine jumped 2 s ahead of the old anchor: the clock re-anchors.
    frame = clock.frame_at(time.time())
    assert abs(frame - 96000) < 48000 * 0.05, frame
