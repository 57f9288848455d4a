"""Playing a scene on an engine: the one object that OSC, the CLI, scripts and the
daemon drive.

    engine = Engine()
    player = ScenePlayer(engine)
    player.load("forest")                  # a shipped scene, or a file path
    player.set_input("danger", 0.7)        # parameters that follow it glide
    player.set_state("combat")             # layers crossfade, on the bar if asked
    player.fire("thunder", velocity=0.8)   # a one-shot with its random spread
    player.set_param("wind", "gusts", "rate_hz", 0.3, ramp_s=2.0)
    player.set_volume(-6.0, ramp_s=1.0)
    player.sleep_timer(45 * 60, fade_s=600)

Every call takes an optional engine ``frame``: scripts and OSC bundles with a
timetag land on that exact sample, and an offline render of the same calls is
identical to what played. Without one, a change applies at the next block.

Bad input (an unknown name, a value that is not a finite number) raises
``ValueError`` naming what was wrong, and changes nothing. A scene file that
fails to load raises :class:`SceneError` and the playing scene stays; while
:meth:`watch` runs, saving the file crossfades the new version in, and a broken
edit is reported through ``on_error`` while the old version keeps playing.

Loudness: a scene's ``master.loudness_lufs`` is held by a trim gain measured
when the scene loads, by rendering it offline for a while at its default inputs
(ITU-R BS.1770 integrated loudness), once per state; a state change glides the
trim with its fade. Each input that parameters follow is measured at the ends
of its range too (per state, one input at a time), and a gain after the trim
(``hold_<input>``) follows the input with the same smoothing, so a gale or a
racing pulse does not make the scene louder (``master.hold_inputs: false``
lets it). Measurements are cached on disk, so only the first start of a scene
(or of an edited one) pays for them.

Control thread only (any number of them: every method takes the player's lock).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.analysis import integrated_loudness_lufs
from engine.dsp.cache_guard import sources_digest
from engine.dsp.nodes import node_types
from engine.graph.graph import Graph
from engine.graph.program import Program
from engine.naming import did_you_mean
from engine.rt.engine import Engine, EngineError
from engine.rt.ring import EV_SET, EV_SET_NOW, EV_TRIGGER
from engine.scenes.control import SceneInputs
from engine.scenes.errors import SceneError
from engine.scenes.format import (
    TRIM_NODE,
    firing_nodes,
    held_inputs,
    hold_node,
    layer_copies,
    load_scene_file,
    state_level,
)
from engine.scenes.library import find_scene, scene_files

if TYPE_CHECKING:
    from engine.model.control_loop import ModelLoop, TickRecord

# Loudness is measured over this much of an offline render, after the first
# seconds (fade-in, reverb build-up) are skipped.
LOUDNESS_SKIP_S = 3.0
LOUDNESS_MEASURE_S = 20.0
# The trim never moves a scene further than this from how it was written.
MAX_TRIM_DB = 24.0
# A saved edit crossfades in over this long.
RELOAD_FADE_S = 1.0
DEFAULT_SCENE_FADE_S = 3.0
WATCH_INTERVAL_S = 0.5
SAVE_SETTLE_S = 0.05  # a watched file unchanged this long is read
_SLEEP_TAG = "sleep-timer"
_AUTO_TAG = "auto-fire"
# A quantized state change's events wait for their bar; one asked again for
# the same bar replaces them (see ScenePlayer.set_state).
_STATE_TAG = "state"
# Its hold ramps apart: they move with the inputs, the levels do not.
_STATE_HOLD_TAG = "state-hold"
# Triggers that fire on their own are planned this far ahead (events wait in
# the engine's schedule; a new scene withdraws them).
AUTO_FIRE_PLAN_S = 24 * 3600.0


def _trim_cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "soundscape" / "loudness-trims.json"


class _TrimCache:
    """Measured trims, kept on disk so a scene starts at once the second time.
    Keyed by the scene file's content, the rate, the seed and the DSP sources
    (a changed kernel may change the loudness). Any trouble with the file
    means measuring again, never an error."""

    def __init__(self) -> None:
        self._trims: dict[str, float] | None = None
        self._lock = threading.Lock()

    def _load(self) -> dict[str, float]:
        if self._trims is None:
            try:
                data = json.loads(_trim_cache_file().read_text())
                self._trims = {
                    k: float(v) for k, v in data.items() if isinstance(v, int | float)
                }
            except (OSError, ValueError, AttributeError):
                self._trims = {}
        return self._trims

    def get(self, key: str) -> float | None:
        with self._lock:
            return self._load().get(key)

    def put(self, key: str, trim_db: float) -> None:
        with self._lock:
            trims = self._load()
            trims[key] = trim_db
            path = _trim_cache_file()
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                temporary = path.with_suffix(f".{os.getpid()}.tmp")
                temporary.write_text(json.dumps(trims, indent=1))
                temporary.replace(path)
            except OSError:
                pass


_trim_cache = _TrimCache()


@dataclass
class _Voices:
    """Round-robin voice copies of one trigger's layer."""

    copies: list[str]
    length_frames: int
    next: int = 0
    fired_at: list[int] = field(default_factory=list)
    # Worked out once at load, not on every firing (OSC fires at game rate):
    # the nodes a firing restarts, and the fixed pitches a transposition moves.
    firing: list[str] = field(default_factory=list)
    pitches: list[tuple[str, Any]] = field(default_factory=list)


