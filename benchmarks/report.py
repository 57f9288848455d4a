"""What every benchmark does with its results: write them as JSON for
``benchmarks/RESULTS.md`` and for comparing runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_json(path: str | Path, results: Any) -> None:
    """Write ``results`` to ``path`` as indented JSON (making its folder) and
    say where.

        write_json("benchmarks/out/realtime.json", {"runs": []})
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path}")
