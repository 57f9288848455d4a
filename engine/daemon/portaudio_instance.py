"""A fresh PortAudio for sounddevice, when the old one cannot be shut down.

PortAudio learns its devices once, in ``Pa_Initialize``; to see a JACK server
that restarted, it must be terminated and initialised again
(``engine.rt.audio_io.refresh_devices``). But once its JACK server has died,
PortAudio 19.6 (measured with Debian's build, which keeps its asserts) cannot be
terminated at all:

- ``Pa_AbortStream``/``Pa_StopStream``/``Pa_CloseStream`` on a stream of the dead
  server wait up to 10 minutes for a JACK process thread that will never run;
  ``Pa_Terminate`` closes open streams first, so it waits too;
- with no stream open, ``Pa_Terminate`` calls ``jack_deactivate`` on the dead
  client, which fails, and an ``assert`` aborts the whole process.

So after such a loss :class:`PortAudioHost` leaves the old instance as it is and
loads a *private copy* of the PortAudio library (a new inode, via ``memfd``, so
the dynamic loader maps it afresh with its own globals; each copy needs a path
the loader has never seen, since it returns an already loaded library for a
known path), initialises that, and points sounddevice at it. The old instance is never called again, except by the
teardown thread already stuck inside it. Each abandoned instance costs about
0.2 MB and one file descriptor that are never returned: one per outage, not
per retry, because an instance that never reached a JACK server (or reached a
live one) is safely re-initialised in place. The dead JACK clients stay in
libjack, which shares its state across instances: measured, 20 restarts of a
server in a row resume every time (``benchmarks/bench_device_loss.py``).

Only one thread may call PortAudio through sounddevice at a time: the output
supervisor's. Audio thread: no.
"""

from __future__ import annotations

import ctypes.util
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sounddevice as sd

_copy_counter = 0
_copy_lock = threading.Lock()
_kept_descriptors: list[Any] = []
# Abandoned instances: a cffi library object unloads its library when it is
# collected, under the threads still inside it (teardown, JACK's own).
_abandoned_libraries: list[Any] = []
_library_path: list[Path | None] = []


def portaudio_library_path() -> Path | None:
    """The PortAudio shared library this process loaded (from /proc/self/maps),
    else the one the loader would find; ``None`` if neither is known."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                path = line.rstrip("\n").split(maxsplit=5)[-1]
                if "libportaudio" in Path(path).name and os.path.isfile(path):
                    return Path(path)
    except OSError:
        pass
    name = ctypes.util.find_library("portaudio")
    return Path(name) if name and os.path.isabs(name) else None


def _next_label() -> int:
    global _copy_counter
    with _copy_lock:
        _copy_counter += 1
        return _copy_counter


def _open_bytes(data: bytes, label: str, opener: Callable[[str], Any]) -> Any:
    """``opener(path)`` on a new file holding ``data``.

    The loader knows a library by its path: a path it has loaded before
    returns that same library, so every copy needs a path never used before.
    Hence the memfd stays open (two descriptors per PortAudio instance) and
    its ``/proc/self/fd/N`` is never reused.
    """
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create(label, flags=getattr(os, "MFD_CLOEXEC", 0))
        os.write(fd, data)
        _kept_descriptors.append(fd)
        return opener(f"/proc/self/fd/{fd}")
    copy = tempfile.NamedTemporaryFile(prefix=label, suffix=".so")  # noqa: SIM115
    copy.write(data)
    copy.flush()
    _kept_descriptors.append(copy)  # deleted when the process ends
    return opener(copy.name)


def load_private_copy(library: Path) -> Any:
    """``dlopen`` a copy of ``library`` that shares no state with any other
    copy: a cffi library object with sounddevice's declarations."""
    label = f"soundscape-portaudio-{_next_label()}"
    return _open_bytes(Path(library).read_bytes(), label, sd._ffi.dlopen)


class PortAudioHost:
    """Which PortAudio instance sounddevice uses, and starting it over.

    >>> host = PortAudioHost()                     # doctest: +SKIP
    >>> host.renew(clean=False)                    # doctest: +SKIP
    'fresh copy'
    """

    def __init__(self) -> None:
        # Found once per process: the file of the library sounddevice loaded
        # (copies are memfds, which cannot be copied again by path).
        if not _library_path:
            _library_path.append(portaudio_library_path())
        self.library = _library_path[0]
        self.copies_loaded = 0
        self.reinitialised = 0

    @property
    def lib(self) -> Any:
        """The cffi library sounddevice calls now."""
        return sd._lib

    def renew(self, clean: bool) -> str:
        """Make PortAudio enumerate devices again; returns what it did.

        ``clean``: no loss since the last initialisation and every stream of
        the current instance closed, so its JACK client (if any) belongs to a
        server that was alive: it is terminated and initialised in place
        (``"reinitialised"``). Otherwise it is abandoned for a private copy of
        the library (``"fresh copy"``). Known gap: a JACK server that dies
        between two clean retries (no stream open, so no loss seen) makes the
        in-place terminate assert.
        """
        if clean:
            if sd._initialized > 0:
                sd._terminate()
            sd._initialize()
            self.reinitialised += 1
            return "reinitialised"
        self.switch_to_fresh_copy()
        return "fresh copy"

    def switch_to_fresh_copy(self) -> None:
        """Abandon the current instance (never terminated) for a new copy."""
        if self.library is None:
            raise OSError("PortAudio: cannot find the library file to load afresh")
        lib = load_private_copy(self.library)
        _abandoned_libraries.append(sd._lib)
        # The old instance's count is dropped, not terminated: sounddevice's
        # exit handler would otherwise call Pa_Terminate on it (see above).
        sd._initialized = 0
        sd._lib = lib
        sd._initialize()
        self.copies_loaded += 1

    def terminate(self) -> None:
        """Terminate the current instance (only when its JACK server, if any,
        is alive: see the module docstring)."""
        while sd._initialized > 0:
            sd._terminate()

    def forget(self) -> None:
        """Make sounddevice's exit handler leave the current instance alone
        (its JACK server may be gone: terminating would abort the process)."""
        sd._initialized = 0
