"""Import Numba without importing SciPy.

``import numba`` imports SciPy, when it is installed, only to check its version
(numba/__init__.py, ``_ensure_critical_deps``); Numba's linear algebra imports
``scipy.linalg`` itself when it is used, and the engine uses neither. On the
benchmark machine that import cost 0.2-0.3 s of a 1 s start and about 60 MB of
resident memory (benchmarks/RESULTS.md). So the engine's jitted packages
import Numba through :func:`import_numba`, which hides SciPy for the length of
that one import and then makes it importable again, for whoever needs it.

Control thread only: runs once, when the first jitted package is imported.
"""

from __future__ import annotations

import importlib
import sys


def import_numba() -> None:
    """Import ``numba`` (once) while ``import scipy`` fails; SciPy stays
    importable afterwards. A SciPy already imported is left alone."""
    if "numba" in sys.modules:
        return
    hide = "scipy" not in sys.modules
    if hide:
        sys.modules["scipy"] = None  # type: ignore[assignment]
    try:
        importlib.import_module("numba")
    finally:
        if hide and sys.modules.get("scipy", 0) is None:
            del sys.modules["scipy"]
