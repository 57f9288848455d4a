"""``soundscape daemon``: the engine as a background service.

    soundscape daemon [--config PATH] [--scene rain] [--osc-port 9000] ...

What one run does, in order:

1. reads the config (file, then flags: ``engine.daemon.config``) and sets up
   the log (``engine.daemon.logs``: stderr, journal priorities under systemd);
2. takes the one-instance lock (``engine.daemon.instance_lock``): a second
   daemon exits 1 with one line naming the pid that holds it;
3. loads the configured scene, else the last one played, onto a
   :class:`~engine.scenes.player.ScenePlayer` (a last-played scene that no
   longer loads gives way to the default, with a warning);
4. plays it through an :class:`~engine.daemon.output_supervisor.OutputSupervisor`
   (device loss detected, retried, the same engine resumed);
5. serves OSC through :class:`~engine.control.osc_surface.OscSurface`, the
   same surface ``soundscape play`` uses, plus ``/stop`` and the output's
   state in ``/status``;
6. tells systemd ``READY=1`` (once playing, or after ``READY_WAIT_S`` without
   a device: it keeps retrying and says so in ``STATUS=``), pings
   ``WATCHDOG=1`` while its threads live, and sends ``RELOADING=1`` /
   ``STOPPING=1`` around reloads and the fade-out.

Signals: SIGTERM and SIGINT (and OSC ``/stop``) fade out over ``shutdown.fade_s``
and exit 0. SIGHUP reads the config and the scene file again; a config that
does not load is one log line and the running one stays.

Levels: the master limiter's ceiling is the volume cap (``volume.cap_dbfs``, or
``volume.sleep_cap_dbfs`` for a scene with a sleep timer), so no sample leaves
above it whatever arrives over OSC; OSC ``/volume`` can turn the scene down,
never above its own level (``ScenePlayer`` caps the gain at 0 dB), and every
change is a ramp (the player's, the limiter's ceiling over ``CAP_RAMP_S``).

The fade-out is a straight line in dB (``FADE_DEPTH_DB`` over the fade time:
an even 0.3 dB per 10 ms for the default 2 s, where a linear-amplitude fade
drops fastest at the end), then the last ``TAIL_S`` goes to exact zero from
60 dB down, where no step can be heard.

Sleep: once the sleep timer has faded the output to silence (the master level
at exactly 0 and the master meter's peak at the floor for ``IDLE_AFTER_S``:
``output_silent_for_good``), the output stream is closed: nothing renders,
the process sleeps. An OSC message that changes something (not ``/status``)
opens it again.

Threads: :func:`run_daemon` runs on the main thread (signals arrive there);
the supervisor, the OSC surface and the event pump have their own.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.daemon.config import DEFAULT_SCENE, DaemonConfig, load_config
from engine.daemon.instance_lock import AlreadyRunning, InstanceLock
from engine.daemon.last_scene import remember_scene
from engine.daemon.logs import setup_logging
from engine.daemon.malloc_arenas import use_one_malloc_arena
from engine.daemon.sd_notify import Notifier, watchdog_interval_s
from engine.scenes.errors import SceneError

log = logging.getLogger("soundscape.daemon")

LOOKAHEAD_S = 0.05
READY_WAIT_S = 5.0
TICK_S = 0.1
IDLE_TICK_S = 0.5
FADE_DEPTH_DB = 60.0
TAIL_S = 0.05
# After the tail, the DC blocker's state decays to exact zero and the
# limiter's look-ahead drains: measured silent well within this.
SETTLE_S = 0.15
IDLE_AFTER_S = 2.0
CAP_RAMP_S = 1.0
# The limiter's ceiling cannot go lower (engine.dsp.kernels_master).
LIMITER_MIN_CEILING_DBTP = -20.0
# The gain /volume may reach: the scene as written (and loudness-held).
VOLUME_MAX_GAIN_DB = 0.0
WATCHDOG_DEFAULT_S = 10.0

EXIT_OK = 0
EXIT_FAILED = 1


class DaemonError(RuntimeError):
    """A reason the daemon cannot start, as one line."""


def resolve_scene(reference: str, scene_dirs: tuple[Path, ...]) -> Path:
    """The scene file for ``reference``: ``NAME.yaml`` in one of the
    configured scene folders, a path, or a shipped scene. Raises ValueError
    naming what was looked for."""
    from engine.scenes.library import find_scene, scene_files

    if "/" not in reference and not reference.endswith((".yaml", ".yml")):
        for folder in scene_dirs:
            candidate = Path(folder) / f"{reference}.yaml"
            if candidate.is_file():
                return candidate
    path = find_scene(reference)
    if path is None or not path.is_file():
        from engine.naming import did_you_mean

        known = sorted(scene_files())
        raise ValueError(
            f"scene {reference!r}: no such scene file{did_you_mean(reference, known)}"
            f" (shipped: {', '.join(known)}; folders: "
            f"{', '.join(str(d) for d in scene_dirs) or 'none'})"
        )
    return path


def output_silent_for_good(engine: Any, block_size: int) -> bool:
    """True when the output has gone silent for good: the master level at
    exactly 0 (where a sleep timer's or a stop's fade ends; a scene that is
    merely quiet between two sounds is not asleep) and the output at the
    silence floor (``SILENCE_DB``, -120 dBFS).

    The master meter tells where the master bus has one: its peak holds every
    sample and falls 20 dB/s, so a reading at the floor means no sample above
    -120 + 20 t dBFS in the last t seconds, whichever blocks the checks fell
    on. Without a meter, only the last block rendered is known (a sound
    between two checks would pass unseen).

    Args:
        engine: the daemon's engine.
        block_size: frames per callback (the last block, without a meter).

    Threads: any control thread.
    """
    from engine.control.level_meters import SILENCE_DB, MeterTaps
    from engine.control.status import master_levels_dbfs
    from engine.dsp.layout import P_CURRENT

    master = engine.master
    level = master.params[P_CURRENT, master.param("volume", "level").column]
    if float(level) != 0.0:
        return False
    reading = MeterTaps(master).read().get("master")
    if reading is None:  # a master bus built without its meter
        reading = master_levels_dbfs(engine, block_size)
    peak_db, _ = reading
    return peak_db <= SILENCE_DB


def is_sleep_scene(scene: Mapping[str, Any]) -> bool:
    """A scene with a sleep timer is played at the (lower) sleep cap."""
    return scene.get("sleep_timer") is not None


class Daemon:
    """One run of the daemon (see the module docstring).

    Args:
        config_path: ``--config`` (None: the default file, if any).
        overrides: flag values by setting name (``overrides_from_args``).
        env: environment for the config's XDG directories and ``NOTIFY_SOCKET``.
    """

    def __init__(
        self,
        config_path: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.config_path = config_path
        self.overrides = dict(overrides or {})
        self.env = os.environ if env is None else env
        self.config: DaemonConfig = load_config(config_path, self.overrides, self.env)
        self.notifier = Notifier.from_environment(self.env)
        self._wake = threading.Event()
        self._stop_requested = False
        self._stop_source = ""
        self._reload_requested = False
        self._fade_started: float | None = None
        self._fade_done_frame: int | None = None
        self.engine: Any = None
        self.player: Any = None
        self.supervisor: Any = None
        self.view: Any = None
        self.surface: Any = None
        self.model_thread: Any = None
        self._ceiling_dbtp: float | None = None
        self._remembered: str | None = None
        self._silent_since: float | None = None
        self._wake_mark: int | None = None
        self._last_output_state = ""

    # Requests (signal handlers, OSC threads) --------------------------------------

    def request_stop(self, source: str = "/stop") -> float:
        """Begin the fade-out (from a signal or ``/stop``); returns its length."""
        if not self._stop_requested:
            self._stop_source = source
            self._stop_requested = True
        self._wake.set()
        return float(self.config.fade_out_s)

    def request_reload(self) -> None:
        self._reload_requested = True
        self._wake.set()

    def _on_signal(self, signum: int, frame: object) -> None:
        if signum == signal.SIGHUP:
            self.request_reload()
        else:
            self.request_stop(signal.Signals(signum).name)

    # Start ---------------------------------------------------------------------------

    def _load_first_scene(self) -> None:
        from engine.scenes.player import ScenePlayer

        config = self.config
        self.player = ScenePlayer(
            self.engine,
            lookahead_s=LOOKAHEAD_S,
            volume_cap_db=VOLUME_MAX_GAIN_DB,
            # The model loads on the model thread, once the output plays.
            defer_model_load=True,
            on_error=lambda message: log.warning("%s", message),
        )
        try:
            path = resolve_scene(config.scene, config.scene_dirs)
            self.player.load(path)
        except (SceneError, ValueError, OSError) as error:
            if not config.origin("scene").startswith("last played"):
                raise DaemonError(f"{error}".replace("\n", "; ")) from None
            log.warning(
                "the last scene played does not load (%s); playing %s",
                str(error).replace("\n", "; "),
                DEFAULT_SCENE,
            )
            self.player.load(resolve_scene(DEFAULT_SCENE, config.scene_dirs))
        log.info(
            "scene %s (%s)", self.player.scene["name"], self.player.status()["file"]
        )

    def _start_osc(self) -> None:
        from engine.control.osc_surface import OscSettings, OscSurface
        from engine.scenes.library import SCENES_DIR

        config = self.config
        settings = OscSettings(
            host=config.osc_host,
            port=config.osc_port,
            prefix=config.osc_prefix,
            hr_bridge=config.osc_hr_bridge,
        )
        surface = OscSurface(
            self.player,
            settings,
            live=self.view,
            clock=self.view.frame_clock(self.engine),
            scene_folders=[*config.scene_dirs, SCENES_DIR],
            on_stop=self.request_stop,
            extra_status=self._add_output_status,
        )
        try:
            surface.start()
        except (OSError, ValueError) as error:
            raise DaemonError(
                f"OSC on {config.osc_host}:{config.osc_port}: {error}"
            ) from None
        self.surface = surface
        log.info(
            "OSC on %s:%d (UDP and TCP), prefix %s",
            config.osc_host,
            surface.port,
            config.osc_prefix,
        )

    def _add_output_status(self, snapshot: dict[str, Any]) -> None:
        status = self.supervisor.status()
        outage_s = 0.0
        if status.lost_since is not None:
            outage_s = time.monotonic() - status.lost_since
        snapshot["output"] = {
            "state": status.state.value,
            "device": "default" if status.device is None else status.device,
            "outages": status.outages,
            "outage_s": round(outage_s, 3),
            "retries": status.retries,
            "last_error": status.last_error or "",
        }
        # One line for monitors (engine/control/monitor_view.py shows it).
        if status.state.value == "lost":
            snapshot["device"] = f"lost for {outage_s:.1f} s, retrying"
        elif status.state.value == "paused":
            snapshot["device"] = "paused (silent after the sleep timer)"
        else:
            snapshot["device"] = status.state.value
        snapshot["pid"] = os.getpid()

    # Levels ----------------------------------------------------------------------------

    def _master_value(self, param: str) -> float:
        from engine.dsp.layout import P_CURRENT

        master = self.engine.master
        return float(master.params[P_CURRENT, master.param("volume", param).column])

    def _apply_caps(self) -> None:
        """Limiter ceiling at the cap for the playing scene (ramped), or at the
        scene's own ``master.ceiling_dbtp`` when that is lower."""
        scene = self.player.scene
        sleep = is_sleep_scene(scene)
        cap = self.config.volume_cap_for(sleep)
        # A scene may ask for a lower ceiling of its own; never a higher one.
        cap = min(cap, scene.get("master", {}).get("ceiling_dbtp", cap))
        ceiling = max(cap, LIMITER_MIN_CEILING_DBTP)
        if ceiling == self._ceiling_dbtp:
            return
        first = self._ceiling_dbtp is None
        self.engine.ramp(
            "master.limiter", "ceiling_dbtp", ceiling, 0.0 if first else CAP_RAMP_S
        )
        self._ceiling_dbtp = ceiling
        kind = "a sleep scene" if sleep else "the scene"
        log.info("volume cap %.1f dBFS peak (%s)", ceiling, kind)

    # Main loop ---------------------------------------------------------------------------

    def run(self) -> int:
        """Run until stopped; returns the exit status."""
        config = self.config
        setup_logging(config.log_level)
        # Before the daemon's threads start: engine/daemon/malloc_arenas.py.
        use_one_malloc_arena()
        try:
            lock = InstanceLock.acquire()
        except AlreadyRunning as error:
            log.error("%s", error)
            return EXIT_FAILED
        previous = {
            s: signal.signal(s, self._on_signal)
            for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        }
        try:
            return self._run()
        except DaemonError as error:
            log.error("%s", error)
            return EXIT_FAILED
        finally:
            self._shut_down()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self.notifier.close()
            lock.release()

    def _run(self) -> int:
        from engine.daemon.live_view import SupervisedOutput
        from engine.daemon.output_supervisor import OutputState, OutputSupervisor
        from engine.rt.engine import Engine

        config = self.config
        log.info(
            "starting (pid %d; config %s)",
            os.getpid(),
            config.config_file or "defaults",
        )
        self.notifier.status("loading the scene")
        self.engine = Engine(sample_rate=config.sample_rate)
        self._load_first_scene()
        self._apply_caps()
        self._remember()
        self.supervisor = OutputSupervisor(
            self.engine, device=config.device, block_size=config.block_size
        )
        self.view = SupervisedOutput(self.supervisor)
        self.supervisor.start()
        from engine.model.control_loop import ModelThread

        # Scenes with a model (and those OSC loads later) adapt from here on.
        self.model_thread = ModelThread(
            self.player, resting=lambda: self.supervisor.paused
        ).start()
        if config.osc_enabled:
            self._start_osc()
        deadline = time.monotonic() + READY_WAIT_S
        while (
            self.supervisor.status().state != OutputState.PLAYING
            and time.monotonic() < deadline
            and not self._stop_requested
        ):
            self._wake.wait(0.02)
        self.notifier.ready(self._status_line())
        log.info("ready: %s", self._status_line())
        log.debug(
            "threads: %s",
            ", ".join(f"{t.name}={t.native_id}" for t in threading.enumerate()),
        )

        watchdog_s = watchdog_interval_s(self.env)
        ping_every_s = (watchdog_s or WATCHDOG_DEFAULT_S) / 2
        last_ping = 0.0
        while True:
            # Resting after the sleep timer, the loop only looks for OSC.
            self._wake.wait(IDLE_TICK_S if self.supervisor.paused else TICK_S)
            self._wake.clear()
            now = time.monotonic()
            if self._stop_requested:
                if self._fade_started is None:
                    self._begin_fade()
                if self._fade_finished(now):
                    break
            elif self._reload_requested:
                self._reload_requested = False
                self._reload()
            else:
                self._idle_or_wake(now)
                self._remember()
                self._apply_caps()  # an OSC /scene may have changed the scene
            self._note_output_state()
            due = watchdog_s is not None and now - last_ping >= ping_every_s
            if due and self._threads_alive():
                self.notifier.watchdog()
                last_ping = now
        log.info("stopped (%s)", self._stop_source)
        return EXIT_OK

    def _threads_alive(self) -> bool:
        # A hung supervisor or a dead OSC server is what the watchdog is for:
        # systemd restarts a daemon that stops pinging.
        supervisor_alive = self.supervisor.alive
        osc_alive = self.surface is None or self.surface.server.running
        return supervisor_alive and osc_alive

    def _status_line(self) -> str:
        status = self.supervisor.status() if self.supervisor else None
        scene = self.player.scene["name"] if self.player else "-"
        if status is None:
            return f"starting {scene}"
        state = status.state.value
        if state == "playing":
            return f"playing {scene}"
        if state == "lost":
            return f"{scene}: audio device lost, retrying ({status.last_error})"
        if state == "paused":
            return f"{scene}: silent after the sleep timer (stream closed)"
        if state == "starting":
            return f"{scene}: waiting for the audio device ({status.last_error})"
        return f"{scene}: {state}"

    def _note_output_state(self) -> None:
        state = self.supervisor.status().state.value
        if state != self._last_output_state:
            self._last_output_state = state
            self.notifier.status(self._status_line())

    def _remember(self) -> None:
        status = self.player.status()
        file = status.get("file")
        if file and file != self._remembered:
            self._remembered = file
            try:
                remember_scene(file, self.config.state_dir)
            except (OSError, ValueError) as error:
                log.warning("cannot record the last scene: %s", error)

    # Sleep: close the stream while silent ----------------------------------------------

    def _wake_count(self) -> int:
        if self.surface is None:
            return 0
        counts = self.surface.api.counters()
        # Status queries and subscriptions look, they do not ask for sound.
        return counts["applied"] - counts["status_replies"] + counts["scene_loads"]

    def _silent_for_good(self) -> bool:
        return output_silent_for_good(self.engine, self.config.block_size)

    def _idle_or_wake(self, now: float) -> None:
        if self.supervisor.paused:
            if self._wake_count() != self._wake_mark:
                log.info("woken by OSC: opening the output again")
                self._silent_since = None
                self.supervisor.resume()
            return
        from engine.daemon.output_supervisor import OutputState

        if self.supervisor.status().state != OutputState.PLAYING:
            self._silent_since = None
            return
        if not self._silent_for_good():
            self._silent_since = None
            return
        if self._silent_since is None:
            self._silent_since = now
        elif now - self._silent_since >= IDLE_AFTER_S:
            log.info("silent after the sleep timer: closing the output until OSC")
            self._wake_mark = self._wake_count()
            self.supervisor.pause()

    # Stop ---------------------------------------------------------------------------------

    def _begin_fade(self) -> None:
        from engine.daemon.output_supervisor import OutputState

        fade_s = float(self.config.fade_out_s)
        self._fade_started = time.monotonic()
        self.notifier.stopping(f"fading out over {fade_s:g} s")
        log.info("%s: fading out over %g s", self._stop_source, fade_s)
        engine = self.engine
        # Nothing from OSC may bring the sound back during the fade.
        self.player.volume_cap_db = -120.0
        if self.supervisor.status().state != OutputState.PLAYING:
            self._fade_done_frame = None  # nothing plays: nothing to fade
            return
        rate = engine.sample_rate
        start = engine.frame + round(LOOKAHEAD_S * rate)
        fade_frames = round(fade_s * rate)
        gain_db = self._master_value("gain_db")
        if fade_frames > 0:
            target_db = max(gain_db - FADE_DEPTH_DB, -120.0)
            engine.ramp("master.volume", "gain_db", target_db, fade_s, frame=start)
        engine.ramp("master.volume", "level", 0.0, TAIL_S, frame=start + fade_frames)
        engine.pump(round((LOOKAHEAD_S + 0.01) * rate))
        self._fade_done_frame = start + fade_frames + round((TAIL_S + SETTLE_S) * rate)

    def _fade_finished(self, now: float) -> bool:
        assert self._fade_started is not None
        if self._fade_done_frame is None:
            return True
        if self.engine.frame >= self._fade_done_frame:
            return True
        # The output may be lost mid-fade: the engine's clock then stands
        # still, so the wall clock bounds the wait.
        limit_s = self.config.fade_out_s + LOOKAHEAD_S + TAIL_S + SETTLE_S + 0.2
        return now - self._fade_started > limit_s

    def _shut_down(self) -> None:
        started = time.monotonic()
        if self.surface is not None:
            self.surface.stop()
            self.surface = None
        osc_s = time.monotonic() - started
        if self.model_thread is not None:
            self.model_thread.stop()
            self.model_thread = None
        if self.supervisor is not None:
            self.supervisor.stop(timeout_s=1.0)
        if self.player is not None:
            self.player.stop_watching()
        log.debug(
            "shut down in %.0f ms (OSC %.0f ms)",
            1000 * (time.monotonic() - started),
            1000 * osc_s,
        )

    # Reload (SIGHUP) ---------------------------------------------------------------------

    def _reload(self) -> None:
        self.notifier.reloading()
        old = self.config
        try:
            new = load_config(self.config_path, self.overrides, self.env)
        except (SceneError, ValueError, OSError) as error:
            text = str(error).replace("\n", "; ")
            log.error("reload: %s; the running config stays", text)
            self.notifier.ready(self._status_line())
            return
        if new.log_level != old.log_level:
            setup_logging(new.log_level)
        for name in ("device", "sample_rate", "block_size"):
            if getattr(new, name) != getattr(old, name):
                log.warning(
                    "reload: %s changed to %s: takes effect at the next start",
                    name,
                    getattr(new, name),
                )
        self.config = new
        if self.supervisor.paused:  # a reload is a wish to hear it again
            self._silent_since = None
            self.supervisor.resume()
        self._reload_scene(old, new)
        self._apply_caps()
        osc_fields = (
            "osc_enabled",
            "osc_host",
            "osc_port",
            "osc_prefix",
            "osc_hr_bridge",
        )
        if any(getattr(new, f) != getattr(old, f) for f in osc_fields):
            self._restart_osc(old)
        log.info("reloaded the config (%s)", new.config_file or "defaults")
        self.notifier.ready(self._status_line())

    def _reload_scene(self, old: DaemonConfig, new: DaemonConfig) -> None:
        # The scene changes only when the config names another one: a scene
        # chosen over OSC since the start stays unless the file says otherwise.
        named = not new.origin("scene").startswith("last played")
        if new.scene == old.scene or not named:
            if self.player.reload():
                log.info("reload: scene %s read again", self.player.scene["name"])
            return
        try:
            path = resolve_scene(new.scene, new.scene_dirs)
            self.player.load(path)
        except (SceneError, ValueError, OSError) as error:
            text = str(error).replace("\n", "; ")
            log.error("reload: scene %s: %s; the playing scene stays", path, text)
            return
        log.info("reload: scene %s", self.player.scene["name"])
        if self.surface is not None:
            self.surface.api.refresh_addresses()

    def _restart_osc(self, old: DaemonConfig) -> None:
        if self.surface is not None:
            self.surface.stop()
            self.surface = None
        if not self.config.osc_enabled:
            log.info("reload: OSC off")
            return
        try:
            self._start_osc()
        except DaemonError as error:
            log.error("reload: %s; back to the old OSC settings", error)
            self.config.osc_host, self.config.osc_port = old.osc_host, old.osc_port
            self.config.osc_prefix = old.osc_prefix
            self.config.osc_hr_bridge = old.osc_hr_bridge
            try:
                self._start_osc()
            except DaemonError as again:
                log.error("OSC is off: %s", again)


def run_daemon(
    config_path: str | None = None, overrides: Mapping[str, Any] | None = None
) -> int:
    """Run the daemon in this process (the main thread); returns the exit
    status. A config that does not load raises ``SceneError`` (one line)."""
    return Daemon(config_path, overrides).run()
