"""The soundscape command: render, play, devices, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO_ROOT = Path(__file__).resolve().parent.parent
# The console script pip installs beside the interpreter (what users run); from a
# plain checkout, the same entry point through -m.
_INSTALLED = Path(sys.executable).parent / "soundscape"
COMMAND = (
    [str(_INSTALLED)] if _INSTALLED.exists() else [sys.executable, "-m", "engine.cli"]
)


def soundscape(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [*COMMAND, *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=cwd,
        env=env,
    )


@pytest.mark.parametrize(
    ("suffix", "subtype"), [(".wav", "FLOAT"), (".flac", "PCM_24")]
)
def test_render_writes_the_requested_file(
    tmp_path: Path, suffix: str, subtype: str
) -> None:
    out = tmp_path / f"focus{suffix}"
    result = soundscape(
        "render",
        "focus",
        "--seconds",
        "1.5",
        "-o",
        str(out),
        "--seed",
        "4",
        "--sample-rate",
        "44100",
        "--block-size",
        "256",
    )
    assert result.returncode == 0, result.stderr
    assert "100.0%" in result.stderr  # the progress bar reached the end
    info = sf.info(out)
    assert (info.samplerate, info.channels, info.frames) == (44100, 2, 66150)
    assert info.subtype == subtype
    audio, _ = sf.read(out)
    assert np.all(np.isfinite(audio)) and 1e-3 < np.max(np.abs(audio)) <= 10 ** (
        -1 / 20
    )


def test_render_wav_equals_the_engine_render(tmp_path: Path) -> None:
    from engine.demos import DEMOS
    from engine.rt.engine import Engine

    out = tmp_path / "x.wav"
    assert (
        soundscape(
            "render", "ocean", "--seconds", "0.5", "-o", str(out), "-q"
        ).returncode
        == 0
    )
    engine = Engine(sample_rate=48000)
    engine.load(DEMOS["ocean"]())
    expected = engine.render(24000, block_size=128)
    audio, _ = sf.read(out, dtype="float32")
    np.testing.assert_array_equal(audio, expected)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["render", "nowhere", "--seconds", "1", "-o", "x.wav"],
            "unknown scene 'nowhere'",
        ),
        (
            [
                "render",
                "focus",
                "--seconds",
                "1",
                "-o",
                "x.wav",
                "--sample-rate",
                "22050",
            ],
            "sample rate 22050 Hz is not supported",
        ),
        (
            ["render", "focus", "--seconds", "1", "-o", "/nonexistent/dir/x.wav"],
            "cannot write /nonexistent/dir/x.wav",
        ),
        (
            ["render", "focus", "--seconds", "1", "-o", "x.mp3"],
            "must end in .wav or .flac",
        ),
        (
            [
                "render",
                "focus",
                "--seconds",
                "1",
                "-o",
                "x.wav",
                "--block-size",
                "4096",
            ],
            "block size 4096 is outside",
        ),
    ],
)
def test_errors_are_one_line_without_traceback(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = soundscape(*args, cwd=tmp_path)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unknown_device_is_one_line(jack_server: str) -> None:
    result = soundscape("play", "focus", "--seconds", "1", "--device", "no-such-card")
    assert result.returncode == 1
    assert "no output device matches 'no-such-card'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_devices_lists_the_jack_output(jack_server: str) -> None:
    result = soundscape("devices")
    assert result.returncode == 0, result.stderr
    assert "JACK" in result.stdout


def test_play_writes_stats(jack_server: str, tmp_path: Path) -> None:
    stats_path = tmp_path / "stats.json"
    result = soundscape(
        "play",
        "focus",
        "--seconds",
        "2",
        "--block-size",
        "128",
        "--stats",
        str(stats_path),
    )
    assert result.returncode == 0, result.stderr
    stats = json.loads(stats_path.read_text())
    assert stats["seconds"] >= 2.0  # and the fade to silence after it
    expected = stats["seconds"] * 48000 / 128
    assert stats["callbacks_expected"] == pytest.approx(expected, abs=1)
    # The stream ran for the time it reports (deadlines: test_live.py).
    assert 0.5 * expected <= stats["callbacks_run"] <= 1.01 * expected + 2
    assert 0 <= stats["underflows_after_warmup"] <= stats["underflows"]
    assert 0 < stats["callback_us_max"] < 1e6
    assert stats["host_steal_ms"] >= 0.0


def test_validate_reports_each_file_and_fails_on_a_broken_one(tmp_path: Path) -> None:
    good = REPO_ROOT / "scenes" / "focus.yaml"
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: x\ndescription: y\nlayers:\n  a:\n    nodes:\n"
        "      n: {type: brwon_noise}\n    output: n\n"
    )
    ok = soundscape("validate", str(good))
    assert ok.returncode == 0 and f"{good}: ok" in ok.stdout
    broken = soundscape("validate", str(good), str(bad))
    assert broken.returncode == 1
    assert broken.stderr.strip() == (
        f"{bad}:6:11: layers.a.nodes.n.type: unknown node type 'brwon_noise' "
        "(did you mean 'brown_noise'?)"
    )
    schema = json.loads(soundscape("validate", "--schema").stdout)
    assert schema["title"] == "scene" and "layers" in schema["properties"]


def test_scenes_lists_shipped_scenes_and_demos() -> None:
    result = soundscape("scenes")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert any(line.startswith("focus") and "drone" in line for line in lines)
    assert any(line.startswith("ocean") and "(built-in demo)" in line for line in lines)


def test_a_scene_file_renders_by_path(tmp_path: Path) -> None:
    out = tmp_path / "f.wav"
    scene = REPO_ROOT / "scenes" / "focus.yaml"
    result = soundscape("render", str(scene), "--seconds", "1", "-o", str(out), "-q")
    assert result.returncode == 0, result.stderr
    audio, rate = sf.read(out)
    assert rate == 48000 and audio.shape == (48000, 2) and np.max(np.abs(audio)) > 1e-3


def test_set_starts_a_scene_input_where_asked(tmp_path: Path) -> None:
    scene = tmp_path / "tone.yaml"
    scene.write_text(
        "name: tone\ndescription: pitch follows danger\n"
        "inputs:\n  danger: {minimum: 0, maximum: 1, default: 0}\n"
        "layers:\n  tone:\n    nodes:\n      osc:\n        type: sine\n"
        "        amplitude: 0.2\n"
        "        frequency_hz: {from: danger, to: [300, 600]}\n"
        "    output: osc\n"
    )

    def pitch_hz(*extra: str) -> float:
        out = tmp_path / "t.wav"
        result = soundscape(
            "render", str(scene), "--seconds", "1", "-o", str(out), "-q", *extra
        )
        assert result.returncode == 0, result.stderr
        audio, rate = sf.read(out)
        tail = audio[rate // 2 :, 0]
        return float(np.argmax(np.abs(np.fft.rfft(tail)))) * rate / len(tail)

    assert pitch_hz() == pytest.approx(300.0, abs=2.0)
    assert pitch_hz("--set", "danger=0.5") == pytest.approx(450.0, abs=2.0)
    for bad, message in [
        ("danger", "expected INPUT=NUMBER"),
        ("dangr=1", "no input 'dangr' (did you mean 'danger'?)"),
        ("danger=2", "input 'danger' is 0..1, not 2"),
    ]:
        result = soundscape(
            "render", str(scene), "--seconds", "1", "-o", "x.wav", "--set", bad
        )
        assert result.returncode != 0, result.stderr
        # The message is the last line (argparse prints its usage above it).
        assert message in result.stderr.strip().splitlines()[-1], result.stderr
        assert "Traceback" not in result.stderr


def test_script_applies_each_action_on_its_frame(tmp_path: Path) -> None:
    from engine.rt.engine import Engine
    from engine.scenes.player import ScenePlayer

    scene = REPO_ROOT / "tests" / "scenes" / "data" / "game.yaml"
    script = tmp_path / "script.yaml"
    script.write_text(
        "- {at_s: 2.5, param: calm.tone.frequency_hz, value: 330}\n"
        "- {at_s: 0.5, state: combat}\n"
        "- {at_s: 1.0, trigger: hit, velocity: 0.5}\n"
    )
    out = tmp_path / "s.wav"
    result = soundscape(
        "render", str(scene), "--seconds", "3", "-o", str(out), "-q",
        "--script", str(script), "--seed", "4",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    audio, _ = sf.read(out, dtype="float32")
    # The same calls made by hand on their frames give the same samples.
    engine = Engine(seed=4)
    player = ScenePlayer(engine)
    player.load(scene)
    parts = [engine.render(24000)]
    player.set_state("combat")
    parts.append(engine.render(24000))
    player.fire("hit", 0.5)
    parts.append(engine.render(72000))
    player.set_param("calm", "tone", "frequency_hz", 330)
    parts.append(engine.render(24000))
    np.testing.assert_array_equal(audio, np.concatenate(parts))


def test_script_errors_name_the_line(tmp_path: Path) -> None:
    scene = REPO_ROOT / "tests" / "scenes" / "data" / "game.yaml"
    script = tmp_path / "script.yaml"
    script.write_text("- {at_s: 0.5, state: combat}\n- {at_s: 1, state: combt}\n")
    result = soundscape(
        "render", str(scene), "--seconds", "2", "-o", str(tmp_path / "x.wav"),
        "-q", "--script", str(script),
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"soundscape: {script}:2: no state 'combt' (did you mean 'combat'?) "
        "(states: explore, combat)"
    )
