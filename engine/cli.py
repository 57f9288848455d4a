"""The ``soundscape`` command.

    soundscape devices
    soundscape scenes
    soundscape validate FILE...
    soundscape render SCENE --seconds N -o FILE [--seed S] [--sample-rate R]
                      [--block-size B] [--set INPUT=VALUE ...] [--state S]
                      [--script FILE] [--trace FILE] [--trace-hz 20] [--plot PNG]
    soundscape play SCENE [--seconds N] [--device D] [--block-size B]
                    [--stats FILE] [--set INPUT=VALUE ...] [--state S]
                    [--no-osc] [--osc-host H] [--osc-port 9000] [--osc-allow CIDR]
                    [--osc-prefix /soundscape] [--hr-bridge all] [--aliases FILE]
                    [--monitor] [--trace FILE] [--trace-hz 20]
    soundscape monitor [--host H] [--port 9000] [--prefix /soundscape]
    soundscape trace plot TRACE -o FILE.png
    soundscape config show [--config PATH] [daemon flags...]
    soundscape service install|uninstall [--config PATH]
    soundscape daemon [--config PATH] [daemon flags...]
    soundscape status [--json] | stop | scene NAME [--fade S] | volume DB [--ramp S]
    soundscape model check MODEL.onnx [--scene S]
    soundscape hr-sim [--profile P] [--format F] [--host H] [--port N]
                      [--prefix /soundscape] [--seconds N] [--speed X]
                      [--seed S] [--dropouts] [--ectopic-per-min R]

SCENE is a scene file (``path/to/scene.yaml``), the name of one in ``scenes/``,
or a built-in demo graph. While ``play`` runs, saving the scene file crossfades
the edit in (a broken edit is reported and the old version plays on). Errors are
one line on stderr and a non-zero exit, never a traceback.

Audio thread: no.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from engine.demos import DEMOS
from engine.naming import did_you_mean
from engine.scenes.library import find_scene, scene_files

if TYPE_CHECKING:
    from engine.rt.engine import Engine
    from engine.scenes.player import ScenePlayer

WARMUP_S = 0.5
END_FADE_S = 0.3
# Quantized changes are placed at least this far ahead of the audio clock live.
LOOKAHEAD_S = 0.05
# play --monitor redraws this often (the status is cheap; the eye is slow).
MONITOR_PERIOD_S = 0.1


class CliError(Exception):
    """An error to print as one line before exiting with status 1."""


def start_scene(
    engine: Engine,
    name: str,
    input_values: dict[str, float] | None = None,
    state: str | None = None,
    lookahead_s: float = 0.0,
    defer_model_load: bool = False,
) -> ScenePlayer | None:
    """Load a scene onto ``engine``: a file path or a shipped scene's name (with
    a :class:`ScenePlayer`, returned), or a built-in demo graph (None).
    ``defer_model_load``: see :class:`ScenePlayer` (live play)."""
    from engine.scenes.player import ScenePlayer

    if find_scene(name) is not None:
        player = ScenePlayer(
            engine, lookahead_s=lookahead_s, defer_model_load=defer_model_load
        )
        player.load(name, input_values=input_values, state=state)
        return player
    builder = DEMOS.get(name)
    if builder is None:
        known = sorted({*scene_files(), *DEMOS})
        raise CliError(
            f"unknown scene {name!r}{did_you_mean(name, known)}; "
            f"available: {', '.join(known)}"
        )
    if input_values or state:
        raise CliError(f"{name} is a built-in demo: it has no inputs or states")
    engine.load(builder())
    return None


def _input_setting(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not sep or not name or not math.isfinite(number):
        raise argparse.ArgumentTypeError(
            f"expected INPUT=NUMBER (for example danger=0.7), not {text!r}"
        )
    return name, number


def cmd_scenes(args: argparse.Namespace) -> int:
    from engine.scenes.format import check_scene
    from engine.scenes.yaml_source import load_yaml

    for name, path in scene_files().items():
        try:
            source = load_yaml(path.read_text(encoding="utf-8"), str(path))
            description = check_scene(source)["description"]
        except (OSError, ValueError) as error:
            description = f"(broken: {error})"
        print(f"{name:<14} {description}")
    for name, builder in sorted(DEMOS.items()):
        if name not in scene_files():
            doc = (builder.__doc__ or "").strip().splitlines()[0]
            print(f"{name:<14} {doc} (built-in demo)")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from engine.scenes.errors import SceneError
    from engine.scenes.format import load_scene_file, scene_json_schema

    if args.schema:
        print(json.dumps(scene_json_schema(), indent=2))
        return 0
    if not args.files:
        raise CliError("give scene files to validate, or --schema")
    failed = 0
    for file in args.files:
        try:
            load_scene_file(file)
        except SceneError as error:
            print(f"{error}".replace("\n", "; "), file=sys.stderr)
            failed += 1
        else:
            print(f"{file}: ok")
    return 1 if failed else 0


def _progress(done: int, total: int, started: float) -> None:
    width = 30
    filled = int(width * done / max(total, 1))
    elapsed = time.monotonic() - started
    sys.stderr.write(
        f"\r[{'#' * filled}{'.' * (width - filled)}] {100 * done / total:5.1f}% "
        f"{elapsed:5.1f} s"
    )
    sys.stderr.flush()


def cmd_devices(args: argparse.Namespace) -> int:
    from engine.rt.audio_io import list_output_devices

    devices = list_output_devices()
    if not devices:
        print("no output devices (start a JACK server or connect a sound card)")
        return 0
    print(f"{'index':>5}  {'name':<40} {'host api':<12} {'ch':>3} {'rate':>7}")
    for d in devices:
        print(
            f"{d['index']:>5}  {d['name'][:40]:<40} {d['host_api'][:12]:<12} "
            f"{d['max_output_channels']:>3} {d['default_sample_rate']:>7.0f}"
        )
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    import numpy as np
    import soundfile as sf

    from engine.rt.engine import Engine, check_audio_settings

    if args.seconds <= 0:
        raise CliError(f"--seconds must be positive, not {args.seconds}")
    path = Path(args.output)
    if path.suffix.lower() not in (".wav", ".flac"):
        raise CliError(f"{path}: output must end in .wav or .flac")
    check_audio_settings(args.sample_rate, args.block_size)
    actions = []
    if args.script:
        from engine.scenes.script import load_script

        actions = load_script(args.script)
    engine = Engine(sample_rate=args.sample_rate, seed=args.seed)
    settings, clock = _split_clock_settings(args.scene, dict(args.set))
    player = start_scene(engine, args.scene, settings, args.state)
    if player is not None:
        # A model scene renders with a fixed time of day (reproducible).
        from engine.model.control_loop import DEFAULT_OFFLINE_TIME_OF_DAY_H

        player.model_clock = {"time_of_day_h": DEFAULT_OFFLINE_TIME_OF_DAY_H, **clock}
    if actions and player is None:
        raise CliError(f"{args.scene} is a built-in demo: a script needs a scene")
    # FLAC holds integers only; WAV keeps the engine's float output exactly.
    subtype = "PCM_24" if path.suffix.lower() == ".flac" else "FLOAT"
    try:
        out_file = sf.SoundFile(
            path,
            "w",
            samplerate=args.sample_rate,
            channels=engine.channels,
            subtype=subtype,
        )
    except (OSError, RuntimeError, sf.LibsndfileError) as exc:
        raise CliError(f"cannot write {path}: {exc}") from None
    total = round(args.seconds * args.sample_rate)
    # About a second at a time keeps memory flat; whole blocks, so a chunk
    # never cuts a block (a traced render stops on block boundaries too).
    chunk = args.block_size * max(1, args.sample_rate // args.block_size)
    started = time.monotonic()
    peak = 0.0
    done = 0

    def render(n_frames: int) -> None:
        nonlocal peak, done
        while n_frames > 0:
            n = min(chunk, n_frames)
            audio = engine.render(n, block_size=args.block_size)
            peak = max(peak, float(np.max(np.abs(audio))))
            out_file.write(audio)
            done += n
            n_frames -= n
            if not args.quiet:
                _progress(done, total, started)

    recorder = _trace_recorder(args, player, "offline")
    with out_file:
        if player is not None:
            from engine.model.control_loop import render_with_model
            from engine.scenes.script import run_script

            def render_ticked(n_frames: int) -> None:
                render_with_model(player, n_frames, render, args.block_size)

            if recorder is not None:
                from engine.control.trace import TickedRender

                ticked = TickedRender(render_ticked, recorder, args.block_size)
                run_script(player, actions, total, ticked)
                ticked.finish()
                recorder.close()
            else:
                run_script(player, actions, total, render_ticked)
        else:
            render(total)
    if not args.quiet:
        sys.stderr.write("\n")
    elapsed = time.monotonic() - started
    print(
        f"wrote {path} ({args.seconds:g} s, {args.sample_rate} Hz, peak "
        f"{20 * np.log10(max(peak, 1e-12)):.1f} dBFS) in {elapsed:.1f} s "
        f"({args.seconds / max(elapsed, 1e-9):.0f}x real time)"
    )
    if recorder is not None:
        _finish_trace(args, recorder)
    return 0


def _trace_recorder(args: argparse.Namespace, player: ScenePlayer | None, mode: str):
    """A TraceRecorder for ``--trace`` (or, for ``--plot`` alone, in memory);
    None when neither is asked for."""
    plot = getattr(args, "plot", None)
    if args.trace is None and plot is None:
        return None
    if player is None:
        raise CliError(
            f"{args.scene} is a built-in demo: it has no inputs or parameters to "
            "trace (--trace and --plot need a scene)"
        )
    if plot is not None and Path(plot).suffix.lower() != ".png":
        raise CliError(f"{plot}: --plot writes a PNG file (FILE.png)")
    import io

    from engine.control.trace import TraceRecorder

    target = args.trace if args.trace is not None else io.StringIO()
    return TraceRecorder(target, player, tick_hz=args.trace_hz, mode=mode)


def _finish_trace(args: argparse.Namespace, recorder) -> None:
    if args.trace is not None:
        print(f"wrote {args.trace} ({recorder.n_ticks} ticks at {args.trace_hz:g} Hz)")
    if getattr(args, "plot", None) is None:
        return
    from engine.control.trace import load_trace, parse_trace

    if args.trace is not None:
        header, ticks = load_trace(args.trace)
    else:
        header, ticks = parse_trace(recorder.file.getvalue(), "<trace>")
    _plot(header, ticks, args.plot)


def _plot(header, ticks, path: str) -> None:
    from engine.control.trace_plot import PlotUnavailable, plot_trace

    try:
        width, height = plot_trace(header, ticks, path)
    except PlotUnavailable as exc:
        raise CliError(str(exc)) from None
    print(f"wrote {path} ({width}x{height} px)")


def cmd_trace_plot(args: argparse.Namespace) -> int:
    from engine.control.trace import load_trace

    if Path(args.output).suffix.lower() != ".png":
        raise CliError(f"{args.output}: the plot is a PNG file (FILE.png)")
    header, ticks = load_trace(args.trace)
    _plot(header, ticks, args.output)
    return 0


def cmd_monitor(args: argparse.Namespace) -> int:
    from engine.control.monitor_client import NoAnswer, StatusSubscriber
    from engine.control.monitor_view import MonitorView

    try:
        subscriber = StatusSubscriber(
            args.host, args.port, prefix=args.prefix, rate_hz=args.rate_hz
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None
    view = MonitorView(sys.stdout)
    with subscriber:
        try:
            status = subscriber.first_status(args.timeout)
        except NoAnswer as exc:
            raise CliError(str(exc)) from None
        started = last_s = time.monotonic()
        try:
            while args.seconds is None or time.monotonic() - started < args.seconds:
                view.update(status)
                fresh = subscriber.next_status(0.5)
                if fresh is not None:
                    status, last_s = fresh, time.monotonic()
                else:
                    status = dict(status, stale_s=time.monotonic() - last_s)
        except KeyboardInterrupt:
            pass
        finally:
            view.close()
    return 0


def _split_clock_settings(
    scene: str, settings: dict[str, float]
) -> tuple[dict[str, float], dict[str, float]]:
    """``--set`` values for the model's clock sources (``time_of_day_h``...)
    that the scene has no input for, apart from the scene's inputs."""
    if not settings:
        return {}, {}  # nothing to split: spare reading the scene file twice
    from engine.scenes.format import CLOCK_SOURCES

    path = find_scene(scene)
    inputs: set[str] = set()
    if path is not None and path.is_file():
        from engine.scenes.yaml_source import load_yaml

        try:
            data = load_yaml(path.read_text(encoding="utf-8"), str(path)).data
            inputs = set((data or {}).get("inputs") or {})
        except (OSError, ValueError):
            pass  # the scene's own load reports it
    clock = {
        k: v for k, v in settings.items() if k in CLOCK_SOURCES and k not in inputs
    }
    return {k: v for k, v in settings.items() if k not in clock}, clock


