"""`soundscape model check`: a model's contract explained, and against a
scene what matches, what is missing and what is out of range (exit 1 for
problems)."""

from __future__ import annotations

from pathlib import Path

from tiny_models import contract, write_model  # tests/model, on the path

from engine.cli import main
from engine.model.check import check_model
from engine.model.contract import ModelContract, Port

MODELS = Path(__file__).parents[2] / "scenes" / "models"


def test_shipped_models_match_their_scenes(capsys):
    for name in ("focus", "sleep", "forest"):
        assert (
            main(["model", "check", str(MODELS / f"{name}.onnx"), "--scene", name]) == 0
        )
        out = capsys.readouterr().out
        assert "problem" not in out and "note" not in out
        assert f"{name} 1.0.0" in out
    assert "ok: input mode <- clock.mode" in out
    assert "ok: output tension (0..1) -> dread.level: -10..4 (dB offset)" in out


def test_a_mismatched_scene_names_what_is_missing(capsys):
    code = main(["model", "check", str(MODELS / "sleep.onnx"), "--scene", "forest"])
    captured = capsys.readouterr()
    assert code == 1
    assert "2 problems" in captured.err
    assert (
        "problem: the scene binds output 'tension', the model has none "
        "(did you mean 'motion'?)" in captured.out
    )
    assert (
        "note: input heart_rate_bpm: no scene input or clock source; it reads "
        "its default 65" in captured.out
    )
    assert "note: output bed is not bound (unused)" in captured.out


def test_ranges_out_of_bounds_are_explained(tmp_path):
    wide = ModelContract(
        "wide",
        "1",
        "outputs in percent",
        contract().inputs,
        (Port("y0", "a percentage", "%", 0.0, 100.0, 50.0),),
    )
    model = write_model(tmp_path / "wide.onnx", "Identity", contract_=wide)
    scene = tmp_path / "tone.yaml"
    scene.write_text(
        "name: t\ndescription: d\n"
        "inputs:\n  x0: {minimum: -5, maximum: 5}\n"
        "layers:\n  tone:\n    nodes:\n"
        "      osc: {type: sine, frequency_hz: 440, amplitude: 0.1}\n"
        "    output: osc\n"
        "model:\n  file: wide.onnx\n  bindings:\n    y0: tone.osc.amplitude\n"
    )
    lines, problems = check_model(model, scene)
    assert problems == 1
    assert any(
        "problem: output y0 (0..100 %) -> tone.osc.amplitude, whose range is 0..16: "
        "out "
        "of range" in line
        for line in lines
    ), lines
    assert any(
        "note: input x0 <- scene input x0 (-5..5) reaches outside the model's "
        "range -1..1: clamped there" in line
        for line in lines
    ), lines


def test_a_model_that_does_not_load_is_one_problem(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    assert main(["model", "check", str(bad)]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"problem: {bad}: cannot load the model")
