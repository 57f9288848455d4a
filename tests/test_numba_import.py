"""Numba is imported without SciPy, and SciPy stays importable afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = textwrap.dedent(
    """
    import sys
    from engine.numba_import import import_numba
    import_numba()
    print("numba" in sys.modules, "scipy" in sys.modules)
    import engine.dsp.layout, engine.rt.ring
    print("scipy" in sys.modules)
    import scipy.signal
    print(scipy.signal.__name__)
    """
)


def test_numba_is_imported_without_scipy_and_scipy_still_imports() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["True", "False", "False", "scipy.signal"]


def test_a_scipy_already_imported_is_left_alone() -> None:
    probe = (
        "import sys, scipy; from engine.numba_import import import_numba; "
        "import_numba(); print(sys.modules['scipy'] is scipy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert out.stdout.split() == ["True"], out.stderr[-2000:]
