"""DSP kernels and the compiled interpreter. Everything here may run on the audio
thread: no allocation, no exceptions, no Python objects."""
