"""Real-time adaptive soundscape engine.

Layout (see README "Where things live"):

- ``engine.dsp``    node kernels and the one compiled interpreter (audio thread)
- ``engine.graph``  the Python graph API and its compiler (control thread)
- ``engine.rt``     the real-time core: shared arrays, event ring, callback,
                    live output and offline render
- ``engine.cli``    the ``soundscape`` command

Importing the package sets ``OPENBLAS_NUM_THREADS=1`` unless it is set (see
below). Any thread.
"""

import os

# The engine's linear algebra is small (filter designs when a scene loads), and
# it shares the machine with a real-time audio thread: OpenBLAS's worker threads
# (one per core, started when NumPy loads, busy-waiting between jobs) cost far
# more than they save. On the 2-core benchmark machine with other work running,
# they made loading the `focus` scene 1.35 s instead of 0.4 s and importing
# NumPy 0.27 s instead of 0.15 s (benchmarks/RESULTS.md). It must be set before
# NumPy is first imported; a value the user chose wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