def cmd_play(args: argparse.Namespace) -> int:
    # Importing sounddevice initialises PortAudio, which lists the devices (and
    # connects to a JACK server). A process that imported it earlier (a test
    # that has since started a JACK server, a script) lists them again below;
    # one that imports it now need not (a second JACK connection: ~0.1 s).
    portaudio_fresh = "sounddevice" not in sys.modules
    from engine.rt.audio_io import AudioDeviceError, refresh_devices
    from engine.rt.core import C_NONFINITE
    from engine.rt.engine import Engine, silent_graph
    from engine.rt.live import LivePlayer
    from engine.rt.stats import host_steal_ms

    engine = Engine(sample_rate=args.sample_rate, seed=args.seed)
    settings, clock = _split_clock_settings(args.scene, dict(args.set))
    # A scene's model loads on the model thread once the stream plays: the
    # first audio does not wait for onnxruntime (engine/model/control_loop.py).
    scenes = start_scene(
        engine,
        args.scene,
        settings,
        args.state,
        lookahead_s=LOOKAHEAD_S,
        defer_model_load=True,
    )
    model_thread = None
    if scenes is not None:
        scenes.model_clock = clock  # what is not set runs on the wall clock
        scenes.watch()  # saving the scene file crossfades the edit in
        from engine.model.control_loop import ModelThread

        model_thread = ModelThread(scenes)
    if not portaudio_fresh:
        refresh_devices()
    try:
        player = LivePlayer(engine, device=args.device, block_size=args.block_size)
    except AudioDeviceError as exc:
        raise CliError(str(exc).replace("\n", "; ")) from None
    player.start()
    started = time.monotonic()  # the stream's time counts from here
    if model_thread is not None:
        model_thread.start()  # loads the model beside the OSC start below
    surface = _start_osc(args, scenes, player) if not args.no_osc else None
    monitor = _Monitor(scenes, player, surface) if args.monitor else None
    ticker = None
    recorder = _trace_recorder(args, scenes, "live")
    if recorder is not None:
        from engine.control.trace import TraceTicker

        ticker = TraceTicker(recorder).start()
    if model_thread is None and surface is not None:
        from engine.model.control_loop import ModelThread

        # A demo started: OSC's /scene may still load a scene with a model.
        model_thread = ModelThread(surface.player).start()
    steal_before = host_steal_ms()
    warm = None
    try:
        while args.seconds is None or time.monotonic() - started < args.seconds:
            time.sleep(0.05)
            if warm is None and time.monotonic() - started >= WARMUP_S:
                warm = player.snapshot()
            if monitor is not None:
                monitor.tick()
    except KeyboardInterrupt:
        pass
    finally:
        if ticker is not None:
            ticker.stop()
            recorder.close()
        if monitor is not None:
            monitor.view.close()
        if model_thread is not None:
            model_thread.stop()
        if surface is not None:
            surface.stop()
    # Fade to silence before stopping, so the end never clicks.
    engine.load(silent_graph(), fade_s=END_FADE_S)
    time.sleep(END_FADE_S + 0.05)
    elapsed = time.monotonic() - started
    player.stop()
    final = player.snapshot()
    expected = elapsed * engine.sample_rate / args.block_size
    after_warmup = final.output_underflows - (warm.output_underflows if warm else 0)
    report = {
        "scene": args.scene,
        "sample_rate": engine.sample_rate,
        "block_size": args.block_size,
        "seconds": round(elapsed, 3),
        "callbacks_expected": round(expected),
        "callbacks_run": final.callbacks,
        "underflows": final.output_underflows,
        "underflows_after_warmup": after_warmup,
        "callback_us_max": round(final.callback_us_max, 1),
        "callback_us_mean": round(final.callback_us_mean, 1),
        "callback_cpu_us_max": round(final.callback_cpu_us_max, 1),
        # Callbacks whose own CPU time overran their frames (the engine's).
        "overruns": final.cpu_over_budget,
        "block_budget_us": round(1e6 * args.block_size / engine.sample_rate, 1),
        "nonfinite_samples": int(engine.ctl[C_NONFINITE]),
        # CPU a virtual machine's host took meanwhile: deadlines it cost are
        # the machine's, not the engine's.
        "host_steal_ms": round(host_steal_ms() - steal_before, 1),
    }
    if surface is not None:
        report["osc"] = surface.counters()
    if args.stats:
        try:
            Path(args.stats).write_text(json.dumps(report, indent=2) + "\n")
        except OSError as exc:
            raise CliError(f"cannot write {args.stats}: {exc}") from None
    if recorder is not None:
        _finish_trace(args, recorder)
    print(
        f"played {args.scene} for {elapsed:.1f} s: {final.callbacks} callbacks "
        f"({100 * final.callbacks / max(expected, 1):.1f}% of expected), "
        f"{final.output_underflows} underflows ({after_warmup} after warm-up), "
        f"max callback {final.callback_us_max:.0f} us "
        f"({final.callback_cpu_us_max:.0f} us of CPU), "
        f"{final.cpu_over_budget} overruns"
    )
    return 0


