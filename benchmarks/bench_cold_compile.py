"""Cold compile: empty Numba cache -> first block, wall and CPU, per process;
and, with ``--per-kernel``, what each kernel and the entry points cost.

    python benchmarks/bench_cold_compile.py [--runs 3] [--per-kernel]
        [--json benchmarks/out/cold_compile.json]

Each run is a new process with its own empty ``NUMBA_CACHE_DIR`` that imports
the engine, loads the demo ``focus`` and renders one block (as
``bench_engine.py`` does). Wall time is from starting that process to its exit;
CPU is every process's user + system time (the run's and its compile
workers'), which is steadier than wall time on a shared machine. The load
average is printed beside each run: other users' work slows the wall time.

``--per-kernel`` compiles everything in one process, as a compile worker does
(entry points first, then the kernels costliest first), and times each step:
a kernel's time includes the helpers it is the first to compile.
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

from benchmarks.report import write_json

_COLD = (
    "import json, time; t0 = time.perf_counter()\n"
    "from engine.rt.engine import Engine\n"
    "from engine.demos import DEMOS\n"
    "import engine.rt.callback\n"
    "e = Engine(); e.load(DEMOS['focus']()); e.render(128)\n"
    "from engine.dsp import cold_compile\n"
    "report = cold_compile.last_report\n"
    "print(json.dumps({'import_to_first_block_s': time.perf_counter() - t0,\n"
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


def _run(code: str, extra_env: dict[str, str]) -> tuple[dict | list, float, float]:
    """Run ``code`` in a new process with an empty Numba cache: (its JSON
    output, wall s, CPU s of it and the processes it waited for)."""
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as cache:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "NUMBA_CACHE_DIR": cache,
            **extra_env,
        }
        cpu0 = _children_cpu_s()
        t0 = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        wall_s = time.perf_counter() - t0
        cpu_s = _children_cpu_s() - cpu0
    return json.loads(done.stdout.strip().splitlines()[-1]), wall_s, cpu_s


def cold_runs(runs: int, processes: int | None) -> list[dict]:
    """``runs`` cold starts to the first block; one row each."""
    env = {} if processes is None else {"SOUNDSCAPE_COMPILE_PROCESSES": str(processes)}
    rows = []
    for _ in range(runs):
        load_before = os.getloadavg()[0]
        out, wall_s, cpu_s = _run(_COLD, env)
        rows.append(
            {
                "wall_s": wall_s,
                "cpu_s": cpu_s,
                "load_before": load_before,
                "load_after": os.getloadavg()[0],
                **out,  # type: ignore[dict-item]
            }
        )
    return rows


def per_kernel() -> list[tuple[str, float]]:
    """CPU seconds of each compile step in one process (see the module doc)."""
    rows, _, _ = _run(_PER_KERNEL, {})
    return [(str(name), float(s)) for name, s in rows]  # type: ignore[misc]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--processes", type=int, default=None, help="compile processes (default: cores)"
    )
    parser.add_argument("--per-kernel", action="store_true")
    parser.add_argument(
        "--json", default=str(ROOT / "benchmarks/out/cold_compile.json")
    )
    args = parser.parse_args()

    import numba

    results: dict = {
        "machine": {"cores": os.cpu_count(), "numba": numba.__version__},
        "runs": cold_runs(args.runs, args.processes),
    }
    print(
        f"{'run':>3} {'wall s':>7} {'cpu s':>7} {'load':>9} "
        f"{'import->block s':>15}  compile processes: cpu s / kernels / idle s"
    )
    for i, row in enumerate(results["runs"], 1):
        shares = ""
        if row.get("compile"):
            shares = "  ".join(
                f"{p['cpu_s']:.1f}/{p['kernels']}/{p['idle_s']:.1f}"
                for p in row["compile"]["processes"]
            )
        print(
            f"{i:>3} {row['wall_s']:>7.1f} {row['cpu_s']:>7.1f} "
            f"{row['load_before']:>4.1f}-{row['load_after']:<4.1f} "
            f"{row['import_to_first_block_s']:>15.1f}  {shares}"
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
