"""Importing the package: NumPy's OpenBLAS runs on one thread (no worker
threads beside the audio thread), unless the user chose otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = (
    "import os, engine, numpy\n"
    "threads = [line.split()[1] for line in open('/proc/self/status')"
    " if line.startswith('Threads:')][0]\n"
    "print(os.environ['OPENBLAS_NUM_THREADS'], threads)\n"
)


def _probe(**env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={**clean, "PYTHONPATH": str(ROOT), **env},
        timeout=60,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.split()


def test_numpy_imported_after_the_engine_starts_no_openblas_threads() -> None:
    assert _probe() == ["1", "1"]  # one thread: the main one


def test_a_thread_count_the_user_set_is_kept() -> None:
    assert _probe(OPENBLAS_NUM_THREADS="2")[0] == "2"
