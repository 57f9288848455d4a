"""Importing the package: NumPy's OpenBLAS runs on one thread (no worker
threads beside the audio thread), unless the user chose otherwise."""

from __future__ import annotations

PROBE = (
    "import os, engine, numpy\n"
    "threads = [line.split()[1] for line in open('/proc/self/status')"
    " if line.startswith('Threads:')][0]\n"
    "print(os.environ['OPENBLAS_NUM_THREADS'], threads)\n"
)


def test_numpy_imported_after_the_engine_starts_no_openblas_threads(run_python) -> None:  # type: ignore[no-untyped-def]
    out = run_python(PROBE, drop=["OPENBLAS_NUM_THREADS"]).split()
    assert out == ["1", "1"]  # one thread: the main one


def test_a_thread_count_the_user_set_is_kept(run_python) -> None:  # type: ignore[no-untyped-def]
    out = run_python(PROBE, env={"OPENBLAS_NUM_THREADS": "2"}).split()
    assert out[0] == "2"