class _Monitor:
    """``play --monitor``: the live view of this process's status, redrawn
    about every MONITOR_PERIOD_S from the main loop."""

    def __init__(self, scenes: ScenePlayer | None, live, surface) -> None:
        from engine.control.monitor_view import MonitorView
        from engine.control.status import StatusReport
        from engine.scenes.player import ScenePlayer

        if surface is not None:
            self.report = surface.report  # the same one /status answers with
        else:
            if scenes is None:  # a built-in demo: levels and CPU still show
                scenes = ScenePlayer(live.engine, lookahead_s=LOOKAHEAD_S)
            self.report = StatusReport(scenes, live)
        self.view = MonitorView(sys.stdout)
        self.drawn_s = 0.0

    def tick(self) -> None:
        now_s = time.monotonic()
        if now_s - self.drawn_s >= MONITOR_PERIOD_S:
            self.drawn_s = now_s
            self.view.update(self.report.snapshot())


def cmd_config_show(args: argparse.Namespace) -> int:
    from engine.daemon.config import load_config, overrides_from_args

    print(load_config(args.config, overrides_from_args(args)).format())
    return 0


def cmd_service(args: argparse.Namespace) -> int:
    from engine.daemon import systemd_unit
    from engine.daemon.config import load_config

    if args.action == "install":
        # The config is checked now, not at the first start under systemd.
        config = load_config(args.config)
        result = systemd_unit.install(args.config, fade_out_s=config.fade_out_s)
    else:
        result = systemd_unit.uninstall()
    print(result.text())
    return 0 if result.ok else 1


