"""The model runner: a session that adds no busy threads, inputs clamped to
the contract, and every fault (corrupt or missing file, wrong shapes, wrong
types, NaN and out-of-range outputs) reported once, with the last good value
kept and nothing raised."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from onnx import TensorProto
from tiny_models import contract, write_model  # tests/model, on the path

from engine.model.runtime import ModelRunner, session_options

MODELS = Path(__file__).parents[2] / "scenes" / "models"


def collect():
    messages: list[str] = []
    return messages, messages.append


def test_session_options_are_for_a_machine_that_plays_audio():
    options = session_options()
    assert options.intra_op_num_threads == 1
    assert options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.get_session_config_entry("session.inter_op.allow_spinning") == "0"


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))  # native threads too, not only Python's


def test_the_session_adds_no_os_threads():
    runner = ModelRunner(MODELS / "forest.onnx")  # onnxruntime's globals exist now
    before = os_threads()
    runner = ModelRunner(MODELS / "sleep.onnx")
    for _ in range(50):
        runner.run({"heart_rate_bpm": 60.0})
    assert os_threads() == before


def test_inputs_are_clamped_to_the_contract_and_missing_ones_take_defaults(tmp_path):
    runner = ModelRunner(write_model(tmp_path / "id.onnx", "Identity", scale=0.5))
    assert runner.state_vector({}).tolist() == [[0.25]]
    assert runner.state_vector({"x0": 7.0}).tolist() == [[1.0]]
    assert runner.state_vector({"x0": float("nan")}).tolist() == [[0.25]]
    assert runner.run({"x0": 1.0}) == {"y0": 0.5}


def test_a_corrupt_file_is_reported_once_and_runs_as_nothing(tmp_path):
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(b"\x08\x07garbage" * 50)
    messages, report = collect()
    runner = ModelRunner(path, report)
    assert not runner.ok
    assert [runner.run({"x0": 0.5}) for _ in range(3)] == [{}, {}, {}]
    assert len(messages) == 1
    assert "corrupt.onnx: cannot load the model" in messages[0]


def test_a_missing_file_is_reported_once(tmp_path):
    messages, report = collect()
    runner = ModelRunner(tmp_path / "gone.onnx", report)
    assert runner.run({}) == {}
    expected = f"{tmp_path / 'gone.onnx'}: no such model file; keeping the scene's"
    assert messages == [f"{expected} own settings"]


def test_wrong_shapes_are_refused_naming_the_tensor(tmp_path):
    messages, report = collect()
    path = write_model(tmp_path / "wide.onnx", "Identity", contract_=contract(1, 2))
    runner = ModelRunner(path, report)
    assert not runner.ok and runner.run({}) == {}
    assert len(messages) == 1
    assert "output 'targets' has shape ['batch', 1]" in messages[0]
    assert "[batch, 2]" in messages[0]


def test_wrong_types_are_refused_naming_the_tensor(tmp_path):
    messages, report = collect()
    path = write_model(tmp_path / "f64.onnx", "Identity", input_type=TensorProto.DOUBLE)
    runner = ModelRunner(path, report)
    assert not runner.ok and runner.run({"x0": 0.5}) == {}
    assert len(messages) == 1
    assert "input 'state' is tensor(double)" in messages[0]


def test_nan_outputs_keep_the_last_good_value_and_are_reported_once(tmp_path):
    # sqrt of a negative input is NaN: good at x >= 0, bad below.
    messages, report = collect()
    runner = ModelRunner(write_model(tmp_path / "sqrt.onnx", "Sqrt"), report)
    assert runner.run({"x0": 0.25}) == {"y0": 0.5}
    for _ in range(5):
        assert runner.run({"x0": -0.5}) == {}
    assert runner.last_good == {"y0": 0.5}
    assert len(messages) == 1
    assert "sqrt.onnx: output 'y0' = nan is non-finite" in messages[0]
    assert "keeping its last good value 0.5" in messages[0]
    assert runner.faults == 5
    assert runner.run({"x0": 0.64}) == {"y0": np.float32(0.8)}


def test_out_of_range_outputs_keep_the_last_good_value(tmp_path):
    messages, report = collect()
    runner = ModelRunner(
        write_model(tmp_path / "x3.onnx", "Identity", scale=3.0), report
    )
    assert runner.run({"x0": 0.2}) == {"y0": np.float32(0.6)}
    assert runner.run({"x0": 0.9}) == {}
    assert runner.run({"x0": 1.0}) == {}
    assert len(messages) == 1
    assert (
        "output 'y0' = 2.7" in messages[0]
        and "out of range (expected 0..1)" in messages[0]
    )
