"""Cold compile: empty Numba cache -> first block of the demo and of the
``focus`` scene, and -> the cache full; wall and CPU; and, with
``--per-kernel``, what each kernel and the entry points cost.

    python benchmarks/bench_cold_compile.py [--runs 3] [--targets demo,focus]
        [--compare /path/to/checkout-at-main] [--per-kernel]
        [--json benchmarks/out/cold_compile.json]

Each run is a new process with its own empty ``NUMBA_CACHE_DIR`` that imports
the audio callback (as ``soundscape play`` does before it loads anything),
makes an ``Engine``, loads its target (``demo``: the demo graph ``focus``;
``focus``: the shipped scene through a ``ScenePlayer``, loudness trims off so
that no measuring render runs) and renders one block: *first block* is the
wall time from the process start to there. Then it waits for the background
compile (``cold_compile.wait_for_fill``): *cache full*. Code without a
background compile (``--compare`` with session 5's) fills the cache before
its first block: there both are the same. *exit* is the process's whole wall
time; CPU is every process's user + system time (the run's and its compile
workers'), *cpu@first* the rendering process's own CPU at its first block.

``--compare`` alternates runs of this checkout and another (a worktree at
main), so both meet the same load: the 2-core VM is shared and its host
steals CPU. Each row has the load average before and after and the host's
steal during the run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import machine, write_json

_COLD = (
    "import json, resource, sys, time; t0 = time.perf_counter()\n"
    "import engine.rt.callback\n"
    "from engine.rt.engine import Engine\n"
    "e = Engine()\n"
    "if sys.argv[1] == 'demo':\n"
    "    from engine.demos import DEMOS\n"
    "    e.load(DEMOS['focus']())\n"
    "else:\n"
    "    from engine.scenes.player import ScenePlayer\n"
    "    ScenePlayer(e, hold_loudness=False).load(sys.argv[1])\n"
    "e.render(128)\n"
    "first_s = time.perf_counter() - t0\n"
    "usage = resource.getrusage(resource.RUSAGE_SELF)\n"
    "cpu_first_s = usage.ru_utime + usage.ru_stime\n"
    "from engine.dsp import cold_compile\n"
    "wait = getattr(cold_compile, 'wait_for_fill', None)\n"
    "report = wait() if wait else cold_compile.last_report\n"
    "print(json.dumps({'first_block_s': first_s, 'cpu_at_first_s': cpu_first_s,\n"
    "    'cache_full_s': time.perf_counter() - t0,\n"
    "    'compile': report.as_dict() if report else None}))\n"
)

_PER_KERNEL = (
    "import json, os, time\n"
    "from engine.dsp.cold_compile import CLAIMS_ENV, costliest_first\n"
    "os.environ[CLAIMS_ENV] = 'measuring'  # act as a worker: compile nothing yet\n"
    "t = time.process_time()\n"
    "import engine.rt.callback\n"
    "rows = [('entry points (callback, block renderer, interpreter)',"
    " time.process_time() - t)]\n"
    "from engine.dsp.dispatch import KERNEL_ARGS\n"
    "from engine.dsp.interpreter import KERNELS\n"
    "for kernel in costliest_first(KERNELS.values()):\n"
    "    t = time.process_time()\n"
    "    kernel.compile(KERNEL_ARGS)\n"
    "    rows.append((kernel.__module__.rsplit('.', 1)[-1] + '.' + kernel.__name__,"
    " time.process_time() - t))\n"
    "print(json.dumps(rows))\n"
)


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _steal_ms() -> float:
    """CPU time the host took from this VM so far (``/proc/stat``'s steal)."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
    except OSError:
        return 0.0
    return (
        int(fields[8]) * 1000.0 / os.sysconf("SC_CLK_TCK") if len(fields) > 8 else 0.0
    )


def _run(
    code: str, args: list[str], extra_env: dict[str, str], root: Path = ROOT
) -> tuple[dict | list, float, float]:
    """Run ``code`` from checkout ``root`` in a new process with an empty
    Numba cache: (its JSON output, wall s, CPU s of it and the processes it
    waited for)."""
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as cache:
        env = {
            **os.environ,
            "PYTHONPATH": str(root),
            "NUMBA_CACHE_DIR": cache,
            **extra_env,
        }
        cpu0 = _children_cpu_s()
        t0 = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", code, *args],
            env=env,
            check=True,
            capture_output=True,
            text=True,
            cwd=root,
        )
        wall_s = time.perf_counter() - t0
        cpu_s = _children_cpu_s() - cpu0
    return json.loads(done.stdout.strip().splitlines()[-1]), wall_s, cpu_s


