"""Shipped scenes rendered at length: loudness, true peak, clicks at every
change, repetition, and CPU per audio second.

    python benchmarks/bench_scenes.py [--seconds 600] [--json benchmarks/out/scenes.json]

Each scene renders offline through the scene player (seed 1, 48 kHz, 256-frame
blocks). Scenes with states move through them at set times and fire their
triggers, so crossfades and one-shots are inside the measurement. Reported:

- integrated loudness (ITU-R BS.1770) against the scene's target;
- true peak (4x oversampled);
- non-finite samples;
- clicks found within 0.5 s of each state change, trigger and parameter jump
  (the detector, ``engine.analysis.find_clicks``, is tested on planted clicks);
- repetition: the peak of the normalised cross-correlation of minute 1 against
  minute 9 (or the first and last tenth of a shorter render); a loop would show
  a peak near 1;
- CPU: milliseconds of rendering per second of audio (render time / length).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RATE = 48000
BLOCK = 256
# The repetition check compares this much audio.
COMPARE_S = 20.0


def repetition_peak(a: np.ndarray, b: np.ndarray) -> float:
    """Peak of the normalised cross-correlation of two mono excerpts (FFT)."""
    a = a - a.mean()
    b = b - b.mean()
    n = 1 << int(np.ceil(np.log2(a.size + b.size)))
    xc = np.fft.irfft(np.fft.rfft(a, n) * np.conj(np.fft.rfft(b, n)), n)
    return float(np.max(np.abs(xc)) / (np.linalg.norm(a) * np.linalg.norm(b)))


def scene_events(scene: dict, seconds: float) -> list[tuple[float, str, str]]:
    """A tour of the scene: each state in turn and each trigger, spread over
    the render; (time_s, kind, name)."""
    events: list[tuple[float, str, str]] = []
    states = list(scene["states"])
    for k, state in enumerate(states[1:] + states[:1] if states else []):
        events.append((seconds * (k + 1) / (len(states) + 1), "state", state))
    for k, trigger in enumerate(scene["triggers"]):
        for j in range(3):
            at = seconds * (0.15 + 0.3 * j) + 1.7 * k
            events.append((at, "trigger", trigger))
    for name, spec in scene["inputs"].items():
        # A jump to the top of the range and back: the input's smoothing.
        events.append((seconds * 0.55, "input", f"{name}={spec['maximum']}"))
        events.append((seconds * 0.7, "input", f"{name}={spec['default']}"))
    return sorted(events)


def run_scene(name: str, seconds: float) -> dict:
    from engine.analysis import find_clicks, integrated_loudness_lufs, true_peak_dbtp
    from engine.rt.engine import Engine
    from engine.scenes.player import ScenePlayer

    engine = Engine(sample_rate=RATE, seed=1)
    player = ScenePlayer(engine, on_error=lambda message: None)
    started = time.perf_counter()
    player.load(name)
    load_s = time.perf_counter() - started
    scene = player.scene
    events = scene_events(scene, seconds)
    total = round(seconds * RATE)
    audio = np.zeros((total, 2), dtype=np.float32)
    done = 0
    render_s = 0.0
    for at_s, kind, what in [*events, (seconds, "end", "")]:
        stop = min(round(at_s * RATE), total)
        while done < stop:
            n = min(RATE, stop - done)
            t0 = time.perf_counter()
            audio[done : done + n] = engine.render(n, block_size=BLOCK)
            render_s += time.perf_counter() - t0
            done += n
        if kind == "state":
            player.set_state(what)
        elif kind == "trigger":
            player.fire(what)
        elif kind == "input":
            input_name, value = what.split("=")
            player.set_input(input_name, float(value))
    skip = round(3.0 * RATE)  # the first fade-in
    loudness = integrated_loudness_lufs(audio[skip:].astype(np.float64), RATE)
    clicks = 0
    for at_s, _, _ in events:
        a = max(round((at_s - 0.5) * RATE), 0)
        b = min(round((at_s + 0.5) * RATE), total)
        clicks += int(find_clicks(audio[a:b], RATE).size)
    span = round(COMPARE_S * RATE)
    if seconds >= 540:
        first, last = (
            audio[60 * RATE : 60 * RATE + span, 0],
            audio[480 * RATE : 480 * RATE + span, 0],
        )
    else:
        first, last = audio[skip : skip + span // 4, 0], audio[-span // 4 :, 0]
    return {
        "scene": name,
        "seconds": seconds,
        "target_lufs": scene["master"]["loudness_lufs"],
        "loudness_lufs": round(loudness, 2),
        "true_peak_dbtp": round(true_peak_dbtp(audio), 2),
        "nonfinite": int(np.count_nonzero(~np.isfinite(audio))),
        "events": len(events),
        "clicks_at_events": clicks,
        "repetition_peak": round(repetition_peak(first, last), 4),
        "cpu_ms_per_s": round(1000.0 * render_s / seconds, 2),
        "load_s": round(load_s, 2),
    }


def main() -> int:
    from engine.scenes.library import scene_files

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--scenes", nargs="*", default=None)
    parser.add_argument("--json", default=str(ROOT / "benchmarks/out/scenes.json"))
    args = parser.parse_args()
    names = args.scenes or list(scene_files())
    rows = [run_scene(name, args.seconds) for name in names]
    header = (
        f"{'scene':<12} {'LUFS':>6} {'target':>6} {'dBTP':>6} {'clicks':>6} "
        f"{'repeat':>6} {'ms/s':>6}"
    )
    print(header)
    for r in rows:
        print(
            f"{r['scene']:<12} {r['loudness_lufs']:>6.1f} {r['target_lufs']:>6.1f} "
            f"{r['true_peak_dbtp']:>6.1f} {r['clicks_at_events']:>6d} "
            f"{r['repetition_peak']:>6.3f} {r['cpu_ms_per_s']:>6.2f}"
        )
    report = {
        "machine": f"{platform.machine()} {platform.processor()} "
        f"{platform.python_version()}",
        "scenes": rows,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
