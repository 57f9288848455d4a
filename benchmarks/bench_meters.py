"""What the level meters cost: one meter node alone, its cost per sample at
block sizes 32 to 2048, and each shipped scene's CPU per audio second with
its meters (one per layer copy, one on the master) against the same scene
built without them.

    python benchmarks/bench_meters.py [--seconds 20] [--no-scenes]
        [--json benchmarks/out/meters.json]

The two versions of a scene are loaded by the scene player into two engines
(seed 1, 48 kHz, 128-frame blocks); each one's scene program and master
program are timed block after block in a jitted loop (as
``bench_engine.time_program``), the two versions in twenty turns, and the
fastest turn of each is its figure (the machine is shared: this keeps other
load out of both). The whole engines' output is compared too: the meters
only look, so it must be the same to the bit.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_engine import _compiled_block_loop, time_program
from benchmarks.report import machine, write_json

RATE = 48000
BLOCK = 128


def meter_node_cost(seconds: float) -> dict[str, dict]:
    """CPU of one meter node on white noise, mono and stereo, against a
    plain ``gain`` (the cheapest node that also copies its input) and a
    program of the input alone (the interpreter's per-block work)."""
    from engine.dsp.layout import INFO_IN_SLOT
    from engine.graph import Graph, compile_graph

    rng = np.random.default_rng(0)
    rows = {}
    for label, node, channels in [
        ("input mono", None, 1),
        ("input stereo", None, 2),
        ("meter mono", "meter", 1),
        ("meter stereo", "meter", 2),
        ("gain mono", "gain", 1),
        ("gain stereo", "gain", 2),
    ]:
        g = Graph()
        src = g.input(channels, name="src")
        # The input alone is the baseline: the interpreter's own per-block work.
        g.output(src if node is None else g.node(node, src, name="node"))
        program = compile_graph(g, sample_rate=RATE, max_block_size=BLOCK)
        slot = int(program.info[INFO_IN_SLOT])
        program.bufs[slot : slot + channels, :BLOCK] = 0.25 * rng.standard_normal(
            (channels, BLOCK)
        )
        rows[label] = time_program(program, seconds, repeats=5)
    return rows


def meter_cost_by_block(
    seconds: float, blocks: tuple[int, ...] = (32, 128, 512, 2048), turns: int = 5
) -> dict[str, dict[str, float]]:
    """The meter's own time per sample (ns) at each block size, mono and
    stereo: a program of the input and a meter against the input alone, in
    turns, the fastest turn of each. Its per-block work (clearing and
    summing its lanes, two factors) shows at small blocks."""
    import time

    from engine.dsp.layout import INFO_IN_SLOT
    from engine.graph import Graph, compile_graph

    block_loop = _compiled_block_loop()
    rng = np.random.default_rng(0)
    rows: dict[str, dict[str, float]] = {}
    for channels in (1, 2):
        programs = {}
        for node in (None, "meter"):
            g = Graph()
            src = g.input(channels, name="src")
            g.output(src if node is None else g.node(node, src, name="node"))
            program = compile_graph(g, sample_rate=RATE, max_block_size=max(blocks))
            slot = int(program.info[INFO_IN_SLOT])
            program.bufs[slot : slot + channels] = 0.25 * rng.standard_normal(
                (channels, program.bufs.shape[1])
            )
            programs[node] = program
        row = {}
        for block in blocks:
            n_blocks = max(1, round(seconds * RATE / block))
            times = np.empty(n_blocks, dtype=np.int64)
            best = dict.fromkeys(programs, float("inf"))
            for _ in range(turns):
                for node, program in programs.items():
                    block_loop(program.arrays, float(RATE), block, times[:4])
                    cpu0 = time.thread_time()
                    block_loop(program.arrays, float(RATE), block, times)
                    best[node] = min(best[node], time.thread_time() - cpu0)
            frames = n_blocks * block * channels
            row[str(block)] = round(1e9 * (best["meter"] - best[None]) / frames, 3)
        rows["mono" if channels == 1 else "stereo"] = row
    return rows


def scene_cost(name: str, seconds: float, rounds: int = 20) -> dict:
    """A shipped scene with and without meters, rendered in turns."""
    from engine.dsp.layout import I_VOICES
    from engine.rt.engine import Engine, master_graph
    from engine.scenes import format as scene_format
    from engine.scenes.library import find_scene
    from engine.scenes.player import ScenePlayer

    path = find_scene(name)
    engines = {}
    meters = {}
    original = scene_format.build_graph
    for with_meters in (True, False):
        scene_format.build_graph = functools.partial(original, meters=with_meters)
        try:
            engine = Engine(sample_rate=RATE, seed=1, max_block_size=BLOCK)
            engine.master = engine.compile(master_graph(meter=with_meters))
            player = ScenePlayer(engine, on_error=print)
            player.load(path, fade_s=0.0)
        finally:
            scene_format.build_graph = original
        assert engine.current is not None
        kind = "with" if with_meters else "without"
        meters[kind] = [
            int(engine.current.instr[i, I_VOICES])
            for i, node_type in enumerate(engine.current.node_types)
            if node_type == "meter"
        ]
        engines[kind] = engine
        engine.render(RATE, block_size=BLOCK)  # warm
    # The sound: the whole engine (events, crossfade, master, guard), before
    # the timing below runs the programs on their own.
    identical = all(
        np.array_equal(
            engines["with"].render(RATE, block_size=BLOCK),
            engines["without"].render(RATE, block_size=BLOCK),
        )
        for _ in range(3)
    )
    # CPU: the scene's and the master's programs, block after block in one
    # jitted loop (no Python between blocks, as in the callback), the two
    # versions in turns; the fastest turn of each counts, so load from the
    # rest of the machine (it is shared) counts against neither.
    best = dict.fromkeys(engines, float("inf"))
    for turn in range(rounds):
        order = list(engines) if turn % 2 == 0 else list(engines)[::-1]
        for kind in order:
            engine = engines[kind]
            assert engine.current is not None
            spent = 0.0
            for program in (engine.current, engine.master):
                spent += time_program(program, seconds / rounds, repeats=1)[
                    "cpu_ms_per_audio_s"
                ]
            best[kind] = min(best[kind], spent)
    return {
        # Channels of each meter: the layers' and the master's (stereo).
        "meter_channels": [*meters["with"], 2],
        "cpu_ms_per_audio_s_with": round(best["with"], 3),
        "cpu_ms_per_audio_s_without": round(best["without"], 3),
        "cost_percent": round(
            100.0 * (best["with"] - best["without"]) / best["without"], 2
        ),
        "identical_output": identical,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--node-seconds", type=float, default=5.0)
    parser.add_argument("--scenes", nargs="*", default=None)
    parser.add_argument("--no-scenes", action="store_true", help="node rows only")
    parser.add_argument("--json", default=str(ROOT / "benchmarks/out/meters.json"))
    args = parser.parse_args()

    import numba

    from engine.rt.stats import host_steal_ms
    from engine.scenes.library import scene_files

    steal_at_start_ms = host_steal_ms()
    results: dict = {
        "machine": machine(numba=numba.__version__, numpy=np.__version__),
        "sample_rate": RATE,
        "block_size": BLOCK,
    }
    nodes = meter_node_cost(args.node_seconds)
    results["nodes"] = nodes
    print(f"{'node':<14} {'ms/audio s':>10} {'own':>7} {'p99 us':>8}")
    for label, r in nodes.items():
        base = nodes[f"input {label.split()[-1]}"]["cpu_ms_per_audio_s"]
        r["own_ms_per_audio_s"] = r["cpu_ms_per_audio_s"] - base
        print(
            f"{label:<14} {r['cpu_ms_per_audio_s']:>10.4f} "
            f"{r['own_ms_per_audio_s']:>7.4f} {r['block_us_p99']:>8.2f}"
        )
    by_block = meter_cost_by_block(min(args.node_seconds, 2.0))
    results["meter_ns_per_sample_by_block"] = by_block
    print(f"\n{'meter ns/sample':<16}" + "".join(f"{b:>8}" for b in by_block["mono"]))
    for label, row in by_block.items():
        print(f"{label:<16}" + "".join(f"{v:>8.3f}" for v in row.values()))
    if args.no_scenes:
        results["host_steal_ms"] = round(host_steal_ms() - steal_at_start_ms, 1)
        print(f"host steal during the run: {results['host_steal_ms']} ms")
        write_json(args.json, results)
        return 0

    scenes = {}
    for name in args.scenes or scene_files():
        scenes[name] = scene_cost(name, args.seconds)
    results["scenes"] = scenes
    # The meters' own cost, from the node rows: steadier than the difference
    # of two whole scenes on a shared machine.
    own = {
        1: nodes["meter mono"]["own_ms_per_audio_s"],
        2: nodes["meter stereo"]["own_ms_per_audio_s"],
    }
    print(
        f"\n{'scene':<12} {'meters':>6} {'with ms/s':>10} {'without':>8} "
        f"{'cost %':>7} {'estimate %':>10} {'same audio':>10}"
    )
    for name, r in scenes.items():
        estimate_ms = sum(own[min(c, 2)] * max(1, c / 2) for c in r["meter_channels"])
        r["estimated_cost_percent"] = round(
            100.0 * estimate_ms / r["cpu_ms_per_audio_s_without"], 2
        )
        print(
            f"{name:<12} {len(r['meter_channels']):>6} "
            f"{r['cpu_ms_per_audio_s_with']:>10.2f} "
            f"{r['cpu_ms_per_audio_s_without']:>8.2f} {r['cost_percent']:>+7.2f} "
            f"{r['estimated_cost_percent']:>+10.2f} {r['identical_output']!s:>10}"
        )
    results["host_steal_ms"] = round(host_steal_ms() - steal_at_start_ms, 1)
    print(f"host steal during the run: {results['host_steal_ms']} ms")
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