def cold_runs(
    runs: int,
    processes: int | None,
    targets: list[str],
    checkouts: dict[str, Path],
) -> list[dict]:
    """``runs`` rounds; in each, every target with every checkout in turn
    (interleaved, so that both meet the same load); one row each."""
    env = {} if processes is None else {"SOUNDSCAPE_COMPILE_PROCESSES": str(processes)}
    rows = []
    for round_ in range(runs):
        for target in targets:
            names = list(checkouts)
            if round_ % 2:  # alternate which goes first
                names.reverse()
            for name in names:
                load_before = os.getloadavg()[0]
                steal_before = _steal_ms()
                out, wall_s, cpu_s = _run(_COLD, [target], env, checkouts[name])
                rows.append(
                    {
                        "round": round_ + 1,
                        "code": name,
                        "target": target,
                        "exit_s": wall_s,
                        "cpu_s": cpu_s,
                        "load_before": load_before,
                        "load_after": os.getloadavg()[0],
                        "steal_ms": _steal_ms() - steal_before,
                        **out,  # type: ignore[dict-item]
                    }
                )
                _print_row(rows[-1])
    return rows


def _print_row(row: dict) -> None:
    shares = ""
    if row.get("compile"):
        shares = "  ".join(
            f"{p['cpu_s']:.1f}/{p['kernels']}" for p in row["compile"]["processes"]
        )
    print(
        f"{row['round']:>3} {row['code']:<8} {row['target']:<6} "
        f"{row['first_block_s']:>7.1f} {row['cache_full_s']:>6.1f} "
        f"{row['exit_s']:>6.1f} {row['cpu_s']:>6.1f} {row['cpu_at_first_s']:>9.1f} "
        f"{row['load_before']:>4.1f}-{row['load_after']:<4.1f} "
        f"{row['steal_ms']:>6.0f}  {shares}",
        flush=True,
    )


def per_kernel() -> list[tuple[str, float]]:
    """CPU seconds of each compile step in one process (see the module doc)."""
    rows, _, _ = _run(_PER_KERNEL, [], {})
    return [(str(name), float(s)) for name, s in rows]  # type: ignore[misc]


def _summary(rows: list[dict]) -> dict:
    """Per code and target: min / median / max of each measure."""
    out: dict = {}
    for row in rows:
        key = f"{row['code']}:{row['target']}"
        for measure in ("first_block_s", "cache_full_s", "cpu_s", "cpu_at_first_s"):
            out.setdefault(key, {}).setdefault(measure, []).append(row[measure])
    for measures in out.values():
        for measure, values in measures.items():
            values.sort()
            measures[measure] = {
                "min": values[0],
                "median": values[len(values) // 2],
                "max": values[-1],
            }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--processes", type=int, default=None, help="compile processes (default: cores)"
    )
    parser.add_argument(
        "--targets", default="demo,focus", help="demo and/or a shipped scene's name"
    )
    parser.add_argument(
        "--compare", type=Path, default=None, help="another checkout, run in turn"
    )
    parser.add_argument("--per-kernel", action="store_true")
    parser.add_argument(
        "--json", default=str(ROOT / "benchmarks/out/cold_compile.json")
    )
    args = parser.parse_args()

    import numba

    checkouts = {"this": ROOT}
    if args.compare is not None:
        checkouts["compare"] = args.compare.resolve()
    print(
        f"{'run':>3} {'code':<8} {'target':<6} {'first s':>7} {'full s':>6} "
        f"{'exit s':>6} {'cpu s':>6} {'cpu@first':>9} {'load':>9} {'steal':>6}"
        "  per process: cpu s / kernels"
    )
    results: dict = {
        "machine": machine(numba=numba.__version__),
        "checkouts": {k: str(v) for k, v in checkouts.items()},
        "runs": cold_runs(
            args.runs, args.processes, args.targets.split(","), checkouts
        ),
    }
    results["summary"] = _summary(results["runs"])
    print(f"\n{'code:target':<16} {'measure':<15} {'min':>6} {'median':>6} {'max':>6}")
    for key, measures in results["summary"].items():
        for measure, stats in measures.items():
            print(
                f"{key:<16} {measure:<15} {stats['min']:>6.1f} "
                f"{stats['median']:>6.1f} {stats['max']:>6.1f}"
            )
    if args.per_kernel:
        steps = per_kernel()
        results["per_kernel_cpu_s"] = dict(steps)
        total = sum(s for _, s in steps)
        print(f"\n{'compile step (one process)':<58} {'cpu s':>6} {'share':>6}")
        for name, seconds in steps:
            print(f"{name:<58} {seconds:>6.2f} {100 * seconds / total:>5.1f}%")
        print(f"{'total':<58} {total:>6.2f}")
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
