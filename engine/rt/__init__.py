"""The real-time core: shared arrays, the event ring, the audio callback, live
output and offline render."""

from engine.numba_import import import_numba

import_numba()  # before any module here imports Numba: see engine/numba_import.py
