"""Numba is imported without SciPy, and SciPy stays importable afterwards."""

from __future__ import annotations

import textwrap

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


def test_numba_is_imported_without_scipy_and_scipy_still_imports(run_python) -> None:  # type: ignore[no-untyped-def]
    out = run_python(PROBE)
    assert out.split() == ["True", "False", "False", "scipy.signal"]


def test_a_scipy_already_imported_is_left_alone(run_python) -> None:  # type: ignore[no-untyped-def]
    probe = (
        "import sys, scipy; from engine.numba_import import import_numba; "
        "import_numba(); print(sys.modules['scipy'] is scipy)"
    )
    assert run_python(probe).split() == ["True"]
