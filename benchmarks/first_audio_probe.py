"""Run ``soundscape ARGS...`` and report when its first live callback ran.

    python benchmarks/first_audio_probe.py T0 play focus --seconds 2 --no-osc

``T0`` is the ``time.time()`` at which the parent started this process. Prints
one JSON line at the end: ``first_audio_s`` (T0 to the first callback),
``cpu_s`` (this process's CPU time by then), ``onnxruntime_imported`` (by
then), ``peak_rss_mb`` (at exit), ``jack_shm_mb`` (the JACK server's shared
memory mapped into this process) and ``pss_mb`` (resident memory with shared
pages divided among the processes that map them).

It changes nothing in the start path: a meta-path hook wraps
``LivePlayer.start`` when ``engine.rt.live`` is first executed, so every module
is imported when and where the command itself imports it.

Used by bench_engine.py (``first_audio``). Main thread only.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import resource
import sys
import threading
import time

T0 = float(sys.argv[1])
found: dict = {}


def _watch(player) -> None:
    while player.snapshot().callbacks == 0:
        time.sleep(0.0005)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    found["first_audio_s"] = time.time() - T0
    found["cpu_s"] = usage.ru_utime + usage.ru_stime
    found["onnxruntime_imported"] = "onnxruntime" in sys.modules


def _wrap(live) -> None:
    start = live.LivePlayer.start

    def watched_start(self, *args, **kwargs):
        result = start(self, *args, **kwargs)
        threading.Thread(target=_watch, args=(self,), daemon=True).start()
        return result

    live.LivePlayer.start = watched_start


class _Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "engine.rt.live":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        base = type(spec.loader)

        class Loader(base):
            def exec_module(self, module):
                super().exec_module(module)
                _wrap(module)

        spec.loader.__class__ = Loader
        return spec


def _status_mb(key: str, file: str = "/proc/self/status") -> float:
    for line in open(file):  # noqa: SIM115 - /proc files, read once
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    sys.meta_path.insert(0, _Hook())
    from engine.cli import main as soundscape

    code = soundscape(sys.argv[2:])
    found["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    found["jack_shm_mb"] = _status_mb("RssShmem")
    found["pss_mb"] = _status_mb("Pss", "/proc/self/smaps_rollup")
    print(json.dumps(found))
    return code


if __name__ == "__main__":
    sys.exit(main())
