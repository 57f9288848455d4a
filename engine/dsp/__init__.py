"""DSP kernels and the compiled interpreter. Everything here may run on the audio
thread: no allocation, no exceptions, no Python objects."""

from engine.numba_import import import_numba

import_numba()  # before any module here imports Numba: see engine/numba_import.py

from engine.dsp.cache_guard import invalidate_stale_cache

# Before any @njit(cache=True) function is loaded from disk (see cache_guard).
invalidate_stale_cache()
