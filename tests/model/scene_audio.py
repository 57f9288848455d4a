"""Helpers for the model tests that listen: shipped scenes copied with some
layers muted (or without their model), rendered offline with the model loop
ticking on its frames while a driver moves the inputs, and measurements of
the audio (spectral centroid, loudness, modulation speed and depth,
transient rate)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml

from engine.analysis import integrated_loudness_lufs
from engine.model.control_loop import render_with_model
from engine.rt.engine import Engine
from engine.scenes.player import ScenePlayer
from engine.scenes.yaml_source import load_yaml

RATE = 48000
SCENES = Path(__file__).parents[2] / "scenes"


def scene_copy(
    folder: Path,
    name: str,
    only: tuple[str, ...] = (),
    model: bool = True,
    file: str | None = None,
) -> Path:
    """A copy of shipped scene ``name`` in ``folder``: only the layers in
    ``only`` play (all when empty), without the model if ``model`` is False,
    with another model ``file`` if given."""
    source = SCENES / f"{name}.yaml"
    data = load_yaml(source.read_text(), str(source)).data  # YAML 1.2, as shipped
    for layer_name, layer in data["layers"].items():
        if only and layer_name not in only:
            layer["muted"] = True
    if not model:
        data.pop("model", None)
    else:
        data["model"]["file"] = file or str(SCENES / data["model"]["file"])
        if only:
            bindings = data["model"]["bindings"]
            for output, items in list(bindings.items()):
                items = items if isinstance(items, list) else [items]
                kept = [b for b in items if b["to"].split(".")[0] in only]
                if kept:
                    bindings[output] = kept
                else:
                    del bindings[output]
    path = folder / f"{name}-{'-'.join(only) or 'all'}-{int(model)}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def player_for(path: Path, state: str | None = None, seed: int = 3) -> ScenePlayer:
    player = ScenePlayer(
        Engine(sample_rate=RATE, seed=seed), hold_loudness=False, on_error=print
    )
    player.model_clock = {"time_of_day_h": 12.0}
    player.load(path, fade_s=0.0, state=state)
    return player


def render(
    player: ScenePlayer,
    seconds: float,
    drive: Callable[[float], None] | None = None,
    step_s: float = 0.05,
) -> np.ndarray:
    """Render ``seconds`` (mono sum) with the model ticking; ``drive(t)`` is
    called every ``step_s`` of audio, before the tick there."""
    engine = player.engine
    chunks: list[np.ndarray] = []
    total = round(seconds * RATE)
    step = round(step_s * RATE)
    start = engine.frame
    done = 0
    while done < total:
        if drive is not None:
            drive((engine.frame - start) / RATE)
        n = min(step, total - done)
        render_with_model(
            player,
            n,
            lambda k: chunks.append(engine.render(k, block_size=256)),
            block_size=256,
        )
        done += n
    return np.concatenate(chunks).astype(np.float64).mean(axis=1)


def centroid_hz(x: np.ndarray, low_hz: float = 50.0, high_hz: float = 16000.0) -> float:
    """Spectral centroid of the magnitude spectrum between ``low_hz`` and
    ``high_hz`` (below 50 Hz, brown noise's rumble would hide every change)."""
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    freqs = np.fft.rfftfreq(x.size, 1.0 / RATE)
    band = (freqs >= low_hz) & (freqs <= high_hz)
    return float(np.sum(freqs[band] * spectrum[band]) / np.sum(spectrum[band]))


def twins(
    path: Path,
    drives: tuple[Callable[[ScenePlayer], Callable[[float], None]], ...],
    seconds: float,
    skip_s: float,
    state: str | None = None,
) -> list[np.ndarray]:
    """The same scene rendered once per driver by players with the same seed,
    so slow random motion (a breathing drone, gusts) is the same in each and
    only what the drivers change differs; the first ``skip_s`` are cut."""
    out = []
    for make in drives:
        player = player_for(path, state=state)
        out.append(render(player, seconds, make(player))[round(skip_s * RATE) :])
    return out


def loudness_lufs(x: np.ndarray) -> float:
    return integrated_loudness_lufs(np.stack([x, x], axis=1), RATE)


def rms_db(x: np.ndarray) -> float:
    return float(10.0 * np.log10(np.mean(x * x) + 1e-30))


def envelope(x: np.ndarray, hop_s: float = 0.01) -> np.ndarray:
    hop = round(hop_s * RATE)
    n = x.size // hop
    return np.sqrt(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1))


def modulation_speed(x: np.ndarray, smooth_s: float = 1.0) -> float:
    """How fast the loudness swells: mean |d envelope/dt| / mean envelope, in
    1/s, on an envelope smoothed over ``smooth_s`` (a sine swell of depth m at
    f Hz gives about 4 m f)."""
    env = envelope(x, 0.01)
    width = round(smooth_s / 0.01)
    kernel = np.hanning(width) / np.hanning(width).sum()
    smooth = np.convolve(env, kernel, mode="valid")
    return float(np.mean(np.abs(np.diff(smooth))) / 0.01 / np.mean(smooth))


def am_depth(x: np.ndarray, rate_hz: float) -> float:
    """The envelope's component at ``rate_hz`` relative to its mean (2.5 ms
    envelope hops, whole-signal DFT bin)."""
    env = envelope(x, 0.0025)
    t = np.arange(env.size) * 0.0025
    component = 2.0 * np.abs(np.mean(env * np.exp(-2j * np.pi * rate_hz * t)))
    return float(component / np.mean(env))


def transient_rate(x: np.ndarray) -> float:
    """Onsets per second: 2 ms frames whose energy is over four times the
    median, counted once per run."""
    env = envelope(x, 0.002) ** 2
    loud = env > 4.0 * np.median(env)
    onsets = np.count_nonzero(loud[1:] & ~loud[:-1])
    return onsets / (x.size / RATE)
