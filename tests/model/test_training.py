"""Training: each shipped model's ONNX output equals the training code's own
numpy forward pass on 10,000 random states; the script is reproducible to
the byte; the shipped files are small and follow every row of the
designed-behaviour table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.model import training
from engine.model.runtime import ModelRunner, open_session
from engine.model.training import BEHAVIOURS, MODELS, forward, mlp_from_onnx

SHIPPED = Path(__file__).parents[2] / "scenes" / "models"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_onnx_equals_the_numpy_forward_pass_on_10000_states(name):
    path = SHIPPED / f"{name}.onnx"
    contract = MODELS[name].contract
    rng = np.random.default_rng(11)
    lows = np.array([p.minimum for p in contract.inputs])
    highs = np.array([p.maximum for p in contract.inputs])
    x = rng.uniform(lows, highs, (10_000, len(lows))).astype(np.float32)
    (onnx_out,) = open_session(path).run(None, {"state": x})
    numpy_out = forward(mlp_from_onnx(path), x)
    assert onnx_out.shape == (10_000, len(contract.outputs))
    assert np.max(np.abs(onnx_out - numpy_out)) < 1e-5


def test_the_script_gives_byte_identical_files_from_a_seed(tmp_path, monkeypatch):
    # A short fit is enough to show the pipeline holds no hidden state.
    monkeypatch.setattr(training, "N_STEPS", 40)
    monkeypatch.setattr(training, "N_SAMPLES", 500)
    for run in ("a", "b"):
        training.main(["--out", str(tmp_path / run), "--seed", "3"])
    for name in MODELS:
        first = (tmp_path / "a" / f"{name}.onnx").read_bytes()
        assert first == (tmp_path / "b" / f"{name}.onnx").read_bytes()
    training.main(["--out", str(tmp_path / "c"), "--seed", "4", "--only", "forest"])
    other = (tmp_path / "c" / "forest.onnx").read_bytes()
    assert other != (tmp_path / "a" / "forest.onnx").read_bytes()


def test_shipped_models_are_kilobytes():
    for name in MODELS:
        assert (SHIPPED / f"{name}.onnx").stat().st_size < 8192


@pytest.mark.parametrize("row", BEHAVIOURS, ids=lambda b: f"{b.model}-{b.name}")
def test_each_shipped_model_moves_its_outputs_as_its_table_row_says(row):
    runner = ModelRunner(SHIPPED / f"{row.model}.onnx")
    before, after = runner.run(row.before), runner.run(row.after)
    rule_before = training.rule_outputs(row.model, row.before)
    rule_after = training.rule_outputs(row.model, row.after)
    for output, sign in row.moves.items():
        assert sign * (after[output] - before[output]) > 0.05, output
        # The network follows its rule where the table looks (a small MLP
        # rounds the rule's corners: 0.09 at most, measured).
        assert abs(after[output] - rule_after[output]) < 0.1, output
        assert abs(before[output] - rule_before[output]) < 0.1, output
