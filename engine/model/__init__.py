"""The adaptive loop's model: contract, runner, control loop and training.

- ``contract``      what a model reads and writes, by name (ONNX metadata)
- ``runtime``       onnxruntime session for a model beside real-time audio;
                    faults are reported once and never raised
- ``control_loop``  the control thread that feeds a scene's model and writes
                    its outputs as parameter targets (and the offline twin)
- ``check``         ``soundscape model check``: a contract against a scene
- ``training``      builds the shipped models from docs/models.md's table

Control plane only: nothing here runs on the audio thread.
"""