def cmd_daemon(args: argparse.Namespace) -> int:
    import logging
    import os

    from engine.daemon.config import overrides_from_args
    from engine.daemon.main import run_daemon

    code = run_daemon(args.config, overrides_from_args(args))
    # Everything is closed by now (stream, PortAudio, OSC, lock). Skipping the
    # interpreter's own clean-up keeps the exit inside the fade's time budget
    # (it took 0.5-1 s with Numba loaded) and away from native threads that an
    # outage may have left inside abandoned PortAudio copies.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def cmd_control(args: argparse.Namespace) -> int:
    """``status``, ``stop``, ``scene`` and ``volume``: OSC to the daemon."""
    from engine.daemon.config import load_config
    from engine.daemon.control_client import (
        DaemonClient,
        DaemonRefused,
        NoDaemon,
        format_status,
    )

    overrides = {
        "osc_host": args.config_osc_host,
        "osc_port": args.config_osc_port,
        "osc_prefix": args.config_osc_prefix,
    }
    config = load_config(args.config, overrides, use_last_scene=False)
    host = "127.0.0.1" if config.osc_host in ("0.0.0.0", "::") else config.osc_host
    try:
        with DaemonClient(host, config.osc_port, config.osc_prefix, args.timeout) as c:
            if args.command == "status":
                status = c.status()
                print(json.dumps(status) if args.json else format_status(status))
            elif args.command == "volume":
                used, notes = c.volume(args.gain_db, args.ramp)
                for note in notes:
                    print(f"note: {note}", file=sys.stderr)
                print(f"volume {used:g} dB (over {args.ramp:g} s)")
            elif args.command == "scene":
                c.scene(args.name, args.fade)
                print(f"playing {args.name}")
            else:
                fade_s = c.stop()
                print(f"the daemon fades out over {fade_s:g} s", flush=True)
                if not args.no_wait and not c.wait_gone(fade_s + 5.0):
                    raise CliError("the daemon still answers after its fade")
                if not args.no_wait:
                    print("stopped")
    except (NoDaemon, DaemonRefused) as error:
        raise CliError(str(error)) from None
    return 0


