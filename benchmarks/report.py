"""What every benchmark records with its results (the machine) and does with
them (writes them as JSON for ``benchmarks/RESULTS.md`` and for comparing runs)."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any


def machine(**extra: Any) -> dict[str, Any]:
    """What the results were measured on (Python, CPU, cores, the load other
    work put on it when the run began), plus the benchmark's own ``extra``.

        results = {"machine": machine(switch_interval_ms=0.25)}
    """
    return {
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        **extra,
    }


def write_json(path: str | Path, results: Any) -> None:
    """Write ``results`` to ``path`` as indented JSON (making its folder) and
    say where.

        write_json("benchmarks/out/realtime.json", {"runs": []})
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path}")
