"""Import Numba without importing SciPy.

``import numba`` imports SciPy, when it is installed, only to check its version
(numba/__init__.py, ``_ensure_critical_deps``), and the first use of Numba's
target context imports ``numba.np.arraymath``, which imports
``scipy.linalg.cython_blas`` only to learn whether ``np.dot`` can be compiled
(``_HAVE_BLAS``). The engine's jitted code uses no linear algebra. On the
benchmark machine these imports cost 0.2-0.3 s of a 1 s start and about 60 MB
of resident memory (benchmarks/RESULTS.md). So the engine's jitted packages
import Numba through :func:`import_numba`, which hides SciPy while Numba and
its array-math module are imported, then makes it importable again for
whoever needs it. The price: jitted ``np.dot``/``@`` is unavailable in a
process that imported the engine before SciPy (none of ours does that).

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
        importlib.import_module("numba.np.arraymath")
    finally:
        if hide and sys.modules.get("scipy", 0) is None:
            del sys.modules["scipy"]
