"""The real-time core: shared arrays, the event ring, the audio callback, live
output and offline render."""
