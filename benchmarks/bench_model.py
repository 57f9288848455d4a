"""Model benchmark: inference time per tick for each shipped model, and the
threads onnxruntime adds.

    python benchmarks/bench_model.py [--ticks 20000] [--json benchmarks/out/model.json]

For each of scenes/models/{focus,sleep,forest}.onnx, with the engine's
session options (one intra- and one inter-op thread, sequential, no
spinning):

- ``session.run``: onnxruntime alone on the preallocated [1, n] input;
- ``runner.run``: what the loop calls (state vector from names, clamping,
  output checks), inputs varied each tick;
- ``loop tick``: a whole ModelLoop tick on the shipped scene (state vector
  from the player's inputs and clock, inference, mapping, targets written
  through ScenePlayer.set_param), inputs varied each tick so targets move.

p50/p99/max in microseconds (target: p99 < 200 us). Threads are counted from
/proc/self/task (every OS thread of the process) before the session is
created, after, and after the runs: onnxruntime must add none.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import write_json

MODELS = ("focus", "sleep", "forest")
TARGET_P99_US = 200.0


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def summary_us(samples_s: list[float]) -> dict:
    us = np.array(samples_s) * 1e6
    return {
        "p50_us": round(float(np.percentile(us, 50)), 1),
        "p99_us": round(float(np.percentile(us, 99)), 1),
        "max_us": round(float(us.max()), 1),
    }


def bench_model(name: str, ticks: int, rng: np.random.Generator) -> dict:
    from engine.model.runtime import ModelRunner

    path = ROOT / "scenes" / "models" / f"{name}.onnx"
    before = os_threads()
    runner = ModelRunner(path, report=print)
    after_create = os_threads()
    contract = runner.contract
    assert contract is not None and runner.session is not None
    lows = np.array([p.minimum for p in contract.inputs])
    highs = np.array([p.maximum for p in contract.inputs])
    states = rng.uniform(lows, highs, (ticks, lows.size))
    x = runner.state_vector({})
    session, feed = runner.session, {contract.input_tensor: x}
    for _ in range(200):  # warm up
        session.run([contract.output_tensor], feed)
    bare = []
    for k in range(ticks):
        x[0] = states[k]
        start = time.perf_counter()
        session.run([contract.output_tensor], feed)
        bare.append(time.perf_counter() - start)
    named = [dict(zip(contract.input_names, row, strict=True)) for row in states]
    full = []
    for values in named:
        start = time.perf_counter()
        runner.run(values)
        full.append(time.perf_counter() - start)
    return {
        "model": name,
        "bytes": path.stat().st_size,
        "threads_before": before,
        "threads_after_session": after_create,
        "threads_after_runs": os_threads(),
        "session_run": summary_us(bare),
        "runner_run": summary_us(full),
    }


def bench_tick(name: str, ticks: int, rng: np.random.Generator) -> dict:
    from engine.rt.engine import Engine
    from engine.scenes.player import ScenePlayer

    player = ScenePlayer(Engine(seed=1), hold_loudness=False)
    player.model_clock = {"time_of_day_h": 12.0}
    player.load(name, fade_s=0.0)
    loop = player.model
    assert loop is not None
    inputs = player.scene["inputs"]
    samples = []
    for k in range(ticks):
        for input_name, spec in inputs.items():
            player.set_input(input_name, rng.uniform(spec["minimum"], spec["maximum"]))
        start = time.perf_counter()
        loop.tick(k * loop.period_frames)
        samples.append(time.perf_counter() - start)
        if k % 64 == 63:
            # Keep the engine's schedule from growing: render what was queued.
            player.engine.render(128, block_size=128)
    return summary_us(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ticks", type=int, default=20000)
    parser.add_argument("--json", default=str(ROOT / "benchmarks/out/model.json"))
    args = parser.parse_args()
    import onnxruntime

    rng = np.random.default_rng(1)
    rows = [bench_model(name, args.ticks, rng) for name in MODELS]
    for row in rows:
        row["loop_tick"] = bench_tick(row["model"], max(args.ticks // 10, 500), rng)
    results = {
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "cpu": platform.processor() or platform.machine(),
        "ticks": args.ticks,
        "target_p99_us": TARGET_P99_US,
        "models": rows,
    }
    print(
        f"python {results['python']}, onnxruntime {results['onnxruntime']}, "
        f"{args.ticks} ticks per model"
    )
    header = (
        f"{'model':<7} {'bytes':>6} {'what':<12} {'p50 us':>8} {'p99 us':>8} "
        f"{'max us':>9}  threads before/session/runs"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        threads = (
            f"{row['threads_before']}/{row['threads_after_session']}/"
            f"{row['threads_after_runs']}"
        )
        for what in ("session_run", "runner_run", "loop_tick"):
            s = row[what]
            print(
                f"{row['model']:<7} {row['bytes']:>6} {what:<12} {s['p50_us']:>8} "
                f"{s['p99_us']:>8} {s['max_us']:>9}  {threads}"
            )
    write_json(args.json, results)
    worst = max(row["runner_run"]["p99_us"] for row in rows)
    added = max(row["threads_after_runs"] - row["threads_before"] for row in rows)
    print(
        f"runner p99 worst {worst} us (target < {TARGET_P99_US:g}); "
        f"threads added by onnxruntime: {added}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
