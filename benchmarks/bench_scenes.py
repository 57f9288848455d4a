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
  minute 9 (or 5 s near the start and 5 s before the scene is chosen again
  in a shorter render); a loop would show a peak near 1;
- CPU: milliseconds of rendering per second of audio (render time / length);
- the shared send reverb's saving: the scene as shipped against the same scene
  with each texture keeping its own room, rendered in turns (``reverb_cpu``).

Besides states, triggers and input jumps, the tour sets a layer parameter
from outside and back, saves the file again (hot reload) and picks the scene
again (a scene crossfade); clicks are counted around every one of them.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import write_json

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
    jump = _param_to_jump(scene)
    if jump is not None:
        # A parameter set from outside (OSC) to half and back: its smoothing.
        events.append((seconds * 0.35, "param", f"{jump[0]}={jump[1] / 2}"))
        events.append((seconds * 0.4, "param", f"{jump[0]}={jump[1]}"))
    # The file saved again (hot reload: a crossfade to the new version) and the
    # scene chosen again (a scene crossfade, to itself so the target holds).
    events.append((seconds * 0.45, "reload", ""))
    events.append((seconds * 0.9, "switch", scene["name"]))
    return sorted(events)


def _param_to_jump(scene: dict) -> tuple[str, float] | None:
    """``("layer.node.amplitude", value)``: the first plain amplitude of a
    layer that plays all the time (not a trigger's)."""
    fired = {t["layer"] for t in scene["triggers"].values()}
    for layer_name, layer in scene["layers"].items():
        if layer["muted"] or layer_name in fired:
            continue
        for node_name, entry in layer["nodes"].items():
            value = entry.get("amplitude")
            if isinstance(value, int | float) and value > 0:
                return f"{layer_name}.{node_name}.amplitude", float(value)
    return None


def reverb_cpu(name: str, seconds: float = 20.0) -> dict:
    """CPU of the scene as shipped (layers sending to one shared reverb) against
    the same scene with every texture keeping its own room: both rendered
    in turns, one second at a time, so machine load hits both alike."""
    import tempfile

    import yaml

    from engine.rt.engine import Engine
    from engine.scenes.format import load_scene_file
    from engine.scenes.library import find_scene
    from engine.scenes.yaml_source import load_yaml

    path = find_scene(name)
    data = load_yaml(path.read_text(), str(path)).data
    if not any("send_db" in layer for layer in data["layers"].values()):
        return {}
    for layer in data["layers"].values():
        layer.pop("send_db", None)
    data.get("master", {}).pop("reverb", None)
    with tempfile.TemporaryDirectory() as folder:
        own = Path(folder) / path.name
        own.write_text(yaml.safe_dump(data, sort_keys=False))
        graphs = {"shared": load_scene_file(path)[1], "own": load_scene_file(own)[1]}
    engines = {}
    for kind, graph in graphs.items():
        engines[kind] = Engine(sample_rate=RATE, seed=1)
        engines[kind].load(graph, fade_s=0.0)
        engines[kind].render(RATE, block_size=BLOCK)  # warm
    spent = dict.fromkeys(graphs, 0.0)
    for _ in range(round(seconds)):
        for kind, engine in engines.items():
            t0 = time.perf_counter()
            engine.render(RATE, block_size=BLOCK)
            spent[kind] += time.perf_counter() - t0
    return {
        "reverbs": sum(1 for n in graphs["shared"].nodes if n.spec.name == "reverb"),
        "reverbs_own_rooms": sum(
            1 for n in graphs["own"].nodes if n.spec.name == "reverb"
        ),
        "cpu_ms_per_s_shared": round(1000.0 * spent["shared"] / seconds, 2),
        "cpu_ms_per_s_own_rooms": round(1000.0 * spent["own"] / seconds, 2),
    }


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
        elif kind == "param":
            where, value = what.split("=")
            layer_name, node_name, param = where.split(".")
            player.set_param(layer_name, node_name, param, float(value))
        elif kind == "reload":
            assert player.reload(), player.last_error
        elif kind == "switch":
            player.load(what)
    skip = round(3.0 * RATE)  # the first fade-in
    loudness = integrated_loudness_lufs(audio[skip:].astype(np.float64), RATE)
    clicks = 0
    clicked: list[str] = []
    for at_s, kind, what in events:
        a = max(round((at_s - 0.5) * RATE), 0)
        b = min(round((at_s + 0.5) * RATE), total)
        found = find_clicks(audio[a:b], RATE)
        clicks += int(found.size)
        clicked += [f"{(a + f) / RATE:.3f} s near {kind} {what}" for f in found]
    span = round(COMPARE_S * RATE)
    if seconds >= 540:
        first, last = (
            audio[60 * RATE : 60 * RATE + span, 0],
            audio[480 * RATE : 480 * RATE + span, 0],
        )
    else:
        # The last stretch before the scene is chosen again (which starts
        # it afresh, as the first choice did).
        end = round(0.85 * seconds * RATE)
        first, last = audio[skip : skip + span // 4, 0], audio[end - span // 4 : end, 0]
    return {
        "scene": name,
        "seconds": seconds,
        "target_lufs": scene["master"]["loudness_lufs"],
        "loudness_lufs": round(loudness, 2),
        "true_peak_dbtp": round(true_peak_dbtp(audio), 2),
        "nonfinite": int(np.count_nonzero(~np.isfinite(audio))),
        "events": len(events),
        "clicks_at_events": clicks,
        "clicks": clicked,
        "repetition_peak": round(repetition_peak(first, last), 4),
        "cpu_ms_per_s": round(1000.0 * render_s / seconds, 2),
        "load_s": round(load_s, 2),
    }


def main() -> int:
    from engine.scenes.library import scene_files

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--scenes", nargs="*", default=None)
    parser.add_argument(
        "--reverb-seconds",
        type=float,
        default=20.0,
        help="audio per variant for the shared-reverb CPU comparison",
    )
    parser.add_argument("--json", default=str(ROOT / "benchmarks/out/scenes.json"))
    args = parser.parse_args()
    names = args.scenes or list(scene_files())
    rows = [
        {**run_scene(name, args.seconds), **reverb_cpu(name, args.reverb_seconds)}
        for name in names
    ]
    header = (
        f"{'scene':<12} {'LUFS':>6} {'target':>6} {'dBTP':>6} {'clicks':>6} "
        f"{'repeat':>6} {'ms/s':>6} | {'reverbs':>7} {'ms/s':>6} "
        f"{'own rooms':>9} {'ms/s':>6}"
    )
    print(header)
    for r in rows:
        shared = (
            f"{r['reverbs']:>7d} {r['cpu_ms_per_s_shared']:>6.1f} "
            f"{r['reverbs_own_rooms']:>9d} {r['cpu_ms_per_s_own_rooms']:>6.1f}"
            if "reverbs" in r
            else f"{'-':>7} {'':>6} {'':>9} {'':>6}"
        )
        print(
            f"{r['scene']:<12} {r['loudness_lufs']:>6.1f} {r['target_lufs']:>6.1f} "
            f"{r['true_peak_dbtp']:>6.1f} {r['clicks_at_events']:>6d} "
            f"{r['repetition_peak']:>6.3f} {r['cpu_ms_per_s']:>6.2f} | {shared}"
        )
    report = {
        "machine": f"{platform.machine()} {platform.processor()} "
        f"{platform.python_version()}",
        "scenes": rows,
    }
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