def _start_osc(args: argparse.Namespace, scenes: ScenePlayer | None, live) -> object:
    """The OSC control surface for ``play`` (engine/control/osc_surface.py)."""
    from engine.control.osc_surface import OscSettings, OscSurface
    from engine.scenes.errors import SceneError
    from engine.scenes.player import ScenePlayer

    if scenes is None:  # a built-in demo: volume, status and /scene still work
        scenes = ScenePlayer(
            live.engine, lookahead_s=LOOKAHEAD_S, defer_model_load=True
        )
    settings = OscSettings(
        host=args.osc_host,
        port=args.osc_port,
        prefix=args.osc_prefix,
        hr_bridge=args.hr_bridge,
        aliases_file=args.aliases,
        allow_networks=tuple(args.osc_allow),
    )
    try:
        surface = OscSurface(scenes, settings, live=live).start()
    except (OSError, ValueError, SceneError) as exc:
        live.stop()
        raise CliError(f"OSC: {exc}".replace("\n", "; ")) from None
    print(
        f"OSC on {settings.host}:{surface.port} (UDP and TCP), prefix "
        f"{settings.prefix}, heart-rate bridges: {settings.hr_bridge}",
        file=sys.stderr,
    )
    return surface


def cmd_hr_sim(args: argparse.Namespace) -> int:
    from engine.sensors.bridges import check_prefix, get_bridge
    from engine.sensors.hr_sim import beats, get_profile, send_beats

    get_profile(args.profile)
    get_bridge(args.format)
    if args.prefix is not None:
        check_prefix(args.prefix)
    if not 0 < args.port < 65536:
        raise CliError(f"--port must be 1..65535, not {args.port}")
    if args.seconds is not None and not args.seconds > 0:
        raise CliError(f"--seconds must be positive, not {args.seconds}")
    stream = beats(
        args.profile,
        args.seed,
        dropouts=args.dropouts,
        ectopic_per_min=args.ectopic_per_min,
    )
    seconds = math.inf if args.seconds is None else args.seconds
    counted = {"beats": 0}

    def until_end():
        for beat in stream:
            if beat.time_s > seconds:
                return
            counted["beats"] += 1
            yield beat

    print(
        f"hr-sim: {args.profile} as {args.format} to {args.host}:{args.port}, "
        f"{args.speed:g}x real time (Ctrl-C stops)",
        file=sys.stderr,
    )
    sent = 0
    try:
        sent = send_beats(
            until_end(),
            args.format,
            args.host,
            args.port,
            prefix=args.prefix,
            speed=args.speed,
        )
    except KeyboardInterrupt:
        pass
    print(f"sent {counted['beats']} beats in {sent} OSC packets")
    return 0


