"""Heart-rate sources and their processing (issue 5, item 4).

- ``samples``     the one sample type every source delivers (``HeartSample``)
- ``hrm_ble``     Bluetooth LE Heart Rate Measurement (0x2A37) parser and an
                  optional live client through ``bleak``
- ``heart_state`` artifact rejection, RMSSD, trend, quality, dropout hold/relax
- ``replay``      recorded CSV files: strict parsing, timed replay
- ``hr_sim``      a seeded heart-rate simulator with profiles, sent over OSC
- ``bridges``     OSC address tables of heart-rate bridges, both directions

Everything here runs on control threads; nothing is called by the audio thread.
Time is always passed in (seconds on one clock), so the processing is
deterministic and testable.
"""