@dataclass
class _Loaded:
    path: Path
    scene: dict[str, Any]
    program: Program
    trim_db: float
    digest: str
    state_trims_db: dict[str | None, float] = field(default_factory=dict)
    # Per state and held input: (input values, gain in dB that holds the
    # loudness there), straight lines between.
    input_trims_db: dict[str | None, dict[str, tuple[list[float], list[float]]]] = (
        field(default_factory=dict)
    )
    model: ModelLoop | None = None
    # The file's modification time read before the file was: a save that
    # lands while this version compiles shows as a change and loads next.
    mtime: float | None = None

    def hold_db(self, state: str | None, name: str, value: float) -> float:
        """The gain that holds the loudness with input ``name`` at ``value``."""
        return _hold_db(self.input_trims_db, state, name, value)


def _hold_db(
    input_trims: dict[str | None, dict[str, tuple[list[float], list[float]]]],
    state: str | None,
    name: str,
    value: float,
) -> float:
    xs, ys = input_trims.get(state, {}).get(name, ([0.0], [0.0]))
    return float(np.interp(value, xs, ys))


def _print_error(message: str) -> None:
    print(f"soundscape: {message}", file=sys.stderr)


def _number(value: Any, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{what}: {value!r} is not a finite number")
    return number


def measure_loudness(engine: Engine, graph: Graph) -> float:
    """Integrated loudness (LUFS) of ``graph`` rendered offline on a fresh engine
    with ``engine``'s rate and seed; -inf for silence."""
    probe = Engine(sample_rate=engine.sample_rate, seed=engine.seed)
    probe.load(graph, fade_s=0.0)
    rate = engine.sample_rate
    probe.render(round(LOUDNESS_SKIP_S * rate), block_size=512)
    audio = probe.render(round(LOUDNESS_MEASURE_S * rate), block_size=512)
    return integrated_loudness_lufs(audio.astype(np.float64), rate)


class ScenePlayer:
    """Loads scenes onto an :class:`Engine` and turns names into events.

    ``lookahead_s`` is how far ahead of the engine's clock a quantized change
    may be placed (live playback: enough for the event pump to deliver it).
    ``volume_cap_db`` caps :meth:`set_volume`, whatever asks for more.
    ``defer_model_load`` leaves a scene's model to load on its loop's first
    tick (live: on the model thread, after the stream has started), instead
    of before the scene plays (see engine/model/control_loop.py).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        seed: int | None = None,
        lookahead_s: float = 0.0,
        volume_cap_db: float = 0.0,
        hold_loudness: bool = True,
        defer_model_load: bool = False,
        on_error: Callable[[str], None] = _print_error,
    ) -> None:
        self.engine = engine
        self.defer_model_load = defer_model_load
        self.lookahead_frames = round(lookahead_s * engine.sample_rate)
        self.volume_cap_db = float(volume_cap_db)
        self.hold_loudness = hold_loudness
        self.on_error = on_error
        self.last_error: str | None = None
        self._rng = np.random.default_rng(engine.seed if seed is None else seed)
        self._lock = threading.RLock()
        self._loaded: _Loaded | None = None
        self.inputs: SceneInputs | None = None
        self.state: str | None = None
        # Moves (under the lock) before a state change or a new scene reads
        # the inputs: the OSC fast path holds inputs with the state's curve,
        # and compares this to know its table is stale.
        self.state_changes = np.zeros(1, dtype=np.int64)
        # Per tag (_STATE_TAG, _STATE_HOLD_TAG): the frames quantized state
        # changes wait for, and the last such change's (frame, fade_s,
        # [(node, param, value)]).
        self._state_frames: dict[str, list[int]] = {}
        self._state_waiting: dict[str, tuple] = {}
        self._voices: dict[str, _Voices] = {}
        self._origin = 0  # the frame the beat grid counts from
        self._watch_stop: threading.Event | None = None
        self._watched_mtime: float | None = None
        # The adaptive loop of a scene with a model (engine/model/): ticked by
        # a ModelThread live, or by render_with_model offline.
        self.model: ModelLoop | None = None
        self.model_listeners: list[Callable[[TickRecord], None]] = []
        # Clock sources held fixed (offline renders: time_of_day_h).
        self.model_clock: dict[str, float] = {}

    # Loading -------------------------------------------------------------------

    @property
    def scene(self) -> dict[str, Any]:
        if self._loaded is None:
            raise ValueError("no scene loaded")
        return self._loaded.scene

    def _trims_for(
        self,
        path: Path,
        digest: str,
        scene: dict[str, Any],
        cases: list[tuple[str | None, dict[str, float] | None]],
    ) -> dict[tuple[str | None, str], float]:
        """The trims that bring the scene, as written (default inputs, or the
        case's inputs), in each case's state to its loudness target, keyed by
        (state, the inputs' key); measured once, then cached.

        Measurements not in the cache render on one thread per core: each
        renders on its own engine, and the renderer releases the GIL."""
        target = scene["master"]["loudness_lufs"]
        suffix = f":{self.engine.sample_rate}:{self.engine.seed}:"
        suffix += sources_digest()[:16]
        trims: dict[tuple[str | None, str], float] = {}
        missing: list[tuple[tuple[str | None, str], str, dict[str, float] | None]] = []
        for state, inputs in cases:
            moved = "".join(f",{k}={v!r}" for k, v in sorted((inputs or {}).items()))
            key = f"{digest}:{state}{moved}{suffix}"
            trim = _trim_cache.get(key)
            if trim is None:
                missing.append(((state, moved), key, inputs))
            else:
                trims[(state, moved)] = trim

        def measure(case: tuple[str | None, str], inputs: Any) -> float:
            graph = load_scene_file(path, inputs, case[0])[1]
            measured = measure_loudness(self.engine, graph)
            if not math.isfinite(measured):
                return 0.0
            return min(max(target - measured, -MAX_TRIM_DB), MAX_TRIM_DB)

        if missing:
            workers = min(len(missing), os.cpu_count() or 1)
            with ThreadPoolExecutor(workers, thread_name_prefix="trim") as pool:
                measured = pool.map(lambda m: measure(m[0], m[2]), missing)
                for (case, key, _), trim in zip(missing, measured, strict=True):
                    _trim_cache.put(key, trim)
                    trims[case] = trim
        return trims

    def _prepare(
        self,
        path: Path,
        input_values: Mapping[str, float] | None,
        state: str | None,
    ) -> _Loaded:
        mtime = _mtime(path)
        scene, graph = load_scene_file(path, input_values, state)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        # Each state is held to the target on its own (a combat state has more
        # layers than explore, not more loudness), measured as written so that
        # a reload in the middle of a game does not move the trims.
        trims: dict[str | None, float] = {None: 0.0}
        input_trims: dict[str | None, dict[str, tuple[list[float], list[float]]]] = {}
        if self.hold_loudness:
            states = list(scene["states"]) or [None]
            # An input that makes the scene louder (a gale, a racing pulse) is
            # held too: measured at each end of its range, one at a time, and
            # compensated in between (the effects of several inputs add up in
            # dB, near enough: forest measured within 0.6 dB).
            held = held_inputs(scene)
            written = load_scene_file(path)[0]["inputs"] if input_values else {}
            ends = {}
            for name in held:
                spec = (written or scene["inputs"])[name]
                xs = sorted({spec["minimum"], spec["default"], spec["maximum"]})
                ends[name] = (xs, spec["default"])
            cases: list[tuple[str | None, dict[str, float] | None]] = [
                (s, None) for s in states
            ]
            cases += [
                (s, {name: x})
                for s in states
                for name, (xs, default) in ends.items()
                for x in xs
                if x != default
            ]
            measured = self._trims_for(path, digest, scene, cases)
            trims = {s: measured[(s, "")] for s in states}
            for s in states:
                input_trims[s] = {
                    name: (
                        xs,
                        [
                            0.0
                            if x == default
                            else measured[(s, f",{name}={x!r}")] - trims[s]
                            for x in xs
                        ],
                    )
                    for name, (xs, default) in ends.items()
                }
        initial = scene.get("initial_state")
        trim_db = trims.get(initial, 0.0)
        starts = {TRIM_NODE: trim_db}
        for name in held_inputs(scene):
            value = scene["inputs"][name]["default"]
            starts[hold_node(name)] = _hold_db(input_trims, initial, name, value)
        for node in graph.nodes:
            if node.name in starts:
                node.values["gain_db"] = starts[node.name]
        model = None
        if scene.get("model") is not None:
            # Opening the session takes milliseconds (and importing onnxruntime
            # the first time half a second) and holds the GIL: here, outside
            # the lock, like compiling, or on the model thread when deferred.
            from engine.model.control_loop import ModelLoop

            model = ModelLoop(
                self, scene, self.on_error, load=not self.defer_model_load
            )
        program = self.engine.compile(graph)
        return _Loaded(
            path, scene, program, trim_db, digest, trims, input_trims, model, mtime
        )

    def _install(self, loaded: _Loaded, fade_s: float | None, keep_grid: bool) -> None:
        self.engine.load(loaded.program, fade_s=fade_s)
        self.state_changes[0] += 1
        self._state_waiting = {}  # its events were for the old program
        self._loaded = loaded
        scene = loaded.scene
        # The graph was built with the inputs' starting values as defaults.
        self.inputs = SceneInputs(scene, self.engine)
        self.state = scene.get("initial_state")
        self._voices = {
            name: self._trigger_voices(scene, trigger)
            for name, trigger in scene["triggers"].items()
        }
        if not keep_grid:
            self._origin = self.engine.frame
        self._watched_mtime = loaded.mtime
        self._plan_auto_fire()
        previous, self.model = self.model, loaded.model
        if self.model is not None:
            self.model.start(self.engine.frame)
            if keep_grid and previous is not None:
                # A saved edit is the same session: the sleep clock runs on.
                self.model.start_frame = previous.start_frame

    def _plan_auto_fire(self) -> None:
        self.engine.cancel(_AUTO_TAG)
        rate = self.engine.sample_rate
        for name, trigger in self.scene["triggers"].items():
            if "every_s" not in trigger:
                continue
            low, high = trigger["every_s"]
            t = self._rng.uniform(low, high)
            while t < AUTO_FIRE_PLAN_S:
                self.fire(
                    name, frame=self.engine.frame + round(t * rate), tag=_AUTO_TAG
                )
                t += self._rng.uniform(low, high)

    def load(
        self,
        scene: str | Path,
        fade_s: float | None = None,
        input_values: Mapping[str, float] | None = None,
        state: str | None = None,
    ) -> None:
        """Crossfade to a scene (a file path or a shipped scene's name) over
        ``fade_s`` seconds (default: 3 s, or a short fade-in from silence).
        Raises SceneError or ValueError, and the playing scene stays."""
        path = find_scene(scene)
        if path is None:
            known = sorted(scene_files())
            raise ValueError(
                f"unknown scene {str(scene)!r}{did_you_mean(str(scene), known)}; "
                f"shipped: {', '.join(known)}"
            )
        # Compiling and measuring take up to seconds: outside the lock, so the
        # OSC receive threads and the model loop are not held up meanwhile.
        loaded = self._prepare(path, input_values, state)
        with self._lock:
            if fade_s is None and self._loaded is not None:
                fade_s = DEFAULT_SCENE_FADE_S
            self._install(loaded, fade_s, keep_grid=False)
            self.last_error = None
            # A scene's own sleep timer starts when it is chosen (not on reload).
            timer = loaded.scene.get("sleep_timer")
            if timer is not None:
                self.sleep_timer(60.0 * timer["after_min"], 60.0 * timer["fade_min"])
            else:
                self.cancel_sleep_timer(ramp_s=0.0)

    def reload(self) -> bool:
        """Load the playing scene's file again, keeping input values and the
        state where they still exist; crossfade it in. On an error, report it
        through ``on_error``, keep the playing version and return False."""
        with self._lock:
            if self._loaded is None:
                return False
            playing = self._loaded
            path = playing.path
            inputs = dict(self.inputs.values) if self.inputs is not None else {}
            state = self.state
        # Read before the file: a save that lands while this one fails to
        # load is still seen as a change by the watcher.
        mtime = _mtime(path)
        # Compiling and measuring loudness take up to seconds: outside the
        # lock, so OSC and the model loop keep setting inputs meanwhile.
        try:
            loaded = self._prepare(path, None, None)
            kept = {
                name: min(max(value, spec["minimum"]), spec["maximum"])
                for name, value in inputs.items()
                if (spec := loaded.scene["inputs"].get(name)) is not None
            }
            if state not in loaded.scene["states"]:
                state = None
            if kept or state is not None:
                loaded = self._prepare(path, kept, state)
        except (SceneError, ValueError, OSError) as error:
            with self._lock:
                self._watched_mtime = mtime
                self.last_error = f"{path}: kept the playing version: {error}"
            self.on_error(self.last_error)
            return False
        with self._lock:
            if self._loaded is not playing:
                return False  # another scene was loaded meanwhile: it stays
            # Inputs set while the new version compiled carry over too.
            moved = {
                name: value
                for name, value in (self.inputs.values if self.inputs else {}).items()
                if name in kept and value != inputs.get(name)
            }
            try:
                self._install(loaded, RELOAD_FADE_S, keep_grid=True)
            except EngineError as error:  # a switch still fading: try next save
                self.last_error = f"{path}: not reloaded yet: {error}"
                self.on_error(self.last_error)
                return False
            assert self.inputs is not None
            for name, value in moved.items():
                self.inputs.set(name, value)
            self.last_error = None
            return True

    def watch(self, interval_s: float = WATCH_INTERVAL_S) -> None:
        """Reload the scene whenever its file is saved (a background thread,
        until :meth:`stop_watching`)."""
        if self._watch_stop is not None:
            return
        stop = threading.Event()
        self._watch_stop = stop

        def run() -> None:
            while not stop.wait(interval_s):
                try:
                    loaded = self._loaded
                    if loaded is None:
                        continue
                    mtime = _mtime(loaded.path)
                    if mtime is None or mtime == self._watched_mtime:
                        continue
                    # A save can be a truncate and then a write: a file still
                    # changing is read on a later poll, not reported as broken.
                    if stop.wait(SAVE_SETTLE_S):
                        break
                    if _mtime(loaded.path) == mtime:
                        self.reload()
                except Exception as error:  # noqa: BLE001 - the watcher must live
                    self.on_error(f"scene watcher: {error}")

        threading.Thread(target=run, name="soundscape-watch", daemon=True).start()

    def stop_watching(self) -> None:
        if self._watch_stop is not None:
            self._watch_stop.set()
            self._watch_stop = None

    # Inputs, states, triggers, parameters ---------------------------------------

    def set_input(self, name: str, value: Any, frame: int | None = None) -> float:
        """Set a scene input (clamped to its range); returns the value used."""
        with self._lock:
            if self.inputs is None:
                raise ValueError("no scene loaded")
            used = self.inputs.set(name, value, frame)
            assert self._loaded is not None
            if name in self._loaded.input_trims_db.get(self.state, {}):
                hold = self._loaded.hold_db(self.state, name, used)
                self.engine.schedule(frame, hold_node(name), "gain_db", hold, EV_SET)
            return used

    def _beat_frames(self) -> float:
        return 60.0 / self.scene["tempo_bpm"] * self.engine.sample_rate

    def quantized(self, quantize: str, frame: int | None) -> int | None:
        """The frame a change lands on: ``frame`` (None: the next block), or the
        first beat or bar at or after it, on the scene's grid."""
        if quantize == "none":
            return frame
        now = self.engine.frame + self.lookahead_frames if frame is None else frame
        period = self._beat_frames()
        if quantize == "bar":
            period *= self.scene["beats_per_bar"]
        count = math.ceil((now - self._origin) / period - 1e-9)
        return self._origin + round(count * period)

    def set_state(self, name: str, frame: int | None = None) -> int | None:
        """Move to a discrete state: each layer fades to the state's level over
        the state's ``fade_s``, from the frame returned (None: next block)."""
        with self._lock:
            states = self.scene["states"]
            state = states.get(name)
            if state is None:
                known = ", ".join(states) or "none"
                raise ValueError(
                    f"no state {name!r}{did_you_mean(name, states)} (states: {known})"
                )
            at = self.quantized(state["quantize"], frame)
            self.state_changes[0] += 1
            fade_s = state["fade_s"]
            ramps: list[tuple[str, str, float]] = []
            for layer_name, layer in self.scene["layers"].items():
                if layer["muted"]:
                    continue
                level = state_level(self.scene, name, layer_name)
                for copy in layer_copies(self.scene, layer_name):
                    ramps.append((f"{copy}.level", "level", level))
            trim_db = self._loaded.state_trims_db.get(name, self._loaded.trim_db)
            ramps.append((TRIM_NODE, "gain_db", trim_db))
            assert self.inputs is not None
            holds: list[tuple[str, str, float]] = []
            for input_name in self._loaded.input_trims_db.get(name, {}):
                hold = self._loaded.hold_db(
                    name, input_name, self.inputs.values[input_name]
                )
                holds.append((hold_node(input_name), "gain_db", hold))
            for tag, events in ((_STATE_TAG, ramps), (_STATE_HOLD_TAG, holds)):
                change = (at, fade_s, events)
                # The same events again for a frame still to come wait
                # already (a timed set of the same parameter landing on that
                # very frame in between keeps its place after them).
                if (
                    at is not None
                    and at >= self.engine.frame
                    and change == self._state_waiting.get(tag)
                ):
                    continue
                event_tag = self._state_tag(tag, at)
                for node, param, value in events:
                    self.engine.ramp(
                        node, param, value, fade_s, frame=at, tag=event_tag
                    )
                if at is not None:
                    self._state_waiting[tag] = change
            self._loaded.trim_db = trim_db
            self.state = name
            return at

    def _state_tag(self, tag: str, at: int | None) -> str | None:
        """The tag for a state change's events at frame ``at``; withdraws the
        waiting events of an earlier change asked for the same frame.

        A game may ask for a state many times within one bar (the OSC fuzz
        does, hundreds of times): each change quantized to that bar used to
        add a full set of ramps, and at the bar the event pump moved them
        all to the ring in one go, holding the GIL and the schedule lock for
        milliseconds. At one frame the last change's ramps win anyway (a
        set and a ramp from the value the block starts at), so the earlier
        ones can go. Only while that frame is the only one state events wait
        for: explicitly timed changes at other frames (a bundle's sequence)
        keep theirs. Levels and holds are tagged apart: the same levels (or
        holds) asked again for the same frame schedule nothing at all (see
        ``set_state``; withdrawn events still cost the pump a pop each),
        so an input moving between two requests renews only its holds.
        Caller holds the lock.
        """
        if at is None:  # the next block: delivered at once, never piles up
            return None
        now = self.engine.frame
        waiting = [f for f in self._state_frames.get(tag, ()) if f >= now]
        if waiting == [at]:
            self.engine.cancel(tag)
        elif at not in waiting:
            waiting.append(at)
        self._state_frames[tag] = waiting
        return tag

    def _trigger_voices(
        self, scene: dict[str, Any], trigger: dict[str, Any]
    ) -> _Voices:
        layer = scene["layers"][trigger["layer"]]
        types = node_types()
        longest_ms = 0.0
        for node_name in firing_nodes(layer):
            entry = layer["nodes"][node_name]
            spec = types[entry["type"]]
            total = 0.0
            for param in ("attack_ms", "release_ms"):
                value = entry.get(param, spec.param(param).default)
                total += float(np.max(value)) if not isinstance(value, dict) else 0.0
            longest_ms = max(longest_ms, total)
        copies = layer_copies(scene, trigger["layer"])
        pitches = []
        for node_name, entry in layer["nodes"].items():
            spec = types[entry["type"]]
            if not any(p.name == "frequency_hz" for p in spec.params):
                continue
            base = entry.get("frequency_hz", spec.param("frequency_hz").default)
            if not isinstance(base, dict):  # one that follows an input stays
                pitches.append((node_name, base))
        return _Voices(
            copies,
            round(longest_ms / 1000.0 * self.engine.sample_rate),
            fired_at=[-(10**12)] * len(copies),
            firing=firing_nodes(layer),
            pitches=pitches,
        )

    def fire(
        self,
        name: str,
        velocity: Any = 1.0,
        frame: int | None = None,
        tag: str | None = None,
    ) -> int | None:
        """Fire a trigger: the next of its voices (the oldest is taken when all
        sound) starts with its random pitch, gain and pan; ``velocity`` 0..1
        scales its level. Returns the frame it lands on (None: next block)."""
        with self._lock:
            triggers = self.scene["triggers"]
            trigger = triggers.get(name)
            if trigger is None:
                known = ", ".join(triggers) or "none"
                raise ValueError(
                    f"no trigger {name!r}{did_you_mean(name, triggers)} "
                    f"(triggers: {known})"
                )
            velocity = min(
                max(_number(velocity, f"trigger {name!r} velocity"), 0.0), 1.0
            )
            if velocity == 0.0:
                return None
            at = self.quantized(trigger["quantize"], frame)
            voices = self._voices[name]
            k = voices.next
            voices.next = (k + 1) % len(voices.copies)
            copy = voices.copies[k]
            when = self.engine.frame if at is None else at
            # A silent voice takes its new settings at once; one still sounding
            # glides to them, so taking it over never clicks.
            idle = when - voices.fired_at[k] > voices.length_frames
            voices.fired_at[k] = when
            kind = EV_SET_NOW if idle else EV_SET
            layer = self.scene["layers"][trigger["layer"]]
            spread = trigger.get("random", {})
            gain_db = layer["gain_db"] + 20.0 * math.log10(velocity)
            if "gain_db" in spread:
                gain_db += self._rng.uniform(*spread["gain_db"])
            self.engine.schedule(at, f"{copy}.level", "gain_db", gain_db, kind, tag=tag)
            if "pan" in spread:
                pan = self._rng.uniform(*spread["pan"])
                self.engine.schedule(at, f"{copy}.pan", "pan", pan, kind, tag=tag)
            if "pitch_semitones" in spread:
                ratio = 2.0 ** (self._rng.uniform(*spread["pitch_semitones"]) / 12.0)
                self._transpose(voices.pitches, copy, ratio, at, kind, tag)
            for key, (low, high) in spread.get("params", {}).items():
                node_name, _, param = key.partition(".")
                value = self._rng.uniform(low, high)
                self.engine.schedule(
                    at, f"{copy}.{node_name}", param, value, kind, tag=tag
                )
            for node_name in voices.firing:
                self.engine.schedule(
                    at, f"{copy}.{node_name}", "trigger", 0.0, EV_TRIGGER, tag=tag
                )
            return at

    def _transpose(
        self,
        pitches: list[tuple[str, Any]],
        copy: str,
        ratio: float,
        at: int | None,
        kind: int,
        tag: str | None,
    ) -> None:
        for node_name, base in pitches:
            node = f"{copy}.{node_name}"
            if isinstance(base, list):
                for voice, hz in enumerate(base):
                    self.engine.schedule(
                        at, node, "frequency_hz", hz * ratio, kind, voice=voice, tag=tag
                    )
            else:
                self.engine.schedule(
                    at, node, "frequency_hz", base * ratio, kind, tag=tag
                )

    def set_param(
        self,
        layer: str,
        node: str,
        param: str,
        value: Any,
        ramp_s: float | None = None,
        frame: int | None = None,
    ) -> None:
        """Set a parameter of a layer's node: it glides per its smoothing, or in a
        straight line over ``ramp_s`` seconds."""
        with self._lock:
            layers = self.scene["layers"]
            if layer not in layers or layers[layer]["muted"]:
                raise ValueError(
                    f"no playing layer {layer!r}{did_you_mean(layer, layers)}"
                )
            number = _number(value, f"{layer}.{node}.{param}")
            program = self.engine.current
            assert program is not None
            try:
                program.param(f"{layer}.{node}", param)
            except KeyError as error:
                raise ValueError(str(error).strip('"')) from None
            for copy in layer_copies(self.scene, layer):
                if ramp_s is None:
                    self.engine.schedule(frame, f"{copy}.{node}", param, number, EV_SET)
                else:
                    self.engine.ramp(f"{copy}.{node}", param, number, ramp_s, frame)

    # Master ---------------------------------------------------------------------

    def set_volume(
        self, gain_db: Any, ramp_s: float = 0.5, frame: int | None = None
    ) -> float:
        """Master volume in dB (capped at ``volume_cap_db``), in a straight line
        over ``ramp_s``; returns the volume used."""
        volume = min(_number(gain_db, "volume"), self.volume_cap_db)
        volume = max(volume, -120.0)
        self.engine.ramp("master.volume", "gain_db", volume, ramp_s, frame)
        return volume

    def sleep_timer(self, after_s: float, fade_s: float = 300.0) -> int:
        """Fade the whole output to digital silence so that it ends ``after_s``
        seconds from now, the fade taking the last ``fade_s``; a new timer
        replaces the old, and :meth:`cancel_sleep_timer` brings the sound back.
        Returns the frame the silence starts."""
        after_s = _number(after_s, "sleep timer")
        fade_s = min(max(_number(fade_s, "sleep timer fade"), 0.0), max(after_s, 0.0))
        rate = self.engine.sample_rate
        end = self.engine.frame + round(after_s * rate)
        self.cancel_sleep_timer()
        self.engine.ramp(
            "master.volume",
            "level",
            0.0,
            fade_s,
            frame=end - round(fade_s * rate),
            tag=_SLEEP_TAG,
        )
        return end

    def cancel_sleep_timer(self, ramp_s: float = 2.0) -> None:
        self.engine.cancel(_SLEEP_TAG)
        self.engine.ramp("master.volume", "level", 1.0, ramp_s)

    # Status ---------------------------------------------------------------------

    def model_outputs(self) -> dict[str, float]:
        """The latest outputs of the scene's model ({} without a model, or
        before its first tick)."""
        loop = self.model
        tick = loop.last_tick if loop is not None else None
        return dict(tick.outputs) if tick is not None else {}

    def status(self) -> dict[str, Any]:
        """What is playing, for status replies and the monitor."""
        with self._lock:
            if self._loaded is None:
                return {"scene": None, "frame": self.engine.frame}
            scene = self._loaded.scene
            return {
                "scene": scene["name"],
                "file": str(self._loaded.path),
                "state": self.state,
                "states": list(scene["states"]),
                "triggers": list(scene["triggers"]),
                "layers": [
                    n for n, layer in scene["layers"].items() if not layer["muted"]
                ],
                "inputs": dict(self.inputs.values) if self.inputs else {},
                "loudness_trim_db": round(self._loaded.trim_db, 2),
                "frame": self.engine.frame,
                "last_error": self.last_error,
                "model": self.model.status() if self.model is not None else None,
            }


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime_ns / 1e9
    except OSError:
        return None