def cmd_model_check(args: argparse.Namespace) -> int:
    from engine.model.check import check_model

    lines, problems = check_model(args.model, args.scene)
    print("\n".join(lines))
    if problems:
        print(f"{problems} problem{'s' if problems > 1 else ''}", file=sys.stderr)
    return 1 if problems else 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def _add_set_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--set",
        type=_input_setting,
        action="append",
        default=[],
        metavar="INPUT=VALUE",
        help="start a scene input at a value (repeatable)",
    )
    command.add_argument("--state", help="start the scene in this state")


def _tick_rate(text: str) -> float:
    from engine.control.trace import check_tick_hz

    try:
        return check_tick_hz(float(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_trace_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--trace",
        metavar="FILE",
        help="record inputs, model outputs, targets and smoothed values per "
        "control tick (JSON lines, engine/control/trace.py)",
    )
    command.add_argument(
        "--trace-hz", type=_tick_rate, default=20.0, help="trace ticks per second"
    )


def _add_osc_options(command: argparse.ArgumentParser) -> None:
    osc = command.add_argument_group("OSC control (docs/osc.md)")
    osc.add_argument("--no-osc", action="store_true", help="run without OSC")
    osc.add_argument("--osc-host", default="127.0.0.1", help="interface to bind")
    osc.add_argument("--osc-port", type=int, default=9000, help="UDP and TCP port")
    osc.add_argument("--osc-prefix", default="/soundscape", help="address prefix")
    osc.add_argument(
        "--osc-allow",
        action="append",
        default=[],
        metavar="CIDR",
        help="source network allowed besides loopback (needed with --osc-host)",
    )
    osc.add_argument(
        "--hr-bridge",
        default="all",
        help="heart-rate bridge presets: all, none, or hrtovrchat, iron-heart, "
        "vrcosc, generic (joined by commas)",
    )
    osc.add_argument("--aliases", metavar="FILE", help="OSC alias table (YAML)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="soundscape", description="Real-time adaptive soundscape engine."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("devices", help="list audio outputs").set_defaults(func=cmd_devices)
    sub.add_parser("scenes", help="list the shipped scenes").set_defaults(
        func=cmd_scenes
    )

    validate = sub.add_parser("validate", help="check scene files")
    validate.add_argument("files", nargs="*", help="scene files (.yaml)")
    validate.add_argument(
        "--schema", action="store_true", help="print the JSON Schema of scene files"
    )
    validate.set_defaults(func=cmd_validate)

    render = sub.add_parser("render", help="render a scene to a WAV or FLAC file")
    render.add_argument("scene", help="scene file, shipped scene or demo name")
    render.add_argument("--seconds", type=float, required=True)
    render.add_argument("-o", "--output", required=True, help="FILE.wav or FILE.flac")
    render.add_argument("--seed", type=int, default=0)
    render.add_argument("--sample-rate", type=int, default=48000)
    render.add_argument("--block-size", type=_positive_int, default=128)
    render.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_set_option(render)
    render.add_argument(
        "--script", help="a YAML list of timed actions (engine/scenes/script.py)"
    )
    _add_trace_options(render)
    render.add_argument(
        "--plot", metavar="FILE.png", help="draw the trace (needs matplotlib)"
    )
    render.set_defaults(func=cmd_render)

    play = sub.add_parser("play", help="play a scene live")
    play.add_argument("scene", help="scene file, shipped scene or demo name")
    play.add_argument("--seconds", type=float, default=None)
    play.add_argument("--device", default=None, help="output device index or name")
    play.add_argument("--block-size", type=_positive_int, default=128)
    play.add_argument("--sample-rate", type=int, default=48000)
    play.add_argument("--seed", type=int, default=0)
    play.add_argument("--stats", default=None, help="write run statistics (JSON)")
    _add_set_option(play)
    _add_osc_options(play)
    play.add_argument(
        "--monitor", action="store_true", help="show a live view in the terminal"
    )
    _add_trace_options(play)
    play.set_defaults(func=cmd_play)

    monitor = sub.add_parser(
        "monitor", help="live view of a playing engine (over OSC, docs/osc.md)"
    )
    monitor.add_argument("--host", default="127.0.0.1", help="the engine's host")
    monitor.add_argument("--port", type=int, default=9000, help="its OSC port")
    monitor.add_argument("--prefix", default="/soundscape", help="address prefix")
    monitor.add_argument("--rate-hz", type=float, default=10.0, help="updates/s")
    monitor.add_argument(
        "--timeout", type=float, default=3.0, help="seconds to wait for an answer"
    )
    monitor.add_argument("--seconds", type=float, default=None, help="default: run")
    monitor.set_defaults(func=cmd_monitor)

    trace = sub.add_parser("trace", help="work with adaptation traces")
    trace_sub = trace.add_subparsers(dest="trace_command", required=True)
    trace_plot = trace_sub.add_parser("plot", help="draw a trace as a PNG")
    trace_plot.add_argument("trace", help="a trace file (--trace of play/render)")
    trace_plot.add_argument("-o", "--output", required=True, help="FILE.png")
    trace_plot.set_defaults(func=cmd_trace_plot)
    from engine.daemon.config import add_config_arguments

    config = sub.add_parser("config", help="the daemon's configuration")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    show = config_sub.add_parser(
        "show", help="print the effective config and where each value came from"
    )
    add_config_arguments(show)
    show.set_defaults(func=cmd_config_show)

    service = sub.add_parser("service", help="the systemd user service")
    service.add_argument("action", choices=("install", "uninstall"))
    service.add_argument("--config", default=None, metavar="PATH")
    service.set_defaults(func=cmd_service)
    daemon = sub.add_parser(
        "daemon", help="run as a background service (config file + flags)"
    )
    add_config_arguments(daemon)
    daemon.set_defaults(func=cmd_daemon)

    def control_parser(name: str, help_text: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help_text)
        command.add_argument("--config", default=None, metavar="PATH")
        command.add_argument("--osc-host", dest="config_osc_host", default=None)
        command.add_argument("--osc-port", dest="config_osc_port", default=None)
        command.add_argument("--osc-prefix", dest="config_osc_prefix", default=None)
        command.add_argument(
            "--timeout", type=float, default=2.0, help="seconds to wait for a reply"
        )
        command.set_defaults(func=cmd_control, command=name)
        return command

    status = control_parser("status", "the daemon's status, once")
    status.add_argument("--json", action="store_true", help="print JSON")
    stop = control_parser("stop", "the daemon fades out and exits")
    stop.add_argument("--no-wait", action="store_true", help="do not wait for exit")
    scene = control_parser("scene", "the daemon crossfades to a scene")
    scene.add_argument("name")
    scene.add_argument("--fade", type=float, default=None, help="seconds")
    volume = control_parser("volume", "the daemon's master volume")
    volume.add_argument("gain_db", type=float, metavar="DB")
    volume.add_argument("--ramp", type=float, default=0.5, help="seconds")
    model = sub.add_parser("model", help="ONNX models of the adaptive loop")
    model_sub = model.add_subparsers(dest="model_command", required=True)
    check = model_sub.add_parser(
        "check", help="explain a model's contract (and how a scene matches it)"
    )
    check.add_argument("model", help="MODEL.onnx")
    check.add_argument("--scene", help="a scene file or shipped scene name")
    check.set_defaults(func=cmd_model_check)

    hr_sim = sub.add_parser(
        "hr-sim", help="send a simulated heart rate over OSC (bridge formats)"
    )
    hr_sim.add_argument("--profile", default="rest", help="rest, stress, ...")
    hr_sim.add_argument("--format", default="generic", help="generic, vrcosc, ...")
    hr_sim.add_argument("--host", default="127.0.0.1")
    hr_sim.add_argument("--port", type=int, default=9000)
    hr_sim.add_argument("--prefix", default=None, help="address prefix")
    hr_sim.add_argument("--seconds", type=float, default=None, help="default: run")
    hr_sim.add_argument("--speed", type=float, default=1.0, help="x real time")
    hr_sim.add_argument("--seed", type=int, default=0)
    hr_sim.add_argument("--dropouts", action="store_true", help="lose the strap")
    hr_sim.add_argument("--ectopic-per-min", type=float, default=0.0)
    hr_sim.set_defaults(func=cmd_hr_sim)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``soundscape`` command."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CliError as exc:
        print(f"soundscape: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        from engine.rt.engine import EngineError

        if isinstance(exc, (EngineError, ValueError, OSError)):
            print(f"soundscape: {exc}".replace("\n", "; "), file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
