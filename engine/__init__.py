"""Real-time adaptive soundscape engine.

Layout (see README "Where things live"):

- ``engine.dsp``    node kernels and the one compiled interpreter (audio thread)
- ``engine.graph``  the Python graph API and its compiler (control thread)
- ``engine.rt``     the real-time core: shared arrays, event ring, callback,
                    live output and offline render
- ``engine.cli``    the ``soundscape`` command
"""

__version__ = "0.1.0"
