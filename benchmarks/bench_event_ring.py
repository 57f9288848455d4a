"""Event ring: what timed events waiting for their frame cost the block renderer.

    python benchmarks/bench_event_ring.py [--json benchmarks/out/event_ring.json]

A 440 Hz sine, offline, 128-frame blocks at 48 kHz. N events (amplitude sets,
each on its own frame) are pumped 200 ms ahead into the ring, as the live pump
does, and 63 blocks are rendered: mean and max microseconds a block (best of
five); in the last case 8 immediate events also arrive before each block,
behind all the waiting ones. Every event splits its block, so part of the cost is the extra
segments; the rest is the audio thread taking records into its waiting table
and finding the next one due (engine/rt/ring.py).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import write_json
from engine.graph import Graph
from engine.rt.engine import Engine
from engine.rt.ring import EV_SET_NOW

RATE = 48000
BLOCK = 128
# (events waiting, frames apart, immediate events pushed before each block)
CASES = ((0, 1, 0), (500, 16, 0), (2000, 4, 0), (4000, 2, 0), (4000, 2, 8))


def tone() -> Graph:
    g = Graph()
    g.output(g.node("sine", name="tone", frequency_hz=440.0, amplitude=0.1))
    return g


def measure(n_events: int, spacing: int, immediate: int, repeats: int = 5) -> dict:
    runs = []
    for _ in range(repeats):
        engine = Engine(sample_rate=RATE)
        engine.load(tone())
        engine.render(RATE // 2)
        start = engine.frame + BLOCK
        for k in range(n_events):
            value = 0.1 + 0.0001 * (k % 7)
            engine.schedule(start + spacing * k, "tone", "amplitude", value, EV_SET_NOW)
        engine.pump(round(0.2 * RATE))
        out = np.zeros(BLOCK * 2, dtype=np.float32)
        blocks_ns = []
        for _ in range(63):
            for k in range(immediate):  # behind every waiting event
                engine.schedule(None, "tone", "amplitude", 0.1 + 0.0001 * k)
            engine.pump(0)
            started_ns = time.perf_counter_ns()
            engine.render_into(out, BLOCK)
            blocks_ns.append(time.perf_counter_ns() - started_ns)
        runs.append((float(np.mean(blocks_ns)) / 1e3, float(np.max(blocks_ns)) / 1e3))
    return {
        "events_waiting": n_events,
        "frames_apart": spacing,
        "events_per_block": BLOCK // spacing if n_events else 0,
        "immediate_per_block": immediate,
        "mean_us_per_block": round(min(r[0] for r in runs), 1),
        "max_us_per_block": round(min(r[1] for r in runs), 1),
        "budget_us": round(1e6 * BLOCK / RATE, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=str(ROOT / "benchmarks/out/event_ring.json"))
    args = parser.parse_args()
    print(f"python {platform.python_version()}, {platform.machine()}")
    rows = [measure(*case) for case in CASES]
    print(
        f"{'events waiting':>14} {'due per block':>13} {'immediate':>9} "
        f"{'mean us':>8} {'max us':>8}"
    )
    for row in rows:
        print(
            f"{row['events_waiting']:>14} {row['events_per_block']:>13} "
            f"{row['immediate_per_block']:>9} "
            f"{row['mean_us_per_block']:>8} {row['max_us_per_block']:>8}"
        )
    write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
