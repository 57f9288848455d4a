"""Engine benchmark: CPU per audio second per node type and for four patches,
per-block latency, cold compile, cached start, peak memory, and scsynth beside us.

    python benchmarks/bench_engine.py [--seconds 20] [--json benchmarks/out/engine.json]
    python benchmarks/bench_engine.py --first-audio-only [--repeats 5]

Prints a table and writes JSON. Patches (48 kHz, stereo out):

- P1: 64 sines 100-3300 Hz, summed
- P2: 16 white noises, each through a resonant low-pass, cutoffs 200-3200 Hz
- P3: pink noise through the reverb
- P4: 32 band-limited saws, each through a Moog-style ladder

Where ``scsynth`` is installed the same patches are rendered by it in NRT mode
(benchmarks/scsynth_ref.py) and the ratio is printed (< 1: we are cheaper).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import write_json

RATE = 48000
BLOCK = 128


def patch_graph(name: str):
    from engine.graph import Graph

    g = Graph()
    if name == "P1":
        sines = g.node(
            "sine", frequency_hz=np.linspace(100, 3300, 64), amplitude=1 / 64
        )
        g.output(g.node("mix", sines))
    elif name == "P2":
        noise = g.node("white_noise", voices=16, amplitude=0.25)
        lp = g.node("rlpf", noise, cutoff_hz=np.linspace(200, 3200, 16), q=5.0)
        g.output(g.node("mix", lp, gain_db=-12.0))
    elif name == "P3":
        pink = g.node("pink_noise", amplitude=0.3)
        g.output(g.node("reverb", pink, decay_s=3.0, mix=0.33))
    elif name == "P4":
        saws = g.node("saw", frequency_hz=np.geomspace(55, 880, 32), amplitude=1 / 32)
        lp = g.node("ladder", saws, cutoff_hz=1200.0, resonance=0.3)
        g.output(g.node("mix", lp))
    else:
        raise ValueError(name)
    return g


PATCHES = {
    "P1": "64 sines 100-3300 Hz summed",
    "P2": "16 white noises -> resonant low-pass",
    "P3": "pink noise -> reverb",
    "P4": "32 saws -> Moog ladder",
}


_block_loop = None


def _compiled_block_loop():
    """A jitted loop that renders block after block and times each one, so no
    Python runs between blocks (as in the live callback). Built on first use and
    not cached: it must always match the kernels it links."""
    global _block_loop
    if _block_loop is None:
        from numba import njit

        from engine.dsp.interpreter import render_program
        from engine.rt.clock import rt_now_ns

        @njit(nogil=True)
        def block_loop(program, sample_rate, block_size, times_ns):
            for k in range(times_ns.size):
                t0 = rt_now_ns()
                render_program(program, sample_rate, block_size)
                times_ns[k] = rt_now_ns() - t0

        _block_loop = block_loop
    return _block_loop


def time_program(program, seconds: float, repeats: int = 5) -> dict:
    """Render ``seconds`` block by block, ``repeats`` times: CPU per audio second
    from the fastest repeat (as scsynth_ref does for scsynth, so interference
    from the rest of the machine counts against neither), block times from all."""
    block_loop = _compiled_block_loop()
    arrays = program.arrays
    n_blocks = int(seconds * RATE / BLOCK)
    times = np.empty((repeats, n_blocks), dtype=np.int64)
    block_loop(arrays, float(RATE), BLOCK, times[0, :8])  # warm caches
    cpu = []
    for r in range(repeats):
        cpu0 = time.thread_time()
        block_loop(arrays, float(RATE), BLOCK, times[r])
        cpu.append(time.thread_time() - cpu0)
    audio_s = n_blocks * BLOCK / RATE
    budget_us = 1e6 * BLOCK / RATE
    return {
        "cpu_ms_per_audio_s": 1000 * min(cpu) / audio_s,
        "cpu_ms_per_audio_s_median": 1000 * float(np.median(cpu)) / audio_s,
        "block_us_p50": float(np.percentile(times, 50)) / 1000,
        "block_us_p99": float(np.percentile(times, 99)) / 1000,
        "block_us_max": float(times.max()) / 1000,
        "block_budget_us": budget_us,
        "realtime_factor": audio_s / max(min(cpu), 1e-9),
    }


# Extra per-node rows: nodes whose defaults leave their costly path idle, and
# settings some nodes need to run as they are used (a chord has 4 notes; the
# sample node reads a 10 s stereo noise file, made when the benchmark runs).
NODE_VARIANTS = {
    "bands animated": ("bands", {"gain_1khz_db": 6.0, "animate_db": 6.0}),
    "grains 200/s": ("grains", {"rate_hz": 200.0, "duration_ms": 40.0}),
    "sample granular": ("sample", {"mode": "granular"}),
    "meter stereo": ("meter", {"voices": 2}),
}
NODE_SETTINGS = {"chords": {"voices": 4}}


def node_scenarios() -> dict[str, object]:
    """One instance of each node type, fed by a white-noise input buffer, and
    the ``NODE_VARIANTS``."""
    from engine.dsp.layout import INFO_IN_SLOT
    from engine.dsp.nodes import node_types
    from engine.graph import Graph, compile_graph

    types = node_types()
    sample_path = _bench_sample_file()
    rows = [
        (name, name, dict(NODE_SETTINGS.get(name, {})))
        for name in sorted(types)
        if name != "input"
    ]
    rows += [(label, name, dict(kw)) for label, (name, kw) in NODE_VARIANTS.items()]
    programs = {}
    rng = np.random.default_rng(0)
    for label, name, extra in rows:
        spec = types[name]
        if name == "sample":
            extra["path"] = sample_path
        g = Graph()
        voices = extra.get("voices", spec.fixed_voices or 1)
        inputs = {}
        if spec.inputs:
            src = g.input(voices, name="src")
            inputs[spec.inputs[0]] = src
        node = g.node(name, name="node", **inputs, **extra)
        g.output(node if spec.output_width(voices) <= 2 else g.node("mix", node))
        program = compile_graph(g, sample_rate=RATE, max_block_size=BLOCK)
        in_slot = int(program.info[INFO_IN_SLOT])
        if in_slot >= 0:
            program.bufs[in_slot : in_slot + voices, :BLOCK] = (
                0.25 * rng.standard_normal((voices, BLOCK))
            )
        programs[label] = program
    return programs


def _bench_sample_file() -> str:
    """A 10 s stereo noise WAV in a temporary directory, for the sample node."""
    import atexit
    import shutil

    import soundfile

    folder = tempfile.mkdtemp(prefix="bench-sample-")
    atexit.register(shutil.rmtree, folder, True)
    path = Path(folder) / "noise.wav"
    noise = 0.1 * np.random.default_rng(1).standard_normal((10 * RATE, 2))
    soundfile.write(path, noise, RATE)
    return str(path)


def cold_and_cached_start() -> dict:
    """Cold compile (empty Numba cache) and cached start, each in a new process."""
    code = (
        "import time; t0=time.perf_counter();"
        "from engine.rt.engine import Engine; from engine.demos import DEMOS;"
        "import engine.rt.callback;"
        "e=Engine(); e.load(DEMOS['focus']()); e.render(128);"
        "print(time.perf_counter()-t0)"
    )
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_CACHE_DIR": cache}

        def run_s() -> float:
            t0 = time.perf_counter()
            subprocess.run(
                [sys.executable, "-c", code], env=env, check=True, capture_output=True
            )
            return time.perf_counter() - t0

        cold_s = run_s()
        cached_s = min(run_s() for _ in range(3))
    return {"cold_compile_s": cold_s, "cached_start_to_first_block_s": cached_s}


_FIRST_AUDIO = (
    "import sys, time; t0=float(sys.argv[1]);"
    "from engine.rt.engine import Engine; from engine.demos import DEMOS;"
    "from engine.rt.live import LivePlayer;"
    "e=Engine(); e.load(DEMOS['focus']()); p=LivePlayer(e, block_size=128); p.start()\n"
    "while p.snapshot().callbacks == 0: time.sleep(0.0005)\n"
    "print(time.time()-t0); time.sleep(2.0); p.stop()\n"
    "import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    "status = dict(l.split(':', 1) for l in open('/proc/self/status'))\n"
    "rollup = dict(l.split(':', 1) for l in list(open('/proc/self/smaps_rollup'))[1:])\n"
    "print(int(status['RssShmem'].split()[0]), int(rollup['Pss'].split()[0]))"
)
# Numba imports scipy.linalg when it is installed (0.3 s here). The tests need
# scipy, so the dev environment has it; an install of the engine alone does not.
_WITHOUT_SCIPY = "import sys; sys.modules['scipy'] = None\n"


def _child_env(server_name: str) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "JACK_DEFAULT_SERVER": server_name,
        "JACK_NO_START_SERVER": "1",
    }
    # An installed engine has its bytecode compiled (pip does it at install);
    # a sandbox that forbids writing it would have every start recompile our
    # ~60 modules from source (0.1-0.2 s that no user pays).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def first_audio(repeats: int = 3) -> dict:
    """Process start to the first live callback under a private JACK dummy server
    (best of ``repeats``), with and without scipy importable, and the peak RSS of
    a process that has played the demo for two seconds (with the part of it
    that is the JACK server's shared memory, and its PSS); then the same for
    ``soundscape play focus`` (a scene with a model) through the CLI."""
    from engine.rt.audio_io import JackServer

    if not JackServer.available():
        return {}
    results: dict = {}
    with JackServer(sample_rate=RATE, period_frames=BLOCK) as server:
        env = _child_env(server.name)
        for label, code in (
            ("", _FIRST_AUDIO),
            ("_without_scipy", _WITHOUT_SCIPY + _FIRST_AUDIO),
        ):
            starts, rss, shm, pss = [], [], [], []
            for _ in range(repeats):
                out = subprocess.run(
                    [sys.executable, "-c", code, repr(time.time())],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=120,
                )
                first_audio_s, rss_kb, shm_pss_kb = out.stdout.strip().splitlines()[-3:]
                starts.append(float(first_audio_s))
                rss.append(int(rss_kb) / 1024)
                shm.append(int(shm_pss_kb.split()[0]) / 1024)
                pss.append(int(shm_pss_kb.split()[1]) / 1024)
            results[f"process_start_to_first_audio_s{label}"] = min(starts)
            results[f"playing_peak_rss_mb{label}"] = max(rss)
            results[f"playing_jack_shm_mb{label}"] = max(shm)
            results[f"playing_pss_mb{label}"] = max(pss)
        results.update(play_first_audio(env, "focus", repeats))
    return results


def play_first_audio(env: dict, scene: str, repeats: int) -> dict:
    """``soundscape play SCENE`` (no OSC) in a new process, best of ``repeats``:
    process start to the first live callback, CPU seconds by then, whether
    onnxruntime was imported by then, and the peak RSS after 2 s."""
    probe = str(ROOT / "benchmarks" / "first_audio_probe.py")
    runs = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, probe, repr(time.time()), "play", scene]
            + ["--seconds", "2", "--no-osc"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    best = min(runs, key=lambda r: r["first_audio_s"])
    return {
        f"play_{scene}_first_audio_s": best["first_audio_s"],
        f"play_{scene}_cpu_s_at_first_audio": best["cpu_s"],
        f"play_{scene}_onnxruntime_before_first_audio": any(
            r["onnxruntime_imported"] for r in runs
        ),
        f"play_{scene}_peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        f"play_{scene}_jack_shm_mb": max(r["jack_shm_mb"] for r in runs),
        f"play_{scene}_pss_mb": max(r["pss_mb"] for r in runs),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--node-seconds", type=float, default=5.0)
    parser.add_argument("--json", default=str(ROOT / "benchmarks/out/engine.json"))
    parser.add_argument("--no-scsynth", action="store_true")
    parser.add_argument("--no-start", action="store_true", help="skip start-up runs")
    parser.add_argument(
        "--first-audio-only",
        action="store_true",
        help="only the live start-up runs (first audio, peak RSS): no compile, "
        "no nodes, no patches",
    )
    parser.add_argument("--repeats", type=int, default=3, help="start-up runs each")
    args = parser.parse_args()
    if args.first_audio_only:
        start = first_audio(args.repeats)
        for key, value in start.items():
            print(f"{key}: {round(value, 3) if isinstance(value, float) else value}")
        write_json(args.json, {"start": start})
        return 0

    import numba

    from engine.graph import compile_graph

    machine = {
        "python": platform.python_version(),
        "numba": numba.__version__,
        "numpy": np.__version__,
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
    }
    print(f"machine: {machine}")
    results: dict = {"machine": machine, "sample_rate": RATE, "block_size": BLOCK}

    start = {} if args.no_start else cold_and_cached_start()
    if not args.no_start:
        start.update(first_audio(args.repeats))
    results["start"] = start

    nodes = {}
    for name, program in node_scenarios().items():
        nodes[name] = time_program(program, args.node_seconds, repeats=3)
    results["nodes"] = nodes
    print(f"\n{'node':<18} {'ms/audio s':>10} {'p99 us':>8} {'max us':>8}")
    for name, r in nodes.items():
        print(
            f"{name:<18} {r['cpu_ms_per_audio_s']:>10.3f} {r['block_us_p99']:>8.1f} "
            f"{r['block_us_max']:>8.1f}"
        )

    reference = {}
    if not args.no_scsynth:
        try:
            from benchmarks.scsynth_ref import render_nrt, scsynth_available
        except ImportError:
            scsynth_available = None  # type: ignore[assignment]
        if scsynth_available is not None and scsynth_available():
            for patch in PATCHES:
                reference[patch] = render_nrt(patch, seconds=args.seconds)

    patches = {}
    for patch, title in PATCHES.items():
        program = compile_graph(
            patch_graph(patch), sample_rate=RATE, max_block_size=BLOCK
        )
        r = time_program(program, args.seconds)
        r["title"] = title
        if patch in reference:
            sc = reference[patch]["cpu_ms_per_audio_s"]
            r["scsynth_cpu_ms_per_audio_s"] = sc
            r["ratio_to_scsynth"] = r["cpu_ms_per_audio_s"] / sc if sc > 0 else None
        patches[patch] = r
    results["patches"] = patches
    # This process holds every benchmark program at once: an upper bound.
    results["benchmark_peak_rss_mb"] = (
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )

    print(
        f"\n{'patch':<5} {'what':<38} {'ms/audio s':>10} {'scsynth':>8} {'ratio':>6} "
        f"{'p50 us':>7} {'p99 us':>7} {'max us':>7}"
    )
    for patch, r in patches.items():
        sc = r.get("scsynth_cpu_ms_per_audio_s")
        ratio = r.get("ratio_to_scsynth")
        print(
            f"{patch:<5} {r['title']:<38} {r['cpu_ms_per_audio_s']:>10.2f} "
            f"{(f'{sc:.2f}' if sc else '-'):>8} {(f'{ratio:.2f}' if ratio else '-'):>6} "
            f"{r['block_us_p50']:>7.1f} {r['block_us_p99']:>7.1f} {r['block_us_max']:>7.1f}"
        )
    print(f"\nblock budget: {1e6 * BLOCK / RATE:.0f} us at {BLOCK} frames, {RATE} Hz")
    for key, value in start.items():
        print(f"{key}: {value if value is None else round(value, 3)}")
    print(f"benchmark process peak RSS: {results['benchmark_peak_rss_mb']:.0f} MB")

    write_json(args.json, results)
    return 0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    sys.exit(main())
